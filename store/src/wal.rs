//! The write-ahead log.
//!
//! Segments live in `<data-dir>/wal/<first-lsn>.wal`. Each starts with an
//! 8-byte magic and holds records:
//!
//! ```text
//! u32 payload length | u32 crc32(lsn, table, payload) | u64 lsn | u8 table | payload
//! ```
//!
//! The payload is one Arrow IPC stream holding one record batch. Each record
//! gets the next log sequence number (LSN). One thread owns the open segment:
//! it takes every append that is waiting, writes them all, calls `fdatasync`
//! once (group commit), hands the batches to the in-memory buffers and only
//! then answers the writers. A flush rolls to a new segment, and segments whose
//! every LSN is in durable Parquet files are deleted.
//!
//! Replay reads segments in order, skips LSNs already in Parquet, and stops a
//! segment at the first record whose length or checksum is wrong: a torn tail
//! from a crash. That segment is truncated there (a copy of the damaged
//! segment goes to `<data-dir>/quarantine/` first), so start-up never loops.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::fsutil::sync_dir;
use crate::schema::Table;

const MAGIC: &[u8; 8] = b"BWWAL\0\0\x01";
const HEADER: usize = 4 + 4 + 8 + 1;
/// Records larger than this are treated as corrupt on replay.
const MAX_RECORD: u32 = 1 << 30;

/// Encodes a batch as an Arrow IPC stream: the WAL record payload.
pub fn encode(batch: &RecordBatch) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(batch.get_array_memory_size() / 2 + 1024);
    {
        let mut w = StreamWriter::try_new(&mut out, &batch.schema())?;
        w.write(batch)?;
        w.finish()?;
    }
    Ok(out)
}

fn decode(payload: &[u8]) -> std::result::Result<RecordBatch, String> {
    let mut reader = StreamReader::try_new(payload, None).map_err(|e| e.to_string())?;
    match reader.next() {
        Some(Ok(b)) => Ok(b),
        Some(Err(e)) => Err(e.to_string()),
        None => Err("empty IPC stream".into()),
    }
}

fn checksum(lsn: u64, table: u8, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&lsn.to_le_bytes());
    h.update(&[table]);
    h.update(payload);
    h.finalize()
}

pub(crate) fn segment_path(dir: &Path, first_lsn: u64) -> PathBuf {
    dir.join(format!("{first_lsn:020}.wal"))
}

/// Segments in the directory, ordered by first LSN.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for entry in rd {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(stem) = name.strip_suffix(".wal")
            && let Ok(lsn) = stem.parse::<u64>()
        {
            out.push((lsn, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// What a replay found.
#[derive(Debug, Default, Clone)]
pub(crate) struct ReplayStats {
    /// The LSN the next record gets.
    pub next_lsn: u64,
    /// Records handed to the callback.
    pub replayed: u64,
    /// Records skipped because they are already in Parquet.
    pub skipped: u64,
    /// Segments that had a torn or corrupt tail.
    pub truncated_segments: u64,
}

/// Replays every record with LSN > `flushed_lsn`, in LSN order.
pub(crate) fn replay(
    dir: &Path,
    quarantine: &Path,
    flushed_lsn: u64,
    repair: bool,
    mut on_record: impl FnMut(u64, Table, RecordBatch),
) -> Result<ReplayStats> {
    let mut stats = ReplayStats {
        next_lsn: flushed_lsn + 1,
        ..Default::default()
    };
    for (first, path) in list_segments(dir)? {
        let mut data = Vec::new();
        File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut data))
            .map_err(|e| Error::io(&path, e))?;
        let mut pos = 0usize;
        let mut problem: Option<String> = None;
        if data.len() < MAGIC.len() || &data[..MAGIC.len()] != MAGIC {
            if !data.is_empty() {
                problem = Some("bad segment header".into());
            }
        } else {
            pos = MAGIC.len();
            let mut expected = first;
            while pos < data.len() {
                if data.len() - pos < HEADER {
                    problem = Some(format!("torn record header at offset {pos}"));
                    break;
                }
                let len = u32::from_le_bytes(data[pos..pos + 4].try_into().unwrap_or_default());
                let crc = u32::from_le_bytes(data[pos + 4..pos + 8].try_into().unwrap_or_default());
                let lsn =
                    u64::from_le_bytes(data[pos + 8..pos + 16].try_into().unwrap_or_default());
                let tag = data[pos + 16];
                if len > MAX_RECORD || data.len() - pos - HEADER < len as usize {
                    problem = Some(format!("torn record at offset {pos} (length {len})"));
                    break;
                }
                let payload = &data[pos + HEADER..pos + HEADER + len as usize];
                if checksum(lsn, tag, payload) != crc {
                    problem = Some(format!("checksum mismatch at offset {pos}"));
                    break;
                }
                let Some(table) = Table::from_tag(tag) else {
                    problem = Some(format!("unknown table tag {tag} at offset {pos}"));
                    break;
                };
                if lsn < expected {
                    problem = Some(format!("LSN {lsn} goes backwards at offset {pos}"));
                    break;
                }
                let batch = match decode(payload) {
                    Ok(b) => b,
                    Err(e) => {
                        problem = Some(format!("undecodable batch at offset {pos}: {e}"));
                        break;
                    }
                };
                expected = lsn + 1;
                if lsn <= flushed_lsn {
                    stats.skipped += 1;
                } else {
                    on_record(lsn, table, batch);
                    stats.replayed += 1;
                }
                stats.next_lsn = stats.next_lsn.max(lsn + 1);
                pos += HEADER + len as usize;
            }
        }
        stats.next_lsn = stats.next_lsn.max(first);
        if let Some(problem) = problem {
            stats.truncated_segments += 1;
            if !repair {
                // Read-only: a live server may be writing this tail right now.
                continue;
            }
            let kept = pos;
            quarantine_copy(quarantine, &path, &data)?;
            tracing::warn!(
                segment = %path.display(),
                offset = kept,
                dropped_bytes = data.len() - kept,
                "WAL segment has a torn or corrupt tail ({problem}); truncating it there. \
                 Records after this point were never acknowledged. A copy is in {}",
                quarantine.display()
            );
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| Error::io(&path, e))?;
            f.set_len(kept as u64).map_err(|e| Error::io(&path, e))?;
            f.sync_all().map_err(|e| Error::io(&path, e))?;
        }
    }
    Ok(stats)
}

