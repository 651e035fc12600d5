//! The embedded bus's durable log: one folder per topic of segment files, each a run of
//! checksummed records, appended and fsynced before a publish is answered.
//!
//! A record is `len: u32 LE | crc32c(body): u32 LE | body`, and the body is
//! `seq: u64 | published_ms: i64 | subject_len: u16 | subject | id_len: u16 | id | payload`
//! (`id_len` 0xFFFF: no de-duplication id). A segment is named by its first sequence
//! (`00000000000000000001.seg`), so sequences never repeat across files.
//!
//! A crash mid-append leaves a torn record at the end of the newest segment: it was never
//! acknowledged, so opening the log truncates it. A bad record anywhere else is corruption
//! and opening fails, rather than silently skipping accepted events.
//!
//! Crates looked at first (okaywal, open-wal, logdb, wal-db): young, single-maintainer, and
//! built around their own LSNs and checkpoints; what this needs (a seq-indexed topic log
//! with a subject, a de-duplication id and a publish time per record, and age/size
//! retention like JetStream's) is this file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;

const HEADER: usize = 8;
const NO_ID: u16 = u16::MAX;
/// Largest body a record may claim: anything bigger is a torn or corrupt length.
const MAX_BODY: usize = 64 * 1024 * 1024;
const SEGMENT_SUFFIX: &str = ".seg";

/// One stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub seq: u64,
    pub published_ms: i64,
    pub subject: String,
    pub msg_id: Option<String>,
    pub payload: Bytes,
}

/// How much a topic's log keeps, like a JetStream stream's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// A segment is sealed and a new one started past this size.
    pub segment_bytes: u64,
    /// Oldest sealed segments are deleted while the log is larger than this.
    pub max_bytes: u64,
    /// Sealed segments whose newest record is older than this are deleted.
    pub max_age: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            segment_bytes: 64 * 1024 * 1024,
            max_bytes: 8 * 1024 * 1024 * 1024,
            max_age: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("bus log I/O on {file}: {source}")]
    Io {
        file: String,
        #[source]
        source: io::Error,
    },
    #[error("bus log segment {file} is corrupt at byte {offset}: {reason}")]
    Corrupt {
        file: String,
        offset: u64,
        reason: &'static str,
    },
}

/// Why a scan stopped before the end of its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanStop {
    /// Every byte was a whole, valid record.
    Clean,
    /// The bytes from `offset` on are not a valid record.
    Bad { offset: usize, reason: &'static str },
}

/// Decodes the records in `bytes`, in order, up to the first one that is not whole and
/// valid. Pure: the log reader's fuzz target runs it on arbitrary input.
pub fn scan(bytes: &[u8]) -> (Vec<LogRecord>, ScanStop) {
    let mut records = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() {
        match decode_at(bytes, offset) {
            Ok((record, next)) => {
                records.push(record);
                offset = next;
            }
            Err(reason) => return (records, ScanStop::Bad { offset, reason }),
        }
    }
    (records, ScanStop::Clean)
}

fn decode_at(bytes: &[u8], offset: usize) -> Result<(LogRecord, usize), &'static str> {
    let header = bytes
        .get(offset..offset + HEADER)
        .and_then(|h| <&[u8; HEADER]>::try_from(h).ok())
        .ok_or("truncated header")?;
    let (len, crc) = frame_header(header)?;
    let body = bytes
        .get(offset + HEADER..offset + HEADER + len)
        .ok_or("truncated body")?;
    Ok((checked_body(body, crc)?, offset + HEADER + len))
}

/// A frame's header: its body's length (bounded) and checksum.
fn frame_header(header: &[u8; HEADER]) -> Result<(usize, u32), &'static str> {
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len > MAX_BODY {
        return Err("record length out of range");
    }
    Ok((len, crc))
}

fn checked_body(body: &[u8], crc: u32) -> Result<LogRecord, &'static str> {
    if crc32c::crc32c(body) != crc {
        return Err("checksum mismatch");
    }
    decode_body(body)
}

