//! The comparison behind `dbagent restore --delta`: PostgreSQL's `backup_manifest` of the
//! backup (path, size, checksum of every file) against the files of the existing data
//! directory, giving what a delta restore rewrites, removes and keeps ([`DeltaPlan`]); and the
//! streaming of a stored archive that writes only the members to rewrite. Reads only, except
//! [`stream_archive`], which writes the members it is given.
//!
//! Layer: operation. Uses: backup, repo. Used by: restore.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::super::extract;
use crate::backup::manifest::BackupFile;
use crate::repo::seekable::{FrameReader, FrameStats, Index};
use crate::repo::{Compression, compress};

/// The suffix of the temporary name a rewritten file is written under before its rename.
pub const TMP_SUFFIX: &str = ".dbagent-delta";
pub const PG_CONTROL: &str = "global/pg_control";
/// Where a delta restore sets the directory's own pg_control aside while it works: the
/// directory cannot be started meanwhile, and an interrupted delta restore can be run again
/// (the system identifier is still there to check). Removed once the backup's is in place.
pub const PG_CONTROL_ASIDE: &str = "global/pg_control.dbagent-delta-old";

/// An I/O failure on a file of the directory.
#[derive(Debug)]
pub struct IoAt {
    pub path: PathBuf,
    pub action: &'static str,
    pub source: io::Error,
}

fn io_at<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(io::Error) -> IoAt + 'a {
    move |source| IoAt {
        path: path.to_path_buf(),
        action,
        source,
    }
}

/// What a delta restore will do to the directory. `--dry-run --json` prints the counts as
/// `plan.delta`.
#[derive(Debug, Clone, Serialize)]
pub struct DeltaPlan {
    /// Files of the backup that are missing in the directory or differ in size or checksum.
    pub files_rewritten: u64,
    pub bytes_rewritten: u64,
    /// Files (and symlinks) in the directory that the backup does not have.
    pub files_removed: u64,
    pub bytes_removed: u64,
    /// Files whose size and checksum match the backup: kept as they are.
    pub files_unchanged: u64,
    pub bytes_unchanged: u64,
    /// The checksum algorithm of the backup's backup_manifest (CRC32C unless the backup was
    /// taken with another one; with NONE every file is rewritten).
    pub checksum_algorithm: String,
    /// How long the comparison took.
    pub compare_seconds: f64,
    /// Uncompressed bytes of the stored archives that the restore decompresses: all of an
    /// archive without a frame index; with one, everything but the chunk frames whose data the
    /// directory already has (an estimate: a file found with other hard links is replaced
    /// whole).
    pub bytes_to_decompress: u64,
    /// Chunk frames in the archives' indexes, and how many of them hold data the directory
    /// already has: passed over without decompressing them.
    pub chunk_frames: u64,
    pub chunk_frames_skipped: u64,
    /// CRC-32C of each chunk (the index's layout) of the files that have chunk frames, as the
    /// directory has them; None for a chunk the file does not hold whole.
    #[serde(skip)]
    pub target_chunks: BTreeMap<PathBuf, Vec<Option<u32>>>,
    /// The frame indexes of the stored archives that have a sound one, by archive name.
    #[serde(skip)]
    pub indexes: BTreeMap<String, Arc<Index>>,
    /// Relative paths of the files to write.
    #[serde(skip)]
    pub rewrite: BTreeSet<PathBuf>,
    /// Relative paths of the files and symlinks to remove.
    #[serde(skip)]
    pub remove: Vec<PathBuf>,
    /// Directories that hold no file of the backup, deepest first: removed unless the backup's
    /// archive has them (as an empty directory such as `pg_wal` or `pg_stat_tmp`).
    #[serde(skip)]
    pub extra_dirs: Vec<PathBuf>,
}

/// PostgreSQL's `backup_manifest` (the parts a delta restore reads).
#[derive(Debug, Deserialize)]
struct PgManifest {
    #[serde(rename = "Files")]
    files: Vec<PgFile>,
}

#[derive(Debug, Deserialize)]
struct PgFile {
    #[serde(rename = "Path")]
    path: Option<String>,
    /// Hex of the path's bytes, for names that are not valid UTF-8.
    #[serde(rename = "Encoded-Path")]
    encoded_path: Option<String>,
    #[serde(rename = "Size")]
    size: u64,
    #[serde(rename = "Checksum-Algorithm")]
    algorithm: Option<String>,
    #[serde(rename = "Checksum")]
    checksum: Option<String>,
}

