//! Compression of everything dbagent stores: zstd (default), lz4, gzip or none. Each
//! algorithm's own framing carries a checksum of the content (zstd and lz4 content checksums,
//! gzip's CRC-32), so a damaged file is detected when it is read back.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

/// A compression algorithm, as named in config (`repository.compression`) and on the CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Zstd,
    Lz4,
    Gzip,
    None,
}

impl Compression {
    /// The file name suffix including the dot (`.zst`), or empty for none.
    pub fn suffix(self) -> &'static str {
        match self {
            Compression::Zstd => ".zst",
            Compression::Lz4 => ".lz4",
            Compression::Gzip => ".gz",
            Compression::None => "",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Zstd => "zstd",
            Compression::Lz4 => "lz4",
            Compression::Gzip => "gzip",
            Compression::None => "none",
        }
    }

    /// Every algorithm, in the order a reader probes for a stored file.
    pub const ALL: [Compression; 4] = [
        Compression::Zstd,
        Compression::Lz4,
        Compression::Gzip,
        Compression::None,
    ];

    /// The default level for archived WAL: wal-push runs once per segment on PostgreSQL's
    /// critical path, so zstd uses its fastest level there (1) unless one is configured.
    pub fn default_wal_level(self) -> i32 {
        match self {
            Compression::Zstd => 1,
            other => other.default_level(),
        }
    }

    /// The default level of this algorithm (zstd 3, gzip 6; lz4 has none).
    pub fn default_level(self) -> i32 {
        match self {
            Compression::Zstd => 3,
            Compression::Gzip => 6,
            Compression::Lz4 | Compression::None => 0,
        }
    }
}

/// A compressing writer that must be finished to write its trailer.
pub trait Encoder: Write + Send {
    /// Writes the trailer and returns the inner writer's flush result.
    fn finish(self: Box<Self>) -> io::Result<()>;
}

struct ZstdEnc<W: Write + Send>(zstd::Encoder<'static, W>);
impl<W: Write + Send> Write for ZstdEnc<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}
impl<W: Write + Send> Encoder for ZstdEnc<W> {
    fn finish(self: Box<Self>) -> io::Result<()> {
        self.0.finish()?.flush()
    }
}

struct Lz4Enc<W: Write + Send>(lz4_flex::frame::FrameEncoder<W>);
impl<W: Write + Send> Write for Lz4Enc<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}
impl<W: Write + Send> Encoder for Lz4Enc<W> {
    fn finish(self: Box<Self>) -> io::Result<()> {
        self.0.finish().map_err(io::Error::other)?.flush()
    }
}

struct GzEnc<W: Write + Send>(flate2::write::GzEncoder<W>);
impl<W: Write + Send> Write for GzEnc<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}
impl<W: Write + Send> Encoder for GzEnc<W> {
    fn finish(self: Box<Self>) -> io::Result<()> {
        self.0.finish()?.flush()
    }
}

struct Plain<W: Write + Send>(W);
impl<W: Write + Send> Write for Plain<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}
impl<W: Write + Send> Encoder for Plain<W> {
    fn finish(mut self: Box<Self>) -> io::Result<()> {
        self.0.flush()
    }
}

/// Wraps `inner` in an encoder. `level` 0 means the algorithm's default; `threads` > 1 uses
/// zstd's multithreaded mode (for large backups; WAL segments use one thread).
pub fn encoder<'a, W: Write + Send + 'a>(
    c: Compression,
    level: i32,
    threads: u32,
    inner: W,
) -> io::Result<Box<dyn Encoder + 'a>> {
    let level = if level == 0 { c.default_level() } else { level };
    Ok(match c {
        Compression::Zstd => {
            let mut e = zstd::Encoder::new(inner, level)?;
            e.include_checksum(true)?;
            if threads > 1 {
                e.multithread(threads)?;
            }
            Box::new(ZstdEnc(e))
        }
        Compression::Lz4 => {
            let info = lz4_flex::frame::FrameInfo::new().content_checksum(true);
            Box::new(Lz4Enc(lz4_flex::frame::FrameEncoder::with_frame_info(
                info, inner,
            )))
        }
        Compression::Gzip => Box::new(GzEnc(flate2::write::GzEncoder::new(
            inner,
            flate2::Compression::new(level.clamp(1, 9).unsigned_abs()),
        ))),
        Compression::None => Box::new(Plain(inner)),
    })
}

/// Wraps `inner` in the matching decoder.
pub fn decoder<'a, R: Read + 'a>(c: Compression, inner: R) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match c {
        Compression::Zstd => Box::new(zstd::Decoder::new(inner)?),
        Compression::Lz4 => Box::new(lz4_flex::frame::FrameDecoder::new(inner)),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(inner)),
        Compression::None => Box::new(inner),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_algorithm_round_trips_and_detects_damage() {
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for c in Compression::ALL {
            let out = Shared::default();
            let mut e = encoder(c, 0, 1, out.clone()).unwrap();
            e.write_all(&data).unwrap();
            e.finish().unwrap();
            let stored = out.0.lock().unwrap().clone();
            let mut back = Vec::new();
            decoder(c, &stored[..])
                .unwrap()
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "{c:?}");
            if c != Compression::None {
                let mut damaged = stored.clone();
                let mid = damaged.len() / 2;
                damaged[mid] ^= 0x55;
                let mut out = Vec::new();
                let result = decoder(c, &damaged[..]).and_then(|mut d| d.read_to_end(&mut out));
                assert!(
                    result.is_err() || out != data,
                    "{c:?} did not notice damage"
                );
            }
        }
    }
}
