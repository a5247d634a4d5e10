//! The guided restore (`dbagent restore --guided`): the questions a restore needs, asked one at a
//! time on a terminal, each answer validated before the next question. The questions go
//! through the small [`Prompter`] trait (the command line implements it on a terminal; tests
//! use [`ScriptedPrompter`]), and the answers are exactly the values of the flags of
//! `dbagent restore`: the guided restore then runs the same plan and execute code path as the
//! flags, and can print the equivalent non-interactive command. Every prompt is also a flag,
//! and a flag that is given is not asked for.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};

use super::plan::{self, Action, Target};
use super::points::{self, RestorePoint};
use crate::backup::manifest::{self, BackupManifest};
use crate::repo::Repo;

/// Asks the user. Each call returns the answer or an I/O error (no terminal, interrupted).
pub trait Prompter {
    /// One of `items`, by index.
    fn select(&mut self, prompt: &str, items: &[String], default: usize) -> io::Result<usize>;
    /// A line of text.
    fn input(&mut self, prompt: &str, default: Option<&str>) -> io::Result<String>;
    /// Yes or no.
    fn confirm(&mut self, prompt: &str, default: bool) -> io::Result<bool>;
    /// Tells the user something (a list, why an answer was refused, the plan).
    fn say(&mut self, text: &str);
}

/// What the user already gave as flags: not asked again.
#[derive(Debug, Clone, Default)]
pub struct Given {
    pub to: Option<PathBuf>,
    pub target: Option<String>,
    pub backup: Option<String>,
    pub action: Option<Action>,
    pub exclusive: bool,
    pub start: bool,
    pub force: bool,
}

/// The answers: the flag values of `dbagent restore`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answers {
    pub to: PathBuf,
    pub target: String,
    pub backup: Option<String>,
    pub action: Option<Action>,
    pub exclusive: bool,
    pub start: bool,
}

/// Why the guided restore stopped.
#[derive(Debug, thiserror::Error)]
pub enum GuidedError {
    #[error("the guided restore was interrupted: {0}")]
    Prompt(#[from] io::Error),
    #[error("{0}")]
    Repo(#[from] crate::repo::RepoError),
}

/// One answer of a [`ScriptedPrompter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scripted {
    Select(usize),
    Input(String),
    Confirm(bool),
}

/// A [`Prompter`] that plays back answers (for tests) and keeps a transcript of what was
/// asked and said.
#[derive(Debug, Default)]
pub struct ScriptedPrompter {
    pub answers: VecDeque<Scripted>,
    pub transcript: Vec<String>,
}

impl ScriptedPrompter {
    pub fn new(answers: impl IntoIterator<Item = Scripted>) -> ScriptedPrompter {
        ScriptedPrompter {
            answers: answers.into_iter().collect(),
            transcript: Vec::new(),
        }
    }

    fn next(&mut self, prompt: &str) -> io::Result<Scripted> {
        self.transcript.push(format!("? {prompt}"));
        self.answers.pop_front().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("no scripted answer for `{prompt}`"),
            )
        })
    }
}

fn mismatch(prompt: &str, got: &Scripted) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("scripted answer {got:?} does not fit `{prompt}`"),
    )
}

impl Prompter for ScriptedPrompter {
    fn select(&mut self, prompt: &str, items: &[String], _default: usize) -> io::Result<usize> {
        match self.next(prompt)? {
            Scripted::Select(i) if i < items.len() => Ok(i),
            other => Err(mismatch(prompt, &other)),
        }
    }

    fn input(&mut self, prompt: &str, _default: Option<&str>) -> io::Result<String> {
        match self.next(prompt)? {
            Scripted::Input(s) => Ok(s),
            other => Err(mismatch(prompt, &other)),
        }
    }

    fn confirm(&mut self, prompt: &str, _default: bool) -> io::Result<bool> {
        match self.next(prompt)? {
            Scripted::Confirm(b) => Ok(b),
            other => Err(mismatch(prompt, &other)),
        }
    }

    fn say(&mut self, text: &str) {
        self.transcript.push(text.to_string());
    }
}

/// `512 B`, `3.0 MiB`: sizes in the backup list.
fn size(n: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (unit, s) in UNITS {
        if n >= s {
            return format!("{:.1} {unit}", n as f64 / s as f64);
        }
    }
    format!("{n} B")
}

