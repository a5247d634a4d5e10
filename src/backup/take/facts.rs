//! What a backup learns from the server before it starts: version, system identifier, WAL
//! segment size, tablespaces, archive mode, and which algorithms the server can compress with.

use super::error::BackupError;
use crate::backup::manifest::Tablespace;
use crate::pg::{PgTarget, ServerVersion};
use crate::repo::Compression;

/// What the server told us before the backup.
#[derive(Debug, Clone)]
pub struct ServerFacts {
    pub version: ServerVersion,
    pub system_identifier: u64,
    pub wal_segment_size: u64,
    pub tablespaces: Vec<Tablespace>,
    /// Estimated size of the backup (all tablespaces), for progress.
    pub estimated_size: u64,
    pub archive_mode: String,
    pub in_recovery: bool,
    /// Algorithms the server can compress a base backup with (PostgreSQL 15+, by its build).
    pub server_compression: Vec<Compression>,
}

/// Reads what a backup needs to know from the server.
pub async fn server_facts(target: &PgTarget) -> Result<ServerFacts, BackupError> {
    let client = target.connect().await?;
    let q = |what: &'static str| move |e: tokio_postgres::Error| target.query_error(what, &e);
    let version = ServerVersion::detect(&client)
        .await
        .map_err(q("server version"))?;
    let row = client
        .query_one(
            "SELECT (SELECT system_identifier FROM pg_control_system())::text, \
             (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'), \
             current_setting('archive_mode'), pg_is_in_recovery(), \
             (SELECT coalesce(sum(pg_tablespace_size(oid)), 0)::bigint FROM pg_tablespace), \
             (SELECT array_to_string(enumvals, ',') FROM pg_settings WHERE name = 'wal_compression')",
            &[],
        )
        .await
        .map_err(q("backup facts"))?;
    let sysid: String = row.get(0);
    // The server's build options are not visible over SQL, but wal_compression offers lz4 and
    // zstd exactly when the server was built with them, and base backups (15+) use the same
    // libraries.
    let wal_compression: Option<String> = row.get(5);
    let server_compression = server_compression(version.major(), wal_compression.as_deref());
    let tablespaces = client
        .query(
            "SELECT oid::bigint, spcname::text, pg_tablespace_location(oid) FROM pg_tablespace \
             WHERE spcname NOT IN ('pg_default', 'pg_global') ORDER BY oid",
            &[],
        )
        .await
        .map_err(q("tablespaces"))?
        .iter()
        .map(|r| Tablespace {
            oid: u32::try_from(r.get::<_, i64>(0)).unwrap_or(0),
            name: r.get(1),
            location: r.get(2),
        })
        .collect();
    Ok(ServerFacts {
        version,
        system_identifier: sysid.parse().map_err(|_| {
            BackupError::Refused(format!(
                "the server returned an invalid system identifier `{sysid}`"
            ))
        })?,
        wal_segment_size: u64::try_from(row.get::<_, i64>(1)).unwrap_or(16 << 20),
        archive_mode: row.get(2),
        in_recovery: row.get(3),
        estimated_size: u64::try_from(row.get::<_, i64>(4)).unwrap_or(0),
        tablespaces,
        server_compression,
    })
}

/// The algorithms a server of `major` can compress a base backup with, from the values its
/// `wal_compression` accepts (`pg_settings.enumvals`, comma-separated): none before 15.
fn server_compression(major: u32, wal_compression: Option<&str>) -> Vec<Compression> {
    if major >= 15 {
        wal_compression
            .unwrap_or_default()
            .split(',')
            .filter_map(|v| match v {
                "zstd" => Some(Compression::Zstd),
                "lz4" => Some(Compression::Lz4),
                _ => None,
            })
            .collect()
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_compression_is_what_wal_compression_offers_from_15_on() {
        let all = Some("pglz,lz4,zstd,on,off");
        assert_eq!(
            server_compression(15, all),
            vec![Compression::Lz4, Compression::Zstd]
        );
        assert_eq!(
            server_compression(18, Some("pglz,zstd")),
            vec![Compression::Zstd]
        );
        assert_eq!(server_compression(16, Some("pglz,on,off")), vec![]);
        assert_eq!(server_compression(15, None), vec![]);
    }

    #[test]
    fn servers_before_15_never_compress_a_base_backup() {
        assert_eq!(server_compression(14, Some("pglz,lz4,zstd")), vec![]);
        assert_eq!(server_compression(13, Some("lz4")), vec![]);
    }
}
