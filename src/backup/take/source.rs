//! Where a backup reads from (`backup.from`): the primary of `postgres.conninfo`, or a standby
//! of it (`backup.standby_conninfo`), so that the backup's I/O does not compete with production.
//!
//! A standby is used only when it is one of *this* primary (in recovery, same system
//! identifier), its replay is at most `backup.standby_max_lag` bytes behind the primary's
//! current WAL position, and the primary will let dbagent switch WAL (`pg_switch_wal()`, which
//! needs superuser or EXECUTE on it). Otherwise `standby` refuses and `prefer-standby` backs up
//! the primary and says why.
//!
//! What PostgreSQL requires of a backup taken on a standby: the standby does not archive, and
//! the backup's last WAL segment is usually still being filled on the primary. So when
//! pg_basebackup is done dbagent asks the primary to switch WAL; the segment holding the stop
//! LSN is then archived by the primary, and the usual wait for the WAL from start to stop in the
//! repository applies. A standby's backup starts at its latest restartpoint, which can only
//! follow a checkpoint of the primary: with `backup.checkpoint: fast` dbagent first asks the
//! primary for a CHECKPOINT (if its role may) and waits briefly for the standby to replay it,
//! so that an idle primary does not make the backup start far back in the WAL.

use std::time::{Duration, Instant};

use super::error::BackupError;
use super::facts::{ServerFacts, server_facts};
use crate::backup::manifest::TakenFrom;
use crate::config::{BackupFrom, Checkpoint};
use crate::pg::{ConnInfo, PgTarget, error_detail};
use crate::units::human_bytes;
use crate::wal::Lsn;

/// The keywords a standby's conninfo takes from `postgres.conninfo` when it does not set them:
/// who connects and how, never where.
const INHERITED: &[&str] = &[
    "user",
    "password",
    "passfile",
    "dbname",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslcrl",
    "connect_timeout",
    "options",
];

/// How long a fast-checkpoint standby backup waits for the standby to replay the primary's
/// checkpoint before going on with an older restartpoint.
const CHECKPOINT_REPLAY_WAIT: Duration = Duration::from_secs(10);

/// The standby's connection: `standby` completed with the primary's user, database and TLS
/// settings where it does not set them.
pub fn standby_conninfo(primary: &ConnInfo, standby: &ConnInfo) -> ConnInfo {
    let mut info = standby.clone();
    for key in INHERITED {
        if info.get(key).is_none()
            && let Some(v) = primary.get(key)
        {
            info.set(key, v);
        }
    }
    info
}

/// What `backup.from` asks for.
#[derive(Debug, Clone)]
pub struct SourceRequest {
    pub from: BackupFrom,
    /// The standby (already completed by [`standby_conninfo`]); required unless `from` is
    /// primary.
    pub standby: Option<PgTarget>,
    /// Most replay lag, in bytes of WAL behind the primary's current position.
    pub max_lag: u64,
    pub checkpoint: Checkpoint,
}

/// The server a backup reads, and the primary it coordinates with.
#[derive(Debug, Clone)]
pub struct Source {
    /// The server pg_basebackup reads.
    pub target: PgTarget,
    /// What that server told us.
    pub facts: ServerFacts,
    /// The primary's facts (the same as `facts` for a backup of the primary).
    pub primary_facts: ServerFacts,
    /// The primary, when the backup reads a standby: it switches WAL at the end.
    pub primary: Option<PgTarget>,
    /// What the manifest records.
    pub taken_from: TakenFrom,
    /// Why `prefer-standby` backs up the primary instead.
    pub fallback: Option<String>,
}

impl Source {
    /// A backup of the primary (`backup.from: primary`).
    pub fn primary(target: &PgTarget, facts: &ServerFacts) -> Source {
        Source {
            target: target.clone(),
            facts: facts.clone(),
            primary_facts: facts.clone(),
            primary: None,
            taken_from: TakenFrom {
                role: "primary".into(),
                server: target.info().endpoint(),
            },
            fallback: None,
        }
    }

    /// Whether pg_basebackup reads a standby.
    pub fn is_standby(&self) -> bool {
        self.primary.is_some()
    }

