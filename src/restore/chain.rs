//! Restoring an incremental backup (PostgreSQL 17+): its chain (the full backup it descends
//! from and every incremental in between, root first) is extracted member by member into a
//! staging directory, each with its PostgreSQL `backup_manifest`, and the server-version-
//! matched `pg_combinebackup` writes the synthetic full backup into the target. The staging
//! directory is removed afterwards, on success and on failure.
//!
//! The plan part ([`plan`]) is data only: which members, where the staging directory is, how
//! many bytes it and the target need and whether that space is free (refused before anything
//! is written when it is not). [`execute`] carries it out; the caller then writes the usual
//! tablespace_map, recovery settings, restore marker and ownership.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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
    /// Uncompressed size: what it takes in the staging directory.
    pub size_bytes: u64,
    pub stored_bytes: u64,
}

/// How an incremental backup is restored; `restore --dry-run --json` prints it as `chain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainPlan {
    /// Root (the full backup) first, the restored backup last.
    pub members: Vec<ChainMember>,
    /// Where the members are extracted (removed afterwards).
    pub staging: PathBuf,
    /// Bytes the staging directory needs: the members' uncompressed sizes.
    pub staging_bytes: u64,
    /// Free bytes on the staging directory's filesystem (None: could not be read).
    pub staging_free_bytes: Option<u64>,
    /// Bytes the combined backup needs in the target (at most the members' sizes together).
    pub output_bytes: u64,
    /// Free bytes on the target's filesystem.
    pub target_free_bytes: Option<u64>,
    /// Staging and target are on one filesystem: both needs come from the same free space.
    pub same_filesystem: bool,
    /// `pg_combinebackup --link` (PostgreSQL 18+, one filesystem): files that come unchanged
    /// from one backup are hard-linked from staging instead of copied.
    pub link: bool,
    /// The pg_combinebackup binary, found when the plan is made (not printed).
    #[serde(skip)]
    pub program: Option<PathBuf>,
    /// postgres.bin_dir, where pg_combinebackup is looked for first.
    #[serde(skip)]
    pub bin_dir: Option<PathBuf>,
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

/// `<to>.staging`: a sibling of the target, so usually on its filesystem (pg_combinebackup
/// can then hard-link instead of copying).
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
/// the missing backup), a chain with tablespaces, a staging directory that is not empty, inside
/// the target or holding it, or too little free space.
pub fn plan(
    to: &Path,
    bin_dir: Option<&Path>,
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
    let staging_bytes: u64 = members.iter().map(|b| b.size()).sum();
    let output_bytes = staging_bytes;
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
            "the staging area plus the combined backup",
            path,
            staging_bytes + output_bytes,
            staging.free,
        )?;
    } else {
        need("the staging area", path, staging_bytes, staging.free)?;
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
        link: same_filesystem && m.pg_major >= 18,
        program: None,
        bin_dir: bin_dir.map(Path::to_path_buf),
    }))
}

/// Finds the pg_combinebackup of the backup's major version (before anything is written).
pub fn find_program(c: &mut ChainPlan, major: u32) -> Result<(), String> {
    let found = crate::pg::programs::find(c.bin_dir.as_deref(), major, "pg_combinebackup")
        .map_err(|e| refuse(format!("{e}: it restores incremental backups")))?;
    c.program = Some(found);
    Ok(())
}

/// One line for the plan: `F → I1 → I2`.
pub fn describe(c: &ChainPlan) -> String {
    c.members
        .iter()
        .map(|m| m.id.as_str())
        .collect::<Vec<_>>()
        .join(" → ")
}

/// Why a chain could not be combined; the caller removes what was written to the target.
#[derive(Debug)]
pub enum ExecError {
    Extract(extract::ExtractError),
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    Failed(String),
}

/// What [`execute`] extracted.
#[derive(Debug, Default)]
pub struct Done {
    pub files: Vec<String>,
    pub members: u64,
    pub stored_bytes: u64,
}

fn io_err<'a>(
    path: &'a Path,
    action: &'static str,
) -> impl FnOnce(std::io::Error) -> ExecError + 'a {
    move |source| ExecError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}

/// A directory only its owner can enter (as the restore's other directories).
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
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