fn quarantine_copy(quarantine: &Path, path: &Path, data: &[u8]) -> Result<()> {
    std::fs::create_dir_all(quarantine).map_err(|e| Error::io(quarantine, e))?;
    let name = format!(
        "{}.{}",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("segment"),
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.f")
    );
    let dest = quarantine.join(name);
    std::fs::write(&dest, data).map_err(|e| Error::io(&dest, e))?;
    Ok(())
}

/// The open segment; owned by the WAL thread.
pub(crate) struct WalWriter {
    dir: PathBuf,
    file: BufWriter<File>,
    path: PathBuf,
    first_lsn: u64,
    offset: u64,
    next_lsn: u64,
}

impl WalWriter {
    /// Opens a fresh segment starting at `next_lsn`.
    pub(crate) fn create(dir: &Path, next_lsn: u64) -> Result<WalWriter> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = segment_path(dir, next_lsn);
        let opened = (|| -> Result<File> {
            let mut file = OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .open(&path)
                .map_err(|e| Error::io(&path, e))?;
            file.write_all(MAGIC).map_err(|e| Error::io(&path, e))?;
            file.sync_all().map_err(|e| Error::io(&path, e))?;
            sync_dir(dir)?;
            Ok(file)
        })();
        let file = match opened {
            Ok(f) => f,
            Err(e) => {
                // A half-made segment must not stay: its name would claim LSNs
                // that the previous segment goes on holding.
                let _ = std::fs::remove_file(&path);
                let _ = sync_dir(dir);
                return Err(e);
            }
        };
        Ok(WalWriter {
            dir: dir.to_path_buf(),
            file: BufWriter::with_capacity(1 << 20, file),
            path,
            first_lsn: next_lsn,
            offset: MAGIC.len() as u64,
            next_lsn,
        })
    }

    /// First LSN of the open segment.
    pub(crate) fn first_lsn(&self) -> u64 {
        self.first_lsn
    }

    /// Writes the records and makes them durable with one `fdatasync`.
    /// Returns the LSN of the first record. On error nothing was appended:
    /// the file is cut back to where it was.
    pub(crate) fn append_group(&mut self, items: &[(Table, &[u8])]) -> Result<u64> {
        let start_lsn = self.next_lsn;
        let start_offset = self.offset;
        let result = (|| -> std::io::Result<u64> {
            let mut written = 0u64;
            for (i, (table, payload)) in items.iter().enumerate() {
                let lsn = start_lsn + i as u64;
                let tag = table.tag();
                let len = u32::try_from(payload.len()).map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::InvalidInput, "record over 4 GiB")
                })?;
                let mut header = [0u8; HEADER];
                header[0..4].copy_from_slice(&len.to_le_bytes());
                header[4..8].copy_from_slice(&checksum(lsn, tag, payload).to_le_bytes());
                header[8..16].copy_from_slice(&lsn.to_le_bytes());
                header[16] = tag;
                self.file.write_all(&header)?;
                self.file.write_all(payload)?;
                written += (HEADER + payload.len()) as u64;
            }
            self.file.flush()?;
            self.file.get_ref().sync_data()?;
            Ok(written)
        })();
        match result {
            Ok(written) => {
                self.offset += written;
                self.next_lsn += items.len() as u64;
                Ok(start_lsn)
            }
            Err(e) => {
                let err = Error::io(&self.path, e);
                // Cut back to the last durable record so no partial record stays.
                if let Err(e2) = self.reset_to(start_offset) {
                    tracing::error!(segment = %self.path.display(), error = %e2,
                        "could not cut the WAL back after a failed write; opening a new segment");
                    if let Ok(w) = WalWriter::create(&self.dir, self.next_lsn) {
                        *self = w;
                    }
                }
                Err(err)
            }
        }
    }

    fn reset_to(&mut self, offset: u64) -> std::io::Result<()> {
        // Drop whatever the BufWriter still holds, then truncate.
        let file = self.file.get_ref().try_clone()?;
        let mut fresh = BufWriter::with_capacity(1 << 20, file);
        std::mem::swap(&mut self.file, &mut fresh);
        let _ = fresh.into_parts();
        self.file.get_ref().set_len(offset)?;
        self.file.get_mut().seek(SeekFrom::Start(offset))?;
        self.file.get_ref().sync_data()?;
        Ok(())
    }

    /// Closes the segment and opens the next one. Returns the last LSN
    /// written before the roll (`first - 1` when nothing was written yet).
    pub(crate) fn roll(&mut self) -> Result<u64> {
        let last = self.next_lsn - 1;
        if self.next_lsn == self.first_lsn {
            return Ok(last); // empty segment: nothing to roll
        }
        let next = WalWriter::create(&self.dir, self.next_lsn)?;
        *self = next;
        Ok(last)
    }
}