fn decode_body(body: &[u8]) -> Result<LogRecord, &'static str> {
    let mut at = 0;
    let mut take = |n: usize| -> Result<&[u8], &'static str> {
        let slice = body.get(at..at + n).ok_or("short body")?;
        at += n;
        Ok(slice)
    };
    let seq = u64::from_le_bytes(take(8)?.try_into().map_err(|_| "short body")?);
    let published_ms = i64::from_le_bytes(take(8)?.try_into().map_err(|_| "short body")?);
    let subject_len = u16::from_le_bytes(take(2)?.try_into().map_err(|_| "short body")?);
    let subject = std::str::from_utf8(take(subject_len.into())?)
        .map_err(|_| "subject is not UTF-8")?
        .to_owned();
    let id_len = u16::from_le_bytes(take(2)?.try_into().map_err(|_| "short body")?);
    let msg_id = if id_len == NO_ID {
        None
    } else {
        Some(
            std::str::from_utf8(take(id_len.into())?)
                .map_err(|_| "id is not UTF-8")?
                .to_owned(),
        )
    };
    let payload = Bytes::copy_from_slice(&body[at..]);
    Ok(LogRecord {
        seq,
        published_ms,
        subject,
        msg_id,
        payload,
    })
}

/// Appends `record`'s frame to `out`. Subjects and ids longer than a `u16` length are
/// refused by the bus before they get here.
pub fn encode(record: &LogRecord, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    out.extend_from_slice(&record.seq.to_le_bytes());
    out.extend_from_slice(&record.published_ms.to_le_bytes());
    let subject = record.subject.as_bytes();
    out.extend_from_slice(&(subject.len() as u16).to_le_bytes());
    out.extend_from_slice(subject);
    match &record.msg_id {
        Some(id) => {
            out.extend_from_slice(&(id.len() as u16).to_le_bytes());
            out.extend_from_slice(id.as_bytes());
        }
        None => out.extend_from_slice(&NO_ID.to_le_bytes()),
    }
    out.extend_from_slice(&record.payload);
    let body = &out[start + HEADER..];
    let len = (body.len() as u32).to_le_bytes();
    let crc = crc32c::crc32c(body).to_le_bytes();
    out[start..start + 4].copy_from_slice(&len);
    out[start + 4..start + 8].copy_from_slice(&crc);
}

/// Longest subject or id a record can hold.
pub const MAX_FIELD: usize = (u16::MAX - 1) as usize;

#[derive(Debug)]
struct Segment {
    first_seq: u64,
    path: PathBuf,
    bytes: u64,
    /// Publish time of its newest record; `None` while empty.
    newest_ms: Option<i64>,
    last_seq: u64,
}

/// What opening found: where the log ends, and what it had to cut.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    pub last_seq: u64,
    pub records: u64,
    /// Bytes of a torn tail cut from the newest segment.
    pub truncated_bytes: u64,
    /// The newest de-duplication ids, oldest first (at most the window asked for).
    pub recent_ids: Vec<String>,
}

/// Where a sequential reader stands: the next record is at `offset` of segment `segment`.
#[derive(Debug, Clone, Copy)]
struct ReadPosition {
    first_seq: u64,
    offset: u64,
    next_seq: u64,
}

/// A topic's log on disk. Not thread-safe on its own: the bus holds it behind a lock.
#[derive(Debug)]
pub struct SegmentLog {
    dir: PathBuf,
    retention: Retention,
    /// Oldest first; the last one is the one appended to.
    segments: Vec<Segment>,
    active: File,
    last_seq: u64,
    position: Option<ReadPosition>,
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        file: path.display().to_string(),
        source,
    }
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}{SEGMENT_SUFFIX}"))
}

