//! Seekable stored archives. Where dbagent compresses a tar stream with zstd itself, it writes
//! the archive as a sequence of independent zstd frames (content checksum on) instead of one:
//! the data of every tar member larger than a chunk ([`CHUNK`]) is cut into frames that each
//! hold exactly one chunk of that member, everything else (headers, small files, padding) goes
//! into frames of its own. Concatenated frames are one valid `.zst` file, so every reader of
//! the old single-frame format (full restore, `zstd -d`, verify) reads it unchanged. An
//! [`Index`] of the frames (stored next to the archive as `<archive>.idx`, zstd-compressed
//! JSON) says where each frame is and, for chunk frames, which member and range it holds and
//! the CRC-32C of its uncompressed bytes, so that a delta restore can pass over frames whose
//! content the target directory already has without decompressing them ([`FrameReader`]).
//!
//! Layer: repository format. Uses: repo::compress. Used by: backup (writing), restore (reading).

use std::collections::BTreeMap;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Compression, compress};

/// The suffix of an archive's index file (`base.tar.zst.idx`).
pub const INDEX_SUFFIX: &str = ".idx";
/// The index format this build writes and reads.
pub const INDEX_FORMAT: u32 = 1;
/// The chunk size: members larger than this are cut into frames of this much data. With
/// PostgreSQL's 8 KiB pages, 64 KiB chunks mean that 2 % of pages changed at random touch about
/// 15 % of the chunks (1 - 0.98^8); larger chunks compress a little better and are touched
/// more often (128 KiB: 28 %).
pub const CHUNK: u32 = 64 * 1024;
/// Frames of headers, small files and padding are cut at this size (any place will do: they
/// are always decompressed), so that they compress in parallel too.
const OTHER_MAX: usize = 1 << 20;
/// No frame this build writes is larger; an index claiming more is refused.
const FRAME_MAX: u64 = 16 << 20;
/// Decompressed index files larger than this are refused.
const INDEX_MAX: u64 = 256 << 20;

/// The index of a seekable archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Index {
    pub format: u32,
    /// The chunk size the archive was cut with.
    pub chunk_size: u32,
    /// Paths (relative, as the tar member names them, without `./`) of the members that were
    /// cut into chunk frames; [`Chunk::member`] is an index into this list.
    pub members: Vec<String>,
    /// Every frame of the archive, in order.
    pub frames: Vec<Frame>,
}

/// One zstd frame of a seekable archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Frame {
    /// Offset of the frame in the stored (compressed) file.
    #[serde(rename = "o")]
    pub offset: u64,
    /// Compressed length.
    #[serde(rename = "l")]
    pub len: u64,
    /// Uncompressed length.
    #[serde(rename = "u")]
    pub size: u64,
    /// For a chunk frame: what it holds.
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    pub chunk: Option<Chunk>,
}

/// What a chunk frame holds: `Frame::size` bytes of member `member` from offset `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chunk {
    #[serde(rename = "m")]
    pub member: u32,
    #[serde(rename = "a")]
    pub at: u64,
    /// CRC-32C of the chunk's uncompressed bytes.
    #[serde(rename = "k")]
    pub crc32c: u32,
}

impl Index {
    /// Checks that the frames cover the stored file (`stored_size` bytes, `size` uncompressed)
    /// back to back, and that chunk frames name members of the list and follow each other
    /// within their member.
    pub fn validate(&self, stored_size: u64, size: u64) -> Result<(), String> {
        if self.format != INDEX_FORMAT {
            return Err(format!(
                "index format {} (this build reads {INDEX_FORMAT})",
                self.format
            ));
        }
        if self.chunk_size == 0 {
            return Err("chunk size 0".into());
        }
        let (mut offset, mut total) = (0u64, 0u64);
        for (i, f) in self.frames.iter().enumerate() {
            if f.offset != offset {
                return Err(format!(
                    "frame {i} starts at {}, the previous one ends at {offset}",
                    f.offset
                ));
            }
            if f.size > FRAME_MAX || f.len == 0 {
                return Err(format!(
                    "frame {i} has a size of {} ({} compressed)",
                    f.size, f.len
                ));
            }
            if let Some(c) = f.chunk {
                if c.member as usize >= self.members.len() {
                    return Err(format!("frame {i} names member {} of none", c.member));
                }
                if f.size == 0 || f.size > u64::from(self.chunk_size) {
                    return Err(format!(
                        "chunk frame {i} holds {} bytes (chunks are {})",
                        f.size, self.chunk_size
                    ));
                }
                if c.at % u64::from(self.chunk_size) != 0 {
                    return Err(format!("chunk frame {i} starts at {} in its member", c.at));
                }
            }
            offset = offset.saturating_add(f.len);
            total = total.saturating_add(f.size);
        }
        if offset != stored_size || total != size {
            return Err(format!(
                "the frames hold {offset} stored and {total} uncompressed bytes, the archive has {stored_size} and {size}"
            ));
        }
        Ok(())
    }

