//! The email receiver: SMTP through lettre, STARTTLS by default (required: no credentials or
//! mail go out over a connection that could not be upgraded), implicit TLS (`tls: tls`, port
//! 465), or plain (`tls: none`, for loopback test servers only). AUTH when a username is set;
//! one message to every recipient. The subject is Alertmanager's
//! (`[FIRING:2] HighCacheMiss (severity=warning)`, `[RESOLVED] ...`), the body a readable
//! plain-text part and an HTML alternative listing every alert's labels, annotations and
//! times. SMTP 4xx answers and connection failures retry; 5xx answers fail for good.

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::config::{Email, EmailTls};
use super::{AlertInfo, Channel, Delivery, Notification, Status};
use crate::io_error::{IoContext, IoError};

/// How long connecting may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// How long the whole SMTP transaction may take. lettre's async transport applies its timeout
/// to connecting only, so a server that stops answering mid-dialogue would otherwise hang the
/// delivery for ever.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// Why an email could not be made or sent: a configuration problem (retrying does not help).
#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    #[error("invalid from address `{from}`: {source}")]
    From {
        from: String,
        source: lettre::address::AddressError,
    },
    #[error("no recipients: set email.to")]
    NoRecipients,
    #[error("invalid recipient address `{to}`: {source}")]
    To {
        to: String,
        source: lettre::address::AddressError,
    },
    #[error("cannot build the email: {0}")]
    Build(#[source] lettre::error::Error),
    #[error("invalid smarthost `{0}`: write host:port such as smtp.example.com:587")]
    Smarthost(String),
    #[error(transparent)]
    CaFile(#[from] IoError),
    #[error("email.ca_file {} is not a PEM certificate: {source}", path.display())]
    CaNotPem {
        path: std::path::PathBuf,
        source: lettre::transport::smtp::Error,
    },
    #[error("cannot set up TLS to {host}: {source}")]
    Tls {
        host: String,
        source: lettre::transport::smtp::Error,
    },
}

/// The message for `n` (subject, from, to, text and HTML parts).
pub fn message(cfg: &Email, n: &Notification) -> Result<Message, EmailError> {
    let from: Mailbox = cfg.from.parse().map_err(|source| EmailError::From {
        from: cfg.from.clone(),
        source,
    })?;
    let mut builder = Message::builder().from(from).subject(n.subject());
    if cfg.to.is_empty() {
        return Err(EmailError::NoRecipients);
    }
    for to in &cfg.to {
        let mb: Mailbox = to.parse().map_err(|source| EmailError::To {
            to: to.clone(),
            source,
        })?;
        builder = builder.to(mb);
    }
    builder
        .multipart(MultiPart::alternative_plain_html(
            text_body(n),
            html_body(n),
        ))
        .map_err(EmailError::Build)
}

/// The `host` and `port` of `smarthost`, with the port defaulting by TLS mode.
fn host_port(cfg: &Email) -> Result<(String, u16), EmailError> {
    let default_port = match cfg.tls {
        EmailTls::Starttls => 587,
        EmailTls::Tls => 465,
        EmailTls::None => 25,
    };
    let s = cfg.smarthost.trim();
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') && !p.contains(']') => (
            h,
            p.parse::<u16>()
                .map_err(|_| EmailError::Smarthost(s.to_string()))?,
        ),
        _ => (s, default_port),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(EmailError::Smarthost(s.to_string()));
    }
    Ok((host.to_string(), port))
}

fn transport(cfg: &Email) -> Result<(AsyncSmtpTransport<Tokio1Executor>, String), EmailError> {
    super::http::install_crypto_provider();
    let (host, port) = host_port(cfg)?;
    let tls = |host: &str| -> Result<TlsParameters, EmailError> {
        let mut b = TlsParameters::builder(host.to_string());
        if let Some(path) = &cfg.ca_file {
            let pem = std::fs::read(path).at("read email.ca_file", path)?;
            let cert = Certificate::from_pem(&pem).map_err(|source| EmailError::CaNotPem {
                path: path.clone(),
                source,
            })?;
            b = b.add_root_certificate(cert);
        }
        b.build_rustls().map_err(|source| EmailError::Tls {
            host: host.to_string(),
            source,
        })
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&host)
        .port(port)
        .timeout(Some(TIMEOUT));
    builder = match cfg.tls {
        // STARTTLS required: nothing (credentials, mail) goes out if the upgrade fails.
        EmailTls::Starttls => builder.tls(Tls::Required(tls(&host)?)),
        EmailTls::Tls => builder.tls(Tls::Wrapper(tls(&host)?)),
        EmailTls::None => builder.tls(Tls::None),
    };
    if let Some(user) = &cfg.username {
        builder = builder.credentials(Credentials::new(
            user.clone(),
            cfg.password.clone().unwrap_or_default(),
        ));
    }
    Ok((builder.build(), format!("{host}:{port}")))
}

