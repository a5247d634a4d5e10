//! Applying a chain's incrementals to the full backup already extracted in the target, in
//! place, so that the target ends up byte for byte what `pg_combinebackup` would write (its
//! `pg_combinebackup.c` and `reconstruct.c`, PostgreSQL 17 and 18):
//!
//! - the newest member's file list is the output's: whatever the target holds that the newest
//!   member has neither whole nor as `INCREMENTAL.<name>` is removed (dropped tables, dropped
//!   databases); symbolic links are not carried (pg_combinebackup skips them);
//! - a file the newest member has whole is moved from staging into the target;
//! - a file it has as `INCREMENTAL.<name>` is rebuilt on top of the newest member that has it
//!   whole (the root, already in the target, or an incremental, moved in first). With T the
//!   newest file's truncation_block_length and L its reconstructed length (T, or past its last
//!   block): blocks at or past T are cut off the base, each older incremental's blocks below T
//!   are written oldest first (so the newest one that carries a block wins, as
//!   pg_combinebackup's source map has it; their own truncation lengths are ignored, as
//!   there), then every block of the newest, and the file is set to L blocks: blocks nobody
//!   carries past the base's end read as zeros, as pg_combinebackup zero-fills them. When no
//!   block is needed and the base is exactly T blocks long, the base is the output unchanged
//!   and keeps its manifest checksum (pg_combinebackup copies it whole);
//! - `backup_label` is the newest member's without its `INCREMENTAL FROM LSN:` and
//!   `INCREMENTAL FROM TLI:` lines;
//! - `backup_manifest` lists every file (see [`super::pg_manifest`]): files carried whole keep
//!   the checksum of the manifest they came with; rebuilt files and backup_label get a fresh
//!   CRC32C, read back once they are written. Files are rebuilt and read back on two threads.
//!
//! Before anything is changed, the members are checked as pg_combinebackup checks them: the
//! root's backup_label is not incremental, each other member's `INCREMENTAL FROM LSN/TLI` is
//! its predecessor's start, and every member's pg_control and manifest carry one system
//! identifier.

use std::collections::HashSet;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::error::{ExecError, create_private_dir};
use super::incremental_file::{BLCKSZ, IncrementalFile, PREFIX};
use super::pg_manifest::{OutEntry, PgManifest, crc32c_hex, render};

/// One member of the chain, ready to combine.
#[derive(Debug)]
pub struct Member {
    pub id: String,
    /// Where its files are: the target for the root, `staging/<ID>` for the others.
    pub dir: PathBuf,
    pub manifest: PgManifest,
}

/// What [`combine`] did.
#[derive(Debug, Default, Clone)]
pub struct Combined {
    /// Files moved whole from staging.
    pub moved: usize,
    /// Files rebuilt from INCREMENTAL files.
    pub rebuilt: usize,
    /// Blocks written into rebuilt files.
    pub blocks: u64,
    /// Files and directories of the root that the newest member does not have.
    pub removed: usize,
    /// Time spent rebuilding files and reading them back for their checksums (two threads).
    pub checksum_time: std::time::Duration,
}

fn io<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(std::io::Error) -> ExecError + 'a {
    move |source| ExecError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}

fn failed(msg: String) -> ExecError {
    ExecError::Failed(msg)
}

/// What a backup_label says about where the backup starts and what it is incremental on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Label {
    start_lsn: u64,
    start_tli: u32,
    /// `INCREMENTAL FROM LSN` / `INCREMENTAL FROM TLI`.
    from: Option<(u64, u32)>,
}

fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

fn show_lsn(l: u64) -> String {
    format!("{:X}/{:X}", l >> 32, l & 0xffff_ffff)
}