/// Extracts every member of the chain into `staging/<ID>` (checksums verified as they
/// stream), writes each one's `backup_manifest`, and runs pg_combinebackup into the (empty)
/// target. The staging directory is removed whatever happens.
pub fn execute(
    repo: &Repo,
    to: &Path,
    c: &ChainPlan,
    progress: &mut dyn FnMut(&str),
) -> Result<Done, ExecError> {
    let program = c.program.clone().ok_or_else(|| {
        ExecError::Failed("the chain plan has no pg_combinebackup (plan not proven)".into())
    })?;
    let existed = c.staging.exists();
    create_private_dir(&c.staging).map_err(io_err(&c.staging, "create the staging directory"))?;
    let _cleanup = Staging {
        path: &c.staging,
        existed,
    };
    let mut done = Done::default();
    let mut dirs = Vec::new();
    for member in &c.members {
        let m = manifest::read_manifest(repo, &member.id)
            .map_err(|e| ExecError::Failed(e.to_string()))?
            .ok_or_else(|| {
                ExecError::Failed(format!(
                    "chain member {} vanished from the repository during the restore",
                    member.id
                ))
            })?;
        let dir = c.staging.join(&m.id);
        create_private_dir(&dir).map_err(io_err(&dir, "create"))?;
        for f in &m.files {
            // Named with its backup, so a damaged member is named.
            let mut named = f.clone();
            named.name = format!("{} of backup {}", f.name, m.id);
            if f.name == "backup_manifest" {
                write_backup_manifest(repo, &m, f, &named.name, &dir)?;
                continue;
            }
            let x = extract_member_file(repo, &m, f, &named, &dir).map_err(ExecError::Extract)?;
            done.members += x.members;
            done.stored_bytes += x.stored_bytes;
            done.files.push(format!("{}/{}", m.id, f.name));
        }
        if !dir.join("backup_manifest").exists() {
            return Err(ExecError::Failed(format!(
                "backup {} has no backup_manifest in the repository: pg_combinebackup needs it; this chain cannot be restored",
                m.id
            )));
        }
        progress(&format!(
            "extracted chain member {} ({}) into {} (SHA-256 verified)",
            m.id,
            m.backup_type.as_str(),
            dir.display()
        ));
        dirs.push(dir);
    }

    let mut cmd = Command::new(&program);
    // --no-sync: like a full restore, nothing is fsynced here; PostgreSQL syncs the data
    // directory when it starts recovery from a backup (and `--start`/drill start it).
    cmd.arg("--no-sync").arg("-o").arg(to);
    if c.link {
        cmd.arg("--link");
    }
    cmd.args(&dirs).env("LC_MESSAGES", "C").stdin(Stdio::null());
    progress(&format!(
        "combining {} backups with {}{} into {}",
        dirs.len(),
        program.display(),
        if c.link { " --link" } else { "" },
        to.display()
    ));
    let out = cmd.output().map_err(io_err(&program, "run"))?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        return Err(ExecError::Failed(format!(
            "pg_combinebackup failed ({}) combining {}: {}",
            out.status,
            describe(c),
            lines
                .iter()
                .take(4)
                .copied()
                .collect::<Vec<_>>()
                .join(" | ")
        )));
    }
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

/// Copies backup `m`'s stored `backup_manifest` into `dir`, checking its SHA-256 and size.
fn write_backup_manifest(
    repo: &Repo,
    m: &BackupManifest,
    f: &manifest::BackupFile,
    shown: &str,
    dir: &Path,
) -> Result<(), ExecError> {
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
    let path = dir.join("backup_manifest");
    std::fs::write(&path, &bytes).map_err(io_err(&path, "write"))?;
    Ok(())
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
            plan(Path::new("/r/data"), None, &b, &facts(0, true), &b[0]).unwrap(),
            None
        );
    }

    #[test]
    fn the_plan_lists_the_chain_and_the_staging_space() {
        let b = chain18();
        let c = plan(Path::new("/r/data"), None, &b, &facts(10_000, true), &b[2])
            .unwrap()
            .unwrap();
        assert_eq!(describe(&c), "F → I1 → I2");
        assert_eq!(c.staging_bytes, 1110);
        assert_eq!(c.output_bytes, 1110);
        assert!(c.same_filesystem && c.link);
        let c = plan(Path::new("/r/data"), None, &b, &facts(10_000, false), &b[1])
            .unwrap()
            .unwrap();
        assert_eq!(c.members.len(), 2);
        assert!(!c.link);
    }

    #[test]
    fn too_little_space_is_refused_before_anything_is_written() {
        let b = chain18();
        // One filesystem: staging and output together (2220) do not fit in 2000.
        let e = plan(Path::new("/r/data"), None, &b, &facts(2000, true), &b[2]).unwrap_err();
        assert!(e.to_string().contains("not enough free space"), "{e}");
        assert!(e.to_string().contains("/r/data.staging"), "{e}");
        // Two filesystems: each needs 1110.
        assert!(plan(Path::new("/r/data"), None, &b, &facts(2000, false), &b[2]).is_ok());
        let e = plan(Path::new("/r/data"), None, &b, &facts(1000, false), &b[2]).unwrap_err();
        assert!(e.to_string().contains("staging area"), "{e}");
    }

    #[test]
    fn a_broken_chain_a_busy_staging_dir_and_tablespaces_are_refused() {
        let mut b = chain18();
        b.remove(1);
        let e = plan(Path::new("/r/data"), None, &b, &facts(10_000, true), &b[1]).unwrap_err();
        assert!(e.to_string().contains("I1"), "{e}");
        let b = chain18();
        let mut f = facts(10_000, true);
        f.entries = 2;
        let e = plan(Path::new("/r/data"), None, &b, &f, &b[2]).unwrap_err();
        assert!(e.to_string().contains("not empty"), "{e}");
        let mut f = facts(10_000, true);
        f.path = PathBuf::from("/r/data/staging");
        assert!(plan(Path::new("/r/data"), None, &b, &f, &b[2]).is_err());
        let mut b = chain18();
        b[0].files[0].tablespace = Some(manifest::Tablespace {
            oid: 16385,
            name: "ts".into(),
            location: "/ts".into(),
        });
        let e = plan(Path::new("/r/data"), None, &b, &facts(10_000, true), &b[2]).unwrap_err();
        assert!(e.to_string().contains("tablespaces"), "{e}");
    }
}
