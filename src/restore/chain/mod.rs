//! Restoring an incremental backup (PostgreSQL 17+): its chain is the full backup it descends
//! from and every incremental in between, root first. The full (root) member is streamed
//! straight into the target, exactly as a full restore extracts it (SHA-256 checked while
//! streaming, member paths checked), while the incrementals, which are small, are extracted
//! into a staging directory on the other core. Then the incrementals are applied to the target
//! in place ([`apply`]), writing only the blocks they carry, so that the target ends up byte
//! for byte what `pg_combinebackup` would have written, with a `backup_manifest`
//! ([`pg_manifest`]) that `pg_verifybackup` accepts. No PostgreSQL program is needed. The staging
//! directory holds only the incrementals and is removed afterwards, on success and on
//! failure.
//!
//! The plan part ([`plan`]) is data only: which members, where the staging directory is, how
//! many bytes it and the target need and whether that space is free (refused before anything
//! is written when it is not), and the chain's links checked from the manifests. [`execute`]
//! carries it out; the caller then writes the usual tablespace_map, recovery settings, restore
//! marker and ownership.

pub mod apply;
mod error;
pub mod incremental_file;
pub mod pg_manifest;

pub use self::error::ExecError;
use self::error::{create_private_dir, io_err};
use self::pg_manifest as manifest_pg;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::extract;
use crate::backup::chain;
use crate::backup::manifest::{self, BackupManifest, BackupType};
use crate::backup::verify;
use crate::repo::Repo;

/// One backup of the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainMember {
    pub id: String,
    #[serde(rename = "type")]
    pub backup_type: &'static str,
    /// Uncompressed size (what an incremental takes in the staging directory).
    pub size_bytes: u64,
    pub stored_bytes: u64,
}

/// How an incremental backup is restored; `restore --dry-run --json` prints it as `chain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainPlan {
    /// Root (the full backup) first, the restored backup last.
    pub members: Vec<ChainMember>,
    /// Where the incrementals are extracted (removed afterwards).
    pub staging: PathBuf,
    /// Bytes the staging directory needs: the incrementals' uncompressed sizes (the root
    /// streams straight into the target).
    pub staging_bytes: u64,
    /// Free bytes on the staging directory's filesystem (None: could not be read).
    pub staging_free_bytes: Option<u64>,
    /// Bytes the combined backup needs in the target: the full's size plus what files can
    /// grow by, at most the incrementals' sizes.
    pub output_bytes: u64,
    /// Free bytes on the target's filesystem.
    pub target_free_bytes: Option<u64>,
    /// Staging and target are on one filesystem: both needs come from the same free space.
    pub same_filesystem: bool,
    /// Files an incremental carries whole are moved (renamed) from staging into the target
    /// rather than copied: staging and target share a filesystem.
    pub link: bool,
    /// Read every rebuilt file back for its CRC32C in the combined backup_manifest (what
    /// `dbagent drill` verifies with pg_verifybackup). A plain restore lists rebuilt files by
    /// size only: the read-back of every changed 1 GB segment would cost a restore about a
    /// quarter of its time, and a checksum taken from the file itself proves nothing about it.
    #[serde(skip)]
    pub checksum_rebuilt: bool,
}

/// The staging area a chain restore would use, read by [`gather`].
#[derive(Debug, Clone, Default)]
pub struct StagingFacts {
    pub path: PathBuf,
    /// Entries already in it (it must be empty or absent).
    pub entries: usize,
    pub free: Option<u64>,
    pub dev: Option<u64>,
    pub target_free: Option<u64>,
    pub target_dev: Option<u64>,
}

/// `<to>.staging`: a sibling of the target, so usually on its filesystem (files an incremental
/// carries whole are then renamed into the target instead of copied).
pub fn default_staging(to: &Path) -> PathBuf {
    let mut name = to.file_name().unwrap_or_default().to_os_string();
    name.push(".staging");
    to.with_file_name(name)
}

/// The nearest existing ancestor of `p` (itself when it exists).
fn existing(p: &Path) -> Option<&Path> {
    p.ancestors().find(|a| a.exists())
}