fn backup_line(m: &BackupManifest) -> String {
    format!(
        "{}  {} .. {}  {} (stored {})  timeline {}{}{}",
        m.id,
        m.start_time.strftime("%Y-%m-%d %H:%M:%S UTC"),
        m.stop_time.strftime("%Y-%m-%d %H:%M:%S UTC"),
        size(m.size()),
        size(m.stored_size()),
        m.timeline,
        m.label
            .as_deref()
            .map_or(String::new(), |l| format!("  \"{l}\"")),
        match crate::backup::chain::parent_of(m) {
            Some(p) => format!("  incremental on {p}"),
            None => String::new(),
        }
    )
}

fn point_line(p: &RestorePoint) -> String {
    format!(
        "{}  {}  LSN {}  timeline {}",
        p.name,
        p.time.strftime("%Y-%m-%d %H:%M:%S UTC"),
        p.lsn,
        p.timeline
    )
}

/// Asks a value until it parses as a target of `kind` (`time`, `lsn`, `xid`, `name`).
fn ask_value(
    p: &mut dyn Prompter,
    kind: &str,
    prompt: &str,
    zone: Option<&jiff::tz::TimeZone>,
) -> io::Result<String> {
    loop {
        let value = p.input(prompt, None)?;
        let target = format!("{kind}:{}", value.trim());
        match Target::parse(&target, zone) {
            Ok(_) => return Ok(target),
            Err(e) => p.say(&format!("{e}; try again")),
        }
    }
}

