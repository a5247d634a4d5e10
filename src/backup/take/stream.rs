//! Tar stream plumbing: one named pipe → compression (or, for a stream the server compressed,
//! a decoding check) → SHA-256 and size → the repository file, made durable. With zstd, dbagent
//! writes a seekable archive (independent frames, see `repo::seekable`) and stores its index
//! next to it.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::error::{BackupError, io_err};
use super::watch::kill;
use crate::backup::manifest::{BackupFile, IndexFile, Tablespace};
use crate::repo::seekable::{self, FrameWriter, Index};
use crate::repo::storage::{BackupWriter, ObjectWriter};
use crate::repo::{Compression, compress};

/// One pipe → compressor → hasher → repository file.
pub(super) struct StreamJob {
    /// The stream arrives compressed (by the server): store it as is, decode a copy to check.
    pub(super) on_server: bool,
    pub(super) fifo: PathBuf,
    /// Where the file is stored, for messages.
    pub(super) dest: PathBuf,
    pub(super) backup: Arc<dyn BackupWriter>,
    pub(super) stored_name: String,
    pub(super) tablespace: Option<Tablespace>,
    pub(super) compression: Compression,
    pub(super) level: i32,
    pub(super) threads: u32,
    pub(super) done: Arc<AtomicU64>,
    pub(super) child_pid: u32,
}

impl StreamJob {
    /// Ok(None) when pg_basebackup never sent this archive.
    pub(super) fn run(self) -> Result<Option<BackupFile>, BackupError> {
        let mut input = std::fs::File::open(&self.fifo).map_err(io_err(&self.fifo, "open"))?;
        // A 1 MiB pipe instead of 64 KiB: fewer context switches between pg_basebackup and
        // this reader. Best effort (the system limit may be lower).
        let _ = nix::fcntl::fcntl(&input, nix::fcntl::FcntlArg::F_SETPIPE_SZ(1 << 20));
        let result = self.stream(&mut input);
        if result.is_err() {
            // Stop pg_basebackup (it would block on the full pipe) and drain what it wrote.
            kill(self.child_pid);
            let _ = io::copy(&mut input, &mut io::sink());
        }
        result
    }

    fn stream(&self, input: &mut std::fs::File) -> Result<Option<BackupFile>, BackupError> {
        let mut buf = vec![0u8; 1 << 20];
        let first = input.read(&mut buf).map_err(io_err(&self.fifo, "read"))?;
        if first == 0 {
            return Ok(None);
        }
        // Dropped without a commit (an error), the file is removed.
        let file = self.backup.file(&self.stored_name)?;
        let mut hashed = HashingWriter::new(file);
        let state = hashed.state();
        let mut index: Option<Index> = None;
        let size = if self.on_server {
            self.store_compressed(input, &buf[..first], &mut hashed)?
        } else if self.compression == Compression::Zstd {
            let mut enc = FrameWriter::new(&mut hashed, self.level, self.threads, seekable::CHUNK)
                .map_err(io_err(&self.dest, "start compressing"))?;
            let size = self.pump(input, &mut buf, first, &mut enc)?;
            index = Some(enc.finish().map_err(io_err(&self.dest, "write"))?);
            size
        } else {
            let mut enc =
                compress::encoder(self.compression, self.level, self.threads, &mut hashed)
                    .map_err(io_err(&self.dest, "start compressing"))?;
            let size = self.pump(input, &mut buf, first, &mut enc)?;
            enc.finish().map_err(io_err(&self.dest, "write"))?;
            size
        };
        hashed.inner.commit()?;
        let (sha256, stored_size) = state
            .lock()
            .map(|s| (hex::encode(s.0.clone().finalize()), s.1))
            .map_err(|_| BackupError::Refused("hash state poisoned".into()))?;
        let index = match index {
            Some(index) => Some(self.store_index(&index, stored_size, size)?),
            None => None,
        };
        Ok(Some(BackupFile {
            name: self.stored_name.clone(),
            size,
            stored_size,
            sha256,
            tablespace: self.tablespace.clone(),
            index,
        }))
    }

