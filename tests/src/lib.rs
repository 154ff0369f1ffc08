//! Helpers shared by the end-to-end tests: starting servers on free ports, talking to them.
//!
//! * [`ShoalServer::start`] / [`RedisServer::start`] start `shoal-server` / the real `redis-server` on a free
//!   loopback port, each in its own temporary directory, and return a [`TestServer`] guard that kills the
//!   process (by pid) when dropped, printing its captured log if the test is failing.
//! * [`RawConn`]: a plain TCP connection that sends bytes and reads one complete reply as raw bytes, for
//!   byte-exact comparisons ([`resp`] splits replies without interpreting them, independently of the server's own protocol crate).
//! * [`split_args`]: redis-cli's argument splitting (`sdssplitargs`), used by the differential data files.
//! * [`run_with_timeout`], [`redis_cli`], [`redis_benchmark`]: bounded runs of the command-line tools.
//!
//! Every wait here is bounded in time; nothing kills a process it did not start.

pub mod diff;
pub mod netcut;
pub mod resp;

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

pub use resp::{reply_len, split_aggregate, RespError};

/// How long a server may take to answer its first PING.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Where the `shoal-server` binary is: `$SHOAL_SERVER_BIN` if set, else `target/<profile>/shoal-server` next to
/// the running test binary (which lives in `target/<profile>/deps/`), so `cargo test --release` uses the
/// release build and `cargo test` the debug build.
pub fn shoal_server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SHOAL_SERVER_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test-binary>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary lives in target/<profile>/deps");
    let bin = profile_dir.join("shoal-server");
    if !bin.exists() {
        panic!(
            "shoal-server binary not found at {}: build it first with `cargo build{} -p shoal-server`, \
             or point SHOAL_SERVER_BIN at it",
            bin.display(),
            if profile_dir.ends_with("release") {
                " --release"
            } else {
                ""
            }
        );
    }
    bin
}