impl SegmentLog {
    /// Opens (or creates) the log in `dir`, checking every record and cutting a torn tail.
    pub fn open(
        dir: &Path,
        retention: Retention,
        id_window: usize,
    ) -> Result<(Self, Recovery), LogError> {
        fs::create_dir_all(dir).map_err(io_error(dir))?;
        let mut firsts: Vec<u64> = fs::read_dir(dir)
            .map_err(io_error(dir))?
            .filter_map(|entry| {
                let name = entry.ok()?.file_name().into_string().ok()?;
                name.strip_suffix(SEGMENT_SUFFIX)?.parse().ok()
            })
            .collect();
        firsts.sort_unstable();
        let mut recovery = Recovery::default();
        let mut ids = std::collections::VecDeque::new();
        let mut segments = Vec::new();
        let count = firsts.len();
        for (i, first_seq) in firsts.into_iter().enumerate() {
            let path = segment_path(dir, first_seq);
            let bytes = fs::read(&path).map_err(io_error(&path))?;
            let (records, stop) = scan(&bytes);
            let mut good = bytes.len() as u64;
            if let ScanStop::Bad { offset, reason } = stop {
                if i + 1 < count {
                    return Err(LogError::Corrupt {
                        file: path.display().to_string(),
                        offset: offset as u64,
                        reason,
                    });
                }
                // The newest segment's tail: a write the crash cut short.
                good = offset as u64;
                recovery.truncated_bytes = bytes.len() as u64 - good;
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io_error(&path))?;
                file.set_len(good).map_err(io_error(&path))?;
                file.sync_all().map_err(io_error(&path))?;
            }
            let first_expected = first_seq.max(recovery.last_seq + 1);
            for (expected, record) in (first_expected..).zip(&records) {
                if record.seq != expected {
                    return Err(LogError::Corrupt {
                        file: path.display().to_string(),
                        offset: 0,
                        reason: "sequence out of order",
                    });
                }
                if let Some(id) = &record.msg_id {
                    ids.push_back(id.clone());
                    if ids.len() > id_window {
                        ids.pop_front();
                    }
                }
            }
            recovery.records += records.len() as u64;
            let last_seq = records.last().map_or(first_seq - 1, |r| r.seq);
            recovery.last_seq = recovery.last_seq.max(last_seq);
            segments.push(Segment {
                first_seq,
                path,
                bytes: good,
                newest_ms: records.last().map(|r| r.published_ms),
                last_seq,
            });
        }
        recovery.recent_ids = ids.into();
        if segments.is_empty() {
            let path = segment_path(dir, 1);
            File::create(&path).map_err(io_error(&path))?;
            sync_dir(dir)?;
            segments.push(Segment {
                first_seq: 1,
                path,
                bytes: 0,
                newest_ms: None,
                last_seq: 0,
            });
        }
        let active_path = &segments[segments.len() - 1].path;
        let active = OpenOptions::new()
            .append(true)
            .open(active_path)
            .map_err(io_error(active_path))?;
        let log = Self {
            dir: dir.to_owned(),
            retention,
            segments,
            active,
            last_seq: recovery.last_seq,
            position: None,
        };
        Ok((log, recovery))
    }

    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Bytes on disk across all segments.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Sequence of the oldest record still kept.
    pub fn first_seq(&self) -> u64 {
        self.segments
            .iter()
            .find(|s| s.bytes > 0)
            .map_or(self.last_seq + 1, |s| s.first_seq)
    }

    /// Writes `records` (whose sequences continue the log's) and fsyncs them: when this
    /// returns `Ok`, they survive a crash.
    pub fn append(&mut self, records: &[LogRecord], now_ms: i64) -> Result<(), LogError> {
        let Some(first) = records.first() else {
            return Ok(());
        };
        debug_assert_eq!(first.seq, self.last_seq + 1);
        if self
            .segments
            .last()
            .is_some_and(|s| s.bytes >= self.retention.segment_bytes)
        {
            self.roll(first.seq)?;
        }
        let mut frame = Vec::new();
        for record in records {
            encode(record, &mut frame);
        }
        let segment = self.segments.last_mut().ok_or(LogError::Corrupt {
            file: self.dir.display().to_string(),
            offset: 0,
            reason: "no active segment",
        })?;
        let path = segment.path.clone();
        self.active.write_all(&frame).map_err(io_error(&path))?;
        self.active.sync_data().map_err(io_error(&path))?;
        segment.bytes += frame.len() as u64;
        segment.newest_ms = records.last().map(|r| r.published_ms);
        segment.last_seq = records.last().map_or(segment.last_seq, |r| r.seq);
        self.last_seq = segment.last_seq;
        self.enforce_retention(now_ms)
    }

    fn roll(&mut self, first_seq: u64) -> Result<(), LogError> {
        let path = segment_path(&self.dir, first_seq);
        self.active = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(io_error(&path))?;
        sync_dir(&self.dir)?;
        self.segments.push(Segment {
            first_seq,
            path,
            bytes: 0,
            newest_ms: None,
            last_seq: first_seq - 1,
        });
        Ok(())
    }

    /// Deletes the oldest sealed segments while the log is over its size or they are past
    /// its age. The segment being appended to is never deleted.
    fn enforce_retention(&mut self, now_ms: i64) -> Result<(), LogError> {
        let max_age_ms = i64::try_from(self.retention.max_age.as_millis()).unwrap_or(i64::MAX);
        let mut total = self.bytes();
        while self.segments.len() > 1 {
            let oldest = &self.segments[0];
            let too_old = oldest
                .newest_ms
                .is_some_and(|ms| now_ms.saturating_sub(ms) > max_age_ms);
            if total <= self.retention.max_bytes && !too_old {
                break;
            }
            total -= oldest.bytes;
            fs::remove_file(&oldest.path).map_err(io_error(&oldest.path))?;
            tracing::info!(segment = %oldest.path.display(), "bus log segment past retention deleted");
            if self
                .position
                .is_some_and(|p| p.first_seq == self.segments[0].first_seq)
            {
                self.position = None;
            }
            self.segments.remove(0);
        }
        Ok(())
    }

    /// Up to `max` records from sequence `from` on (or from the oldest kept, if `from` is
    /// past retention). Sequential reads continue where the last one stopped.
    pub fn read(&mut self, from: u64, max: usize) -> Result<Vec<LogRecord>, LogError> {
        let from = from.max(self.first_seq());
        if from > self.last_seq || max == 0 {
            return Ok(Vec::new());
        }
        let Some(index) = self.segments.iter().rposition(|s| s.first_seq <= from) else {
            return Ok(Vec::new());
        };
        let mut position = match self.position {
            Some(p) if p.next_seq == from => p,
            _ => ReadPosition {
                first_seq: self.segments[index].first_seq,
                offset: 0,
                next_seq: self.segments[index].first_seq,
            },
        };
        let mut out = Vec::with_capacity(max.min(4096));
        let mut segment_index = self
            .segments
            .iter()
            .position(|s| s.first_seq == position.first_seq)
            .unwrap_or(index);
        while out.len() < max && segment_index < self.segments.len() {
            let segment = &self.segments[segment_index];
            let mut file =
                BufReader::new(File::open(&segment.path).map_err(io_error(&segment.path))?);
            file.seek(SeekFrom::Start(position.offset))
                .map_err(io_error(&segment.path))?;
            let mut offset = position.offset;
            while out.len() < max && offset < segment.bytes {
                let record = read_record(&mut file).map_err(|source| match source {
                    ReadError::Io(source) => LogError::Io {
                        file: segment.path.display().to_string(),
                        source,
                    },
                    ReadError::Bad(reason) => LogError::Corrupt {
                        file: segment.path.display().to_string(),
                        offset,
                        reason,
                    },
                })?;
                offset += record.1;
                let record = record.0;
                position.next_seq = record.seq + 1;
                if record.seq >= from {
                    out.push(record);
                }
            }
            position.offset = offset;
            if offset >= segment.bytes && segment_index + 1 < self.segments.len() {
                segment_index += 1;
                position.first_seq = self.segments[segment_index].first_seq;
                position.offset = 0;
            } else {
                break;
            }
        }
        self.position = Some(position);
        Ok(out)
    }
}

