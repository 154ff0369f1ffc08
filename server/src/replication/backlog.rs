//! The replication stream and its backlog: the bytes sent to replicas, numbered by offset, kept long enough that
//! a replica reconnecting after a short break continues where it left off (PSYNC) instead of syncing in full.
//!
//! Offsets count bytes from the start of a replication history, as Redis counts them: `offset` is the number of
//! the last byte written (`master_repl_offset`), a replica at offset `o` has every byte up to `o` and asks for
//! `o + 1` next. A history is named by its replication id; after a promotion the node starts a new history but
//! remembers the old id and where it ended (`replid2`, `second_offset`), so its former siblings, which share
//! that past, can continue from it (Redis's PSYNC2 `shiftReplicationId`).
//!
//! Storage is Redis 7's shared replication buffer in miniature: a queue of fixed-size blocks holding the bytes
//! from `first` to `offset`. Blocks leave the front once what is left still covers `repl-backlog-size` bytes
//! *and* no replica still has to send them. So a replica that falls behind (a full sync in progress, a slow
//! link) pins what it has not sent, the stream is copied in once however many replicas there are, and a replica
//! whose lag passes the `client-output-buffer-limit` for replicas is dropped (it reconnects and syncs again)
//! instead of holding memory without bound.
//!
//! One mutex covers it all; a writer holds it for a memcpy of its effects, a sender for a copy of at most
//! [`READ_CHUNK`] bytes. Senders waiting for data are woken after the writer has released the lock.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;
use smallvec::SmallVec;
use tokio::sync::Notify;

use crate::keyspace::feed::{encode_command, EffectLog, EffectRun};

/// Bytes per block of the stream.
pub const BLOCK: usize = 64 * 1024;
/// The most a sender copies out per lock.
pub const READ_CHUNK: usize = 256 * 1024;
/// A replication id is 40 hex digits.
pub const REPLID_LEN: usize = 40;
/// The id Redis shows for "no second history".
pub const NO_REPLID: &str = "0000000000000000000000000000000000000000";

/// A new random replication id.
pub fn new_replid() -> String {
    (0..REPLID_LEN)
        .map(|_| char::from(b"0123456789abcdef"[rand::random::<u8>() as usize % 16]))
        .collect()
}

/// One registered sender (a replica link): where it is, and whether it waits to be woken.
struct Reader {
    id: u64,
    /// The last byte it has taken.
    sent: u64,
    notify: Arc<Notify>,
    waiting: bool,
    /// Dropped for exceeding the output limit: it no longer pins the backlog.
    dropped: bool,
}

struct Inner {
    replid: String,
    replid2: String,
    /// The last offset of the history named `replid2`, plus one; -1 when there is none.
    second_offset: i64,
    /// The last byte written.
    offset: u64,
    /// Whether a backlog exists (`repl_backlog_active`): created when the first replica attaches, or when this
    /// node becomes a replica.
    active: bool,
    /// The first byte held (`repl_backlog_first_byte_offset`); `offset + 1` when nothing is held.
    first: u64,
    /// The bytes from `first` on: every block but the last holds exactly [`BLOCK`] bytes.
    blocks: VecDeque<Vec<u8>>,
    spare: Option<Vec<u8>>,
    /// `repl-backlog-size`.
    size: u64,
    /// `client-output-buffer-limit replica` hard limit (0 = none): the most a reader may lag.
    reader_limit: u64,
    /// The database the stream is in after its last byte (None: no SELECT yet).
    stream_db: Option<u32>,
    readers: Vec<Reader>,
    waiting: usize,
    next_reader: u64,
}

/// What a sender got from [`Backlog::read`].
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// Bytes were appended to the caller's buffer.
    Data,
    /// Nothing new; the reader's `Notify` fires when there is.
    Empty,
    /// The reader lagged past the output limit, or is unknown: close the link.
    Dropped,
}