fn parse_label(text: &str, shown: &str) -> Result<Label, String> {
    let bad = |what: &str| format!("{shown} is not a usable backup_label: {what}");
    let (mut start_lsn, mut start_tli, mut from_lsn, mut from_tli) = (None, None, None, None);
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("START WAL LOCATION: ") {
            start_lsn = Some(
                rest.split(' ')
                    .next()
                    .and_then(parse_lsn)
                    .ok_or_else(|| bad("cannot parse START WAL LOCATION"))?,
            );
        } else if let Some(rest) = line.strip_prefix("START TIMELINE: ") {
            start_tli = Some(
                rest.trim()
                    .parse::<u32>()
                    .map_err(|_| bad("cannot parse START TIMELINE"))?,
            );
        } else if let Some(rest) = line.strip_prefix("INCREMENTAL FROM LSN: ") {
            from_lsn = Some(
                parse_lsn(rest.trim()).ok_or_else(|| bad("cannot parse INCREMENTAL FROM LSN"))?,
            );
        } else if let Some(rest) = line.strip_prefix("INCREMENTAL FROM TLI: ") {
            from_tli = Some(
                rest.trim()
                    .parse::<u32>()
                    .map_err(|_| bad("cannot parse INCREMENTAL FROM TLI"))?,
            );
        }
    }
    let from = match (from_lsn, from_tli) {
        (Some(l), Some(t)) => Some((l, t)),
        (None, None) => None,
        _ => {
            return Err(bad(
                "INCREMENTAL FROM LSN and INCREMENTAL FROM TLI go together",
            ));
        }
    };
    Ok(Label {
        start_lsn: start_lsn.ok_or_else(|| bad("no START WAL LOCATION"))?,
        start_tli: start_tli.ok_or_else(|| bad("no START TIMELINE"))?,
        from,
    })
}

/// The backup_label written into the combined directory: the newest member's, without the
/// two INCREMENTAL FROM lines (line ends kept as they are).
pub fn combined_label(label: &[u8]) -> Vec<u8> {
    label
        .split_inclusive(|&b| b == b'\n')
        .filter(|l| {
            !l.starts_with(b"INCREMENTAL FROM LSN: ") && !l.starts_with(b"INCREMENTAL FROM TLI: ")
        })
        .flatten()
        .copied()
        .collect()
}

/// The system identifier in a pg_control file (its first field).
fn control_system_identifier(path: &Path) -> Result<u64, ExecError> {
    let f = std::fs::File::open(path).map_err(io(path, "open"))?;
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, 0).map_err(io(path, "read"))?;
    Ok(u64::from_le_bytes(b))
}

/// The chain checks pg_combinebackup makes before it writes anything.
fn check_members(members: &[Member]) -> Result<(), ExecError> {
    let mut prev: Option<(&Member, Label)> = None;
    let mut sysid: Option<(u64, &str)> = None;
    for m in members {
        let path = m.dir.join("backup_label");
        let text = std::fs::read_to_string(&path).map_err(io(&path, "read"))?;
        let shown = format!("backup_label of backup {}", m.id);
        let label = parse_label(&text, &shown).map_err(failed)?;
        match (&prev, label.from) {
            (None, Some(_)) => {
                return Err(failed(format!(
                    "backup {} is the root of the chain, but its backup_label says it is incremental: the repository's manifests are damaged; this chain cannot be restored",
                    m.id
                )));
            }
            (Some((p, _)), None) => {
                return Err(failed(format!(
                    "backup {} follows {} in the chain, but its backup_label says it is a full backup: the repository's manifests are damaged; this chain cannot be restored",
                    m.id, p.id
                )));
            }
            (Some((p, pl)), Some((lsn, tli))) if lsn != pl.start_lsn || tli != pl.start_tli => {
                return Err(failed(format!(
                    "backup {} is incremental from LSN {} on timeline {tli}, but its parent {} starts at LSN {} on timeline {}: they are not one chain; this chain cannot be restored",
                    m.id,
                    show_lsn(lsn),
                    p.id,
                    show_lsn(pl.start_lsn),
                    pl.start_tli
                )));
            }
            _ => {}
        }
        let control = m.dir.join("global/pg_control");
        let id = control_system_identifier(&control)?;
        for (what, other) in [
            ("pg_control", Some(id)),
            ("backup_manifest", m.manifest.system_identifier),
        ] {
            let Some(other) = other else { continue };
            match sysid {
                None => sysid = Some((other, m.id.as_str())),
                Some((first, first_id)) if first != other => {
                    return Err(failed(format!(
                        "the {what} of backup {} has system identifier {other}, backup {first_id} has {first}: the chain mixes clusters; it cannot be restored",
                        m.id
                    )));
                }
                _ => {}
            }
        }
        prev = Some((m, label));
    }
    Ok(())
}