enum ReadError {
    Io(io::Error),
    Bad(&'static str),
}

/// One record from `file`, with its frame's length.
fn read_record(file: &mut impl Read) -> Result<(LogRecord, u64), ReadError> {
    let mut header = [0u8; HEADER];
    file.read_exact(&mut header).map_err(ReadError::Io)?;
    let (len, crc) = frame_header(&header).map_err(ReadError::Bad)?;
    let mut body = vec![0u8; len];
    file.read_exact(&mut body).map_err(ReadError::Io)?;
    let record = checked_body(&body, crc).map_err(ReadError::Bad)?;
    Ok((record, (HEADER + len) as u64))
}

/// Makes a new or removed file's name durable, not only its contents.
fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64, id: Option<&str>) -> LogRecord {
        LogRecord {
            seq,
            published_ms: 1_000 + seq as i64,
            subject: "streamrec.events.view".to_owned(),
            msg_id: id.map(str::to_owned),
            payload: Bytes::from(format!("{{\"n\":{seq}}}")),
        }
    }

    fn small() -> Retention {
        Retention {
            segment_bytes: 200,
            max_bytes: u64::MAX,
            max_age: Duration::from_secs(3600),
        }
    }

    #[test]
    fn records_round_trip_through_the_frame() {
        let records = vec![record(1, Some("a")), record(2, None)];
        let mut bytes = Vec::new();
        for r in &records {
            encode(r, &mut bytes);
        }
        assert_eq!(scan(&bytes), (records, ScanStop::Clean));
    }

    #[test]
    fn a_flipped_bit_stops_the_scan_at_its_record() {
        let mut bytes = Vec::new();
        encode(&record(1, None), &mut bytes);
        let second = bytes.len();
        encode(&record(2, None), &mut bytes);
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let (records, stop) = scan(&bytes);
        assert_eq!(records, vec![record(1, None)]);
        assert_eq!(
            stop,
            ScanStop::Bad {
                offset: second,
                reason: "checksum mismatch"
            }
        );
    }

    #[test]
    fn reopening_finds_every_record_across_segments() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (mut log, recovery) = SegmentLog::open(dir.path(), small(), 10).expect("open");
            assert_eq!(recovery.last_seq, 0);
            for seq in 1..=20 {
                log.append(&[record(seq, Some(&format!("id{seq}")))], 0)
                    .expect("append");
            }
            assert!(log.segments.len() > 2, "small segments roll");
        }
        let (mut log, recovery) = SegmentLog::open(dir.path(), small(), 3).expect("reopen");
        assert_eq!(recovery.last_seq, 20);
        assert_eq!(recovery.records, 20);
        assert_eq!(recovery.recent_ids, ["id18", "id19", "id20"]);
        let all = log.read(1, 100).expect("read");
        assert_eq!(
            all.iter().map(|r| r.seq).collect::<Vec<_>>(),
            (1..=20).collect::<Vec<_>>()
        );
        // A read from the middle, then one continuing it.
        let middle = log.read(7, 5).expect("read");
        assert_eq!(
            middle.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [7, 8, 9, 10, 11]
        );
        let next = log.read(12, 100).expect("read");
        assert_eq!(next.first().map(|r| r.seq), Some(12));
        assert_eq!(next.len(), 9);
        log.append(&[record(21, None)], 0)
            .expect("append after reopen");
        assert_eq!(log.read(21, 1).expect("read")[0], record(21, None));
    }

    #[test]
    fn a_torn_tail_is_cut_and_appending_continues() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path;
        {
            let (mut log, _) =
                SegmentLog::open(dir.path(), Retention::default(), 10).expect("open");
            log.append(&[record(1, None), record(2, None)], 0)
                .expect("append");
            path = log.segments[0].path.clone();
        }
        // Half of a third record, as a crash mid-write leaves it.
        let mut torn = Vec::new();
        encode(&record(3, None), &mut torn);
        let mut file = OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open segment");
        file.write_all(&torn[..torn.len() / 2]).expect("write");
        drop(file);
        let (mut log, recovery) =
            SegmentLog::open(dir.path(), Retention::default(), 10).expect("reopen");
        assert_eq!(recovery.last_seq, 2);
        assert_eq!(recovery.truncated_bytes, (torn.len() / 2) as u64);
        log.append(&[record(3, None)], 0).expect("append");
        drop(log);
        let (_, recovery) = SegmentLog::open(dir.path(), Retention::default(), 10).expect("reopen");
        assert_eq!((recovery.last_seq, recovery.truncated_bytes), (3, 0));
    }

    #[test]
    fn corruption_in_a_sealed_segment_refuses_to_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first;
        {
            let (mut log, _) = SegmentLog::open(dir.path(), small(), 10).expect("open");
            for seq in 1..=10 {
                log.append(&[record(seq, None)], 0).expect("append");
            }
            first = log.segments[0].path.clone();
        }
        let mut bytes = fs::read(&first).expect("read");
        bytes[HEADER + 2] ^= 0xFF;
        fs::write(&first, bytes).expect("write");
        let error = SegmentLog::open(dir.path(), small(), 10).expect_err("corrupt");
        assert!(matches!(error, LogError::Corrupt { .. }), "{error}");
    }

    #[test]
    fn retention_deletes_the_oldest_sealed_segments() {
        let dir = tempfile::tempdir().expect("tempdir");
        let by_size = Retention {
            max_bytes: 400,
            ..small()
        };
        let (mut log, _) = SegmentLog::open(dir.path(), by_size, 10).expect("open");
        for seq in 1..=40 {
            log.append(&[record(seq, None)], 0).expect("append");
        }
        assert!(log.bytes() <= 400 + by_size.segment_bytes + 100);
        let first = log.first_seq();
        assert!(first > 1, "old records are gone");
        let kept = log.read(1, 100).expect("read");
        assert_eq!(kept.first().map(|r| r.seq), Some(first));
        assert_eq!(kept.last().map(|r| r.seq), Some(40));
        // By age: a later append finds every sealed segment past its age.
        let by_age = Retention {
            max_age: Duration::from_millis(10),
            ..small()
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, _) = SegmentLog::open(dir.path(), by_age, 10).expect("open");
        for seq in 1..=10 {
            log.append(&[record(seq, None)], 0).expect("append");
        }
        log.append(&[record(11, None)], 1_000_000).expect("append");
        assert_eq!(log.segments.len(), 1);
    }
}