    /// The chunk frames of each member, by path: (offset in the member, length) of each.
    pub fn chunk_layout(&self) -> BTreeMap<PathBuf, Vec<(u64, u64)>> {
        let mut out: BTreeMap<PathBuf, Vec<(u64, u64)>> = BTreeMap::new();
        for f in &self.frames {
            if let Some(c) = f.chunk
                && let Some(path) = self.members.get(c.member as usize)
            {
                out.entry(PathBuf::from(path))
                    .or_default()
                    .push((c.at, f.size));
            }
        }
        out
    }

    /// The stored form: JSON compressed with zstd.
    pub fn encode(&self) -> io::Result<Vec<u8>> {
        let json = serde_json::to_vec(self).map_err(io::Error::other)?;
        let mut out = Vec::new();
        let mut enc = compress::encoder(Compression::Zstd, 0, 1, &mut out)?;
        enc.write_all(&json)?;
        enc.finish()?;
        Ok(out)
    }

    /// Reads the stored form.
    pub fn decode(bytes: &[u8]) -> Result<Index, String> {
        let mut json = Vec::new();
        compress::decoder(Compression::Zstd, bytes)
            .and_then(|d| d.take(INDEX_MAX).read_to_end(&mut json))
            .map_err(|e| format!("does not decompress: {e}"))?;
        serde_json::from_slice(&json).map_err(|e| format!("is not an index: {e}"))
    }
}

/// The name of the index of stored archive `archive`.
pub fn index_name(archive: &str) -> String {
    format!("{archive}{INDEX_SUFFIX}")
}

/// A frame cut from the tar stream, not yet compressed.
struct Cut {
    data: Vec<u8>,
    /// (member, offset in the member) for a chunk frame.
    chunk: Option<(u32, u64)>,
}

#[derive(Debug)]
enum State {
    /// Reading a 512-byte header.
    Header,
    /// Data (and padding) that goes to "other" frames.
    Plain { left: u64 },
    /// The data of a member cut into chunks: `at` bytes of `size` done, then `pad` bytes.
    Chunked {
        member: u32,
        at: u64,
        size: u64,
        pad: u64,
    },
    /// The end of the archive, or something this cutter does not follow (pax headers, a bad
    /// header checksum): the rest goes into "other" frames.
    Rest,
}

/// Follows a tar stream as it arrives and cuts it into frames.
struct Cutter {
    chunk: u64,
    state: State,
    header: Vec<u8>,
    /// A GNU long name or link header came first: the next member is not cut into chunks
    /// (its name is not the one in its header).
    extension: bool,
    members: Vec<String>,
    other: Vec<u8>,
    current: Vec<u8>,
}

impl Cutter {
    fn new(chunk: u32) -> Cutter {
        Cutter {
            chunk: u64::from(chunk),
            state: State::Header,
            header: Vec::with_capacity(512),
            extension: false,
            members: Vec::new(),
            other: Vec::new(),
            current: Vec::new(),
        }
    }

    fn flush_other(&mut self, out: &mut Vec<Cut>) {
        if !self.other.is_empty() {
            out.push(Cut {
                data: std::mem::take(&mut self.other),
                chunk: None,
            });
        }
    }

    fn add_other(&mut self, data: &[u8], out: &mut Vec<Cut>) {
        self.other.extend_from_slice(data);
        if self.other.len() >= OTHER_MAX {
            self.flush_other(out);
        }
    }

