//! One client connection: read, parse every complete request in the buffer, run each, write all their
//! replies with one write.
//!
//! Pipelining falls out of this shape: sixteen pipelined GETs arrive in one read and leave in one write. The
//! request parser works in place over the read buffer, so a request costs no allocation; the parser keeps its
//! progress when a request is split across reads, so a huge MSET is not re-scanned on every read.
//!
//! A framing error gets `-ERR Protocol error: ...` and the connection closes after the replies before it are
//! written; a bad argument is just an error reply. Nothing a client sends can stop other clients.
//!
//! Replication reaches in at three points: WAIT suspends its client until replicas acknowledge its writes;
//! with `min-replicas-to-ack` the replies of a batch that wrote are held until replicas acknowledge the
//! batch's last write (one wait per batch, so pipelining keeps its speed); and PSYNC turns the connection into
//! a replica link (`replication/primary.rs`).

use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use shoal_protocol::{ReplyWriter, RequestLimits, RequestParser};
use smallvec::SmallVec;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::client::{Action, Client, ClientHandle};
use crate::command::flags;
use crate::dispatch::dispatch;
use crate::keyspace::{Key, KeyHint, PrefetchStage};
use crate::server::Server;
use crate::stats::ThreadStats;

/// Initial read buffer; it grows for big requests and shrinks back when idle.
const READ_BUF: usize = 16 * 1024;
/// A read buffer this much larger than its content is released after the batch.
const READ_BUF_SHRINK: usize = 1024 * 1024;

/// Serves one connection until it closes, is killed, or the server shuts down.
///
/// Killing (CLIENT KILL, shutdown, idle timeout) shuts the socket down from outside, which ends the read or
/// write this task is blocked in; so the loop itself waits on nothing but its socket.
pub async fn serve(srv: Arc<Server>, mut stream: TcpStream, handle: Arc<ClientHandle>) {
    let authenticated = !srv.settings.auth_required.load(Ordering::Relaxed);
    let mut client = Client::new(handle.clone(), authenticated);
    let mut out = ReplyWriter::new(shoal_protocol::Proto::Resp2);
    let mut rbuf = BytesMut::with_capacity(READ_BUF);
    let mut parser = RequestParser::new();
    let mut batch = Batch::default();
    let stats = srv.stats.local();
    loop {
        let want = parser.bytes_needed().max(1);
        if rbuf.capacity() - rbuf.len() < want.min(64 * 1024 * 1024) || rbuf.capacity() == rbuf.len() {
            rbuf.reserve(want.clamp(READ_BUF, 64 * 1024 * 1024));
        }
        let n = match read_once(&stream, &mut rbuf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if stream.readable().await.is_err() {
                    break;
                }
                continue;
            }
            Err(_) => break,
        };
        if handle.killed.load(Ordering::Relaxed) {
            break;
        }
        stats.net_in(n as u64);
        let limit = srv.settings.query_buffer_limit.load(Ordering::Relaxed);
        if rbuf.len() as u64 > limit {
            tracing::warn!(
                client = handle.id,
                "closing client that reached max query buffer length"
            );
            break;
        }
        let close = run_batch(&srv, &mut client, &mut out, &mut rbuf, &mut parser, &mut batch, &stats).await;
        if !out.is_empty() {
            // With one worker thread, a pipelined batch's replies wait until the other connections that are
            // ready have run theirs (Redis writes every reply in beforeSleep, after all readable clients): the
            // sends then come in a burst, and a client busy reading the first replies is not woken again for
            // each of the others — on loopback the sender pays for that wakeup. A lone request is answered at
            // once. With several workers the yield measured worse tail latency (p99 of pipelined GETs 1.5-2.5x)
            // for no gain, so it is off there.
            if batch.requests.len() > 1 && BURST_REPLIES.load(Ordering::Relaxed) {
                tokio::task::yield_now().await;
            }
            stats.net_out(out.len() as u64);
            if stream.write_all(out.as_bytes()).await.is_err() {
                break;
            }
            out.clear();
            out.shrink_to(READ_BUF);
        }
        handle
            .last_interaction_ms
            .store(crate::keyspace::access::unix_ms(), Ordering::Relaxed);
        handle.query_buf.store(rbuf.len(), Ordering::Relaxed);
        if rbuf.is_empty() && rbuf.capacity() > READ_BUF_SHRINK {
            rbuf = BytesMut::with_capacity(READ_BUF);
        }
        match close {
            Some(Action::Shutdown) => {
                srv.request_shutdown();
                break;
            }
            Some(Action::ReplicaLink) => {
                if let Some(start) = client.repl_link.take() {
                    crate::replication::primary::serve(srv.clone(), stream, handle.clone(), start).await;
                    handle.mark_closed();
                    srv.clients.unregister(handle.id);
                    return;
                }
                break;
            }
            Some(_) => break,
            None => {}
        }
    }
    // Mark the client gone before the socket closes, so a concurrent kill never shuts down a reused fd.
    handle.mark_closed();
    let _ = stream.shutdown().await;
    srv.clients.unregister(handle.id);
}

