//! A standby's replay position and what may hold replay back, as the standby reports it: for
//! the `standby_replay` check and the `standby` collector, which compare it with the archive.

use tokio_postgres::Client;

use crate::wal::Lsn;

/// Where replay is and what may hold it back, as the standby reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayState {
    pub replay: Lsn,
    pub timeline: u32,
    pub paused: bool,
    /// recovery_min_apply_delay, in seconds.
    pub apply_delay: f64,
    pub seg_size: u64,
}

/// Reads the replay state of a standby (`None` when replay has not started).
pub async fn replay_state(client: &Client) -> Result<Option<ReplayState>, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT pg_last_wal_replay_lsn()::text, pg_is_wal_replay_paused(), \
             (SELECT setting::float8 / 1000 FROM pg_settings WHERE name = 'recovery_min_apply_delay'), \
             (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size')",
            &[],
        )
        .await?;
    let Some(replay) = row.get::<_, Option<String>>(0).and_then(|l| Lsn::parse(&l)) else {
        return Ok(None);
    };
    // The timeline of the last restartpoint: a standby follows it or a newer one. Needs
    // pg_monitor on some versions; without it every timeline counts.
    let timeline = client
        .query_one(
            "SELECT timeline_id::bigint FROM pg_control_checkpoint()",
            &[],
        )
        .await
        .ok()
        .and_then(|r| u32::try_from(r.get::<_, i64>(0)).ok())
        .unwrap_or(0);
    Ok(Some(ReplayState {
        replay,
        timeline,
        paused: row.get(1),
        apply_delay: row.get::<_, Option<f64>>(2).unwrap_or(0.0),
        seg_size: row
            .get::<_, Option<i64>>(3)
            .and_then(|s| u64::try_from(s).ok())
            .unwrap_or(16 << 20),
    }))
}