/// One file of the backup as the comparison sees it.
#[derive(Debug, Clone)]
pub struct Wanted {
    path: PathBuf,
    size: u64,
    algorithm: Algorithm,
    checksum: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Algorithm {
    None,
    Crc32c,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl Algorithm {
    fn parse(s: Option<&str>) -> Result<Algorithm, String> {
        Ok(match s.unwrap_or("NONE").to_ascii_uppercase().as_str() {
            "NONE" => Algorithm::None,
            "CRC32C" => Algorithm::Crc32c,
            "SHA224" => Algorithm::Sha224,
            "SHA256" => Algorithm::Sha256,
            "SHA384" => Algorithm::Sha384,
            "SHA512" => Algorithm::Sha512,
            other => return Err(format!("unknown checksum algorithm `{other}`")),
        })
    }

    fn name(self) -> &'static str {
        match self {
            Algorithm::None => "NONE",
            Algorithm::Crc32c => "CRC32C",
            Algorithm::Sha224 => "SHA224",
            Algorithm::Sha256 => "SHA256",
            Algorithm::Sha384 => "SHA384",
            Algorithm::Sha512 => "SHA512",
        }
    }
}

/// The checksum of `path` as backup_manifest writes it (hex; CRC32C as its little-endian
/// bytes, which is how PostgreSQL prints it on the platforms it builds for), reading in
/// blocks of `buf`'s size; `None` for algorithm NONE. In the same pass, the CRC-32C of each
/// range of `chunks` (offset, length; in order, not overlapping): None for a range the file
/// does not hold whole.
fn file_checksum(
    path: &Path,
    algorithm: Algorithm,
    chunks: &[(u64, u64)],
    buf: &mut [u8],
) -> io::Result<(Option<String>, Vec<Option<u32>>)> {
    use sha2::Digest;
    enum State {
        None,
        Crc(u32),
        S224(sha2::Sha224),
        S256(sha2::Sha256),
        S384(sha2::Sha384),
        S512(sha2::Sha512),
    }
    let mut state = match algorithm {
        Algorithm::None => State::None,
        Algorithm::Crc32c => State::Crc(0),
        Algorithm::Sha224 => State::S224(sha2::Sha224::new()),
        Algorithm::Sha256 => State::S256(sha2::Sha256::new()),
        Algorithm::Sha384 => State::S384(sha2::Sha384::new()),
        Algorithm::Sha512 => State::S512(sha2::Sha512::new()),
    };
    let mut crcs: Vec<(u32, u64)> = vec![(0, 0); chunks.len()];
    if matches!(state, State::None) && chunks.is_empty() {
        return Ok((None, Vec::new()));
    }
    // A CRC32C of the whole file is combined from the chunks' when they cover it back to
    // back: one pass of CRC over the bytes instead of two.
    let derive = algorithm == Algorithm::Crc32c
        && chunks.first().is_some_and(|c| c.0 == 0)
        && chunks.windows(2).all(|w| w[0].0 + w[0].1 == w[1].0);
    if derive {
        state = State::None;
    }
    let mut f = std::fs::File::open(path)?;
    let (mut off, mut k) = (0u64, 0usize);
    loop {
        let n = match f.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let data = &buf[..n];
        match &mut state {
            State::None => {}
            State::Crc(c) => *c = crc32c::crc32c_append(*c, data),
            State::S224(h) => h.update(data),
            State::S256(h) => h.update(data),
            State::S384(h) => h.update(data),
            State::S512(h) => h.update(data),
        }
        let end = off + n as u64;
        while let Some(&(at, len)) = chunks.get(k) {
            if at >= end {
                break;
            }
            let from = at.max(off);
            let to = (at + len).min(end);
            if from < to {
                let piece = &data[(from - off) as usize..(to - off) as usize];
                let c = &mut crcs[k];
                c.0 = crc32c::crc32c_append(c.0, piece);
                c.1 += to - from;
            }
            if at + len > end {
                break;
            }
            k += 1;
        }
        off = end;
    }
    let chunk_crcs: Vec<Option<u32>> = crcs
        .iter()
        .zip(chunks)
        .map(|(&(crc, got), &(_, len))| (got == len).then_some(crc))
        .collect();
    let whole = match state {
        State::None if derive => {
            let end = chunks.last().map_or(0, |c| c.0 + c.1);
            let whole = combine_chunks(&chunk_crcs, chunks);
            // A file of another length than the chunks cover has another checksum.
            Some(
                whole
                    .filter(|_| off == end)
                    .map_or_else(String::new, |c| hex::encode(c.to_le_bytes())),
            )
        }
        State::None => None,
        State::Crc(c) => Some(hex::encode(c.to_le_bytes())),
        State::S224(h) => Some(hex::encode(h.finalize())),
        State::S256(h) => Some(hex::encode(h.finalize())),
        State::S384(h) => Some(hex::encode(h.finalize())),
        State::S512(h) => Some(hex::encode(h.finalize())),
    };
    Ok((whole, chunk_crcs))
}

/// Reads the files of PostgreSQL's backup_manifest.
pub fn parse_pg_manifest(bytes: &[u8]) -> Result<Vec<Wanted>, String> {
    let m: PgManifest = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(m.files.len());
    for f in m.files {
        let path = match (f.path, f.encoded_path) {
            (Some(p), _) => PathBuf::from(p),
            (None, Some(hexed)) => PathBuf::from(std::ffi::OsString::from_vec(
                hex::decode(&hexed).map_err(|e| format!("bad Encoded-Path {hexed}: {e}"))?,
            )),
            (None, None) => return Err("a file without Path".into()),
        };
        extract::check_relative(&path)
            .map_err(|why| format!("file {} is not inside the backup: {why}", path.display()))?;
        out.push(Wanted {
            path,
            size: f.size,
            algorithm: Algorithm::parse(f.algorithm.as_deref())?,
            checksum: f.checksum.unwrap_or_default().to_ascii_lowercase(),
        });
    }
    Ok(out)
}

/// What is in the directory: regular files and symlinks (by relative path, with their size)
/// and directories. Symlinks are never followed, except a top-level `pg_wal` link (initdb
/// --waldir), whose contents count as the directory's.
#[derive(Debug, Default)]
struct Found {
    files: BTreeMap<PathBuf, (u64, bool)>,
    dirs: BTreeSet<PathBuf>,
}

fn walk(root: &Path, rel: &Path, found: &mut Found) -> io::Result<()> {
    let dir = root.join(rel);
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        let name = rel.join(entry.file_name());
        let meta = std::fs::symlink_metadata(entry.path())?;
        let ft = meta.file_type();
        if ft.is_dir() || (ft.is_symlink() && name == Path::new("pg_wal") && entry.path().is_dir())
        {
            found.dirs.insert(name.clone());
            walk(root, &name, found)?;
        } else {
            found
                .files
                .insert(name, (meta.len(), ft.is_file() && !ft.is_symlink()));
        }
    }
    Ok(())
}

/// The system identifier in a data directory's `global/pg_control` (its first 8 bytes, in
/// the machine's byte order), or in the copy an interrupted delta restore set aside.
pub fn system_identifier(data: &Path) -> io::Result<u64> {
    let mut f = match std::fs::File::open(data.join(PG_CONTROL)) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::File::open(data.join(PG_CONTROL_ASIDE))?
        }
        other => other?,
    };
    let mut b = [0u8; 8];
    f.read_exact(&mut b)?;
    Ok(u64::from_ne_bytes(b))
}

/// The CRC-32C of the chunks' bytes back to back, from their CRC-32Cs; None if one is
/// missing. `crc32c_combine` costs a few microseconds per call (it builds the shift operator
/// for the length each time: a fifth of a delta restore's CPU with 64 KiB chunks), so the
/// operator for the common chunk length is built once and applied with four table lookups.
fn combine_chunks(crcs: &[Option<u32>], chunks: &[(u64, u64)]) -> Option<u32> {
    let common = chunks.first().map_or(0, |c| c.1);
    let shift = ShiftBy::new(common);
    let mut whole = 0u32;
    for (crc, &(_, len)) in crcs.iter().zip(chunks) {
        let crc = (*crc)?;
        whole = if len == common {
            shift.apply(whole) ^ crc
        } else {
            crc32c::crc32c_combine(whole, crc, usize::try_from(len).ok()?)
        };
    }
    Some(whole)
}

/// The linear map `crc -> crc32c_combine(crc, 0, len)` (appending `len` bytes' worth of shift
/// to a CRC-32C), as byte-indexed tables: `combine(a, b, len) = shift(a) ^ b`.
struct ShiftBy {
    tables: Box<[[u32; 256]; 4]>,
}

impl ShiftBy {
    fn new(len: u64) -> ShiftBy {
        let len = usize::try_from(len).unwrap_or(0);
        let bit: Vec<u32> = (0..32)
            .map(|i| crc32c::crc32c_combine(1u32 << i, 0, len))
            .collect();
        let mut tables = Box::new([[0u32; 256]; 4]);
        for (k, table) in tables.iter_mut().enumerate() {
            for (b, slot) in table.iter_mut().enumerate() {
                *slot = (0..8)
                    .filter(|j| b & (1 << j) != 0)
                    .fold(0, |acc, j| acc ^ bit[k * 8 + j]);
            }
        }
        ShiftBy { tables }
    }

    fn apply(&self, crc: u32) -> u32 {
        let t = &self.tables;
        t[0][(crc & 0xff) as usize]
            ^ t[1][((crc >> 8) & 0xff) as usize]
            ^ t[2][((crc >> 16) & 0xff) as usize]
            ^ t[3][(crc >> 24) as usize]
    }
}

/// Chunks per piece when a big file's chunks are read on several threads (64 MiB of 64 KiB
/// chunks).
const PIECE_CHUNKS: usize = 1024;

/// One unit of the compare pass's work.
enum Work {
    /// A whole file: its checksum and its chunks' CRC-32Cs in one pass.
    Whole { check: usize },
    /// Chunks `from..to` of a file (their CRC-32Cs only).
    Piece {
        check: usize,
        from: usize,
        to: usize,
    },
}