/// How a PSYNC request is answered.
#[derive(Debug, PartialEq, Eq)]
pub enum Psync {
    /// `+CONTINUE <replid>`: the reader is registered at the requested offset.
    Continue { reader: u64, replid: String },
    /// `+FULLRESYNC <replid> <offset>`: the reader is registered at `offset`; the snapshot that precedes the
    /// stream must leave the replica in database `stream_db` (the stream's database at `offset`).
    Full {
        reader: u64,
        replid: String,
        offset: u64,
        stream_db: Option<u32>,
    },
}

/// The replication ids and offsets, for INFO and ROLE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BacklogInfo {
    pub replid: String,
    pub replid2: String,
    pub second_offset: i64,
    pub offset: u64,
    pub active: bool,
    pub size: u64,
    pub first: u64,
    pub histlen: u64,
    /// Bytes held in blocks.
    pub memory: u64,
}

/// The replication stream of this node.
pub struct Backlog {
    inner: Mutex<Inner>,
}

impl Backlog {
    pub fn new(size: u64, reader_limit: u64) -> Backlog {
        Backlog {
            inner: Mutex::new(Inner {
                replid: new_replid(),
                replid2: NO_REPLID.to_owned(),
                second_offset: -1,
                offset: 0,
                active: false,
                first: 1,
                blocks: VecDeque::new(),
                spare: None,
                size: size.max(1),
                reader_limit,
                stream_db: None,
                readers: Vec::new(),
                waiting: 0,
                next_reader: 1,
            }),
        }
    }

    pub fn info(&self) -> BacklogInfo {
        let g = self.inner.lock();
        BacklogInfo {
            replid: g.replid.clone(),
            replid2: g.replid2.clone(),
            second_offset: g.second_offset,
            offset: g.offset,
            active: g.active,
            size: g.size,
            first: if g.active { g.first } else { 0 },
            histlen: g.offset + 1 - g.first,
            memory: (g.blocks.len() * BLOCK) as u64,
        }
    }

    /// The last byte written.
    pub fn offset(&self) -> u64 {
        self.inner.lock().offset
    }

    pub fn is_active(&self) -> bool {
        self.inner.lock().active
    }

    /// Applies `repl-backlog-size` and the replica output limit.
    pub fn configure(&self, size: u64, reader_limit: u64) {
        let mut g = self.inner.lock();
        g.size = size.max(1);
        g.reader_limit = reader_limit;
        g.trim();
    }

    /// A primary's first replica: creates the backlog, starting a new history (Redis changes the replication
    /// id here so that no replica of an older history mistakes this one for its own). Returns whether it was
    /// created now.
    pub fn activate_as_primary(&self) -> bool {
        let mut g = self.inner.lock();
        if g.active {
            return false;
        }
        g.active = true;
        g.replid = new_replid();
        g.replid2 = NO_REPLID.to_owned();
        g.second_offset = -1;
        g.first = g.offset + 1;
        g.blocks.clear();
        true
    }

    /// A replica starts over at its primary's `offset` of history `replid` (after a full sync).
    pub fn reset_to(&self, replid: &str, offset: u64, stream_db: Option<u32>) {
        let mut g = self.inner.lock();
        g.active = true;
        g.replid = replid.to_owned();
        g.replid2 = NO_REPLID.to_owned();
        g.second_offset = -1;
        g.offset = offset;
        g.first = offset + 1;
        g.blocks.clear();
        g.stream_db = stream_db;
        // Readers were of the old history; their links are closed by the caller.
        for r in g.readers.iter_mut() {
            r.dropped = true;
        }
        let wake = g.take_wakers(true);
        drop(g);
        wake_all(wake);
    }

    /// Starts a new history that continues this one (promotion, or a primary that switched ids under a
    /// replica's feet): the old id becomes `replid2`, valid up to the current offset.
    pub fn shift_replid(&self, new_id: Option<&str>) -> String {
        let mut g = self.inner.lock();
        g.replid2 = std::mem::replace(&mut g.replid, new_id.map_or_else(new_replid, str::to_owned));
        g.second_offset = g.offset as i64 + 1;
        if !g.active {
            g.active = true;
            g.first = g.offset + 1;
        }
        g.replid.clone()
    }