    /// Takes the next bytes of the stream; frames that are complete are appended to `out`.
    fn push(&mut self, mut data: &[u8], out: &mut Vec<Cut>) {
        while !data.is_empty() {
            match self.state {
                State::Rest => {
                    self.add_other(data, out);
                    return;
                }
                State::Header => {
                    let n = (512 - self.header.len()).min(data.len());
                    self.header.extend_from_slice(&data[..n]);
                    self.other.extend_from_slice(&data[..n]);
                    data = &data[n..];
                    if self.header.len() == 512 {
                        let header = std::mem::take(&mut self.header);
                        self.state = self.next_state(&header);
                        self.header = header;
                        self.header.clear();
                        if let State::Chunked { .. } = self.state {
                            self.flush_other(out);
                        } else if self.other.len() >= OTHER_MAX {
                            self.flush_other(out);
                        }
                    }
                }
                State::Plain { left } => {
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(data.len());
                    self.add_other(&data[..n], out);
                    data = &data[n..];
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::Header
                    } else {
                        State::Plain { left }
                    };
                }
                State::Chunked {
                    member,
                    at,
                    size,
                    pad,
                } => {
                    let start = at - self.current.len() as u64;
                    let end = (start + self.chunk).min(size);
                    let n = usize::try_from(end - at)
                        .unwrap_or(usize::MAX)
                        .min(data.len());
                    self.current.extend_from_slice(&data[..n]);
                    data = &data[n..];
                    let at = at + n as u64;
                    if at == end {
                        out.push(Cut {
                            data: std::mem::take(&mut self.current),
                            chunk: Some((member, start)),
                        });
                    }
                    self.state = if at < size {
                        State::Chunked {
                            member,
                            at,
                            size,
                            pad,
                        }
                    } else if pad > 0 {
                        State::Plain { left: pad }
                    } else {
                        State::Header
                    };
                }
            }
        }
    }

    /// What follows a complete header.
    fn next_state(&mut self, h: &[u8]) -> State {
        if h.iter().all(|b| *b == 0) {
            return State::Rest;
        }
        let Some(sum) = octal(&h[148..156]) else {
            return State::Rest;
        };
        let computed: u64 = h[..148]
            .iter()
            .chain(&h[156..])
            .map(|b| u64::from(*b))
            .sum::<u64>()
            + 8 * 32;
        if sum != computed {
            return State::Rest;
        }
        let Some(size) = header_size(h) else {
            return State::Rest;
        };
        let padded = size.div_ceil(512) * 512;
        let kind = h[156];
        let extension = std::mem::replace(&mut self.extension, false);
        match kind {
            // pax headers may change the size of what follows: not followed.
            b'x' | b'g' => return State::Rest,
            b'L' | b'K' => {
                self.extension = true;
                return State::Plain { left: padded }.or_header();
            }
            _ => {}
        }
        let regular = matches!(kind, b'0' | 0 | b'7');
        if regular
            && !extension
            && size > self.chunk
            && u32::try_from(self.members.len()).is_ok()
            && let Some(name) = member_name(h)
        {
            let member = self.members.len() as u32;
            self.members.push(name);
            return State::Chunked {
                member,
                at: 0,
                size,
                pad: padded - size,
            };
        }
        State::Plain { left: padded }.or_header()
    }

    /// The frame under way at the end of the stream.
    fn finish(&mut self, out: &mut Vec<Cut>) {
        if !self.current.is_empty() {
            // The stream ended inside a member: what there is goes into an "other" frame.
            let current = std::mem::take(&mut self.current);
            self.other.extend_from_slice(&current);
        }
        self.flush_other(out);
    }
}

impl State {
    fn or_header(self) -> State {
        match self {
            State::Plain { left: 0 } => State::Header,
            s => s,
        }
    }
}

fn octal(field: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(field).ok()?;
    let s = s.trim_matches(|c: char| c == '\0' || c == ' ');
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

/// The size field: octal, or base-256 (GNU) for large members.
fn header_size(h: &[u8]) -> Option<u64> {
    let field = &h[124..136];
    if field[0] & 0x80 != 0 {
        let mut v = 0u64;
        for b in &field[4..] {
            v = (v << 8) | u64::from(*b);
        }
        return Some(v);
    }
    octal(field)
}

fn c_string(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    &field[..end]
}

/// The member's path as the restore's tar walk sees it (ustar prefix joined, `./` dropped),
/// when it is UTF-8.
fn member_name(h: &[u8]) -> Option<String> {
    let name = std::str::from_utf8(c_string(&h[..100])).ok()?;
    let full = if &h[257..262] == b"ustar" {
        let prefix = std::str::from_utf8(c_string(&h[345..500])).ok()?;
        if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}/{name}")
        }
    } else {
        name.to_string()
    };
    let path: PathBuf = Path::new(&full)
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect();
    let s = path.to_str()?;
    (!s.is_empty()).then(|| s.to_string())
}

