//! Following a primary: connect, handshake, full sync or continuation, then apply the stream.
//!
//! The link task connects (retrying with a bounded backoff, [`MIN_RETRY`] to [`MAX_RETRY`]), authenticates
//! with `masterauth` if set, sends `PING`, `REPLCONF listening-port`, `REPLCONF capa eof capa psync2 capa
//! shoal`, and `PSYNC <replid> <offset + 1>` naming the history it holds (its backlog's), or `PSYNC ? -1` when
//! it holds none.
//!
//! * `+FULLRESYNC <replid> <offset>`: the data is emptied, the snapshot applied until `REPLCONF SNAPSHOT-END
//!   <db>`, and the backlog restarts at `offset` in history `replid`; this node's own replicas, which followed
//!   the old history, are disconnected (they sync again).
//! * `+CONTINUE [<replid>]`: the stream goes on from the backlog's offset; a new id means the primary was
//!   promoted, and the old id is kept as `replid2` so this node's replicas can continue too.
//!
//! The stream is applied through the command handlers, without the client gate (no authentication, routing,
//! READONLY or memory check: the primary made them), with lookups seeing keys that expired by this node's
//! clock but that the primary has not deleted yet (see `Shard::find`). Each applied batch is appended to the
//! backlog byte for byte, so offsets stay the primary's. `REPLCONF ACK <offset>` goes back every second, after
//! every applied burst, and at once for `REPLCONF GETACK`.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use shoal_protocol::{Proto, ReplyWriter, RequestLimits, RequestParser};
use smallvec::SmallVec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::primary::SNAPSHOT_END;
use super::LinkState;
use crate::client::{Client, ClientHandle, ClientKind};
use crate::keyspace::access::unix_ms;
use crate::keyspace::feed::encode_command;
use crate::keyspace::set_applying_primary_stream;
use crate::server::Server;

/// The first wait before reconnecting; it doubles per failed attempt up to [`MAX_RETRY`].
pub const MIN_RETRY: Duration = Duration::from_millis(100);
pub const MAX_RETRY: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The most one handshake reply may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Acknowledgements are sent at least this often.
const ACK_PERIOD: Duration = Duration::from_secs(1);
/// At most this many bytes of the stream are applied under one hold of the apply lock.
const APPLY_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Initial read buffer of the link.
const READ_BUF: usize = 64 * 1024;

/// Starts following `host:port` on the current runtime (a no-op outside one, as in unit tests).
pub fn spawn(srv: Arc<Server>, host: String, port: u16, generation: u64) {
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => {
            rt.spawn(run(srv, host, port, generation));
        }
        Err(_) => tracing::warn!("not connecting to {host}:{port}: no runtime"),
    }
}

async fn run(srv: Arc<Server>, host: String, port: u16, generation: u64) {
    let mut retry = MIN_RETRY;
    let mut shutdown = srv.shutdown_signal();
    loop {
        if !srv.repl.is_current(generation) || srv.is_shutting_down() {
            return;
        }
        srv.repl.set_link(generation, LinkState::Connecting, None);
        let mut connected = false;
        let outcome = session(&srv, &host, port, generation, &mut connected).await;
        if !srv.repl.is_current(generation) {
            return;
        }
        srv.repl.set_link(generation, LinkState::Connect, None);
        match outcome {
            Ok(()) => {}
            Err(e) if connected => tracing::warn!("connection with primary {host}:{port} lost: {e}"),
            Err(e) => tracing::info!("cannot replicate from {host}:{port}: {e}"),
        }
        if connected {
            retry = MIN_RETRY;
        }
        tokio::select! {
            _ = tokio::time::sleep(retry) => {}
            _ = shutdown.changed() => return,
        }
        retry = (retry * 2).min(MAX_RETRY);
    }
}

/// The link's socket with its read buffer.
struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

impl Conn {
    async fn send(&mut self, args: &[&[u8]]) -> Result<(), String> {
        let mut out = Vec::with_capacity(64);
        encode_command(&mut out, args);
        self.stream.write_all(&out).await.map_err(|e| format!("write: {e}"))
    }