    /// Answers `PSYNC replid psync_offset` (`psync_offset` is the next byte the replica wants, -1 for none) and
    /// registers a reader for the link that will send the stream.
    pub fn psync(&self, replid: &str, psync_offset: i64, notify: Arc<Notify>) -> Psync {
        let mut g = self.inner.lock();
        let id = g.next_reader;
        g.next_reader += 1;
        if let Some(from) = g.continuation(replid, psync_offset) {
            g.readers.push(Reader {
                id,
                sent: from - 1,
                notify,
                waiting: false,
                dropped: false,
            });
            return Psync::Continue {
                reader: id,
                replid: g.replid.clone(),
            };
        }
        let offset = g.offset;
        g.readers.push(Reader {
            id,
            sent: offset,
            notify,
            waiting: false,
            dropped: false,
        });
        Psync::Full {
            reader: id,
            replid: g.replid.clone(),
            offset,
            stream_db: g.stream_db,
        }
    }

    /// Copies up to [`READ_CHUNK`] bytes the reader has not taken yet to `out`.
    pub fn read(&self, reader: u64, out: &mut Vec<u8>) -> Read {
        let mut g = self.inner.lock();
        let (offset, first) = (g.offset, g.first);
        let Some(i) = g.readers.iter().position(|r| r.id == reader) else {
            return Read::Dropped;
        };
        if g.readers[i].dropped {
            return Read::Dropped;
        }
        let sent = g.readers[i].sent;
        if sent >= offset {
            if !g.readers[i].waiting {
                g.readers[i].waiting = true;
                g.waiting += 1;
            }
            return Read::Empty;
        }
        let from = sent + 1;
        if from < first {
            // Cannot happen: a live reader pins its bytes. Treat it as a broken link rather than send a gap.
            g.readers[i].dropped = true;
            return Read::Dropped;
        }
        let want = ((offset - sent) as usize).min(READ_CHUNK);
        let mut pos = (from - first) as usize;
        let mut left = want;
        while left > 0 {
            let (b, o) = (pos / BLOCK, pos % BLOCK);
            let Some(block) = g.blocks.get(b) else { break };
            let n = (block.len() - o).min(left);
            out.extend_from_slice(&block[o..o + n]);
            pos += n;
            left -= n;
        }
        g.readers[i].sent = sent + (want - left) as u64;
        // Blocks held only for this reader can go once it has sent them.
        if g.offset + 1 - g.first > g.size + BLOCK as u64 {
            g.trim();
        }
        Read::Data
    }

    /// Forgets a reader (its link closed).
    pub fn unregister(&self, reader: u64) {
        let mut g = self.inner.lock();
        if let Some(i) = g.readers.iter().position(|r| r.id == reader) {
            let r = g.readers.swap_remove(i);
            if r.waiting {
                g.waiting -= 1;
            }
            g.trim();
        }
    }

    /// Drops every reader (their links are to be closed): a new history they cannot follow.
    pub fn drop_readers(&self) {
        let mut g = self.inner.lock();
        for r in g.readers.iter_mut() {
            r.dropped = true;
        }
        let wake = g.take_wakers(true);
        drop(g);
        wake_all(wake);
    }

    /// How many bytes the reader has not taken yet.
    pub fn lag(&self, reader: u64) -> u64 {
        let g = self.inner.lock();
        g.readers
            .iter()
            .find(|r| r.id == reader)
            .map_or(0, |r| g.offset.saturating_sub(r.sent))
    }

    /// A replica appends what it applied from its primary, byte for byte (so its offsets are the primary's),
    /// and the stream's database after it.
    pub fn append_raw(&self, bytes: &[u8], stream_db: Option<u32>) -> u64 {
        let mut g = self.inner.lock();
        g.write(bytes);
        if stream_db.is_some() {
            g.stream_db = stream_db;
        }
        let end = g.offset;
        let wake = g.take_wakers(false);
        drop(g);
        wake_all(wake);
        end
    }