/// Deletes segments whose every record has LSN <= `flushed_lsn`, never the open one.
pub(crate) fn delete_flushed_segments(
    dir: &Path,
    flushed_lsn: u64,
    open_first: u64,
) -> Result<u64> {
    let segments = list_segments(dir)?;
    let mut deleted = 0;
    for (i, (first, path)) in segments.iter().enumerate() {
        if *first >= open_first {
            break;
        }
        let next_first = segments.get(i + 1).map(|(f, _)| *f).unwrap_or(open_first);
        if next_first.saturating_sub(1) <= flushed_lsn {
            std::fs::remove_file(path).map_err(|e| Error::io(path, e))?;
            deleted += 1;
        }
    }
    if deleted > 0 {
        sync_dir(dir)?;
    }
    Ok(deleted)
}

/// A request to the WAL thread.
pub(crate) enum WalRequest {
    /// Append one batch; answered with its LSN once durable and buffered.
    Append {
        table: Table,
        payload: Vec<u8>,
        batch: RecordBatch,
        bytes: usize,
        reply: oneshot::Sender<Result<u64>>,
    },
    /// Roll to a new segment; answered with the last LSN before the roll and
    /// the first LSN of the new open segment.
    Roll {
        reply: oneshot::Sender<Result<(u64, u64)>>,
    },
}

/// A durable record handed to the buffers.
pub(crate) struct Durable {
    pub lsn: u64,
    pub table: Table,
    pub batch: RecordBatch,
    pub bytes: usize,
}

/// Most bytes written in one group commit.
const GROUP_BYTES: usize = 32 << 20;

/// Runs the WAL thread until every sender is gone.
pub(crate) fn run_wal_thread(
    mut writer: WalWriter,
    mut rx: mpsc::Receiver<WalRequest>,
    mut on_durable: impl FnMut(Vec<Durable>),
    mut on_sync: impl FnMut(std::time::Duration, usize),
) {
    let mut pending: Vec<WalRequest> = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        pending.push(first);
        let mut bytes = 0usize;
        while bytes < GROUP_BYTES {
            match rx.try_recv() {
                Ok(req) => {
                    if let WalRequest::Append { payload, .. } = &req {
                        bytes += payload.len();
                    }
                    pending.push(req);
                }
                Err(_) => break,
            }
        }
        // Process in arrival order: appends up to a roll form one group.
        let mut group: Vec<WalRequest> = Vec::new();
        for req in pending.drain(..) {
            match req {
                WalRequest::Roll { reply } => {
                    commit(&mut writer, &mut group, &mut on_durable, &mut on_sync);
                    let res = writer.roll().map(|last| (last, writer.first_lsn()));
                    let _ = reply.send(res);
                }
                append => group.push(append),
            }
        }
        commit(&mut writer, &mut group, &mut on_durable, &mut on_sync);
    }
    // Senders gone: make sure everything is on disk (it already is: each group
    // was synced) and close the file.
    let _ = writer.file.flush();
}

