//! Reply encoding straight into an output buffer, for RESP2 and RESP3 clients.
//!
//! The server never builds a [`crate::Frame`] tree for a reply: each command writes its reply here piece by
//! piece, so a GET costs one copy of the value and no allocation. RESP3-only types are downgraded for RESP2
//! clients exactly as Redis does it (`addReplyMapLen`, `addReplyDouble`, `addReplyBool`, ... in networking.c):
//! maps become flat arrays, sets and pushes arrays, doubles bulk strings, booleans integers, nulls `$-1`/`*-1`.

use crate::frame::Frame;

/// The protocol version a connection speaks, switched by `HELLO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Proto {
    #[default]
    Resp2,
    Resp3,
}

impl Proto {
    /// The number `HELLO` reports (`proto` field).
    pub fn version(self) -> i64 {
        match self {
            Proto::Resp2 => 2,
            Proto::Resp3 => 3,
        }
    }
}

/// A position in the output buffer where a length header will be inserted once the element count is known
/// (Redis's deferred reply length).
#[derive(Debug, Clone, Copy)]
pub struct DeferredLen(usize);

/// Encodes replies into a growable buffer. The connection owns one and flushes it once per read batch.
#[derive(Debug, Default)]
pub struct ReplyWriter {
    buf: Vec<u8>,
    proto: Proto,
}

const CRLF: &[u8] = b"\r\n";

impl ReplyWriter {
    pub fn new(proto: Proto) -> Self {
        ReplyWriter {
            buf: Vec::with_capacity(16 * 1024),
            proto,
        }
    }

    pub fn proto(&self) -> Proto {
        self.proto
    }

    pub fn set_proto(&mut self, proto: Proto) {
        self.proto = proto;
    }