    /// Picks the server per `req`: the standby when it can serve, else the primary
    /// (`prefer-standby`) or a refusal (`standby`).
    pub async fn choose(
        primary: &PgTarget,
        primary_facts: ServerFacts,
        req: &SourceRequest,
    ) -> Result<Source, BackupError> {
        let on_primary = Source::primary(primary, &primary_facts);
        if req.from == BackupFrom::Primary {
            return Ok(on_primary);
        }
        let Some(standby) = &req.standby else {
            return Err(BackupError::Refused(format!(
                "backup.from is {} but backup.standby_conninfo is not set",
                req.from.as_str()
            )));
        };
        if primary_facts.in_recovery {
            return Err(BackupError::Refused(format!(
                "backup.from is {}, but postgres.conninfo ({}) is a standby too; point it at the primary, which dbagent asks to switch WAL",
                req.from.as_str(),
                primary.info().endpoint()
            )));
        }
        match standby_facts(primary, &primary_facts, standby, req.max_lag).await {
            Ok(facts) => {
                if req.checkpoint == Checkpoint::Fast {
                    checkpoint_first(primary, standby).await;
                }
                Ok(Source {
                    target: standby.clone(),
                    facts,
                    primary_facts,
                    primary: Some(primary.clone()),
                    taken_from: TakenFrom {
                        role: "standby".into(),
                        server: standby.info().endpoint(),
                    },
                    fallback: None,
                })
            }
            Err(why) if req.from == BackupFrom::PreferStandby => {
                tracing::warn!(standby = %standby.info().endpoint(), "Backing up the primary instead of the standby: {why}");
                Ok(Source {
                    fallback: Some(why),
                    ..on_primary
                })
            }
            Err(why) => Err(BackupError::Refused(format!(
                "backup.from is standby, but {why}; nothing was backed up (backup.from: prefer-standby falls back to the primary)"
            ))),
        }
    }

    /// After pg_basebackup read a standby: has the primary switch WAL, so that the segment
    /// holding the backup's stop LSN is completed and archived.
    pub fn switch_wal(&self) -> Result<(), BackupError> {
        let Some(primary) = &self.primary else {
            return Ok(());
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| BackupError::Refused(format!("cannot start a runtime: {e}")))?;
        rt.block_on(async {
            let client = primary.connect().await?;
            let row = client
                .query_one("SELECT pg_switch_wal()::text", &[])
                .await
                .map_err(|e| {
                    BackupError::Refused(format!(
                        "the backup was read from the standby, but the primary {} did not switch WAL ({}), so its last segment may never be archived; nothing was kept. Grant EXECUTE ON FUNCTION pg_switch_wal() to the role and run the backup again",
                        primary.describe(),
                        error_detail(&e)
                    ))
                })?;
            let at: String = row.get(0);
            tracing::info!(primary = %primary.info().endpoint(), lsn = %at, "Switched WAL on the primary for the standby backup");
            Ok(())
        })
    }
}

/// The standby's facts if it can serve this backup, else why not (one clause, no trailing
/// period).
async fn standby_facts(
    primary: &PgTarget,
    primary_facts: &ServerFacts,
    standby: &PgTarget,
    max_lag: u64,
) -> Result<ServerFacts, String> {
    let at = standby.info().endpoint();
    let facts = server_facts(standby)
        .await
        .map_err(|e| standby_error(&at, &e))?;
    if !facts.in_recovery {
        return Err(format!(
            "the server at backup.standby_conninfo ({at}) is not in recovery: it is not a standby (promoted?)"
        ));
    }
    if facts.system_identifier != primary_facts.system_identifier {
        return Err(format!(
            "the server at backup.standby_conninfo ({at}) is not a standby of this primary (system identifier {}, the primary's is {})",
            facts.system_identifier, primary_facts.system_identifier
        ));
    }
    let client = primary
        .connect()
        .await
        .map_err(|e| format!("cannot check the primary: {e}"))?;
    let row = client
        .query_one(
            "SELECT has_function_privilege('pg_switch_wal()', 'EXECUTE'), \
             pg_current_wal_lsn()::text, current_user::text",
            &[],
        )
        .await
        .map_err(|e| format!("cannot check the primary: {}", error_detail(&e)))?;
    let (may_switch, primary_lsn, role): (bool, String, String) =
        (row.get(0), row.get(1), row.get(2));
    if !may_switch {
        return Err(format!(
            "role {role} may not run pg_switch_wal() on the primary, which a standby backup needs so that its last WAL segment is archived (GRANT EXECUTE ON FUNCTION pg_switch_wal() TO {role})"
        ));
    }
    let replayed = replay_lsn(standby).await?;
    let primary_lsn = Lsn::parse(&primary_lsn)
        .ok_or_else(|| format!("the primary sent a bad LSN {primary_lsn}"))?;
    let lag = replay_lag(primary_lsn, replayed);
    tracing::info!(standby = %at, primary_lsn = %primary_lsn, replayed = ?replayed, lag, "Standby replay lag");
    if lag > max_lag {
        return Err(format!(
            "the standby {at} has replayed WAL up to {} only, {} behind the primary's {primary_lsn} (backup.standby_max_lag is {})",
            replayed.map_or_else(|| "nothing".to_string(), |l| l.to_string()),
            human_bytes(lag),
            human_bytes(max_lag)
        ));
    }
    Ok(facts)
}