    /// Reads one reply line (a handshake reply), without its CRLF.
    async fn read_line(&mut self) -> Result<String, String> {
        let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.advance(end + 2);
                return Ok(line);
            }
            if self.buf.len() > 64 * 1024 {
                return Err("handshake reply too long".into());
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Err(_) => return Err("timeout waiting for the primary".into()),
                Ok(Ok(0)) => return Err("the primary closed the connection".into()),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(format!("read: {e}")),
            }
        }
    }

    async fn command(&mut self, args: &[&[u8]]) -> Result<String, String> {
        self.send(args).await?;
        self.read_line().await
    }
}

/// The link's entry in the client registry (CLIENT LIST flags=M, CLIENT KILL TYPE master), removed when the
/// session ends, before its socket closes.
struct Registered<'a> {
    srv: &'a Server,
    handle: Arc<ClientHandle>,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.handle.mark_closed();
        self.srv.clients.unregister(self.handle.id);
    }
}

/// Whether the stream is still in the snapshot of a full sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Snapshot,
    Stream,
}

/// One connection to the primary, from connect to close.
async fn session(
    srv: &Arc<Server>,
    host: &str,
    port: u16,
    generation: u64,
    connected: &mut bool,
) -> Result<(), String> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port)))
        .await
        .map_err(|_| "connect timeout".to_owned())?
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr().map_err(|e| e.to_string())?;
    let local = stream.local_addr().map_err(|e| e.to_string())?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
    let mut conn = Conn {
        stream,
        buf: BytesMut::with_capacity(READ_BUF),
    };
    let handle = srv
        .clients
        .register(peer, local, fd, unix_ms(), usize::MAX)
        .map_err(|_| "client registry full".to_owned())?;
    handle.set_kind(ClientKind::Primary);
    let reg = Registered {
        srv,
        handle: handle.clone(),
    };
    srv.repl
        .set_link(generation, LinkState::Handshake, Some(handle.clone()));

    let (user, pass, my_port) = {
        let c = srv.config.read();
        (
            c.masteruser.clone(),
            c.masterauth.clone(),
            srv.port.load(std::sync::atomic::Ordering::Relaxed),
        )
    };
    if !pass.is_empty() {
        let reply = if user.is_empty() {
            conn.command(&[b"AUTH", pass.as_bytes()]).await?
        } else {
            conn.command(&[b"AUTH", user.as_bytes(), pass.as_bytes()]).await?
        };
        if !reply.starts_with('+') {
            return Err(format!("AUTH refused: {reply}"));
        }
    }
    let pong = conn.command(&[b"PING"]).await?;
    if pong.starts_with("-NOAUTH") || pong.starts_with("-NOPERM") {
        return Err(format!("the primary needs authentication (masterauth): {pong}"));
    }
    let port_text = my_port.to_string();
    let reply = conn
        .command(&[b"REPLCONF", b"listening-port", port_text.as_bytes()])
        .await?;
    if !reply.starts_with('+') {
        tracing::warn!("primary refused REPLCONF listening-port: {reply}");
    }
    let reply = conn
        .command(&[
            b"REPLCONF",
            b"capa",
            b"eof",
            b"capa",
            b"psync2",
            b"capa",
            super::primary::CAPA_SHOAL,
        ])
        .await?;
    if !reply.starts_with('+') {
        tracing::warn!("primary refused REPLCONF capa: {reply}");
    }
    let info = srv.repl.backlog.info();
    let (replid, next) = if info.active {
        (info.replid.clone(), (info.offset + 1).to_string())
    } else {
        ("?".to_owned(), "-1".to_owned())
    };
    let reply = conn.command(&[b"PSYNC", replid.as_bytes(), next.as_bytes()]).await?;
    let mut client = Client::new(handle.clone(), true);
    let phase = if let Some(rest) = reply.strip_prefix("+FULLRESYNC ") {
        let mut words = rest.split_whitespace();
        let (Some(id), Some(offset)) = (words.next(), words.next().and_then(|o| o.parse::<u64>().ok())) else {
            return Err(format!("bad PSYNC reply: {reply}"));
        };
        if primary_came_back_empty(srv, &info, id, offset) {
            return Err(format!(
                "the primary came back with a new history {id} at offset {offset}, behind ours ({} in {}): it \
                 restarted without its data, so this replica takes over its slots instead of emptying itself",
                info.offset, info.replid
            ));
        }
        tracing::info!("full sync from {host}:{port}: history {id} at offset {offset}");
        srv.repl.set_link(generation, LinkState::Transfer, None);
        let _apply = srv.repl.lock_apply();
        if !srv.repl.is_current(generation) {
            return Ok(());
        }
        let taken = srv.keyspace.take_all();
        srv.evictor.clear();
        srv.free_in_background(taken);
        srv.repl.backlog.reset_to(id, offset, None);
        Phase::Snapshot
    } else if let Some(rest) = reply.strip_prefix("+CONTINUE") {
        let new_id = rest.trim();
        let _apply = srv.repl.lock_apply();
        if !srv.repl.is_current(generation) {
            return Ok(());
        }
        if !new_id.is_empty() && !new_id.eq_ignore_ascii_case(&info.replid) {
            // The primary was promoted: its new history continues ours. Our replicas must hear of it.
            srv.repl.backlog.shift_replid(Some(new_id));
            srv.repl.backlog.drop_readers();
        }
        client.select(srv.repl.backlog.stream_db().unwrap_or(0) as usize);
        tracing::info!("partial resync with {host}:{port} from offset {}", info.offset);
        Phase::Stream
    } else {
        return Err(format!("PSYNC refused: {reply}"));
    };
    if phase == Phase::Stream {
        srv.repl.set_link(generation, LinkState::Connected, None);
        srv.repl.note_synced();
        *connected = true;
    }
    srv.repl.note_io();
    let result = stream_loop(srv, &mut conn, &mut client, generation, phase, connected).await;
    drop(reg);
    result
}

