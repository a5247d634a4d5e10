//! The `INCREMENTAL.<name>` files of a PostgreSQL 17+ incremental backup (written by the
//! server's `basebackup_incremental.c`, read by `pg_combinebackup`'s `reconstruct.c`; the same
//! in 17 and 18). In the server's byte order (little-endian on every platform we run on):
//!
//! - `u32` magic `0xd3ae1f0d`;
//! - `u32` number of blocks carried, at most RELSEG_SIZE;
//! - `u32` truncation_block_length: the reconstructed file is at least this many blocks long;
//!   blocks below it that the file does not carry come from an older backup, blocks at or
//!   above it exist only if carried (holes between them are zero);
//! - one `u32` relative block number per carried block, ascending (the server sorts them);
//! - when any block is carried, zero padding up to a multiple of BLCKSZ, then the blocks
//!   themselves, BLCKSZ each, in the order of the numbers.
//!
//! dbagent's backups use the default BLCKSZ (8 kB) and segment size (1 GB): a file whose
//! length does not add up under those is refused, naming it.

use std::io::Read;
use std::path::{Path, PathBuf};

/// PostgreSQL's block size (the default build; the only one dbagent's chains are tested with).
pub const BLCKSZ: u64 = 8192;
/// Blocks per relation segment file (1 GB segments).
pub const RELSEG_SIZE: u32 = 131_072;
/// The first four bytes of every INCREMENTAL file.
pub const MAGIC: u32 = 0xd3ae_1f0d;
/// The name prefix of incremental files.
pub const PREFIX: &str = "INCREMENTAL.";

/// The header of one INCREMENTAL file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncrementalFile {
    pub path: PathBuf,
    pub truncation_block_length: u32,
    /// Relative block numbers, ascending.
    pub blocks: Vec<u32>,
    /// Where the first block's data starts.
    pub header_length: u64,
}

/// An INCREMENTAL file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error(
    "{} is not a usable incremental file ({detail}): the chain member holding it is damaged or was not written by pg_basebackup --incremental; verify it with `dbagent backups verify` and restore another backup with --backup",
    path.display()
)]
pub struct ParseError {
    pub path: PathBuf,
    pub detail: String,
}

impl IncrementalFile {
    /// The reconstructed file's length in blocks: truncation_block_length, or past the last
    /// carried block when that is further (pg_combinebackup's find_reconstructed_block_length).
    pub fn reconstructed_blocks(&self) -> u32 {
        self.blocks
            .last()
            .map_or(self.truncation_block_length, |&b| {
                self.truncation_block_length.max(b + 1)
            })
    }

    /// Offset of the `i`-th carried block's data in the file.
    pub fn block_offset(&self, i: usize) -> u64 {
        self.header_length + i as u64 * BLCKSZ
    }

    /// Opens and parses `path`.
    pub fn open(path: &Path) -> Result<IncrementalFile, ParseError> {
        let err = |detail: String| ParseError {
            path: path.to_path_buf(),
            detail,
        };
        let f = std::fs::File::open(path).map_err(|e| err(format!("cannot open it: {e}")))?;
        let len = f
            .metadata()
            .map_err(|e| err(format!("cannot stat it: {e}")))?
            .len();
        parse(std::io::BufReader::new(f), len, path)
    }
}