/// The real Redis server binary: `$REDIS_SERVER_BIN`, else `redis-server` from `PATH`.
pub fn redis_server_bin() -> PathBuf {
    std::env::var_os("REDIS_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("redis-server"))
}

/// A loopback port that was free a moment ago (bound to port 0 and released). Another process may take it
/// before the server binds it; [`TestServer::start`] retries on another port when that happens.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// A server process started by a test. Killed (SIGKILL, by its pid) when dropped; its stdout and stderr go to
/// a log file in its temporary directory, printed to stderr when the test is failing.
pub struct TestServer {
    pub name: &'static str,
    pub port: u16,
    child: Child,
    log_path: PathBuf,
    // Declared last: removed after the process is gone.
    dir: tempfile::TempDir,
}

/// Starts `shoal-server`.
pub struct ShoalServer;

impl ShoalServer {
    /// Starts `shoal-server --bind 127.0.0.1 --port N --dir <tempdir>` followed by `args`.
    pub fn start(args: &[&str]) -> TestServer {
        TestServer::start("shoal-server", &shoal_server_bin(), &[], args)
    }

    /// Starts `shoal-server FILE --bind ... ` followed by `args`: the config-file form.
    pub fn start_with_config(file: &Path, args: &[&str]) -> TestServer {
        let file = file.to_string_lossy().into_owned();
        TestServer::start_with_leading("shoal-server", &shoal_server_bin(), &[file.as_str()], &[], args)
    }
}

/// Starts the real `redis-server`.
pub struct RedisServer;

impl RedisServer {
    /// Starts `redis-server --bind 127.0.0.1 --port N --dir <tempdir> --save '' --appendonly no` followed by
    /// `args`.
    pub fn start(args: &[&str]) -> TestServer {
        TestServer::start(
            "redis-server",
            &redis_server_bin(),
            &["--save", "", "--appendonly", "no"],
            args,
        )
    }
}

impl TestServer {
    /// Starts `bin` on a free port and waits (at most [`STARTUP_TIMEOUT`]) until it answers PING. A start
    /// whose process exits early (a port taken in the meantime, say) is retried on another port, twice.
    pub fn start(name: &'static str, bin: &Path, fixed: &[&str], args: &[&str]) -> TestServer {
        TestServer::start_with_leading(name, bin, &[], fixed, args)
    }

    /// Like [`TestServer::start`], with `leading` arguments before the generated ones (a config file path).
    pub fn start_with_leading(
        name: &'static str,
        bin: &Path,
        leading: &[&str],
        fixed: &[&str],
        args: &[&str],
    ) -> TestServer {
        let mut last_log = String::new();
        for _attempt in 0..3 {
            let dir = tempfile::Builder::new()
                .prefix(&format!("{name}-"))
                .tempdir()
                .expect("tempdir");
            let port = free_port();
            let log_path = dir.path().join("server.log");
            let log = File::create(&log_path).expect("create log file");
            let mut cmd = Command::new(bin);
            cmd.args(leading)
                .arg("--bind")
                .arg("127.0.0.1")
                .arg("--port")
                .arg(port.to_string())
                .arg("--dir")
                .arg(dir.path())
                .args(fixed)
                .args(args)
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone log"))
                .stderr(log);
            set_parent_death_signal(&mut cmd);
            let child = match cmd.spawn() {
                Ok(c) => c,
                Err(e) => panic!("cannot start {} ({}): {e}", name, bin.display()),
            };
            let mut server = TestServer {
                name,
                port,
                child,
                log_path,
                dir,
            };
            match server.wait_ready() {
                Ok(()) => return server,
                Err(e) => {
                    last_log = format!("{e}\n--- {name} log ---\n{}", server.log());
                    // Dropping kills it if it is still running.
                }
            }
        }
        panic!("{name} did not start: {last_log}");
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut last_err = String::from("never tried");
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("{} exited during startup: {status}", self.name));
            }
            match self.try_ping() {
                Ok(()) => return Ok(()),
                Err(e) => last_err = e.to_string(),
            }
            thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "{} did not answer PING on port {} within {:?}: {last_err}",
            self.name, self.port, STARTUP_TIMEOUT
        ))
    }

    fn try_ping(&self) -> io::Result<()> {
        let mut c = RawConn::connect_timeout(self.port, Duration::from_millis(500))?;
        c.set_timeout(Duration::from_millis(500));
        let r = c.command(&[b"PING".as_slice()])?;
        // NOAUTH and LOADING errors count as "up" too: the server is parsing requests.
        if r.starts_with(b"+") || r.starts_with(b"-") {
            Ok(())
        } else {
            Err(io::Error::other(format!("unexpected PING reply {}", resp::escape(&r))))
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The captured stdout/stderr so far (the last 64 KiB).
    pub fn log(&self) -> String {
        let mut s = Vec::new();
        if let Ok(mut f) = File::open(&self.log_path) {
            let _ = f.read_to_end(&mut s);
        }
        let start = s.len().saturating_sub(64 * 1024);
        String::from_utf8_lossy(&s[start..]).into_owned()
    }

    /// Waits at most `timeout` for the process to exit on its own; its status if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// A new raw connection (10 s read timeout).
    pub fn raw(&self) -> RawConn {
        RawConn::connect(self.port).unwrap_or_else(|e| panic!("connect to {}: {e}", self.name))
    }

    /// `redis://127.0.0.1:N/`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the process now (SIGKILL by pid) and waits for it.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        let _ = self.child.kill();
        self.child.wait().ok()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let exited_before = self.child.try_wait().ok().flatten();
        self.kill();
        if thread::panicking() {
            // eprintln! rather than a raw stderr write, so the test harness shows it with the failing test.
            eprintln!(
                "--- {} (pid {}, port {}){} log ---\n{}\n--- end of {} log ---",
                self.name,
                self.child.id(),
                self.port,
                match exited_before {
                    Some(s) => format!(" had already exited: {s};"),
                    None => String::new(),
                },
                self.log(),
                self.name
            );
        }
    }
}