/// How long a replica keeps trying to take over from a primary that came back empty before it gives up and
/// syncs from it after all (availability over the data it holds), in ms.
const EMPTY_PRIMARY_TAKEOVER_LIMIT_MS: i64 = 15_000;
/// How long such a replica waits for the bus link to the restarted primary, to take over in coordination with
/// it, before it forces the takeover, in ms.
const COORDINATED_TAKEOVER_WAIT_MS: i64 = 1_000;

/// Shoal, cluster mode: a primary that answers with a new replication history behind the one this replica
/// holds was restarted and lost its data (a cache persists nothing). Redis's replica would sync from it and
/// empty itself, losing every write the cluster had acknowledged for those slots. Instead the replica runs a
/// failover as `CLUSTER FAILOVER` does (FORCE when the restarted node is not reachable on the bus yet): it takes
/// the slots with the data, and the restarted node, which refuses writes during its rejoin delay, becomes its
/// replica and syncs from it. If that has not happened within [`EMPTY_PRIMARY_TAKEOVER_LIMIT_MS`], the replica syncs.
fn primary_came_back_empty(srv: &Arc<Server>, held: &super::backlog::BacklogInfo, id: &str, offset: u64) -> bool {
    let Some(bus) = srv.cluster.get() else { return false };
    // An operator who set `cluster-replica-no-failover` keeps this replica out of every automatic takeover.
    if bus.read(|n| n.config().replica_no_failover) {
        return false;
    }
    // Only a primary this replica has synced with since it started following it: a node it follows anew (a
    // promoted sibling, or the new owner after this node was demoted) may well be behind what it holds.
    if !srv.repl.synced_with_current()
        || !held.active
        || held.offset == 0
        || id.eq_ignore_ascii_case(&held.replid)
        || offset >= held.offset
    {
        srv.repl.clear_empty_primary();
        return false;
    }
    let now = unix_ms();
    let since = srv.repl.note_empty_primary(now);
    if now - since > EMPTY_PRIMARY_TAKEOVER_LIMIT_MS {
        tracing::warn!("could not take over from the restarted primary: syncing from it");
        srv.repl.clear_empty_primary();
        return false;
    }
    let started = bus.with_node(|n| {
        // One attempt at a time: a failover in progress is left to finish (it times out by itself).
        if n.manual_failover_in_progress() {
            return Ok(());
        }
        // Coordinated if the restarted node is reachable on the bus: it pauses writes and reports its offset
        // (as for CLUSTER FAILOVER), so the new primary can take writes at once. Otherwise forced, and the new
        // primary waits out the rejoin delay before writing, in case the old one still takes writes.
        let coordinated = n.failover(shoal_cluster::FailoverMode::Default, now as u64);
        if coordinated.is_err() && now - since < COORDINATED_TAKEOVER_WAIT_MS {
            // The bus link to the restarted node is usually up within a tick or two: wait for it (the
            // replication link retries shortly) rather than force.
            return Ok(());
        }
        coordinated.or_else(|_| n.failover(shoal_cluster::FailoverMode::Force, now as u64))
    });
    match started {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!("cannot take over from the restarted primary ({e}): syncing from it");
            srv.repl.clear_empty_primary();
            false
        }
    }
}