/// What the newest member holds at one path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Dir,
    Whole,
    /// `INCREMENTAL.<name>`; the output path drops the prefix.
    Incremental {
        out: PathBuf,
    },
}

/// Directories where pg_combinebackup looks for INCREMENTAL files (elsewhere such a name is an
/// ordinary file).
fn incremental_dir(rel_dir: &Path) -> bool {
    let s = rel_dir.as_os_str().as_bytes();
    s.starts_with(b"base/") || s == b"global" || s.starts_with(b"pg_tblspc/")
}

fn is_oid(name: &[u8]) -> bool {
    !name.is_empty()
        && name[0] != b'0'
        && name.iter().all(u8::is_ascii_digit)
        && std::str::from_utf8(name)
            .ok()
            .and_then(|s| s.parse::<u32>().ok())
            .is_some()
}

/// The newest member's entries, as pg_combinebackup's process_directory_recursively sees them
/// (parents before children).
fn listing(root: &Path, rel: &Path, out: &mut Vec<(PathBuf, Kind)>) -> Result<(), ExecError> {
    let dir = root.join(rel);
    let mut names: Vec<OsString> = std::fs::read_dir(&dir)
        .map_err(io(&dir, "read"))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(io(&dir, "read"))?;
    names.sort();
    for name in names {
        let rel_path = rel.join(&name);
        let path = root.join(&rel_path);
        let meta = std::fs::symlink_metadata(&path).map_err(io(&path, "stat"))?;
        let bytes = name.as_bytes();
        if rel.as_os_str() == "pg_tblspc"
            && is_oid(bytes)
            && (meta.is_dir() || meta.file_type().is_symlink())
        {
            continue;
        }
        if meta.is_dir() {
            out.push((rel_path.clone(), Kind::Dir));
            listing(root, &rel_path, out)?;
            continue;
        }
        if !meta.is_file() {
            continue;
        }
        if rel.as_os_str().is_empty() && (bytes == b"backup_label" || bytes == b"backup_manifest") {
            continue;
        }
        if incremental_dir(rel) && bytes.starts_with(PREFIX.as_bytes()) {
            let bare = std::ffi::OsStr::from_bytes(&bytes[PREFIX.len()..]);
            out.push((
                rel_path,
                Kind::Incremental {
                    out: rel.join(bare),
                },
            ));
        } else {
            out.push((rel_path, Kind::Whole));
        }
    }
    Ok(())
}

/// Removes from `target/rel` whatever is not in `dirs` / `files`; returns how many entries.
fn prune(
    target: &Path,
    rel: &Path,
    dirs: &HashSet<PathBuf>,
    files: &HashSet<PathBuf>,
) -> Result<usize, ExecError> {
    let dir = target.join(rel);
    let mut removed = 0;
    for e in std::fs::read_dir(&dir).map_err(io(&dir, "read"))? {
        let e = e.map_err(io(&dir, "read"))?;
        let rel_path = rel.join(e.file_name());
        let path = e.path();
        let meta = std::fs::symlink_metadata(&path).map_err(io(&path, "stat"))?;
        if meta.is_dir() {
            if dirs.contains(&rel_path) {
                removed += prune(target, &rel_path, dirs, files)?;
            } else {
                std::fs::remove_dir_all(&path).map_err(io(&path, "remove"))?;
                removed += 1;
            }
        } else if !(meta.is_file() && files.contains(&rel_path)) {
            std::fs::remove_file(&path).map_err(io(&path, "remove"))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Moves `from` to `to` (replacing it): a rename, or a copy when they are on two filesystems.
fn move_file(from: &Path, to: &Path) -> Result<(), ExecError> {
    match std::fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(nix::errno::Errno::EXDEV as i32) => {
            std::fs::copy(from, to).map_err(io(to, "copy into"))?;
            std::fs::remove_file(from).map_err(io(from, "remove"))
        }
        Err(e) => Err(ExecError::Io {
            path: to.to_path_buf(),
            action: "move into place",
            source: e,
        }),
    }
}

/// The CRC32C of a whole file.
pub fn crc32c_of(path: &Path) -> std::io::Result<u32> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut crc = 0u32;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(crc);
        }
        crc = crc32c::crc32c_append(crc, &buf[..n]);
    }
}

