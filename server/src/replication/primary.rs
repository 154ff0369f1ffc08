//! Serving a replica: the PSYNC answer, the full sync, the stream, and the replica's acknowledgements.
//!
//! A replica arrives as an ordinary client and says `REPLCONF listening-port <port>`, `REPLCONF capa ...`
//! (Shoal replicas add `capa shoal`), then `PSYNC <replid> <offset>`. The answer is decided under the backlog
//! lock, together with registering the link as a reader of the stream, so nothing written meanwhile can fall
//! between the answer and the stream:
//!
//! * `+CONTINUE <replid>` when the backlog holds the history the replica names from the offset it asks for:
//!   the stream follows from there.
//! * `+FULLRESYNC <replid> <offset>` otherwise. A snapshot follows, then the stream from `offset`.
//!
//! The full sync does not stop the world and does not copy the data. `offset` is noted first (the change feed is
//! on by then, so every change after it is in the stream), then the shards are walked one at a time: lock, encode
//! up to [`SNAPSHOT_CHUNK`] bytes of entries as `SET key value [PXAT ms]` (behind a `SELECT db`), unlock, send
//! (the socket's backpressure paces the walk). Writes go on meanwhile and their effects queue in the stream,
//! pinned for this replica (bounded by `client-output-buffer-limit replica`; past it the replica is dropped and
//! starts over). A change made between `offset` and the walk's visit of its shard reaches the replica twice,
//! once in the snapshot and once in the stream, and since both state the key's whole value the second is
//! harmless. The table walk visits every key present for the whole walk (`SlotTable::scan`'s guarantee);
//! anything else changed after `offset`, so the stream carries it. The snapshot is not part of the offsets: it
//! ends with `REPLCONF SNAPSHOT-END <db>`, naming the stream's database at `offset` (Redis puts the same in its
//! RDB's `repl-stream-db` field). A SWAPDB during the walk cannot be patched up that way (swapping twice is not
//! swapping once), so the sync starts over.
//!
//! Redis replicas cannot read a Shoal snapshot (they expect an RDB file), so PSYNC without `capa shoal` is
//! refused.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use shoal_protocol::{RequestLimits, RequestParser};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::backlog::{Psync, Read};
use super::{ReplicaLink, ReplicaState, Replication};
use crate::client::{Action, ClientHandle, ClientKind};
use crate::cmd::Ctx;
use crate::error::{self, CmdError, CmdResult};
use crate::keyspace::access::unix_ms;
use crate::keyspace::feed::{encode_command, encode_set};
use crate::keyspace::{Shard, SHARDS};
use crate::server::Server;

/// A snapshot is sent in pieces of about this many bytes: the most it holds in memory per replica, and the
/// most encoded under one shard lock.
pub const SNAPSHOT_CHUNK: usize = 1024 * 1024;
/// Entries a table scan step visits before the chunk size is checked again.
const SCAN_STEP: usize = 64;
/// How often an idle link checks whether it should close (killed, server stopping, replica silent).
const IDLE_CHECK: Duration = Duration::from_secs(1);
/// The marker command that ends a snapshot.
pub const SNAPSHOT_END: &[u8] = b"SNAPSHOT-END";
/// The capability a Shoal replica announces: it reads a Shoal snapshot.
pub const CAPA_SHOAL: &[u8] = b"shoal";

/// What a replica said in REPLCONF before PSYNC.
#[derive(Debug, Default, Clone)]
pub struct Handshake {
    pub listening_port: Option<u16>,
    pub ip_address: Option<String>,
    pub shoal: bool,
}

/// A full sync to send before the stream.
#[derive(Debug, Clone, Copy)]
pub struct FullSync {
    /// The stream's database at the sync's offset (None: the stream has not selected one yet).
    pub stream_db: Option<u32>,
    /// SWAPDBs so far: one more during the walk restarts the sync.
    pub swaps: u64,
}

/// What the connection hands to the link once PSYNC is answered.
pub struct LinkStart {
    pub reader: u64,
    pub notify: Arc<Notify>,
    pub full: Option<FullSync>,
    pub ip: String,
    pub port: u16,
}

