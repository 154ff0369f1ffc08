//! The server's request parser: multibulk and inline commands, parsed in place into argument spans.
//!
//! This is the server's hot path, so a multibulk request costs no copy and, once the span vector has grown, no
//! allocation: each argument is an offset range into the caller's read buffer. Inline requests need unquoting,
//! so their arguments are written into a scratch buffer owned by the parser and the spans point there.
//!
//! The behaviour is that of Redis 7.0's `processInlineBuffer`, `processMultibulkBuffer` and `sdssplitargs`
//! (networking.c, sds.c), quirks included: lines are found with `strchr`, so a NUL byte before the terminator
//! stalls the request until the 64 KiB limit trips; only the `\r` of a length line is looked for and the byte
//! after it is skipped unseen; the two bytes after a bulk payload are not checked. One deliberate difference:
//! Redis checks the 64 KiB line limits only when a read leaves the buffer without a terminator, so whether a
//! 70 KB inline line is accepted depends on how the bytes happened to arrive. Here a terminator must lie within
//! the first 64 KiB + 1 bytes of its line, which is what Redis does when the bytes trickle in, so the outcome
//! never depends on how the stream was split.

use crate::error::ProtocolError;

/// Redis's `PROTO_INLINE_MAX_SIZE`: the longest inline request, and the longest length line of a multibulk.
pub const PROTO_INLINE_MAX_SIZE: usize = 64 * 1024;

/// Redis's default `proto-max-bulk-len`.
pub const DEFAULT_MAX_BULK_LEN: i64 = 512 * 1024 * 1024;

/// The most arguments and the longest argument a client that has not authenticated may send, so that it cannot
/// make the server buffer much before it has proven who it is (hard-coded in Redis too).
const UNAUTH_MAX_MULTIBULK: i64 = 10;
const UNAUTH_MAX_BULK: i64 = 16 * 1024;

/// The span vector is sized for at most this many arguments up front, as Redis caps its first `argv`
/// allocation: the count comes from the client and may be a lie.
const SPANS_INITIAL_CAP: usize = 1024;

/// After a request this large, the parser's buffers are released rather than kept for the life of the
/// connection.
const SPANS_KEEP_CAP: usize = 64 * 1024;
const SCRATCH_KEEP_CAP: usize = 256 * 1024;

/// What the connection allows the client to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// `proto-max-bulk-len`: the longest argument.
    pub max_bulk_len: i64,
    /// False while the client still has to `AUTH`: requests are then limited to 10 arguments of 16 KiB each.
    pub authenticated: bool,
}

impl Default for RequestLimits {
    /// Redis's defaults for a server without a password: 512 MiB arguments, no authentication pending.
    fn default() -> Self {
        RequestLimits {
            max_bulk_len: DEFAULT_MAX_BULK_LEN,
            authenticated: true,
        }
    }
}

/// Where the parser stands inside the current request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    /// Between requests: the next call starts a new one.
    #[default]
    Start,
    /// Looking for the end of an inline line.
    Inline,
    /// Looking for the end of the `*<count>` line.
    Count,
    /// Reading bulks: `remaining` still to come, `bulk` the length of the current one once its `$` line is read.
    Bulks { remaining: usize, bulk: Option<usize> },
}

/// An incremental request parser, one per connection.
#[derive(Debug, Default)]
pub struct RequestParser {
    state: State,
    /// Bytes of the current request already parsed: the start of the line or payload being read.
    pos: usize,
    /// Where the search for the current line's terminator resumes, so a line is never scanned twice.
    scan: usize,
    /// Argument ranges, into the caller's buffer (multibulk) or into `scratch` (inline).
    spans: Vec<(usize, usize)>,
    /// The unquoted arguments of an inline request.
    scratch: Vec<u8>,
    inline: bool,
    /// After `Ok(None)`: the least number of further bytes the current request needs.
    needed: usize,
}

/// How the search for a line terminator ended.
enum Line {
    /// The terminator is at this index.
    At(usize),
    /// Not found yet; more bytes may bring it.
    Pending,
    /// Not within the 64 KiB window of the line, or never findable (a NUL byte came first) and the window is
    /// full: the line is too long.
    TooBig,
}

