//! The long page header at the start of every WAL segment: it carries the cluster's system
//! identifier, the segment size and the WAL address of the page, which is how wal-push tells
//! a real, complete segment of this cluster from anything else.

/// `XLP_LONG_HEADER`: set in xlp_info of the first page of a segment.
const XLP_LONG_HEADER: u16 = 0x0002;
/// Size of XLogLongPageHeaderData on 64-bit platforms.
pub const LONG_HEADER_LEN: usize = 40;

/// The fields of a segment's first page header that dbagent checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub magic: u16,
    pub tli: u32,
    pub page_addr: u64,
    pub system_identifier: u64,
    pub seg_size: u32,
    pub block_size: u32,
}

/// Why bytes are not the start of a WAL segment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("too short to be a WAL segment ({0} bytes)")]
    TooShort(usize),
    #[error("no WAL long page header (xlp_info {0:#06x})")]
    NotLongHeader(u16),
    #[error("implausible WAL segment size {0} in the header")]
    BadSegSize(u32),
}

impl SegmentHeader {
    /// Parses the first bytes of a segment (little-endian, as on every platform PostgreSQL
    /// ships for with dbagent).
    pub fn parse(bytes: &[u8]) -> Result<SegmentHeader, HeaderError> {
        if bytes.len() < LONG_HEADER_LEN {
            return Err(HeaderError::TooShort(bytes.len()));
        }
        let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
        let u32_at =
            |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
        let u64_at = |o: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[o..o + 8]);
            u64::from_le_bytes(b)
        };
        let info = u16_at(2);
        if info & XLP_LONG_HEADER == 0 {
            return Err(HeaderError::NotLongHeader(info));
        }
        let seg_size = u32_at(32);
        if !seg_size.is_power_of_two() || !(1 << 20..=1 << 30).contains(&seg_size) {
            return Err(HeaderError::BadSegSize(seg_size));
        }
        Ok(SegmentHeader {
            magic: u16_at(0),
            tli: u32_at(4),
            page_addr: u64_at(8),
            system_identifier: u64_at(24),
            seg_size,
            block_size: u32_at(36),
        })
    }

    /// The PostgreSQL major version that writes this XLOG_PAGE_MAGIC, if known.
    pub fn pg_major(&self) -> Option<u32> {
        Some(match self.magic {
            0xD106 => 13,
            0xD10D => 14,
            0xD110 => 15,
            0xD113 => 16,
            0xD116 => 17,
            0xD118 => 18,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn fake_header(sysid: u64, seg_size: u32, page_addr: u64) -> Vec<u8> {
        let mut b = vec![0u8; LONG_HEADER_LEN];
        b[0..2].copy_from_slice(&0xD110u16.to_le_bytes());
        b[2..4].copy_from_slice(&(XLP_LONG_HEADER | 0x0004).to_le_bytes());
        b[4..8].copy_from_slice(&1u32.to_le_bytes());
        b[8..16].copy_from_slice(&page_addr.to_le_bytes());
        b[24..32].copy_from_slice(&sysid.to_le_bytes());
        b[32..36].copy_from_slice(&seg_size.to_le_bytes());
        b[36..40].copy_from_slice(&8192u32.to_le_bytes());
        b
    }

    #[test]
    fn parses_a_long_header_and_rejects_others() {
        let h = SegmentHeader::parse(&fake_header(99, 16 << 20, 0x3000000)).unwrap();
        assert_eq!(
            (h.system_identifier, h.seg_size, h.page_addr, h.pg_major()),
            (99, 16 << 20, 0x3000000, Some(15))
        );
        assert_eq!(
            SegmentHeader::parse(&[0; 10]),
            Err(HeaderError::TooShort(10))
        );
        let mut b = fake_header(99, 16 << 20, 0);
        b[2] = 0;
        assert!(matches!(
            SegmentHeader::parse(&b),
            Err(HeaderError::NotLongHeader(_))
        ));
        assert!(matches!(
            SegmentHeader::parse(&fake_header(1, 12345, 0)),
            Err(HeaderError::BadSegSize(_))
        ));
    }
}
