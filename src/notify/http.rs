//! HTTP delivery shared by the Slack, PagerDuty and webhook receivers: one reqwest client
//! (rustls with the ring provider, a 10 s timeout), a JSON POST, and the classification of the
//! answer into [`Delivery`]: 2xx delivered; connection errors, timeouts, 408, 5xx and 429 retry
//! (honouring Retry-After); any other 4xx fails for good.
//!
//! Error texts never carry the URL: a Slack webhook URL is a secret, and so may be a webhook's.

use std::sync::OnceLock;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use super::Delivery;

/// Total time one HTTP request may take (connect, send, answer).
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The longest Retry-After we honour; a receiver asking for more is asked again then.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// How much of a receiver's answer body we keep (for `alerts test` and error texts).
const ANSWER_CHARS: usize = 200;

/// Installs ring as the process-wide rustls provider (once; a provider already installed by
/// someone else is kept).
pub fn install_crypto_provider() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The shared HTTP client could not be built (kept, described, for every later call: the
/// reqwest error itself cannot be shared).
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot set up the HTTP client: {0}")]
pub struct ClientError(String);

/// The shared HTTP client.
pub fn client() -> Result<reqwest::Client, ClientError> {
    static CLIENT: OnceLock<Result<reqwest::Client, ClientError>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            install_crypto_provider();
            reqwest::Client::builder()
                .timeout(TIMEOUT)
                .connect_timeout(TIMEOUT)
                .user_agent(concat!("dbagent/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| ClientError(describe(&e)))
        })
        .clone()
}

/// POSTs `body` as JSON to `url` (with `Authorization: Bearer` when `bearer` is set) and
/// classifies the answer.
pub async fn post_json(
    client: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
    bearer: Option<&str>,
) -> Delivery {
    let mut req = client.post(url).json(body);
    if let Some(token) = bearer {
        req = req.bearer_auth(token);
    }
    match req.send().await {
        Ok(resp) => {
            let status = resp.status();
            let headers = resp.headers().clone();
            let text = resp.text().await.unwrap_or_default();
            classify(status, &headers, &text, jiff::Timestamp::now())
        }
        Err(e) => Delivery::Retry {
            after: None,
            reason: describe(&e),
        },
    }
}

/// Classifies an HTTP answer.
pub fn classify(
    status: StatusCode,
    headers: &HeaderMap,
    body: &str,
    now: jiff::Timestamp,
) -> Delivery {
    let answer = answer(status, body);
    if status.is_success() {
        return Delivery::Delivered { answer };
    }
    let retry_after = headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, now));
    if status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
    {
        Delivery::Retry {
            after: retry_after,
            reason: format!("the receiver answered {answer}"),
        }
    } else {
        Delivery::Failed(format!("the receiver refused the message: {answer}"))
    }
}

/// `202 Accepted: {"status":"success"}`: the status and the start of the body on one line.
pub fn answer(status: StatusCode, body: &str) -> String {
    let body: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut short: String = body.chars().take(ANSWER_CHARS).collect();
    if short.len() < body.len() {
        short.push('…');
    }
    if short.is_empty() {
        status.to_string()
    } else {
        format!("{status}: {short}")
    }
}

/// Parses a Retry-After value: delay-seconds or an HTTP date (RFC 9110). A date in the past
/// is no delay; anything longer than [`MAX_RETRY_AFTER`] is capped.
pub fn parse_retry_after(value: &str, now: jiff::Timestamp) -> Option<Duration> {
    let value = value.trim();
    let d = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else if let Ok(secs) = value.parse::<f64>()
        && secs.is_finite()
        && secs >= 0.0
    {
        Duration::from_secs_f64(secs.min(MAX_RETRY_AFTER.as_secs_f64()))
    } else {
        let at = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
        let ms = at.as_millisecond() - now.as_millisecond();
        Duration::from_millis(ms.max(0) as u64)
    };
    Some(d.min(MAX_RETRY_AFTER))
}

/// A reqwest error as one line, with its causes and without the URL.
pub fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_request() {
        "request failed"
    } else if e.is_body() || e.is_decode() {
        "bad answer"
    } else {
        "HTTP error"
    };
    let mut out = String::from(kind);
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> jiff::Timestamp {
        "2026-11-21T08:00:00Z".parse().unwrap()
    }

    #[test]
    fn notify_retry_after_seconds_and_http_date() {
        assert_eq!(parse_retry_after("7", now()), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after(" 0 ", now()),
            Some(Duration::from_secs(0))
        );
        assert_eq!(
            parse_retry_after("1.5", now()),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_retry_after("Sat, 21 Nov 2026 08:00:30 GMT", now()),
            Some(Duration::from_secs(30))
        );
        // In the past: retry now.
        assert_eq!(
            parse_retry_after("Sat, 21 Nov 2026 07:00:00 GMT", now()),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("99999999", now()), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("soon", now()), None);
        assert_eq!(parse_retry_after("-3", now()), None);
    }

    #[test]
    fn notify_classify_by_status() {
        let mut h = HeaderMap::new();
        assert!(matches!(
            classify(StatusCode::OK, &h, "ok", now()),
            Delivery::Delivered { answer } if answer == "200 OK: ok"
        ));
        assert!(matches!(
            classify(StatusCode::ACCEPTED, &h, "", now()),
            Delivery::Delivered { .. }
        ));
        assert!(matches!(
            classify(StatusCode::INTERNAL_SERVER_ERROR, &h, "boom", now()),
            Delivery::Retry { after: None, .. }
        ));
        assert!(matches!(
            classify(StatusCode::BAD_GATEWAY, &h, "", now()),
            Delivery::Retry { .. }
        ));
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, &h, "invalid_payload", now()),
            Delivery::Failed(r) if r.contains("invalid_payload")
        ));
        assert!(matches!(
            classify(StatusCode::NOT_FOUND, &h, "no_service", now()),
            Delivery::Failed(_)
        ));
        h.insert(RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS, &h, "rate_limited", now()),
            Delivery::Retry {
                after: Some(Duration::from_secs(3)),
                reason: "the receiver answered 429 Too Many Requests: rate_limited".into()
            }
        );
    }

    #[tokio::test]
    async fn notify_connection_errors_retry_and_never_show_the_url() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let url = format!("http://127.0.0.1:{port}/services/T0/B0/SECRETPART?token=SECRET");
        let client = client().unwrap();
        match post_json(&client, &url, &serde_json::json!({}), Some("SECRET-TOKEN")).await {
            Delivery::Retry {
                after: None,
                reason,
            } => {
                assert!(reason.starts_with("cannot connect"), "{reason}");
                assert!(!reason.contains("SECRET"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn notify_answer_is_one_short_line() {
        let long = "x ".repeat(500);
        let a = answer(StatusCode::OK, &format!("line1\nline2 {long}"));
        assert!(a.starts_with("200 OK: line1 line2 x"), "{a}");
        assert!(a.chars().count() < 230, "{a}");
        assert!(!a.contains('\n'));
    }
}
