//! The differential runner: replays a data file of commands against the real redis-server and against
//! shoal-server and compares the raw reply bytes. The file format is documented in `tests/diff/README.md`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::resp::{self, escape_short};
use crate::{split_args, RawConn};

/// How long one reply may take before the side counts as hung.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest `!sleep` allowed.
const MAX_SLEEP: Duration = Duration::from_secs(5);
/// The most SCAN calls one `!scanall` may make on one side.
const MAX_SCAN_CALLS: usize = 10_000;

/// Modifiers set by directives, applying to the next command only.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Modifiers {
    /// `!sort`: sort the elements of the next aggregate reply.
    pub sort: bool,
    /// `!sortpairs`: sort the (key, value) pairs of the next flat array or map reply.
    pub sortpairs: bool,
    /// `!ignore`: compare only the reply type, unless either side replied with an error.
    pub ignore: bool,
    /// `!noreply`: neither side sends a reply to the next command (CLIENT REPLY OFF/SKIP).
    pub noreply: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StepKind {
    /// A command, split like redis-cli splits, sent as a multibulk array.
    Command(Vec<Vec<u8>>),
    /// `!inline TEXT`: TEXT followed by CRLF, sent as is (an inline command).
    Inline(Vec<u8>),
    /// `!resp3` / `!resp2`: HELLO 3 / HELLO 2 on both sides; the replies (server versions, ids) are not compared.
    Hello(u8),
    /// `!sleep SECONDS`
    Sleep(Duration),
    /// `!scanall ARGS...`: SCAN to completion with ARGS on both sides, comparing the sorted, deduplicated keys.
    ScanAll(Vec<Vec<u8>>),
    /// `!reconnect`: fresh connections on both sides.
    Reconnect,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// 1-based line number in the data file.
    pub line: usize,
    /// The line as written, for messages.
    pub text: String,
    pub kind: StepKind,
    pub mods: Modifiers,
}

/// Parses a data file. Errors name the line.
pub fn parse(src: &str) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    let mut pending = Modifiers::default();
    for (i, raw) in src.lines().enumerate() {
        let line = i + 1;
        let text = raw.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let err = |m: &str| format!("line {line}: {m}: {text}");
        let step = |kind: StepKind, mods: Modifiers| Step {
            line,
            text: text.to_string(),
            kind,
            mods,
        };
        if let Some(d) = text.strip_prefix('!') {
            let (name, rest) = match d.split_once(char::is_whitespace) {
                Some((n, r)) => (n, r.trim()),
                None => (d, ""),
            };
            let no_args = |kind: &str| {
                if rest.is_empty() {
                    Ok(())
                } else {
                    Err(err(&format!("!{kind} takes no argument")))
                }
            };
            match name {
                "sort" => {
                    no_args(name)?;
                    pending.sort = true
                }
                "sortpairs" => {
                    no_args(name)?;
                    pending.sortpairs = true
                }
                "ignore" => {
                    no_args(name)?;
                    pending.ignore = true
                }
                "noreply" => {
                    no_args(name)?;
                    pending.noreply = true
                }
                "resp3" | "resp2" => {
                    no_args(name)?;
                    let v = if name == "resp3" { 3 } else { 2 };
                    steps.push(step(StepKind::Hello(v), Modifiers::default()));
                }
                "reconnect" => {
                    no_args(name)?;
                    steps.push(step(StepKind::Reconnect, Modifiers::default()));
                }
                "sleep" => {
                    let secs: f64 = rest.parse().map_err(|_| err("!sleep takes seconds"))?;
                    let d = Duration::try_from_secs_f64(secs).map_err(|_| err("bad duration"))?;
                    if d > MAX_SLEEP {
                        return Err(err(&format!("!sleep is limited to {MAX_SLEEP:?}")));
                    }
                    steps.push(step(StepKind::Sleep(d), Modifiers::default()));
                }
                "scanall" => {
                    let args = split_args(rest).map_err(|e| err(&e))?;
                    steps.push(step(StepKind::ScanAll(args), std::mem::take(&mut pending)));
                }
                "inline" => {
                    if rest.is_empty() {
                        return Err(err("!inline needs text"));
                    }
                    steps.push(step(
                        StepKind::Inline(rest.as_bytes().to_vec()),
                        std::mem::take(&mut pending),
                    ));
                }
                _ => return Err(err("unknown directive")),
            }
            continue;
        }
        let args = split_args(text).map_err(|e| err(&e))?;
        steps.push(step(StepKind::Command(args), std::mem::take(&mut pending)));
    }
    if pending != Modifiers::default() {
        return Err("a directive at the end of the file applies to no command".into());
    }
    Ok(steps)
}

