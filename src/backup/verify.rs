//! `dbagent backups verify`: proves that a stored backup can still be restored, by recomputing
//! the SHA-256 and size of every stored file against its manifest and checking that every WAL
//! segment the backup needs to become consistent is in the archive. A backup that fails here
//! would fail at restore time, when it is too late to take another one.
//!
//! Files are hashed as a stream (1 MiB buffers): a backup is never loaded into memory.

use std::io::{self, Read};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::manifest::{BackupManifest, BackupType, MANIFEST_FILE, backup_key};
use crate::repo::{Compression, Repo, RepoError};
use crate::wal::name::segment_name;
use crate::wal::{self, WalFileKind, WalName};

/// Read buffer size when hashing stored files.
const BUF_SIZE: usize = 1 << 20;

/// The outcome of verifying one backup; serialised as one element of
/// `backups verify --json`'s `backups` array.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub id: String,
    /// No problem found.
    pub ok: bool,
    /// Stored files whose checksum was compared (every file of the manifest).
    pub files_checked: usize,
    /// Bytes the manifest says are stored (what was read when all files are present).
    pub stored_bytes: u64,
    /// WAL segments looked up in the archive: those from `wal_start` to `wal_stop`, the WAL
    /// this backup needs to become consistent.
    pub wal_checked: u64,
    /// The first and last segment of that range (the manifest's).
    pub wal_start: String,
    pub wal_stop: String,
    /// How far the WAL was checked: [`WAL_CHECK`].
    pub wal_check: &'static str,
    pub problems: Vec<Problem>,
}

/// What `verify` checks of a backup's WAL: that each segment of its range is in the archive
/// (a stat, not a read); `dbagent wal verify` reads the segments and checks their contents,
/// and the WAL after the backup too.
pub const WAL_CHECK: &str = "presence";

impl VerifyReport {
    /// `WAL 000000010000000000000002 to 000000010000000000000004 present (3 segments, not
    /// read)`: what was checked of the WAL, for the text output.
    pub fn wal_summary(&self) -> String {
        let range = if self.wal_start == self.wal_stop {
            format!("WAL {}", self.wal_start)
        } else {
            format!("WAL {} to {}", self.wal_start, self.wal_stop)
        };
        let segments = match self.wal_checked {
            1 => "1 segment".to_string(),
            n => format!("{n} segments"),
        };
        let missing = self
            .problems
            .iter()
            .filter(|p| matches!(p, Problem::Wal { .. }))
            .count();
        match missing {
            0 => format!("{range} present, {segments}, not read"),
            n => format!("{range}: {segments} looked up, {n} missing or unreadable"),
        }
    }
}

/// One thing wrong with a backup: a stored file (`file`) or a WAL segment (`wal`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Problem {
    File {
        /// The file's name inside the backup directory, as in the manifest.
        file: String,
        /// Stable identifier: `missing`, `size_differs`, `checksum_differs`, `unreadable`.
        kind: &'static str,
        /// What is wrong, for people.
        problem: String,
    },
    Wal {
        /// The WAL segment name.
        wal: String,
        /// Stable identifier: `missing`, `unreadable`.
        kind: &'static str,
        problem: String,
    },
    /// The backup's chain (an incremental backup and the backups it depends on).
    Chain {
        /// The chain member the problem is about (the missing parent, the damaged member, or
        /// the backup itself).
        member: String,
        /// Stable identifier: `parent_missing`, `parent_invalid`, `other_cluster`,
        /// `other_version`, `lsn_order`, `member_damaged`.
        kind: &'static str,
        problem: String,
    },
}

impl Problem {
    /// `base.tar.zst: checksum differs ...` / `WAL 0000...: missing ...`.
    pub fn render(&self) -> String {
        match self {
            Problem::File { file, problem, .. } => format!("{file}: {problem}"),
            Problem::Wal { wal, problem, .. } => format!("WAL {wal}: {problem}"),
            Problem::Chain { problem, .. } => format!("chain: {problem}"),
        }
    }
}