/// Parses the header read from `r`, of a file `len` bytes long, checking everything
/// pg_combinebackup checks and more: block numbers ascending and inside a segment, and the
/// length matching the header exactly (a truncated copy is caught here, not by a short read
/// later).
pub fn parse(mut r: impl Read, len: u64, path: &Path) -> Result<IncrementalFile, ParseError> {
    let err = |detail: String| ParseError {
        path: path.to_path_buf(),
        detail,
    };
    let mut read_u32 = |what: &str, at: u64| -> Result<u32, ParseError> {
        let mut b = [0u8; 4];
        r.read_exact(&mut b).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                err(format!(
                    "it ends after {len} bytes, inside its header (reading the {what} at byte {at})"
                ))
            } else {
                err(format!("cannot read it: {e}"))
            }
        })?;
        Ok(u32::from_le_bytes(b))
    };
    let magic = read_u32("magic number", 0)?;
    if magic != MAGIC {
        return Err(err(format!(
            "bad magic number 0x{magic:08x}, expected 0x{MAGIC:08x}"
        )));
    }
    let n = read_u32("block count", 4)?;
    if n > RELSEG_SIZE {
        return Err(err(format!(
            "block count {n} exceeds the segment size of {RELSEG_SIZE} blocks"
        )));
    }
    let truncation_block_length = read_u32("truncation block length", 8)?;
    if truncation_block_length > RELSEG_SIZE {
        return Err(err(format!(
            "truncation block length {truncation_block_length} exceeds the segment size of {RELSEG_SIZE} blocks"
        )));
    }
    let mut blocks = Vec::with_capacity(n as usize);
    for i in 0..u64::from(n) {
        let b = read_u32("block number", 12 + 4 * i)?;
        if b >= RELSEG_SIZE {
            return Err(err(format!(
                "block number {b} (entry {i}) is outside a segment of {RELSEG_SIZE} blocks"
            )));
        }
        if let Some(&prev) = blocks.last()
            && b <= prev
        {
            return Err(err(format!(
                "block numbers are not ascending: {b} (entry {i}) follows {prev}"
            )));
        }
        blocks.push(b);
    }
    let mut header_length = 12 + 4 * u64::from(n);
    if n > 0 && header_length % BLCKSZ != 0 {
        header_length += BLCKSZ - header_length % BLCKSZ;
    }
    let expected = header_length + u64::from(n) * BLCKSZ;
    if len != expected {
        return Err(err(format!(
            "it is {len} bytes long, but its header announces {n} blocks of {BLCKSZ} bytes: {expected} bytes"
        )));
    }
    Ok(IncrementalFile {
        path: path.to_path_buf(),
        truncation_block_length,
        blocks,
        header_length,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An INCREMENTAL file as the server writes it (blocks filled with their number).
    pub(crate) fn encode(truncation: u32, blocks: &[u32]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC.to_le_bytes());
        out.extend_from_slice(&(blocks.len() as u32).to_le_bytes());
        out.extend_from_slice(&truncation.to_le_bytes());
        for b in blocks {
            out.extend_from_slice(&b.to_le_bytes());
        }
        if !blocks.is_empty() {
            out.resize(out.len().next_multiple_of(BLCKSZ as usize), 0);
        }
        for b in blocks {
            out.extend(std::iter::repeat_n(*b as u8, BLCKSZ as usize));
        }
        out
    }

    fn parse_bytes(bytes: &[u8]) -> Result<IncrementalFile, ParseError> {
        parse(
            bytes,
            bytes.len() as u64,
            Path::new("base/5/INCREMENTAL.16384"),
        )
    }

    #[test]
    fn a_well_formed_file_parses_with_its_block_data_aligned() {
        let f = parse_bytes(&encode(10, &[1, 3, 12])).unwrap();
        assert_eq!(f.truncation_block_length, 10);
        assert_eq!(f.blocks, [1, 3, 12]);
        assert_eq!(f.header_length, BLCKSZ);
        assert_eq!(f.block_offset(2), 3 * BLCKSZ);
        assert_eq!(f.reconstructed_blocks(), 13);
        // No blocks: only the 12-byte header, no padding.
        let f = parse_bytes(&encode(7, &[])).unwrap();
        assert_eq!(f.header_length, 12);
        assert_eq!(f.reconstructed_blocks(), 7);
    }

    #[test]
    fn bad_magic_is_refused_naming_the_file() {
        let mut bytes = encode(1, &[0]);
        bytes[0] ^= 0xff;
        let e = parse_bytes(&bytes).unwrap_err().to_string();
        assert!(e.contains("base/5/INCREMENTAL.16384"), "{e}");
        assert!(e.contains("bad magic number"), "{e}");
    }

    #[test]
    fn a_truncated_file_is_refused() {
        let bytes = encode(4, &[0, 2]);
        // Inside the header.
        let e = parse_bytes(&bytes[..14]).unwrap_err().to_string();
        assert!(e.contains("inside its header"), "{e}");
        assert!(e.contains("base/5/INCREMENTAL.16384"), "{e}");
        // Inside the block data.
        let e = parse_bytes(&bytes[..bytes.len() - 100])
            .unwrap_err()
            .to_string();
        assert!(e.contains("announces 2 blocks"), "{e}");
        // Longer than announced.
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(parse_bytes(&longer).is_err());
    }

    #[test]
    fn block_numbers_out_of_order_or_too_many_are_refused() {
        let e = parse_bytes(&encode(10, &[3, 1])).unwrap_err().to_string();
        assert!(e.contains("not ascending"), "{e}");
        let e = parse_bytes(&encode(10, &[3, 3])).unwrap_err().to_string();
        assert!(e.contains("not ascending"), "{e}");
        let e = parse_bytes(&encode(10, &[RELSEG_SIZE]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("outside a segment"), "{e}");
        let mut bytes = encode(10, &[]);
        bytes[4..8].copy_from_slice(&(RELSEG_SIZE + 1).to_le_bytes());
        let e = parse_bytes(&bytes).unwrap_err().to_string();
        assert!(e.contains("block count"), "{e}");
        let e = parse_bytes(&encode(RELSEG_SIZE + 1, &[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("truncation block length"), "{e}");
    }
}
