//! The data directory of the server that runs `wal-push` (archive_command) and `wal-get`
//! (restore_command). PostgreSQL runs both with its data directory as the working directory,
//! so they can ask it two things no WAL file answers:
//!
//! - **which cluster is archiving**: the control file (`global/pg_control`) holds the system
//!   identifier. A timeline history file or a backup history file does not name its cluster,
//!   and a promoted standby offers its new timeline's history file before anything else, so
//!   wal-push binds an empty repository from the control file, whatever file comes first;
//! - **what the server is doing**: `standby.signal` means standby mode, in which PostgreSQL
//!   retries a failed restore_command for ever (so an unreadable repository must be a retry,
//!   not a shutdown), `recovery.signal` alone means a targeted restore, which must abort rather
//!   than end short of its target when the archive cannot be read.
//!
//! Where the working directory is not a data directory (a command run by hand), the configured
//! `postgres.pgdata` is used, when it is one.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::name::{WalFileKind, WalName};

/// The control file, relative to the data directory.
pub const CONTROL_FILE: &str = "global/pg_control";
/// The signal file of standby mode.
pub const STANDBY_SIGNAL: &str = "standby.signal";
/// The signal file of targeted recovery (a restore).
pub const RECOVERY_SIGNAL: &str = "recovery.signal";

/// Why the control file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("cannot read the control file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is not a PostgreSQL control file: {why}")]
    NotControlFile { path: PathBuf, why: String },
}

/// What the control file and its data directory say about the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlData {
    /// The control file read.
    pub path: PathBuf,
    pub system_identifier: u64,
    /// `pg_control_version` (1300 for PostgreSQL 13 to 16, 1700 for 17, 1800 for 18).
    pub pg_control_version: u32,
    pub catalog_version: u32,
    /// The major version, from `PG_VERSION` (or the control file format where it tells).
    pub pg_major: Option<u32>,
    /// The data directory.
    pub datadir: PathBuf,
}

impl ControlData {
    /// The WAL segment size, from the size of the segment files in `pg_wal` (every one is
    /// exactly one segment long); `None` when pg_wal holds no segment file. Lists pg_wal, so
    /// it is asked only when needed (binding a repository from a history file).
    pub fn wal_segment_size(&self) -> Option<u64> {
        segment_size_in(&self.datadir.join("pg_wal"))
    }
}

/// The server's mode, from its signal files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `standby.signal`: PostgreSQL retries a failed restore_command for ever.
    Standby,
    /// `recovery.signal` without `standby.signal`: a restore, which a failure must abort.
    Restore,
    /// No signal file: the server is not in archive recovery (or no longer: it was promoted).
    NotInRecovery,
}

/// A PostgreSQL data directory (one holding `global/pg_control`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    path: PathBuf,
}

impl DataDir {
    /// `dir`, if it is a data directory.
    pub fn at(dir: &Path) -> Option<DataDir> {
        if dir.as_os_str().is_empty() || !dir.join(CONTROL_FILE).is_file() {
            return None;
        }
        let path = if dir.is_absolute() {
            dir.to_path_buf()
        } else {
            std::env::current_dir()
                .map(|cwd| cwd.join(dir))
                .unwrap_or_else(|_| dir.to_path_buf())
        };
        Some(DataDir { path })
    }

    /// The working directory if it is a data directory (archive_command and restore_command
    /// run in it), else the first of `others` that is one.
    pub fn locate<'a>(others: impl IntoIterator<Item = &'a Path>) -> Option<DataDir> {
        std::env::current_dir()
            .ok()
            .and_then(|cwd| DataDir::at(&cwd))
            .or_else(|| others.into_iter().find_map(DataDir::at))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The server's mode from its signal files (`standby.signal` wins, as in PostgreSQL).
    pub fn mode(&self) -> Mode {
        if self.path.join(STANDBY_SIGNAL).exists() {
            Mode::Standby
        } else if self.path.join(RECOVERY_SIGNAL).exists() {
            Mode::Restore
        } else {
            Mode::NotInRecovery
        }
    }

    /// Reads the control file (system identifier, format) and `PG_VERSION`.
    pub fn control(&self) -> Result<ControlData, DataDirError> {
        let path = self.path.join(CONTROL_FILE);
        let io_err = |source| DataDirError::Io {
            path: path.clone(),
            source,
        };
        let mut head = [0u8; 16];
        let mut file = std::fs::File::open(&path).map_err(io_err)?;
        file.read_exact(&mut head).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                DataDirError::NotControlFile {
                    path: path.clone(),
                    why: "shorter than 16 bytes".into(),
                }
            } else {
                io_err(e)
            }
        })?;
        let (system_identifier, pg_control_version, catalog_version) = parse_control(&head)
            .map_err(|why| DataDirError::NotControlFile {
                path: path.clone(),
                why,
            })?;
        let pg_major = std::fs::read_to_string(self.path.join("PG_VERSION"))
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .or_else(|| major_of_control_version(pg_control_version));
        Ok(ControlData {
            path,
            system_identifier,
            pg_control_version,
            catalog_version,
            pg_major,
            datadir: self.path.clone(),
        })
    }
}

