//! Alert delivery against real protocol peers on loopback: a real SMTP server (aiosmtpd)
//! receives the email; HTTP recorders receive what Slack, PagerDuty and a webhook would get;
//! the outbox delivers every notification exactly once through an outage (refused, 500s,
//! 429s), across a worker restart, and gives up after outbox.max_age with an error metric and
//! log line.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dbagent::notify::config::{Email, EmailTls, PagerDuty, Slack, Webhook};
use dbagent::notify::{
    AlertInfo, Integration, Notification, Outbox, OutboxConfig, OutboxMetrics, Receiver, Status,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::support::recorder::{Mode, Recorder};
use crate::support::smtp::{SmtpServer, SmtpTls};

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A notification for `alertname` with one alert per database of `dbs`.
fn notification(receiver: &str, alertname: &str, dbs: &[&str], status: Status) -> Notification {
    let alerts = dbs
        .iter()
        .map(|db| AlertInfo {
            status,
            labels: labels(&[
                ("alertname", alertname),
                ("datname", db),
                ("severity", "warning"),
            ]),
            annotations: labels(&[
                ("summary", &format!("Cache hit ratio low on {db}")),
                ("description", "Below 0.90 for 10m."),
                ("runbook_url", "https://runbooks.example.com/cache"),
            ]),
            starts_at: "2026-11-21T08:00:00Z".parse().unwrap(),
            ends_at: (status == Status::Resolved).then(|| "2026-11-21T08:30:00Z".parse().unwrap()),
            fingerprint: format!("fp-{alertname}-{db}"),
            generator_url: String::new(),
        })
        .collect();
    Notification {
        receiver: receiver.into(),
        group_key: format!("{{}}:{{alertname=\"{alertname}\"}}"),
        status,
        alerts,
        group_labels: labels(&[("alertname", alertname)]),
        common_labels: labels(&[("alertname", alertname), ("severity", "warning")]),
        common_annotations: labels(&[("runbook_url", "https://runbooks.example.com/cache")]),
        external_url: "http://127.0.0.1:9188".into(),
    }
}

fn receiver(name: &str) -> Receiver {
    Receiver {
        name: name.into(),
        email: None,
        slack: None,
        pagerduty: None,
        webhook: None,
    }
}

fn fast(max_age: Duration) -> OutboxConfig {
    OutboxConfig {
        max_age,
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(800),
        history: 1000,
    }
}

/// A running delivery worker.
struct Worker {
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), dbagent::notify::OutboxError>>,
    metrics: OutboxMetrics,
}

impl Worker {
    fn start(state: &Path, receivers: Vec<Receiver>, config: OutboxConfig) -> Worker {
        let (_tx, rx) = watch::channel(Arc::new(receivers));
        let cancel = CancellationToken::new();
        let metrics = OutboxMetrics::new();
        let task = tokio::spawn(dbagent::notify::outbox::run(
            state.to_path_buf(),
            rx,
            config,
            cancel.clone(),
            metrics.clone(),
        ));
        Worker {
            cancel,
            task,
            metrics,
        }
    }

    async fn stop(self) -> OutboxMetrics {
        self.cancel.cancel();
        self.task.await.expect("worker task").expect("worker");
        self.metrics
    }