    /// Copies the pipe into `enc`, starting with the `first` bytes already in `buf`; returns
    /// the bytes copied.
    fn pump(
        &self,
        input: &mut std::fs::File,
        buf: &mut [u8],
        mut first: usize,
        enc: &mut impl Write,
    ) -> Result<u64, BackupError> {
        let mut size = 0u64;
        loop {
            enc.write_all(&buf[..first])
                .map_err(io_err(&self.dest, "write"))?;
            size += first as u64;
            self.done.fetch_add(first as u64, Ordering::Relaxed);
            first = input.read(buf).map_err(io_err(&self.fifo, "read"))?;
            if first == 0 {
                return Ok(size);
            }
        }
    }

    /// Stores the index of the seekable archive just written, checked against it first.
    fn store_index(
        &self,
        index: &Index,
        stored_size: u64,
        size: u64,
    ) -> Result<IndexFile, BackupError> {
        let name = seekable::index_name(&self.stored_name);
        index.validate(stored_size, size).map_err(|why| {
            BackupError::Refused(format!(
                "the frame index of {} does not match the archive written ({why}); this is a bug in dbagent: take the backup with --compress lz4 meanwhile",
                self.stored_name
            ))
        })?;
        let dest = self.dest.with_file_name(&name);
        let bytes = index.encode().map_err(io_err(&dest, "encode"))?;
        let mut file = self.backup.file(&name)?;
        file.write_all(&bytes).map_err(io_err(&dest, "write"))?;
        file.commit()?;
        Ok(IndexFile {
            name,
            size: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(&bytes)),
        })
    }
}

impl StreamJob {
    /// Stores a stream the server compressed, byte for byte, while decoding it in memory:
    /// returns the uncompressed size. A stream that does not decode fails the backup.
    fn store_compressed(
        &self,
        input: &mut std::fs::File,
        first: &[u8],
        out: &mut HashingWriter<Box<dyn ObjectWriter>>,
    ) -> Result<u64, BackupError> {
        let tee = Tee {
            head: io::Cursor::new(first.to_vec()),
            input,
            out,
            write_error: None,
        };
        let mut tee = io::BufReader::with_capacity(1 << 20, tee);
        let mut counter = Counter {
            done: &self.done,
            n: 0,
        };
        let decoded = compress::decoder(self.compression, &mut tee)
            .and_then(|mut d| io::copy(&mut d, &mut counter));
        // Bytes after the last frame would be stored without being checked: refuse them.
        let trailing = decoded
            .as_ref()
            .ok()
            .map(|_| io::copy(&mut tee, &mut io::sink()));
        let mut tee = tee.into_inner();
        if let Some(e) = tee.write_error.take() {
            return Err(io_err(&self.dest, "write")(e));
        }
        decoded.map_err(|e| {
            BackupError::BaseBackup(format!(
                "the {} stream the server sent for {} does not decode: {e}",
                self.compression.as_str(),
                self.stored_name
            ))
        })?;
        match trailing {
            Some(Ok(0)) | None => {}
            Some(Ok(n)) => {
                return Err(BackupError::BaseBackup(format!(
                    "the server sent {n} bytes after the end of the {} stream of {}",
                    self.compression.as_str(),
                    self.stored_name
                )));
            }
            Some(Err(e)) => return Err(io_err(&self.fifo, "read")(e)),
        }
        out.flush().map_err(io_err(&self.dest, "write"))?;
        Ok(counter.n)
    }
}

/// Reads `head` then `input`, writing every byte read to `out` on the way.
struct Tee<'a, W: Write> {
    head: io::Cursor<Vec<u8>>,
    input: &'a mut std::fs::File,
    out: &'a mut W,
    /// A failed write, reported as such rather than as a decoding error.
    write_error: Option<io::Error>,
}

impl<W: Write> Read for Tee<'_, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = self.head.read(buf)?;
        if n == 0 {
            n = self.input.read(buf)?;
        }
        if let Err(e) = self.out.write_all(&buf[..n]) {
            let kind = e.kind();
            self.write_error = Some(e);
            return Err(io::Error::new(kind, "cannot write the repository file"));
        }
        Ok(n)
    }
}

/// Counts the decoded bytes (and reports them as progress).
struct Counter<'a> {
    done: &'a AtomicU64,
    n: u64,
}