/// Applies the snapshot (if any) and the stream until the link breaks.
async fn stream_loop(
    srv: &Server,
    conn: &mut Conn,
    client: &mut Client,
    generation: u64,
    mut phase: Phase,
    connected: &mut bool,
) -> Result<(), String> {
    let mut parser = RequestParser::new();
    let mut out = ReplyWriter::new(Proto::Resp2);
    let mut ack_tick = tokio::time::interval(ACK_PERIOD);
    ack_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut acked: Option<u64> = None;
    let mut checked_format = phase == Phase::Stream;
    let mut shutdown = srv.shutdown_signal();
    loop {
        if !conn.buf.is_empty() {
            if !checked_format {
                // A Redis primary sends an RDB file (`$<len>` or `$EOF:`), not Shoal's snapshot.
                if conn.buf[0] == b'$' {
                    return Err(
                        "the primary sent an RDB file: only a Shoal server can be a Shoal replica's primary".into(),
                    );
                }
                checked_format = true;
            }
            let applied = apply_buffered(srv, generation, &conn.buf, &mut parser, client, &mut out, &mut phase)?;
            conn.buf.advance(applied.consumed);
            if phase == Phase::Snapshot {
                srv.repl.note_sync_bytes(applied.consumed as u64);
            }
            if applied.synced {
                srv.repl.set_link(generation, LinkState::Connected, None);
                srv.repl.note_synced();
                *connected = true;
                tracing::info!("full sync done; streaming");
            }
            let offset = srv.repl.backlog.offset();
            if phase == Phase::Stream && (applied.ack_now || acked != Some(offset)) {
                send_ack(conn, offset).await?;
                acked = Some(offset);
            }
            if applied.more {
                // The apply lock is released between batches so a role switch is never held up for long.
                tokio::task::yield_now().await;
                continue;
            }
        }
        let want = parser.bytes_needed().max(1);
        if conn.buf.capacity() - conn.buf.len() < want.min(64 << 20) {
            conn.buf.reserve(want.clamp(READ_BUF, 64 << 20));
        }
        let timeout = Duration::from_secs(srv.config.read().repl_timeout.max(1) as u64);
        tokio::select! {
            r = conn.stream.read_buf(&mut conn.buf) => match r {
                Ok(0) => return Err("the primary closed the connection".into()),
                Ok(n) => {
                    srv.repl.stats.input_bytes.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                    srv.repl.note_io();
                }
                Err(e) => return Err(format!("read: {e}")),
            },
            _ = ack_tick.tick() => {
                if !srv.repl.is_current(generation) {
                    return Ok(());
                }
                if phase == Phase::Stream {
                    let offset = srv.repl.backlog.offset();
                    send_ack(conn, offset).await?;
                    acked = Some(offset);
                }
                if unix_ms() - srv.repl.last_io_ms() > timeout.as_millis() as i64 {
                    return Err(format!("no data from the primary for {}s (repl-timeout)", timeout.as_secs()));
                }
            }
            _ = shutdown.changed() => return Ok(()),
        }
    }
}