/// One difference between the two servers.
#[derive(Debug, Clone)]
pub struct Mismatch {
    pub file: String,
    pub line: usize,
    pub command: String,
    pub what: String,
    pub redis: String,
    pub shoal: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}:{}: {}", self.file, self.line, self.command)?;
        if !self.what.is_empty() {
            writeln!(f, "    ({})", self.what)?;
        }
        writeln!(f, "    redis: {}", self.redis)?;
        write!(f, "    shoal: {}", self.shoal)
    }
}

/// What one file run produced.
#[derive(Debug, Default)]
pub struct FileReport {
    /// Commands sent (command lines, `!inline` and `!scanall` lines).
    pub commands: usize,
    pub mismatches: Vec<Mismatch>,
}

struct Side {
    name: &'static str,
    port: u16,
    conn: Option<RawConn>,
}

impl Side {
    fn conn(&mut self) -> Result<&mut RawConn, String> {
        if self.conn.is_none() {
            let mut c = RawConn::connect(self.port).map_err(|e| format!("<cannot connect to {}: {e}>", self.name))?;
            c.set_timeout(REPLY_TIMEOUT);
            self.conn = Some(c);
        }
        Ok(self.conn.as_mut().unwrap())
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        let r = self.conn()?.send(bytes);
        r.map_err(|e| {
            self.conn = None;
            format!("<send failed: {e}>")
        })
    }

    fn read(&mut self) -> Result<Vec<u8>, String> {
        let r = self.conn()?.read_reply();
        r.map_err(|e| {
            self.conn = None;
            format!("<no reply: {e}>")
        })
    }

    fn request(&mut self, bytes: &[u8]) -> Result<Vec<u8>, String> {
        self.send(bytes)?;
        self.read()
    }