/// PSYNC replid offset / SYNC: answers, and arranges for the connection to become a replica link.
pub fn psync(ctx: &mut Ctx<'_>, replid: &[u8], psync_offset: i64, header: bool) -> CmdResult {
    let srv = ctx.srv;
    let repl = &srv.repl;
    if repl.is_replica() && repl.link_state() != Some(super::LinkState::Connected) {
        return Err(CmdError::Static(error::NOMASTERLINK));
    }
    let hs = ctx.client.repl_handshake.take().unwrap_or_default();
    if !hs.shoal {
        return Err(CmdError::msg(
            "ERR Shoal replicates only to Shoal replicas (REPLCONF capa shoal): its full sync is not an RDB file",
        ));
    }
    // Every change from now on is in the stream; the sync's offset is noted after this.
    repl.start_stream(srv);
    let swaps = srv.keyspace.feed().swaps();
    let notify = Arc::new(Notify::new());
    let replid = String::from_utf8_lossy(replid).into_owned();
    let (reader, full) = match repl.backlog.psync(&replid, psync_offset, notify.clone()) {
        Psync::Continue { reader, replid } => {
            repl.stats.sync_partial_ok.fetch_add(1, Ordering::Relaxed);
            ctx.out.simple(format!("CONTINUE {replid}").as_bytes());
            (reader, None)
        }
        Psync::Full {
            reader,
            replid: id,
            offset,
            stream_db,
        } => {
            repl.stats.sync_full.fetch_add(1, Ordering::Relaxed);
            if replid != "?" {
                repl.stats.sync_partial_err.fetch_add(1, Ordering::Relaxed);
            }
            if header {
                ctx.out.simple(format!("FULLRESYNC {id} {offset}").as_bytes());
            }
            (reader, Some(FullSync { stream_db, swaps }))
        }
    };
    let peer = ctx.client.handle.addr;
    ctx.client.repl_link = Some(Box::new(LinkStart {
        reader,
        notify,
        full,
        ip: hs.ip_address.unwrap_or_else(|| peer.ip().to_canonical().to_string()),
        port: hs.listening_port.unwrap_or(peer.port()),
    }));
    ctx.client.action = Some(Action::ReplicaLink);
    Ok(())
}

/// Serves a replica on `stream` until the link closes.
pub async fn serve(srv: Arc<Server>, stream: TcpStream, handle: Arc<ClientHandle>, start: Box<LinkStart>) {
    handle.set_kind(ClientKind::Replica);
    let state = if start.full.is_some() {
        ReplicaState::WaitBgsave
    } else {
        ReplicaState::Online
    };
    let link = Arc::new(Replication::new_link(
        handle.clone(),
        start.ip.clone(),
        start.port,
        state,
    ));
    srv.repl.add_link(link.clone());
    tracing::info!(
        "replica {}:{} attached ({})",
        link.ip,
        link.port,
        if start.full.is_some() {
            "full sync"
        } else {
            "partial resync"
        }
    );
    let (rd, mut wr) = stream.into_split();
    let mut acks = tokio::spawn(read_acks(srv.clone(), link.clone(), rd));
    let why = send(&srv, &link, &mut wr, &start, &mut acks).await;
    tracing::info!("replica {}:{} link closed: {why}", link.ip, link.port);
    acks.abort();
    srv.repl.backlog.unregister(start.reader);
    srv.repl.remove_link(handle.id);
    let _ = wr.shutdown().await;
}

/// Sends the snapshot (if any), then the stream. Returns why it stopped.
async fn send(
    srv: &Server,
    link: &ReplicaLink,
    wr: &mut OwnedWriteHalf,
    start: &LinkStart,
    acks: &mut tokio::task::JoinHandle<()>,
) -> String {
    if let Some(full) = start.full {
        link.set_state(ReplicaState::SendBulk);
        let started = std::time::Instant::now();
        match send_snapshot(srv, wr, full).await {
            Ok(Some(bytes)) => tracing::info!(
                "snapshot of {bytes} bytes sent to replica {}:{} in {:?}",
                link.ip,
                link.port,
                started.elapsed()
            ),
            Ok(None) => return "SWAPDB during the full sync; the replica syncs again".into(),
            Err(e) => return format!("error during the full sync: {e}"),
        }
        link.set_state(ReplicaState::Online);
        srv.repl.refresh_good_replicas();
        // A PING right away: the replica's offset moves past the sync point, which is how the cluster tells a
        // synced replica from one still loading.
        srv.repl.ping_replicas(srv);
    }
    let mut buf = Vec::with_capacity(super::backlog::READ_CHUNK);
    loop {
        if link.handle.killed.load(Ordering::Relaxed) {
            return "killed".into();
        }
        if srv.is_shutting_down() {
            return "shutting down".into();
        }
        buf.clear();
        match srv.repl.backlog.read(start.reader, &mut buf) {
            Read::Data => {
                if let Err(e) = wr.write_all(&buf).await {
                    return format!("write error: {e}");
                }
                srv.repl
                    .stats
                    .output_bytes
                    .fetch_add(buf.len() as u64, Ordering::Relaxed);
            }
            Read::Dropped => {
                return "dropped (output buffer limit for replicas reached, or a new replication history)".into()
            }
            Read::Empty => {
                let timeout = Duration::from_secs(srv.config.read().repl_timeout.max(1) as u64);
                let now = unix_ms();
                if link.lag_secs(now) as u64 > timeout.as_secs() {
                    return "timeout: no acknowledgement from the replica".into();
                }
                tokio::select! {
                    _ = start.notify.notified() => {}
                    _ = &mut *acks => return "the replica closed the connection".into(),
                    _ = tokio::time::sleep(IDLE_CHECK) => {}
                }
            }
        }
    }
}