/// The CRC-32C of each of `chunks` (offset, length; back to back) of `path`, read with pread
/// from the first chunk's offset; None for a chunk the file does not hold whole.
fn range_crcs(path: &Path, chunks: &[(u64, u64)], buf: &mut [u8]) -> io::Result<Vec<Option<u32>>> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path)?;
    let mut out = Vec::with_capacity(chunks.len());
    let Some(&(mut off, _)) = chunks.first() else {
        return Ok(out);
    };
    let end = chunks.last().map_or(off, |l| l.0 + l.1);
    let (mut k, mut crc, mut got) = (0usize, 0u32, 0u64);
    while off < end {
        let want = usize::try_from(end - off).map_or(buf.len(), |w| w.min(buf.len()));
        let n = match f.read_at(&mut buf[..want], off) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let mut data = &buf[..n];
        while !data.is_empty() {
            let (_, len) = chunks[k];
            let take = usize::try_from(len - got).map_or(data.len(), |r| r.min(data.len()));
            crc = crc32c::crc32c_append(crc, &data[..take]);
            got += take as u64;
            data = &data[take..];
            if got == len {
                out.push(Some(crc));
                (k, crc, got) = (k + 1, 0, 0);
            }
        }
        off += n as u64;
    }
    // Chunks the file ends before (or inside) are not held.
    out.resize(chunks.len(), None);
    Ok(out)
}

/// Compares the directory with the backup's files: what to rewrite, remove and keep. For the
/// files in `chunked` (the chunk layout of the archives' frame indexes) it also takes the
/// CRC-32C of each chunk the directory's file holds, whether the file differs or not.
pub fn compare(
    dir: &Path,
    wanted: &[Wanted],
    chunked: &BTreeMap<PathBuf, Vec<(u64, u64)>>,
) -> Result<DeltaPlan, IoAt> {
    compare_in_pieces(dir, wanted, chunked, PIECE_CHUNKS)
}

/// [`compare`], splitting files of more than `piece_chunks` chunks into pieces of that many.
fn compare_in_pieces(
    dir: &Path,
    wanted: &[Wanted],
    chunked: &BTreeMap<PathBuf, Vec<(u64, u64)>>,
    piece_chunks: usize,
) -> Result<DeltaPlan, IoAt> {
    let started = Instant::now();
    let mut found = Found::default();
    walk(dir, Path::new(""), &mut found).map_err(io_at(dir, "list"))?;
    // Same size: the checksum decides; otherwise it is rewritten without reading it (but its
    // chunks, if it has any, are read).
    struct Check<'a> {
        w: &'a Wanted,
        whole: bool,
        chunks: &'a [(u64, u64)],
    }
    let mut to_check: Vec<Check> = Vec::new();
    let mut rewrite = BTreeSet::new();
    let mut bytes_rewritten = 0u64;
    for w in wanted {
        let found_file = found.files.get(&w.path);
        let whole = matches!(found_file, Some((size, true)) if *size == w.size && w.algorithm != Algorithm::None);
        let chunks = match (found_file, chunked.get(&w.path)) {
            (Some((_, true)), Some(c)) => c.as_slice(),
            _ => &[],
        };
        if whole || !chunks.is_empty() {
            to_check.push(Check { w, whole, chunks });
        }
        if !whole {
            rewrite.insert(w.path.clone());
            bytes_rewritten += w.size;
        }
    }
    // The biggest first, so the threads finish together. A file whose chunks cover it back to
    // back (and whose whole checksum, if wanted, is a CRC-32C: combined from the chunks') is
    // split into pieces of PIECE_CHUNKS chunks read on different threads, so one 1 GB segment
    // does not keep the others waiting; any other file is read whole by one thread.
    to_check.sort_by_key(|c| std::cmp::Reverse(c.w.size));
    let mut work: Vec<Work> = Vec::new();
    for (i, c) in to_check.iter().enumerate() {
        let splittable = !c.chunks.is_empty()
            && (!c.whole || c.w.algorithm == Algorithm::Crc32c)
            && c.chunks[0].0 == 0
            && c.chunks.windows(2).all(|w| w[0].0 + w[0].1 == w[1].0)
            && c.chunks.len() > piece_chunks;
        if splittable {
            let mut from = 0;
            while from < c.chunks.len() {
                let to = (from + piece_chunks).min(c.chunks.len());
                work.push(Work::Piece { check: i, from, to });
                from = to;
            }
        } else {
            work.push(Work::Whole { check: i });
        }
    }
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 8)
        .min(work.len().max(1));
    let next = AtomicUsize::new(0);
    type Sums = (Option<String>, Vec<Option<u32>>);
    type Checked = io::Result<Sums>;
    let results: Vec<Vec<(usize, Checked)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (to_check, work, next) = (&to_check, &work, &next);
                scope.spawn(move || {
                    let mut buf = vec![0u8; 1 << 20];
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(job) = work.get(i) else {
                            return out;
                        };
                        let r = match *job {
                            Work::Whole { check } => {
                                let c = &to_check[check];
                                let algorithm = if c.whole {
                                    c.w.algorithm
                                } else {
                                    Algorithm::None
                                };
                                file_checksum(&dir.join(&c.w.path), algorithm, c.chunks, &mut buf)
                            }
                            Work::Piece { check, from, to } => {
                                let c = &to_check[check];
                                range_crcs(&dir.join(&c.w.path), &c.chunks[from..to], &mut buf)
                                    .map(|crcs| (None, crcs))
                            }
                        };
                        out.push((i, r));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let mut done: Vec<Option<Sums>> = (0..work.len()).map(|_| None).collect();
    for (i, r) in results.into_iter().flatten() {
        let check = match work[i] {
            Work::Whole { check } | Work::Piece { check, .. } => check,
        };
        let r = r.map_err(io_at(&dir.join(&to_check[check].w.path), "read"))?;
        done[i] = Some(r);
    }
    if done.iter().any(Option::is_none) {
        return Err(IoAt {
            path: dir.to_path_buf(),
            action: "compare",
            source: io::Error::other("a checksum thread failed; run the restore again"),
        });
    }
    // Put the pieces of each file back together, in order (work was pushed in order).
    let mut whole_sums: Vec<Option<String>> = vec![None; to_check.len()];
    let mut chunk_sums: Vec<Vec<Option<u32>>> = vec![Vec::new(); to_check.len()];
    let mut pieced = vec![false; to_check.len()];
    for (job, r) in work.iter().zip(done.into_iter().flatten()) {
        match *job {
            Work::Whole { check } => {
                whole_sums[check] = r.0;
                chunk_sums[check] = r.1;
            }
            Work::Piece { check, .. } => {
                pieced[check] = true;
                chunk_sums[check].extend(r.1);
            }
        }
    }
    let mut same = vec![false; to_check.len()];
    let mut target_chunks = BTreeMap::new();
    for (i, c) in to_check.iter().enumerate() {
        if pieced[i] && c.whole {
            // The file has the backup's size (c.whole) and the chunks cover [0, that size):
            // its CRC-32C is the combination of theirs.
            let covered = c.chunks.last().map_or(0, |l| l.0 + l.1) == c.w.size;
            whole_sums[i] = combine_chunks(&chunk_sums[i], c.chunks)
                .filter(|_| covered)
                .map(|crc| hex::encode(crc.to_le_bytes()));
        }
        same[i] = c.whole && whole_sums[i].as_deref() == Some(c.w.checksum.as_str());
        if !c.chunks.is_empty() {
            target_chunks.insert(c.w.path.clone(), std::mem::take(&mut chunk_sums[i]));
        }
    }
    let (mut files_unchanged, mut bytes_unchanged) = (0u64, 0u64);
    for (c, same) in to_check.iter().zip(same) {
        let w = c.w;
        if !c.whole {
            continue;
        }
        if same {
            files_unchanged += 1;
            bytes_unchanged += w.size;
        } else {
            rewrite.insert(w.path.clone());
            bytes_rewritten += w.size;
        }
    }
    // pg_control is always written last, under its temporary name until then (see execute).
    if !rewrite.contains(Path::new(PG_CONTROL))
        && let Some(w) = wanted.iter().find(|w| w.path == Path::new(PG_CONTROL))
    {
        rewrite.insert(w.path.clone());
        bytes_rewritten += w.size;
        files_unchanged = files_unchanged.saturating_sub(1);
        bytes_unchanged = bytes_unchanged.saturating_sub(w.size);
    }
    let names: BTreeSet<&Path> = wanted.iter().map(|w| w.path.as_path()).collect();
    let mut remove = Vec::new();
    let mut bytes_removed = 0u64;
    for (path, (size, _)) in &found.files {
        if !names.contains(path.as_path()) {
            remove.push(path.clone());
            bytes_removed += size;
        }
    }
    let mut holders: BTreeSet<&Path> = BTreeSet::new();
    for w in wanted {
        let mut p = w.path.parent();
        while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
            holders.insert(d);
            p = d.parent();
        }
    }
    let mut extra_dirs: Vec<PathBuf> = found
        .dirs
        .iter()
        .filter(|d| !holders.contains(d.as_path()))
        .cloned()
        .collect();
    // Deepest first.
    extra_dirs.sort_by(|a, b| {
        b.components()
            .count()
            .cmp(&a.components().count())
            .then(b.cmp(a))
    });
    let algorithms: BTreeSet<&str> = wanted.iter().map(|w| w.algorithm.name()).collect();
    Ok(DeltaPlan {
        files_rewritten: rewrite.len() as u64,
        bytes_rewritten,
        files_removed: remove.len() as u64,
        bytes_removed,
        files_unchanged,
        bytes_unchanged,
        checksum_algorithm: algorithms.into_iter().collect::<Vec<_>>().join(", "),
        compare_seconds: started.elapsed().as_secs_f64(),
        bytes_to_decompress: 0,
        chunk_frames: 0,
        chunk_frames_skipped: 0,
        target_chunks,
        indexes: BTreeMap::new(),
        rewrite,
        remove,
        extra_dirs,
    })
}

