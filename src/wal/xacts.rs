//! What the archived WAL says about transactions: which transaction IDs had been assigned by
//! the end of the archive and which of them had not yet committed or aborted there. This is
//! how RPO tells WAL that holds a committed transaction (data at risk while unarchived) from
//! WAL that holds none (a standby snapshot, a checkpoint, an idle server's records that
//! `archive_timeout` does not switch for): the server says which transactions are committed
//! now (`pg_xact_status`), the archive says which were already committed in it.
//!
//! The state is rebuilt from the newest standby snapshot (`XLOG_RUNNING_XACTS`, logged at every
//! checkpoint and every 15 seconds of activity) in the last archived segments, then carried
//! forward through the records after it: every record's transaction ID is an assignment, every
//! commit or abort record (with its subtransactions) a completion. Completions logged just
//! before the snapshot count too, because PostgreSQL may log a transaction's commit just before
//! a snapshot that still lists it as running.
//!
//! Only the record headers, the standby snapshots and the commit and abort records are read;
//! their layouts have not changed from PostgreSQL 13 to 18. Two-phase commits are not followed:
//! a prepared transaction committed in the archive reads as committed after it, which errs on
//! the side of reporting data at risk.

use std::collections::BTreeSet;
use std::io;

use super::name::{Lsn, WalName, segment_name};
use super::timeline::{Timelines, timeline_of};
use crate::repo::Repo;

const SHORT_HEADER: u64 = 24;
const LONG_HEADER: u64 = 40;
const XLP_FIRST_IS_CONTRECORD: u16 = 0x0001;
const RECORD_HEADER: usize = 24;

const RM_XLOG_ID: u8 = 0;
const RM_XACT_ID: u8 = 1;
const RM_STANDBY_ID: u8 = 8;
const XLOG_SWITCH: u8 = 0x40;
const XLOG_RUNNING_XACTS: u8 = 0x10;
const XLOG_XACT_OPMASK: u8 = 0x70;
const XLOG_XACT_COMMIT: u8 = 0x00;
const XLOG_XACT_ABORT: u8 = 0x20;
const XLOG_XACT_HAS_INFO: u8 = 0x80;
const XACT_XINFO_HAS_DBINFO: u32 = 1;
const XACT_XINFO_HAS_SUBXACTS: u32 = 2;
const XLR_BLOCK_ID_DATA_SHORT: u8 = 255;
const XLR_BLOCK_ID_DATA_LONG: u8 = 254;
const XLR_BLOCK_ID_ORIGIN: u8 = 253;
const XLR_BLOCK_ID_TOPLEVEL_XID: u8 = 252;
/// The first normal transaction ID (0 invalid, 1 bootstrap, 2 frozen).
const FIRST_NORMAL_XID: u32 = 3;
/// Seconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH_UNIX_SECONDS: i64 = 946_684_800;
/// The most transaction IDs assigned after a snapshot that are followed one by one.
const MAX_TRACKED_XIDS: u32 = 10_000_000;

/// The transactions as of the end of the archived WAL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XactState {
    /// Where the archived WAL that was read ends (the end of its newest segment).
    pub end: Lsn,
    /// Every transaction ID below this one (modulo 2^32) had been assigned by `end`.
    pub next_xid: u32,
    /// Assigned by `end` but with no commit or abort record before it: still running then, or
    /// (for IDs that never logged anything) of unknown fate. Sorted.
    pub running: Vec<u32>,
    /// The standby snapshot the state was built from.
    pub snapshot_lsn: Lsn,
    /// The newest commit record's time in the WAL read, if any.
    pub last_commit: Option<jiff::Timestamp>,
}