/// Streams the keyspace as `SELECT`/`SET` commands, then the end marker. `Ok(None)` if a SWAPDB happened
/// meanwhile. Returns the bytes sent.
async fn send_snapshot(srv: &Server, wr: &mut OwnedWriteHalf, full: FullSync) -> std::io::Result<Option<u64>> {
    let mut chunk = Vec::with_capacity(SNAPSHOT_CHUNK + SNAPSHOT_CHUNK / 4);
    let mut sent = 0u64;
    for (dbi, db) in srv.keyspace.iter().enumerate() {
        for shard in 0..SHARDS {
            let mut cursor = Some((0usize, 0u32));
            while let Some((local, from)) = cursor {
                chunk.clear();
                let now_ms = unix_ms();
                cursor = db.read_shard(shard, |s| encode_chunk(s, dbi, local, from, now_ms, &mut chunk));
                if !chunk.is_empty() {
                    wr.write_all(&chunk).await?;
                    sent += chunk.len() as u64;
                    srv.repl
                        .stats
                        .output_bytes
                        .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
                if srv.keyspace.feed().swaps() != full.swaps {
                    return Ok(None);
                }
            }
        }
        // Let other tasks of this worker run between databases too.
        tokio::task::yield_now().await;
    }
    chunk.clear();
    let db = full.stream_db.map_or_else(|| "-1".to_owned(), |d| d.to_string());
    encode_command(&mut chunk, &[b"REPLCONF", SNAPSHOT_END, db.as_bytes()]);
    wr.write_all(&chunk).await?;
    sent += chunk.len() as u64;
    Ok(Some(sent))
}

/// Encodes the live entries of `shard` from table `local`, hash position `from`, into `chunk` until it holds
/// about [`SNAPSHOT_CHUNK`] bytes (behind a `SELECT db`). Returns where to resume, or `None` when the shard is
/// done.
pub fn encode_chunk(
    shard: &Shard,
    db: usize,
    mut local: usize,
    mut from: u32,
    now_ms: i64,
    chunk: &mut Vec<u8>,
) -> Option<(usize, u32)> {
    let tables = shard.tables();
    let mut selected = false;
    while local < tables.len() {
        let t = &tables[local];
        if t.is_empty() {
            local += 1;
            from = 0;
            continue;
        }
        if !selected {
            encode_command(chunk, &[b"SELECT", db.to_string().as_bytes()]);
            selected = true;
        }
        let next = t.scan(from, SCAN_STEP, |e| {
            // Keys already expired are left out: the primary reports them absent, and will delete them.
            if e.expire_at().is_none_or(|at| at > now_ms) {
                encode_set(chunk, e);
            }
        });
        match next {
            Some(pos) => from = pos,
            None => {
                local += 1;
                from = 0;
            }
        }
        if chunk.len() >= SNAPSHOT_CHUNK {
            return (local < tables.len()).then_some((local, from));
        }
    }
    None
}

/// Reads the replica's `REPLCONF ACK <offset>` messages until it closes the connection.
async fn read_acks(srv: Arc<Server>, link: Arc<ReplicaLink>, mut rd: OwnedReadHalf) {
    let mut buf = BytesMut::with_capacity(4096);
    let mut parser = RequestParser::new();
    let limits = RequestLimits::default();
    loop {
        match rd.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        loop {
            match parser.parse(&buf, &limits) {
                Ok(Some(n)) => {
                    let req = parser.request(&buf);
                    if req.len() >= 3
                        && req.get(0).is_some_and(|a| a.eq_ignore_ascii_case(b"replconf"))
                        && req.get(1).is_some_and(|a| a.eq_ignore_ascii_case(b"ack"))
                    {
                        if let Some(off) = req.get(2).and_then(crate::num::parse_i64) {
                            srv.repl.ack(&link, off.max(0) as u64);
                        }
                    }
                    buf.advance(n);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        if buf.capacity() > 1 << 20 && buf.is_empty() {
            buf = BytesMut::with_capacity(4096);
        }
    }
}