    async fn wait(&self, what: &str, timeout: Duration, cond: impl Fn(&OutboxMetrics) -> bool) {
        let deadline = Instant::now() + timeout;
        while !cond(&self.metrics) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn enqueue(state: &Path, ns: &[Notification]) {
    let outbox = Outbox::open(state).expect("open outbox");
    for n in ns {
        outbox.enqueue(n).expect("enqueue");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_email_arrives_over_real_smtp_to_every_recipient_with_text_and_html() {
    let smtp = SmtpServer::start();
    let state = tempfile::tempdir().unwrap();
    let mut r = receiver("mail");
    r.email = Some(Email {
        smarthost: format!("127.0.0.1:{}", smtp.port),
        from: "dbagent@example.com".into(),
        to: vec!["dba@example.com".into(), "oncall@example.com".into()],
        tls: EmailTls::None,
        username: None,
        password: None,
        ca_file: None,
    });
    let firing = notification("mail", "HighCacheMiss", &["app", "billing"], Status::Firing);
    let resolved = notification(
        "mail",
        "HighCacheMiss",
        &["app", "billing"],
        Status::Resolved,
    );
    enqueue(state.path(), &[firing, resolved]);
    let w = Worker::start(state.path(), vec![r.clone()], fast(Duration::from_secs(60)));
    let mails = tokio::task::spawn_blocking(move || {
        let m = smtp.wait_messages(2, Duration::from_secs(30));
        (m, smtp)
    })
    .await
    .unwrap();
    let (mut mails, smtp) = mails;
    w.wait("2 sent", Duration::from_secs(10), |m| {
        m.counters("mail", "email").sent == 2
    })
    .await;
    mails.sort_by_key(|m| m.subject.starts_with("[RESOLVED]"));
    assert_eq!(
        mails[0].subject,
        "[FIRING:2] HighCacheMiss (severity=warning)"
    );
    assert_eq!(
        mails[1].subject,
        "[RESOLVED] HighCacheMiss (severity=warning)"
    );
    for m in &mails {
        assert_eq!(m.from, "dbagent@example.com");
        assert_eq!(m.to, "dba@example.com, oncall@example.com");
        assert!(m.rcpt_to.contains("dba@example.com"), "{m:?}");
        assert!(m.rcpt_to.contains("oncall@example.com"), "{m:?}");
        assert_eq!(m.content_type, "multipart/alternative");
        let types: Vec<&str> = m.parts.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(types, ["text/plain", "text/html"]);
        let (text, html) = (&m.parts[0].1, &m.parts[1].1);
        for body in [text, html] {
            assert!(body.contains("Cache hit ratio low on app"), "{body}");
            assert!(body.contains("Cache hit ratio low on billing"), "{body}");
            assert!(
                body.contains("https://runbooks.example.com/cache"),
                "{body}"
            );
            assert!(body.contains("datname"), "{body}");
            assert!(body.contains("2026-11-21T08:00:00Z"), "{body}");
        }
        assert!(
            text.contains("  Labels:\n    alertname = HighCacheMiss"),
            "{text}"
        );
        assert!(html.contains("<table>"), "{html}");
    }
    assert!(mails[1].parts[0].1.contains("ended 2026-11-21T08:30:00Z"));
    w.stop().await;

    // `alerts test` reports the server's answer.
    let answers = dbagent::notify::send_test(&r).await;
    assert_eq!(answers.len(), 1);
    let (integration, answer) = &answers[0];
    assert_eq!(*integration, Integration::Email);
    let answer = answer.as_ref().expect("test email accepted");
    assert!(answer.starts_with("250"), "{answer}");
    let mails = tokio::task::spawn_blocking(move || smtp.wait_messages(3, Duration::from_secs(30)))
        .await
        .unwrap();
    assert!(
        mails
            .iter()
            .any(|m| m.subject == "[FIRING:1] DbagentTest (severity=info)")
    );
}

fn mail_receiver(port: u16, tls: EmailTls, ca_file: Option<std::path::PathBuf>) -> Receiver {
    let mut r = receiver("mail");
    r.email = Some(Email {
        smarthost: format!("localhost:{port}"),
        from: "dbagent@example.com".into(),
        to: vec!["dba@example.com".into()],
        tls,
        username: None,
        password: None,
        ca_file,
    });
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_email_starttls_and_implicit_tls_verify_the_server_and_starttls_is_required() {
    let n = notification("mail", "HighCacheMiss", &["app"], Status::Firing);
    for (server_tls, client_tls) in [
        (SmtpTls::Starttls, EmailTls::Starttls),
        (SmtpTls::Implicit, EmailTls::Tls),
    ] {
        let smtp = SmtpServer::start_with(server_tls);
        // Trusting the server's CA: delivered over TLS.
        let r = mail_receiver(smtp.port, client_tls, Some(smtp.ca_file()));
        let d = dbagent::notify::deliver(&r, Integration::Email, &n).await;
        assert!(
            matches!(d, dbagent::notify::Delivery::Delivered { .. }),
            "{server_tls:?}: {d:?}"
        );
        // Not trusting it: nothing is sent, and it is retried.
        let r = mail_receiver(smtp.port, client_tls, None);
        let d = dbagent::notify::deliver(&r, Integration::Email, &n).await;
        assert!(
            matches!(d, dbagent::notify::Delivery::Retry { .. }),
            "{server_tls:?}: {d:?}"
        );
        let mails = tokio::task::spawn_blocking(move || {
            let m = smtp.wait_messages(1, Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(300));
            (m.len(), smtp.wait_messages(1, Duration::ZERO).len())
        })
        .await
        .unwrap();
        assert_eq!(mails, (1, 1), "{server_tls:?}");
    }
    // A server that does not offer STARTTLS gets nothing when STARTTLS is required.
    let smtp = SmtpServer::start();
    let r = mail_receiver(smtp.port, EmailTls::Starttls, None);
    let d = dbagent::notify::deliver(&r, Integration::Email, &n).await;
    assert!(
        matches!(d, dbagent::notify::Delivery::Retry { .. }),
        "{d:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let none = tokio::task::spawn_blocking(move || smtp.wait_messages(0, Duration::ZERO).len())
        .await
        .unwrap();
    assert_eq!(none, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_email_authenticates_and_a_wrong_password_fails_for_good() {
    let smtp = SmtpServer::start_with(SmtpTls::Auth("dbagent", "pa55word"));
    let n = notification("mail", "HighCacheMiss", &["app"], Status::Firing);
    let mut r = mail_receiver(smtp.port, EmailTls::None, None);
    let email = r.email.as_mut().unwrap();
    email.smarthost = format!("127.0.0.1:{}", smtp.port);
    email.username = Some("dbagent".into());
    email.password = Some("wrong-pa55word".into());
    let d = dbagent::notify::deliver(&r, Integration::Email, &n).await;
    match &d {
        dbagent::notify::Delivery::Failed(reason) => {
            assert!(reason.contains("535"), "{reason}");
            assert!(!reason.contains("pa55word"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    r.email.as_mut().unwrap().password = Some("pa55word".into());
    let d = dbagent::notify::deliver(&r, Integration::Email, &n).await;
    assert!(
        matches!(d, dbagent::notify::Delivery::Delivered { .. }),
        "{d:?}"
    );
    let mails = tokio::task::spawn_blocking(move || smtp.wait_messages(1, Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(mails.len(), 1);
    assert_eq!(
        mails[0].subject,
        "[FIRING:1] HighCacheMiss (severity=warning)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_slack_gets_block_kit_firing_then_a_new_resolved_message() {
    let slack = Recorder::start(200, "ok").await;
    let state = tempfile::tempdir().unwrap();
    let mut r = receiver("chat");
    r.slack = Some(Slack {
        webhook_url: slack.url("/services/T000/B000/XXXX"),
        channel: None,
    });
    enqueue(
        state.path(),
        &[
            notification("chat", "HighCacheMiss", &["app", "billing"], Status::Firing),
            notification(
                "chat",
                "HighCacheMiss",
                &["app", "billing"],
                Status::Resolved,
            ),
        ],
    );
    let w = Worker::start(state.path(), vec![r], fast(Duration::from_secs(60)));
    let got = slack.wait_accepted(2, Duration::from_secs(20)).await;
    let m = w.stop().await;
    assert_eq!(m.counters("chat", "slack").sent, 2);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].path, "/services/T000/B000/XXXX");
    assert_eq!(
        got[0].headers["content-type"].to_str().unwrap(),
        "application/json"
    );
    let (firing, resolved) = (&got[0].body, &got[1].body);
    assert_eq!(
        firing["text"],
        "[FIRING:2] HighCacheMiss (severity=warning)"
    );
    assert_eq!(firing["blocks"][0]["type"], "header");
    assert_eq!(
        firing["blocks"][0]["text"]["text"],
        "🔥 FIRING:2 HighCacheMiss (severity=warning)"
    );
    let sections: Vec<&serde_json::Value> = firing["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "section")
        .collect();
    assert_eq!(sections.len(), 2);
    let text = sections[0]["text"]["text"].as_str().unwrap();
    assert!(text.contains("*Cache hit ratio low on app*"), "{text}");
    assert!(
        text.contains("<https://runbooks.example.com/cache|Runbook>"),
        "{text}"
    );
    assert_eq!(
        resolved["text"],
        "[RESOLVED] HighCacheMiss (severity=warning)"
    );
    assert_eq!(
        resolved["blocks"][0]["text"]["text"],
        "✅ RESOLVED HighCacheMiss (severity=warning)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_pagerduty_triggers_then_resolves_with_the_same_dedup_key() {
    let pd = Recorder::start(
        202,
        r#"{"status":"success","message":"Event processed","dedup_key":"x"}"#,
    )
    .await;
    let state = tempfile::tempdir().unwrap();
    let mut r = receiver("pager");
    r.pagerduty = Some(PagerDuty {
        routing_key: "R0UT1NGKEY0000000000000000000000".into(),
        url: Some(pd.url("/v2/enqueue")),
    });
    enqueue(
        state.path(),
        &[
            notification(
                "pager",
                "HighCacheMiss",
                &["app", "billing"],
                Status::Firing,
            ),
            notification(
                "pager",
                "HighCacheMiss",
                &["app", "billing"],
                Status::Resolved,
            ),
        ],
    );
    let w = Worker::start(state.path(), vec![r.clone()], fast(Duration::from_secs(60)));
    let got = pd.wait_accepted(4, Duration::from_secs(20)).await;
    let m = w.stop().await;
    assert_eq!(m.counters("pager", "pagerduty").sent, 4);
    assert_eq!(got.len(), 4);
    for fp in ["fp-HighCacheMiss-app", "fp-HighCacheMiss-billing"] {
        let events: Vec<&serde_json::Value> = got
            .iter()
            .map(|g| &g.body)
            .filter(|b| b["dedup_key"] == fp)
            .collect();
        assert_eq!(events.len(), 2, "{fp}: {events:?}");
        let (trigger, resolve) = (events[0], events[1]);
        assert_eq!(trigger["event_action"], "trigger");
        assert_eq!(trigger["routing_key"], "R0UT1NGKEY0000000000000000000000");
        assert_eq!(trigger["payload"]["severity"], "warning");
        assert_eq!(trigger["payload"]["source"], "http://127.0.0.1:9188");
        assert!(
            trigger["payload"]["summary"]
                .as_str()
                .unwrap()
                .starts_with("Cache hit ratio low on ")
        );
        assert_eq!(
            trigger["payload"]["custom_details"]["labels"]["alertname"],
            "HighCacheMiss"
        );
        assert_eq!(
            trigger["payload"]["custom_details"]["annotations"]["runbook_url"],
            "https://runbooks.example.com/cache"
        );
        assert_eq!(
            trigger["links"][0]["href"],
            "https://runbooks.example.com/cache"
        );
        assert_eq!(resolve["event_action"], "resolve");
        assert_eq!(resolve["routing_key"], "R0UT1NGKEY0000000000000000000000");
    }

    // `alerts test` triggers and resolves, and reports PagerDuty's answer.
    let answers = dbagent::notify::send_test(&r).await;
    let answer = answers[0].1.as_ref().expect("accepted");
    assert!(answer.starts_with("202 Accepted"), "{answer}");
    let got = pd.wait_accepted(6, Duration::from_secs(10)).await;
    assert_eq!(got[4].body["event_action"], "trigger");
    assert_eq!(got[5].body["event_action"], "resolve");
    assert_eq!(got[4].body["dedup_key"], got[5].body["dedup_key"]);
}

/// The (groupKey, status) pairs of the webhook payloads accepted.
fn delivered(rec: &Recorder) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = rec
        .accepted()
        .iter()
        .map(|r| {
            (
                r.body["groupKey"].as_str().unwrap_or_default().to_string(),
                r.body["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_receiver_down_refused_then_500_then_429_every_notification_arrives_once() {
    let hook = Recorder::start(200, "").await;
    hook.set(Mode::Refuse).await;
    let state = tempfile::tempdir().unwrap();
    let mut r = receiver("oncall");
    r.webhook = Some(Webhook {
        url: hook.url("/hook"),
        bearer_token: Some("s3cr3t-token".into()),
    });
    let mut ns = Vec::new();
    for name in ["A", "B", "C", "D", "E"] {
        ns.push(notification("oncall", name, &["app"], Status::Firing));
    }
    ns.push(notification("oncall", "A", &["app"], Status::Resolved));
    enqueue(state.path(), &ns);
    let w = Worker::start(state.path(), vec![r], fast(Duration::from_secs(600)));

    // Down: connection refused.
    w.wait("retries while refused", Duration::from_secs(10), |m| {
        m.counters("oncall", "webhook").retries >= 10
    })
    .await;
    assert!(hook.requests().is_empty());
    // Up but failing: 500s.
    hook.set(Mode::Status(500)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Rate limited: 429 with Retry-After.
    hook.set(Mode::TooMany {
        retry_after: "1".into(),
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(w.metrics.counters("oncall", "webhook").sent, 0);
    assert!(w.metrics.depth() >= 5, "{}", w.metrics.depth());
    // Recovered.
    hook.set(Mode::Accept).await;
    hook.wait_accepted(6, Duration::from_secs(20)).await;
    // Nothing more arrives: exactly once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let m = w.stop().await;

    let statuses: Vec<u16> = hook.requests().iter().map(|r| r.answered).collect();
    assert!(statuses.contains(&500), "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    let mut want: Vec<(String, String)> = ns
        .iter()
        .map(|n| (n.group_key.clone(), n.status.as_str().to_string()))
        .collect();
    want.sort();
    assert_eq!(delivered(&hook), want);
    // A's resolve came after A's trigger.
    let a: Vec<String> = hook
        .accepted()
        .iter()
        .filter(|r| r.body["groupKey"] == ns[0].group_key)
        .map(|r| r.body["status"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(a, ["firing", "resolved"]);
    let c = m.counters("oncall", "webhook");
    assert_eq!(c.sent, 6);
    assert_eq!(c.failed, 0);
    assert!(c.retries >= 10);
    assert_eq!(m.depth(), 0);
    // Alertmanager's webhook JSON, with the bearer token.
    let accepted = hook.accepted();
    let first = accepted
        .iter()
        .find(|r| r.body["groupKey"] == ns[0].group_key)
        .expect("A delivered");
    assert_eq!(
        first.headers["authorization"].to_str().unwrap(),
        "Bearer s3cr3t-token"
    );
    assert_eq!(first.body["version"], "4");
    assert_eq!(first.body["receiver"], "oncall");
    assert_eq!(first.body["truncatedAlerts"], 0);
    assert_eq!(first.body["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(first.body["alerts"][0]["fingerprint"], "fp-A-app");
    // The metrics render, and never show the token.
    let text = dbagent::metrics::render(&m.families());
    assert!(
        text.contains(
            "dbagent_notifications_sent_total{receiver=\"oncall\",integration=\"webhook\"} 6"
        ),
        "{text}"
    );
    assert!(text.contains("dbagent_outbox_depth 0"), "{text}");
    assert!(!text.contains("s3cr3t"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_outbox_survives_a_worker_restart_and_delivers_once() {
    let hook = Recorder::start(200, "").await;
    hook.set(Mode::Refuse).await;
    let state = tempfile::tempdir().unwrap();
    let mut r = receiver("oncall");
    r.webhook = Some(Webhook {
        url: hook.url("/hook"),
        bearer_token: None,
    });
    // Enqueued before any worker runs: stored, not sent.
    enqueue(
        state.path(),
        &[notification("oncall", "A", &["app"], Status::Firing)],
    );
    let w = Worker::start(
        state.path(),
        vec![r.clone()],
        fast(Duration::from_secs(600)),
    );
    w.wait("a failed attempt", Duration::from_secs(10), |m| {
        m.counters("oncall", "webhook").retries >= 1
    })
    .await;
    w.stop().await;
    hook.set(Mode::Accept).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        hook.requests().is_empty(),
        "nothing sends while no worker runs"
    );

    let w = Worker::start(
        state.path(),
        vec![r.clone()],
        fast(Duration::from_secs(600)),
    );
    hook.wait_accepted(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let m = w.stop().await;
    assert_eq!(m.counters("oncall", "webhook").sent, 1);

    // A third worker finds nothing to send: acknowledged rows are never sent again.
    let w = Worker::start(state.path(), vec![r], fast(Duration::from_secs(600)));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let m = w.stop().await;
    assert_eq!(m.counters("oncall", "webhook").sent, 0);
    assert_eq!(hook.accepted().len(), 1);
    let recent = Outbox::open(state.path()).unwrap().recent(10).unwrap();
    assert_eq!(recent.len(), 1);
    assert_eq!(recent[0].state, "delivered");
    assert!(recent[0].attempts >= 2);
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn notify_outbox_gives_up_after_max_age_with_error_metric_and_log_line() {
    let logs = LogBuf::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let hook = Recorder::start(200, "").await;
    hook.set(Mode::Status(503)).await;
    let state = tempfile::tempdir().unwrap();
    let mut r = receiver("oncall");
    r.webhook = Some(Webhook {
        url: hook.url("/hook"),
        bearer_token: Some("s3cr3t-token".into()),
    });
    enqueue(
        state.path(),
        &[notification("oncall", "Doomed", &["app"], Status::Firing)],
    );
    let w = Worker::start(state.path(), vec![r], fast(Duration::from_secs(2)));
    w.wait("the give-up", Duration::from_secs(15), |m| {
        m.counters("oncall", "webhook").failed == 1
    })
    .await;
    let attempts = hook.requests().len();
    assert!(attempts >= 2, "{attempts}");
    // Not retried any more.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let m = w.stop().await;
    assert_eq!(hook.requests().len(), attempts);
    assert_eq!(m.counters("oncall", "webhook").sent, 0);
    assert_eq!(m.depth(), 0);
    let text = dbagent::metrics::render(&m.families());
    assert!(
        text.contains(
            "dbagent_notifications_failed_total{receiver=\"oncall\",integration=\"webhook\"} 1"
        ),
        "{text}"
    );

    let log = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("Gave up delivering a notification"))
        .unwrap_or_else(|| panic!("no give-up line in:\n{log}"));
    assert!(line.contains("ERROR"), "{line}");
    assert!(line.contains("receiver=\"oncall\""), "{line}");
    assert!(
        line.contains("group=\"{}:{alertname=\\\"Doomed\\\"}\""),
        "{line}"
    );
    assert!(line.contains("503"), "{line}");
    assert!(!log.contains("s3cr3t"), "{log}");

    let recent = Outbox::open(state.path()).unwrap().recent(10).unwrap();
    assert_eq!(recent[0].state, "failed");
    assert!(
        recent[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("outbox.max_age"),
        "{recent:?}"
    );
}
