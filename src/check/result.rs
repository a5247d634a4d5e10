//! What one check reports: its [`Status`] (Nagios plugin convention), a [`CheckResult`], and
//! what is known of the server ([`ServerInfo`]). Below every check file and the report in
//! `mod.rs`.

use serde::Serialize;

/// The status of one check or of the whole run (Nagios plugin convention).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warning,
    Critical,
    Unknown,
}

impl Status {
    /// 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
    pub fn exit_code(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Warning => 1,
            Status::Critical => 2,
            Status::Unknown => 3,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warning => "WARNING",
            Status::Critical => "CRITICAL",
            Status::Unknown => "UNKNOWN",
        }
    }

    /// Severity order for the overall status: critical > warning > unknown > ok.
    pub(super) fn rank(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Unknown => 1,
            Status::Warning => 2,
            Status::Critical => 3,
        }
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    /// Stable identifier, e.g. `archive_mode`.
    pub name: &'static str,
    pub status: Status,
    /// What was found.
    pub message: String,
    /// What to do about it (absent when OK).
    pub action: Option<String>,
}

impl CheckResult {
    pub fn ok(name: &'static str, message: impl Into<String>) -> CheckResult {
        CheckResult {
            name,
            status: Status::Ok,
            message: message.into(),
            action: None,
        }
    }

    pub fn problem(
        name: &'static str,
        status: Status,
        message: impl Into<String>,
        action: impl Into<String>,
    ) -> CheckResult {
        CheckResult {
            name,
            status,
            message: message.into(),
            action: Some(action.into()),
        }
    }
}

/// What `check` learned about the server, for `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct ServerInfo {
    pub endpoint: String,
    pub user: String,
    pub database: String,
    pub version: String,
    pub version_num: u32,
    pub in_recovery: bool,

    /// pg_control's system identifier, when the role may read it.
    pub system_identifier: Option<String>,
}