/// What is wrong with the link from backup `m` to its parent (an incremental backup only):
/// the parent must be present, of the same cluster and major version, and have started
/// before `m`. The members' own files are checked by [`verify`].
pub fn chain_problems(backups: &[BackupManifest], m: &BackupManifest) -> Vec<Problem> {
    let mut out = Vec::new();
    if m.backup_type != BackupType::Incremental {
        return out;
    }
    let problem = |member: &str, kind, problem| Problem::Chain {
        member: member.to_string(),
        kind,
        problem,
    };
    let Some(parent_id) = m.parent.as_deref() else {
        out.push(problem(
            &m.id,
            "parent_invalid",
            format!(
                "{} is incremental but its manifest names no parent backup",
                m.id
            ),
        ));
        return out;
    };
    let Some(parent) = backups.iter().find(|b| b.id == parent_id) else {
        out.push(problem(
            parent_id,
            "parent_missing",
            format!(
                "parent backup {parent_id} of incremental backup {} is not in the repository: {} cannot be restored",
                m.id, m.id
            ),
        ));
        return out;
    };
    if parent.system_identifier != m.system_identifier {
        out.push(problem(
            parent_id,
            "other_cluster",
            format!(
                "parent backup {parent_id} is of another cluster (system identifier {}, {} has {})",
                parent.system_identifier, m.id, m.system_identifier
            ),
        ));
    }
    if parent.pg_major != m.pg_major {
        out.push(problem(
            parent_id,
            "other_version",
            format!(
                "parent backup {parent_id} is of PostgreSQL {}, {} of {}",
                parent.pg_major, m.id, m.pg_major
            ),
        ));
    }
    if m.start_lsn <= parent.start_lsn {
        out.push(problem(
            &m.id,
            "lsn_order",
            format!(
                "{} starts at LSN {}, not after its parent {parent_id} (LSN {})",
                m.id, m.start_lsn, parent.start_lsn
            ),
        ));
    }
    out
}

/// Verifies the backups `selected` (IDs) of `backups` together with every member of their
/// chains (oldest first, each once): [`verify`] on each, [`chain_problems`] on each link, and
/// a `member_damaged` problem on every backup one of whose ancestors failed, naming it. A
/// manifest that cannot be trusted becomes a `manifest_invalid` problem of that backup.
pub fn verify_chains(
    repo: &Repo,
    backups: &[BackupManifest],
    selected: &[&str],
) -> Vec<VerifyReport> {
    let mut wanted: Vec<&BackupManifest> = Vec::new();
    for id in selected {
        let (ids, _) = super::chain::chain_ids(backups, id);
        for member in ids {
            if let Some(m) = backups.iter().find(|b| b.id == member)
                && !wanted.iter().any(|w| w.id == m.id)
            {
                wanted.push(m);
            }
        }
    }
    wanted.sort_by(|a, b| a.start_time.cmp(&b.start_time).then(a.id.cmp(&b.id)));
    let mut reports: Vec<VerifyReport> = Vec::new();
    for m in wanted {
        tracing::info!(backup = %m.id, files = m.files.len(), "Verifying backup");
        let mut report = verify(repo, m).unwrap_or_else(|e| VerifyReport::invalid(m, &e));
        report.problems.extend(chain_problems(backups, m));
        let (ancestors, _) = super::chain::chain_ids(backups, &m.id);
        for a in ancestors.iter().filter(|a| **a != m.id) {
            if reports.iter().any(|r| r.id == *a && !r.ok) {
                report.problems.push(Problem::Chain {
                    member: a.clone(),
                    kind: "member_damaged",
                    problem: format!(
                        "{} depends on backup {a}, which failed verification: {} cannot be restored",
                        m.id, m.id
                    ),
                });
            }
        }
        report.ok = report.problems.is_empty();
        reports.push(report);
    }
    reports
}

impl VerifyReport {
    /// The report of a backup whose manifest cannot be trusted.
    pub fn invalid(m: &BackupManifest, e: &RepoError) -> VerifyReport {
        VerifyReport {
            id: m.id.clone(),
            ok: false,
            files_checked: 0,
            stored_bytes: m.stored_size(),
            wal_checked: 0,
            wal_start: m.wal_start.clone(),
            wal_stop: m.wal_stop.clone(),
            wal_check: WAL_CHECK,
            problems: vec![Problem::File {
                file: MANIFEST_FILE.into(),
                kind: "manifest_invalid",
                problem: e.to_string(),
            }],
        }
    }
}

/// The WAL a backup needs to become consistent: segments `first..=last` of timeline `tli`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalRange {
    pub tli: u32,
    pub first: u64,
    pub last: u64,
    pub seg_size: u64,
}

