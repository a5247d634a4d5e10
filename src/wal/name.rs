//! WAL file names and positions: segment names (`000000010000000A000000FF`), partial segments,
//! timeline history and backup history files, LSNs (`A/FF000028`) and the arithmetic between
//! them for a given segment size.

use std::fmt;

/// A log sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Lsn {
    /// Parses PostgreSQL's `X/Y` form.
    pub fn parse(s: &str) -> Option<Lsn> {
        let (hi, lo) = s.trim().split_once('/')?;
        if hi.is_empty() || lo.is_empty() || hi.len() > 8 || lo.len() > 8 {
            return None;
        }
        let hi = u64::from_str_radix(hi, 16).ok()?;
        let lo = u64::from_str_radix(lo, 16).ok()?;
        Some(Lsn((hi << 32) | lo))
    }

    /// The segment number holding this LSN.
    pub fn segno(self, seg_size: u64) -> u64 {
        self.0 / seg_size
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl serde::Serialize for Lsn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Lsn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Lsn, D::Error> {
        let s = String::deserialize(d)?;
        Lsn::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("invalid LSN `{s}`")))
    }
}

/// The kinds of file PostgreSQL hands to archive_command / asks of restore_command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalFileKind {
    Segment,
    Partial,
    History,
    BackupHistory,
}

/// A parsed WAL file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalName {
    pub name: String,
    pub kind: WalFileKind,
    pub tli: u32,
    /// `log` and `seg` parts of a segment name (zero for history files).
    pub log: u32,
    pub seg: u32,
}

fn hex8(s: &str) -> Option<u32> {
    (s.len() == 8
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase()))
    .then(|| u32::from_str_radix(s, 16).ok())
    .flatten()
}

impl WalName {
    /// Recognises a segment, `.partial`, `.history` or `.backup` name; anything else is None.
    pub fn parse(name: &str) -> Option<WalName> {
        let seg_name = |base: &str, kind| {
            if base.len() != 24 {
                return None;
            }
            Some(WalName {
                name: name.to_string(),
                kind,
                tli: hex8(&base[0..8])?,
                log: hex8(&base[8..16])?,
                seg: hex8(&base[16..24])?,
            })
        };
        if let Some(base) = name.strip_suffix(".partial") {
            return seg_name(base, WalFileKind::Partial);
        }
        if let Some(tli) = name.strip_suffix(".history") {
            return Some(WalName {
                name: name.to_string(),
                kind: WalFileKind::History,
                tli: hex8(tli)?,
                log: 0,
                seg: 0,
            });
        }
        if let Some(base) = name.strip_suffix(".backup") {
            let (seg, offset) = base.split_once('.')?;
            hex8(offset)?;
            return seg_name(seg, WalFileKind::BackupHistory).map(|mut w| {
                w.name = name.to_string();
                w
            });
        }
        seg_name(name, WalFileKind::Segment)
    }

    /// The first 16 characters (timeline + log), the archive subdirectory of segment files;
    /// history files live at the top of the WAL archive.
    pub fn archive_dir(&self) -> Option<&str> {
        match self.kind {
            WalFileKind::History => None,
            _ => Some(&self.name[0..16]),
        }
    }

    /// The absolute segment number for a segment size.
    pub fn segno(&self, seg_size: u64) -> u64 {
        u64::from(self.log) * segments_per_log(seg_size) + u64::from(self.seg)
    }
}

/// How many segments one "log" (4 GiB of WAL) holds.
pub fn segments_per_log(seg_size: u64) -> u64 {
    0x1_0000_0000 / seg_size
}

/// The segment file name of segment `segno` on timeline `tli`.
pub fn segment_name(tli: u32, segno: u64, seg_size: u64) -> String {
    let per = segments_per_log(seg_size);
    format!("{tli:08X}{:08X}{:08X}", segno / per, segno % per)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEG: u64 = 16 << 20;

    #[test]
    fn parses_every_kind() {
        let s = WalName::parse("000000010000000A000000FF").unwrap();
        assert_eq!(
            (s.kind, s.tli, s.log, s.seg),
            (WalFileKind::Segment, 1, 10, 255)
        );
        assert_eq!(s.archive_dir(), Some("000000010000000A"));
        assert_eq!(
            WalName::parse("000000020000000A000000FF.partial")
                .unwrap()
                .kind,
            WalFileKind::Partial
        );
        let h = WalName::parse("00000002.history").unwrap();
        assert_eq!(
            (h.kind, h.tli, h.archive_dir()),
            (WalFileKind::History, 2, None)
        );
        let b = WalName::parse("000000010000000000000002.00000028.backup").unwrap();
        assert_eq!((b.kind, b.seg), (WalFileKind::BackupHistory, 2));
        for bad in [
            "",
            "pg_wal",
            "00000001000000000000000",
            "0000000100000000000000zz",
            "000000010000000000000001.tmp",
            "00000001.history.bak",
            "000000010000000a000000ff",
        ] {
            assert!(WalName::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn lsn_parse_and_display() {
        assert_eq!(Lsn::parse("0/3000028"), Some(Lsn(0x3000028)));
        assert_eq!(Lsn(0x1_0000_0028).to_string(), "1/28");
        assert_eq!(Lsn::parse("x/1"), None);
        assert_eq!(Lsn::parse("1"), None);
    }

    proptest! {
        #[test]
        fn segment_names_round_trip(tli in 1u32..1000, raw in any::<u64>(), shift in 20u32..31) {
            let seg_size = 1u64 << shift;
            // WAL addresses are 64-bit: segment numbers go up to 2^64 / seg_size.
            let segno = raw % (u64::MAX / seg_size);
            let name = segment_name(tli, segno, seg_size);
            let parsed = WalName::parse(&name).unwrap();
            prop_assert_eq!(parsed.tli, tli);
            prop_assert_eq!(parsed.segno(seg_size), segno);
        }

        #[test]
        fn lsn_round_trips(v in any::<u64>()) {
            prop_assert_eq!(Lsn::parse(&Lsn(v).to_string()), Some(Lsn(v)));
        }

        #[test]
        fn lsn_segno_matches_segment_start(v in any::<u64>()) {
            let segno = Lsn(v).segno(SEG);
            prop_assert!(segno * SEG <= v && v < (segno + 1) * SEG);
        }
    }
}