/// Writes `inc`'s blocks (those `keep` accepts) into `out` at their place, in runs.
fn write_blocks(
    inc: &IncrementalFile,
    out: &std::fs::File,
    out_path: &Path,
    keep: impl Fn(u32) -> bool,
) -> Result<u64, ExecError> {
    const RUN: usize = 128;
    let src = std::fs::File::open(&inc.path).map_err(io(&inc.path, "open"))?;
    let mut buf = vec![0u8; RUN * BLCKSZ as usize];
    let mut written = 0u64;
    let mut i = 0;
    while i < inc.blocks.len() {
        if !keep(inc.blocks[i]) {
            i += 1;
            continue;
        }
        let mut n = 1;
        while n < RUN
            && i + n < inc.blocks.len()
            && inc.blocks[i + n] == inc.blocks[i] + n as u32
            && keep(inc.blocks[i + n])
        {
            n += 1;
        }
        let bytes = &mut buf[..n * BLCKSZ as usize];
        src.read_exact_at(bytes, inc.block_offset(i))
            .map_err(io(&inc.path, "read"))?;
        out.write_all_at(bytes, u64::from(inc.blocks[i]) * BLCKSZ)
            .map_err(io(out_path, "write"))?;
        written += n as u64;
        i += n;
    }
    Ok(written)
}

/// One output file rebuilt from INCREMENTAL files; returns (blocks written, checksum when the
/// base was carried unchanged).
fn rebuild(
    target: &Path,
    members: &[Member],
    inc_rel: &Path,
    out_rel: &Path,
) -> Result<(u64, Option<String>), ExecError> {
    let newest = members.len() - 1;
    let latest = IncrementalFile::open(&members[newest].dir.join(inc_rel))
        .map_err(|e| failed(format!("{e} (backup {})", members[newest].id)))?;
    // Newest first: the INCREMENTAL files back to the newest member that has the file whole.
    let mut incs = vec![latest];
    let mut base = None;
    for k in (0..newest).rev() {
        let whole = members[k].dir.join(out_rel);
        if std::fs::symlink_metadata(&whole).is_ok_and(|m| m.is_file()) {
            base = Some(k);
            break;
        }
        let inc = members[k].dir.join(inc_rel);
        if k > 0 && inc.exists() {
            incs.push(
                IncrementalFile::open(&inc)
                    .map_err(|e| failed(format!("{e} (backup {})", members[k].id)))?,
            );
            continue;
        }
        return Err(failed(format!(
            "backup {} has {} as an incremental file, but backup {} of its chain has neither it nor an incremental version of it: the chain is inconsistent and cannot be restored",
            members[newest].id,
            out_rel.display(),
            members[k].id
        )));
    }
    let Some(base) = base else {
        return Err(failed(format!(
            "backup {} has {} as an incremental file, but no backup of its chain has it whole: the chain is inconsistent and cannot be restored",
            members[newest].id,
            out_rel.display()
        )));
    };
    let out_path = target.join(out_rel);
    if base > 0 {
        move_file(&members[base].dir.join(out_rel), &out_path)?;
    }
    let t = incs[0].truncation_block_length;
    let length = u64::from(incs[0].reconstructed_blocks()) * BLCKSZ;
    let base_len = std::fs::metadata(&out_path)
        .map_err(io(&out_path, "stat"))?
        .len();
    let untouched = incs[0].blocks.is_empty()
        && incs[1..].iter().all(|f| f.blocks.iter().all(|&b| b >= t))
        && base_len == u64::from(t) * BLCKSZ;
    if untouched {
        return Ok((
            0,
            members[base].manifest.crc32c(out_rel).map(str::to_string),
        ));
    }
    let out = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&out_path)
        .map_err(io(&out_path, "open"))?;
    let keep = (base_len / BLCKSZ).min(u64::from(t)) * BLCKSZ;
    if keep != base_len {
        out.set_len(keep).map_err(io(&out_path, "truncate"))?;
    }
    let mut blocks = 0;
    for inc in incs[1..].iter().rev() {
        blocks += write_blocks(inc, &out, &out_path, |b| b < t)?;
    }
    blocks += write_blocks(&incs[0], &out, &out_path, |_| true)?;
    out.set_len(length).map_err(io(&out_path, "extend"))?;
    Ok((blocks, None))
}

