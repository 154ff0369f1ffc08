//! [`Connection`]: one TCP connection to one server, speaking RESP2 or RESP3.
//!
//! Commands are encoded straight into a write buffer as arrays of bulk strings ([`encode_command`]); replies
//! are decoded incrementally from a read buffer by a [`FrameDecoder`], so a reply arriving in many reads is
//! checked once and its strings are slices of the read buffer, not copies.
//!
//! Three levels of use:
//! * [`Connection::command`]: one round trip; an error reply comes back as `Err` ([`ClientError::Server`] or
//!   [`ClientError::Redirect`]), because for a single command the error *is* the outcome.
//! * [`Connection::pipeline`]: N commands in one write, N replies in order; error replies stay in the list as
//!   [`Frame::Error`], because one failed command must not hide the replies of the others. `Err` is then
//!   reserved for transport failures, after which nobody knows which commands ran.
//! * [`Connection::queue`] / [`Connection::flush`] / [`Connection::read_reply`], or the two halves of
//!   [`Connection::into_split`] for a writer task that keeps sending while a reader task is still receiving
//!   (the load generator's open loop).
//!
//! After a transport failure (I/O, framing, timeout, closed peer) the connection refuses further use with
//! [`ClientError::Closed`]: replies may have been lost, so the next reply read could belong to another command.

use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use shoal_protocol::reply::fmt_i64;
use shoal_protocol::{Frame, FrameDecoder, FrameLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::error::{check_reply, ClientError};

/// How long [`Connection::connect`] waits for the TCP handshake.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Room reserved in the read buffer before each read: big enough that small replies arrive in one read, small
/// enough that an idle connection costs little.
const READ_RESERVE: usize = 16 * 1024;
/// Out-of-band RESP3 pushes kept for [`Connection::take_pushes`]; older ones are dropped beyond this, so a
/// caller that never looks cannot make the connection grow without bound.
const MAX_HELD_PUSHES: usize = 1024;

/// How to open a [`Connection`].
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Limit on the TCP handshake; `None` waits as long as the OS does.
    pub connect_timeout: Option<Duration>,
    /// Limit on each `command`, `pipeline`, `flush` and `read_reply` call; `None` waits forever.
    pub timeout: Option<Duration>,
    /// 3 sends `HELLO 3` right after connecting, switching the connection to RESP3; 2 leaves it on RESP2.
    pub protocol: u8,
    /// What the server's replies may not exceed.
    pub limits: FrameLimits,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            connect_timeout: Some(DEFAULT_CONNECT_TIMEOUT),
            timeout: None,
            protocol: 2,
            limits: FrameLimits::default(),
        }
    }
}

/// Appends one command as a RESP array of bulk strings, the only request form servers must accept.
pub fn encode_command<A: AsRef<[u8]>>(out: &mut BytesMut, args: &[A]) {
    let mut digits = [0u8; 24];
    let payload: usize = args.iter().map(|a| a.as_ref().len() + 16).sum();
    out.reserve(16 + payload);
    out.put_u8(b'*');
    out.put_slice(fmt_i64(&mut digits, args.len() as i64));
    out.put_slice(b"\r\n");
    for arg in args {
        let arg = arg.as_ref();
        out.put_u8(b'$');
        out.put_slice(fmt_i64(&mut digits, arg.len() as i64));
        out.put_slice(b"\r\n");
        out.put_slice(arg);
        out.put_slice(b"\r\n");
    }
}

/// The sending half: a write buffer and the socket it is flushed to.
#[derive(Debug)]
pub struct CommandWriter {
    stream: OwnedWriteHalf,
    buf: BytesMut,
}

impl CommandWriter {
    /// Encodes a command into the write buffer; nothing is sent until [`CommandWriter::flush`].
    pub fn queue<A: AsRef<[u8]>>(&mut self, args: &[A]) {
        encode_command(&mut self.buf, args);
    }

