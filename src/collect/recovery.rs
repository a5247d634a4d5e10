//! Recovery objectives as signals, from the repository and the agent's state rather than from
//! PostgreSQL: the newest complete backup (when it finished, how long it took, its age), the
//! newest archived WAL segment (its age is the recovery point objective as far as the archive
//! can tell) and the last restore drill (result, measured RTO, age). Alert rules read the ages
//! directly (`dbagent_backup_age_seconds > 93600`).

use std::path::PathBuf;

use super::{CollectError, CollectFuture, Collector, Ctx, Family, Output};
use crate::repo::Repo;

/// The `recovery` collector.
pub struct Recovery;

struct Seen {
    backup: Option<(f64, f64, f64, usize)>,
    wal: Option<(String, f64)>,
    drill: Option<crate::drill::LastDrill>,
}

fn read(repo: Option<PathBuf>, state_dir: Option<PathBuf>) -> Result<Seen, String> {
    let now = jiff::Timestamp::now();
    let age = |t: jiff::Timestamp| (now - t).total(jiff::Unit::Second).unwrap_or(0.0).max(0.0);
    let mut seen = Seen {
        backup: None,
        wal: None,
        drill: None,
    };
    if let Some(path) = repo {
        let repo = Repo::at(&path);
        let backups = crate::backup::manifest::list(&repo).map_err(|e| e.to_string())?;
        if let Some(m) = backups.last() {
            seen.backup = Some((
                m.stop_time.as_millisecond() as f64 / 1000.0,
                m.duration_seconds(),
                age(m.stop_time),
                backups.len(),
            ));
        }
        let segments = crate::wal::list_segments(&repo)
            .map_err(|e| format!("cannot list the WAL archive in {}: {e}", path.display()))?;
        if let Some(newest) = segments.iter().max_by(|a, b| a.name.cmp(&b.name))
            && let Ok(Some((file, _))) = crate::wal::find(&repo, newest)
            && let Ok(mtime) = std::fs::metadata(&file).and_then(|m| m.modified())
            && let Ok(t) = jiff::Timestamp::try_from(mtime)
        {
            seen.wal = Some((newest.name.clone(), age(t)));
        }
    }
    if let Some(dir) = state_dir {
        seen.drill = crate::drill::last(&dir).map_err(|e| e.to_string())?;
    }
    Ok(seen)
}

impl Collector for Recovery {
    fn name(&self) -> &'static str {
        "recovery"
    }

    fn collect<'a>(&'a mut self, ctx: &'a Ctx<'a>) -> CollectFuture<'a> {
        Box::pin(async move {
            let repo = ctx.repository.map(PathBuf::from);
            let state = ctx.state_dir.map(PathBuf::from);
            let seen = tokio::task::spawn_blocking(move || read(repo, state))
                .await
                .map_err(|e| CollectError::Other(e.to_string()))?
                .map_err(CollectError::Other)?;
            let mut families = Vec::new();
            let count = seen.backup.as_ref().map_or(0, |b| b.3);
            families.push(
                Family::gauge("dbagent_backups", "Complete backups in the repository.")
                    .with(&[], count as f64),
            );
            if let Some((finished, duration, age, _)) = seen.backup {
                families.push(
                    Family::gauge(
                        "dbagent_backup_last_success_timestamp_seconds",
                        "When the newest complete backup finished, as a Unix timestamp.",
                    )
                    .with(&[], finished),
                );
                families.push(
                    Family::gauge(
                        "dbagent_backup_duration_seconds",
                        "How long the newest complete backup took.",
                    )
                    .with(&[], duration),
                );
                families.push(
                    Family::gauge(
                        "dbagent_backup_age_seconds",
                        "Seconds since the newest complete backup finished.",
                    )
                    .with(&[], age),
                );
            }
            if let Some((_, age)) = &seen.wal {
                families.push(
                    Family::gauge(
                        "dbagent_rpo_seconds",
                        "Age of the newest WAL segment in the archive: the data at risk if the server were lost now (recovery point).",
                    )
                    .with_baseline()
                    .with(&[], *age),
                );
            }
            if let Some(d) = &seen.drill {
                let age = (ctx.now - d.finished_at)
                    .total(jiff::Unit::Second)
                    .unwrap_or(0.0)
                    .max(0.0);
                families.push(
                    Family::gauge(
                        "dbagent_drill_last_result",
                        "1 when the last restore drill succeeded, 0 when it failed.",
                    )
                    .with(&[], if d.ok { 1.0 } else { 0.0 }),
                );
                families.push(
                    Family::gauge(
                        "dbagent_drill_age_seconds",
                        "Seconds since the last restore drill finished (whatever its result).",
                    )
                    .with(&[], age),
                );
                if d.ok {
                    families.push(
                        Family::gauge(
                            "dbagent_drill_last_success_timestamp_seconds",
                            "When the last restore drill finished, if it succeeded, as a Unix timestamp.",
                        )
                        .with(&[], d.finished_at.as_millisecond() as f64 / 1000.0),
                    );
                    if let Some(rto) = d.rto_seconds {
                        families.push(
                            Family::gauge(
                                "dbagent_drill_rto_seconds",
                                "Measured recovery time of the last successful drill: from the start of the restore to the restored server answering queries.",
                            )
                            .with(&[], rto),
                        );
                    }
                }
            }
            Ok(Output::families(families))
        })
    }
}
