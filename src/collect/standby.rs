//! A standby's replay against the archive: how long the archive has held WAL this standby has
//! not replayed. A standby fed from the archive whose restore_command keeps failing (the
//! repository or the configuration unreadable) stays up, as it should, and falls silently
//! behind; this is the signal that it did. 0 when it has replayed everything archived. Only on
//! a standby whose agent knows the repository.

use super::{CollectError, CollectFuture, Collector, Ctx, Family, Output};
use crate::metrics::catalogue;
use crate::wal::replay::replay_state;

/// The `standby` collector.
pub struct Standby;

impl Collector for Standby {
    fn name(&self) -> &'static str {
        "standby"
    }

    fn collect<'a>(&'a mut self, ctx: &'a Ctx<'a>) -> CollectFuture<'a> {
        Box::pin(async move {
            let (true, Some(repo)) = (ctx.in_recovery, ctx.repository) else {
                return Ok(Output::default());
            };
            let Some(state) = replay_state(ctx.client)
                .await
                .map_err(|e| CollectError::query("standby replay position", &e))?
            else {
                return Ok(Output::default());
            };
            let repo = repo.clone();
            let location = repo.location().display().to_string();
            let now = std::time::SystemTime::now();
            let found = tokio::task::spawn_blocking(move || {
                crate::wal::unreplayed(&repo, state.replay, state.timeline, state.seg_size)
                    .map(|u| u.map(|u| u.stalled_seconds(now, state.apply_delay)))
            })
            .await
            .map_err(|e| CollectError::Other(e.to_string()))?
            .map_err(|e| {
                CollectError::Other(format!(
                    "cannot compare replay with the archive {location}: {e}"
                ))
            })?;
            Ok(Output::families(vec![
                Family::of(&catalogue::DBAGENT_STANDBY_UNREPLAYED_ARCHIVE_AGE_SECONDS)
                    .with(&[], found.unwrap_or(0.0)),
            ]))
        })
    }
}