impl Write for Counter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.n += buf.len() as u64;
        self.done.fetch_add(buf.len() as u64, Ordering::Relaxed);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

type HashState = Arc<Mutex<(Sha256, u64)>>;

/// Hashes and counts the bytes on their way to the repository file.
struct HashingWriter<W> {
    inner: W,
    state: HashState,
}

impl<W> HashingWriter<W> {
    fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            state: Arc::new(Mutex::new((Sha256::new(), 0))),
        }
    }
    fn state(&self) -> HashState {
        Arc::clone(&self.state)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        let mut s = self
            .state
            .lock()
            .map_err(|_| io::Error::other("hash state poisoned"))?;
        s.0.update(&buf[..n]);
        s.1 += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::Repo;
    use crate::repo::storage::Key;
    use std::path::Path;

    /// A job reading `input` (a regular file stands in for the pipe) into backup "B" of an
    /// in-memory repository.
    fn job(
        dir: &Path,
        input: &[u8],
        on_server: bool,
        compression: Compression,
    ) -> (StreamJob, Repo) {
        let fifo = dir.join("input");
        std::fs::write(&fifo, input).expect("write input");
        let (repo, _) = Repo::in_memory();
        let backup: Arc<dyn BackupWriter> =
            Arc::from(repo.storage().backup_writer("B").expect("backup writer"));
        let job = StreamJob {
            on_server,
            fifo,
            dest: dir.join(format!("base.tar{}", compression.suffix())),
            backup,
            stored_name: format!("base.tar{}", compression.suffix()),
            tablespace: None,
            compression,
            level: 0,
            threads: 1,
            done: Arc::new(AtomicU64::new(0)),
            // No process: a failing job must not signal anything.
            child_pid: u32::MAX,
        };
        (job, repo)
    }

    /// What the job stored: the backup is published (with an empty manifest) and read back;
    /// `None` when it holds no such file.
    fn stored(repo: &Repo, job: &StreamJob) -> Option<Vec<u8>> {
        job.backup.publish(b"{}").expect("publish");
        repo.storage()
            .read(&Key::backup("B", &job.stored_name))
            .expect("read the stored file")
    }

    fn stream(job: &StreamJob) -> Result<Option<BackupFile>, BackupError> {
        let mut input = std::fs::File::open(&job.fifo).expect("open input");
        job.stream(&mut input)
    }

    /// More than one 1 MiB read, compressible but not trivially.
    fn tar_like() -> Vec<u8> {
        (0..3_000_000u32)
            .map(|i| u8::try_from((i / 7) % 251).unwrap_or(0))
            .collect()
    }

    fn compressed(c: Compression, data: &[u8]) -> Vec<u8> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("compressed");
        let file = std::fs::File::create(&path).expect("create");
        let mut enc = compress::encoder(c, 0, 1, file).expect("encoder");
        enc.write_all(data).expect("compress");
        enc.finish().expect("finish");
        std::fs::read(&path).expect("read")
    }

    fn decoded(c: Compression, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        compress::decoder(c, data)
            .and_then(|mut d| d.read_to_end(&mut out))
            .expect("decode");
        out
    }

    #[test]
    fn dbagent_compresses_hashes_and_counts_what_arrives() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = tar_like();
        let (job, repo) = job(dir.path(), &data, false, Compression::Zstd);
        let file = stream(&job).expect("stream").expect("a file");
        let stored = stored(&repo, &job).expect("stored file");
        assert_eq!(decoded(Compression::Zstd, &stored), data);
        assert_eq!(file.name, "base.tar.zst");
        assert_eq!(file.size, data.len() as u64);
        assert_eq!(file.stored_size, stored.len() as u64);
        assert_eq!(file.sha256, hex::encode(Sha256::digest(&stored)));
        assert_eq!(job.done.load(Ordering::Relaxed), data.len() as u64);
        // Not a tar: frames, but no chunk frames.
        let index = file.index.expect("an index");
        assert_eq!(index.name, "base.tar.zst.idx");
    }

    #[test]
    fn a_tar_stream_is_stored_as_frames_with_its_index_beside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut b = tar::Builder::new(Vec::new());
        let chunk = seekable::CHUNK as usize;
        for (name, size) in [
            ("PG_VERSION", 3),
            ("base/1/1259", 3 * chunk + 8192),
            ("base/1/2", 100),
        ] {
            let data: Vec<u8> = (0..size).map(|i| ((i / 64) % 199) as u8).collect();
            let mut h = tar::Header::new_ustar();
            h.set_size(size as u64);
            h.set_mode(0o600);
            h.set_cksum();
            b.append_data(&mut h, name, &data[..]).expect("append");
        }
        let tar = b.into_inner().expect("tar");
        for threads in [1, 2] {
            let (mut job, repo) = job(dir.path(), &tar, false, Compression::Zstd);
            job.threads = threads;
            let file = stream(&job).expect("stream").expect("a file");
            let stored = stored(&repo, &job).expect("stored file");
            assert_eq!(decoded(Compression::Zstd, &stored), tar);
            let ix = file.index.expect("an index");
            let bytes = repo
                .storage()
                .read(&Key::backup("B", &ix.name))
                .expect("read")
                .expect("the index is stored");
            assert_eq!(
                (ix.size, ix.sha256.clone()),
                (bytes.len() as u64, hex::encode(Sha256::digest(&bytes)))
            );
            let index = Index::decode(&bytes).expect("decode");
            index.validate(file.stored_size, file.size).expect("valid");
            assert_eq!(index.members, vec!["base/1/1259"]);
            assert_eq!(index.frames.iter().filter(|f| f.chunk.is_some()).count(), 4);
        }
        // lz4 and none: no index.
        for c in [Compression::Lz4, Compression::None] {
            let (job, _repo) = job(dir.path(), &tar, false, c);
            assert!(
                stream(&job)
                    .expect("stream")
                    .expect("a file")
                    .index
                    .is_none()
            );
        }
    }

    #[test]
    fn a_stream_the_server_compressed_is_stored_byte_for_byte_and_its_size_decoded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = tar_like();
        for c in [Compression::Zstd, Compression::Lz4] {
            let sent = compressed(c, &data);
            let (job, repo) = job(dir.path(), &sent, true, c);
            let file = stream(&job).expect("stream").expect("a file");
            assert_eq!(stored(&repo, &job).expect("stored file"), sent);
            assert_eq!(file.size, data.len() as u64);
            assert_eq!(file.stored_size, sent.len() as u64);
            assert_eq!(file.sha256, hex::encode(Sha256::digest(&sent)));
        }
    }

    #[test]
    fn a_server_stream_that_does_not_decode_or_has_trailing_bytes_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (garbage, _repo) = job(
            dir.path(),
            b"this is not zstd at all",
            true,
            Compression::Zstd,
        );
        let msg = stream(&garbage).expect_err("garbage").to_string();
        assert!(
            msg.starts_with("pg_basebackup failed: the zstd stream the server sent for base.tar.zst does not decode"),
            "{msg}"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sent = compressed(Compression::Zstd, b"some tar bytes");
        sent.extend_from_slice(b"junk");
        let (trailing, _repo) = job(dir.path(), &sent, true, Compression::Zstd);
        // zstd reads junk after a frame as a bad next frame; either way nothing unchecked is kept.
        match stream(&trailing) {
            Err(BackupError::BaseBackup(msg)) => assert!(msg.contains("base.tar.zst"), "{msg}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn an_archive_never_sent_stores_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (job, repo) = job(dir.path(), b"", false, Compression::Zstd);
        assert!(stream(&job).expect("stream").is_none());
        assert!(stored(&repo, &job).is_none());
    }

    #[test]
    fn hashing_writer_hashes_and_counts_what_it_passes_on() {
        let mut w = HashingWriter::new(Vec::new());
        let state = w.state();
        w.write_all(b"hello ").expect("write");
        w.write_all(b"world").expect("write");
        let s = state.lock().expect("state");
        assert_eq!(s.1, 11);
        assert_eq!(
            hex::encode(s.0.clone().finalize()),
            hex::encode(Sha256::digest(b"hello world"))
        );
        assert_eq!(w.inner, b"hello world");
    }
}