fn commit(
    writer: &mut WalWriter,
    group: &mut Vec<WalRequest>,
    on_durable: &mut impl FnMut(Vec<Durable>),
    on_sync: &mut impl FnMut(std::time::Duration, usize),
) {
    if group.is_empty() {
        return;
    }
    let items: Vec<(Table, &[u8])> = group
        .iter()
        .filter_map(|r| match r {
            WalRequest::Append { table, payload, .. } => Some((*table, payload.as_slice())),
            WalRequest::Roll { .. } => None,
        })
        .collect();
    let started = std::time::Instant::now();
    let result = writer.append_group(&items);
    on_sync(started.elapsed(), items.len());
    drop(items);
    match result {
        Ok(first_lsn) => {
            let mut durable = Vec::with_capacity(group.len());
            let mut replies = Vec::with_capacity(group.len());
            for (i, req) in group.drain(..).enumerate() {
                if let WalRequest::Append {
                    table,
                    batch,
                    bytes,
                    reply,
                    ..
                } = req
                {
                    let lsn = first_lsn + i as u64;
                    durable.push(Durable {
                        lsn,
                        table,
                        batch,
                        bytes,
                    });
                    replies.push((reply, lsn));
                }
            }
            on_durable(durable);
            for (reply, lsn) in replies {
                let _ = reply.send(Ok(lsn));
            }
        }
        Err(e) => {
            let msg = e.to_string();
            for req in group.drain(..) {
                if let WalRequest::Append { reply, .. } = req {
                    let err = match &e {
                        Error::DiskFull { path, retry_after } => Error::DiskFull {
                            path: path.clone(),
                            retry_after: *retry_after,
                        },
                        _ => Error::Internal(format!("WAL write failed: {msg}")),
                    };
                    let _ = reply.send(Err(err));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::{LogRecord, LogsBuilder, Origin};

    fn log_batch(n: usize) -> RecordBatch {
        let mut b = LogsBuilder::new();
        for i in 0..n {
            b.append(
                &Origin {
                    service_name: "svc",
                    ..Default::default()
                },
                &LogRecord {
                    time_ns: i as i64,
                    observed_time_ns: i as i64,
                    body: Some(format!("line {i}").into()),
                    ..Default::default()
                },
            );
        }
        b.finish()
    }

    #[test]
    fn append_replay_and_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("wal");
        let q = dir.path().join("quarantine");
        let mut w = WalWriter::create(&wal, 1).unwrap();
        let p1 = encode(&log_batch(3)).unwrap();
        let p2 = encode(&log_batch(5)).unwrap();
        assert_eq!(
            w.append_group(&[(Table::Logs, &p1), (Table::Logs, &p2)])
                .unwrap(),
            1
        );
        let (last, next) = (w.roll().unwrap(), w.first_lsn());
        assert_eq!((last, next), (2, 3));
        assert_eq!(w.append_group(&[(Table::Logs, &p1)]).unwrap(), 3);
        drop(w);

        // Tear the last record in half.
        let seg = segment_path(&wal, 3);
        let len = std::fs::metadata(&seg).unwrap().len();
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        f.set_len(len - 10).unwrap();

        let mut seen = Vec::new();
        let stats = replay(&wal, &q, 1, true, |lsn, t, b| {
            seen.push((lsn, t, b.num_rows()))
        })
        .unwrap();
        assert_eq!(seen, vec![(2, Table::Logs, 5)]);
        assert_eq!(stats.skipped, 1);
        assert_eq!(stats.truncated_segments, 1);
        assert_eq!(stats.next_lsn, 3);
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), MAGIC.len() as u64);
        assert_eq!(std::fs::read_dir(&q).unwrap().count(), 1);

        // A second replay finds a clean log.
        let stats = replay(&wal, &q, 0, true, |_, _, _| {}).unwrap();
        assert_eq!((stats.replayed, stats.truncated_segments), (2, 0));

        assert_eq!(delete_flushed_segments(&wal, 2, 3).unwrap(), 1);
        assert_eq!(list_segments(&wal).unwrap().len(), 1);
    }

    #[test]
    fn bit_flip_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("wal");
        let mut w = WalWriter::create(&wal, 1).unwrap();
        let p = encode(&log_batch(2)).unwrap();
        w.append_group(&[(Table::Logs, &p), (Table::Logs, &p)])
            .unwrap();
        drop(w);
        let seg = segment_path(&wal, 1);
        let mut data = std::fs::read(&seg).unwrap();
        let last = data.len() - 20;
        data[last] ^= 0x40;
        std::fs::write(&seg, &data).unwrap();
        let mut n = 0;
        let stats = replay(&wal, &dir.path().join("q"), 0, true, |_, _, _| n += 1).unwrap();
        assert_eq!((n, stats.truncated_segments), (1, 1));
    }
}