/// `a` comes before `b` in transaction ID order (modulo 2^32, as PostgreSQL compares them).
pub fn xid_precedes(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// A 32-bit transaction ID as the full 64-bit ID, for a server whose next full ID is `next`:
/// the newest ID with these low bits that is not after `next`.
pub fn full_xid(xid: u32, next: u64) -> u64 {
    let low = next as u32;
    let epoch = next >> 32;
    if xid <= low || epoch == 0 {
        (epoch << 32) | u64::from(xid)
    } else {
        ((epoch - 1) << 32) | u64::from(xid)
    }
}

#[derive(Debug, Default)]
struct Snapshot {
    lsn: u64,
    next_xid: u32,
    xids: Vec<u32>,
}

/// A record being assembled across a segment boundary.
#[derive(Debug)]
struct Carry {
    start: u64,
    bytes: Vec<u8>,
}

/// Reads records from consecutive segments fed one at a time (one segment in memory).
#[derive(Debug)]
pub struct Scanner {
    seg_size: u64,
    /// Where the next segment must start for the stream to continue.
    expect: Option<u64>,
    carry: Option<Carry>,
    snapshot: Option<Snapshot>,
    /// The newest transaction ID seen in a record header after the snapshot.
    max_xid_after: Option<u32>,
    /// Transactions (and subtransactions) with a commit or abort record in the stream.
    done: BTreeSet<u32>,
    last_commit: Option<jiff::Timestamp>,
    /// Where the newest commit record starts.
    last_commit_lsn: Option<Lsn>,
    end: u64,
}

/// Why a segment could not be read as WAL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScanError(String);

impl Scanner {
    pub fn new(seg_size: u64) -> Scanner {
        Scanner {
            seg_size,
            expect: None,
            carry: None,
            snapshot: None,
            max_xid_after: None,
            done: BTreeSet::new(),
            last_commit: None,
            last_commit_lsn: None,
            end: 0,
        }
    }

    /// The newest commit record in what was fed (since the last gap): its time and where it
    /// starts. A `recovery_target_time` before that time is reached in this WAL.
    pub fn last_commit(&self) -> Option<(jiff::Timestamp, Lsn)> {
        self.last_commit.zip(self.last_commit_lsn)
    }

    /// Reads the segment starting at LSN `start`. A segment that does not continue the one fed
    /// before starts the stream afresh (what came before cannot be carried over a gap).
    pub fn feed(&mut self, start: u64, buf: &[u8]) -> Result<(), ScanError> {
        if self.expect != Some(start) {
            *self = Scanner::new(self.seg_size);
        }
        self.expect = Some(start + self.seg_size);
        self.end = start + self.seg_size;
        let header = super::header::SegmentHeader::parse(buf)
            .map_err(|e| ScanError(format!("segment at {}: {e}", Lsn(start))))?;
        if u64::from(header.seg_size) != self.seg_size || buf.len() as u64 != self.seg_size {
            return Err(ScanError(format!(
                "segment at {} is {} bytes with a header saying {}, expected {}",
                Lsn(start),
                buf.len(),
                header.seg_size,
                self.seg_size
            )));
        }
        let page = u64::from(header.block_size);
        if !page.is_power_of_two() || page < 1024 || !self.seg_size.is_multiple_of(page) {
            return Err(ScanError(format!(
                "segment at {} has an implausible page size {page}",
                Lsn(start)
            )));
        }
        let seg = Segment {
            buf,
            start,
            page,
            magic: header.magic,
        };
        let info = u16::from_le_bytes([buf[2], buf[3]]);
        let rem_len = u64::from(u32::from_le_bytes([buf[16], buf[17], buf[18], buf[19]]));
        seg.check_page(0)?;
        let mut off = LONG_HEADER;
        if info & XLP_FIRST_IS_CONTRECORD != 0 {
            match self.carry.take() {
                Some(mut c) => {
                    let (next, left) = seg.read(off, rem_len as usize, &mut c.bytes)?;
                    if left > 0 {
                        // A record longer than a segment: keep assembling.
                        self.carry = Some(c);
                        return Ok(());
                    }
                    off = next;
                    if self.record(c.start, &c.bytes) {
                        return Ok(());
                    }
                }
                None => {
                    let (next, left) = seg.read_into(off, rem_len as usize, None)?;
                    if left > 0 {
                        return Ok(());
                    }
                    off = next;
                }
            }
        } else {
            self.carry = None;
        }
        loop {
            off = maxalign(off);
            if off >= self.seg_size {
                return Ok(());
            }
            if off.is_multiple_of(page) {
                seg.check_page(off)?;
                off += SHORT_HEADER;
            }
            let at = start + off;
            let mut rec = Vec::with_capacity(64);
            let (next, left) = seg.read(off, RECORD_HEADER, &mut rec)?;
            if left > 0 {
                self.carry_header(at, rec);
                return Ok(());
            }
            let total = u32::from_le_bytes([rec[0], rec[1], rec[2], rec[3]]) as usize;
            if total == 0 {
                // Zeros: the end of the WAL written into this segment.
                return Ok(());
            }
            if !(RECORD_HEADER..=1 << 30).contains(&total) {
                return Err(ScanError(format!(
                    "invalid record length {total} at {}",
                    Lsn(at)
                )));
            }
            if !matches!(rec[17], RM_XLOG_ID | RM_XACT_ID | RM_STANDBY_ID) {
                // Only its transaction ID matters: step over the body without copying it (a
                // body running into the next segment is skipped there, by its xlp_rem_len).
                self.track_xid(u32::from_le_bytes([rec[4], rec[5], rec[6], rec[7]]));
                let (next, left) = seg.read_into(next, total - RECORD_HEADER, None)?;
                if left > 0 {
                    return Ok(());
                }
                off = next;
                continue;
            }
            let (next, left) = seg.read(next, total - RECORD_HEADER, &mut rec)?;
            if left > 0 {
                self.carry = Some(Carry {
                    start: at,
                    bytes: rec,
                });
                return Ok(());
            }
            if self.record(at, &rec) {
                return Ok(());
            }
            off = next;
        }
    }

    /// A record header split by the end of the segment: carried with the bytes read so far;
    /// the next segment's first page says how many bytes remain.
    fn carry_header(&mut self, at: u64, bytes: Vec<u8>) {
        self.carry = Some(Carry { start: at, bytes });
    }

    /// A record of transaction `xid` was logged: it had been assigned.
    fn track_xid(&mut self, xid: u32) {
        if xid >= FIRST_NORMAL_XID && self.snapshot.is_some() {
            self.max_xid_after = Some(match self.max_xid_after {
                Some(m) if !xid_precedes(m, xid) => m,
                _ => xid,
            });
        }
    }

    /// Handles one complete record; true when it ends the segment (a WAL switch).
    fn record(&mut self, at: u64, rec: &[u8]) -> bool {
        if rec.len() < RECORD_HEADER {
            return false;
        }
        let xid = u32::from_le_bytes([rec[4], rec[5], rec[6], rec[7]]);
        let info = rec[16];
        let rmid = rec[17];
        self.track_xid(xid);
        match rmid {
            RM_XLOG_ID if info & 0xF0 == XLOG_SWITCH => return true,
            RM_STANDBY_ID if info & 0xF0 == XLOG_RUNNING_XACTS => {
                if let Some(s) = main_data(rec).and_then(parse_running_xacts) {
                    // Completions below everything this snapshot lists can no longer matter.
                    let floor = s
                        .xids
                        .iter()
                        .copied()
                        .fold(s.next_xid, |m, x| if xid_precedes(x, m) { x } else { m });
                    self.done.retain(|x| !xid_precedes(*x, floor));
                    self.snapshot = Some(Snapshot { lsn: at, ..s });
                    self.max_xid_after = None;
                }
            }
            RM_XACT_ID => {
                let op = info & XLOG_XACT_OPMASK;
                if (op == XLOG_XACT_COMMIT || op == XLOG_XACT_ABORT)
                    && let Some(data) = main_data(rec)
                    && let Some((time, subxids)) =
                        parse_xact_end(data, info & XLOG_XACT_HAS_INFO != 0)
                {
                    if xid >= FIRST_NORMAL_XID {
                        self.done.insert(xid);
                    }
                    self.done.extend(subxids);
                    if op == XLOG_XACT_COMMIT {
                        self.last_commit = Some(time);
                        self.last_commit_lsn = Some(Lsn(at));
                    }
                }
            }
            _ => {}
        }
        false
    }

    /// The state at the end of what was fed: `None` without a standby snapshot in it.
    pub fn finish(&self) -> Option<XactState> {
        let snap = self.snapshot.as_ref()?;
        let mut next = snap.next_xid;
        if let Some(m) = self.max_xid_after
            && !xid_precedes(m, next)
        {
            next = m.wrapping_add(1);
        }
        let assigned_after = next.wrapping_sub(snap.next_xid);
        if assigned_after > MAX_TRACKED_XIDS {
            return None;
        }
        let mut running: BTreeSet<u32> = snap.xids.iter().copied().collect();
        let mut x = snap.next_xid;
        for _ in 0..assigned_after {
            if x >= FIRST_NORMAL_XID {
                running.insert(x);
            }
            x = x.wrapping_add(1);
        }
        let running = running
            .into_iter()
            .filter(|x| !self.done.contains(x))
            .collect();
        Some(XactState {
            end: Lsn(self.end),
            next_xid: next,
            running,
            snapshot_lsn: Lsn(snap.lsn),
            last_commit: self.last_commit,
        })
    }
}

struct Segment<'a> {
    buf: &'a [u8],
    start: u64,
    page: u64,
    magic: u16,
}

