//! Recovery objectives as signals, from the repository, the server and the agent's state: the
//! newest complete backup (when it finished, how long it took, its age), the recovery point
//! (`dbagent_rpo_seconds`, see [`crate::rpo`]: how long committed work has been waiting for the
//! archive, 0 when nothing committed is unarchived, judged along the server's own timeline
//! history) and the last restore drill (result, measured RTO, age). Alert rules read the ages
//! directly (`dbagent_backup_age_seconds > 93600`) or compare them with the configured
//! objectives (`dbagent_rpo_seconds > dbagent_rpo_target_seconds`).
//!
//! The collector keeps the poll history that dates the oldest unarchived commit
//! ([`crate::rpo::Tracker`]) and adds the RPO's details to `/api/v1/status` (section
//! `recovery`).

use std::path::PathBuf;

use super::{CollectError, CollectFuture, Collector, Ctx, Family, Output};
use crate::metrics::catalogue;
use crate::repo::Repo;

/// The `recovery` collector.
#[derive(Default)]
pub struct Recovery {
    tracker: crate::rpo::Tracker,
}

struct Seen {
    backup: Option<(f64, f64, f64, usize)>,
    archive: Option<Result<crate::rpo::ArchiveView, String>>,
    drill: Option<crate::drill::LastDrill>,
    follower: Option<Follower>,
}

use crate::wal::xacts::Follower;

fn read(
    repo: Option<Repo>,
    state_dir: Option<PathBuf>,
    server: Option<(u64, u32)>,
    mut follower: Option<Follower>,
) -> Result<Seen, String> {
    let now = jiff::Timestamp::now();
    let age = |t: jiff::Timestamp| (now - t).total(jiff::Unit::Second).unwrap_or(0.0).max(0.0);
    let mut seen = Seen {
        backup: None,
        archive: None,
        drill: None,
        follower: None,
    };
    if let Some(repo) = repo {
        let backups = crate::backup::manifest::list(&repo).map_err(|e| e.to_string())?;
        if let Some(m) = backups.last() {
            seen.backup = Some((
                m.stop_time.as_millisecond() as f64 / 1000.0,
                m.duration_seconds(),
                age(m.stop_time),
                backups.len(),
            ));
        }
        if let Some((seg_size, tli)) = server {
            seen.archive = Some(
                crate::rpo::read_archive(&repo, seg_size, tli, &mut follower).map_err(|e| {
                    format!(
                        "cannot read the WAL archive in {}: {e}",
                        repo.location().display()
                    )
                }),
            );
        }
    }
    seen.follower = follower;
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
            let repo = ctx.repository.cloned();
            let state = ctx.state_dir.map(PathBuf::from);
            let server = if repo.is_some() {
                Some(
                    crate::rpo::ServerWal::read(ctx.client)
                        .await
                        .map_err(|detail| CollectError::Query {
                            what: "WAL position and transaction counter",
                            detail,
                        })?,
                )
            } else {
                None
            };
            let key = server.as_ref().map(|s| (s.seg_size, s.timeline));
            let follower = self.tracker.follower.take();
            let mut seen = tokio::task::spawn_blocking(move || read(repo, state, key, follower))
                .await
                .map_err(|e| CollectError::Other(e.to_string()))?
                .map_err(CollectError::Other)?;
            self.tracker.follower = seen.follower.take();
            let rpo = match (&server, seen.archive.take()) {
                (Some(server), Some(Ok(archive))) => {
                    let rpo = crate::rpo::assess(
                        ctx.client,
                        server,
                        &archive,
                        Some(&self.tracker),
                        ctx.now,
                    )
                    .await;
                    let covered = archive
                        .newest
                        .as_ref()
                        .map(|n| crate::wal::Lsn((n.segno + 1) * server.seg_size));
                    self.tracker.record(ctx.now, server, covered);
                    Some(rpo)
                }
                (_, Some(Err(e))) => return Err(CollectError::Other(e)),
                _ => None,
            };
            let mut families = Vec::new();
            let count = seen.backup.as_ref().map_or(0, |b| b.3);
            families.push(Family::of(&catalogue::DBAGENT_BACKUPS).with(&[], count as f64));
            if let Some((finished, duration, age, _)) = seen.backup {
                families.push(
                    Family::of(&catalogue::DBAGENT_BACKUP_LAST_SUCCESS_TIMESTAMP_SECONDS)
                        .with(&[], finished),
                );
                families.push(
                    Family::of(&catalogue::DBAGENT_BACKUP_DURATION_SECONDS).with(&[], duration),
                );
                families.push(Family::of(&catalogue::DBAGENT_BACKUP_AGE_SECONDS).with(&[], age));
            }
            if let Some(rpo) = &rpo {
                families.push(
                    Family::of(&catalogue::DBAGENT_RPO_SECONDS)
                        .with_baseline()
                        .with(&[], rpo.seconds),
                );
            }
            if let Some(d) = &seen.drill {
                let age = (ctx.now - d.finished_at)
                    .total(jiff::Unit::Second)
                    .unwrap_or(0.0)
                    .max(0.0);
                families.push(
                    Family::of(&catalogue::DBAGENT_DRILL_LAST_RESULT)
                        .with(&[], if d.ok { 1.0 } else { 0.0 }),
                );
                families.push(Family::of(&catalogue::DBAGENT_DRILL_AGE_SECONDS).with(&[], age));
                if d.ok {
                    families.push(
                        Family::of(&catalogue::DBAGENT_DRILL_LAST_SUCCESS_TIMESTAMP_SECONDS)
                            .with(&[], d.finished_at.as_millisecond() as f64 / 1000.0),
                    );
                    if let Some(rto) = d.rto_seconds {
                        families
                            .push(Family::of(&catalogue::DBAGENT_DRILL_RTO_SECONDS).with(&[], rto));
                    }
                }
            }
            Ok(Output {
                families,
                status: rpo.and_then(|r| serde_json::to_value(r).ok()),
            })
        })
    }
}