    /// The encoded bytes not yet written to the socket.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn clear(&mut self) {
        self.buf.clear();
    }

    /// Drops everything written after `len` bytes: used to discard the reply of a command whose reply is
    /// suppressed (`CLIENT REPLY OFF|SKIP`).
    pub fn truncate(&mut self, len: usize) {
        self.buf.truncate(len);
    }

    /// Releases a large buffer after a big reply went out, so one huge reply does not pin memory for the life of
    /// the connection.
    pub fn shrink_to(&mut self, capacity: usize) {
        if self.buf.capacity() > capacity * 4 {
            self.buf = Vec::with_capacity(capacity);
        }
    }

    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Raw bytes, already encoded (used to relay a frame verbatim).
    pub fn raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    fn header(&mut self, prefix: u8, n: i64) {
        self.buf.push(prefix);
        let mut tmp = itoa_buf();
        self.buf.extend_from_slice(fmt_i64(&mut tmp, n));
        self.buf.extend_from_slice(CRLF);
    }

    /// `+OK`.
    pub fn ok(&mut self) {
        self.buf.extend_from_slice(b"+OK\r\n");
    }

    /// A simple string. The caller guarantees it has no CR or LF.
    pub fn simple(&mut self, s: &[u8]) {
        self.buf.push(b'+');
        self.buf.extend_from_slice(s);
        self.buf.extend_from_slice(CRLF);
    }

    /// An error reply; `msg` is the full text after the dash, code first (`ERR syntax error`,
    /// `WRONGTYPE Operation ...`). Newlines are replaced by spaces, as Redis does, so a reply can never break
    /// the framing.
    pub fn error(&mut self, msg: &[u8]) {
        self.buf.push(b'-');
        self.buf
            .extend(msg.iter().map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }));
        self.buf.extend_from_slice(CRLF);
    }

    pub fn integer(&mut self, n: i64) {
        self.header(b':', n);
    }

    pub fn bulk(&mut self, data: &[u8]) {
        self.header(b'$', data.len() as i64);
        self.buf.extend_from_slice(data);
        self.buf.extend_from_slice(CRLF);
    }

    /// A bulk string holding the decimal form of `n` (Redis's `addReplyBulkLongLong`).
    pub fn bulk_i64(&mut self, n: i64) {
        let mut tmp = itoa_buf();
        let s = fmt_i64(&mut tmp, n);
        self.header(b'$', s.len() as i64);
        self.buf.extend_from_slice(s);
        self.buf.extend_from_slice(CRLF);
    }

    /// The null reply of a missing bulk: `$-1` in RESP2, `_` in RESP3.
    pub fn null(&mut self) {
        match self.proto {
            Proto::Resp2 => self.buf.extend_from_slice(b"$-1\r\n"),
            Proto::Resp3 => self.buf.extend_from_slice(b"_\r\n"),
        }
    }

    /// The null reply of a missing aggregate: `*-1` in RESP2, `_` in RESP3.
    pub fn null_array(&mut self) {
        match self.proto {
            Proto::Resp2 => self.buf.extend_from_slice(b"*-1\r\n"),
            Proto::Resp3 => self.buf.extend_from_slice(b"_\r\n"),
        }
    }

    pub fn array(&mut self, n: usize) {
        self.header(b'*', n as i64);
    }

    /// A map of `n` pairs; RESP2 gets a flat array of `2n` elements.
    pub fn map(&mut self, n: usize) {
        match self.proto {
            Proto::Resp2 => self.header(b'*', 2 * n as i64),
            Proto::Resp3 => self.header(b'%', n as i64),
        }
    }

    pub fn set(&mut self, n: usize) {
        match self.proto {
            Proto::Resp2 => self.header(b'*', n as i64),
            Proto::Resp3 => self.header(b'~', n as i64),
        }
    }

    pub fn push(&mut self, n: usize) {
        match self.proto {
            Proto::Resp2 => self.header(b'*', n as i64),
            Proto::Resp3 => self.header(b'>', n as i64),
        }
    }

    /// An attribute header of `n` pairs. RESP2 clients cannot receive attributes, so nothing is written and
    /// the caller must skip the pairs; the return value says whether to write them.
    pub fn attribute(&mut self, n: usize) -> bool {
        match self.proto {
            Proto::Resp2 => false,
            Proto::Resp3 => {
                self.header(b'|', n as i64);
                true
            }
        }
    }

    /// A double, formatted as Redis 7.0 does (`%.17g`, `inf`, `-inf`); RESP2 gets it as a bulk string.
    pub fn double(&mut self, d: f64) {
        let mut tmp = [0u8; 64];
        let s = format_double(&mut tmp, d);
        match self.proto {
            Proto::Resp2 => self.bulk(s),
            Proto::Resp3 => {
                self.buf.push(b',');
                self.buf.extend_from_slice(s);
                self.buf.extend_from_slice(CRLF);
            }
        }
    }

    /// A boolean: `#t`/`#f` in RESP3, `:1`/`:0` in RESP2.
    pub fn boolean(&mut self, b: bool) {
        match (self.proto, b) {
            (Proto::Resp2, true) => self.buf.extend_from_slice(b":1\r\n"),
            (Proto::Resp2, false) => self.buf.extend_from_slice(b":0\r\n"),
            (Proto::Resp3, true) => self.buf.extend_from_slice(b"#t\r\n"),
            (Proto::Resp3, false) => self.buf.extend_from_slice(b"#f\r\n"),
        }
    }

    /// A verbatim string with a three-letter format (`txt`, `mkd`); RESP2 gets a plain bulk string.
    pub fn verbatim(&mut self, format: &[u8; 3], text: &[u8]) {
        match self.proto {
            Proto::Resp2 => self.bulk(text),
            Proto::Resp3 => {
                self.header(b'=', text.len() as i64 + 4);
                self.buf.extend_from_slice(format);
                self.buf.push(b':');
                self.buf.extend_from_slice(text);
                self.buf.extend_from_slice(CRLF);
            }
        }
    }

    /// A big number given as its decimal digits; RESP2 gets a bulk string.
    pub fn big_number(&mut self, digits: &[u8]) {
        match self.proto {
            Proto::Resp2 => self.bulk(digits),
            Proto::Resp3 => {
                self.buf.push(b'(');
                self.buf.extend_from_slice(digits);
                self.buf.extend_from_slice(CRLF);
            }
        }
    }

    /// Marks the place of a length header that is written later with [`ReplyWriter::finish_array`] or
    /// [`ReplyWriter::finish_map`].
    pub fn defer_len(&mut self) -> DeferredLen {
        DeferredLen(self.buf.len())
    }

    /// Inserts the array header for `n` elements at `mark`.
    pub fn finish_array(&mut self, mark: DeferredLen, n: usize) {
        self.insert_header(mark, b'*', n as i64);
    }

    /// Inserts the map header for `n` pairs at `mark` (a flat array of `2n` for RESP2).
    pub fn finish_map(&mut self, mark: DeferredLen, n: usize) {
        match self.proto {
            Proto::Resp2 => self.insert_header(mark, b'*', 2 * n as i64),
            Proto::Resp3 => self.insert_header(mark, b'%', n as i64),
        }
    }

    /// Inserts the set header for `n` elements at `mark` (an array for RESP2).
    pub fn finish_set(&mut self, mark: DeferredLen, n: usize) {
        match self.proto {
            Proto::Resp2 => self.insert_header(mark, b'*', n as i64),
            Proto::Resp3 => self.insert_header(mark, b'~', n as i64),
        }
    }

    fn insert_header(&mut self, mark: DeferredLen, prefix: u8, n: i64) {
        let mut tmp = itoa_buf();
        let digits = fmt_i64(&mut tmp, n);
        let mut head = [0u8; 24];
        head[0] = prefix;
        head[1..1 + digits.len()].copy_from_slice(digits);
        let end = 1 + digits.len();
        head[end..end + 2].copy_from_slice(CRLF);
        let at = mark.0.min(self.buf.len());
        self.buf.splice(at..at, head[..end + 2].iter().copied());
    }

    /// Encodes a whole frame, downgrading RESP3 types for RESP2 clients.
    pub fn frame(&mut self, frame: &Frame) {
        match frame {
            Frame::Simple(s) => self.simple(s),
            Frame::Error(e) => self.error(e),
            Frame::BlobError(e) => match self.proto {
                Proto::Resp2 => self.error(e),
                Proto::Resp3 => {
                    self.header(b'!', e.len() as i64);
                    self.buf.extend_from_slice(e);
                    self.buf.extend_from_slice(CRLF);
                }
            },
            Frame::Integer(n) => self.integer(*n),
            Frame::Bulk(b) => self.bulk(b),
            Frame::NullBulk => self.null(),
            Frame::NullArray => self.null_array(),
            Frame::Null => self.null(),
            Frame::Array(items) => {
                self.array(items.len());
                items.iter().for_each(|f| self.frame(f));
            }
            Frame::Set(items) => {
                self.set(items.len());
                items.iter().for_each(|f| self.frame(f));
            }
            Frame::Push(items) => {
                self.push(items.len());
                items.iter().for_each(|f| self.frame(f));
            }
            Frame::Map(pairs) => {
                self.map(pairs.len());
                for (k, v) in pairs {
                    self.frame(k);
                    self.frame(v);
                }
            }
            Frame::Attribute(pairs) => {
                if self.attribute(pairs.len()) {
                    for (k, v) in pairs {
                        self.frame(k);
                        self.frame(v);
                    }
                }
            }
            Frame::Double(d) => self.double(*d),
            Frame::Boolean(b) => self.boolean(*b),
            Frame::BigNumber(n) => self.big_number(n),
            Frame::Verbatim { format, text } => self.verbatim(format, text),
        }
    }
}