/// A compressed frame, back from a worker.
struct Done {
    seq: u64,
    compressed: io::Result<Vec<u8>>,
    size: u64,
    chunk: Option<Chunk>,
}

struct Job {
    seq: u64,
    cut: Cut,
}

fn compressor(level: i32) -> io::Result<zstd::bulk::Compressor<'static>> {
    let mut c = zstd::bulk::Compressor::new(level)?;
    c.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))?;
    Ok(c)
}

fn compress_cut(c: &mut zstd::bulk::Compressor<'static>, seq: u64, cut: Cut) -> Done {
    let compressed = c.compress(&cut.data);
    Done {
        seq,
        compressed,
        size: cut.data.len() as u64,
        chunk: cut.chunk.map(|(member, at)| Chunk {
            member,
            at,
            crc32c: crc32c::crc32c(&cut.data),
        }),
    }
}

/// Compression workers: frames go in numbered, come back in any order.
struct Pool {
    jobs: Option<mpsc::SyncSender<Job>>,
    done: mpsc::Receiver<Done>,
}

impl Pool {
    fn start(threads: usize, level: i32) -> io::Result<Pool> {
        let (jobs, rx) = mpsc::sync_channel::<Job>(threads * 2);
        let rx = Arc::new(Mutex::new(rx));
        let (tx, done) = mpsc::channel();
        for i in 0..threads {
            let rx = Arc::clone(&rx);
            let tx = tx.clone();
            let mut c = compressor(level)?;
            std::thread::Builder::new()
                .name(format!("zstd-frames-{i}"))
                .spawn(move || {
                    loop {
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        let seq = job.seq;
                        // A frame always comes back, so the writer never waits for one that
                        // will not.
                        let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            compress_cut(&mut c, seq, job.cut)
                        }))
                        .unwrap_or_else(|_| Done {
                            seq,
                            compressed: Err(io::Error::other("a compression worker failed")),
                            size: 0,
                            chunk: None,
                        });
                        if tx.send(done).is_err() {
                            return;
                        }
                    }
                })?;
        }
        Ok(Pool {
            jobs: Some(jobs),
            done,
        })
    }
}

/// Writes a tar stream as a seekable zstd archive into `out` and builds its [`Index`].
pub struct FrameWriter<W: Write> {
    out: W,
    cutter: Cutter,
    level: i32,
    pool: Option<Pool>,
    /// For one thread: compress in the writing thread.
    inline: Option<zstd::bulk::Compressor<'static>>,
    cuts: Vec<Cut>,
    seq: u64,
    written: u64,
    in_flight: usize,
    max_in_flight: usize,
    pending: BTreeMap<u64, Done>,
    frames: Vec<Frame>,
    offset: u64,
}

impl<W: Write> FrameWriter<W> {
    /// `level` 0 is zstd's default; `threads` workers compress frames (in the calling thread
    /// when 1).
    pub fn new(out: W, level: i32, threads: u32, chunk: u32) -> io::Result<FrameWriter<W>> {
        let level = if level == 0 {
            Compression::Zstd.default_level()
        } else {
            level
        };
        let threads = threads.max(1) as usize;
        let (pool, inline) = if threads > 1 {
            (Some(Pool::start(threads, level)?), None)
        } else {
            (None, Some(compressor(level)?))
        };
        Ok(FrameWriter {
            out,
            cutter: Cutter::new(chunk.max(512)),
            level,
            pool,
            inline,
            cuts: Vec::new(),
            seq: 0,
            written: 0,
            in_flight: 0,
            max_in_flight: threads * 4,
            pending: BTreeMap::new(),
            frames: Vec::new(),
            offset: 0,
        })
    }

    fn dispatch(&mut self) -> io::Result<()> {
        for cut in std::mem::take(&mut self.cuts) {
            let seq = self.seq;
            self.seq += 1;
            if let Some(pool) = &self.pool {
                let jobs = pool
                    .jobs
                    .as_ref()
                    .ok_or_else(|| io::Error::other("the compression workers stopped"))?;
                jobs.send(Job { seq, cut })
                    .map_err(|_| io::Error::other("the compression workers stopped"))?;
                self.in_flight += 1;
                while self.in_flight >= self.max_in_flight {
                    self.receive()?;
                }
            } else {
                let c = match &mut self.inline {
                    Some(c) => c,
                    None => self.inline.insert(compressor(self.level)?),
                };
                let done = compress_cut(c, seq, cut);
                self.pending.insert(seq, done);
                self.write_ready()?;
            }
        }
        Ok(())
    }