/// Why the standby at `at` cannot be used; the connection advice names the standby's setting.
fn standby_error(at: &str, e: &dyn std::fmt::Display) -> String {
    format!("the standby {at} cannot be used: {e}")
        .replace("postgres.conninfo", "backup.standby_conninfo")
}

/// How far the standby's replay is behind the primary's WAL position, in bytes; all of it when
/// the standby has replayed nothing yet.
fn replay_lag(primary: Lsn, replayed: Option<Lsn>) -> u64 {
    primary.0.saturating_sub(replayed.map_or(0, |l| l.0))
}

async fn replay_lsn(standby: &PgTarget) -> Result<Option<Lsn>, String> {
    let at = standby.info().endpoint();
    let client = standby
        .connect()
        .await
        .map_err(|e| standby_error(&at, &e))?;
    let row = client
        .query_one("SELECT pg_last_wal_replay_lsn()::text", &[])
        .await
        .map_err(|e| {
            format!(
                "cannot read the standby's replay position: {}",
                error_detail(&e)
            )
        })?;
    Ok(row
        .get::<_, Option<String>>(0)
        .as_deref()
        .and_then(Lsn::parse))
}

/// Best effort: a CHECKPOINT on the primary (superuser or pg_checkpoint), then a short wait
/// for the standby to replay it, so that the backup's restartpoint is recent.
async fn checkpoint_first(primary: &PgTarget, standby: &PgTarget) {
    let at = async {
        let client = primary.connect().await.map_err(|e| e.to_string())?;
        client
            .batch_execute("CHECKPOINT")
            .await
            .map_err(|e| error_detail(&e))?;
        let row = client
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await
            .map_err(|e| error_detail(&e))?;
        Ok::<Option<Lsn>, String>(Lsn::parse(&row.get::<_, String>(0)))
    }
    .await;
    let target = match at {
        Ok(Some(lsn)) => lsn,
        Ok(None) => return,
        Err(e) => {
            tracing::info!(primary = %primary.info().endpoint(), "Could not run CHECKPOINT on the primary ({e}); the standby backup starts at the standby's latest restartpoint");
            return;
        }
    };
    let deadline = Instant::now() + CHECKPOINT_REPLAY_WAIT;
    while Instant::now() < deadline {
        match replay_lsn(standby).await {
            Ok(Some(replayed)) if replayed >= target => return,
            Err(_) => return,
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    tracing::info!(standby = %standby.info().endpoint(), "The standby has not replayed the primary's checkpoint yet; going on");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> ConnInfo {
        ConnInfo::parse(s).expect("conninfo")
    }

    #[test]
    fn a_standby_conninfo_takes_who_and_how_from_the_primary_but_never_where() {
        let primary = parse(
            "host=db1 port=5432 user=dbagent dbname=postgres sslmode=require target_session_attrs=read-write",
        );
        let standby = standby_conninfo(&primary, &parse("host=db2 port=5433 sslmode=disable"));
        assert_eq!(standby.get("host"), Some("db2"));
        assert_eq!(standby.get("port"), Some("5433"));
        assert_eq!(standby.get("user"), Some("dbagent"));
        assert_eq!(standby.get("dbname"), Some("postgres"));
        assert_eq!(
            standby.get("sslmode"),
            Some("disable"),
            "the standby's own wins"
        );
        assert_eq!(standby.get("target_session_attrs"), None);
        let bare = standby_conninfo(&parse("user=a"), &parse("host=db2"));
        assert_eq!(
            bare.get("port"),
            None,
            "no port: libpq's default, not the primary's"
        );
    }

    #[test]
    fn a_standby_error_points_at_the_standby_setting() {
        let msg = standby_error(
            "10.0.0.2:5432",
            &"connection refused; Check host and port in postgres.conninfo",
        );
        assert_eq!(
            msg,
            "the standby 10.0.0.2:5432 cannot be used: connection refused; Check host and port in backup.standby_conninfo"
        );
    }

    #[test]
    fn replay_lag_is_the_distance_to_the_primary_and_all_of_it_before_any_replay() {
        let l = |s| Lsn::parse(s).expect("lsn");
        assert_eq!(replay_lag(l("0/3000000"), Some(l("0/2000000"))), 16 << 20);
        assert_eq!(replay_lag(l("0/3000000"), Some(l("0/3000000"))), 0);
        // The standby's replay can be reported ahead of a primary LSN read a moment earlier.
        assert_eq!(replay_lag(l("0/3000000"), Some(l("0/3000100"))), 0);
        assert_eq!(replay_lag(l("0/3000000"), None), 0x300_0000);
    }
}