impl RequestParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses one request from the start of `buf`.
    ///
    /// * `Ok(Some(n))`: a complete request of `n` bytes; its arguments are available through
    ///   [`RequestParser::request`] until the next call. A request may have no arguments at all (an empty
    ///   inline line, `*0`, `*-5`): the caller skips it.
    /// * `Ok(None)`: incomplete. The parser keeps its progress; call again with a `buf` that starts at the same
    ///   byte and has more bytes appended.
    /// * `Err`: a framing error. Redis replies with the error text and closes the connection.
    pub fn parse(&mut self, buf: &[u8], limits: &RequestLimits) -> Result<Option<usize>, ProtocolError> {
        if buf.len() < self.pos.max(self.scan) {
            // The caller broke the contract (a buffer that does not extend the previous one); starting over is
            // the only answer that cannot read out of bounds.
            self.reset();
        }
        self.needed = 0;
        if self.state == State::Start && buf.first() == Some(&b'*') {
            if let Some(n) = self.parse_complete_multibulk(buf, limits) {
                return Ok(Some(n));
            }
        }
        if self.state == State::Start {
            let Some(&first) = buf.first() else {
                self.needed = 1;
                return Ok(None);
            };
            self.begin(first == b'*');
        }
        let result = match self.state {
            State::Inline => self.parse_inline(buf),
            State::Count => self.parse_count(buf, limits),
            State::Bulks { .. } => self.parse_bulks(buf, limits),
            State::Start => Ok(None),
        };
        match result {
            Ok(Some(n)) => {
                self.state = State::Start;
                self.pos = 0;
                self.scan = 0;
                Ok(Some(n))
            }
            Ok(None) => {
                self.needed = self.needed.max(1);
                Ok(None)
            }
            Err(e) => {
                self.state = State::Start;
                self.pos = 0;
                self.scan = 0;
                Err(e)
            }
        }
    }

    /// The arguments of the request the last `Ok(Some(_))` returned; `buf` must be the buffer passed to that
    /// call.
    pub fn request<'a>(&'a self, buf: &'a [u8]) -> Request<'a> {
        let base = if self.inline { self.scratch.as_slice() } else { buf };
        Request {
            base,
            spans: &self.spans,
            inline: self.inline,
        }
    }

    /// The argument spans of the request the last `Ok(Some(_))` returned, as offsets into that call's `buf`
    /// (for a multibulk request; an inline request's spans refer to the parser's own scratch space).
    pub fn spans(&self) -> &[(usize, usize)] {
        &self.spans
    }

    /// After `Ok(None)`: how many more bytes the current request needs at least (the rest of the bulk being
    /// read and its CRLF, or 1 while a line is incomplete), so the caller can reserve room once for a big
    /// value.
    pub fn bytes_needed(&self) -> usize {
        self.needed
    }

    /// Forgets any partially parsed request.
    pub fn reset(&mut self) {
        self.state = State::Start;
        self.pos = 0;
        self.scan = 0;
        self.needed = 0;
        self.spans.clear();
        self.scratch.clear();
        self.inline = false;
    }

    /// The common case in one pass: a whole, well-formed multibulk request already in `buf`, with plain
    /// decimal lengths each followed by CRLF. Anything else (incomplete, unusual, erroneous) returns `None`
    /// having changed nothing that matters, and the general state machine takes over from the first byte;
    /// so this path only ever accepts what the general one accepts, with the same spans.
    #[inline]
    fn parse_complete_multibulk(&mut self, buf: &[u8], limits: &RequestLimits) -> Option<usize> {
        if self.spans.capacity() > SPANS_KEEP_CAP {
            self.spans = Vec::new();
        }
        let mut spans = std::mem::take(&mut self.spans);
        spans.clear();
        let done = self.parse_complete_into(buf, 0, limits, &mut spans);
        self.spans = spans;
        if done.is_some() {
            self.inline = false;
        }
        done
    }

    /// The one-pass fast path on its own, for a caller that collects many requests' arguments in one vector:
    /// when `buf` starts with a whole, well-formed multibulk request with at least one argument and no request
    /// is half parsed, appends its argument spans (offset by `base`) to `out` and returns its length. Otherwise
    /// returns `None` with `out` unchanged, and [`RequestParser::parse`] must take the bytes. It accepts exactly
    /// what `parse` accepts through its own fast path, with the same spans.
    #[inline]
    pub fn parse_complete_into(
        &self,
        buf: &[u8],
        base: usize,
        limits: &RequestLimits,
        out: &mut Vec<(usize, usize)>,
    ) -> Option<usize> {
        if self.state != State::Start || buf.first() != Some(&b'*') {
            return None;
        }
        let (count, mut i) = small_decimal_line(buf, 1)?;
        if count == 0 || count > FAST_MAX_ARGS || (count > UNAUTH_MAX_MULTIBULK as u64 && !limits.authenticated) {
            return None;
        }
        let mark = out.len();
        for _ in 0..count {
            let bulk = (buf.get(i) == Some(&b'$'))
                .then(|| small_decimal_line(buf, i + 1))
                .flatten()
                .filter(|&(len, _)| {
                    len as i64 <= limits.max_bulk_len && (len <= UNAUTH_MAX_BULK as u64 || limits.authenticated)
                })
                .and_then(|(len, start)| {
                    let end = start.checked_add(len as usize)?;
                    let next = end.checked_add(2)?;
                    (next <= buf.len()).then_some((start, end, next))
                });
            let Some((start, end, next)) = bulk else {
                out.truncate(mark);
                return None;
            };
            out.push((start + base, end + base));
            i = next;
        }
        Some(i)
    }

    fn begin(&mut self, multibulk: bool) {
        if self.spans.capacity() > SPANS_KEEP_CAP {
            self.spans = Vec::new();
        }
        if self.scratch.capacity() > SCRATCH_KEEP_CAP {
            self.scratch = Vec::new();
        }
        self.spans.clear();
        self.scratch.clear();
        self.pos = 0;
        self.scan = 0;
        self.inline = !multibulk;
        self.state = if multibulk { State::Count } else { State::Inline };
    }

    /// Looks for `term` in the line starting at `self.pos`, the way Redis's `strchr` does: a NUL byte ends the
    /// search unsuccessfully. The line may be at most `PROTO_INLINE_MAX_SIZE` bytes before its terminator.
    fn find(&mut self, buf: &[u8], term: u8) -> Line {
        let window_end = buf.len().min(self.pos.saturating_add(PROTO_INLINE_MAX_SIZE + 1));
        let from = self.scan.max(self.pos);
        let hit = buf
            .get(from..window_end)
            .and_then(|w| w.iter().position(|&b| b == term || b == 0))
            .map(|i| from + i);
        match hit {
            Some(i) if buf.get(i) == Some(&term) => {
                self.scan = i;
                Line::At(i)
            }
            Some(nul) => {
                // Redis's search stops at the NUL forever; resuming there keeps each later call O(1).
                self.scan = nul;
                self.pending_or_too_big(buf)
            }
            None => {
                self.scan = window_end.max(from);
                self.pending_or_too_big(buf)
            }
        }
    }

    fn pending_or_too_big(&self, buf: &[u8]) -> Line {
        if buf.len() - self.pos.min(buf.len()) > PROTO_INLINE_MAX_SIZE {
            Line::TooBig
        } else {
            Line::Pending
        }
    }

    fn parse_inline(&mut self, buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
        let newline = match self.find(buf, b'\n') {
            Line::At(i) => i,
            Line::Pending => return Ok(None),
            Line::TooBig => return Err(ProtocolError::InlineTooBig),
        };
        let end = if newline > 0 && buf.get(newline - 1) == Some(&b'\r') {
            newline - 1
        } else {
            newline
        };
        let line = buf.get(..end).unwrap_or_default();
        split_args(line, &mut self.scratch, &mut self.spans)?;
        Ok(Some(newline + 1))
    }

    fn parse_count(&mut self, buf: &[u8], limits: &RequestLimits) -> Result<Option<usize>, ProtocolError> {
        let cr = match self.find(buf, b'\r') {
            Line::At(i) => i,
            Line::Pending => return Ok(None),
            Line::TooBig => return Err(ProtocolError::MultibulkCountTooBig),
        };
        // Redis wants one byte after the `\r` in the buffer, and skips it without looking at it.
        if cr + 2 > buf.len() {
            return Ok(None);
        }
        let count = match string2ll(buf.get(1..cr).unwrap_or_default()) {
            Some(n) if n <= i64::from(i32::MAX) => n,
            _ => return Err(ProtocolError::InvalidMultibulkLength),
        };
        if count > UNAUTH_MAX_MULTIBULK && !limits.authenticated {
            return Err(ProtocolError::UnauthenticatedMultibulkLength);
        }
        let next = cr + 2;
        if count <= 0 {
            return Ok(Some(next));
        }
        let remaining = usize::try_from(count).map_err(|_| ProtocolError::InvalidMultibulkLength)?;
        self.spans.reserve(remaining.min(SPANS_INITIAL_CAP));
        self.pos = next;
        self.scan = next;
        self.state = State::Bulks { remaining, bulk: None };
        self.parse_bulks(buf, limits)
    }

    fn parse_bulks(&mut self, buf: &[u8], limits: &RequestLimits) -> Result<Option<usize>, ProtocolError> {
        let State::Bulks {
            mut remaining,
            mut bulk,
        } = self.state
        else {
            return Ok(None);
        };
        while remaining > 0 {
            let len = match bulk {
                Some(len) => len,
                None => {
                    let len = self.bulk_header(buf, limits)?;
                    match len {
                        Some(len) => len,
                        None => {
                            self.state = State::Bulks { remaining, bulk: None };
                            return Ok(None);
                        }
                    }
                }
            };
            let start = self.pos;
            // A payload too large for memory can never arrive, so saturating is as good as failing here.
            let end = start.saturating_add(len);
            let next = end.saturating_add(2);
            if next > buf.len() {
                self.needed = next - buf.len();
                self.state = State::Bulks {
                    remaining,
                    bulk: Some(len),
                };
                return Ok(None);
            }
            self.spans.push((start, end));
            self.pos = next;
            self.scan = next;
            remaining -= 1;
            bulk = None;
        }
        Ok(Some(self.pos))
    }

    /// Reads a `$<len>` line at `self.pos`: `Ok(None)` when it is incomplete.
    fn bulk_header(&mut self, buf: &[u8], limits: &RequestLimits) -> Result<Option<usize>, ProtocolError> {
        let cr = match self.find(buf, b'\r') {
            Line::At(i) => i,
            Line::Pending => return Ok(None),
            Line::TooBig => return Err(ProtocolError::BulkCountTooBig),
        };
        if cr + 2 > buf.len() {
            return Ok(None);
        }
        // The line is complete only now, so a line too long to be a length is reported as such before its
        // first byte is looked at, as in Redis.
        let first = buf.get(self.pos).copied().unwrap_or(b'\r');
        if first != b'$' {
            return Err(ProtocolError::ExpectedDollar(first));
        }
        let len = match string2ll(buf.get(self.pos + 1..cr).unwrap_or_default()) {
            Some(n) if n >= 0 && n <= limits.max_bulk_len => n,
            _ => return Err(ProtocolError::InvalidBulkLength),
        };
        if len > UNAUTH_MAX_BULK && !limits.authenticated {
            return Err(ProtocolError::UnauthenticatedBulkLength);
        }
        let len = usize::try_from(len).map_err(|_| ProtocolError::InvalidBulkLength)?;
        self.pos = cr + 2;
        self.scan = self.pos;
        Ok(Some(len))
    }
}

