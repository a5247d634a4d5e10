//! `dbagent jobs list`: the history of the jobs `dbagent run` ran on its schedule (backup,
//! verify, expire, drill, wal_verify), read from the agent's state without writing.

use std::process::ExitCode;

use anyhow::Context;
use clap::builder::TypedValueParser as _;

use super::backups::{table, utc};
use super::{Cli, CmdResult, human_duration};
use dbagent::schedule::history::{self, JobKind};

#[derive(Debug, clap::Subcommand)]
pub enum JobsCommand {
    /// The runs of scheduled jobs, newest first: when, how it ended, how long it took, and why
    #[command(after_help = "\
Scheduled jobs (schedule: in dbagent.yml) are run by `dbagent run` on the leader agent and
recorded in STATE_DIR/state.db. STATUS is running, succeeded, failed (DETAIL has the error;
a run the agent did not see end, because it was killed or the machine stopped, is failed
with `interrupted`) or skipped (a time missed while the agent was down with
schedule.on_missed: skip, or times that passed while the previous run still ran). TRIGGER
is schedule, or missed for the one run made at start-up for missed times.

--json prints an array of objects: id, job, trigger, scheduled_for, started_at,
finished_at, duration_seconds, status, pid, detail (times RFC 3339 UTC, null when unknown).
Exit 0 (also when nothing has run yet); 1 when the state database cannot be read.")]
    List {
        /// Only this job: backup, backup_incremental, verify, expire, drill or wal_verify
        #[arg(long, value_name = "JOB", value_parser = job_kind_parser())]
        job: Option<JobKind>,
        /// Show at most N runs
        #[arg(long, value_name = "N", default_value_t = 50)]
        limit: usize,
        /// Print a JSON array (one object per run)
        #[arg(long)]
        json: bool,
    },
}

/// `--job NAME`: one of the job kinds' names, checked by clap (so `--help` lists them).
fn job_kind_parser() -> impl clap::builder::TypedValueParser<Value = JobKind> {
    clap::builder::PossibleValuesParser::new(JobKind::ALL.map(JobKind::as_str)).map(|name| {
        JobKind::ALL
            .into_iter()
            .find(|k| k.as_str() == name)
            .unwrap_or(JobKind::ALL[0])
    })
}

pub fn run(cli: &Cli, cmd: &JobsCommand) -> CmdResult {
    match cmd {
        JobsCommand::List { job, limit, json } => {
            list(cli, *job, *limit, *json).context("jobs list")?
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn list(cli: &Cli, job: Option<JobKind>, limit: usize, json: bool) -> anyhow::Result<()> {
    let config = cli.load_config()?;
    let rows = history::read(&config.state_dir, job, limit)?;
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&rows.unwrap_or_default())?
        )?;
        return Ok(());
    }
    let Some(rows) = rows else {
        outln!(
            "no job has run yet ({} has no state database; `dbagent run` creates it)",
            config.state_dir.display()
        )?;
        return Ok(());
    };
    if rows.is_empty() {
        let scheduled: Vec<&str> = [
            ("backup", config.schedule.backup.is_some()),
            ("verify", config.schedule.verify.is_some()),
            ("expire", config.schedule.expire.is_some()),
            ("drill", config.schedule.drill.is_some()),
            ("wal_verify", config.schedule.wal_verify.is_some()),
        ]
        .iter()
        .filter(|(_, on)| *on)
        .map(|(n, _)| *n)
        .collect();
        if scheduled.is_empty() {
            outln!(
                "no job has run yet, and none is scheduled (set schedule.backup etc. in dbagent.yml)"
            )?;
        } else {
            outln!("no job has run yet (scheduled: {})", scheduled.join(", "))?;
        }
        return Ok(());
    }
    let mut out = vec![[
        "ID".to_string(),
        "JOB".into(),
        "STARTED (UTC)".into(),
        "DURATION".into(),
        "STATUS".into(),
        "TRIGGER".into(),
        "DETAIL".into(),
    ]];
    for r in &rows {
        out.push([
            r.id.to_string(),
            r.job.clone(),
            utc(r.started_at),
            r.duration_seconds
                .map(human_duration)
                .unwrap_or_else(|| "-".into()),
            r.status.clone(),
            r.trigger.clone(),
            r.detail.clone().unwrap_or_default(),
        ]);
    }
    out!("{}", table(&out))?;
    Ok(())
}