    /// The write buffer, for callers that encode requests themselves.
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Bytes queued and not yet sent.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Sends everything queued. Cancel-safe in the sense that the unsent rest stays in the buffer.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        if !self.buf.is_empty() {
            self.stream.write_all_buf(&mut self.buf).await?;
        }
        Ok(())
    }

    /// Flushes, then half-closes the socket so the server sees end of input.
    pub async fn shutdown(&mut self) -> Result<(), ClientError> {
        self.flush().await?;
        self.stream.shutdown().await?;
        Ok(())
    }
}

/// The receiving half: a read buffer, the decoder's progress in it, and the socket it is filled from.
#[derive(Debug)]
pub struct ReplyReader {
    stream: OwnedReadHalf,
    buf: BytesMut,
    decoder: FrameDecoder,
    limits: FrameLimits,
    pushes: VecDeque<Frame>,
}

impl ReplyReader {
    /// The next frame of any kind, exactly as the server sent it (attributes and pushes included).
    pub async fn read_frame(&mut self) -> Result<Frame, ClientError> {
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.buf, &self.limits)? {
                return Ok(frame);
            }
            self.buf.reserve(READ_RESERVE);
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(ClientError::Closed);
            }
        }
    }

    /// The next frame if the bytes already received hold a whole one; never waits on the socket.
    pub fn try_read_frame(&mut self) -> Result<Option<Frame>, ClientError> {
        Ok(self.decoder.decode(&mut self.buf, &self.limits)?)
    }

    /// The next reply to a command: top-level attributes (metadata about the reply) are dropped, and RESP3
    /// pushes (invalidations, pub/sub messages: not replies to anything sent) are set aside for
    /// [`ReplyReader::take_pushes`]. Error replies are returned as frames.
    pub async fn read_reply(&mut self) -> Result<Frame, ClientError> {
        loop {
            match self.read_frame().await? {
                Frame::Attribute(_) => {}
                Frame::Push(items) => self.hold_push(Frame::Push(items)),
                reply => return Ok(reply),
            }
        }
    }

    /// [`ReplyReader::read_reply`] from the bytes already received only: `Ok(None)` when no whole reply is
    /// buffered yet. Lets a reader drain a burst of pipelined replies without touching the socket or a timer.
    pub fn try_read_reply(&mut self) -> Result<Option<Frame>, ClientError> {
        while let Some(frame) = self.try_read_frame()? {
            match frame {
                Frame::Attribute(_) => {}
                Frame::Push(items) => self.hold_push(Frame::Push(items)),
                reply => return Ok(Some(reply)),
            }
        }
        Ok(None)
    }

    fn hold_push(&mut self, push: Frame) {
        if self.pushes.len() >= MAX_HELD_PUSHES {
            self.pushes.pop_front();
        }
        self.pushes.push_back(push);
    }

    /// The pushes received so far, oldest first (at most the last [`MAX_HELD_PUSHES`]).
    pub fn take_pushes(&mut self) -> Vec<Frame> {
        self.pushes.drain(..).collect()
    }
}

/// One connection to one server. See the module documentation for the three ways to use it.
#[derive(Debug)]
pub struct Connection {
    addr: String,
    writer: CommandWriter,
    reader: ReplyReader,
    /// Replies owed for commands queued with [`Connection::queue`].
    pending: usize,
    timeout: Option<Duration>,
    /// Set by a transport failure: replies may be lost or out of step, so nothing more may be read.
    broken: bool,
    protocol: u8,
}

impl Connection {
    /// Connects with the default options: RESP2, a 10 s connect timeout, no timeout on commands.
    pub async fn connect(addr: &str) -> Result<Connection, ClientError> {
        Connection::connect_with(addr, &ConnectOptions::default()).await
    }