/// Free bytes (for unprivileged users) and device of the filesystem holding `p`.
fn space(p: &Path) -> (Option<u64>, Option<u64>) {
    let Some(at) = existing(p) else {
        return (None, None);
    };
    let free = nix::sys::statvfs::statvfs(at)
        .ok()
        .map(|s| s.blocks_available().saturating_mul(s.fragment_size()));
    let dev = std::fs::metadata(at).ok().map(|m| m.dev());
    (free, dev)
}

/// Reads the staging directory (`staging`, default `<to>.staging`) and the free space of it
/// and of the target `to`. Writes nothing.
pub fn gather(to: &Path, staging: Option<&Path>) -> Result<StagingFacts, String> {
    let path = staging.map_or_else(|| default_staging(to), Path::to_path_buf);
    let entries = match std::fs::read_dir(&path) {
        Ok(rd) => rd.count(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => {
            return Err(format!(
                "cannot use {} as the staging directory: {e}",
                path.display()
            ));
        }
    };
    let (free, dev) = space(&path);
    let (target_free, target_dev) = space(to);
    Ok(StagingFacts {
        path,
        entries,
        free,
        dev,
        target_free,
        target_dev,
    })
}

fn refuse(msg: String) -> String {
    msg
}

/// The chain plan for restoring `m`, None for a full backup. Refused: a broken chain (naming
/// the missing backup), links that do not hold (another cluster or major version, a member not
/// after its parent), a chain with tablespaces, a staging directory that is not empty, inside
/// the target or holding it, or too little free space.
pub fn plan(
    to: &Path,
    backups: &[BackupManifest],
    staging: &StagingFacts,
    m: &BackupManifest,
) -> Result<Option<ChainPlan>, String> {
    if m.backup_type == BackupType::Full {
        return Ok(None);
    }
    let members = chain::chain(backups, &m.id).map_err(|e| {
        refuse(format!(
            "cannot restore backup {}: {e}. Nothing was written",
            m.id
        ))
    })?;
    if m.pg_major < 17 {
        return Err(refuse(format!(
            "backup {} is incremental but of PostgreSQL {}: incremental backups need PostgreSQL 17+ (pg_combinebackup); its manifest is damaged",
            m.id, m.pg_major
        )));
    }
    // The links pg_combinebackup would check (system identifier, version, LSN order), from
    // the manifests, before anything is written; the backup_labels are checked again once the
    // incrementals are extracted, before they are applied.
    if let Some(p) = members
        .iter()
        .flat_map(|b| verify::chain_problems(backups, b))
        .next()
    {
        return Err(refuse(format!(
            "cannot restore backup {}: its chain is inconsistent: {}. Nothing was written; `dbagent backups verify {}` shows the whole chain",
            m.id,
            p.render(),
            m.id
        )));
    }
    if let Some(with_ts) = members
        .iter()
        .find(|b| b.files.iter().any(|f| f.tablespace.is_some()))
    {
        return Err(refuse(format!(
            "backup {} is incremental and its chain member {} has tablespaces: dbagent cannot combine a chain with tablespaces yet. Nothing was written; restore a full backup (--backup ID of a full one, see `dbagent backups list`) or take a full backup (`dbagent backup --type full`)",
            m.id, with_ts.id
        )));
    }
    let path = &staging.path;
    if path.starts_with(to) || to.starts_with(path) {
        return Err(refuse(format!(
            "--staging {} must be outside the target {} (and not hold it): choose a sibling directory, e.g. {}",
            path.display(),
            to.display(),
            default_staging(to).display()
        )));
    }
    if staging.entries > 0 {
        return Err(refuse(format!(
            "the staging directory {} is not empty ({} entries; perhaps left by an interrupted restore): remove it or choose another with --staging DIR. Nothing was written",
            path.display(),
            staging.entries
        )));
    }
    let staging_bytes: u64 = members.iter().skip(1).map(|b| b.size()).sum();
    let output_bytes = members[0].size() + staging_bytes;
    let same_filesystem = staging.dev.is_some() && staging.dev == staging.target_dev;
    let need = |what: &str, dir: &Path, bytes: u64, free: Option<u64>| match free {
        Some(free) if free < bytes => Err(refuse(format!(
            "not enough free space for restoring the chain of backup {}: {what} needs {} ({bytes} bytes) on the filesystem of {}, which has {} free. Nothing was written; free space there or choose another staging directory with --staging DIR (on another filesystem)",
            m.id,
            crate::units::human_bytes(bytes),
            dir.display(),
            crate::units::human_bytes(free)
        ))),
        _ => Ok(()),
    };
    if same_filesystem {
        need(
            "the staging area (the incrementals) plus the combined backup",
            path,
            staging_bytes + output_bytes,
            staging.free,
        )?;
    } else {
        need(
            "the staging area (the incrementals)",
            path,
            staging_bytes,
            staging.free,
        )?;
        need("the combined backup", to, output_bytes, staging.target_free)?;
    }
    Ok(Some(ChainPlan {
        members: members
            .iter()
            .map(|b| ChainMember {
                id: b.id.clone(),
                backup_type: b.backup_type.as_str(),
                size_bytes: b.size(),
                stored_bytes: b.stored_size(),
            })
            .collect(),
        staging: path.clone(),
        staging_bytes,
        staging_free_bytes: staging.free,
        output_bytes,
        target_free_bytes: staging.target_free,
        same_filesystem,
        link: same_filesystem,
        checksum_rebuilt: false,
    }))
}

/// One line for the plan: `F → I1 → I2`.
pub fn describe(c: &ChainPlan) -> String {
    c.members
        .iter()
        .map(|m| m.id.as_str())
        .collect::<Vec<_>>()
        .join(" → ")
}

/// What [`execute`] extracted.
#[derive(Debug, Default)]
pub struct Done {
    pub files: Vec<String>,
    pub members: u64,
    pub stored_bytes: u64,
}

/// Removes the staging directory when dropped (what was created; an existing empty one is
/// emptied).
struct Staging<'a> {
    path: &'a Path,
    existed: bool,
}