impl Segment<'_> {
    fn check_page(&self, off: u64) -> Result<(), ScanError> {
        let o = off as usize;
        let magic = u16::from_le_bytes([self.buf[o], self.buf[o + 1]]);
        let mut addr = [0u8; 8];
        addr.copy_from_slice(&self.buf[o + 8..o + 16]);
        let addr = u64::from_le_bytes(addr);
        if magic != self.magic || addr != self.start + off {
            return Err(ScanError(format!(
                "page at {} has magic {magic:#06x} and address {}: not a page of this segment",
                Lsn(self.start + off),
                Lsn(addr)
            )));
        }
        Ok(())
    }

    /// Appends up to `n` bytes of record data from offset `off` to `out`, skipping page
    /// headers; returns the offset after them and how many bytes the segment did not have.
    fn read(&self, off: u64, n: usize, out: &mut Vec<u8>) -> Result<(u64, usize), ScanError> {
        self.read_into(off, n, Some(out))
    }

    /// [`Segment::read`], or only stepping over the bytes without `out`.
    fn read_into(
        &self,
        mut off: u64,
        mut n: usize,
        mut out: Option<&mut Vec<u8>>,
    ) -> Result<(u64, usize), ScanError> {
        let size = self.buf.len() as u64;
        while n > 0 {
            if off >= size {
                return Ok((off, n));
            }
            if off.is_multiple_of(self.page) {
                self.check_page(off)?;
                off += if off == 0 { LONG_HEADER } else { SHORT_HEADER };
            }
            let page_end = (off / self.page + 1) * self.page;
            let take = n.min((page_end - off) as usize);
            if let Some(out) = out.as_deref_mut() {
                out.extend_from_slice(&self.buf[off as usize..off as usize + take]);
            }
            off += take as u64;
            n -= take;
        }
        Ok((off, 0))
    }
}