    fn receive(&mut self) -> io::Result<()> {
        let pool = self
            .pool
            .as_ref()
            .ok_or_else(|| io::Error::other("no compression workers"))?;
        let done = pool
            .done
            .recv()
            .map_err(|_| io::Error::other("a compression worker stopped"))?;
        self.in_flight -= 1;
        self.pending.insert(done.seq, done);
        self.write_ready()
    }

    fn write_ready(&mut self) -> io::Result<()> {
        while let Some(done) = self.pending.remove(&self.written) {
            let compressed = done.compressed?;
            self.out.write_all(&compressed)?;
            self.frames.push(Frame {
                offset: self.offset,
                len: compressed.len() as u64,
                size: done.size,
                chunk: done.chunk,
            });
            self.offset += compressed.len() as u64;
            self.written += 1;
        }
        Ok(())
    }

    /// Compresses what is left, writes it and returns the index (`out` is flushed).
    pub fn finish(mut self) -> io::Result<Index> {
        self.cutter.finish(&mut self.cuts);
        self.dispatch()?;
        while self.in_flight > 0 {
            self.receive()?;
        }
        if let Some(pool) = &mut self.pool {
            pool.jobs = None;
        }
        self.out.flush()?;
        Ok(Index {
            format: INDEX_FORMAT,
            chunk_size: u32::try_from(self.cutter.chunk).unwrap_or(CHUNK),
            members: std::mem::take(&mut self.cutter.members),
            frames: std::mem::take(&mut self.frames),
        })
    }
}

impl<W: Write> Write for FrameWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.cutter.push(buf, &mut self.cuts);
        self.dispatch()?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Decompresses frame number `i` (`compressed`, described by `f`) into `out`, checking its
/// size (and zstd its content checksum).
pub fn decode_frame(
    dctx: &mut zstd::bulk::Decompressor<'static>,
    compressed: &[u8],
    f: &Frame,
    i: usize,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    out.clear();
    out.reserve(usize::try_from(f.size).map_err(io::Error::other)?);
    let n = dctx.decompress_to_buffer(compressed, out).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame {i} (at byte {}) does not decompress: {e}", f.offset),
        )
    })?;
    if n as u64 != f.size {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "frame {i} (at byte {}) holds {n} bytes, the index says {}",
                f.offset, f.size
            ),
        ));
    }
    Ok(())
}

/// What a [`FrameReader`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FrameStats {
    pub frames: u64,
    pub frames_decompressed: u64,
    pub bytes_decompressed: u64,
    pub frames_skipped: u64,
    pub bytes_skipped: u64,
}

/// Reads a seekable archive frame by frame: what is read is decompressed; what is sought over
/// ([`Seek`] forward only, as a tar walk seeks over members it does not want) and whole
/// frames passed with [`FrameReader::skip_frame`] are only read and hashed. Every stored byte
/// goes through the SHA-256 ([`FrameReader::finish`]), in order.
pub struct FrameReader<R> {
    raw: R,
    frames: Vec<Frame>,
    /// The next frame to take from `raw`.
    next: usize,
    /// The frame decompressed last, and how much of it was read.
    buf: Vec<u8>,
    at: usize,
    /// Uncompressed position of the next byte.
    pos: u64,
    /// The position as the reader's user counts it: bytes read plus seeks. Bytes passed with
    /// [`FrameReader::skip_frame`] and [`FrameReader::take_frame`] are not counted (the tar
    /// walk seeks over them afterwards).
    user_pos: u64,
    compressed: Vec<u8>,
    dctx: zstd::bulk::Decompressor<'static>,
    hasher: Sha256,
    read: u64,
    stats: FrameStats,
}