    /// Connects to `addr` (`host:port`), sending `HELLO 3` first when `options.protocol` is 3.
    pub async fn connect_with(addr: &str, options: &ConnectOptions) -> Result<Connection, ClientError> {
        let stream = with_timeout(options.connect_timeout, async { Ok(TcpStream::connect(addr).await?) }).await?;
        // Requests are small and latency is the point: never let Nagle hold one back.
        stream.set_nodelay(true)?;
        let (read, write) = stream.into_split();
        let mut conn = Connection {
            addr: addr.to_string(),
            writer: CommandWriter {
                stream: write,
                buf: BytesMut::with_capacity(READ_RESERVE),
            },
            reader: ReplyReader {
                stream: read,
                buf: BytesMut::with_capacity(READ_RESERVE),
                decoder: FrameDecoder::new(),
                limits: options.limits,
                pushes: VecDeque::new(),
            },
            pending: 0,
            timeout: options.timeout,
            broken: false,
            protocol: 2,
        };
        if options.protocol >= 3 {
            conn.hello(options.protocol).await?;
        }
        Ok(conn)
    }

    /// The address this connection was opened to, as given.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The RESP version in use: 2, or 3 after a successful `HELLO 3`.
    pub fn protocol(&self) -> u8 {
        self.protocol
    }

    /// Changes the limit on each later call.
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// False once a transport failure has made the connection unusable.
    pub fn is_usable(&self) -> bool {
        !self.broken
    }

    /// Replies owed for queued commands.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Switches protocol with `HELLO <protover>`; returns the server's description of itself (a map in RESP3).
    pub async fn hello(&mut self, protover: u8) -> Result<Frame, ClientError> {
        let version = protover.to_string();
        let reply = self.command(&["HELLO", version.as_str()]).await?;
        self.protocol = protover;
        Ok(reply)
    }

    /// Encodes a command into the write buffer. Send with [`Connection::flush`], then read its reply with
    /// [`Connection::read_reply`]; replies come back in queue order.
    pub fn queue<A: AsRef<[u8]>>(&mut self, args: &[A]) {
        self.writer.queue(args);
        self.pending += 1;
    }

    /// Sends every queued command.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        self.usable()?;
        let result = with_timeout(self.timeout, self.writer.flush()).await;
        self.note(result)
    }

    /// The reply to the oldest queued command; an error reply is returned as [`Frame::Error`]. Flushes first
    /// if anything is still buffered, so a forgotten flush cannot wait forever.
    pub async fn read_reply(&mut self) -> Result<Frame, ClientError> {
        self.usable()?;
        let (writer, reader) = (&mut self.writer, &mut self.reader);
        let result = with_timeout(self.timeout, async {
            writer.flush().await?;
            reader.read_reply().await
        })
        .await;
        let reply = self.note(result)?;
        self.pending = self.pending.saturating_sub(1);
        Ok(reply)
    }

    /// One command, one round trip. An error reply is returned as `Err`: [`ClientError::Redirect`] for a
    /// cluster redirection or refusal, [`ClientError::Server`] for any other.
    pub async fn command<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Frame, ClientError> {
        let mut replies = self.pipeline(&[args]).await?;
        match replies.pop() {
            Some(reply) => check_reply(reply),
            None => Err(ClientError::UnexpectedReply("no reply".into())),
        }
    }

    /// Sends all `cmds` in one write and returns their replies in order, error replies included as
    /// [`Frame::Error`]. Replies are read while the commands are still being written, so a pipeline larger than
    /// the socket buffers cannot deadlock against a server that stops reading while its replies are unread.
    pub async fn pipeline<C, A>(&mut self, cmds: &[C]) -> Result<Vec<Frame>, ClientError>
    where
        C: AsRef<[A]>,
        A: AsRef<[u8]>,
    {
        self.usable()?;
        if self.pending > 0 {
            return Err(ClientError::Pending(self.pending));
        }
        for cmd in cmds {
            self.writer.queue(cmd.as_ref());
        }
        let n = cmds.len();
        let (writer, reader) = (&mut self.writer, &mut self.reader);
        let result = with_timeout(self.timeout, async {
            let read_all = async {
                let mut replies = Vec::with_capacity(n);
                while replies.len() < n {
                    replies.push(reader.read_reply().await?);
                }
                Ok::<_, ClientError>(replies)
            };
            let ((), replies) = tokio::try_join!(writer.flush(), read_all)?;
            Ok(replies)
        })
        .await;
        self.note(result)
    }

    /// The RESP3 pushes received so far (see [`ReplyReader::read_reply`]).
    pub fn take_pushes(&mut self) -> Vec<Frame> {
        self.reader.take_pushes()
    }

    /// The two halves, for a writer task and a reader task. Whatever is queued stays queued in the writer;
    /// matching replies to commands is then the caller's job.
    pub fn into_split(self) -> (CommandWriter, ReplyReader) {
        (self.writer, self.reader)
    }

    fn usable(&self) -> Result<(), ClientError> {
        if self.broken {
            Err(ClientError::Closed)
        } else {
            Ok(())
        }
    }

    /// Marks the connection broken when `result` is a transport failure.
    fn note<T>(&mut self, result: Result<T, ClientError>) -> Result<T, ClientError> {
        if let Err(e) = &result {
            if e.is_transport() {
                self.broken = true;
            }
        }
        result
    }
}