/// Work for the two threads of [`combine`]: rebuilding a file (then its checksum, unless its
/// base kept one), or only a checksum.
enum Job<'a> {
    Rebuild {
        inc_rel: &'a Path,
        out_rel: &'a Path,
        checksum: bool,
    },
    Checksum {
        rel: &'a Path,
    },
}

/// What a job produced: blocks written and the CRC32C hex (None: not wanted).
type JobResult = Result<(u64, Option<String>), ExecError>;

fn run_job(target: &Path, members: &[Member], job: &Job) -> JobResult {
    let sum = |rel: &Path| {
        let path = target.join(rel);
        crc32c_of(&path)
            .map(crc32c_hex)
            .map_err(io(&path, "read back"))
    };
    match job {
        Job::Checksum { rel } => Ok((0, Some(sum(rel)?))),
        Job::Rebuild {
            inc_rel,
            out_rel,
            checksum,
        } => {
            let (blocks, known) = rebuild(target, members, inc_rel, out_rel)?;
            let crc = match (known, checksum) {
                (Some(k), _) => Some(k),
                (None, true) => Some(sum(out_rel)?),
                (None, false) => None,
            };
            Ok((blocks, crc))
        }
    }
}

/// Runs `jobs` on two threads (they touch distinct files); results in the jobs' order. Stops
/// taking new jobs after a failure.
fn run_jobs(
    target: &Path,
    members: &[Member],
    jobs: &[Job],
) -> Result<Vec<(u64, Option<String>)>, ExecError> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let results: std::sync::Mutex<Vec<Option<JobResult>>> =
        std::sync::Mutex::new((0..jobs.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while !stop.load(Ordering::SeqCst) {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(job) = jobs.get(i) else { return };
                    let r = run_job(target, members, job);
                    if r.is_err() {
                        stop.store(true, Ordering::SeqCst);
                    }
                    if let Ok(mut v) = results.lock() {
                        v[i] = Some(r);
                    }
                }
            });
        }
    });
    let results = results
        .into_inner()
        .map_err(|_| failed("combining the chain: a thread panicked".into()))?;
    let mut out = Vec::with_capacity(jobs.len());
    let mut unfinished = false;
    for r in results {
        match r {
            Some(Ok(x)) => out.push(x),
            Some(Err(e)) => return Err(e),
            None => unfinished = true,
        }
    }
    if unfinished {
        return Err(failed(
            "combining the chain stopped before every file was done".into(),
        ));
    }
    Ok(out)
}