async fn send_ack(conn: &mut Conn, offset: u64) -> Result<(), String> {
    conn.send(&[b"REPLCONF", b"ACK", offset.to_string().as_bytes()]).await
}

/// What one batch of the stream did.
struct Applied {
    /// Bytes of the buffer consumed (complete commands).
    consumed: usize,
    /// `REPLCONF GETACK` was among them.
    ack_now: bool,
    /// The snapshot ended in this batch.
    synced: bool,
    /// The batch stopped at its size limit with complete commands left.
    more: bool,
}

fn is_command(args: &[&[u8]], name: &[u8], sub: &[u8]) -> bool {
    args.len() >= 2 && args[0].eq_ignore_ascii_case(name) && args[1].eq_ignore_ascii_case(sub)
}

/// Applies the complete commands at the start of `buf` (up to [`APPLY_BATCH_BYTES`]) under the apply lock,
/// and appends those of the stream to the backlog.
fn apply_buffered(
    srv: &Server,
    generation: u64,
    buf: &[u8],
    parser: &mut RequestParser,
    client: &mut Client,
    out: &mut ReplyWriter,
    phase: &mut Phase,
) -> Result<Applied, String> {
    let _apply = srv.repl.lock_apply();
    if !srv.repl.is_current(generation) {
        return Err("replaced by a newer replication setup".into());
    }
    let limits = RequestLimits {
        max_bulk_len: i64::MAX,
        authenticated: true,
    };
    let now = srv.now();
    let stats = srv.stats.local();
    let mut applied = Applied {
        consumed: 0,
        ack_now: false,
        synced: false,
        more: false,
    };
    let mut stream_from = (*phase == Phase::Stream).then_some(0usize);
    let mut pos = 0usize;
    set_applying_primary_stream(true);
    let result = loop {
        if pos >= APPLY_BATCH_BYTES {
            applied.more = true;
            break Ok(());
        }
        match parser.parse(&buf[pos..], &limits) {
            Ok(Some(n)) => {
                let req = parser.request(&buf[pos..]);
                let args: SmallVec<[&[u8]; 8]> = req.iter().collect();
                if !args.is_empty() {
                    if *phase == Phase::Snapshot && is_command(&args, b"replconf", SNAPSHOT_END) {
                        let db = args.get(2).and_then(|d| crate::num::parse_i64(d)).unwrap_or(-1);
                        let stream_db = u32::try_from(db).ok();
                        client.select(stream_db.unwrap_or(0) as usize);
                        srv.repl.backlog.set_stream_db(stream_db);
                        *phase = Phase::Stream;
                        applied.synced = true;
                        stream_from = Some(pos + n);
                    } else if *phase == Phase::Stream && is_command(&args, b"replconf", b"getack") {
                        applied.ack_now = true;
                    } else if let Err(e) = crate::dispatch::apply_from_primary(srv, client, out, &args, &now, &stats) {
                        tracing::warn!(
                            "error applying {} from the primary: {e}",
                            String::from_utf8_lossy(args[0])
                        );
                    }
                    out.clear();
                }
                pos += n;
            }
            Ok(None) => break Ok(()),
            Err(e) => break Err(format!("protocol error in the stream from the primary: {e}")),
        }
    };
    set_applying_primary_stream(false);
    if let Some(from) = stream_from {
        if pos > from {
            srv.repl.backlog.append_raw(&buf[from..pos], Some(client.db as u32));
        }
    }
    applied.consumed = pos;
    result.map(|()| applied)
}