/// Runs `fut`, turning an elapsed `limit` into [`ClientError::Timeout`].
async fn with_timeout<T>(
    limit: Option<Duration>,
    fut: impl Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    match limit {
        Some(limit) => tokio::time::timeout(limit, fut)
            .await
            .map_err(|_| ClientError::Timeout)?,
        None => fut.await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use shoal_cluster::Redirect;
    use tokio::net::TcpListener;

    /// A one-shot server: accepts one connection, waits for `expect_bytes` request bytes, then writes each of
    /// `chunks` with a pause between, then holds the connection open until the client goes away.
    async fn scripted_server(expect_bytes: usize, chunks: Vec<Vec<u8>>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let mut got = vec![0u8; expect_bytes];
            if sock.read_exact(&mut got).await.is_err() {
                return;
            }
            for chunk in chunks {
                if sock.write_all(&chunk).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let mut rest = [0u8; 64];
            while matches!(sock.read(&mut rest).await, Ok(n) if n > 0) {}
        });
        addr
    }

    fn request_len<A: AsRef<[u8]>>(cmds: &[&[A]]) -> usize {
        let mut buf = BytesMut::new();
        for c in cmds {
            encode_command(&mut buf, c);
        }
        buf.len()
    }

    #[test]
    fn commands_encode_as_arrays_of_bulk_strings() {
        let mut buf = BytesMut::new();
        encode_command(&mut buf, &["SET", "k", ""]);
        encode_command(&mut buf, &[b"GET".as_slice(), b"\r\n\x00"]);
        assert_eq!(
            &buf[..],
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n*2\r\n$3\r\nGET\r\n$3\r\n\r\n\x00\r\n"
        );
        assert_eq!(buf.freeze(), {
            let mut b = Frame::command(["SET", "k", ""]).to_bytes().to_vec();
            b.extend_from_slice(&Frame::command([b"GET".as_slice(), b"\r\n\x00"]).to_bytes());
            Bytes::from(b)
        });
    }

    #[tokio::test]
    async fn a_reply_arriving_a_byte_at_a_time_is_assembled() {
        let reply = b"*2\r\n$5\r\nhello\r\n:42\r\n";
        let chunks = reply.iter().map(|&b| vec![b]).collect();
        let addr = scripted_server(request_len(&[&["GET", "k"]]), chunks).await;
        let mut conn = Connection::connect(&addr).await.expect("connect");
        let frame = conn.command(&["GET", "k"]).await.expect("reply");
        assert_eq!(
            frame,
            Frame::Array(vec![Frame::Bulk(Bytes::from_static(b"hello")), Frame::Integer(42)])
        );
    }

    #[tokio::test]
    async fn command_maps_error_replies_and_the_connection_goes_on() {
        let cmds: &[&[&str]] = &[&["GET", "a"], &["GET", "b"], &["GET", "c"]];
        let addr = scripted_server(
            request_len(cmds),
            vec![b"-ERR wrong\r\n-MOVED 12182 10.0.0.1:7000\r\n+OK\r\n".to_vec()],
        )
        .await;
        let mut conn = Connection::connect(&addr).await.expect("connect");
        // Sent as one batch so the scripted server sees all its bytes, then read one by one.
        for c in cmds {
            conn.queue(c);
        }
        conn.flush().await.expect("flush");
        assert_eq!(
            conn.read_reply().await.expect("1"),
            Frame::Error(Bytes::from_static(b"ERR wrong"))
        );
        let moved = check_reply(conn.read_reply().await.expect("2"));
        assert!(
            matches!(moved, Err(ClientError::Redirect(Redirect::Moved { .. }))),
            "{moved:?}"
        );
        assert_eq!(
            conn.read_reply().await.expect("3"),
            Frame::Simple(Bytes::from_static(b"OK"))
        );
        assert_eq!(conn.pending(), 0);
    }

    #[tokio::test]
    async fn pipeline_keeps_error_replies_in_place() {
        let cmds: Vec<Vec<&str>> = vec![vec!["SET", "a", "1"], vec!["INCR", "a", "x"], vec!["GET", "a"]];
        let refs: Vec<&[&str]> = cmds.iter().map(|c| c.as_slice()).collect();
        let addr = scripted_server(
            request_len(&refs),
            vec![b"+OK\r\n-ERR syntax error\r\n$1\r\n1\r\n".to_vec()],
        )
        .await;
        let mut conn = Connection::connect(&addr).await.expect("connect");
        let replies = conn.pipeline(&cmds).await.expect("pipeline");
        assert_eq!(
            replies,
            vec![
                Frame::Simple(Bytes::from_static(b"OK")),
                Frame::Error(Bytes::from_static(b"ERR syntax error")),
                Frame::Bulk(Bytes::from_static(b"1")),
            ]
        );
    }

    #[tokio::test]
    async fn a_closed_peer_is_closed_and_the_connection_stays_unusable() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            if let Ok((sock, _)) = listener.accept().await {
                drop(sock);
            }
        });
        let mut conn = Connection::connect(&addr).await.expect("connect");
        let err = conn.command(&["PING"]).await;
        assert!(err.as_ref().is_err_and(ClientError::is_transport), "{err:?}");
        assert!(!conn.is_usable());
        assert!(matches!(conn.command(&["PING"]).await, Err(ClientError::Closed)));
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let addr = scripted_server(1 << 20, vec![]).await;
        let options = ConnectOptions {
            timeout: Some(Duration::from_millis(50)),
            ..ConnectOptions::default()
        };
        let mut conn = Connection::connect_with(&addr, &options).await.expect("connect");
        assert!(matches!(conn.command(&["PING"]).await, Err(ClientError::Timeout)));
        assert!(matches!(conn.command(&["PING"]).await, Err(ClientError::Closed)));
    }

    #[tokio::test]
    async fn pushes_are_set_aside_and_attributes_dropped() {
        let addr = scripted_server(
            request_len(&[&["GET", "k"]]),
            vec![b">2\r\n+invalidate\r\n*1\r\n$1\r\nk\r\n|1\r\n+ttl\r\n:3\r\n$1\r\nv\r\n".to_vec()],
        )
        .await;
        let mut conn = Connection::connect(&addr).await.expect("connect");
        assert_eq!(
            conn.command(&["GET", "k"]).await.expect("reply"),
            Frame::Bulk(Bytes::from_static(b"v"))
        );
        let pushes = conn.take_pushes();
        assert_eq!(pushes.len(), 1);
        assert!(matches!(&pushes[0], Frame::Push(items) if items.len() == 2));
    }

    #[tokio::test]
    async fn command_refuses_to_run_ahead_of_unread_replies() {
        let addr = scripted_server(request_len(&[&["PING"]]), vec![b"+PONG\r\n".to_vec()]).await;
        let mut conn = Connection::connect(&addr).await.expect("connect");
        conn.queue(&["PING"]);
        assert!(matches!(conn.command(&["PING"]).await, Err(ClientError::Pending(1))));
        assert_eq!(
            conn.read_reply().await.expect("pong"),
            Frame::Simple(Bytes::from_static(b"PONG"))
        );
    }

    #[tokio::test]
    async fn connecting_to_nothing_is_an_io_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        drop(listener);
        assert!(matches!(Connection::connect(&addr).await, Err(ClientError::Io(_))));
    }
}
