//! Recovery objectives as signals, from the repository and the agent's state rather than from
//! PostgreSQL: the newest complete backup (when it finished, how long it took, its age), the
//! newest archived WAL segment (its age is the recovery point objective as far as the archive
//! can tell) and the last restore drill (result, measured RTO, age). Alert rules read the ages
//! directly (`dbagent_backup_age_seconds > 93600`) or compare them with the configured
//! objectives (`dbagent_rpo_seconds > dbagent_rpo_target_seconds`).
//!
//! RPO is the age of the newest archived WAL, as long as the server has written WAL the archive
//! lacks. On a primary whose current WAL file is the newest archived one (the server switched
//! and archived its last segment and has written nothing important since, as an idle cluster
//! with archive_timeout does), nothing is at risk and RPO is 0: otherwise a quiet night would
//! read as an ever-growing RPO and page someone for data that does not exist.

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

/// Whether everything the server wrote is archived: its current WAL file (the one holding the
/// write position; at a segment boundary the previous one) is not newer than the newest
/// archived file. Names compare as text: timeline, then log, then segment, fixed-width hex.
pub fn fully_archived(current_wal_file: &str, newest_archived: &str) -> bool {
    let newest = newest_archived.get(..24).unwrap_or(newest_archived);
    current_wal_file.len() == 24 && current_wal_file <= newest
}

/// The newest file of the WAL archive (by name: timeline, then position) and when it was
/// archived (its mtime), if the archive holds any.
pub fn newest_archived(repo: &Repo) -> std::io::Result<Option<(String, jiff::Timestamp)>> {
    let segments = crate::wal::list_segments(repo)?;
    let Some(newest) = segments.iter().max_by(|a, b| a.name.cmp(&b.name)) else {
        return Ok(None);
    };
    let Some((file, _)) = crate::wal::find(repo, newest)? else {
        return Ok(None);
    };
    let mtime = std::fs::metadata(&file)?.modified()?;
    let t = jiff::Timestamp::try_from(mtime).map_err(std::io::Error::other)?;
    Ok(Some((newest.name.clone(), t)))
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
        if let Some((name, t)) = newest_archived(&repo)
            .map_err(|e| format!("cannot list the WAL archive in {}: {e}", path.display()))?
        {
            seen.wal = Some((name, age(t)));
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
            // A standby has no write position of its own; its RPO is the archive's age.
            let current_wal_file: Option<String> = if ctx.in_recovery {
                None
            } else {
                Some(
                    ctx.client
                        .query_one("SELECT pg_walfile_name(pg_current_wal_lsn())", &[])
                        .await
                        .map_err(|e| CollectError::query("current WAL file", &e))?
                        .get(0),
                )
            };
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
            if let Some((newest, age)) = &seen.wal {
                let rpo = match &current_wal_file {
                    Some(current) if fully_archived(current, newest) => 0.0,
                    _ => *age,
                };
                families.push(
                    Family::gauge(
                        "dbagent_rpo_seconds",
                        "Age of the newest WAL segment in the archive while the server has WAL the archive lacks (0 when everything it wrote is archived): the data at risk if the server were lost now (recovery point).",
                    )
                    .with_baseline()
                    .with(&[], rpo),
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

#[cfg(test)]
mod tests {
    use super::fully_archived;

    #[test]
    fn rpo_is_zero_only_when_the_current_wal_file_is_archived() {
        let n = "000000010000000000000005";
        assert!(fully_archived(n, n));
        assert!(fully_archived(
            n,
            "000000010000000000000005.00000028.backup"
        ));
        assert!(fully_archived("000000010000000000000004", n));
        assert!(!fully_archived("000000010000000000000006", n));
        // A newer timeline on the server than in the archive: not archived.
        assert!(!fully_archived("000000020000000000000005", n));
        assert!(!fully_archived("", n));
    }
}