    /// SCAN with `args` until the cursor is 0: the sorted, deduplicated keys, or the first error reply.
    fn scan_all(&mut self, args: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, Vec<u8>> {
        let mut cursor = b"0".to_vec();
        let mut keys = Vec::new();
        for _ in 0..MAX_SCAN_CALLS {
            let mut cmd = vec![b"SCAN".to_vec(), cursor.clone()];
            cmd.extend(args.iter().cloned());
            let reply = self.request(&crate::encode_command(&cmd)).map_err(String::into_bytes)?;
            let Some((_, elems)) = resp::split_aggregate(&reply) else {
                return Err(reply);
            };
            if elems.len() != 2 {
                return Err(reply);
            }
            let (Some(next), Some((_, batch))) = (resp::as_str(&elems[0]), resp::split_aggregate(&elems[1])) else {
                return Err(reply);
            };
            for k in batch {
                keys.push(resp::as_str(&k).unwrap_or(k));
            }
            if next == b"0" {
                keys.sort();
                keys.dedup();
                return Ok(keys);
            }
            cursor = next;
        }
        Err(format!("<SCAN did not finish within {MAX_SCAN_CALLS} calls>").into_bytes())
    }
}

fn is_error(reply: &[u8]) -> bool {
    matches!(reply.first(), Some(b'-') | Some(b'!'))
}

/// The reply as compared: with `!sort` / `!sortpairs` applied.
fn normalize(reply: Vec<u8>, mods: Modifiers) -> Vec<u8> {
    if !(mods.sort || mods.sortpairs) {
        return reply;
    }
    let Some((header, mut elems)) = resp::split_aggregate(&reply) else {
        return reply;
    };
    if mods.sortpairs {
        if elems.len() % 2 != 0 {
            return reply;
        }
        // Sorted by key element first; pairs with equal keys by their values.
        let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = elems.chunks(2).map(|p| (p[0].clone(), p[1].clone())).collect();
        pairs.sort();
        let pairs: Vec<Vec<u8>> = pairs.into_iter().map(|(k, v)| [k, v].concat()).collect();
        let mut out = header;
        out.extend(pairs.concat());
        return out;
    }
    elems.sort();
    let mut out = header;
    out.extend(elems.concat());
    out
}

fn show(r: &Result<Vec<u8>, String>) -> String {
    match r {
        Ok(b) => escape_short(b, 2000),
        Err(e) => e.clone(),
    }
}

/// Runs the steps of one file on fresh connections to both servers. The caller flushes the data between files.
pub fn run_steps(file: &str, steps: &[Step], redis_port: u16, shoal_port: u16) -> FileReport {
    let mut report = FileReport::default();
    let mut redis = Side {
        name: "redis-server",
        port: redis_port,
        conn: None,
    };
    let mut shoal = Side {
        name: "shoal-server",
        port: shoal_port,
        conn: None,
    };
    let mismatch = |report: &mut FileReport, step: &Step, what: &str, r: String, s: String| {
        report.mismatches.push(Mismatch {
            file: file.to_string(),
            line: step.line,
            command: step.text.clone(),
            what: what.to_string(),
            redis: r,
            shoal: s,
        })
    };
    // DIFF_TRACE=1 prints every command with both replies.
    let trace = std::env::var_os("DIFF_TRACE").is_some_and(|v| !v.is_empty() && v != "0");
    for step in steps {
        match &step.kind {
            StepKind::Sleep(d) => std::thread::sleep(*d),
            StepKind::Reconnect => {
                redis.conn = None;
                shoal.conn = None;
            }
            StepKind::Hello(v) => {
                let cmd = crate::encode_command(&["HELLO", &v.to_string()]);
                let (r, s) = (redis.request(&cmd), shoal.request(&cmd));
                let ok = |x: &Result<Vec<u8>, String>| matches!(x, Ok(b) if b.first() == Some(if *v == 3 { &b'%' } else { &b'*' }));
                if !ok(&r) || !ok(&s) {
                    mismatch(&mut report, step, "HELLO failed", show(&r), show(&s));
                }
            }
            StepKind::ScanAll(args) => {
                report.commands += 1;
                let fmt = |x: Result<Vec<Vec<u8>>, Vec<u8>>| match x {
                    Ok(keys) => {
                        let ks: Vec<String> = keys.iter().map(|k| escape_short(k, 200)).collect();
                        format!("{} keys [{}]", ks.len(), ks.join(", "))
                    }
                    Err(e) => escape_short(&e, 2000),
                };
                let (r, s) = (fmt(redis.scan_all(args)), fmt(shoal.scan_all(args)));
                if r != s {
                    mismatch(&mut report, step, "full SCAN key sets differ", r, s);
                }
            }
            StepKind::Command(_) | StepKind::Inline(_) => {
                report.commands += 1;
                let bytes = match &step.kind {
                    StepKind::Command(args) => crate::encode_command(args),
                    StepKind::Inline(text) => [text.as_slice(), b"\r\n"].concat(),
                    _ => unreachable!(),
                };
                if step.mods.noreply {
                    let (r, s) = (redis.send(&bytes), shoal.send(&bytes));
                    if r.is_err() || s.is_err() {
                        mismatch(
                            &mut report,
                            step,
                            "send failed",
                            show(&r.map(|_| vec![])),
                            show(&s.map(|_| vec![])),
                        );
                    }
                    continue;
                }
                let r = redis.request(&bytes).map(|b| normalize(b, step.mods));
                let s = shoal.request(&bytes).map(|b| normalize(b, step.mods));
                if trace {
                    eprintln!(
                        "{file}:{}: {}\n    redis: {}\n    shoal: {}",
                        step.line,
                        step.text,
                        show(&r),
                        show(&s)
                    );
                }
                let same = match (&r, &s) {
                    (Ok(a), Ok(b)) if step.mods.ignore && !is_error(a) && !is_error(b) => a.first() == b.first(),
                    (Ok(a), Ok(b)) => a == b,
                    // The same failure on both sides (both closed the connection, say) is the same behaviour.
                    (Err(a), Err(b)) => a == b,
                    _ => false,
                };
                if !same {
                    let what = if step.mods.ignore {
                        "!ignore: reply types differ, or an error differs"
                    } else {
                        ""
                    };
                    mismatch(&mut report, step, what, show(&r), show(&s));
                }
                if r.is_err() || s.is_err() {
                    // Start both over from a known state rather than compare out-of-step replies.
                    redis.conn = None;
                    shoal.conn = None;
                    continue;
                }
                let is_quit = matches!(&step.kind, StepKind::Command(a) if a.first().is_some_and(|c| c.eq_ignore_ascii_case(b"quit")));
                if is_quit {
                    let closed = |side: &mut Side| {
                        side.conn
                            .take()
                            .map(|mut c| c.read_to_close(Duration::from_secs(2)))
                            .map(|(rest, closed)| format!("closed: {closed}, then sent: {}", escape_short(&rest, 200)))
                            .unwrap_or_default()
                    };
                    let (rc, sc) = (closed(&mut redis), closed(&mut shoal));
                    if rc != sc {
                        mismatch(&mut report, step, "connection state after QUIT", rc, sc);
                    }
                }
            }
        }
    }
    // Replies nobody asked for (a command answered twice, a reply after CLIENT REPLY OFF, ...).
    let leftover = |side: &mut Side| {
        side.conn
            .as_mut()
            .map(|c| c.pending(Duration::from_millis(30)))
            .unwrap_or_default()
    };
    let (r, s) = (leftover(&mut redis), leftover(&mut shoal));
    if r != s {
        report.mismatches.push(Mismatch {
            file: file.to_string(),
            line: 0,
            command: "(end of file)".into(),
            what: "unrequested bytes left on the connection".into(),
            redis: escape_short(&r, 2000),
            shoal: escape_short(&s, 2000),
        });
    }
    report
}

/// The data files in `dir` (`*.txt`), sorted by name, optionally restricted by `$DIFF_FILES` (comma-separated
/// file stems, e.g. `DIFF_FILES=strings,keys`).
pub fn data_files(dir: &Path) -> Vec<PathBuf> {
    let only: Option<Vec<String>> = std::env::var("DIFF_FILES")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.split(',').map(|x| x.trim().to_string()).collect());
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .filter(|p| {
            only.as_ref().is_none_or(|o| {
                o.iter()
                    .any(|n| p.file_stem().is_some_and(|s| s.to_string_lossy() == *n))
            })
        })
        .collect();
    files.sort();
    files
}