fn maxalign(off: u64) -> u64 {
    (off + 7) & !7
}

/// The main data of a record without block references (the last bytes of the record).
fn main_data(rec: &[u8]) -> Option<&[u8]> {
    let mut pos = RECORD_HEADER;
    loop {
        let id = *rec.get(pos)?;
        match id {
            XLR_BLOCK_ID_DATA_SHORT => {
                let len = usize::from(*rec.get(pos + 1)?);
                return rec.get(rec.len().checked_sub(len)?..);
            }
            XLR_BLOCK_ID_DATA_LONG => {
                let b = rec.get(pos + 1..pos + 5)?;
                let len = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
                return rec.get(rec.len().checked_sub(len)?..);
            }
            XLR_BLOCK_ID_ORIGIN => pos += 3,
            XLR_BLOCK_ID_TOPLEVEL_XID => pos += 5,
            // Block references: not in the records read here.
            _ => return None,
        }
    }
}

fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    let s = b.get(o..o + 4)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// `xl_running_xacts`: xcnt, subxcnt, subxid_overflow, nextXid, oldestRunningXid,
/// latestCompletedXid, then xcnt + subxcnt transaction IDs.
fn parse_running_xacts(d: &[u8]) -> Option<Snapshot> {
    let xcnt = u32_at(d, 0)? as usize;
    let subxcnt = u32_at(d, 4)? as usize;
    let next_xid = u32_at(d, 12)?;
    let n = xcnt.checked_add(subxcnt)?;
    if n > 1 << 24 {
        return None;
    }
    let xids = (0..n)
        .map(|i| u32_at(d, 24 + 4 * i))
        .collect::<Option<Vec<u32>>>()?;
    Some(Snapshot {
        lsn: 0,
        next_xid,
        xids,
    })
}

