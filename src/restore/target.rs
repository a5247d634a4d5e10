//! What a restore asks for: where recovery should stop ([`Target`]; parsed and rendered by
//! the planner, `plan.rs`) and on which timeline ([`TimelineChoice`]). Below both the planner
//! and the timeline decision (`timeline.rs`), which take them as input.

use crate::wal::Lsn;

/// Where recovery should stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Replay every archived segment, then promote.
    Latest,
    /// Stop as soon as the backup is consistent.
    Immediate,
    Time(jiff::Timestamp),
    Lsn(Lsn),
    Xid(u64),
    Name(String),
}

/// recovery_target_timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimelineChoice {
    Latest,
    Current,
    Id(u32),
}

impl TimelineChoice {
    pub fn parse(s: &str) -> Result<TimelineChoice, String> {
        match s {
            "auto" | "latest" => Ok(TimelineChoice::Latest),
            "current" => Ok(TimelineChoice::Current),
            n => n
                .parse::<u32>()
                .ok()
                .filter(|n| *n >= 1)
                .map(TimelineChoice::Id)
                .ok_or_else(|| format!("`{n}` is not auto, current or a timeline number")),
        }
    }

    pub fn setting(self) -> String {
        match self {
            TimelineChoice::Latest => "auto".into(),
            TimelineChoice::Current => "current".into(),
            TimelineChoice::Id(n) => n.to_string(),
        }
    }
}