/// Combines the chain in `members` (root first; the root's files already in `target`, the
/// others extracted in their directories) into `target`, and writes its backup_label and
/// backup_manifest.
/// With `checksum_rebuilt` false, rebuilt files whose base kept no checksum are listed by
/// size only (no read-back).
pub fn combine(
    target: &Path,
    members: &[Member],
    checksum_rebuilt: bool,
) -> Result<Combined, ExecError> {
    let Some(newest) = members.last() else {
        return Err(failed("the chain has no members".into()));
    };
    check_members(members)?;
    let mut entries = Vec::new();
    listing(&newest.dir, Path::new(""), &mut entries)?;
    let dirs: HashSet<PathBuf> = entries
        .iter()
        .filter(|(_, k)| *k == Kind::Dir)
        .map(|(p, _)| p.clone())
        .collect();
    let mut files: HashSet<PathBuf> = entries
        .iter()
        .filter_map(|(p, k)| match k {
            Kind::Dir => None,
            Kind::Whole => Some(p.clone()),
            Kind::Incremental { out } => Some(out.clone()),
        })
        .collect();
    files.insert(PathBuf::from("backup_label"));
    let mut done = Combined {
        removed: prune(target, Path::new(""), &dirs, &files)?,
        ..Combined::default()
    };
    // First, on this thread: directories, and files carried whole moved into place (renames).
    // Then, on two: files rebuilt from INCREMENTAL files, each read back for its checksum, and
    // the checksums the manifests do not have.
    let mut jobs = Vec::new();
    let mut known = Vec::new();
    for (rel, kind) in &entries {
        let checksum = !rel.starts_with("pg_wal");
        match kind {
            Kind::Dir => {
                let d = target.join(rel);
                if !d.is_dir() {
                    create_private_dir(&d).map_err(io(&d, "create"))?;
                }
            }
            Kind::Whole => {
                move_file(&newest.dir.join(rel), &target.join(rel))?;
                done.moved += 1;
                match (newest.manifest.crc32c(rel), checksum) {
                    (Some(k), true) => known.push((rel.as_path(), Some(k.to_string()))),
                    (None, true) => jobs.push(Job::Checksum { rel }),
                    (_, false) => known.push((rel.as_path(), None)),
                }
            }
            Kind::Incremental { out } => {
                done.rebuilt += 1;
                jobs.push(Job::Rebuild {
                    inc_rel: rel,
                    out_rel: out,
                    checksum: checksum && checksum_rebuilt,
                });
            }
        }
    }
    let t0 = std::time::Instant::now();
    let results = run_jobs(target, members, &jobs)?;
    done.checksum_time = t0.elapsed();
    let label_src = newest.dir.join("backup_label");
    let label = std::fs::read(&label_src).map_err(io(&label_src, "read"))?;
    let label = combined_label(&label);
    let label_path = target.join("backup_label");
    std::fs::write(&label_path, &label).map_err(io(&label_path, "write"))?;
    let mut all: Vec<(&Path, Option<String>)> = vec![(
        Path::new("backup_label"),
        Some(crc32c_hex(crc32c::crc32c(&label))),
    )];
    all.extend(known);
    for (job, (blocks, crc)) in jobs.iter().zip(results) {
        done.blocks += blocks;
        let rel = match job {
            Job::Rebuild { out_rel, .. } => *out_rel,
            Job::Checksum { rel } => *rel,
        };
        all.push((rel, crc));
    }
    let mut manifest_entries = Vec::with_capacity(all.len());
    for (rel, crc) in all {
        let path = target.join(rel);
        let meta = std::fs::metadata(&path).map_err(io(&path, "stat"))?;
        use std::os::unix::fs::MetadataExt;
        manifest_entries.push(OutEntry {
            path: rel.to_path_buf(),
            size: meta.len(),
            mtime: meta.mtime(),
            crc32c: crc,
        });
    }
    let sysid = match newest.manifest.system_identifier {
        Some(s) => s,
        None => control_system_identifier(&target.join("global/pg_control"))?,
    };
    let text = render(sysid, &manifest_entries, &newest.manifest.wal_ranges);
    let mpath = target.join("backup_manifest");
    std::fs::write(&mpath, text).map_err(io(&mpath, "write"))?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::super::incremental_file::tests::encode;
    use super::*;

    #[test]
    fn the_combined_label_drops_only_the_incremental_lines() {
        let label = b"START WAL LOCATION: 0/5000028 (file 000000010000000000000005)\nCHECKPOINT LOCATION: 0/5000080\nBACKUP METHOD: streamed\nBACKUP FROM: primary\nSTART TIME: 2026-12-06 18:00:00 UTC\nLABEL: x\nSTART TIMELINE: 1\nINCREMENTAL FROM LSN: 0/3000028\nINCREMENTAL FROM TLI: 1\n";
        let out = String::from_utf8(combined_label(label)).unwrap();
        assert!(!out.contains("INCREMENTAL"), "{out}");
        assert!(out.ends_with("START TIMELINE: 1\n"), "{out}");
        assert_eq!(out.lines().count(), 7);
        let l = parse_label(std::str::from_utf8(label).unwrap(), "x").unwrap();
        assert_eq!(l.start_lsn, 0x500_0028);
        assert_eq!(l.from, Some((0x300_0028, 1)));
    }

    /// An INCREMENTAL file: truncation length and carried blocks.
    type Inc = (u32, Vec<u32>);

    fn block(fill: u8) -> Vec<u8> {
        vec![fill; BLCKSZ as usize]
    }

    /// A chain in temporary directories: root with `rel` of `root_blocks` blocks (block i
    /// filled with 100+i), then INCREMENTAL files (truncation, blocks filled with their
    /// number).
    fn rebuild_case(root_blocks: u8, incs: &[Inc]) -> Vec<u8> {
        let tmp = tempfile::tempdir().unwrap();
        let rel = Path::new("base/5/16384");
        let inc_rel = Path::new("base/5/INCREMENTAL.16384");
        let mut members = Vec::new();
        for k in 0..=incs.len() {
            let dir = tmp.path().join(format!("m{k}"));
            std::fs::create_dir_all(dir.join("base/5")).unwrap();
            if k == 0 {
                let data: Vec<u8> = (0..root_blocks).flat_map(|i| block(100 + i)).collect();
                std::fs::write(dir.join(rel), data).unwrap();
            } else {
                let (t, b) = &incs[k - 1];
                std::fs::write(dir.join(inc_rel), encode(*t, b)).unwrap();
            }
            members.push(Member {
                id: format!("m{k}"),
                dir,
                manifest: PgManifest::default(),
            });
        }
        let target = members[0].dir.clone();
        rebuild(&target, &members, inc_rel, rel).unwrap();
        std::fs::read(target.join(rel)).unwrap()
    }

    /// What pg_combinebackup's source map gives, block by block (None: zero-filled).
    fn expected(root_blocks: u8, incs: &[Inc]) -> Vec<u8> {
        let (t, latest) = &incs[incs.len() - 1];
        let t = *t;
        let len = latest.last().map_or(t, |&b| t.max(b + 1));
        let mut out = Vec::new();
        for b in 0..len {
            let fill = if latest.contains(&b) {
                Some(b as u8)
            } else if b >= t {
                None
            } else if incs[..incs.len() - 1].iter().any(|(_, bl)| bl.contains(&b)) {
                Some(b as u8)
            } else if b < u32::from(root_blocks) {
                Some(100 + b as u8)
            } else {
                None
            };
            out.extend(block(fill.unwrap_or(0)));
        }
        out
    }

    #[test]
    fn rebuilding_in_place_gives_pg_combinebackups_blocks() {
        let cases: Vec<(u8, Vec<Inc>)> = vec![
            // Changed blocks, same length.
            (6, vec![(6, vec![1, 4])]),
            // Growth: new blocks past the end, a hole zero-filled.
            (4, vec![(4, vec![2, 6])]),
            // Truncated to 3 blocks, then grown again to 5: block 3 is zero, not the root's,
            // block 5 is gone.
            (6, vec![(3, vec![4])]),
            // The newest says 5 blocks after an intermediate's truncation to 3: below 5, what
            // nobody carries comes from the root (pg_combinebackup reads only the newest's
            // truncation length).
            (6, vec![(3, vec![]), (5, vec![4])]),
            // An intermediate's truncation is ignored likewise: the root's blocks 2..5 stay.
            (6, vec![(2, vec![1]), (6, vec![0])]),
            // An intermediate's blocks at or past the newest's truncation length are not used.
            (6, vec![(6, vec![2, 5]), (4, vec![])]),
            // Newest wins over older for the same block; an older one's block fills in.
            (3, vec![(5, vec![1, 3]), (5, vec![1]), (5, vec![2])]),
            // Nothing changed.
            (3, vec![(3, vec![])]),
        ];
        for (root, incs) in cases {
            assert_eq!(
                rebuild_case(root, &incs),
                expected(root, &incs),
                "root {root} blocks, incrementals {incs:?}"
            );
        }
    }
}