/// `xl_xact_commit` / `xl_xact_abort`: the time, then (with XLOG_XACT_HAS_INFO) the xinfo
/// flags, the database info and the subtransactions, in this order.
fn parse_xact_end(d: &[u8], has_info: bool) -> Option<(jiff::Timestamp, Vec<u32>)> {
    let t = d.get(0..8)?;
    let mut b = [0u8; 8];
    b.copy_from_slice(t);
    let micros = i64::from_le_bytes(b);
    let time = jiff::Timestamp::from_microsecond(
        micros.checked_add(PG_EPOCH_UNIX_SECONDS.checked_mul(1_000_000)?)?,
    )
    .ok()?;
    let mut pos = 8;
    let xinfo = if has_info {
        let x = u32_at(d, pos)?;
        pos += 4;
        x
    } else {
        0
    };
    if xinfo & XACT_XINFO_HAS_DBINFO != 0 {
        pos += 8;
    }
    let mut subxids = Vec::new();
    if xinfo & XACT_XINFO_HAS_SUBXACTS != 0 {
        let n = u32_at(d, pos)? as usize;
        pos += 4;
        if n > 1 << 24 {
            return None;
        }
        for i in 0..n {
            subxids.push(u32_at(d, pos + 4 * i)?);
        }
    }
    Some((time, subxids))
}

/// The segments read back from the newest one, at most, to find a standby snapshot.
const LOOKBACK: [u64; 3] = [1, 4, 16];
/// At most this many new segments are read to catch up; further behind, start afresh.
const MAX_CATCH_UP: u64 = 256;

/// Follows the archive along the path of one timeline as it grows, so that each archived
/// segment is read once: the sidecar keeps one between polls. The first call (and one after a
/// gap) looks back from the newest segment for a standby snapshot.
#[derive(Debug)]
pub struct Follower {
    tli: u32,
    /// The last segment fed, when the scanner continues from it.
    last: Option<u64>,
    scanner: Scanner,
}

impl Follower {
    pub fn new(tli: u32, seg_size: u64) -> Follower {
        Follower {
            tli,
            last: None,
            scanner: Scanner::new(seg_size),
        }
    }

    pub fn timeline(&self) -> u32 {
        self.tli
    }