/// Whether pipelined replies wait for the other ready connections (see `serve`): on when the runtime has one
/// worker thread.
static BURST_REPLIES: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Turns reply bursts on or off (at startup, from the number of worker threads).
pub fn set_burst_replies(on: bool) {
    BURST_REPLIES.store(on, Ordering::Relaxed);
}

/// One read into the buffer's spare capacity.
///
/// A read that returns less than it asked for has drained the socket, so readiness is cleared right away
/// instead of by a second read that would fail with EAGAIN: one syscall per request batch instead of two.
/// The clearing goes through tokio's `try_io` with the readiness tick taken before the read, so an event for
/// data that arrived after the read is never lost.
fn read_once(stream: &TcpStream, buf: &mut BytesMut) -> std::io::Result<usize> {
    let fd = stream.as_raw_fd();
    let mut got = 0usize;
    let res = stream.try_io(tokio::io::Interest::READABLE, || {
        let spare = buf.spare_capacity_mut();
        let want = spare.len();
        // SAFETY: reading into the buffer's spare capacity, `want` bytes of which are writable.
        let n = unsafe { libc::read(fd, spare.as_mut_ptr() as *mut libc::c_void, want) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let n = n as usize;
        // SAFETY: the kernel initialised exactly `n` bytes of the spare capacity.
        unsafe { buf.set_len(buf.len() + n) };
        got = n;
        if n > 0 && n < want {
            Err(std::io::ErrorKind::WouldBlock.into())
        } else {
            Ok(n)
        }
    });
    match res {
        Ok(n) => Ok(n),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && got > 0 => Ok(got),
        Err(e) => Err(e),
    }
}

/// Most requests parsed ahead of execution in one batch.
const MAX_BATCH: usize = 128;
/// Requests with up to this many arguments are handed to their command from an array on the stack.
const INLINE_ARGS: usize = 8;

/// Requests parsed ahead of execution: argument spans as absolute offsets into the read buffer, and each
/// request's range of spans. Kept per connection so a batch allocates nothing once warmed up.
#[derive(Default)]
pub struct Batch {
    spans: Vec<(usize, usize)>,
    requests: Vec<(usize, usize)>,
    /// Each request's first argument as a key, hashed once for prefetching and again used by its command.
    hints: Vec<Option<KeyHint>>,
}

/// Argument 1 of request `i`, if it has one (a free function so the batch's other fields stay borrowable).
#[inline]
fn first_arg<'a>(spans: &[(usize, usize)], requests: &[(usize, usize)], buf: &'a [u8], i: usize) -> Option<&'a [u8]> {
    let &(first, n) = requests.get(i)?;
    if n < 2 {
        return None;
    }
    let &(s, e) = spans.get(first + 1)?;
    buf.get(s..e)
}

impl Batch {
    fn clear(&mut self) {
        self.spans.clear();
        self.requests.clear();
    }

    /// The arguments of request `i`: in `inline` when they fit (the common case, no per-request bookkeeping
    /// beyond one store per argument), else in `spill`.
    #[inline]
    fn args<'a, 'b>(
        &self,
        buf: &'a [u8],
        i: usize,
        inline: &'b mut [&'a [u8]; INLINE_ARGS],
        spill: &'b mut Vec<&'a [u8]>,
    ) -> &'b [&'a [u8]] {
        let Some(&(first, n)) = self.requests.get(i) else {
            return &[];
        };
        let spans = self.spans.get(first..first + n).unwrap_or_default();
        let arg = |&(s, e): &(usize, usize)| buf.get(s..e).unwrap_or_default();
        if spans.len() <= INLINE_ARGS {
            for (slot, span) in inline.iter_mut().zip(spans) {
                *slot = arg(span);
            }
            &inline[..spans.len()]
        } else {
            spill.clear();
            spill.extend(spans.iter().map(arg));
            spill
        }
    }
}

