//! Proving a shipped alert rule end to end: the rule's expression taken from the shipped
//! alerts.yml (so the test proves the rule we ship), an alerts.yml with only that rule routed
//! to an HTTP recorder, and waiting for the recorder to receive a notification.

use std::time::{Duration, Instant};

use dbagent::alert::rules::{AlertsFile, EXAMPLE};

use super::recorder::{Recorded, Recorder};
use super::sidecar::Sidecar;

/// The expression of a rule of the shipped alerts.yml.
pub fn shipped_expr(rule: &str) -> String {
    let file = AlertsFile::parse(EXAMPLE, std::path::Path::new("alerts.yml"))
        .expect("the shipped alerts.yml parses");
    file.rules
        .iter()
        .find(|r| r.name == rule)
        .unwrap_or_else(|| panic!("no rule {rule} in the shipped alerts.yml"))
        .expr
        .text
        .clone()
}

/// An alerts.yml with one shipped rule (its `for:` shortened to 0s) routed to `url`.
pub fn alerts_with(rule: &str, url: &str) -> String {
    format!(
        "rules:\n  - name: {rule}\n    expr: {expr}\n    labels: {{ severity: critical }}\n    annotations: {{ summary: \"{{{{ $value }}}} over {{{{ $threshold }}}}\" }}\nroute:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 2s\n  repeat_interval: 1h\nreceivers:\n  - name: hook\n    webhook: {{ url: \"{url}\" }}\n",
        expr = shipped_expr(rule)
    )
}

/// A runtime for a [`Recorder`].
pub fn recorder_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime for the recorder")
}

/// Waits until the recorder accepted a notification with this status; returns it.
pub fn wait_notification(rec: &Recorder, status: &str, sidecar: &Sidecar) -> Recorded {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(r) = rec
            .accepted()
            .into_iter()
            .find(|r| r.body["status"] == status)
        {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "no {status} notification; got {:#?}\nlog:\n{}",
            rec.accepted().iter().map(|r| &r.body).collect::<Vec<_>>(),
            sidecar.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