    /// Appends one command of this node's own (PING, REPLCONF GETACK) to the stream.
    pub fn append_command(&self, args: &[&[u8]]) -> u64 {
        let mut buf = Vec::with_capacity(48);
        encode_command(&mut buf, args);
        self.append(
            &buf,
            &[EffectRun {
                db: None,
                len: buf.len(),
            }],
        )
    }

    /// Sets the stream's database (a replica, at the end of a full sync).
    pub fn set_stream_db(&self, db: Option<u32>) {
        self.inner.lock().stream_db = db;
    }

    /// The stream's database after its last byte.
    pub fn stream_db(&self) -> Option<u32> {
        self.inner.lock().stream_db
    }
}

impl EffectLog for Backlog {
    fn append(&self, buf: &[u8], runs: &[EffectRun]) -> u64 {
        let mut g = self.inner.lock();
        let mut at = 0usize;
        for run in runs {
            if let Some(db) = run.db {
                if g.stream_db != Some(db) {
                    let mut sel = [0u8; 24];
                    let db_text = shoal_protocol::reply::fmt_i64(&mut sel, i64::from(db));
                    let mut select = Vec::with_capacity(32);
                    encode_command(&mut select, &[b"SELECT", db_text]);
                    g.write(&select);
                    g.stream_db = Some(db);
                }
            }
            let end = (at + run.len).min(buf.len());
            g.write(&buf[at..end]);
            at = end;
        }
        let end = g.offset;
        let wake = g.take_wakers(false);
        drop(g);
        wake_all(wake);
        end
    }
}

type Wakers = SmallVec<[Arc<Notify>; 4]>;

fn wake_all(wakers: Wakers) {
    for w in wakers {
        w.notify_one();
    }
}

impl Inner {
    /// The first byte to send to a replica asking to continue `replid` from `psync_offset`, if this backlog
    /// can (Redis's `masterTryPartialResynchronization`).
    fn continuation(&self, replid: &str, psync_offset: i64) -> Option<u64> {
        if !self.active || psync_offset < 1 {
            return None;
        }
        let same_history = replid.eq_ignore_ascii_case(&self.replid);
        let previous_history = replid.eq_ignore_ascii_case(&self.replid2) && psync_offset <= self.second_offset;
        if !same_history && !previous_history {
            return None;
        }
        let from = psync_offset as u64;
        (from >= self.first && from <= self.offset + 1).then_some(from)
    }

    fn write(&mut self, mut bytes: &[u8]) {
        if !self.active {
            // No backlog: the offset still counts (a replica's applied offset, an idle primary's).
            self.offset += bytes.len() as u64;
            self.first = self.offset + 1;
            return;
        }
        let mut new_block = false;
        while !bytes.is_empty() {
            if self.blocks.back().is_none_or(|b| b.len() == BLOCK) {
                let block = self.spare.take().unwrap_or_else(|| Vec::with_capacity(BLOCK));
                self.blocks.push_back(block);
                new_block = true;
            }
            let Some(last) = self.blocks.back_mut() else { break };
            let n = (BLOCK - last.len()).min(bytes.len());
            last.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            self.offset += n as u64;
        }
        if new_block {
            self.trim();
        }
    }