/// The system identifier, `pg_control_version` and catalog version at the start of a control
/// file (little-endian, as on every platform dbagent runs on), checked for plausibility.
pub fn parse_control(head: &[u8]) -> Result<(u64, u32, u32), String> {
    let (Some(sysid), Some(version), Some(catalog)) = (
        head.get(0..8).and_then(|b| b.try_into().ok()),
        head.get(8..12).and_then(|b| b.try_into().ok()),
        head.get(12..16).and_then(|b| b.try_into().ok()),
    ) else {
        return Err(format!("{} bytes, a control file has 8192", head.len()));
    };
    let sysid = u64::from_le_bytes(sysid);
    let version = u32::from_le_bytes(version);
    let catalog = u32::from_le_bytes(catalog);
    // pg_control_version has been 3 or 4 digits since PostgreSQL 8; 13 wrote 1300, 18 1800.
    if !(900..10_000).contains(&version) {
        return Err(format!("implausible pg_control_version {version}"));
    }
    if sysid == 0 {
        return Err("system identifier 0".into());
    }
    Ok((sysid, version, catalog))
}

/// The major version a control file format belongs to, where only one major wrote it
/// (13 to 16 share 1300).
fn major_of_control_version(version: u32) -> Option<u32> {
    (version >= 1700 && version.is_multiple_of(100)).then_some(version / 100)
}

/// The size of the WAL segment files in `pg_wal`: every segment file is exactly one segment.
fn segment_size_in(pg_wal: &Path) -> Option<u64> {
    std::fs::read_dir(pg_wal).ok()?.flatten().find_map(|e| {
        let name = e.file_name();
        name.to_str()
            .and_then(WalName::parse)
            .filter(|w| w.kind == WalFileKind::Segment)?;
        let len = e.metadata().ok().filter(|m| m.is_file())?.len();
        (len.is_power_of_two() && ((1 << 20)..=(1 << 30)).contains(&len)).then_some(len)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control_bytes(sysid: u64, version: u32) -> Vec<u8> {
        let mut b = vec![0u8; 8192];
        b[0..8].copy_from_slice(&sysid.to_le_bytes());
        b[8..12].copy_from_slice(&version.to_le_bytes());
        b[12..16].copy_from_slice(&202_307_071u32.to_le_bytes());
        b
    }

    #[test]
    fn reads_the_identity_and_mode_of_a_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(DataDir::at(dir.path()), None);
        std::fs::create_dir_all(dir.path().join("global")).unwrap();
        std::fs::create_dir_all(dir.path().join("pg_wal")).unwrap();
        std::fs::write(
            dir.path().join(CONTROL_FILE),
            control_bytes(7_400_000_000_000_000_001, 1300),
        )
        .unwrap();
        std::fs::write(dir.path().join("PG_VERSION"), "15\n").unwrap();
        let seg =
            std::fs::File::create(dir.path().join("pg_wal/000000010000000000000003")).unwrap();
        seg.set_len(16 << 20).unwrap();
        std::fs::write(
            dir.path().join("pg_wal/00000002.history"),
            "1\t0/3000000\tx\n",
        )
        .unwrap();
        let d = DataDir::at(dir.path()).unwrap();
        let c = d.control().unwrap();
        assert_eq!(c.system_identifier, 7_400_000_000_000_000_001);
        assert_eq!(c.pg_control_version, 1300);
        assert_eq!(c.pg_major, Some(15));
        assert_eq!(c.wal_segment_size(), Some(16 << 20));
        assert_eq!(d.mode(), Mode::NotInRecovery);
        std::fs::write(dir.path().join(RECOVERY_SIGNAL), "").unwrap();
        assert_eq!(d.mode(), Mode::Restore);
        std::fs::write(dir.path().join(STANDBY_SIGNAL), "").unwrap();
        assert_eq!(d.mode(), Mode::Standby);
    }

    #[test]
    fn refuses_what_is_not_a_control_file() {
        assert!(parse_control(&control_bytes(42, 1800)).is_ok());
        assert!(parse_control(&control_bytes(0, 1800)).is_err());
        assert!(parse_control(&control_bytes(42, 7)).is_err());
        assert!(parse_control(b"short").is_err());
        assert_eq!(major_of_control_version(1800), Some(18));
        assert_eq!(major_of_control_version(1300), None);
    }
}