/// The arguments of one parsed request, borrowed from the parser and the read buffer.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    base: &'a [u8],
    spans: &'a [(usize, usize)],
    inline: bool,
}

impl<'a> Request<'a> {
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    pub fn get(&self, i: usize) -> Option<&'a [u8]> {
        let &(start, end) = self.spans.get(i)?;
        self.base.get(start..end)
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = &'a [u8]> + DoubleEndedIterator + 'a {
        let base = self.base;
        // A span out of range means the caller passed a different buffer than it parsed; an empty argument is
        // a safer answer than a panic.
        self.spans
            .iter()
            .map(move |&(start, end)| base.get(start..end).unwrap_or_default())
    }

    /// Whether the request came as an inline command (Redis treats a few things differently for those, e.g.
    /// replicas may send empty inline lines as keepalives).
    pub fn is_inline(&self) -> bool {
        self.inline
    }
}

/// Most arguments the single-pass path takes; longer requests go through the general parser.
const FAST_MAX_ARGS: u64 = 1024;

/// A decimal number of at most 18 digits without a leading zero (or `0` alone) at `buf[at..]`, followed by
/// CRLF: the number and the index after the LF. `None` for anything else.
#[inline(always)]
fn small_decimal_line(buf: &[u8], at: usize) -> Option<(u64, usize)> {
    // Most counts and lengths have one or two digits (`*3`, `$3`, `$16`): decided without the loop.
    if let (Some(&a), Some(&b), Some(&c)) = (buf.get(at), buf.get(at + 1), buf.get(at + 2)) {
        let (da, db) = (a.wrapping_sub(b'0'), b.wrapping_sub(b'0'));
        if da <= 9 && b == b'\r' && c == b'\n' {
            return Some((u64::from(da), at + 3));
        }
        if (1..=9).contains(&da) && db <= 9 && c == b'\r' {
            return (buf.get(at + 3) == Some(&b'\n')).then_some((u64::from(da) * 10 + u64::from(db), at + 4));
        }
    }
    let mut i = at;
    let mut n: u64 = 0;
    while let Some(&b) = buf.get(i) {
        if b.is_ascii_digit() {
            n = n * 10 + u64::from(b - b'0');
            i += 1;
            if i - at > 18 {
                return None;
            }
        } else {
            break;
        }
    }
    let digits = i - at;
    if digits == 0 || (digits > 1 && buf.get(at) == Some(&b'0')) {
        return None;
    }
    (buf.get(i) == Some(&b'\r') && buf.get(i + 1) == Some(&b'\n')).then_some((n, i + 2))
}