/// Runs every complete request in `rbuf`. Returns an action that ends the connection, if any.
///
/// Multibulk requests are parsed ahead into a [`Batch`], their keys prefetched stage by stage over the whole
/// batch (see `Db::prefetch`) so a pipeline's cache misses overlap, and then run in order.
/// An inline request ends a batch (its arguments live in the parser's scratch space) and runs on its own.
async fn run_batch(
    srv: &Server,
    client: &mut Client,
    out: &mut ReplyWriter,
    rbuf: &mut BytesMut,
    parser: &mut RequestParser,
    batch: &mut Batch,
    stats: &crate::stats::ThreadStats,
) -> Option<Action> {
    let mut consumed = 0usize;
    let mut now = srv.now();
    let mut result = None;
    // `min-replicas-to-ack`: one relaxed load per batch when it is off.
    let ack_want = srv.settings.min_replicas_to_ack.load(Ordering::Relaxed);
    let mut hold = (ack_want > 0).then(AckHold::default);
    'outer: loop {
        batch.clear();
        let mut inline_request: Option<usize> = None;
        let mut protocol_error = None;
        let mut pos = consumed;
        // Parsing runs ahead of execution, so an AUTH in this batch lifts the limits from the next batch on.
        let limits = RequestLimits {
            max_bulk_len: srv.settings.proto_max_bulk_len.load(Ordering::Relaxed),
            authenticated: client.authenticated,
        };
        while batch.requests.len() < MAX_BATCH {
            // The common case, a whole well-formed request, goes straight into the batch's span list.
            let first = batch.spans.len();
            if let Some(n) = parser.parse_complete_into(&rbuf[pos..], pos, &limits, &mut batch.spans) {
                batch.requests.push((first, batch.spans.len() - first));
                pos += n;
                continue;
            }
            match parser.parse(&rbuf[pos..], &limits) {
                Ok(Some(n)) => {
                    let req = parser.request(&rbuf[pos..]);
                    if req.is_inline() {
                        if !req.is_empty() {
                            inline_request = Some(n);
                        } else {
                            pos += n;
                            continue;
                        }
                        break;
                    }
                    if !req.is_empty() {
                        let first = batch.spans.len();
                        batch
                            .spans
                            .extend(parser.spans().iter().map(|&(s, e)| (s + pos, e + pos)));
                        batch.requests.push((first, req.len()));
                    }
                    pos += n;
                }
                Ok(None) => break,
                Err(e) => {
                    protocol_error = Some(e);
                    break;
                }
            }
        }
        let batch_end = pos;
        let buf: &[u8] = &rbuf[..];
        let n = batch.requests.len();
        let mut inline_argv: [&[u8]; INLINE_ARGS] = [&[]; INLINE_ARGS];
        let mut spill_argv: Vec<&[u8]> = Vec::new();
        let pipelined = n >= 2;
        if pipelined {
            // Group prefetching: every request's slot table header, then every bucket group, then every first
            // entry, each pass issued before the previous one's loads are needed, so a batch's cache misses
            // overlap (a software pipeline a few requests deep spent its first steps waiting at every batch).
            let db = srv.keyspace.db(client.db);
            let Batch { spans, requests, hints } = &mut *batch;
            hints.clear();
            hints.extend((0..n).map(|i| first_arg(spans, requests, buf, i).map(|k| Key::new(k).hint())));
            for stage in [PrefetchStage::Header, PrefetchStage::Bucket, PrefetchStage::Entry] {
                for h in hints.iter().flatten() {
                    db.prefetch(h, stage);
                }
            }
        }
        for k in 0..n {
            let args = batch.args(buf, k, &mut inline_argv, &mut spill_argv);
            if let Some(until) = paused_until(srv, args, now.ms) {
                client.note_writes();
                wait_unpaused(srv, until).await;
                now = srv.now();
            }
            out.set_proto(client.proto);
            let reply_start = out.len();
            client.key_hint = if pipelined {
                batch.hints.get(k).copied().flatten()
            } else {
                None
            };
            dispatch(srv, client, out, args, &now, stats);
            let action = client.action.take();
            if let Some(h) = hold.as_mut() {
                h.note(reply_start, out.len(), client.note_writes());
            }
            match action {
                None => {}
                Some(a @ (Action::Sleep(_) | Action::WaitAcks { .. })) => {
                    suspend(srv, client, out, a).await;
                    now = srv.now();
                }
                Some(a) => {
                    // Requests after QUIT, SHUTDOWN or a self-kill are not run, as in Redis.
                    result = Some(a);
                    consumed = rbuf.len();
                    parser.reset();
                    break 'outer;
                }
            }
        }
        consumed = batch_end;
        if let Some(e) = protocol_error {
            // The offending byte goes back raw, as Redis sends it, not re-encoded as UTF-8.
            let mut msg = b"ERR ".to_vec();
            msg.extend_from_slice(&e.reply_bytes());
            out.error(&msg);
            stats.error("ERR");
            tracing::debug!(client = client.id(), "protocol error: {e}");
            consumed = rbuf.len();
            parser.reset();
            result = Some(Action::Close);
            break;
        }
        if let Some(len) = inline_request {
            let req = parser.request(&rbuf[consumed..]);
            let inline_args: SmallVec<[&[u8]; 8]> = req.iter().collect();
            if let Some(until) = paused_until(srv, &inline_args, now.ms) {
                client.note_writes();
                wait_unpaused(srv, until).await;
                now = srv.now();
            }
            out.set_proto(client.proto);
            let reply_start = out.len();
            client.key_hint = None;
            dispatch(srv, client, out, &inline_args, &now, stats);
            drop(inline_args);
            consumed += len;
            let action = client.action.take();
            if let Some(h) = hold.as_mut() {
                h.note(reply_start, out.len(), client.note_writes());
            }
            match action {
                None => {}
                Some(a @ (Action::Sleep(_) | Action::WaitAcks { .. })) => {
                    suspend(srv, client, out, a).await;
                    now = srv.now();
                }
                Some(a) => {
                    result = Some(a);
                    consumed = rbuf.len();
                    parser.reset();
                    break;
                }
            }
            continue;
        }
        if n < MAX_BATCH {
            break;
        }
    }
    rbuf.advance(consumed.min(rbuf.len()));
    client.note_writes();
    if let Some(h) = hold {
        if h.wrote {
            h.settle(srv, client, out, ack_want, stats).await;
        }
    }
    result
}