impl WalRange {
    /// Reads the range from a manifest's `wal_start`, `wal_stop` and `wal_segment_size`;
    /// the error says which field is wrong.
    pub fn of(m: &BackupManifest) -> Result<WalRange, String> {
        let seg_size = m.wal_segment_size;
        if !valid_segment_size(seg_size) {
            return Err(format!(
                "wal_segment_size {seg_size} is not a power of two between 1 MiB and 1 GiB"
            ));
        }
        let parse = |field: &str, value: &str| match WalName::parse(value) {
            Some(w) if w.kind == WalFileKind::Segment => Ok(w),
            _ => Err(format!("{field} `{value}` is not a WAL segment name")),
        };
        let start = parse("wal_start", &m.wal_start)?;
        let stop = parse("wal_stop", &m.wal_stop)?;
        if start.tli != stop.tli {
            return Err(format!(
                "wal_start {} and wal_stop {} are on different timelines",
                m.wal_start, m.wal_stop
            ));
        }
        let (first, last) = (start.segno(seg_size), stop.segno(seg_size));
        if last < first {
            return Err(format!(
                "wal_stop {} comes before wal_start {}",
                m.wal_stop, m.wal_start
            ));
        }
        Ok(WalRange {
            tli: start.tli,
            first,
            last,
            seg_size,
        })
    }

    /// The names of every segment of the range, in order.
    pub fn names(&self) -> impl Iterator<Item = String> + '_ {
        (self.first..=self.last).map(|segno| segment_name(self.tli, segno, self.seg_size))
    }
}

/// PostgreSQL's allowed WAL segment sizes: powers of two from 1 MiB to 1 GiB.
pub fn valid_segment_size(size: u64) -> bool {
    size.is_power_of_two() && ((1 << 20)..=(1 << 30)).contains(&size)
}

/// A manifest file name must name a file directly inside the backup directory.
fn valid_file_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\0')
}

/// Verifies backup `m` of `repo`. Problems with stored files or WAL are reported in the
/// result; `Err` means the manifest itself cannot be trusted (a bad WAL range, a file name
/// that escapes the backup directory).
pub fn verify(repo: &Repo, m: &BackupManifest) -> Result<VerifyReport, RepoError> {
    let corrupt = |detail: String| RepoError::Corrupt {
        path: repo.locate(&backup_key(&m.id, MANIFEST_FILE)),
        detail,
    };
    // Every stored file: the archives, backup_manifest, and the archives' frame indexes.
    let stored: Vec<(&str, u64, &str)> = m
        .files
        .iter()
        .flat_map(|f| {
            std::iter::once((f.name.as_str(), f.stored_size, f.sha256.as_str())).chain(
                f.index
                    .as_ref()
                    .map(|i| (i.name.as_str(), i.size, i.sha256.as_str())),
            )
        })
        .collect();
    if let Some((bad, _, _)) = stored.iter().find(|(name, _, _)| !valid_file_name(name)) {
        return Err(corrupt(format!(
            "file name `{bad}` is not a plain file name"
        )));
    }
    let range = WalRange::of(m).map_err(corrupt)?;

    let mut problems = Vec::new();
    for &(name, stored_size, sha256) in &stored {
        tracing::debug!(backup = %m.id, file = %name, "Verifying");
        let key = backup_key(&m.id, name);
        let path = repo.locate(&key);
        let problem = |kind, problem| Problem::File {
            file: name.to_string(),
            kind,
            problem,
        };
        let size = match repo.storage().stat(&key) {
            Ok(Some(meta)) => meta.size,
            Ok(None) => {
                problems.push(problem(
                    "missing",
                    format!("missing: {} does not exist", path.display()),
                ));
                continue;
            }
            Err(RepoError::Io { source: e, .. }) => {
                problems.push(problem(
                    "unreadable",
                    format!("cannot read {}: {e}", path.display()),
                ));
                continue;
            }
            Err(e) => {
                problems.push(problem("unreadable", e.to_string()));
                continue;
            }
        };
        if size != stored_size {
            problems.push(problem(
                "size_differs",
                format!(
                    "size differs: the manifest says {} bytes, {} has {size}",
                    stored_size,
                    path.display()
                ),
            ));
            continue;
        }
        let hashed = match repo.storage().get(&key) {
            Ok(Some(r)) => hash_reader(r),
            Ok(None) => Err(io::Error::from(io::ErrorKind::NotFound)),
            Err(e) => Err(e.into()),
        };
        match hashed {
            Ok((read, _)) if read != stored_size => problems.push(problem(
                "size_differs",
                format!(
                    "size differs: the manifest says {} bytes, {} has {read}",
                    stored_size,
                    path.display()
                ),
            )),
            Ok((_, sha)) if !sha.eq_ignore_ascii_case(sha256) => problems.push(problem(
                "checksum_differs",
                format!(
                    "checksum differs: the manifest says sha256 {}, {} has {sha}",
                    sha256,
                    path.display()
                ),
            )),
            Ok(_) => {}
            Err(e) => problems.push(problem(
                "unreadable",
                format!("cannot read {}: {e}", path.display()),
            )),
        }
    }

    let mut wal_checked = 0;
    for name in range.names() {
        wal_checked += 1;
        let Some(w) = WalName::parse(&name) else {
            return Err(corrupt(format!("WAL segment name {name} does not parse")));
        };
        let problem = |kind, problem| Problem::Wal {
            wal: name.clone(),
            kind,
            problem,
        };
        match wal::find(repo, &w) {
            Ok(Some(_)) => {}
            Ok(None) => problems.push(problem(
                "missing",
                format!(
                    "missing from the WAL archive {}",
                    repo.locate(&wal::stored_key(&w, Compression::None))
                        .parent()
                        .unwrap_or(repo.location())
                        .display()
                ),
            )),
            Err(e) => problems.push(problem(
                "unreadable",
                format!("cannot look it up in the WAL archive: {e}"),
            )),
        }
    }

    Ok(VerifyReport {
        id: m.id.clone(),
        ok: problems.is_empty(),
        files_checked: stored.len(),
        stored_bytes: m.stored_size(),
        wal_checked,
        wal_start: m.wal_start.clone(),
        wal_stop: m.wal_stop.clone(),
        wal_check: WAL_CHECK,
        problems,
    })
}