fn itoa_buf() -> [u8; 24] {
    [0u8; 24]
}

/// Formats `n` in decimal into `buf`, returning the used tail.
pub fn fmt_i64(buf: &mut [u8; 24], n: i64) -> &[u8] {
    let mut pos = buf.len();
    let neg = n < 0;
    let mut v = n.unsigned_abs();
    loop {
        pos -= 1;
        buf[pos] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if neg {
        pos -= 1;
        buf[pos] = b'-';
    }
    &buf[pos..]
}

/// Formats a double as Redis 7.0's `addReplyDouble` does: `inf`, `-inf`, `nan`, else C's `%.17g`.
pub fn format_double(buf: &mut [u8; 64], d: f64) -> &[u8] {
    if d.is_infinite() {
        let s: &[u8] = if d > 0.0 { b"inf" } else { b"-inf" };
        buf[..s.len()].copy_from_slice(s);
        return &buf[..s.len()];
    }
    if d.is_nan() {
        buf[..3].copy_from_slice(b"nan");
        return &buf[..3];
    }
    // SAFETY: the format consumes exactly one double and snprintf writes at most buf.len() bytes, NUL included.
    let n = unsafe { libc::snprintf(buf.as_mut_ptr() as *mut libc::c_char, buf.len(), c"%.17g".as_ptr(), d) };
    let n = (n.max(0) as usize).min(buf.len() - 1);
    &buf[..n]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_is_a_flat_array_in_resp2() {
        let mut w = ReplyWriter::new(Proto::Resp2);
        w.map(2);
        assert_eq!(w.as_bytes(), b"*4\r\n");
        let mut w = ReplyWriter::new(Proto::Resp3);
        w.map(2);
        assert_eq!(w.as_bytes(), b"%2\r\n");
    }

    #[test]
    fn nulls_follow_the_protocol_version() {
        let mut w = ReplyWriter::new(Proto::Resp2);
        w.null();
        w.null_array();
        assert_eq!(w.as_bytes(), b"$-1\r\n*-1\r\n");
        let mut w = ReplyWriter::new(Proto::Resp3);
        w.null();
        w.null_array();
        assert_eq!(w.as_bytes(), b"_\r\n_\r\n");
    }

    #[test]
    fn doubles_use_seventeen_significant_digits() {
        let mut buf = [0u8; 64];
        assert_eq!(format_double(&mut buf, 1.5), b"1.5");
        assert_eq!(format_double(&mut buf, 0.1), b"0.10000000000000001");
        assert_eq!(format_double(&mut buf, f64::NEG_INFINITY), b"-inf");
        let mut w = ReplyWriter::new(Proto::Resp3);
        w.double(3.0);
        assert_eq!(w.as_bytes(), b",3\r\n");
    }

    #[test]
    fn deferred_length_is_inserted_before_the_elements() {
        let mut w = ReplyWriter::new(Proto::Resp2);
        w.integer(7);
        let mark = w.defer_len();
        w.bulk(b"a");
        w.bulk(b"b");
        w.finish_array(mark, 2);
        assert_eq!(w.as_bytes(), b":7\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n");
    }

    #[test]
    fn errors_cannot_break_framing() {
        let mut w = ReplyWriter::new(Proto::Resp2);
        w.error(b"ERR bad\r\nthing");
        assert_eq!(w.as_bytes(), b"-ERR bad  thing\r\n");
    }

    #[test]
    fn integers_cover_the_whole_range() {
        let mut b = itoa_buf();
        assert_eq!(fmt_i64(&mut b, i64::MIN), b"-9223372036854775808");
        assert_eq!(fmt_i64(&mut b, 0), b"0");
        assert_eq!(fmt_i64(&mut b, i64::MAX), b"9223372036854775807");
    }
}