/// Waits out an action that suspends the client: DEBUG SLEEP, WAIT.
async fn suspend(srv: &Server, client: &mut Client, out: &mut ReplyWriter, action: Action) {
    client.note_writes();
    match action {
        Action::Sleep(d) => tokio::time::sleep(d).await,
        Action::WaitAcks {
            replicas,
            timeout_ms,
            reply,
        } => {
            let timeout = (timeout_ms > 0).then(|| Duration::from_millis(timeout_ms));
            let n = srv
                .repl
                .wait_for_acks(srv, &client.handle, replicas, client.woff, timeout)
                .await;
            if reply {
                out.integer(n as i64);
            }
        }
        _ => {}
    }
}

/// The replies of one batch under `min-replicas-to-ack`: where each is in the output and whether its command
/// wrote.
#[derive(Default)]
struct AckHold {
    replies: Vec<(usize, usize, bool)>,
    wrote: bool,
}

impl AckHold {
    fn note(&mut self, start: usize, end: usize, wrote: bool) {
        self.replies.push((start, end, wrote));
        self.wrote |= wrote;
    }

    /// Holds the batch's replies until `want` replicas acknowledged its last write; if they do not within
    /// `min-replicas-ack-timeout`, every write's reply becomes `-NOREPLICAS` (the write may be on this node,
    /// but nobody was told it was acknowledged).
    async fn settle(self, srv: &Server, client: &Client, out: &mut ReplyWriter, want: usize, stats: &ThreadStats) {
        let timeout = Duration::from_millis(srv.settings.min_replicas_ack_timeout_ms.load(Ordering::Relaxed).max(1));
        let got = srv
            .repl
            .wait_for_acks(srv, &client.handle, want, client.woff, Some(timeout))
            .await;
        if got >= want {
            return;
        }
        let Some(first) = self.replies.iter().find(|r| r.2 && r.1 > r.0).map(|r| r.0) else {
            return;
        };
        let tail = out.as_bytes()[first..].to_vec();
        out.truncate(first);
        let mut at = first;
        for &(start, end, wrote) in self.replies.iter().filter(|r| r.0 >= first) {
            out.raw(&tail[at - first..start - first]);
            if wrote && end > start {
                out.error(crate::error::NOREPLICAS.as_bytes());
                stats.error("NOREPLICAS");
            } else {
                out.raw(&tail[start - first..end - first]);
            }
            at = end;
        }
        out.raw(&tail[at - first..]);
    }
}

fn paused_until(srv: &Server, args: &[&[u8]], now_ms: i64) -> Option<i64> {
    if !srv.pause.active(now_ms) {
        return None;
    }
    let cmd = srv.commands.lookup(args).ok()?;
    // Redis lets these through a pause: they are how a paused client is inspected or un-paused.
    if cmd.name.starts_with("client|") || cmd.name == "ping" || cmd.name == "auth" || cmd.name == "hello" {
        return None;
    }
    let is_write = cmd.has(flags::WRITE) || cmd.has(flags::MAY_REPLICATE);
    srv.pause.blocks(now_ms, is_write)
}

async fn wait_unpaused(srv: &Server, until_ms: i64) {
    let now = crate::keyspace::access::unix_ms();
    let wait = Duration::from_millis((until_ms - now).max(0) as u64 + 1);
    tokio::select! {
        _ = tokio::time::sleep(wait) => {}
        _ = srv.pause.unpaused.notified() => {}
    }
}