impl Drop for Staging<'_> {
    fn drop(&mut self) {
        let r = if self.existed {
            std::fs::read_dir(self.path).and_then(|entries| {
                for e in entries {
                    let p = e?.path();
                    if p.is_dir() && !p.is_symlink() {
                        std::fs::remove_dir_all(&p)?;
                    } else {
                        std::fs::remove_file(&p)?;
                    }
                }
                Ok(())
            })
        } else {
            std::fs::remove_dir_all(self.path)
        };
        if let Err(e) = r
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), error = %e, "Cannot remove the staging directory; remove it by hand");
        }
    }
}

/// Reads member `id`'s manifest.json from the repository.
fn member_manifest(repo: &Repo, id: &str) -> Result<BackupManifest, ExecError> {
    manifest::read_manifest(repo, id)
        .map_err(|e| ExecError::Failed(e.to_string()))?
        .ok_or_else(|| {
            ExecError::Failed(format!(
                "chain member {id} vanished from the repository during the restore"
            ))
        })
}

/// Streams every stored file of member `m` into `dest` (SHA-256 checked as it streams) and
/// returns its PostgreSQL `backup_manifest`, read and checked.
fn extract_member(
    repo: &Repo,
    m: &BackupManifest,
    dest: &Path,
    done: &mut Done,
) -> Result<manifest_pg::PgManifest, ExecError> {
    let mut pg_manifest = None;
    for f in &m.files {
        // Named with its backup, so a damaged member is named.
        let mut named = f.clone();
        named.name = format!("{} of backup {}", f.name, m.id);
        if f.name == "backup_manifest" {
            let bytes = read_backup_manifest(repo, m, f, &named.name)?;
            pg_manifest = Some(
                manifest_pg::PgManifest::parse(&bytes, &named.name).map_err(ExecError::Failed)?,
            );
            continue;
        }
        let x = extract_member_file(repo, m, f, &named, dest).map_err(ExecError::Extract)?;
        done.members += x.members;
        done.stored_bytes += x.stored_bytes;
        done.files.push(format!("{}/{}", m.id, f.name));
    }
    pg_manifest.ok_or_else(|| {
        ExecError::Failed(format!(
            "backup {} has no backup_manifest in the repository: combining a chain needs each member's; this chain cannot be restored",
            m.id
        ))
    })
}