/// Sends the email for `n`.
pub async fn send(cfg: &Email, n: &Notification) -> Delivery {
    let msg = match message(cfg, n) {
        Ok(m) => m,
        Err(e) => return Delivery::Failed(e.to_string()),
    };
    let (transport, server) = match transport(cfg) {
        Ok(t) => t,
        Err(e) => return Delivery::Failed(e.to_string()),
    };
    let sent = match tokio::time::timeout(SEND_TIMEOUT, transport.send(msg)).await {
        Ok(sent) => sent,
        Err(_) => {
            return Delivery::Retry {
                after: None,
                reason: format!(
                    "SMTP server {server} did not finish the transaction in {}",
                    crate::units::human_duration_of(SEND_TIMEOUT)
                ),
            };
        }
    };
    match sent {
        Ok(resp) => Delivery::Delivered {
            answer: format!(
                "{} {}",
                resp.code(),
                resp.message().collect::<Vec<_>>().join(" ")
            ),
        },
        Err(e) if e.is_permanent() => {
            Delivery::Failed(format!("SMTP server {server} refused the message: {e}"))
        }
        Err(e) => Delivery::Retry {
            after: None,
            reason: format!("SMTP server {server}: {e}"),
        },
    }
}

impl Channel for Email {
    /// No pacing: one SMTP transaction per message.
    const PACING: Duration = Duration::ZERO;

    /// The SMTP server.
    fn endpoint(&self) -> String {
        self.smarthost.clone()
    }

    /// Email does not use the HTTP client.
    fn send(
        &self,
        _client: &reqwest::Client,
        n: &Notification,
    ) -> impl Future<Output = Delivery> + Send {
        send(self, n)
    }
}

fn times(a: &AlertInfo) -> String {
    match a.ends_at {
        Some(end) => format!("Started {}, ended {end}", a.starts_at),
        None => format!("Started {}", a.starts_at),
    }
}