/// FLUSHALL on a server through a fresh connection.
pub fn flush_all(port: u16) -> Result<(), String> {
    let mut c = RawConn::connect(port).map_err(|e| e.to_string())?;
    let r = c.command(&["FLUSHALL"]).map_err(|e| e.to_string())?;
    if r == b"+OK\r\n" {
        Ok(())
    } else {
        Err(format!("FLUSHALL replied {}", resp::escape(&r)))
    }
}

/// Runs every file against both servers; returns the total number of commands and all mismatches.
pub fn run_files(files: &[PathBuf], redis_port: u16, shoal_port: u16) -> (usize, Vec<Mismatch>) {
    let mut total = 0;
    let mut all = Vec::new();
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let src = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {name}: {e}"));
        let steps = parse(&src).unwrap_or_else(|e| panic!("{name}: {e}"));
        for port in [redis_port, shoal_port] {
            if let Err(e) = flush_all(port) {
                all.push(Mismatch {
                    file: name.clone(),
                    line: 0,
                    command: "FLUSHALL (before the file)".into(),
                    what: format!("port {port}"),
                    redis: String::new(),
                    shoal: e,
                });
            }
        }
        let start = Instant::now();
        let report = run_steps(&name, &steps, redis_port, shoal_port);
        eprintln!(
            "{name}: {} commands, {} mismatches, {:.1?}",
            report.commands,
            report.mismatches.len(),
            start.elapsed()
        );
        total += report.commands;
        all.extend(report.mismatches);
    }
    (total, all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_directives() {
        let steps = parse(
            "# comment\n\nSET a \"b c\"\n!sort\nKEYS *\n!ignore\n!noreply\nCLIENT REPLY OFF\n!sleep 0.5\n\
             !scanall MATCH k* COUNT 2\n!resp3\n!inline PING\n!reconnect\n",
        )
        .unwrap();
        assert_eq!(steps.len(), 8);
        assert_eq!(steps[0].line, 3);
        assert_eq!(
            steps[0].kind,
            StepKind::Command(vec![b"SET".to_vec(), b"a".to_vec(), b"b c".to_vec()])
        );
        assert!(steps[1].mods.sort);
        assert!(steps[2].mods.ignore && steps[2].mods.noreply);
        assert_eq!(steps[3].kind, StepKind::Sleep(Duration::from_millis(500)));
        assert!(matches!(steps[4].kind, StepKind::ScanAll(ref a) if a.len() == 4));
        assert_eq!(steps[5].kind, StepKind::Hello(3));
        assert_eq!(steps[6].kind, StepKind::Inline(b"PING".to_vec()));
        assert_eq!(steps[7].kind, StepKind::Reconnect);
        assert!(parse("!bogus\n").is_err());
        assert!(parse("!sort\n").is_err());
        assert!(parse("SET \"a\n").is_err());
        assert!(parse("!sleep 60\n").is_err());
    }

    #[test]
    fn sorts_replies() {
        let m = Modifiers {
            sort: true,
            ..Default::default()
        };
        assert_eq!(
            normalize(b"*2\r\n$1\r\nb\r\n$1\r\na\r\n".to_vec(), m),
            b"*2\r\n$1\r\na\r\n$1\r\nb\r\n".to_vec()
        );
        let m = Modifiers {
            sortpairs: true,
            ..Default::default()
        };
        assert_eq!(
            normalize(b"*4\r\n$1\r\nb\r\n:1\r\n$1\r\na\r\n:2\r\n".to_vec(), m),
            b"*4\r\n$1\r\na\r\n:2\r\n$1\r\nb\r\n:1\r\n".to_vec()
        );
    }
}