/// Makes the child receive SIGKILL if the thread that started it dies (a test process killed by a timeout),
/// so no server outlives its test run.
fn set_parent_death_signal(cmd: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec here.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

/// A plain TCP connection speaking raw RESP: what is sent and what is read are bytes, never reinterpreted.
pub struct RawConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawConn {
    pub fn connect(port: u16) -> io::Result<RawConn> {
        let mut c = Self::connect_timeout(port, Duration::from_secs(5))?;
        c.set_timeout(Duration::from_secs(10));
        Ok(c)
    }

    pub fn connect_timeout(port: u16, timeout: Duration) -> io::Result<RawConn> {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(Duration::from_secs(10)))?;
        Ok(RawConn {
            stream,
            buf: Vec::new(),
        })
    }

    /// The read timeout for [`RawConn::read_reply`] (each read call).
    pub fn set_timeout(&mut self, t: Duration) {
        let _ = self.stream.set_read_timeout(Some(t));
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Sends one command as a multibulk array of bulk strings.
    pub fn send_command<A: AsRef<[u8]>>(&mut self, args: &[A]) -> io::Result<()> {
        self.send(&encode_command(args))
    }

    /// Sends one command and reads its reply.
    pub fn command<A: AsRef<[u8]>>(&mut self, args: &[A]) -> io::Result<Vec<u8>> {
        self.send_command(args)?;
        self.read_reply()
    }

    /// Like [`RawConn::command`], with string arguments.
    pub fn cmd(&mut self, args: &[&str]) -> Vec<u8> {
        self.command(args)
            .unwrap_or_else(|e| panic!("command {args:?} failed: {e}"))
    }

    /// Reads exactly one complete reply and returns its raw bytes. Bytes after it stay buffered.
    pub fn read_reply(&mut self) -> io::Result<Vec<u8>> {
        loop {
            match resp::reply_len(&self.buf) {
                Ok(Some(n)) => {
                    let rest = self.buf.split_off(n);
                    return Ok(std::mem::replace(&mut self.buf, rest));
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("malformed reply ({e}): {}", resp::escape(&self.buf)),
                    ))
                }
            }
            let mut chunk = [0u8; 64 * 1024];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("connection closed; unparsed: {}", resp::escape(&self.buf)),
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads until the peer closes the connection or `timeout` passes without it closing. Returns everything
    /// read (including bytes already buffered) and whether the connection was closed (EOF or reset).
    pub fn read_to_close(&mut self, timeout: Duration) -> (Vec<u8>, bool) {
        let deadline = Instant::now() + timeout;
        let mut out = std::mem::take(&mut self.buf);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return (out, false);
            }
            let _ = self.stream.set_read_timeout(Some(left.max(Duration::from_millis(1))));
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return (out, true),
                Ok(n) => out.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    return (out, false)
                }
                // ECONNRESET and friends: closed.
                Err(_) => return (out, true),
            }
        }
    }

    /// Bytes that arrive within `wait` without anything having been asked (left-over replies).
    pub fn pending(&mut self, wait: Duration) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.buf);
        let _ = self.stream.set_read_timeout(Some(wait));
        let mut chunk = [0u8; 64 * 1024];
        if let Ok(n) = self.stream.read(&mut chunk) {
            out.extend_from_slice(&chunk[..n]);
        }
        let _ = self.stream.set_read_timeout(Some(Duration::from_secs(10)));
        out
    }

    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

/// An integer field of an INFO section, read over `conn`.
pub fn info_field(conn: &mut RawConn, section: &str, field: &str) -> u64 {
    let reply = conn.cmd(&["INFO", section]);
    let text = String::from_utf8_lossy(&reply);
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in INFO {section}: {text}"))
}

/// `*N\r\n$len\r\narg\r\n...`
pub fn encode_command<A: AsRef<[u8]>>(args: &[A]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        let a = a.as_ref();
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// redis-cli's (and redis.conf's) argument splitting, `sdssplitargs`: words separated by whitespace;
/// `"..."` with the escapes `\n \r \t \b \a \\ \" \xHH` (any other `\c` is `c`); `'...'` where only `\'`
/// is an escape. A closing quote must be followed by whitespace or the end of the line.
pub fn split_args(line: &str) -> Result<Vec<Vec<u8>>, String> {
    let p = line.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    loop {
        while i < p.len() && p[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= p.len() {
            return Ok(out);
        }
        let mut cur = Vec::new();
        let (mut inq, mut insq) = (false, false);
        loop {
            if inq {
                if i >= p.len() {
                    return Err("unbalanced double quotes".into());
                }
                if p[i] == b'\\'
                    && i + 3 < p.len()
                    && p[i + 1] == b'x'
                    && p[i + 2].is_ascii_hexdigit()
                    && p[i + 3].is_ascii_hexdigit()
                {
                    let hex = std::str::from_utf8(&p[i + 2..i + 4]).unwrap();
                    cur.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 3;
                } else if p[i] == b'\\' && i + 1 < p.len() {
                    i += 1;
                    cur.push(match p[i] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        c => c,
                    });
                } else if p[i] == b'"' {
                    if i + 1 < p.len() && !p[i + 1].is_ascii_whitespace() {
                        return Err("closing quote must be followed by a space".into());
                    }
                    i += 1;
                    break;
                } else {
                    cur.push(p[i]);
                }
            } else if insq {
                if i >= p.len() {
                    return Err("unbalanced single quotes".into());
                }
                if p[i] == b'\\' && i + 1 < p.len() && p[i + 1] == b'\'' {
                    i += 1;
                    cur.push(b'\'');
                } else if p[i] == b'\'' {
                    if i + 1 < p.len() && !p[i + 1].is_ascii_whitespace() {
                        return Err("closing quote must be followed by a space".into());
                    }
                    i += 1;
                    break;
                } else {
                    cur.push(p[i]);
                }
            } else {
                if i >= p.len() {
                    break;
                }
                match p[i] {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => break,
                    b'"' => inq = true,
                    b'\'' => insq = true,
                    c => cur.push(c),
                }
            }
            i += 1;
        }
        out.push(cur);
    }
}

/// The output of a bounded process run.
#[derive(Debug)]
pub struct RunOutput {
    /// `None` if the process was killed because it ran out of time.
    pub status: Option<ExitStatus>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub elapsed: Duration,
}

impl RunOutput {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }
}