impl DeltaPlan {
    /// What restoring the archive of `index` decompresses: (uncompressed bytes, chunk frames,
    /// chunk frames passed over). A chunk frame is passed over when its member is not
    /// rewritten, or when the directory's file holds the same chunk (CRC-32C).
    pub fn decompress_estimate(&self, index: &Index) -> (u64, u64, u64) {
        let (mut bytes, mut chunks, mut skipped) = (0u64, 0u64, 0u64);
        for f in &index.frames {
            let Some(c) = f.chunk else {
                bytes += f.size;
                continue;
            };
            chunks += 1;
            let path = index.members.get(c.member as usize).map(Path::new);
            let skip = path.is_some_and(|p| {
                !self.rewrite.contains(p)
                    || chunk_held(self.target_chunks.get(p), index.chunk_size, &c)
            });
            if skip {
                skipped += 1;
            } else {
                bytes += f.size;
            }
        }
        (bytes, chunks, skipped)
    }
}

/// Whether the directory's file (its chunk CRCs `held`) already has chunk `c`.
fn chunk_held(
    held: Option<&Vec<Option<u32>>>,
    chunk_size: u32,
    c: &crate::repo::seekable::Chunk,
) -> bool {
    let k = c.at / u64::from(chunk_size.max(1));
    held.and_then(|v| v.get(usize::try_from(k).ok()?).copied().flatten()) == Some(c.crc32c)
}

/// A reader the tar walk can seek forward in.
trait ReadSeek: Read + Seek {}
impl<T: Read + Seek> ReadSeek for T {}

/// A stream without an index: seeking forward reads (and decompresses) what it passes.
struct ForwardOnly<R> {
    inner: R,
    pos: u64,
}

impl<R: Read> Read for ForwardOnly<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: Read> Seek for ForwardOnly<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let SeekFrom::Current(d) = to else {
            return Err(io::Error::new(io::ErrorKind::Unsupported, "only forward"));
        };
        let d = u64::try_from(d)
            .map_err(|_| io::Error::new(io::ErrorKind::Unsupported, "only forward"))?;
        let n = io::copy(&mut (&mut self.inner).take(d), &mut io::sink())?;
        self.pos += n;
        if n < d {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the archive ends inside a member",
            ));
        }
        Ok(self.pos)
    }
}

/// The frame reader, shared between the tar walk and the code that takes over the chunks of
/// a member.
struct SharedFrames<R>(Rc<RefCell<FrameReader<R>>>);

fn busy() -> io::Error {
    io::Error::other("the frame reader is already in use")
}

impl<R: Read> Read for SharedFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_borrow_mut().map_err(|_| busy())?.read(buf)
    }
}

impl<R: Read> Seek for SharedFrames<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.0.try_borrow_mut().map_err(|_| busy())?.seek(to)
    }
}

/// What a seekable archive gives the delta restore: its index and the directory's chunk CRCs.
pub struct Seekable<'a> {
    pub index: &'a Index,
    pub target_chunks: &'a BTreeMap<PathBuf, Vec<Option<u32>>>,
}

/// A failure while patching a member chunk by chunk: in the archive or in the target file.
enum ChunkError {
    Archive(io::Error),
    Target(io::Error),
}

/// Chunks to decompress and patch are gathered up to this many compressed bytes, then done
/// on several threads.
const BATCH_BYTES: usize = 16 << 20;

/// A chunk frame to decompress and write: (frame, its number, its compressed bytes).
type Pending = (crate::repo::seekable::Frame, usize, Vec<u8>);

/// Decompresses the chunks of `batch` and writes the 8 KiB blocks of each that differ from
/// what `f` has at their place, on up to `threads` threads (the chunks do not overlap).
/// Returns the bytes written.
fn patch_batch(
    f: &std::fs::File,
    batch: &mut Vec<Pending>,
    threads: usize,
    old: &mut Vec<u8>,
) -> Result<u64, ChunkError> {
    let one = |part: &[Pending], old: &mut Vec<u8>| -> Result<u64, ChunkError> {
        let mut dctx = zstd::bulk::Decompressor::new().map_err(ChunkError::Archive)?;
        let mut new = Vec::new();
        let mut written = 0u64;
        for (frame, i, compressed) in part {
            crate::repo::seekable::decode_frame(&mut dctx, compressed, frame, *i, &mut new)
                .map_err(ChunkError::Archive)?;
            let at = frame.chunk.map_or(0, |c| c.at);
            written += patch_range(f, at, &new, old).map_err(ChunkError::Target)?;
        }
        Ok(written)
    };
    let pending = std::mem::take(batch);
    let threads = threads.clamp(1, pending.len().max(1));
    if threads == 1 {
        return one(&pending, old);
    }
    let per = pending.len().div_ceil(threads);
    let results: Vec<Result<u64, ChunkError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = pending
            .chunks(per)
            .map(|part| scope.spawn(move || one(part, &mut Vec::new())))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(ChunkError::Archive(io::Error::other(
                        "a decompressing thread failed; run the restore again",
                    )))
                })
            })
            .collect()
    });
    let mut written = 0u64;
    for r in results {
        written += r?;
    }
    Ok(written)
}

