//! Delta restore (`dbagent restore --delta`): restoring into an existing, stopped data
//! directory of the same cluster rewrites only the files whose size or checksum differs from
//! the backup and removes the files the backup does not have, instead of writing every byte of
//! the backup again. [`make`] proves the usual restore plan and adds the comparison (what will
//! be rewritten, removed and kept, read from PostgreSQL's own `backup_manifest` of the backup
//! and the directory's files; nothing is written); [`execute`] streams the stored archives as a
//! full restore does, checksums verified as they stream, and writes only the members that
//! differ (each to a temporary name, then renamed). `global/pg_control` is set aside first and
//! the backup's put in place last, so a directory left half rewritten by a failure or a crash cannot be started
//! by mistake.
//!
//! Layer: operation. Uses: backup, repo, units. Used by: restore (the CLI calls [`make`] and [`execute`]).

pub mod compare;

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::plan::{self, PlanError, RestorePlan, Target};
use super::{Executed, RestoreError, io_err};
use crate::backup::manifest::{self, BackupManifest, BackupType};
use crate::repo::seekable::Index;
use crate::repo::{Compression, Repo};
use compare::{
    PG_CONTROL, PG_CONTROL_ASIDE, Seekable, TMP_SUFFIX, remove_path, stream_archive,
    system_identifier,
};

pub use compare::DeltaPlan;

fn usage(s: String) -> PlanError {
    PlanError::Usage(s)
}

/// Checks that `dir` can take a delta restore before anything else is read: it exists, is a
/// data directory and no server runs in it.
fn check_dir(req: &plan::Request) -> Result<(), PlanError> {
    let dir = &req.to;
    if req.force {
        return Err(usage(
            "--delta and --force contradict each other: --delta keeps the files of the directory that match the backup, --force removes everything first; pass one of them".into(),
        ));
    }
    if !dir.is_absolute() {
        return Err(usage(format!(
            "--to {} must be an absolute path",
            dir.display()
        )));
    }
    if let Some(pid) = plan::running_postmaster(dir) {
        return Err(PlanError::InUse {
            dir: dir.clone(),
            pid,
        });
    }
    let facts = plan::inspect_dir(dir)?;
    if facts.entries == 0 {
        return Err(usage(format!(
            "{} is empty or does not exist: --delta has nothing to compare; restore without --delta",
            dir.display()
        )));
    }
    for needed in ["PG_VERSION", PG_CONTROL] {
        // An interrupted delta restore set pg_control aside: run again, it is still a data
        // directory of this cluster.
        let present = dir.join(needed).is_file()
            || (needed == PG_CONTROL && dir.join(PG_CONTROL_ASIDE).is_file());
        if !present {
            return Err(usage(format!(
                "{} is not a PostgreSQL data directory (it has no {needed}): --delta restores only into a data directory of the same cluster; restore into an empty directory without --delta",
                dir.display()
            )));
        }
    }
    Ok(())
}