/// Streams the root member into the (empty) target and, meanwhile, every incremental into
/// `staging/<ID>` (checksums verified as they stream); then applies the incrementals to the
/// target in place and writes its backup_label and backup_manifest. The staging directory is
/// removed whatever happens; on failure the caller empties the target.
pub fn execute(
    repo: &Repo,
    to: &Path,
    c: &ChainPlan,
    progress: &mut dyn FnMut(&str),
) -> Result<Done, ExecError> {
    let existed = c.staging.exists();
    create_private_dir(&c.staging).map_err(io_err(&c.staging, "create the staging directory"))?;
    let _cleanup = Staging {
        path: &c.staging,
        existed,
    };
    let manifests: Vec<BackupManifest> = c
        .members
        .iter()
        .map(|member| member_manifest(repo, &member.id))
        .collect::<Result<_, _>>()?;
    let Some((root, incrementals)) = manifests.split_first() else {
        return Err(ExecError::Failed("the chain plan has no members".into()));
    };
    progress(&format!(
        "streaming the full backup {} into {} while extracting {} incremental(s) into {}",
        root.id,
        to.display(),
        incrementals.len(),
        c.staging.display()
    ));
    let started = std::time::Instant::now();
    let mut root_done = Done::default();
    let mut inc_done = Done::default();
    // The root on its own thread, the incrementals (small) on this one: both cores.
    let (root_result, inc_result) = std::thread::scope(|s| {
        let root_thread = s.spawn(|| {
            let r = extract_member(repo, root, to, &mut root_done);
            (r, started.elapsed())
        });
        let inc_result: Result<Vec<(PathBuf, manifest_pg::PgManifest)>, ExecError> = incrementals
            .iter()
            .map(|m| {
                let dir = c.staging.join(&m.id);
                create_private_dir(&dir).map_err(io_err(&dir, "create"))?;
                let pg = extract_member(repo, m, &dir, &mut inc_done)?;
                Ok((dir, pg))
            })
            .collect();
        let inc_took = started.elapsed();
        let root_result = root_thread.join().unwrap_or_else(|_| {
            (
                Err(ExecError::Failed(format!(
                    "extracting backup {} stopped unexpectedly (a thread panicked)",
                    root.id
                ))),
                started.elapsed(),
            )
        });
        (root_result, (inc_result, inc_took))
    });
    let (root_result, root_took) = root_result;
    let (inc_result, inc_took) = inc_result;
    let root_pg = root_result?;
    let inc_pg = inc_result?;
    progress(&format!(
        "extracted the chain of {} (SHA-256 verified): {} into the target in {}, {} in staging in {}",
        describe(c),
        root.id,
        crate::units::human_duration_of(root_took),
        incrementals
            .iter()
            .map(|m| m.id.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        crate::units::human_duration_of(inc_took)
    ));
    let applying = std::time::Instant::now();
    let mut members = vec![apply::Member {
        id: root.id.clone(),
        dir: to.to_path_buf(),
        manifest: root_pg,
    }];
    for (m, (dir, pg)) in incrementals.iter().zip(inc_pg) {
        members.push(apply::Member {
            id: m.id.clone(),
            dir,
            manifest: pg,
        });
    }
    let combined = apply::combine(to, &members, c.checksum_rebuilt)?;
    progress(&format!(
        "applied {} incremental(s) in place in {}: {} files rebuilt ({} blocks written), {} carried whole, {} removed; backup_label and backup_manifest written (rebuilding and checksums: {})",
        incrementals.len(),
        crate::units::human_duration_of(applying.elapsed()),
        combined.rebuilt,
        combined.blocks,
        combined.moved,
        combined.removed,
        crate::units::human_duration_of(combined.checksum_time)
    ));
    let mut done = root_done;
    done.members += inc_done.members;
    done.stored_bytes += inc_done.stored_bytes;
    done.files.extend(inc_done.files);
    Ok(done)
}

/// Streams stored file `f` of backup `m` into `dest`, verifying it (`named` names it in
/// errors).
fn extract_member_file(
    repo: &Repo,
    m: &BackupManifest,
    f: &manifest::BackupFile,
    named: &manifest::BackupFile,
    dest: &Path,
) -> Result<extract::Extracted, extract::ExtractError> {
    let key = manifest::backup_key(&m.id, &f.name);
    let io = |source: std::io::Error| extract::ExtractError::Io {
        path: repo.locate(&key),
        action: "open",
        source,
    };
    let raw = match repo.storage().get(&key) {
        Ok(Some(raw)) => raw,
        Ok(None) => return Err(io(std::io::Error::from(std::io::ErrorKind::NotFound))),
        Err(e) => return Err(io(e.into())),
    };
    extract::extract_archive(raw, named, m.compression, dest).map_err(|e| match e {
        // A stored file that does not decompress can look like a bad member or a failed
        // write; when its checksum differs, say what it is: damage.
        extract::ExtractError::Damaged { .. } => e,
        other => match repo
            .storage()
            .get(&key)
            .ok()
            .flatten()
            .map(verify::hash_reader)
        {
            Some(Ok((_, sha))) if !sha.eq_ignore_ascii_case(&f.sha256) => {
                extract::ExtractError::Damaged {
                    file: named.name.clone(),
                    detail: format!(
                        "SHA-256 {sha} differs from manifest.json's {} ({other})",
                        f.sha256
                    ),
                }
            }
            _ => other,
        },
    })
}

/// Reads backup `m`'s stored `backup_manifest`, checking its SHA-256 and size.
fn read_backup_manifest(
    repo: &Repo,
    m: &BackupManifest,
    f: &manifest::BackupFile,
    shown: &str,
) -> Result<Vec<u8>, ExecError> {
    let key = manifest::backup_key(&m.id, &f.name);
    let damaged = |detail: String| {
        ExecError::Extract(extract::ExtractError::Damaged {
            file: shown.to_string(),
            detail,
        })
    };
    let bytes = repo
        .storage()
        .read(&key)
        .map_err(|e| damaged(e.to_string()))?
        .ok_or_else(|| damaged(format!("{} does not exist", repo.locate(&key).display())))?;
    let (size, sha) =
        crate::backup::verify::hash_reader(bytes.as_slice()).map_err(|e| damaged(e.to_string()))?;
    if size != f.stored_size || !sha.eq_ignore_ascii_case(&f.sha256) {
        return Err(damaged(format!(
            "its SHA-256 is {sha} ({size} bytes), the manifest says {} ({} bytes)",
            f.sha256, f.stored_size
        )));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::chain::tests::incremental;
    use crate::backup::verify::tests::manifest;

    fn chain18() -> Vec<BackupManifest> {
        let mut v = vec![
            manifest("F", 1, 10, 10, "2026-11-21T00:00:00Z"),
            incremental("I1", "F", 12, "2026-11-21T01:00:00Z"),
            incremental("I2", "I1", 14, "2026-11-21T02:00:00Z"),
        ];
        for (m, size) in v.iter_mut().zip([1000u64, 100, 10]) {
            m.pg_major = 18;
            m.files.push(manifest::BackupFile {
                name: "base.tar".into(),
                size,
                stored_size: size,
                sha256: String::new(),
                tablespace: None,
                index: None,
            });
        }
        v
    }

    fn facts(free: u64, same: bool) -> StagingFacts {
        StagingFacts {
            path: PathBuf::from("/r/data.staging"),
            entries: 0,
            free: Some(free),
            dev: Some(1),
            target_free: Some(free),
            target_dev: Some(if same { 1 } else { 2 }),
        }
    }

    #[test]
    fn default_staging_is_a_sibling() {
        assert_eq!(
            default_staging(Path::new("/r/data")),
            PathBuf::from("/r/data.staging")
        );
    }

    #[test]
    fn a_full_backup_needs_no_chain() {
        let b = chain18();
        assert_eq!(
            plan(Path::new("/r/data"), &b, &facts(0, true), &b[0]).unwrap(),
            None
        );
    }

    #[test]
    fn the_plan_lists_the_chain_and_the_staging_space() {
        let b = chain18();
        let c = plan(Path::new("/r/data"), &b, &facts(10_000, true), &b[2])
            .unwrap()
            .unwrap();
        assert_eq!(describe(&c), "F → I1 → I2");
        // Staging holds the incrementals only; the target the full plus what they can add.
        assert_eq!(c.staging_bytes, 110);
        assert_eq!(c.output_bytes, 1110);
        assert!(c.same_filesystem && c.link);
        let c = plan(Path::new("/r/data"), &b, &facts(10_000, false), &b[1])
            .unwrap()
            .unwrap();
        assert_eq!(c.members.len(), 2);
        assert_eq!(c.staging_bytes, 100);
        assert_eq!(c.output_bytes, 1100);
        assert!(!c.link);
    }

    #[test]
    fn too_little_space_is_refused_before_anything_is_written() {
        let b = chain18();
        // One filesystem: staging (110) and output (1110) together do not fit in 1200.
        let e = plan(Path::new("/r/data"), &b, &facts(1200, true), &b[2]).unwrap_err();
        assert!(e.to_string().contains("not enough free space"), "{e}");
        assert!(e.to_string().contains("/r/data.staging"), "{e}");
        assert!(plan(Path::new("/r/data"), &b, &facts(1220, true), &b[2]).is_ok());
        // Two filesystems: each its own need.
        assert!(plan(Path::new("/r/data"), &b, &facts(1110, false), &b[2]).is_ok());
        let e = plan(Path::new("/r/data"), &b, &facts(1000, false), &b[2]).unwrap_err();
        assert!(e.to_string().contains("combined backup"), "{e}");
        let e = plan(Path::new("/r/data"), &b, &facts(100, false), &b[2]).unwrap_err();
        assert!(e.to_string().contains("staging area"), "{e}");
    }

    #[test]
    fn a_chain_whose_links_do_not_hold_is_refused_before_anything_is_written() {
        let mut b = chain18();
        b[1].system_identifier = "1".into();
        let e = plan(Path::new("/r/data"), &b, &facts(10_000, true), &b[2]).unwrap_err();
        assert!(
            e.contains("another cluster") && e.contains("Nothing was written"),
            "{e}"
        );
        let mut b = chain18();
        b[2].start_lsn = b[1].start_lsn;
        let e = plan(Path::new("/r/data"), &b, &facts(10_000, true), &b[2]).unwrap_err();
        assert!(e.contains("not after its parent"), "{e}");
    }

    #[test]
    fn a_broken_chain_a_busy_staging_dir_and_tablespaces_are_refused() {
        let mut b = chain18();
        b.remove(1);
        let e = plan(Path::new("/r/data"), &b, &facts(10_000, true), &b[1]).unwrap_err();
        assert!(e.to_string().contains("I1"), "{e}");
        let b = chain18();
        let mut f = facts(10_000, true);
        f.entries = 2;
        let e = plan(Path::new("/r/data"), &b, &f, &b[2]).unwrap_err();
        assert!(e.to_string().contains("not empty"), "{e}");
        let mut f = facts(10_000, true);
        f.path = PathBuf::from("/r/data/staging");
        assert!(plan(Path::new("/r/data"), &b, &f, &b[2]).is_err());
        let mut b = chain18();
        b[0].files[0].tablespace = Some(manifest::Tablespace {
            oid: 16385,
            name: "ts".into(),
            location: "/ts".into(),
        });
        let e = plan(Path::new("/r/data"), &b, &facts(10_000, true), &b[2]).unwrap_err();
        assert!(e.to_string().contains("tablespaces"), "{e}");
    }
}