/// Size and hex SHA-256 of what `file` reads, read in 1 MiB blocks.
pub fn hash_reader(mut file: impl Read) -> io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; BUF_SIZE];
    let mut total = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((total, hex::encode(hasher.finalize())))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::backup::manifest::{BackupFile, MANIFEST_FORMAT};
    use crate::wal::Lsn;

    pub const SEG: u64 = 16 << 20;

    /// A manifest for backup `id` needing segments `first..=last` of timeline `tli`.
    pub fn manifest(id: &str, tli: u32, first: u64, last: u64, stop: &str) -> BackupManifest {
        let start_time: jiff::Timestamp = stop.parse().unwrap();
        BackupManifest {
            format: MANIFEST_FORMAT,
            id: id.to_string(),
            label: None,
            system_identifier: "7000000000000000001".into(),
            pg_version: "15.8".into(),
            pg_major: 15,
            timeline: tli,
            start_lsn: Lsn(first * SEG + 0x28),
            stop_lsn: Lsn(last * SEG + 0x100),
            wal_start: segment_name(tli, first, SEG),
            wal_stop: segment_name(tli, last, SEG),
            wal_segment_size: SEG,
            start_time: start_time - jiff::SignedDuration::from_secs(60),
            stop_time: start_time,
            compression: Compression::Zstd,
            compressed_by: "dbagent".into(),
            files: Vec::new(),
            dbagent_version: "0.1.0".into(),
            backup_type: Default::default(),
            parent: None,
            taken_from: None,
        }
    }

    /// Writes backup files and manifest.json into `repo` for `m` (files added to `m`).
    fn write_backup(repo: &Repo, m: &mut BackupManifest, files: &[(&str, &[u8])]) {
        for (name, bytes) in files {
            repo.storage().put(&backup_key(&m.id, name), bytes).unwrap();
            m.files.push(BackupFile {
                name: name.to_string(),
                size: bytes.len() as u64 * 3,
                stored_size: bytes.len() as u64,
                sha256: hex::encode(Sha256::digest(bytes)),
                tablespace: None,
                index: None,
            });
        }
        repo.storage()
            .put(
                &backup_key(&m.id, MANIFEST_FILE),
                &serde_json::to_vec_pretty(&*m).unwrap(),
            )
            .unwrap();
    }

    fn write_wal(repo: &Repo, tli: u32, segnos: impl IntoIterator<Item = u64>) {
        for segno in segnos {
            let w = WalName::parse(&segment_name(tli, segno, SEG)).unwrap();
            let key = wal::stored_key(&w, Compression::Zstd);
            repo.storage().put(&key, b"wal").unwrap();
        }
    }

    fn repo_with_backup() -> (crate::repo::MemoryStorage, Repo, BackupManifest) {
        let (repo, dir) = Repo::in_memory();
        let mut m = manifest("20261121T061500Z", 1, 2, 4, "2026-11-21T06:16:00Z");
        let big: Vec<u8> = (0..3 * BUF_SIZE + 17).map(|i| (i % 251) as u8).collect();
        write_backup(
            &repo,
            &mut m,
            &[("base.tar.zst", &big), ("backup_manifest", b"{}")],
        );
        write_wal(&repo, 1, 2..=4);
        (dir, repo, m)
    }

    #[test]
    fn intact_backup_is_ok() {
        let (_d, repo, m) = repo_with_backup();
        let r = verify(&repo, &m).unwrap();
        assert!(r.ok, "{r:?}");
        assert_eq!((r.files_checked, r.wal_checked), (2, 3));
        assert_eq!(r.wal_check, "presence");
        assert_eq!(
            r.wal_summary(),
            format!(
                "WAL {} to {} present, 3 segments, not read",
                segment_name(1, 2, SEG),
                segment_name(1, 4, SEG)
            )
        );
        assert_eq!(r.stored_bytes, (3 * BUF_SIZE + 17 + 2) as u64);
    }

    #[test]
    fn flipped_byte_is_reported_naming_the_file() {
        let (_d, repo, m) = repo_with_backup();
        let key = backup_key(&m.id, "base.tar.zst");
        let mut bytes = repo.storage().read(&key).unwrap().unwrap();
        bytes[2 * BUF_SIZE + 5] ^= 0x01;
        repo.storage().put(&key, &bytes).unwrap();
        let r = verify(&repo, &m).unwrap();
        assert!(!r.ok);
        assert_eq!(r.problems.len(), 1, "{r:?}");
        let Problem::File {
            file,
            kind,
            problem,
        } = &r.problems[0]
        else {
            panic!("{r:?}")
        };
        assert_eq!((file.as_str(), *kind), ("base.tar.zst", "checksum_differs"));
        assert!(problem.contains("checksum differs"), "{problem}");
        assert!(r.problems[0].render().starts_with("base.tar.zst: "));
    }

    #[test]
    fn an_archive_index_is_verified_like_any_stored_file() {
        let (_d, repo, mut m) = repo_with_backup();
        let idx = b"an index".to_vec();
        let key = backup_key(&m.id, "base.tar.zst.idx");
        repo.storage().put(&key, &idx).unwrap();
        m.files[0].index = Some(crate::backup::manifest::IndexFile {
            name: "base.tar.zst.idx".into(),
            size: idx.len() as u64,
            sha256: hex::encode(Sha256::digest(&idx)),
        });
        let r = verify(&repo, &m).unwrap();
        assert!(r.ok, "{r:?}");
        assert_eq!(r.files_checked, 3);
        assert_eq!(r.stored_bytes, (3 * BUF_SIZE + 17 + 2 + idx.len()) as u64);
        repo.storage().put(&key, b"an indeX").unwrap();
        let r = verify(&repo, &m).unwrap();
        assert!(
            matches!(&r.problems[..], [Problem::File { file, kind: "checksum_differs", .. }] if file == "base.tar.zst.idx"),
            "{r:?}"
        );
        m.files[0].index.as_mut().unwrap().name = "../x.idx".into();
        assert!(verify(&repo, &m).is_err());
    }

    #[test]
    fn truncated_and_missing_files_are_reported() {
        let (_d, repo, m) = repo_with_backup();
        let s = repo.storage();
        s.put(&backup_key(&m.id, "base.tar.zst"), b"short").unwrap();
        s.delete(&[backup_key(&m.id, "backup_manifest")]).unwrap();
        let r = verify(&repo, &m).unwrap();
        let kinds: Vec<_> = r
            .problems
            .iter()
            .map(|p| match p {
                Problem::File { file, kind, .. } => (file.as_str(), *kind),
                _ => panic!("{p:?}"),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                ("base.tar.zst", "size_differs"),
                ("backup_manifest", "missing")
            ]
        );
    }

    #[test]
    fn missing_wal_segment_is_reported_by_name() {
        let (_d, repo, m) = repo_with_backup();
        let missing = segment_name(1, 3, SEG);
        let w = WalName::parse(&missing).unwrap();
        let key = wal::stored_key(&w, Compression::Zstd);
        repo.storage().delete(&[key]).unwrap();
        let r = verify(&repo, &m).unwrap();
        assert!(!r.ok);
        assert_eq!(r.problems.len(), 1, "{r:?}");
        assert!(
            matches!(&r.problems[0], Problem::Wal { wal, kind: "missing", .. } if *wal == missing),
            "{r:?}"
        );
        assert!(
            r.wal_summary()
                .ends_with(": 3 segments looked up, 1 missing or unreadable"),
            "{}",
            r.wal_summary()
        );
        let json = serde_json::to_value(&r.problems[0]).unwrap();
        assert_eq!(json["wal"], missing.as_str());
        assert!(json.get("file").is_none());
    }

    #[test]
    fn file_name_escaping_the_backup_is_refused() {
        let (_d, repo, mut m) = repo_with_backup();
        m.files[0].name = "../../etc/passwd".into();
        let err = verify(&repo, &m).unwrap_err();
        assert!(matches!(err, RepoError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("manifest.json"), "{err}");
    }

    #[test]
    fn verifying_an_incremental_verifies_its_chain_and_names_the_damaged_member() {
        let (_d, repo, full) = repo_with_backup();
        let mut inc1 = manifest("20261121T070000Z", 1, 5, 5, "2026-11-21T07:01:00Z");
        inc1.backup_type = BackupType::Incremental;
        inc1.parent = Some(full.id.clone());
        write_backup(&repo, &mut inc1, &[("base.tar.zst", b"one")]);
        let mut inc2 = manifest("20261121T080000Z", 1, 6, 6, "2026-11-21T08:01:00Z");
        inc2.backup_type = BackupType::Incremental;
        inc2.parent = Some(inc1.id.clone());
        write_backup(&repo, &mut inc2, &[("base.tar.zst", b"two")]);
        write_wal(&repo, 1, 5..=6);
        let all = vec![full.clone(), inc1.clone(), inc2.clone()];

        let r = verify_chains(&repo, &all, &[&inc2.id]);
        let ids: Vec<&str> = r.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, [&*full.id, &*inc1.id, &*inc2.id]);
        assert!(r.iter().all(|r| r.ok), "{r:?}");

        // Damage the middle member: it fails naming its file, the last one names it.
        repo.storage()
            .put(&backup_key(&inc1.id, "base.tar.zst"), b"0ne")
            .unwrap();
        let r = verify_chains(&repo, &all, &[&inc2.id]);
        assert!(r[0].ok && !r[1].ok && !r[2].ok, "{r:?}");
        assert!(matches!(
            &r[1].problems[0],
            Problem::File {
                kind: "checksum_differs",
                ..
            }
        ));
        assert!(
            matches!(&r[2].problems[0], Problem::Chain { member, kind: "member_damaged", .. } if *member == inc1.id),
            "{r:?}"
        );

        // A missing parent, another cluster, a start before the parent's.
        let mut orphan = inc2.clone();
        orphan.parent = Some("gone".into());
        let p = chain_problems(&all, &orphan);
        assert!(
            matches!(&p[0], Problem::Chain { member, kind: "parent_missing", .. } if member == "gone")
        );
        assert!(p[0].render().contains("gone"));
        let mut other = inc2.clone();
        other.system_identifier = "1".into();
        other.start_lsn = Lsn(1);
        let kinds: Vec<&str> = chain_problems(&all, &other)
            .iter()
            .map(|p| match p {
                Problem::Chain { kind, .. } => *kind,
                _ => panic!("{p:?}"),
            })
            .collect();
        assert_eq!(kinds, ["other_cluster", "lsn_order"]);
        assert!(chain_problems(&all, &full).is_empty());
    }

    #[test]
    fn bad_wal_range_is_refused() {
        let mut m = manifest("x", 1, 2, 4, "2026-11-21T06:16:00Z");
        assert_eq!(
            WalRange::of(&m).unwrap(),
            WalRange {
                tli: 1,
                first: 2,
                last: 4,
                seg_size: SEG
            }
        );
        m.wal_segment_size = 0;
        assert!(WalRange::of(&m).is_err());
        m.wal_segment_size = SEG;
        m.wal_stop = segment_name(1, 1, SEG);
        assert!(WalRange::of(&m).unwrap_err().contains("before"));
        m.wal_stop = segment_name(2, 5, SEG);
        assert!(WalRange::of(&m).unwrap_err().contains("timelines"));
        m.wal_start = "00000001.history".into();
        assert!(WalRange::of(&m).unwrap_err().contains("wal_start"));
    }
}