    /// The transactions as of the end of archived segment `last` along the path of the
    /// follower's timeline: `Ok(None)` when no standby snapshot was found (or a gap stops the
    /// search), an error when a segment cannot be read.
    pub fn advance(
        &mut self,
        repo: &Repo,
        timelines: &Timelines,
        last: u64,
    ) -> io::Result<Option<XactState>> {
        let seg = timelines.seg_size;
        let Some(path) = timelines.path(self.tli) else {
            self.last = None;
            return Ok(None);
        };
        let read = |segno: u64| -> io::Result<Option<Vec<u8>>> {
            let on = timeline_of(&path, segno, seg);
            let Some(name) = WalName::parse(&segment_name(on, segno, seg)) else {
                return Ok(None);
            };
            match super::find(repo, &name)? {
                Some((stored, c)) => Ok(Some(super::read_stored(repo, &stored.key, c)?)),
                None => Ok(None),
            }
        };
        let feed = |scanner: &mut Scanner, segno: u64, bytes: &[u8]| {
            scanner
                .feed(segno * seg, bytes)
                .map_err(|e| io::Error::other(format!("archived WAL segment {segno:X}: {e}")))
        };
        if self.last == Some(last) {
            return Ok(self.scanner.finish());
        }
        if let Some(prev) = self.last
            && prev < last
            && last - prev <= MAX_CATCH_UP
        {
            let mut contiguous = true;
            for segno in prev + 1..=last {
                match read(segno) {
                    Ok(Some(bytes)) => feed(&mut self.scanner, segno, &bytes)?,
                    Ok(None) => {
                        contiguous = false;
                        break;
                    }
                    Err(e) => {
                        self.last = None;
                        return Err(e);
                    }
                }
            }
            if contiguous {
                self.last = Some(last);
                return Ok(self.scanner.finish());
            }
        }
        self.last = None;
        for back in LOOKBACK {
            let first = last.saturating_sub(back - 1);
            let mut scanner = Scanner::new(seg);
            for segno in first..=last {
                match read(segno)? {
                    Some(bytes) => feed(&mut scanner, segno, &bytes)?,
                    // A gap: only what follows it can be read as one stream.
                    None => scanner = Scanner::new(seg),
                }
            }
            let found = scanner.finish();
            self.scanner = scanner;
            self.last = Some(last);
            if found.is_some() || first == 0 {
                return Ok(found);
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const SEG: u64 = 1 << 20;
    const PAGE: u64 = 8192;

    /// Builds WAL segments from records, as PostgreSQL lays them out: page headers, records
    /// aligned to 8 bytes and split across pages and segments.
    pub(crate) struct Builder {
        segs: Vec<Vec<u8>>,
        first: u64,
        pos: u64,
    }

    impl Builder {
        pub(crate) fn new(first_segno: u64) -> Builder {
            let mut b = Builder {
                segs: Vec::new(),
                first: first_segno * SEG,
                pos: first_segno * SEG,
            };
            b.pos = b.first + LONG_HEADER;
            b.new_segment(0);
            b
        }

        fn new_segment(&mut self, rem: u32) {
            let start = self.first + self.segs.len() as u64 * SEG;
            let mut s = vec![0u8; SEG as usize];
            for p in 0..(SEG / PAGE) {
                let o = (p * PAGE) as usize;
                s[o..o + 2].copy_from_slice(&0xD110u16.to_le_bytes());
                let long = p == 0;
                let info: u16 = if long { 0x0002 } else { 0 };
                s[o + 2..o + 4].copy_from_slice(&info.to_le_bytes());
                s[o + 4..o + 8].copy_from_slice(&1u32.to_le_bytes());
                s[o + 8..o + 16].copy_from_slice(&(start + p * PAGE).to_le_bytes());
                if long {
                    s[o + 32..o + 36].copy_from_slice(&(SEG as u32).to_le_bytes());
                    s[o + 36..o + 40].copy_from_slice(&(PAGE as u32).to_le_bytes());
                }
            }
            if rem > 0 {
                s[2..4].copy_from_slice(&(0x0002u16 | XLP_FIRST_IS_CONTRECORD).to_le_bytes());
                s[16..20].copy_from_slice(&rem.to_le_bytes());
            }
            self.segs.push(s);
        }

        fn put(&mut self, bytes: &[u8]) {
            let mut i = 0;
            while i < bytes.len() {
                let in_seg = self.pos - self.first;
                let idx = (in_seg / SEG) as usize;
                if idx >= self.segs.len() {
                    let rem = if i > 0 { (bytes.len() - i) as u32 } else { 0 };
                    self.new_segment(rem);
                }
                let off = in_seg % SEG;
                if off.is_multiple_of(PAGE) {
                    let h = if off == 0 { LONG_HEADER } else { SHORT_HEADER };
                    if off != 0 && i > 0 {
                        let s = &mut self.segs[idx];
                        let o = off as usize;
                        s[o + 2..o + 4].copy_from_slice(&XLP_FIRST_IS_CONTRECORD.to_le_bytes());
                        s[o + 16..o + 20]
                            .copy_from_slice(&((bytes.len() - i) as u32).to_le_bytes());
                    }
                    self.pos += h;
                    continue;
                }
                let page_end = (off / PAGE + 1) * PAGE;
                let take = ((page_end - off) as usize).min(bytes.len() - i);
                let o = off as usize;
                self.segs[idx][o..o + take].copy_from_slice(&bytes[i..i + take]);
                self.pos += take as u64;
                i += take;
            }
            self.pos = maxalign(self.pos);
        }

        pub(crate) fn record(&mut self, rmid: u8, info: u8, xid: u32, main: &[u8]) -> u64 {
            let mut r = vec![0u8; RECORD_HEADER];
            if main.len() < 256 {
                r.push(XLR_BLOCK_ID_DATA_SHORT);
                r.push(main.len() as u8);
            } else {
                r.push(XLR_BLOCK_ID_DATA_LONG);
                r.extend_from_slice(&(main.len() as u32).to_le_bytes());
            }
            r.extend_from_slice(main);
            let total = r.len() as u32;
            r[0..4].copy_from_slice(&total.to_le_bytes());
            r[4..8].copy_from_slice(&xid.to_le_bytes());
            r[16] = info;
            r[17] = rmid;
            if ((self.pos - self.first) % SEG).is_multiple_of(PAGE) {
                // Records start after the page header.
                let off = (self.pos - self.first) % SEG;
                self.pos += if off == 0 { LONG_HEADER } else { SHORT_HEADER };
            }
            let at = self.pos;
            self.put(&r);
            at
        }

        pub(crate) fn running(&mut self, next: u32, xids: &[u32]) -> u64 {
            let mut d = Vec::new();
            d.extend_from_slice(&(xids.len() as u32).to_le_bytes());
            d.extend_from_slice(&0u32.to_le_bytes());
            d.extend_from_slice(&[0, 0, 0, 0]);
            d.extend_from_slice(&next.to_le_bytes());
            d.extend_from_slice(&xids.first().copied().unwrap_or(next).to_le_bytes());
            d.extend_from_slice(&next.wrapping_sub(1).to_le_bytes());
            for x in xids {
                d.extend_from_slice(&x.to_le_bytes());
            }
            self.record(RM_STANDBY_ID, XLOG_RUNNING_XACTS, 0, &d)
        }

        pub(crate) fn commit(&mut self, xid: u32, subxids: &[u32]) -> u64 {
            let mut d = 0i64.to_le_bytes().to_vec();
            let mut info = XLOG_XACT_COMMIT;
            if !subxids.is_empty() {
                info |= XLOG_XACT_HAS_INFO;
                d.extend_from_slice(
                    &(XACT_XINFO_HAS_DBINFO | XACT_XINFO_HAS_SUBXACTS).to_le_bytes(),
                );
                d.extend_from_slice(&[5, 0, 0, 0, 0x7f, 6, 0, 0]);
                d.extend_from_slice(&(subxids.len() as u32).to_le_bytes());
                for s in subxids {
                    d.extend_from_slice(&s.to_le_bytes());
                }
            }
            self.record(RM_XACT_ID, info, xid, &d)
        }

        pub(crate) fn insert(&mut self, xid: u32, len: usize) -> u64 {
            self.record(10, 0, xid, &vec![0xAB; len])
        }

        /// An insert that ends `left` bytes before the end of the current segment.
        pub(crate) fn fill_to(&mut self, left: u64) {
            let in_seg = (self.pos - self.first) % SEG;
            let target = SEG - left;
            assert!(target > in_seg + 2 * PAGE, "not enough room");
            let crossings = target / PAGE - in_seg / PAGE;
            let total = target - in_seg - crossings * SHORT_HEADER;
            self.insert(424_242, (total - RECORD_HEADER as u64 - 5) as usize);
            assert_eq!((self.pos - self.first) % SEG, target);
        }

        pub(crate) fn switch(&mut self) {
            self.record(RM_XLOG_ID, XLOG_SWITCH, 0, &[]);
            let in_seg = (self.pos - self.first) % SEG;
            if in_seg != 0 {
                self.pos += SEG - in_seg;
            }
            let idx = ((self.pos - self.first) / SEG) as usize;
            if idx >= self.segs.len() {
                self.new_segment(0);
            }
            self.pos += LONG_HEADER;
        }

        pub(crate) fn segments(&self) -> Vec<(u64, Vec<u8>)> {
            self.segs
                .iter()
                .enumerate()
                .map(|(i, s)| (self.first + i as u64 * SEG, s.clone()))
                .collect()
        }
    }

    fn scan(b: &Builder) -> Option<XactState> {
        let mut s = Scanner::new(SEG);
        for (start, bytes) in b.segments() {
            s.feed(start, &bytes).unwrap();
        }
        s.finish()
    }

    #[test]
    fn the_state_follows_assignments_and_completions_after_the_snapshot() {
        let mut b = Builder::new(3);
        // No snapshot yet: nothing can be said.
        b.insert(700, 100);
        b.commit(700, &[]);
        assert_eq!(scan(&b), None);
        // 701 commits just before the snapshot that still lists it (PostgreSQL's race).
        b.commit(701, &[]);
        b.running(703, &[701, 702]);
        b.insert(703, 50);
        b.insert(705, 50); // 704: assigned, never logged
        b.insert(706, 20);
        b.commit(705, &[706]);
        let s = scan(&b).unwrap();
        assert_eq!(s.next_xid, 706 + 1);
        assert_eq!(s.running, vec![702, 703, 704]);
    }

    #[test]
    fn records_split_across_pages_and_segments_are_read() {
        let mut b = Builder::new(8);
        b.running(1000, &[]);
        let mut x = 1000;
        // Big records cross pages; enough of them cross into a second and third segment.
        while b.segs.len() < 3 {
            b.insert(x, 3000 + (x as usize % 7) * 1000);
            b.commit(x, &[]);
            x += 1;
        }
        // A snapshot that itself crosses the segment boundary, listing one running xid.
        let last = x;
        b.insert(last, 10);
        b.fill_to(16);
        let at = b.running(last + 1, &[last]);
        assert_eq!(at, b.first + 3 * SEG - 16);
        b.commit(last, &[]);
        let s = scan(&b).unwrap();
        assert_eq!(s.snapshot_lsn.0, at, "{s:?}");
        assert_eq!(s.next_xid, last + 1);
        assert!(s.running.is_empty(), "{s:?}");
    }

    #[test]
    fn a_switch_ends_the_segment_and_a_gap_restarts_the_stream() {
        let mut b = Builder::new(1);
        b.running(500, &[]);
        b.insert(500, 10);
        b.switch();
        b.insert(501, 10);
        let segs = b.segments();
        let mut s = Scanner::new(SEG);
        s.feed(segs[0].0, &segs[0].1).unwrap();
        s.feed(segs[1].0, &segs[1].1).unwrap();
        let st = s.finish().unwrap();
        assert_eq!(st.running, vec![500, 501]);
        // Fed alone, the second segment has no snapshot.
        let mut s = Scanner::new(SEG);
        s.feed(segs[1].0, &segs[1].1).unwrap();
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn the_follower_reads_each_new_segment_once_and_looks_back_after_a_gap() {
        let (repo, _) = Repo::in_memory();
        let key = |segno: u64| crate::repo::Key::wal(segment_name(1, segno, SEG));
        let store = |segno: u64, bytes: &[u8]| repo.storage().put(&key(segno), bytes).unwrap();
        let mut b = Builder::new(1);
        b.insert(90, 10);
        b.commit(90, &[]);
        b.running(100, &[99]);
        b.insert(100, 10);
        b.switch();
        b.insert(101, 10);
        b.commit(100, &[]);
        b.switch();
        b.commit(99, &[]);
        b.insert(102, 10);
        b.switch();
        let segs = b.segments();
        store(1, &segs[0].1);
        store(2, &segs[1].1);
        let timelines = || Timelines::read(&repo, SEG).unwrap();
        let mut f = Follower::new(1, SEG);
        let st = f.advance(&repo, &timelines(), 2).unwrap().unwrap();
        assert_eq!((st.next_xid, st.running.clone()), (102, vec![99, 101]));
        // The next segment is read on its own: removing the first two changes nothing.
        store(3, &segs[2].1);
        repo.storage().delete(&[key(1), key(2), key(3)]).unwrap();
        store(3, &segs[2].1);
        let st = f.advance(&repo, &timelines(), 3).unwrap().unwrap();
        assert_eq!((st.next_xid, st.running.clone()), (103, vec![101, 102]));
        // Afresh (no snapshot in the last segments left): nothing can be said.
        let mut fresh = Follower::new(1, SEG);
        assert_eq!(fresh.advance(&repo, &timelines(), 3).unwrap(), None);
    }

    #[test]
    fn full_ids_take_the_epoch_of_the_server() {
        let next = (3u64 << 32) | 100;
        assert_eq!(full_xid(50, next), (3 << 32) | 50);
        assert_eq!(full_xid(0xFFFF_FF00, next), (2 << 32) | 0xFFFF_FF00);
        assert_eq!(full_xid(700, 800), 700);
        assert!(xid_precedes(0xFFFF_FFF0, 5));
        assert!(!xid_precedes(5, 0xFFFF_FFF0));
    }
}