/// The plain-text body.
pub fn text_body(n: &Notification) -> String {
    let mut out = String::new();
    out.push_str(&n.subject());
    out.push_str("\n\n");
    out.push_str(&format!(
        "{} firing, {} resolved (receiver {}, group {}).\n",
        n.firing_count(),
        n.resolved_count(),
        n.receiver,
        n.group_key
    ));
    for (status, title) in [(Status::Firing, "Firing"), (Status::Resolved, "Resolved")] {
        let alerts: Vec<&AlertInfo> = n.alerts.iter().filter(|a| a.status == status).collect();
        if alerts.is_empty() {
            continue;
        }
        out.push_str(&format!("\n{title}\n{}\n", "=".repeat(title.len())));
        for a in alerts {
            out.push_str(&format!("\n* {}\n", a.summary()));
            if let Some(d) = a.annotations.get("description").filter(|d| !d.is_empty()) {
                out.push_str(&format!("  {d}\n"));
            }
            if let Some(url) = a.runbook_url() {
                out.push_str(&format!("  Runbook: {url}\n"));
            }
            out.push_str(&format!("  {}\n", times(a)));
            out.push_str("  Labels:\n");
            for (k, v) in &a.labels {
                out.push_str(&format!("    {k} = {v}\n"));
            }
            let other: Vec<_> = a
                .annotations
                .iter()
                .filter(|(k, _)| !["summary", "description", "runbook_url"].contains(&k.as_str()))
                .collect();
            if !other.is_empty() {
                out.push_str("  Annotations:\n");
                for (k, v) in other {
                    out.push_str(&format!("    {k} = {v}\n"));
                }
            }
            if !a.generator_url.is_empty() {
                out.push_str(&format!("  Source: {}\n", a.generator_url));
            }
        }
    }
    out.push_str("\n-- \nSent by dbagent");
    if !n.external_url.is_empty() {
        out.push_str(&format!(" ({})", n.external_url));
    }
    out.push('\n');
    out
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The HTML alternative.
pub fn html_body(n: &Notification) -> String {
    let color = match n.status {
        Status::Firing => "#c0392b",
        Status::Resolved => "#27ae60",
    };
    let mut out = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head>\
         <body style=\"font-family:sans-serif\">\n",
    );
    out.push_str(&format!(
        "<h2 style=\"color:{color}\">{}</h2>\n<p>{} firing, {} resolved (receiver {}, group {}).</p>\n",
        esc(&n.subject()),
        n.firing_count(),
        n.resolved_count(),
        esc(&n.receiver),
        esc(&n.group_key)
    ));
    for (status, title) in [(Status::Firing, "Firing"), (Status::Resolved, "Resolved")] {
        let alerts: Vec<&AlertInfo> = n.alerts.iter().filter(|a| a.status == status).collect();
        if alerts.is_empty() {
            continue;
        }
        out.push_str(&format!("<h3>{title}</h3>\n"));
        for a in alerts {
            out.push_str(&format!("<h4>{}</h4>\n", esc(&a.summary())));
            if let Some(d) = a.annotations.get("description").filter(|d| !d.is_empty()) {
                out.push_str(&format!("<p>{}</p>\n", esc(d)));
            }
            if let Some(url) = a.runbook_url() {
                out.push_str(&format!("<p><a href=\"{}\">Runbook</a></p>\n", esc(url)));
            }
            out.push_str(&format!("<p>{}</p>\n<table>\n", esc(&times(a))));
            for (k, v) in &a.labels {
                out.push_str(&format!(
                    "<tr><td><b>{}</b></td><td>{}</td></tr>\n",
                    esc(k),
                    esc(v)
                ));
            }
            for (k, v) in &a.annotations {
                if ["summary", "description", "runbook_url"].contains(&k.as_str()) {
                    continue;
                }
                out.push_str(&format!(
                    "<tr><td><i>{}</i></td><td>{}</td></tr>\n",
                    esc(k),
                    esc(v)
                ));
            }
            out.push_str("</table>\n");
        }
    }
    out.push_str("<p style=\"color:#888\">Sent by dbagent");
    if !n.external_url.is_empty() {
        out.push_str(&format!(" (<a href=\"{0}\">{0}</a>)", esc(&n.external_url)));
    }
    out.push_str("</p>\n</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::outbox::tests::{resolved, sample};

    fn cfg(smarthost: &str, tls: EmailTls) -> Email {
        Email {
            smarthost: smarthost.into(),
            from: "dbagent@example.com".into(),
            to: vec!["a@example.com".into(), "b@example.com".into()],
            tls,
            username: Some("user".into()),
            password: Some("hunter2".into()),
            ca_file: None,
        }
    }

    #[test]
    fn notify_email_subject_and_text() {
        let n = sample();
        assert_eq!(n.subject(), "[FIRING:2] HighCacheMiss (severity=warning)");
        assert_eq!(
            resolved(&n).subject(),
            "[RESOLVED] HighCacheMiss (severity=warning)"
        );
        insta::assert_snapshot!(text_body(&n));
    }

    #[test]
    fn notify_email_html_escapes() {
        let mut n = sample();
        n.alerts[0]
            .annotations
            .insert("description".into(), "<script>x & y</script>".into());
        let html = html_body(&n);
        assert!(
            html.contains("&lt;script&gt;x &amp; y&lt;/script&gt;"),
            "{html}"
        );
        assert!(html.contains("<a href=\"https://runbooks.example.com/cache\">Runbook</a>"));
    }

    #[test]
    fn notify_email_smarthost_ports() {
        assert_eq!(
            host_port(&cfg("smtp.example.com:2525", EmailTls::Starttls)).ok(),
            Some(("smtp.example.com".into(), 2525))
        );
        assert_eq!(
            host_port(&cfg("smtp.example.com", EmailTls::Starttls)).ok(),
            Some(("smtp.example.com".into(), 587))
        );
        assert_eq!(
            host_port(&cfg("smtp.example.com", EmailTls::Tls)).ok(),
            Some(("smtp.example.com".into(), 465))
        );
        assert_eq!(
            host_port(&cfg("[::1]:25", EmailTls::None)).ok(),
            Some(("::1".into(), 25))
        );
        assert!(host_port(&cfg("smtp:x", EmailTls::None)).is_err());
    }

    #[test]
    fn notify_email_message_has_every_recipient() {
        let m = message(&cfg("127.0.0.1:25", EmailTls::None), &sample()).unwrap();
        let to: Vec<String> = m.envelope().to().iter().map(|a| a.to_string()).collect();
        assert_eq!(to, ["a@example.com", "b@example.com"]);
        let bad = Email {
            to: vec!["not an address".into()],
            ..cfg("h:25", EmailTls::None)
        };
        assert!(
            message(&bad, &sample())
                .unwrap_err()
                .to_string()
                .contains("not an address")
        );
    }

    #[tokio::test]
    async fn notify_email_refused_connection_retries() {
        // A port nobody listens on.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let c = Email {
            username: None,
            ..cfg(&format!("127.0.0.1:{port}"), EmailTls::None)
        };
        match send(&c, &sample()).await {
            Delivery::Retry { reason, .. } => assert!(reason.contains("127.0.0.1"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }
}