/// Brings the existing file `target` to member `path`'s content (`size` bytes) from the chunk
/// frames that come next in `frames`: a chunk the file already holds (same CRC-32C) is passed
/// over without decompressing it, the others are decompressed (on several threads) and only
/// their 8 KiB blocks that differ are written. Returns the bytes written.
fn patch_chunks<R: Read>(
    frames: &mut FrameReader<R>,
    seek: &Seekable,
    path: &Path,
    size: u64,
    target: &Path,
    old: &mut Vec<u8>,
) -> Result<u64, ChunkError> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(target)
        .map_err(ChunkError::Target)?;
    let held = seek.target_chunks.get(path);
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 4);
    let (mut done, mut written) = (0u64, 0u64);
    let mut batch: Vec<Pending> = Vec::new();
    let mut batched = 0usize;
    while done < size {
        let mismatch = |what: String| {
            ChunkError::Archive(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "its frame index does not match it at byte {done} of {}: {what}",
                    path.display()
                ),
            ))
        };
        let frame = frames
            .next_frame()
            .cloned()
            .ok_or_else(|| mismatch("no frame starts there".into()))?;
        let c = frame
            .chunk
            .filter(|c| {
                c.at == done
                    && seek
                        .index
                        .members
                        .get(c.member as usize)
                        .is_some_and(|m| Path::new(m) == path)
            })
            .ok_or_else(|| {
                mismatch(format!(
                    "the frame at byte {} is not its chunk",
                    frame.offset
                ))
            })?;
        if frame.size > size - done {
            return Err(mismatch("the chunk is longer than the member".into()));
        }
        done += frame.size;
        if chunk_held(held, seek.index.chunk_size, &c) {
            frames.skip_frame().map_err(ChunkError::Archive)?;
            continue;
        }
        let mut compressed = Vec::new();
        let i = frames
            .take_compressed(&mut compressed)
            .map_err(ChunkError::Archive)?;
        batched += compressed.len();
        batch.push((frame, i, compressed));
        if batched >= BATCH_BYTES {
            written += patch_batch(&f, &mut batch, threads, old)?;
            batched = 0;
        }
    }
    written += patch_batch(&f, &mut batch, threads, old)?;
    f.set_len(size).map_err(ChunkError::Target)?;
    Ok(written)
}

/// What streaming one archive did.
#[derive(Debug, Default)]
pub struct Streamed {
    pub members: u64,
    /// Files written (whole, or only their blocks that differed).
    pub written: u64,
    /// Bytes actually written.
    pub bytes_written: u64,
    pub stored_bytes: u64,
    pub dirs: BTreeSet<PathBuf>,
    /// For an archive read through its frame index: what was decompressed and passed over.
    pub frames: Option<FrameStats>,
}

/// Hashes (SHA-256) and counts every byte read through it.
struct HashingReader<R> {
    inner: R,
    hasher: std::rc::Rc<std::cell::RefCell<(sha2::Sha256, u64)>>,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.read(buf)?;
        let mut s = self.hasher.borrow_mut();
        s.0.update(&buf[..n]);
        s.1 += n as u64;
        Ok(n)
    }
}

/// Streams stored archive `file` (read from `raw`) and writes the members in `rewrite` into
/// `dest`, each under a temporary name then renamed (pg_control stays under its temporary name
/// until [`execute`] puts it in place); verifies the stored file's SHA-256 and size.
///
/// With `seek` (an archive with a sound frame index), frames are decompressed only where
/// something is read: members not rewritten are sought over, and the chunks of a rewritten
/// file that the directory already holds are passed over (see [`patch_chunks`]); every
/// stored byte is still read and hashed in order.
pub fn stream_archive(
    raw: impl Read,
    file: &BackupFile,
    compression: Compression,
    dest: &Path,
    rewrite: &BTreeSet<PathBuf>,
    seek: Option<Seekable>,
) -> Result<Streamed, extract::ExtractError> {
    use extract::ExtractError;
    use sha2::Digest;
    let damaged = |detail: String| ExtractError::Damaged {
        file: file.name.clone(),
        detail,
    };
    let outside = |member: &Path, why: String| ExtractError::Outside {
        file: file.name.clone(),
        member: member.display().to_string(),
        dest: dest.to_path_buf(),
        why,
    };
    // A read error of the archive (a frame that does not decompress) that surfaces while a
    // member is written is the archive's damage, not a write error.
    let failed: Rc<RefCell<Option<String>>> = Rc::new(RefCell::new(None));
    let write_err = |path: PathBuf, action: &'static str| {
        let failed = Rc::clone(&failed);
        let file = file.name.clone();
        move |source: io::Error| match extract::read_failure(&failed) {
            Some(detail) => ExtractError::Damaged { file, detail },
            None => ExtractError::Io {
                path,
                action,
                source,
            },
        }
    };
    let state = Rc::new(RefCell::new((sha2::Sha256::new(), 0u64)));
    let (reader, frames): (Box<dyn ReadSeek + '_>, _) = match &seek {
        Some(s) if compression == Compression::Zstd => {
            let frames = Rc::new(RefCell::new(
                FrameReader::new(raw, s.index)
                    .map_err(|e| damaged(format!("cannot start decompressing: {e}")))?,
            ));
            (Box::new(SharedFrames(Rc::clone(&frames))), Some(frames))
        }
        _ => {
            let hashing = HashingReader {
                inner: raw,
                hasher: Rc::clone(&state),
            };
            let decoder =
                compress::decoder(compression, io::BufReader::with_capacity(1 << 20, hashing))
                    .map_err(|e| damaged(format!("cannot start decompressing: {e}")))?;
            (
                Box::new(ForwardOnly {
                    inner: decoder,
                    pos: 0,
                }),
                None,
            )
        }
    };
    let mut archive = tar::Archive::new(extract::Watched {
        inner: reader,
        failed: Rc::clone(&failed),
    });
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(false);
    archive.set_unpack_xattrs(false);
    let dest_canon = dest
        .canonicalize()
        .map_err(write_err(dest.to_path_buf(), "resolve"))?;
    let mut done = Streamed::default();
    let mut bufs = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let entries = archive
        .entries_with_seek()
        .map_err(|e| damaged(format!("not a readable tar archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| damaged(format!("cannot read a tar member: {e}")))?;
        let path = entry
            .path()
            .map_err(|e| damaged(format!("bad member name: {e}")))?
            .into_owned();
        extract::check_relative(&path).map_err(|why| outside(&path, why))?;
        // `./x` and `x` name the same member.
        let path: PathBuf = path
            .components()
            .filter(|c| !matches!(c, std::path::Component::CurDir))
            .collect();
        if path.as_os_str().is_empty() {
            continue;
        }
        done.members += 1;
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                done.dirs.insert(path.clone());
                if !dest.join(&path).is_dir() {
                    let ok = entry.unpack_in(dest).map_err(|e| {
                        if e.kind() == io::ErrorKind::InvalidData {
                            outside(&path, e.to_string())
                        } else {
                            write_err(dest.join(&path), "create")(e)
                        }
                    })?;
                    if !ok {
                        return Err(outside(&path, "the tar crate refused it".into()));
                    }
                }
            }
            tar::EntryType::Regular | tar::EntryType::GNUSparse => {
                if !rewrite.contains(&path) {
                    continue;
                }
                let target = dest.join(&path);
                let parent = target.parent().unwrap_or(dest);
                std::fs::create_dir_all(parent)
                    .map_err(write_err(parent.to_path_buf(), "create"))?;
                let resolved = parent
                    .canonicalize()
                    .map_err(write_err(parent.to_path_buf(), "resolve"))?;
                if !resolved.starts_with(&dest_canon) {
                    return Err(outside(
                        &path,
                        format!("its directory resolves to {}", resolved.display()),
                    ));
                }
                // A file that is there (a relation segment of which a few pages changed) is
                // brought to the backup's content by writing only the blocks that differ. Not
                // one with other hard links (pg_upgrade --link): patching it would change the
                // other names too; it is replaced instead.
                let existing = std::fs::symlink_metadata(&target).is_ok_and(|m| {
                    use std::os::unix::fs::MetadataExt;
                    m.file_type().is_file() && m.nlink() == 1
                });
                if existing
                    && path != Path::new(PG_CONTROL)
                    && entry.header().entry_type() == tar::EntryType::Regular
                {
                    let size = entry.size();
                    // With a frame index, a member cut into chunks that start right here is
                    // patched chunk by chunk (the tar walk then seeks over its data).
                    let chunked = match (&frames, &seek) {
                        (Some(fr), Some(s)) => {
                            let fr = fr
                                .try_borrow()
                                .map_err(|_| damaged("the frame reader is busy".into()))?;
                            fr.position() == entry.raw_file_position()
                                && fr.next_frame().and_then(|f| f.chunk).is_some_and(|c| {
                                    c.at == 0
                                        && s.index
                                            .members
                                            .get(c.member as usize)
                                            .is_some_and(|m| Path::new(m) == path)
                                })
                        }
                        _ => false,
                    };
                    let wrote = match (&frames, &seek) {
                        (Some(fr), Some(s)) if chunked => {
                            let mut fr = fr
                                .try_borrow_mut()
                                .map_err(|_| damaged("the frame reader is busy".into()))?;
                            patch_chunks(&mut *fr, s, &path, size, &target, &mut bufs.1).map_err(
                                |e| match e {
                                    ChunkError::Archive(e) => damaged(e.to_string()),
                                    ChunkError::Target(e) => write_err(target.clone(), "write")(e),
                                },
                            )?
                        }
                        _ => patch_in_place(&mut entry, size, &target, &mut bufs)
                            .map_err(write_err(target.clone(), "write"))?,
                    };
                    done.written += 1;
                    done.bytes_written += wrote;
                    continue;
                }
                let mut tmp_name = target.file_name().unwrap_or_default().to_os_string();
                tmp_name.push(TMP_SUFFIX);
                let tmp = target.with_file_name(tmp_name);
                match std::fs::remove_file(&tmp) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(write_err(tmp.clone(), "remove")(e)),
                }
                entry
                    .unpack(&tmp)
                    .map_err(write_err(tmp.clone(), "write"))?;
                if path != Path::new(PG_CONTROL) {
                    std::fs::rename(&tmp, &target).map_err(write_err(target.clone(), "rename"))?;
                }
                done.written += 1;
                done.bytes_written += entry.size();
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                // pg_basebackup writes links only for tablespaces and an external pg_wal, which
                // a delta restore keeps (tablespaces are refused by the plan).
                continue;
            }
            tar::EntryType::XGlobalHeader
            | tar::EntryType::XHeader
            | tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink => continue,
            other => {
                return Err(outside(
                    &path,
                    format!("a special file ({other:?}), which pg_basebackup never writes"),
                ));
            }
        }
    }
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink())
        .map_err(|e| damaged(format!("the end of the file does not decompress: {e}")))?;
    drop(rest);
    let (hasher, read) = match frames {
        Some(frames) => {
            let mut fr = frames
                .try_borrow_mut()
                .map_err(|_| damaged("the frame reader is busy".into()))?;
            done.frames = Some(fr.stats());
            fr.finish()
                .map_err(|e| damaged(format!("cannot be read to its end: {e}")))?
        }
        None => std::mem::take(&mut *state.borrow_mut()),
    };
    crate::restore::extract::check_stored(file, read, hasher).map_err(damaged)?;
    done.stored_bytes = read;
    Ok(done)
}