/// C's `isspace` in the "C" locale, which Redis runs with for character classes.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Redis's `sdssplitargs`: splits an inline line into arguments, appending their unquoted bytes to `scratch`
/// and their ranges to `spans`.
///
/// The C code walks a NUL-terminated string, so past the end of `line` reads as NUL here; the caller
/// guarantees `line` holds no NUL of its own (the line search stops at one). Note the asymmetry Redis has:
/// blanks between arguments are `isspace` (vertical tab and form feed included), but only space, tab, CR and
/// LF end an unquoted argument.
fn split_args(line: &[u8], scratch: &mut Vec<u8>, spans: &mut Vec<(usize, usize)>) -> Result<(), ProtocolError> {
    let at = |i: usize| line.get(i).copied().unwrap_or(0);
    let mut p = 0;
    loop {
        while at(p) != 0 && is_c_space(at(p)) {
            p += 1;
        }
        if at(p) == 0 {
            return Ok(());
        }
        let start = scratch.len();
        let mut in_double = false;
        let mut in_single = false;
        let mut done = false;
        while !done {
            let c = at(p);
            if in_double {
                let hex = (at(p + 1) == b'x').then(|| (hex_value(at(p + 2)), hex_value(at(p + 3))));
                if let (b'\\', Some((Some(hi), Some(lo)))) = (c, hex) {
                    scratch.push(hi * 16 + lo);
                    p += 3;
                } else if c == b'\\' && at(p + 1) != 0 {
                    p += 1;
                    scratch.push(match at(p) {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                } else if c == b'"' {
                    // A closing quote must be followed by a blank or the end of the line.
                    if at(p + 1) != 0 && !is_c_space(at(p + 1)) {
                        return Err(ProtocolError::UnbalancedQuotes);
                    }
                    done = true;
                } else if c == 0 {
                    return Err(ProtocolError::UnbalancedQuotes);
                } else {
                    scratch.push(c);
                }
            } else if in_single {
                if c == b'\\' && at(p + 1) == b'\'' {
                    p += 1;
                    scratch.push(b'\'');
                } else if c == b'\'' {
                    if at(p + 1) != 0 && !is_c_space(at(p + 1)) {
                        return Err(ProtocolError::UnbalancedQuotes);
                    }
                    done = true;
                } else if c == 0 {
                    return Err(ProtocolError::UnbalancedQuotes);
                } else {
                    scratch.push(c);
                }
            } else {
                match c {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => done = true,
                    b'"' => in_double = true,
                    b'\'' => in_single = true,
                    other => scratch.push(other),
                }
            }
            if at(p) != 0 {
                p += 1;
            }
        }
        spans.push((start, scratch.len()));
    }
}

/// Redis's `string2ll`: an optional `-`, then `0` alone or digits without a leading zero, fitting an `i64`;
/// no `+`, no spaces, at most 20 characters.
pub fn string2ll(s: &[u8]) -> Option<i64> {
    // LONG_STR_SIZE in Redis: 21 bytes, NUL included.
    if s.is_empty() || s.len() >= 21 {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    let (negative, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    match digits.first() {
        Some(b'1'..=b'9') => {}
        _ => return None,
    }
    let mut v: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    if negative {
        if v > i64::MAX as u64 + 1 {
            return None;
        }
        Some((v as i64).wrapping_neg())
    } else {
        i64::try_from(v).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const AUTHED: RequestLimits = RequestLimits {
        max_bulk_len: DEFAULT_MAX_BULK_LEN,
        authenticated: true,
    };
    const UNAUTHED: RequestLimits = RequestLimits {
        max_bulk_len: DEFAULT_MAX_BULK_LEN,
        authenticated: false,
    };

    type Args = Vec<Vec<u8>>;

    /// Parses every complete request in `buf`, returning their arguments and the first error, if any.
    fn parse_all(buf: &[u8], limits: &RequestLimits) -> (Vec<Args>, Option<ProtocolError>) {
        let mut parser = RequestParser::new();
        let mut out = Vec::new();
        let mut start = 0;
        loop {
            match parser.parse(&buf[start..], limits) {
                Ok(Some(n)) => {
                    out.push(parser.request(&buf[start..]).iter().map(<[u8]>::to_vec).collect());
                    start += n;
                }
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e)),
            }
        }
    }

    /// Feeds `buf` in the given chunks as a connection would: append, parse until incomplete, repeat.
    fn parse_chunked(buf: &[u8], cuts: &[usize], limits: &RequestLimits) -> (Vec<Args>, Option<ProtocolError>) {
        let mut parser = RequestParser::new();
        let mut out = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(buf.len())).collect();
        cuts.sort_unstable();
        cuts.push(buf.len());
        let mut fed = 0;
        for cut in cuts {
            pending.extend_from_slice(&buf[fed..cut]);
            fed = cut;
            loop {
                match parser.parse(&pending, limits) {
                    Ok(Some(n)) => {
                        out.push(parser.request(&pending).iter().map(<[u8]>::to_vec).collect());
                        pending.drain(..n);
                    }
                    Ok(None) => break,
                    Err(e) => return (out, Some(e)),
                }
            }
        }
        (out, None)
    }

    fn one(buf: &[u8]) -> Result<Option<(usize, Args)>, ProtocolError> {
        let mut parser = RequestParser::new();
        Ok(parser
            .parse(buf, &AUTHED)?
            .map(|n| (n, parser.request(buf).iter().map(<[u8]>::to_vec).collect())))
    }

    fn args(list: &[&[u8]]) -> Args {
        list.iter().map(|a| a.to_vec()).collect()
    }

    fn inline_args(line: &[u8]) -> Result<Args, ProtocolError> {
        let mut scratch = Vec::new();
        let mut spans = Vec::new();
        split_args(line, &mut scratch, &mut spans)?;
        Ok(spans.iter().map(|&(s, e)| scratch[s..e].to_vec()).collect())
    }

    fn encode(args: &[Vec<u8>]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    fn err_text(buf: &[u8], limits: &RequestLimits) -> String {
        match parse_all(buf, limits).1 {
            Some(e) => e.to_string(),
            None => "no error".into(),
        }
    }

    // Each expected text below was checked against redis-server 7.0.15, which replies `-ERR <text>` and closes.

    #[test]
    fn multibulk_arguments_are_spans_of_the_buffer() {
        let buf = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nrest";
        let mut parser = RequestParser::new();
        assert_eq!(parser.parse(buf, &AUTHED), Ok(Some(20)));
        let req = parser.request(buf);
        assert_eq!(req.len(), 2);
        assert!(!req.is_inline());
        assert_eq!(req.get(0), Some(&b"GET"[..]));
        assert_eq!(req.get(1).map(<[u8]>::as_ptr), Some(buf[17..].as_ptr()));
        assert_eq!(req.get(2), None);
    }

    #[test]
    fn inline_arguments_are_unquoted() {
        let buf = b"SET \"a b\" 'c\\'d'\r\nPING";
        let mut parser = RequestParser::new();
        assert_eq!(parser.parse(buf, &AUTHED), Ok(Some(18)));
        let req = parser.request(buf);
        assert!(req.is_inline());
        assert_eq!(req.iter().collect::<Vec<_>>(), vec![&b"SET"[..], b"a b", b"c'd"]);
    }

    #[test]
    fn empty_requests_have_zero_arguments_and_are_consumed() {
        assert_eq!(one(b"\r\n"), Ok(Some((2, vec![]))));
        assert_eq!(one(b"\n"), Ok(Some((1, vec![]))));
        assert_eq!(one(b"   \t\r\n"), Ok(Some((6, vec![]))));
        assert_eq!(one(b"*0\r\n"), Ok(Some((4, vec![]))));
        assert_eq!(one(b"*-5\r\n"), Ok(Some((5, vec![]))));
        assert_eq!(one(b"*-1\r\n"), Ok(Some((5, vec![]))));
    }

    #[test]
    fn an_empty_buffer_is_incomplete() {
        assert_eq!(one(b""), Ok(None));
    }

    #[test]
    fn inline_line_may_end_with_a_bare_newline() {
        assert_eq!(one(b"PING\n"), Ok(Some((5, args(&[b"PING"])))));
        assert_eq!(one(b"PING\r\r\n"), Ok(Some((7, args(&[b"PING"])))));
    }

    #[test]
    fn inline_without_newline_is_incomplete_up_to_64k() {
        assert_eq!(one(&[b'A'; PROTO_INLINE_MAX_SIZE]), Ok(None));
        assert_eq!(
            one(&[b'A'; PROTO_INLINE_MAX_SIZE + 1]),
            Err(ProtocolError::InlineTooBig)
        );
    }

    #[test]
    fn inline_too_big_text_matches_redis() {
        let buf = vec![b'A'; 100 * 1024];
        assert_eq!(err_text(&buf, &AUTHED), "Protocol error: too big inline request");
    }

    #[test]
    fn inline_line_of_exactly_64k_is_accepted() {
        let mut buf = vec![b'A'; PROTO_INLINE_MAX_SIZE];
        buf.push(b'\n');
        assert_eq!(
            one(&buf).map(|r| r.map(|(n, a)| (n, a.len()))),
            Ok(Some((PROTO_INLINE_MAX_SIZE + 1, 1)))
        );
        let mut buf = vec![b'A'; PROTO_INLINE_MAX_SIZE + 1];
        buf.push(b'\n');
        assert_eq!(one(&buf), Err(ProtocolError::InlineTooBig));
    }

    #[test]
    fn a_nul_byte_stalls_an_inline_request_until_the_limit() {
        // Redis finds the newline with strchr, which stops at the NUL: `PING\0\r\n` gets no reply at all.
        assert_eq!(one(b"PING\0\r\nPING\r\n"), Ok(None));
        let mut buf = b"PING\0\r\n".to_vec();
        buf.resize(PROTO_INLINE_MAX_SIZE + 1, b'\n');
        assert_eq!(one(&buf), Err(ProtocolError::InlineTooBig));
    }

    #[test]
    fn unbalanced_quotes_text_matches_redis() {
        assert_eq!(
            err_text(b"\"unbalanced\r\n", &AUTHED),
            "Protocol error: unbalanced quotes in request"
        );
        assert_eq!(
            err_text(b"ECHO 'a\r\n", &AUTHED),
            "Protocol error: unbalanced quotes in request"
        );
        assert_eq!(
            err_text(b"ECHO \"a\"b\r\n", &AUTHED),
            "Protocol error: unbalanced quotes in request"
        );
    }

    #[test]
    fn double_quotes_understand_c_escapes() {
        assert_eq!(
            inline_args(br#""\n\r\t\b\a\\\"\q""#),
            Ok(args(&[b"\n\r\t\x08\x07\\\"q"]))
        );
        assert_eq!(inline_args(br#""\x41\x4a\xff\x0" x"#), Ok(args(&[b"AJ\xffx0", b"x"])));
        assert_eq!(inline_args(br#""\x00""#), Ok(args(&[b"\0"])));
    }

    #[test]
    fn single_quotes_only_escape_the_single_quote() {
        assert_eq!(inline_args(br"'a\'b\n\x41'"), Ok(args(&[br"a'b\n\x41"])));
    }

    #[test]
    fn quotes_may_start_in_the_middle_of_an_argument() {
        assert_eq!(inline_args(br#"ab"c d" e"#), Ok(args(&[b"abc d", b"e"])));
        assert_eq!(inline_args(br#"ab'c d'"#), Ok(args(&[b"abc d"])));
    }

    #[test]
    fn a_closing_quote_must_be_followed_by_a_blank() {
        assert_eq!(inline_args(br#""a"b"#), Err(ProtocolError::UnbalancedQuotes));
        assert_eq!(inline_args(br#"'a'b"#), Err(ProtocolError::UnbalancedQuotes));
        assert_eq!(inline_args(b"\"a\"\x0bb"), Ok(args(&[b"a", b"b"])));
        assert_eq!(inline_args(b"\"a\"\x0cb"), Ok(args(&[b"a", b"b"])));
    }

    #[test]
    fn a_trailing_backslash_leaves_a_quote_open() {
        assert_eq!(inline_args(br#""abc\"#), Err(ProtocolError::UnbalancedQuotes));
    }

    #[test]
    fn empty_quotes_are_an_empty_argument() {
        assert_eq!(inline_args(br#"SET k """#), Ok(args(&[b"SET", b"k", b""])));
        assert_eq!(inline_args(b"''"), Ok(args(&[b""])));
    }

    #[test]
    fn vertical_tab_separates_only_between_arguments() {
        // isspace() skips \v and \f before an argument, but they do not end an unquoted one.
        assert_eq!(inline_args(b"\x0ba\x0bb\x0c c"), Ok(args(&[b"a\x0bb\x0c", b"c"])));
    }

    #[test]
    fn carriage_return_inside_a_line_separates_arguments() {
        assert_eq!(one(b"a\rb\r\n"), Ok(Some((5, args(&[b"a", b"b"])))));
    }

    #[test]
    fn multibulk_count_errors_match_redis() {
        for bad in [
            &b"*abc\r\n"[..],
            b"*3000000000\r\n",
            b"*2147483648\r\n",
            b"*+1\r\n",
            b"*01\r\n",
            b"*-0\r\n",
        ] {
            assert_eq!(
                err_text(bad, &AUTHED),
                "Protocol error: invalid multibulk length",
                "{bad:?}"
            );
        }
        for bad in [&b"*\r\n"[..], b"* 1\r\n", b"*1 \r\n"] {
            assert_eq!(
                err_text(bad, &AUTHED),
                "Protocol error: invalid multibulk length",
                "{bad:?}"
            );
        }
        assert_eq!(one(b"*2147483647\r\n"), Ok(None));
    }

    #[test]
    fn too_big_mbulk_count_string_text_matches_redis() {
        let mut buf = b"*".to_vec();
        buf.extend(std::iter::repeat_n(b'1', PROTO_INLINE_MAX_SIZE));
        assert_eq!(err_text(&buf, &AUTHED), "Protocol error: too big mbulk count string");
        buf.pop();
        assert_eq!(one(&buf), Ok(None));
    }

    #[test]
    fn a_count_line_ending_beyond_64k_is_too_big() {
        let mut buf = b"*".to_vec();
        buf.extend(std::iter::repeat_n(b'1', PROTO_INLINE_MAX_SIZE + 10));
        buf.extend_from_slice(b"\r\n");
        assert_eq!(one(&buf), Err(ProtocolError::MultibulkCountTooBig));
    }

    #[test]
    fn unauthenticated_multibulk_length_text_matches_redis() {
        assert_eq!(
            err_text(b"*11\r\n", &UNAUTHED),
            "Protocol error: unauthenticated multibulk length"
        );
        assert_eq!(parse_all(b"*10\r\n", &UNAUTHED), (vec![], None));
        assert_eq!(
            err_text(b"*99999999999\r\n", &UNAUTHED),
            "Protocol error: invalid multibulk length"
        );
    }

    #[test]
    fn expected_dollar_text_matches_redis() {
        assert_eq!(
            err_text(b"*1\r\nX\r\n", &AUTHED),
            "Protocol error: expected '$', got 'X'"
        );
        // Redis then turns the CR or LF into a space when it writes the error.
        assert_eq!(one(b"*1\r\n\r\n"), Err(ProtocolError::ExpectedDollar(b'\r')));
        assert_eq!(one(b"*1\r\n\n\r\n"), Err(ProtocolError::ExpectedDollar(b'\n')));
        assert_eq!(one(b"*1\r\n\xc8\r\n"), Err(ProtocolError::ExpectedDollar(0xc8)));
    }

    #[test]
    fn the_first_byte_of_a_bulk_line_is_checked_only_once_the_line_is_complete() {
        assert_eq!(one(b"*1\r\nX"), Ok(None));
        assert_eq!(one(b"*1\r\nX\r"), Ok(None));
    }

    #[test]
    fn invalid_bulk_length_text_matches_redis() {
        for bad in [
            &b"*1\r\n$-1\r\n"[..],
            b"*1\r\n$abc\r\n",
            b"*1\r\n$+4\r\nPING\r\n",
            b"*1\r\n$04\r\nPING\r\n",
        ] {
            assert_eq!(err_text(bad, &AUTHED), "Protocol error: invalid bulk length", "{bad:?}");
        }
        assert_eq!(
            err_text(b"*1\r\n$536870913\r\n", &AUTHED),
            "Protocol error: invalid bulk length"
        );
        assert_eq!(one(b"*1\r\n$536870912\r\n"), Ok(None));
    }

    #[test]
    fn bulk_length_is_limited_by_proto_max_bulk_len() {
        let limits = RequestLimits {
            max_bulk_len: 3,
            authenticated: true,
        };
        assert_eq!(
            parse_all(b"*1\r\n$3\r\nabc\r\n", &limits),
            (vec![args(&[b"abc"])], None)
        );
        assert_eq!(
            parse_all(b"*1\r\n$4\r\nabcd\r\n", &limits).1,
            Some(ProtocolError::InvalidBulkLength)
        );
    }

    #[test]
    fn too_big_bulk_count_string_text_matches_redis() {
        let mut buf = b"*1\r\n$".to_vec();
        buf.extend(std::iter::repeat_n(b'1', PROTO_INLINE_MAX_SIZE + 1));
        assert_eq!(err_text(&buf, &AUTHED), "Protocol error: too big bulk count string");
        // Even when the line does not start with `$`: its first byte is not looked at before the line ends.
        buf[4] = b'X';
        assert_eq!(err_text(&buf, &AUTHED), "Protocol error: too big bulk count string");
    }

    #[test]
    fn unauthenticated_bulk_length_text_matches_redis() {
        assert_eq!(
            err_text(b"*1\r\n$16385\r\n", &UNAUTHED),
            "Protocol error: unauthenticated bulk length"
        );
        assert_eq!(parse_all(b"*1\r\n$16384\r\n", &UNAUTHED), (vec![], None));
        // The length is validated before the authentication limit is applied.
        assert_eq!(
            err_text(b"*1\r\n$999999999999\r\n", &UNAUTHED),
            "Protocol error: invalid bulk length"
        );
    }

    #[test]
    fn the_byte_after_a_length_lines_cr_is_skipped_unseen() {
        assert_eq!(one(b"*1\rX$4\r\nPINGxx"), Ok(Some((14, args(&[b"PING"])))));
        assert_eq!(one(b"*1\r\n$4\rXPINGab"), Ok(Some((14, args(&[b"PING"])))));
        assert_eq!(one(b"*1\r"), Ok(None));
    }

    #[test]
    fn a_nul_byte_stalls_a_length_line() {
        assert_eq!(one(b"*1\0\r\n$4\r\nPING\r\n"), Ok(None));
        assert_eq!(one(b"*1\r\n$\x004\r\nPING\r\n"), Ok(None));
    }

    #[test]
    fn bulk_payload_may_hold_any_bytes() {
        assert_eq!(one(b"*1\r\n$4\r\n\0\r\n\r\r\n"), Ok(Some((14, args(&[b"\0\r\n\r"])))));
    }

    #[test]
    fn bytes_needed_counts_the_rest_of_a_bulk_and_its_crlf() {
        let mut parser = RequestParser::new();
        assert_eq!(parser.parse(b"*1\r\n$100\r\nabc", &AUTHED), Ok(None));
        assert_eq!(parser.bytes_needed(), 99);
        assert_eq!(parser.parse(b"*1\r\n$", &AUTHED), Ok(None));
        assert_eq!(parser.bytes_needed(), 1);
    }

    #[test]
    fn a_multibulk_is_never_rescanned_from_its_start() {
        // One million arguments fed a byte-ish at a time would be quadratic if each call started over; fed in
        // 7-byte chunks this finishes in well under a second only if progress is kept.
        let n = 200_000;
        let mut buf = format!("*{n}\r\n").into_bytes();
        for _ in 0..n {
            buf.extend_from_slice(b"$1\r\nx\r\n");
        }
        let mut parser = RequestParser::new();
        let mut len = 0;
        let mut result = Ok(None);
        while len < buf.len() {
            len = (len + 7).min(buf.len());
            result = parser.parse(&buf[..len], &AUTHED);
            if !matches!(result, Ok(None)) {
                break;
            }
        }
        assert_eq!(result, Ok(Some(buf.len())));
        assert_eq!(parser.request(&buf).len(), n);
    }

    #[test]
    fn spans_capacity_is_capped_for_a_lying_count() {
        let mut parser = RequestParser::new();
        assert_eq!(parser.parse(b"*2147483647\r\n", &AUTHED), Ok(None));
        assert!(parser.spans.capacity() <= SPANS_INITIAL_CAP);
    }

    #[test]
    fn a_request_is_followed_by_the_next_from_a_fresh_start() {
        let stream = b"*1\r\n$4\r\nPING\r\nECHO hi\r\n*2\r\n$4\r\nECHO\r\n$0\r\n\r\n";
        let (reqs, err) = parse_all(stream, &AUTHED);
        assert_eq!(err, None);
        assert_eq!(
            reqs,
            vec![args(&[b"PING"]), args(&[b"ECHO", b"hi"]), args(&[b"ECHO", b""])]
        );
    }

    #[test]
    fn reset_forgets_a_partial_request() {
        let mut parser = RequestParser::new();
        assert_eq!(parser.parse(b"*2\r\n$3\r\nGET\r\n", &AUTHED), Ok(None));
        parser.reset();
        assert_eq!(parser.parse(b"PING\r\n", &AUTHED), Ok(Some(6)));
        assert_eq!(parser.request(b"PING\r\n").get(0), Some(&b"PING"[..]));
    }

    #[test]
    fn a_shorter_buffer_than_promised_restarts_instead_of_panicking() {
        let mut parser = RequestParser::new();
        assert_eq!(parser.parse(b"*2\r\n$3\r\nGET\r\n$1", &AUTHED), Ok(None));
        assert_eq!(parser.parse(b"PING\n", &AUTHED), Ok(Some(5)));
    }

    #[test]
    fn string2ll_follows_redis() {
        assert_eq!(string2ll(b"0"), Some(0));
        assert_eq!(string2ll(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(string2ll(b"9223372036854775807"), Some(i64::MAX));
        for bad in [
            &b""[..],
            b"-",
            b"-0",
            b"00",
            b"01",
            b"+1",
            b" 1",
            b"1 ",
            b"9223372036854775808",
            b"1a",
        ] {
            assert_eq!(string2ll(bad), None, "{bad:?}");
        }
        assert_eq!(string2ll(b"-9223372036854775809"), None);
        assert_eq!(string2ll(b"000000000000000000001"), None);
    }

    fn arb_args() -> impl Strategy<Value = Args> {
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..20), 1..6)
    }

    /// An inline line whose expected arguments are known: plain words, double-quoted with escapes, or
    /// single-quoted, separated by random blanks.
    fn arb_inline() -> impl Strategy<Value = (Vec<u8>, Args)> {
        let word = prop_oneof![
            prop::collection::vec(prop::sample::select(b"abcXYZ019-_:.{}".to_vec()), 1..8).prop_map(|w| (w.clone(), w)),
            prop::collection::vec(any::<u8>(), 0..8).prop_map(|w| {
                let mut enc = b"\"".to_vec();
                for &b in &w {
                    enc.extend_from_slice(format!("\\x{b:02x}").as_bytes());
                }
                enc.push(b'"');
                (enc, w)
            }),
            prop::collection::vec(prop::sample::select(b"ab c\"\\'".to_vec()), 0..8).prop_map(|w| {
                let mut enc = b"'".to_vec();
                for &b in &w {
                    if b == b'\'' {
                        enc.extend_from_slice(b"\\'");
                    } else {
                        enc.push(b);
                    }
                }
                enc.push(b'\'');
                // A backslash right before the closing quote would escape it.
                let ends_in_backslash = w.last() == Some(&b'\\');
                (
                    if ends_in_backslash { b"'x'".to_vec() } else { enc },
                    if ends_in_backslash { b"x".to_vec() } else { w },
                )
            }),
        ];
        let blank = prop::sample::select(vec![&b" "[..], b"  ", b"\t", b" \x0b "]);
        (prop::collection::vec((word, blank), 0..5), prop::bool::ANY).prop_map(|(words, crlf)| {
            let mut line = Vec::new();
            let mut expected = Vec::new();
            for (i, ((enc, w), blank)) in words.into_iter().enumerate() {
                if i > 0 {
                    line.extend_from_slice(blank);
                }
                line.extend_from_slice(&enc);
                expected.push(w);
            }
            line.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
            (line, expected)
        })
    }

    fn arb_stream() -> impl Strategy<Value = (Vec<u8>, Vec<Args>)> {
        let request = prop_oneof![
            arb_args().prop_map(|a| (encode(&a), a)),
            arb_inline(),
            Just((b"*0\r\n".to_vec(), vec![])),
            Just((b"*-3\r\n".to_vec(), vec![])),
        ];
        prop::collection::vec(request, 1..8).prop_map(|reqs| {
            let mut stream = Vec::new();
            let mut expected = Vec::new();
            for (bytes, a) in reqs {
                stream.extend_from_slice(&bytes);
                expected.push(a);
            }
            (stream, expected)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn any_split_of_a_request_stream_yields_the_same_requests(
            (stream, expected) in arb_stream(),
            cuts in prop::collection::vec(0usize..400, 0..12),
        ) {
            prop_assert_eq!(parse_all(&stream, &AUTHED), (expected.clone(), None));
            prop_assert_eq!(parse_chunked(&stream, &cuts, &AUTHED), (expected, None));
        }

        #[test]
        fn decimal_lines_match_the_plain_loop(
            bytes in prop::collection::vec(prop::sample::select(b"0123456789\r\nx".to_vec()), 0..24),
            at in 0usize..4,
        ) {
            // The rule without the one- and two-digit shortcuts.
            let plain = |buf: &[u8], at: usize| -> Option<(u64, usize)> {
                let digits = buf.iter().skip(at).take_while(|b| b.is_ascii_digit()).count();
                if digits == 0 || digits > 18 || (digits > 1 && buf[at] == b'0') {
                    return None;
                }
                let n = buf[at..at + digits].iter().fold(0u64, |n, &b| n * 10 + u64::from(b - b'0'));
                let i = at + digits;
                (buf.get(i) == Some(&b'\r') && buf.get(i + 1) == Some(&b'\n')).then_some((n, i + 2))
            };
            prop_assert_eq!(small_decimal_line(&bytes, at), plain(&bytes, at));
        }

        #[test]
        fn the_collecting_fast_path_agrees_with_parse(
            bytes in prop::collection::vec(
                prop_oneof![any::<u8>(), prop::sample::select(b"*$\r\n0123456789-".to_vec())], 0..120),
            (stream, _) in arb_stream(),
            base in 0usize..1000,
            authenticated in any::<bool>(),
        ) {
            let limits = RequestLimits { max_bulk_len: 64, authenticated };
            for input in [&bytes[..], &stream[..]] {
                let mut out = vec![(7, 7)];
                let fast = RequestParser::new().parse_complete_into(input, base, &limits, &mut out);
                let mut parser = RequestParser::new();
                match fast {
                    Some(n) => {
                        prop_assert_eq!(parser.parse(input, &limits), Ok(Some(n)));
                        let want: Vec<(usize, usize)> =
                            parser.spans().iter().map(|&(s, e)| (s + base, e + base)).collect();
                        prop_assert_eq!(&out[1..], &want[..]);
                        prop_assert!(!want.is_empty());
                    }
                    None => prop_assert_eq!(out, vec![(7, 7)]),
                }
            }
        }

        #[test]
        fn encoded_commands_round_trip(a in arb_args()) {
            let bytes = crate::frame::Frame::command(&a).to_bytes();
            prop_assert_eq!(one(&bytes), Ok(Some((bytes.len(), a))));
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_splits_do_not_matter(
            bytes in prop::collection::vec(
                prop_oneof![any::<u8>(), prop::sample::select(b"*$\r\n0123456789- \"'\\x".to_vec())], 0..200),
            cuts in prop::collection::vec(0usize..200, 0..8),
            authenticated in any::<bool>(),
        ) {
            let limits = RequestLimits { max_bulk_len: 64, authenticated };
            prop_assert_eq!(parse_all(&bytes, &limits), parse_chunked(&bytes, &cuts, &limits));
        }
    }
}