/// Proves the restore plan for `--delta` and compares the directory with the backup. Reads
/// the repository and the directory; writes nothing.
pub fn make(repo: &Repo, req: &plan::Request) -> Result<RestorePlan, PlanError> {
    check_dir(req)?;
    let mut facts = plan::gather(repo, req)?;
    // The directory is not empty, on purpose: what is in it is compared, not replaced.
    facts.dir.entries = 0;
    let mut plan = plan::decide(req, &facts)?;
    if let Target::Time(t) = req.target {
        plan::prove_time(repo, &facts, &plan, t)?;
    }
    let m = &plan.manifest;
    if m.backup_type == BackupType::Incremental {
        return Err(usage(format!(
            "backup {} is incremental: --delta restores only full backups; restore it without --delta (into an empty directory), or choose a full backup with --backup",
            m.id
        )));
    }
    if !plan.tablespaces.is_empty() {
        return Err(usage(format!(
            "backup {} has tablespaces ({}): --delta does not restore tablespaces yet; restore without --delta into an empty directory (and empty tablespace locations)",
            m.id,
            plan.tablespaces
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let dir = req.to.clone();
    let ours = system_identifier(&dir).map_err(io_err_plan(&dir.join(PG_CONTROL), "read"))?;
    if ours.to_string() != m.system_identifier {
        return Err(usage(format!(
            "{} belongs to another cluster (system identifier {ours}, the backup's is {}); restore into an empty directory instead",
            dir.display(),
            m.system_identifier
        )));
    }
    let version_path = dir.join("PG_VERSION");
    let version =
        std::fs::read_to_string(&version_path).map_err(io_err_plan(&version_path, "read"))?;
    let version = version.trim();
    if version != m.pg_major.to_string() {
        return Err(usage(format!(
            "{} is a PostgreSQL {version} data directory and backup {} is of PostgreSQL {}: restore into an empty directory instead",
            dir.display(),
            m.id,
            m.pg_major
        )));
    }
    let key = manifest::backup_key(&m.id, "backup_manifest");
    let stored = m
        .files
        .iter()
        .find(|f| f.name == "backup_manifest")
        .ok_or_else(|| {
            usage(format!(
                "backup {} has no backup_manifest (PostgreSQL's list of its files): --delta needs it; restore without --delta",
                m.id
            ))
        })?;
    let bytes = repo.storage().read(&key)?.ok_or_else(|| {
        usage(format!(
            "backup {} has no backup_manifest ({} does not exist): --delta needs it; restore without --delta",
            m.id,
            repo.locate(&key).display()
        ))
    })?;
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    if sha != stored.sha256 {
        return Err(usage(format!(
            "backup {}'s backup_manifest is damaged (SHA-256 {sha}, manifest.json says {}): verify it with `dbagent backups verify`, and restore another backup with --backup",
            m.id, stored.sha256
        )));
    }
    let wanted = compare::parse_pg_manifest(&bytes).map_err(|why| {
        usage(format!(
            "backup {}'s backup_manifest cannot be read: {why}; restore without --delta",
            m.id
        ))
    })?;
    let (indexes, mut notes) = load_indexes(repo, m);
    let mut layout = BTreeMap::new();
    for index in indexes.values() {
        layout.extend(index.chunk_layout());
    }
    let mut delta = compare::compare(&dir, &wanted, &layout).map_err(|e| PlanError::Io {
        path: e.path,
        action: e.action,
        source: e.source,
    })?;
    for file in m.files.iter().filter(|f| f.name != "backup_manifest") {
        match indexes.get(&file.name) {
            Some(index) => {
                let (bytes, chunks, skipped) = delta.decompress_estimate(index);
                delta.bytes_to_decompress += bytes;
                delta.chunk_frames += chunks;
                delta.chunk_frames_skipped += skipped;
            }
            None => delta.bytes_to_decompress += file.size,
        }
    }
    delta.indexes = indexes;
    if delta.checksum_algorithm.contains("NONE") {
        notes.push(format!(
            "backup {} was taken without file checksums (--manifest-checksums=NONE): every file is rewritten",
            m.id
        ));
    }
    plan.notes.extend(notes);
    plan.estimated_seconds = 5
        + delta.bytes_rewritten / (200 << 20)
        + (delta.bytes_to_decompress / (1 << 30))
        + plan.wal.bytes / (100 << 20);
    plan.delta = Some(delta);
    Ok(plan)
}

/// The frame indexes of the backup's archives that are sound (stored bytes as manifest.json
/// records them, readable, matching their archive), by archive name; and a note for each one
/// that is not: that archive is then decompressed whole, which is slower but as safe (the
/// archive is verified by its own SHA-256 either way).
fn load_indexes(repo: &Repo, m: &BackupManifest) -> (BTreeMap<String, Arc<Index>>, Vec<String>) {
    let mut out = BTreeMap::new();
    let mut notes = Vec::new();
    if m.compression != Compression::Zstd {
        return (out, notes);
    }
    for file in &m.files {
        let Some(stored) = &file.index else {
            continue;
        };
        let key = manifest::backup_key(&m.id, &stored.name);
        let loaded = match repo.storage().read(&key) {
            Ok(Some(bytes)) => {
                let sha = {
                    use sha2::Digest;
                    hex::encode(sha2::Sha256::digest(&bytes))
                };
                if bytes.len() as u64 != stored.size || !sha.eq_ignore_ascii_case(&stored.sha256) {
                    Err(format!(
                        "SHA-256 {sha} and {} bytes, manifest.json says {} and {}",
                        bytes.len(),
                        stored.sha256,
                        stored.size
                    ))
                } else {
                    Index::decode(&bytes).and_then(|index| {
                        index.validate(file.stored_size, file.size)?;
                        Ok(index)
                    })
                }
            }
            Ok(None) => Err(format!("{} does not exist", repo.locate(&key).display())),
            Err(e) => Err(e.to_string()),
        };
        match loaded {
            Ok(index) => {
                out.insert(file.name.clone(), Arc::new(index));
            }
            Err(why) => notes.push(format!(
                "the frame index {} of backup {} is damaged or unreadable ({why}): {} is decompressed whole instead (slower, as safe); run `dbagent backups verify {}`",
                stored.name, m.id, file.name, m.id
            )),
        }
    }
    (out, notes)
}

fn io_err_plan<'a>(
    path: &'a Path,
    action: &'static str,
) -> impl FnOnce(io::Error) -> PlanError + 'a {
    move |source| PlanError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}

/// Carries out a delta plan: sets `global/pg_control` aside (from here on the directory cannot be
/// started until the restore completes), removes the files the backup does not have, streams
/// every archive writing only the files that differ, removes directories the backup does not
/// have, puts the backup's pg_control in place, then writes the recovery settings like any
/// restore. On failure the directory is left partly rewritten, and the error says so.
pub fn execute(
    repo: &Repo,
    plan: &RestorePlan,
    progress: &mut dyn FnMut(&str),
) -> Result<Executed, RestoreError> {
    let started = Instant::now();
    let to = &plan.to;
    let Some(delta) = &plan.delta else {
        return Err(RestoreError::Start(format!(
            "the plan for {} is not a delta plan: carry it out with restore::execute",
            to.display()
        )));
    };
    // The plan was proven moments ago; a server starting in the directory meanwhile must
    // never see its files rewritten.
    if let Some(pid) = plan::running_postmaster(to) {
        return Err(PlanError::InUse {
            dir: to.clone(),
            pid,
        }
        .into());
    }
    let partly = |e: RestoreError| {
        e.with_cleanup(format!(
            "{} is now partly rewritten and cannot be started (its global/pg_control was set aside as pg_control.dbagent-delta-old): restore it again, with --delta from a good backup or without --delta",
            to.display()
        ))
    };
    let control = to.join(PG_CONTROL);
    let aside = to.join(PG_CONTROL_ASIDE);
    if control.exists() {
        std::fs::rename(&control, &aside).map_err(io_err(&control, "set aside"))?;
    }
    let result = (|| {
        for rel in &delta.remove {
            if rel == Path::new(PG_CONTROL_ASIDE) {
                continue;
            }
            let p = to.join(rel);
            remove_path(&p).map_err(io_err(&p, "remove"))?;
        }
        progress(&format!(
            "removed {} files the backup does not have; rewriting {} of {} files ({}), {} unchanged files kept",
            delta.files_removed,
            delta.files_rewritten,
            delta.files_rewritten + delta.files_unchanged,
            crate::units::human_bytes(delta.bytes_rewritten),
            delta.files_unchanged
        ));
        let m = &plan.manifest;
        let mut done = Executed {
            files: Vec::new(),
            members: 0,
            stored_bytes: 0,
            seconds: 0.0,
        };
        let mut dirs = BTreeSet::new();
        let mut written = 0u64;
        for file in &m.files {
            if file.name == "backup_manifest" {
                continue;
            }
            if file.tablespace.is_some() {
                return Err(RestoreError::Recovery(format!(
                    "backup {} has tablespaces, which --delta does not restore",
                    m.id
                )));
            }
            let t0 = Instant::now();
            let key = manifest::backup_key(&m.id, &file.name);
            let raw = match repo.storage().get(&key) {
                Ok(Some(raw)) => raw,
                Ok(None) => {
                    return Err(RestoreError::Io {
                        path: repo.locate(&key),
                        action: "open",
                        source: io::Error::from(io::ErrorKind::NotFound),
                    });
                }
                Err(e) => {
                    return Err(RestoreError::Io {
                        path: repo.locate(&key),
                        action: "open",
                        source: e.into(),
                    });
                }
            };
            let seek = delta.indexes.get(&file.name).map(|index| Seekable {
                index,
                target_chunks: &delta.target_chunks,
            });
            let s = stream_archive(raw, file, m.compression, to, &delta.rewrite, seek).map_err(
                |source| RestoreError::Extract {
                    source,
                    cleanup: String::new(),
                },
            )?;
            let frames = match s.frames {
                Some(f) => format!(
                    "; decompressed {} in {} of {} frames, passed over {} frames holding {} the directory has",
                    crate::units::human_bytes(f.bytes_decompressed),
                    f.frames_decompressed,
                    f.frames,
                    f.frames_skipped,
                    crate::units::human_bytes(f.bytes_skipped)
                ),
                None => format!(
                    "; decompressed all of it ({})",
                    crate::units::human_bytes(file.size)
                ),
            };
            progress(&format!(
                "streamed {} ({} members, SHA-256 verified, {}): wrote {} files that differed ({} written: blocks that differ in files that were there, whole new files){frames}",
                file.name,
                s.members,
                crate::units::human_duration_of(t0.elapsed()),
                s.written,
                crate::units::human_bytes(s.bytes_written)
            ));
            done.members += s.members;
            done.stored_bytes += s.stored_bytes;
            done.files.push(file.name.clone());
            written += s.written;
            dirs.extend(s.dirs);
        }
        if written != delta.files_rewritten {
            return Err(RestoreError::Recovery(format!(
                "the backup's archives held {written} of the {} files to rewrite that its backup_manifest lists; {} is partly rewritten and cannot be started: restore it again without --delta",
                delta.files_rewritten,
                to.display()
            )));
        }
        for d in &delta.extra_dirs {
            if dirs.contains(d) {
                continue;
            }
            let p = to.join(d);
            match std::fs::remove_dir(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&p, "remove the directory")(e)),
            }
        }
        let mut tmp = control.clone().into_os_string();
        tmp.push(TMP_SUFFIX);
        std::fs::rename(PathBuf::from(tmp), &control).map_err(io_err(&control, "rename"))?;
        remove_path(&aside).map_err(io_err(&aside, "remove"))?;
        Ok(done)
    })()
    .map_err(partly)?;
    super::finish_files(plan)?;
    Ok(Executed {
        seconds: started.elapsed().as_secs_f64(),
        ..result
    })
}
