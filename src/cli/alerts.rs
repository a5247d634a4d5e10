//! `dbagent alerts list|silence|silences|expire|test`: the on-call person's view of alerting.
//! Alert instances and silences live in state.db, which `dbagent run` writes and reads at every
//! evaluation; these commands read or write it directly, so a silence takes effect at the next
//! poll without talking to the agent.

use std::process::ExitCode;

use anyhow::{Context, bail};
use serde_json::json;

use super::backups::{table, utc};
use super::{Cli, CmdResult};
use dbagent::alert::engine::State;
use dbagent::alert::rules::Matcher;
use dbagent::alert::silence;
use dbagent::state::{StateDb, StateError};

#[derive(Debug, clap::Subcommand)]
pub enum AlertsCommand {
    /// Firing and pending alert instances, as `dbagent run` last evaluated them
    List {
        /// Print the alert instances as JSON
        #[arg(long)]
        json: bool,
    },
    /// Silence the alerts matching every --match for a while (takes effect at the next poll)
    #[command(after_help = "\
Example: dbagent alerts silence --match alertname=TableBloatHigh --match relname=events \\
           --for 2h --comment \"repacking events tonight\"
Matchers: name=value, name!=value, name=~regex, name!~regex (Alertmanager's).")]
    Silence {
        /// A label matcher; repeat for more (all must match)
        #[arg(long = "match", value_name = "MATCHER", required = true)]
        matchers: Vec<String>,
        /// How long, e.g. 30m, 2h, 1d
        #[arg(long = "for", value_name = "DURATION")]
        duration: String,
        /// Why (shown in `alerts silences`)
        #[arg(long)]
        comment: String,
        /// Who (default: $USER)
        #[arg(long)]
        author: Option<String>,
        /// Print the new silence as JSON
        #[arg(long)]
        json: bool,
    },
    /// Silences that are active or ended less than a day ago
    Silences {
        /// Also those that ended long ago
        #[arg(long)]
        all: bool,
        /// Print the silences as JSON
        #[arg(long)]
        json: bool,
    },
    /// End a silence now
    Expire {
        /// The silence id (from `alerts silence` or `alerts silences`)
        id: String,
    },
    /// Send a test notification through a receiver now and show its answer (exit 1 if any
    /// integration failed)
    Test {
        /// The receiver's name in alerts.yml
        #[arg(long)]
        receiver: String,
        /// Print each integration's answer as JSON
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cli: &Cli, cmd: &AlertsCommand) -> CmdResult {
    let code = match cmd {
        AlertsCommand::List { json } => list(cli, *json).context("alerts list"),
        AlertsCommand::Silence {
            matchers,
            duration,
            comment,
            author,
            json,
        } => silence_cmd(cli, matchers, duration, comment, author.as_deref(), *json)
            .context("alerts silence"),
        AlertsCommand::Silences { all, json } => {
            silences(cli, *all, *json).context("alerts silences")
        }
        AlertsCommand::Expire { id } => expire(cli, id).context("alerts expire"),
        AlertsCommand::Test { receiver, json } => test(cli, receiver, *json).context("alerts test"),
    }?;
    Ok(code)
}

fn open_read_only(cli: &Cli) -> anyhow::Result<Option<StateDb>> {
    let config = cli.load_config()?;
    match StateDb::open_read_only(&config.state_dir) {
        Ok(db) => Ok(Some(db)),
        Err(StateError::Missing { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn list(cli: &Cli, json: bool) -> anyhow::Result<ExitCode> {
    let state = match open_read_only(cli)? {
        Some(db) => dbagent::alert::store::load(&db)?,
        None => Default::default(),
    };
    let mut active: Vec<_> = state
        .instances
        .values()
        .filter(|i| i.state != State::Resolved)
        .collect();
    active.sort_by(|a, b| {
        (b.state == State::Firing)
            .cmp(&(a.state == State::Firing))
            .then(a.rule.cmp(&b.rule))
            .then(a.active_since.cmp(&b.active_since))
    });
    if json {
        let out: Vec<_> = active
            .iter()
            .map(|i| {
                json!({
                    "alertname": i.rule,
                    "state": i.state,
                    "labels": i.labels,
                    "annotations": i.annotations,
                    "active_since": i.active_since,
                    "fired_at": i.fired_at,
                    "value": i.value,
                    "fingerprint": i.fingerprint,
                })
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&out)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    if active.is_empty() {
        outln!("no alerts firing or pending")?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![[
        "STATE".to_string(),
        "ALERT".to_string(),
        "SINCE (UTC)".to_string(),
        "VALUE".to_string(),
        "LABELS".to_string(),
    ]];
    for i in active {
        let labels: Vec<String> = i
            .labels
            .iter()
            .filter(|(k, _)| k.as_str() != "alertname")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        rows.push([
            format!("{:?}", i.state).to_lowercase(),
            i.rule.clone(),
            utc(i.fired_at.unwrap_or(i.active_since)),
            format!("{}", i.value),
            labels.join(" "),
        ]);
    }
    out!("{}", table(&rows))?;
    Ok(ExitCode::SUCCESS)
}

fn silence_cmd(
    cli: &Cli,
    raw: &[String],
    duration: &str,
    comment: &str,
    author: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let matchers = raw
        .iter()
        .map(|m| Matcher::parse(m))
        .collect::<Result<Vec<_>, _>>()?;
    let length = dbagent::config::parse_duration(duration)?;
    if length.is_zero() {
        bail!("--for must be longer than 0s");
    }
    if comment.trim().is_empty() {
        bail!("--comment must say why (it is what the next person on call reads)");
    }
    let config = cli.load_config()?;
    let db = StateDb::open(&config.state_dir)?;
    let now = jiff::Timestamp::now();
    let ends = now
        + jiff::SignedDuration::try_from(length)
            .map_err(|_| anyhow::anyhow!("--for {duration} is too long"))?;
    let author = author
        .map(String::from)
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".into());
    let id = silence::create(&db, &matchers, now, ends, &author, comment)?;
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "id": id,
                "matchers": matchers.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
                "starts_at": now,
                "ends_at": ends,
                "created_by": author,
                "comment": comment,
            }))?
        )?;
    } else {
        outln!(
            "silence {id} until {} UTC: {}",
            utc(ends),
            matchers
                .iter()
                .map(|m| m.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn silences(cli: &Cli, all: bool, json: bool) -> anyhow::Result<ExitCode> {
    let Some(db) = open_read_only(cli)? else {
        if json {
            outln!("[]")?;
        } else {
            outln!("no silences")?;
        }
        return Ok(ExitCode::SUCCESS);
    };
    let now = jiff::Timestamp::now();
    let since = (!all).then(|| now - jiff::SignedDuration::from_hours(24));
    let list = silence::list(&db, since)?;
    if json {
        let out: Vec<_> = list
            .iter()
            .map(|s| {
                let mut v = serde_json::to_value(s).unwrap_or_default();
                v["active"] = json!(s.active(now));
                v
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&out)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    if list.is_empty() {
        outln!("no silences")?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![[
        "ID".to_string(),
        "STATE".to_string(),
        "ENDS (UTC)".to_string(),
        "BY".to_string(),
        "MATCHERS".to_string(),
        "COMMENT".to_string(),
    ]];
    for s in &list {
        rows.push([
            s.id.clone(),
            if s.active(now) {
                "active".into()
            } else if s.expired {
                "expired".into()
            } else if s.starts_at > now {
                "pending".into()
            } else {
                "ended".into()
            },
            utc(s.ends_at),
            s.created_by.clone(),
            s.matchers
                .iter()
                .map(|m| m.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            s.comment.clone(),
        ]);
    }
    out!("{}", table(&rows))?;
    Ok(ExitCode::SUCCESS)
}

fn expire(cli: &Cli, id: &str) -> anyhow::Result<ExitCode> {
    let config = cli.load_config()?;
    let db = StateDb::open(&config.state_dir)?;
    if !silence::expire(&db, id)? {
        bail!("no silence with id {id}; `dbagent alerts silences --all` lists them");
    }
    outln!("silence {id} expired")?;
    Ok(ExitCode::SUCCESS)
}

fn test(cli: &Cli, name: &str, json: bool) -> anyhow::Result<ExitCode> {
    let config = cli.load_config()?;
    let Some(file) = dbagent::alert::rules::load_alerts(&config.alerts_file)? else {
        bail!(
            "no alerts file at {}; receivers are defined there",
            config.alerts_file.display()
        );
    };
    let Some(receiver) = file.receiver(name) else {
        let known: Vec<&str> = file.receivers.iter().map(|r| r.name.as_str()).collect();
        bail!(
            "no receiver `{name}` in {} (receivers: {})",
            config.alerts_file.display(),
            if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            }
        );
    };
    let results = super::runtime()?.block_on(dbagent::notify::send_test(receiver));
    let ok = results.iter().all(|(_, r)| r.is_ok());
    if json {
        let out: Vec<_> = results
            .iter()
            .map(|(i, r)| match r {
                Ok(answer) => json!({"integration": i.as_str(), "ok": true, "answer": answer}),
                Err(e) => json!({"integration": i.as_str(), "ok": false, "error": e.to_string()}),
            })
            .collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({"receiver": name, "ok": ok, "results": out}))?
        )?;
    } else {
        for (i, r) in &results {
            match r {
                Ok(answer) => outln!("{name}/{i}: delivered: {answer}")?,
                Err(e) => outln!("{name}/{i}: FAILED: {e}")?,
            }
        }
    }
    if !ok && !json {
        bail!("receiver {name} did not accept the test notification (see above)");
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