/// Runs `cmd` with `stdin` fed to it, killing it (by its pid) if it has not finished within `timeout`.
pub fn run_with_timeout(mut cmd: Command, stdin: Option<Vec<u8>>, timeout: Duration) -> RunOutput {
    let start = Instant::now();
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    set_parent_death_signal(&mut cmd);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let writer = stdin.map(|data| {
        let mut pipe = child.stdin.take().unwrap();
        thread::spawn(move || {
            let _ = pipe.write_all(&data);
            // Dropping the pipe closes it: the child sees EOF.
        })
    });
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let out_t = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out_pipe.read_to_end(&mut v);
        v
    });
    let err_t = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });
    let deadline = start + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    if let Some(w) = writer {
        let _ = w.join();
    }
    RunOutput {
        status,
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
        elapsed: start.elapsed(),
    }
}

/// `redis-cli -h 127.0.0.1 -p PORT args...`, at most `timeout`.
pub fn redis_cli(port: u16, args: &[&str], stdin: Option<Vec<u8>>, timeout: Duration) -> RunOutput {
    let mut cmd = Command::new(std::env::var_os("REDIS_CLI_BIN").unwrap_or_else(|| "redis-cli".into()));
    cmd.arg("-h")
        .arg("127.0.0.1")
        .arg("-p")
        .arg(port.to_string())
        .args(args);
    run_with_timeout(cmd, stdin, timeout)
}

/// `redis-benchmark -h 127.0.0.1 -p PORT args...`, at most `timeout`.
pub fn redis_benchmark(port: u16, args: &[&str], timeout: Duration) -> RunOutput {
    let mut cmd = Command::new(std::env::var_os("REDIS_BENCHMARK_BIN").unwrap_or_else(|| "redis-benchmark".into()));
    cmd.arg("-h")
        .arg("127.0.0.1")
        .arg("-p")
        .arg(port.to_string())
        .args(args);
    run_with_timeout(cmd, None, timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<Vec<u8>> {
        v.iter().map(|x| x.as_bytes().to_vec()).collect()
    }

    #[test]
    fn split_args_like_redis_cli() {
        assert_eq!(split_args("SET a b").unwrap(), s(&["SET", "a", "b"]));
        assert_eq!(split_args("  SET   a\tb  ").unwrap(), s(&["SET", "a", "b"]));
        assert_eq!(split_args(r#"SET "a b" 'c d'"#).unwrap(), s(&["SET", "a b", "c d"]));
        assert_eq!(split_args(r#"SET "" ''"#).unwrap(), s(&["SET", "", ""]));
        assert_eq!(
            split_args(r#"SET "\x00\xff\n\r\t\"\\\q" 'it\'s \n'"#).unwrap(),
            vec![b"SET".to_vec(), b"\x00\xff\n\r\t\"\\q".to_vec(), b"it's \\n".to_vec()]
        );
        assert_eq!(split_args("a\"b\"").unwrap(), s(&["ab"]));
        assert!(split_args(r#"SET "a"b"#).is_err());
        assert!(split_args(r#"SET "ab"#).is_err());
        assert!(split_args("SET 'ab").is_err());
        assert_eq!(split_args("").unwrap(), Vec::<Vec<u8>>::new());
    }

    #[test]
    fn encodes_commands() {
        assert_eq!(
            encode_command(&["SET", "k", ""]),
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n".to_vec()
        );
    }
}