impl<R: Read> FrameReader<R> {
    pub fn new(raw: R, index: &Index) -> io::Result<FrameReader<R>> {
        Ok(FrameReader {
            raw,
            frames: index.frames.clone(),
            next: 0,
            buf: Vec::new(),
            at: 0,
            pos: 0,
            user_pos: 0,
            compressed: Vec::new(),
            dctx: zstd::bulk::Decompressor::new()?,
            hasher: Sha256::new(),
            read: 0,
            stats: FrameStats {
                frames: index.frames.len() as u64,
                ..FrameStats::default()
            },
        })
    }

    pub fn stats(&self) -> FrameStats {
        self.stats
    }

    /// The uncompressed position of the next byte.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The next frame, when everything before it was read.
    pub fn next_frame(&self) -> Option<&Frame> {
        if self.at < self.buf.len() {
            return None;
        }
        self.frames.get(self.next)
    }

    fn read_compressed(&mut self) -> io::Result<&Frame> {
        let i = self.next;
        let f = self
            .frames
            .get(i)
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "no frame left"))?;
        let len = usize::try_from(f.len).map_err(io::Error::other)?;
        self.compressed.resize(len, 0);
        self.raw.read_exact(&mut self.compressed).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                io::Error::new(
                    e.kind(),
                    format!("the file ends inside frame {i} (at byte {})", f.offset),
                )
            } else {
                e
            }
        })?;
        self.hasher.update(&self.compressed);
        self.read += f.len;
        self.next += 1;
        Ok(f)
    }

    fn decompress_next(&mut self) -> io::Result<()> {
        let i = self.next;
        let f = self.read_compressed()?.clone();
        decode_frame(&mut self.dctx, &self.compressed, &f, i, &mut self.buf)?;
        self.at = 0;
        self.stats.frames_decompressed += 1;
        self.stats.bytes_decompressed += f.size;
        Ok(())
    }

    /// Takes the next frame's compressed bytes (hashed) for the caller to decompress with
    /// [`decode_frame`] (counted as decompressed); returns the frame's number. Only at a frame
    /// boundary.
    pub fn take_compressed(&mut self, into: &mut Vec<u8>) -> io::Result<usize> {
        if self.at < self.buf.len() {
            return Err(io::Error::other("take_compressed inside a frame"));
        }
        let i = self.next;
        let size = self.read_compressed()?.size;
        into.clear();
        into.extend_from_slice(&self.compressed);
        self.pos += size;
        self.stats.frames_decompressed += 1;
        self.stats.bytes_decompressed += size;
        Ok(i)
    }

    /// Passes over the next frame without decompressing it (its bytes are hashed). Only at a
    /// frame boundary.
    pub fn skip_frame(&mut self) -> io::Result<()> {
        if self.at < self.buf.len() {
            return Err(io::Error::other("skip_frame inside a frame"));
        }
        let size = self.read_compressed()?.size;
        self.pos += size;
        self.stats.frames_skipped += 1;
        self.stats.bytes_skipped += size;
        Ok(())
    }

    /// Decompresses the next frame and returns all of it (it counts as read). Only at a frame
    /// boundary.
    pub fn take_frame(&mut self) -> io::Result<&[u8]> {
        if self.at < self.buf.len() {
            return Err(io::Error::other("take_frame inside a frame"));
        }
        self.decompress_next()?;
        self.at = self.buf.len();
        self.pos += self.buf.len() as u64;
        Ok(&self.buf)
    }

    /// Moves forward to uncompressed position `target`, decompressing only the frames that
    /// `target` is inside of.
    fn advance_to(&mut self, target: u64) -> io::Result<()> {
        while self.pos < target {
            if self.at < self.buf.len() {
                let n = (self.buf.len() - self.at)
                    .min(usize::try_from(target - self.pos).unwrap_or(usize::MAX));
                self.at += n;
                self.pos += n as u64;
                continue;
            }
            let Some(f) = self.frames.get(self.next) else {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "seek past the end of the archive",
                ));
            };
            if self.pos + f.size <= target {
                self.skip_frame()?;
            } else {
                self.decompress_next()?;
            }
        }
        Ok(())
    }

    /// Reads what is left of the stored file and returns its SHA-256 and size (every byte
    /// read, bytes after the last frame included).
    pub fn finish(&mut self) -> io::Result<(Sha256, u64)> {
        self.at = self.buf.len();
        while self.next < self.frames.len() {
            self.skip_frame()?;
        }
        let mut rest = [0u8; 8192];
        loop {
            let n = match self.raw.read(&mut rest) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.hasher.update(&rest[..n]);
            self.read += n as u64;
        }
        Ok((
            std::mem::replace(&mut self.hasher, Sha256::new()),
            self.read,
        ))
    }
}