/// The block size compared when patching a file in place (PostgreSQL's page size).
const BLOCK: usize = 8192;

/// Fills `buf` from `r` as far as it goes; fewer bytes only at the end.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Brings the existing file `target` to the content `member` reads (`size` bytes) by writing
/// only the 8 KiB blocks that differ, then cutting or extending it to `size`. Returns the
/// bytes written. A crash in the middle leaves a file that is neither the old nor the new one;
/// the delta restore has set pg_control aside by then, so the directory cannot be started
/// until a restore completes, and a new `--delta` run compares every file's checksum again.
fn patch_in_place(
    member: &mut impl Read,
    size: u64,
    target: &Path,
    bufs: &mut (Vec<u8>, Vec<u8>),
) -> io::Result<u64> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(target)?;
    let (new, old) = (&mut bufs.0, &mut bufs.1);
    let mut off = 0u64;
    let mut written = 0u64;
    loop {
        let n = read_full(member, new)?;
        if n == 0 {
            break;
        }
        written += patch_range(&f, off, &new[..n], old)?;
        off += n as u64;
    }
    if off != size {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the archive member ended after {off} of its {size} bytes"),
        ));
    }
    f.set_len(size)?;
    Ok(written)
}

/// Writes `new` into `f` at `off`, only the 8 KiB blocks that differ from what `f` has there
/// (read into `old`); returns the bytes written.
fn patch_range(f: &std::fs::File, off: u64, new: &[u8], old: &mut Vec<u8>) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let n = new.len();
    if old.len() < n {
        old.resize(n, 0);
    }
    // What the file has at the same place (less at its end).
    let mut m = 0;
    while m < n {
        match f.read_at(&mut old[m..n], off + m as u64) {
            Ok(0) => break,
            Ok(k) => m += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let same = |i: usize, end: usize| end <= m && new[i..end] == old[i..end];
    let mut written = 0u64;
    let mut i = 0;
    while i < n {
        let end = (i + BLOCK).min(n);
        if same(i, end) {
            i = end;
            continue;
        }
        // A run of differing blocks, written at once.
        let mut j = end;
        while j < n {
            let e = (j + BLOCK).min(n);
            if same(j, e) {
                break;
            }
            j = e;
        }
        f.write_all_at(&new[i..j], off + i as u64)?;
        written += (j - i) as u64;
        i = j;
    }
    Ok(written)
}

pub fn remove_path(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted(path: &str, data: &[u8]) -> Wanted {
        Wanted {
            path: PathBuf::from(path),
            size: data.len() as u64,
            algorithm: Algorithm::Crc32c,
            checksum: hex::encode(crc32c::crc32c(data).to_le_bytes()),
        }
    }

    #[test]
    fn crc32c_is_written_as_postgresql_prints_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"123456789").unwrap();
        let mut buf = vec![0u8; 4];
        // CRC-32C of "123456789" is 0xE3069283; backup_manifest has its bytes in memory order.
        assert_eq!(
            file_checksum(&p, Algorithm::Crc32c, &[], &mut buf)
                .unwrap()
                .0
                .as_deref(),
            Some("839206e3")
        );
        assert_eq!(
            file_checksum(&p, Algorithm::Sha256, &[], &mut buf)
                .unwrap()
                .0
                .as_deref(),
            Some("15e2b0d3c33891ebb0f1ef609ec419420c20e320ce94c65fbc8c3312448eb225")
        );
        assert_eq!(
            file_checksum(&p, Algorithm::None, &[], &mut buf).unwrap(),
            (None, Vec::new())
        );
        // Chunk CRCs in the same pass, across read boundaries (buf is 4 bytes), and the whole
        // file's combined from them; a chunk the file does not hold whole has none.
        let (whole, _) =
            file_checksum(&p, Algorithm::Crc32c, &[(0, 3), (3, 5), (8, 1)], &mut buf).unwrap();
        assert_eq!(whole.as_deref(), Some("839206e3"));
        let (whole, _) = file_checksum(&p, Algorithm::Crc32c, &[(0, 3), (3, 5)], &mut buf).unwrap();
        assert_eq!(whole.as_deref(), Some(""));
        let (_, chunks) = file_checksum(
            &p,
            Algorithm::None,
            &[(0, 3), (3, 5), (8, 1), (9, 3)],
            &mut buf,
        )
        .unwrap();
        assert_eq!(
            chunks,
            vec![
                Some(crc32c::crc32c(b"123")),
                Some(crc32c::crc32c(b"45678")),
                Some(crc32c::crc32c(b"9")),
                None
            ]
        );
    }

    #[test]
    fn reads_postgresql_backup_manifest() {
        let text = br#"{ "PostgreSQL-Backup-Manifest-Version": 1,
"Files": [
{ "Path": "backup_label", "Size": 3, "Last-Modified": "2026-12-06 10:00:00 GMT", "Checksum-Algorithm": "CRC32C", "Checksum": "ABCD0123" },
{ "Encoded-Path": "626173652f312f78", "Size": 0, "Last-Modified": "2026-12-06 10:00:00 GMT", "Checksum-Algorithm": "SHA256", "Checksum": "00" },
{ "Path": "global/pg_control", "Size": 8192, "Last-Modified": "2026-12-06 10:00:00 GMT" }
],
"WAL-Ranges": [], "Manifest-Checksum": "00" }"#;
        let files = parse_pg_manifest(text).unwrap();
        assert_eq!(files[0].path, Path::new("backup_label"));
        assert_eq!(files[0].checksum, "abcd0123");
        assert_eq!(files[1].path, Path::new("base/1/x"));
        assert_eq!(files[1].algorithm, Algorithm::Sha256);
        assert_eq!(files[2].algorithm, Algorithm::None);
        assert!(parse_pg_manifest(br#"{"Files":[{"Path":"../x","Size":1}]}"#).is_err());
    }

    #[test]
    fn compare_rewrites_what_differs_and_removes_what_the_backup_lacks() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for sub in ["global", "base/1", "base/99", "pg_wal/archive_status"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        std::fs::write(d.join("PG_VERSION"), b"18\n").unwrap();
        std::fs::write(d.join("global/pg_control"), b"old control").unwrap();
        std::fs::write(d.join("base/1/100"), b"same").unwrap();
        std::fs::write(d.join("base/1/101"), b"diff").unwrap();
        std::fs::write(d.join("base/1/102"), b"longer than it was").unwrap();
        std::fs::write(d.join("base/99/1"), b"dropped database").unwrap();
        std::fs::write(d.join("pg_wal/000000010000000000000003"), b"wal").unwrap();
        std::fs::write(d.join("postmaster.opts"), b"x").unwrap();
        let w = vec![
            wanted("PG_VERSION", b"18\n"),
            wanted("global/pg_control", b"old control"),
            wanted("base/1/100", b"same"),
            wanted("base/1/101", b"DIFF"),
            wanted("base/1/102", b"short"),
            wanted("base/1/103", b"new"),
        ];
        let p = compare(d, &w, &BTreeMap::new()).unwrap();
        let set = |v: &[&str]| v.iter().map(PathBuf::from).collect::<BTreeSet<_>>();
        // pg_control is always rewritten (it is put back last).
        assert_eq!(
            p.rewrite,
            set(&[
                "base/1/101",
                "base/1/102",
                "base/1/103",
                "global/pg_control"
            ])
        );
        assert_eq!((p.files_unchanged, p.bytes_unchanged), (2, 7));
        assert_eq!(p.files_rewritten, 4);
        assert_eq!(
            p.remove.iter().collect::<BTreeSet<_>>(),
            set(&[
                "base/99/1",
                "pg_wal/000000010000000000000003",
                "postmaster.opts"
            ])
            .iter()
            .collect()
        );
        assert_eq!(
            p.extra_dirs,
            vec![
                PathBuf::from("pg_wal/archive_status"),
                PathBuf::from("base/99"),
                PathBuf::from("pg_wal")
            ]
        );
        assert_eq!(p.checksum_algorithm, "CRC32C");
    }

    #[test]
    fn combining_chunk_crcs_with_the_tables_is_crc32c_combine() {
        let data: Vec<u8> = (0..300_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for chunk in [1u64, 4096, 65_536] {
            let chunks: Vec<(u64, u64)> = (0..data.len() as u64)
                .step_by(chunk as usize)
                .map(|at| (at, chunk.min(data.len() as u64 - at)))
                .collect();
            let crcs: Vec<Option<u32>> = chunks
                .iter()
                .map(|&(at, len)| Some(crc32c::crc32c(&data[at as usize..(at + len) as usize])))
                .collect();
            assert_eq!(
                combine_chunks(&crcs, &chunks),
                Some(crc32c::crc32c(&data)),
                "{chunk}"
            );
            let mut missing = crcs.clone();
            missing[0] = None;
            assert_eq!(combine_chunks(&missing, &chunks), None);
        }
        let shift = ShiftBy::new(65_536);
        for x in [0u32, 1, 0xdead_beef, u32::MAX, 0x8000_0000] {
            for y in [0u32, 7, 0x1234_5678] {
                assert_eq!(shift.apply(x) ^ y, crc32c::crc32c_combine(x, y, 65_536));
            }
        }
    }

    #[test]
    fn a_big_file_compared_in_pieces_gives_the_same_answer_as_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("base/1")).unwrap();
        // 10 chunks of 4 KiB and a short last one.
        let data: Vec<u8> = (0..41_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut changed = data.clone();
        changed[20_000] ^= 1; // chunk 4
        let chunks: Vec<(u64, u64)> = (0..11u64)
            .map(|k| (k * 4096, (41_000 - k * 4096).min(4096)))
            .collect();
        let chunked: BTreeMap<PathBuf, Vec<(u64, u64)>> = [
            (PathBuf::from("base/1/same"), chunks.clone()),
            (PathBuf::from("base/1/changed"), chunks.clone()),
            (PathBuf::from("base/1/short"), chunks.clone()),
        ]
        .into();
        std::fs::write(d.join("base/1/same"), &data).unwrap();
        std::fs::write(d.join("base/1/changed"), &changed).unwrap();
        std::fs::write(d.join("base/1/short"), &data[..30_000]).unwrap();
        let w = vec![
            wanted("base/1/same", &data),
            wanted("base/1/changed", &data),
            wanted("base/1/short", &data),
        ];
        let whole = compare_in_pieces(d, &w, &chunked, usize::MAX).unwrap();
        for piece in [1, 3, 10] {
            let pieces = compare_in_pieces(d, &w, &chunked, piece).unwrap();
            assert_eq!(pieces.rewrite, whole.rewrite, "pieces of {piece}");
            assert_eq!(
                pieces.target_chunks, whole.target_chunks,
                "pieces of {piece}"
            );
            assert_eq!(pieces.files_unchanged, whole.files_unchanged);
        }
        assert!(!whole.rewrite.contains(Path::new("base/1/same")));
        assert!(whole.rewrite.contains(Path::new("base/1/changed")));
        let sums = &whole.target_chunks[Path::new("base/1/changed")];
        assert_eq!(sums.len(), 11);
        assert_eq!(sums[4], Some(crc32c::crc32c(&changed[16_384..20_480])));
        assert_eq!(sums[10], Some(crc32c::crc32c(&data[40_960..])));
        // The short file holds chunks 0..7 whole, chunk 7 in part, nothing after.
        let short = &whole.target_chunks[Path::new("base/1/short")];
        assert!(short[..7].iter().all(Option::is_some));
        assert!(short[7..].iter().all(Option::is_none));
    }

    /// A seekable archive of `files` (path, content) as dbagent stores it, with its manifest
    /// entry and index.
    fn seekable_archive(files: &[(&str, &[u8])]) -> (Vec<u8>, BackupFile, Index) {
        use sha2::Digest;
        use std::io::Write;
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o600);
            h.set_cksum();
            b.append_data(&mut h, name, *data).unwrap();
        }
        let tar = b.into_inner().unwrap();
        let mut stored = Vec::new();
        let mut w =
            crate::repo::seekable::FrameWriter::new(&mut stored, 0, 2, 4 * BLOCK as u32).unwrap();
        w.write_all(&tar).unwrap();
        let index = w.finish().unwrap();
        let file = BackupFile {
            name: "base.tar.zst".into(),
            size: tar.len() as u64,
            stored_size: stored.len() as u64,
            sha256: hex::encode(sha2::Sha256::digest(&stored)),
            tablespace: None,
            index: None,
        };
        (stored, file, index)
    }

    #[test]
    fn with_a_frame_index_only_chunks_the_directory_lacks_are_decompressed() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("base/1")).unwrap();
        let page = |p: usize, v: u8| vec![v.wrapping_add(p as u8); BLOCK];
        // 10 pages = 3 chunks of 4 pages (the last one 2): `grown` gained pages 8 and 9, pages 1
        // and 9 of `patched` changed (two chunks, decompressed on two threads), `same` and `small` did not change, `new` is new.
        let pages = |n: usize, v: u8| (0..n).flat_map(|p| page(p, v)).collect::<Vec<u8>>();
        let backup_grown = pages(10, 1);
        let backup_patched = pages(10, 2);
        let backup_same = pages(10, 3);
        let mut dir_patched = backup_patched.clone();
        dir_patched[BLOCK + 7] ^= 0xff;
        dir_patched[9 * BLOCK + 3] ^= 0xff;
        let longer = [backup_same.clone(), page(99, 0)].concat();
        std::fs::write(d.join("base/1/grown"), &backup_grown[..8 * BLOCK]).unwrap();
        std::fs::write(d.join("base/1/patched"), &dir_patched).unwrap();
        std::fs::write(d.join("base/1/same"), &backup_same).unwrap();
        std::fs::write(d.join("base/1/shrunk"), &longer).unwrap();
        std::fs::write(d.join("base/1/small"), b"small").unwrap();
        let (stored, file, index) = seekable_archive(&[
            ("base/1/grown", &backup_grown),
            ("base/1/patched", &backup_patched),
            ("base/1/same", &backup_same),
            ("base/1/shrunk", &backup_same),
            ("base/1/small", b"small"),
            ("base/1/new", &backup_grown),
        ]);
        let wanted: Vec<Wanted> = [
            ("base/1/grown", &backup_grown[..]),
            ("base/1/patched", &backup_patched),
            ("base/1/same", &backup_same),
            ("base/1/shrunk", &backup_same),
            ("base/1/small", b"small"),
            ("base/1/new", &backup_grown),
        ]
        .iter()
        .map(|(p, data)| wanted(p, data))
        .collect();
        let plan = compare(d, &wanted, &index.chunk_layout()).unwrap();
        let set = |v: &[&str]| v.iter().map(PathBuf::from).collect::<BTreeSet<_>>();
        assert_eq!(
            plan.rewrite,
            set(&[
                "base/1/grown",
                "base/1/patched",
                "base/1/shrunk",
                "base/1/new"
            ])
        );
        let (_, chunks, skipped) = plan.decompress_estimate(&index);
        // 5 members of 3 chunks; to decompress: grown's last, patched's first and last, all of
        // new.
        assert_eq!((chunks, skipped), (15, 9));
        let seek = Seekable {
            index: &index,
            target_chunks: &plan.target_chunks,
        };
        let s = stream_archive(
            &stored[..],
            &file,
            Compression::Zstd,
            d,
            &plan.rewrite,
            Some(seek),
        )
        .unwrap();
        for (path, data) in [
            ("base/1/grown", &backup_grown),
            ("base/1/patched", &backup_patched),
            ("base/1/same", &backup_same),
            ("base/1/shrunk", &backup_same),
            ("base/1/new", &backup_grown),
        ] {
            assert_eq!(&std::fs::read(d.join(path)).unwrap(), data, "{path}");
        }
        assert_eq!(s.written, 4);
        // grown: 2 pages; patched: 2 pages; new: whole.
        assert_eq!(s.bytes_written, (4 * BLOCK + backup_grown.len()) as u64);
        let f = s.frames.unwrap();
        assert_eq!(
            (
                f.frames_skipped,
                f.frames - f.frames_skipped - f.frames_decompressed
            ),
            (9, 0)
        );
        assert_eq!(s.stored_bytes, stored.len() as u64);

        // A damaged archive is still caught by its SHA-256, even in frames passed over.
        let mut bad = stored.clone();
        let skipped_frame = index
            .frames
            .iter()
            .find(|f| {
                f.chunk
                    .is_some_and(|c| index.members[c.member as usize] == "base/1/same")
            })
            .unwrap();
        bad[(skipped_frame.offset + 3) as usize] ^= 1;
        let e = stream_archive(
            &bad[..],
            &file,
            Compression::Zstd,
            d,
            &plan.rewrite,
            Some(Seekable {
                index: &index,
                target_chunks: &plan.target_chunks,
            }),
        )
        .unwrap_err();
        assert!(e.to_string().contains("SHA-256"), "{e}");

        // A frame that does not decompress while a new file is written is the archive's
        // damage, not a write error.
        std::fs::remove_file(d.join("base/1/new")).unwrap();
        let mut bad = stored.clone();
        let new_frame = index
            .frames
            .iter()
            .find(|f| {
                f.chunk
                    .is_some_and(|c| index.members[c.member as usize] == "base/1/new")
            })
            .unwrap();
        bad[(new_frame.offset + new_frame.len / 2) as usize] ^= 0x55;
        let e = stream_archive(
            &bad[..],
            &file,
            Compression::Zstd,
            d,
            &plan.rewrite,
            Some(Seekable {
                index: &index,
                target_chunks: &plan.target_chunks,
            }),
        )
        .unwrap_err();
        assert!(
            matches!(&e, extract::ExtractError::Damaged { detail, .. } if detail.contains("does not decompress")),
            "{e}"
        );
    }

    #[test]
    fn patching_in_place_writes_only_the_blocks_that_differ() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let block = |b: u8| vec![b; BLOCK];
        let old: Vec<u8> = [block(1), block(2), block(3), block(4)].concat();
        // Block 2 changed, and the file grew by a block and a half.
        let new: Vec<u8> = [
            block(1),
            block(9),
            block(3),
            block(4),
            block(5),
            vec![6; BLOCK / 2],
        ]
        .concat();
        let mut bufs = (vec![0u8; 3 * BLOCK], vec![0u8; 3 * BLOCK]);
        for (from, to, wrote) in [
            (&old, &new, BLOCK + BLOCK + BLOCK / 2),
            (&new, &old, 0),
            (&old, &old, 0),
        ] {
            std::fs::write(&p, from).unwrap();
            let w = patch_in_place(&mut &to[..], to.len() as u64, &p, &mut bufs).unwrap();
            assert_eq!(&std::fs::read(&p).unwrap(), to);
            if from != to && from.len() < to.len() {
                assert_eq!(w as usize, wrote);
            } else {
                // Shrinking: blocks 2 differs, the rest is cut off.
                assert!(w as usize <= BLOCK, "{w}");
            }
        }
    }
}