    /// Drops front blocks that are both beyond `repl-backlog-size` and sent by every reader, and readers whose
    /// lag passed the output limit.
    fn trim(&mut self) {
        if self.reader_limit > 0 {
            let (offset, limit) = (self.offset, self.reader_limit);
            let mut dropped = false;
            for r in self.readers.iter_mut().filter(|r| !r.dropped) {
                if offset - r.sent > limit {
                    r.dropped = true;
                    dropped = true;
                }
            }
            if dropped {
                let wake = self.take_wakers(true);
                wake_all(wake);
            }
        }
        let pinned = self
            .readers
            .iter()
            .filter(|r| !r.dropped)
            .map(|r| r.sent + 1)
            .min()
            .unwrap_or(u64::MAX);
        while self.blocks.len() > 1 {
            let held = self.offset + 1 - self.first;
            let front_end = self.first + BLOCK as u64;
            if held - (BLOCK as u64) < self.size || front_end > pinned {
                break;
            }
            if let Some(mut b) = self.blocks.pop_front() {
                b.clear();
                if self.spare.is_none() {
                    self.spare = Some(b);
                }
            }
            self.first = front_end;
        }
    }

    /// The notifiers of waiting readers (all readers, with `everyone`), marking them no longer waiting.
    fn take_wakers(&mut self, everyone: bool) -> Wakers {
        let mut out = Wakers::new();
        if self.waiting == 0 && !everyone {
            return out;
        }
        for r in self.readers.iter_mut() {
            if r.waiting || everyone {
                if r.waiting {
                    r.waiting = false;
                }
                out.push(r.notify.clone());
            }
        }
        self.waiting = 0;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(db: Option<u32>, len: usize) -> [EffectRun; 1] {
        [EffectRun { db, len }]
    }

    fn read_all(b: &Backlog, reader: u64) -> Vec<u8> {
        let mut out = Vec::new();
        while b.read(reader, &mut out) == Read::Data {}
        out
    }

    #[test]
    fn offsets_count_bytes_and_a_select_precedes_a_change_of_database() {
        let b = Backlog::new(1024, 0);
        assert!(b.activate_as_primary());
        let n = Arc::new(Notify::new());
        let Psync::Full { reader, offset, .. } = b.psync("?", -1, n) else {
            panic!("expected a full sync")
        };
        assert_eq!(offset, 0);
        assert_eq!(b.append(b"abc", &run(Some(0), 3)), 3 + 23);
        assert_eq!(b.append(b"de", &run(Some(0), 2)), 28);
        assert_eq!(b.append(b"f", &run(None, 1)), 29);
        assert_eq!(b.append(b"g", &run(Some(3), 1)), 29 + 23 + 1);
        let got = read_all(&b, reader);
        assert_eq!(
            got,
            b"*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\nabcdef*2\r\n$6\r\nSELECT\r\n$1\r\n3\r\ng".as_slice()
        );
        assert_eq!(b.info().offset, got.len() as u64);
    }

    #[test]
    fn the_backlog_keeps_at_least_its_size_and_drops_older_blocks() {
        let b = Backlog::new(100_000, 0);
        b.activate_as_primary();
        let chunk = vec![b'x'; 10_000];
        for _ in 0..100 {
            b.append(&chunk, &run(None, chunk.len()));
        }
        let info = b.info();
        assert_eq!(info.offset, 1_000_000);
        assert!(info.histlen >= 100_000, "{info:?}");
        assert!(info.histlen < 100_000 + 2 * BLOCK as u64, "{info:?}");
        assert_eq!(info.first + info.histlen, info.offset + 1);
    }

    #[test]
    fn psync_continues_within_the_backlog_and_falls_back_to_a_full_sync_outside_it() {
        let b = Backlog::new(100_000, 0);
        b.activate_as_primary();
        let id = b.info().replid;
        let chunk = vec![b'y'; 10_000];
        for _ in 0..50 {
            b.append(&chunk, &run(None, chunk.len()));
        }
        let first = b.info().first as i64;
        let n = Arc::new(Notify::new());
        assert!(matches!(b.psync(&id, 500_001, n.clone()), Psync::Continue { .. }));
        assert!(matches!(
            b.psync(&id, 500_000 - 1 + 1, n.clone()),
            Psync::Continue { .. }
        ));
        assert!(matches!(b.psync(&id, first - 1, n.clone()), Psync::Full { .. }));
        assert!(matches!(b.psync(&id, 500_002, n.clone()), Psync::Full { .. }));
        assert!(matches!(b.psync(&new_replid(), 500_001, n.clone()), Psync::Full { .. }));
        assert!(matches!(b.psync("?", -1, n), Psync::Full { .. }));
    }

    #[test]
    fn a_continuing_reader_gets_exactly_the_bytes_after_its_offset() {
        let b = Backlog::new(1 << 20, 0);
        b.activate_as_primary();
        let id = b.info().replid;
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        b.append(&data, &run(None, data.len()));
        let Psync::Continue { reader, .. } = b.psync(&id, 150_001, Arc::new(Notify::new())) else {
            panic!("expected a continuation")
        };
        assert_eq!(read_all(&b, reader), data[150_000..].to_vec());
    }

    #[test]
    fn a_reader_pins_what_it_has_not_sent_until_it_lags_past_the_limit() {
        let b = Backlog::new(BLOCK as u64, 10 * BLOCK as u64);
        b.activate_as_primary();
        let Psync::Full { reader, .. } = b.psync("?", -1, Arc::new(Notify::new())) else {
            panic!()
        };
        let chunk = vec![b'z'; BLOCK];
        for _ in 0..8 {
            b.append(&chunk, &run(None, chunk.len()));
        }
        // Far beyond the backlog size, but the reader has not sent it: all of it is kept.
        assert_eq!(b.info().first, 1);
        assert_eq!(b.lag(reader), 8 * BLOCK as u64);
        let mut out = Vec::new();
        assert_eq!(b.read(reader, &mut out), Read::Data);
        assert_eq!(out.len(), READ_CHUNK);
        // 12 blocks written, 4 taken: a lag of 8 blocks is still within the limit of 10...
        for _ in 0..4 {
            b.append(&chunk, &run(None, chunk.len()));
        }
        assert_eq!(b.lag(reader), 8 * BLOCK as u64);
        // ...11 is past it.
        for _ in 0..3 {
            b.append(&chunk, &run(None, chunk.len()));
        }
        assert_eq!(b.read(reader, &mut out), Read::Dropped);
        // Once dropped it pins nothing.
        b.append(&chunk, &run(None, chunk.len()));
        assert!(b.info().histlen <= 2 * BLOCK as u64 + 1);
    }

    #[test]
    fn promotion_keeps_the_old_history_continuable() {
        let b = Backlog::new(1 << 20, 0);
        b.reset_to("a".repeat(40).as_str(), 1000, Some(0));
        b.append_raw(b"0123456789", Some(0));
        let old = b.info().replid;
        let new = b.shift_replid(None);
        assert_ne!(old, new);
        let info = b.info();
        assert_eq!((info.replid2.as_str(), info.second_offset), (old.as_str(), 1011));
        b.append(b"abc", &run(Some(0), 3));
        let n = Arc::new(Notify::new());
        // A sibling at 1005 of the old history continues, and hears the new id. (Byte 1001 is "0".)
        match b.psync(&old, 1006, n.clone()) {
            Psync::Continue { reader, replid } => {
                assert_eq!(replid, new);
                assert_eq!(read_all(&b, reader), b"56789abc".to_vec());
            }
            other => panic!("{other:?}"),
        }
        // The old history ends at 1010: no one can claim it went further.
        assert!(matches!(b.psync(&old, 1012, n.clone()), Psync::Full { .. }));
        assert!(matches!(b.psync(&new, 1014, n), Psync::Continue { .. }));
    }

    #[test]
    fn a_waiting_reader_is_woken_by_an_append() {
        let b = Backlog::new(1 << 20, 0);
        b.activate_as_primary();
        let n = Arc::new(Notify::new());
        let Psync::Full { reader, .. } = b.psync("?", -1, n.clone()) else {
            panic!()
        };
        let mut out = Vec::new();
        assert_eq!(b.read(reader, &mut out), Read::Empty);
        b.append(b"x", &run(None, 1));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(1), n.notified())
                .await
                .expect("woken");
        });
    }
}