impl<R: Read> Read for FrameReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.at >= self.buf.len() {
            if self.next >= self.frames.len() {
                return Ok(0);
            }
            self.decompress_next()?;
        }
        let n = (self.buf.len() - self.at).min(out.len());
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        self.pos += n as u64;
        self.user_pos += n as u64;
        Ok(n)
    }
}

/// Forward seeks relative to what the user read (how the tar crate skips what it does not
/// read), or to an absolute position ahead.
impl<R: Read> Seek for FrameReader<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Current(d) if d >= 0 => self.user_pos + d as u64,
            SeekFrom::Start(p) => p,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "a seekable archive is only read forward",
                ));
            }
        };
        if target < self.pos {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "seek to byte {target} of the archive, already read up to {}",
                    self.pos
                ),
            ));
        }
        self.advance_to(target)?;
        self.user_pos = target;
        Ok(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar with the given regular files (name, size), each filled with bytes derived from
    /// its index, as pg_basebackup writes them (ustar, then two zero blocks).
    fn tar_of(files: &[(&str, usize)]) -> (Vec<u8>, Vec<Vec<u8>>) {
        let mut b = tar::Builder::new(Vec::new());
        let mut contents = Vec::new();
        for (i, (name, size)) in files.iter().enumerate() {
            let data: Vec<u8> = (0..*size)
                .map(|j| ((j / 100 + i * 7) % 251) as u8)
                .collect();
            let mut h = tar::Header::new_ustar();
            h.set_size(*size as u64);
            h.set_mode(0o600);
            h.set_cksum();
            b.append_data(&mut h, name, &data[..]).unwrap();
            contents.push(data);
        }
        let mut dir = tar::Header::new_ustar();
        dir.set_entry_type(tar::EntryType::Directory);
        dir.set_size(0);
        dir.set_mode(0o700);
        dir.set_cksum();
        b.append_data(&mut dir, "pg_wal/", io::empty()).unwrap();
        (b.into_inner().unwrap(), contents)
    }

    fn write_seekable(tar: &[u8], threads: u32, chunk: u32, piece: usize) -> (Vec<u8>, Index) {
        let mut out = Vec::new();
        let mut w = FrameWriter::new(&mut out, 0, threads, chunk).unwrap();
        for p in tar.chunks(piece) {
            w.write_all(p).unwrap();
        }
        let index = w.finish().unwrap();
        (out, index)
    }

    const C: usize = 4096;

    #[test]
    fn frames_hold_one_chunk_of_one_member_and_the_file_is_still_one_zstd_stream() {
        let files = [
            ("PG_VERSION", 3),
            ("base/1/big", 3 * C + 100),
            ("base/1/exact", 2 * C),
            ("base/1/one_chunk", C),
            ("base/1/empty", 0),
            ("./base/1/dotted", C + 1),
            ("global/pg_control", C - 1000),
        ];
        let (tar, contents) = tar_of(&files);
        for (threads, piece) in [(1, 1000), (3, 7), (2, 1 << 20)] {
            let (stored, index) = write_seekable(&tar, threads, C as u32, piece);
            // Old readers: one zstd stream.
            let mut plain = Vec::new();
            compress::decoder(Compression::Zstd, &stored[..])
                .unwrap()
                .read_to_end(&mut plain)
                .unwrap();
            assert_eq!(plain, tar);
            index
                .validate(stored.len() as u64, tar.len() as u64)
                .unwrap();
            // Round trip of the stored index.
            assert_eq!(Index::decode(&index.encode().unwrap()).unwrap(), index);
            // Members larger than a chunk, and only those, are cut into chunks of exactly
            // their data.
            assert_eq!(
                index.members,
                vec!["base/1/big", "base/1/exact", "base/1/dotted"]
            );
            let layout = index.chunk_layout();
            assert_eq!(
                layout[Path::new("base/1/big")],
                vec![
                    (0, C as u64),
                    (C as u64, C as u64),
                    (2 * C as u64, C as u64),
                    (3 * C as u64, 100)
                ]
            );
            assert_eq!(
                layout[Path::new("base/1/exact")],
                vec![(0, C as u64), (C as u64, C as u64)]
            );
            assert_eq!(
                layout[Path::new("base/1/dotted")],
                vec![(0, C as u64), (C as u64, 1)]
            );
            let mut upos = 0usize;
            for f in &index.frames {
                let bytes = &tar[upos..upos + f.size as usize];
                // Every frame decodes alone to its part of the tar.
                let alone = zstd::bulk::decompress(
                    &stored[f.offset as usize..(f.offset + f.len) as usize],
                    f.size as usize,
                )
                .unwrap();
                assert_eq!(alone, bytes);
                if let Some(c) = f.chunk {
                    let member = match c.member {
                        0 => 1,
                        1 => 2,
                        _ => 5,
                    };
                    let data = &contents[member][c.at as usize..c.at as usize + f.size as usize];
                    assert_eq!(bytes, data);
                    assert_eq!(c.crc32c, crc32c::crc32c(data));
                }
                upos += f.size as usize;
            }
        }
    }

    #[test]
    fn a_stream_that_is_not_a_tar_gets_only_other_frames() {
        let junk: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        let (stored, index) = write_seekable(&junk, 2, C as u32, 1 << 20);
        assert!(index.members.is_empty());
        assert!(index.frames.len() >= 3);
        index
            .validate(stored.len() as u64, junk.len() as u64)
            .unwrap();
    }

    #[test]
    fn the_reader_decompresses_only_what_is_read_and_hashes_everything() {
        let (tar, contents) = tar_of(&[("a", 10), ("big", 5 * C), ("b", 20)]);
        let (stored, index) = write_seekable(&tar, 1, C as u32, 1 << 20);
        let mut r = FrameReader::new(&stored[..], &index).unwrap();
        let mut seen = Vec::new();
        {
            let mut a = tar::Archive::new(&mut r);
            for e in a.entries_with_seek().unwrap() {
                let mut e = e.unwrap();
                let p = e.path().unwrap().to_string_lossy().into_owned();
                if p != "big" {
                    let mut d = Vec::new();
                    e.read_to_end(&mut d).unwrap();
                    seen.push((p, d));
                }
            }
        }
        assert_eq!(seen[0], ("a".to_string(), contents[0].clone()));
        assert_eq!(seen[1], ("b".to_string(), contents[2].clone()));
        let stats = r.stats();
        assert_eq!(
            (stats.frames_skipped, stats.bytes_skipped),
            (5, 5 * C as u64)
        );
        let (h, n) = r.finish().unwrap();
        assert_eq!(n, stored.len() as u64);
        assert_eq!(
            hex::encode(h.finalize()),
            hex::encode(Sha256::digest(&stored))
        );

        // Taking over a member's chunks: skip some, decompress others.
        let mut r = FrameReader::new(&stored[..], &index).unwrap();
        // "a" (header, 10 bytes, padding) and big's header: the first frame.
        let mut header = [0u8; 1536];
        r.read_exact(&mut header).unwrap();
        let f = r.next_frame().unwrap().clone();
        assert_eq!(f.chunk.map(|c| c.at), Some(0));
        r.skip_frame().unwrap();
        assert_eq!(r.take_frame().unwrap(), &contents[1][C..2 * C]);
        // A damaged frame is named.
        let mut bad = stored.clone();
        let second = &index.frames[2];
        bad[(second.offset + second.len / 2) as usize] ^= 0xff;
        let mut r = FrameReader::new(&bad[..], &index).unwrap();
        r.read_exact(&mut header).unwrap();
        r.skip_frame().unwrap();
        let e = r.take_frame().unwrap_err();
        assert!(e.to_string().contains("frame 2"), "{e}");
    }

    #[test]
    fn validate_refuses_frames_that_do_not_cover_the_file() {
        let (tar, _) = tar_of(&[("big", 3 * C)]);
        let (stored, index) = write_seekable(&tar, 1, C as u32, 1 << 20);
        assert!(
            index
                .validate(stored.len() as u64 + 1, tar.len() as u64)
                .is_err()
        );
        let mut gap = index.clone();
        gap.frames[1].offset += 1;
        assert!(gap.validate(stored.len() as u64, tar.len() as u64).is_err());
        let mut member = index.clone();
        if let Some(c) = &mut member.frames[1].chunk {
            c.member = 9;
        }
        assert!(
            member
                .validate(stored.len() as u64, tar.len() as u64)
                .is_err()
        );
        assert!(Index::decode(b"not an index").is_err());
    }
}