/// Walks through the choices of a restore and returns them as flag values. `zone` reads a
/// target time written without an offset (`--timezone`); without it such a time is asked
/// again, never guessed. `cwd` resolves a relative destination.
pub fn ask(
    p: &mut dyn Prompter,
    repo: &Repo,
    given: &Given,
    zone: Option<&jiff::tz::TimeZone>,
    cwd: &Path,
) -> Result<Answers, GuidedError> {
    // 1. The backup.
    let backup = match &given.backup {
        Some(b) => Some(b.clone()),
        None => {
            let backups = manifest::list(repo)?;
            let mut items =
                vec!["the newest backup that can reach the target (recommended)".into()];
            items.extend(backups.iter().rev().map(backup_line));
            p.say(&format!(
                "{} complete backup(s) in {}",
                backups.len(),
                repo.location().display()
            ));
            let i = p.select("Which backup?", &items, 0)?;
            (i > 0).then(|| backups[backups.len() - i].id.clone())
        }
    };

    // 2. The target, 3. its value.
    let (target, kind) = match &given.target {
        Some(t) => (
            t.clone(),
            t.split(':').next().unwrap_or("latest").to_string(),
        ),
        None => {
            let recorded = points::list(repo)?;
            let kinds = [
                (
                    "latest",
                    "latest: replay every archived WAL segment, then promote",
                ),
                (
                    "immediate",
                    "immediate: stop as soon as the backup is consistent",
                ),
                ("time", "time: stop at a point in time"),
                ("lsn", "lsn: stop at a WAL position"),
                ("xid", "xid: stop at a transaction"),
                ("name", "name: stop at a named restore point"),
            ];
            let items: Vec<String> = kinds
                .iter()
                .map(|(k, d)| {
                    if *k == "name" {
                        format!("{d} ({} recorded)", recorded.len())
                    } else {
                        (*d).to_string()
                    }
                })
                .collect();
            let kind = kinds[p.select("Restore to which point?", &items, 0)?].0;
            let target = match kind {
                "latest" | "immediate" => kind.to_string(),
                "time" => ask_value(
                    p,
                    "time",
                    "Target time (e.g. 2026-11-21 10:15:00+01, 2026-11-21T09:15:00Z)",
                    zone,
                )?,
                "lsn" => ask_value(p, "lsn", "Target LSN (e.g. 0/3000028)", zone)?,
                "xid" => ask_value(p, "xid", "Target transaction ID", zone)?,
                _ => {
                    let mut items: Vec<String> = recorded.iter().map(point_line).collect();
                    items.push("another name (type it)".into());
                    let i = if recorded.is_empty() {
                        0
                    } else {
                        p.select("Which restore point?", &items, 0)?
                    };
                    match recorded.get(i) {
                        Some(point) => format!("name:{}", point.name),
                        None => ask_value(p, "name", "Restore point name", zone)?,
                    }
                }
            };
            (target, kind.to_string())
        }
    };
    let exclusive = given.exclusive
        || (matches!(kind.as_str(), "time" | "lsn" | "xid")
            && given.target.is_none()
            && p.confirm(
                "Stop just before the target instead of just after it (exclusive)?",
                false,
            )?);

    // 4. The destination.
    let to = match &given.to {
        Some(t) => cwd.join(t),
        None => loop {
            let answer = p.input(
                "Restore into which directory (new or empty; never a running server's)?",
                None,
            )?;
            let answer = answer.trim();
            if answer.is_empty() {
                p.say("a directory is needed; try again");
                continue;
            }
            let dir = cwd.join(answer);
            match plan::check_destination(&dir, given.force) {
                Ok(()) => break dir,
                Err(e) => p.say(&format!("{e}; try again")),
            }
        },
    };

    // 5. The action at the target.
    let action = match (&given.action, kind.as_str()) {
        (Some(a), _) => Some(*a),
        (None, "latest") => None,
        (None, _) => {
            let items = vec![
                "promote: end recovery and open read-write".to_string(),
                "pause: stay in recovery, read-only, to inspect before promoting".to_string(),
                "shutdown: stop the server at the target".to_string(),
            ];
            Some(
                [Action::Promote, Action::Pause, Action::Shutdown]
                    [p.select("What should the server do at the target?", &items, 0)?],
            )
        }
    };

    // 6. Start now?
    let start = given.start
        || p.confirm(
            "Start the restored server and follow recovery to the target?",
            true,
        )?;
    Ok(Answers {
        to,
        target,
        backup,
        action,
        exclusive,
        start,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use Scripted::*;

    #[test]
    fn guided_a_bad_lsn_is_asked_again() {
        let repo_dir = tempfile::tempdir().unwrap();
        let repo = Repo::at(repo_dir.path());
        let mut p = ScriptedPrompter::new([
            Select(0),                  // newest backup
            Select(3),                  // lsn
            Input("not-an-lsn".into()), // refused
            Input("0/3000028".into()),  // accepted
            Confirm(true),              // exclusive
            Input("restored".into()),   // destination (relative)
            Select(1),                  // pause
            Confirm(false),             // do not start
        ]);
        let a = ask(&mut p, &repo, &Given::default(), None, Path::new("/srv")).unwrap();
        assert_eq!(
            a,
            Answers {
                to: PathBuf::from("/srv/restored"),
                target: "lsn:0/3000028".into(),
                backup: None,
                action: Some(Action::Pause),
                exclusive: true,
                start: false,
            }
        );
        let refusals: Vec<&String> = p
            .transcript
            .iter()
            .filter(|l| l.contains("an LSN looks like") && l.ends_with("try again"))
            .collect();
        assert_eq!(refusals.len(), 1, "{:#?}", p.transcript);
        assert!(p.answers.is_empty());
    }

    #[test]
    fn guided_a_time_without_offset_is_asked_again_and_a_busy_destination_too() {
        let repo_dir = tempfile::tempdir().unwrap();
        let repo = Repo::at(repo_dir.path());
        let dest = tempfile::tempdir().unwrap();
        std::fs::write(dest.path().join("keep"), "x").unwrap();
        let mut p = ScriptedPrompter::new([
            Select(0),
            Select(2),
            Input("2026-11-21 10:15:00".into()),
            Input("2026-11-21 10:15:00+01".into()),
            Confirm(false),
            Input(dest.path().display().to_string()),
            Input(dest.path().join("new").display().to_string()),
            Select(0),
            Confirm(true),
        ]);
        let a = ask(&mut p, &repo, &Given::default(), None, Path::new("/")).unwrap();
        assert_eq!(a.target, "time:2026-11-21 10:15:00+01");
        assert_eq!(a.to, dest.path().join("new"));
        assert!(
            p.transcript.iter().any(|l| l.contains("no UTC offset")),
            "{:#?}",
            p.transcript
        );
        assert!(
            p.transcript.iter().any(|l| l.contains("is not empty")),
            "{:#?}",
            p.transcript
        );
    }

    #[test]
    fn guided_flags_given_are_not_asked() {
        let repo_dir = tempfile::tempdir().unwrap();
        let repo = Repo::at(repo_dir.path());
        let given = Given {
            to: Some(PathBuf::from("/data/restored")),
            target: Some("latest".into()),
            backup: Some("B1".into()),
            start: true,
            ..Given::default()
        };
        let mut p = ScriptedPrompter::new([]);
        let a = ask(&mut p, &repo, &given, None, Path::new("/")).unwrap();
        assert_eq!(a.backup.as_deref(), Some("B1"));
        assert_eq!(a.action, None);
        assert!(a.start);
        assert!(p.transcript.is_empty(), "{:#?}", p.transcript);
    }
}
