//! [`Frame`]: every RESP2 and RESP3 type, its incremental parser and its encoder.
//!
//! Clients and tests read replies of every type through here; the server uses [`crate::request`] for requests
//! and [`crate::ReplyWriter`] for replies instead. Parsing is two passes over the buffered bytes: the first
//! checks that a whole frame is there and within the limits, allocating nothing; only then is the frame split
//! off the buffer and built, its strings being `Bytes` slices of the split-off part. An incomplete frame thus
//! costs no allocation and leaves the buffer untouched, and a hostile length never sizes an allocation.
//! [`FrameDecoder`] keeps how far the first pass got, so a reply arriving in many reads is checked once.
//!
//! Attributes (`|`) are returned as a frame of their own when they come at the top level, ahead of the reply
//! they annotate (the next frame). Inside an aggregate an attribute takes no element slot, so it cannot be
//! kept without breaking the element count: it is checked and dropped there.

use std::fmt::Write as _;

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::ProtocolError;
use crate::reply::fmt_i64;

/// One RESP2 or RESP3 value.
#[derive(Debug, Clone)]
pub enum Frame {
    Simple(Bytes),
    Error(Bytes),
    Integer(i64),
    Bulk(Bytes),
    /// RESP2 `$-1`.
    NullBulk,
    /// RESP2 `*-1`.
    NullArray,
    /// RESP3 `_`.
    Null,
    Array(Vec<Frame>),
    Map(Vec<(Frame, Frame)>),
    Set(Vec<Frame>),
    /// RESP3 `|`: metadata about the reply that follows as the next frame.
    Attribute(Vec<(Frame, Frame)>),
    Push(Vec<Frame>),
    Double(f64),
    Boolean(bool),
    /// The decimal digits, with an optional leading `-`.
    BigNumber(Bytes),
    Verbatim {
        format: [u8; 3],
        text: Bytes,
    },
    BlobError(Bytes),
}

impl PartialEq for Frame {
    /// Structural equality, except that doubles compare by bit pattern (so `-0.0 != 0.0`) and every NaN
    /// equals every other NaN: a parsed `,nan` must equal the frame it was encoded from.
    fn eq(&self, other: &Self) -> bool {
        use Frame::*;
        match (self, other) {
            (Simple(a), Simple(b))
            | (Error(a), Error(b))
            | (Bulk(a), Bulk(b))
            | (BigNumber(a), BigNumber(b))
            | (BlobError(a), BlobError(b)) => a == b,
            (Integer(a), Integer(b)) => a == b,
            (NullBulk, NullBulk) | (NullArray, NullArray) | (Null, Null) => true,
            (Array(a), Array(b)) | (Set(a), Set(b)) | (Push(a), Push(b)) => a == b,
            (Map(a), Map(b)) | (Attribute(a), Attribute(b)) => a == b,
            (Double(a), Double(b)) => a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
            (Boolean(a), Boolean(b)) => a == b,
            (Verbatim { format: fa, text: ta }, Verbatim { format: fb, text: tb }) => fa == fb && ta == tb,
            _ => false,
        }
    }
}

impl Eq for Frame {}

/// Bounds on what a peer can make the parser accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    /// The longest bulk string, blob error or verbatim string.
    pub max_bulk_len: usize,
    /// The most elements (or pairs) in one aggregate.
    pub max_aggregate_len: usize,
    /// The deepest nesting of aggregates.
    pub max_depth: usize,
    /// The longest line: simple strings, errors, numbers.
    pub max_inline_len: usize,
}

impl Default for FrameLimits {
    fn default() -> Self {
        FrameLimits {
            max_bulk_len: 512 * 1024 * 1024,
            max_aggregate_len: i32::MAX as usize,
            max_depth: 128,
            max_inline_len: 64 * 1024,
        }
    }
}

/// Aggregates are never pre-sized beyond this many elements: Vec growth is cheap, a hostile count is not.
const MAX_PREALLOC: usize = 1024;

const CRLF: &[u8] = b"\r\n";

impl Frame {
    /// Parses one frame from the start of `buf`, incrementally and without copying.
    ///
    /// `Ok(Some(frame))` consumes the frame's bytes from `buf`, and bulk payloads are `Bytes` slices of the
    /// split-off bytes. `Ok(None)`: more bytes are needed, and `buf` is untouched. `Err`: a framing error; the
    /// stream cannot be parsed any further.
    ///
    /// Each call checks the buffered bytes from the start; a reader that may receive replies of many
    /// megabytes should use a [`FrameDecoder`], which resumes where the last call stopped.
    pub fn parse(buf: &mut BytesMut, limits: &FrameLimits) -> Result<Option<Frame>, ProtocolError> {
        FrameDecoder::new().decode(buf, limits)
    }

    /// Appends the canonical encoding of exactly this frame: RESP3 types as RESP3, RESP2 nulls as RESP2.
    /// CR and LF in a simple string or error become spaces, as Redis does, so the output always parses.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Frame::Simple(s) => line(out, b'+', s),
            Frame::Error(s) => line(out, b'-', s),
            Frame::Integer(n) => header(out, b':', *n),
            Frame::Bulk(b) => blob(out, b'$', b),
            Frame::BlobError(b) => blob(out, b'!', b),
            Frame::NullBulk => out.put_slice(b"$-1\r\n"),
            Frame::NullArray => out.put_slice(b"*-1\r\n"),
            Frame::Null => out.put_slice(b"_\r\n"),
            Frame::Array(items) => aggregate(out, b'*', items),
            Frame::Set(items) => aggregate(out, b'~', items),
            Frame::Push(items) => aggregate(out, b'>', items),
            Frame::Map(pairs) => pairs_aggregate(out, b'%', pairs),
            Frame::Attribute(pairs) => pairs_aggregate(out, b'|', pairs),
            Frame::Double(d) => {
                out.put_u8(b',');
                if d.is_nan() {
                    out.put_slice(b"nan");
                } else if d.is_infinite() {
                    out.put_slice(if *d > 0.0 { b"inf" } else { b"-inf" });
                } else {
                    // Debug is Rust's shortest round-trip form, switching to an exponent for very large or
                    // small magnitudes where Display would spell out hundreds of digits.
                    let _ = write!(out, "{d:?}");
                }
                out.put_slice(CRLF);
            }
            Frame::Boolean(b) => out.put_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
            Frame::BigNumber(digits) => line(out, b'(', digits),
            Frame::Verbatim { format, text } => {
                header(out, b'=', len_i64(text.len()).saturating_add(4));
                out.put_slice(format);
                out.put_u8(b':');
                out.put_slice(text);
                out.put_slice(CRLF);
            }
        }
    }

    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode(&mut out);
        out.freeze()
    }

    /// A command as an array of bulk strings, the way clients send it.
    pub fn command<I, A>(args: I) -> Frame
    where
        I: IntoIterator<Item = A>,
        A: AsRef<[u8]>,
    {
        Frame::Array(
            args.into_iter()
                .map(|a| Frame::Bulk(Bytes::copy_from_slice(a.as_ref())))
                .collect(),
        )
    }

    /// The string payload of a bulk string, simple string or verbatim string.
    pub fn as_bulk(&self) -> Option<&Bytes> {
        match self {
            Frame::Bulk(b) | Frame::Simple(b) => Some(b),
            Frame::Verbatim { text, .. } => Some(text),
            _ => None,
        }
    }

    pub fn as_integer(&self) -> Option<i64> {
        match self {
            Frame::Integer(n) => Some(*n),
            _ => None,
        }
    }

    /// A simple error or a blob error.
    pub fn is_error(&self) -> bool {
        matches!(self, Frame::Error(_) | Frame::BlobError(_))
    }
}

/// [`Frame::parse`] with memory: an incomplete frame is checked only once, however many reads it takes to
/// arrive. One per connection; between calls the buffer may only grow at its end.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    progress: Progress,
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Same contract as [`Frame::parse`].
    pub fn decode(&mut self, buf: &mut BytesMut, limits: &FrameLimits) -> Result<Option<Frame>, ProtocolError> {
        if buf.len() < self.progress.pos {
            // Not the buffer the progress was made on; checking it afresh is always right.
            self.reset();
        }
        let Some(len) = drive(buf, limits, &mut Check, &mut self.progress)? else {
            return Ok(None);
        };
        let bytes = buf.split_to(len).freeze();
        let mut builder = Builder {
            src: &bytes,
            stack: Vec::new(),
            done: None,
        };
        match drive(&bytes, limits, &mut builder, &mut Progress::default())? {
            Some(n) if n == len => builder
                .done
                .map(Some)
                .ok_or(ProtocolError::Invalid("frame vanished between passes")),
            _ => Err(ProtocolError::Invalid("frame vanished between passes")),
        }
    }

    /// Forgets an incomplete frame (for a buffer that was cleared).
    pub fn reset(&mut self) {
        self.progress = Progress::default();
    }
}

fn len_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn header(out: &mut BytesMut, prefix: u8, n: i64) {
    let mut tmp = [0u8; 24];
    out.put_u8(prefix);
    out.put_slice(fmt_i64(&mut tmp, n));
    out.put_slice(CRLF);
}

fn line(out: &mut BytesMut, prefix: u8, s: &[u8]) {
    out.put_u8(prefix);
    if s.iter().any(|&b| b == b'\r' || b == b'\n') {
        out.extend(s.iter().map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }));
    } else {
        out.put_slice(s);
    }
    out.put_slice(CRLF);
}

fn blob(out: &mut BytesMut, prefix: u8, b: &[u8]) {
    header(out, prefix, len_i64(b.len()));
    out.put_slice(b);
    out.put_slice(CRLF);
}

fn aggregate(out: &mut BytesMut, prefix: u8, items: &[Frame]) {
    header(out, prefix, len_i64(items.len()));
    for item in items {
        item.encode(out);
    }
}

fn pairs_aggregate(out: &mut BytesMut, prefix: u8, pairs: &[(Frame, Frame)]) {
    header(out, prefix, len_i64(pairs.len()));
    for (k, v) in pairs {
        k.encode(out);
        v.encode(out);
    }
}

/// A byte range of the buffer being parsed.
type Span = (usize, usize);

/// A non-aggregate value, as located by the first pass.
#[derive(Debug, Clone, Copy)]
enum Leaf {
    Simple(Span),
    Error(Span),
    Integer(i64),
    Bulk(Span),
    NullBulk,
    NullArray,
    Null,
    Double(f64),
    Boolean(bool),
    BigNumber(Span),
    Verbatim([u8; 3], Span),
    BlobError(Span),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Array,
    Map,
    Set,
    Attribute,
    Push,
}

/// One element header: a whole leaf, or the opening of an aggregate with its element count.
enum Item {
    Leaf(Leaf),
    Open(Kind, usize),
}

/// What the parser does with what it finds: nothing (first pass) or build frames (second pass). One state
/// machine serves both, so the two passes cannot disagree.
trait Sink {
    fn leaf(&mut self, leaf: Leaf);
    /// An aggregate of `len` elements (pairs for maps and attributes) opens. `dropped`: a nested attribute,
    /// whose contents are parsed but not kept.
    fn open(&mut self, kind: Kind, len: usize, dropped: bool);
    fn close(&mut self);
}

struct Check;

impl Sink for Check {
    fn leaf(&mut self, _: Leaf) {}
    fn open(&mut self, _: Kind, _: usize, _: bool) {}
    fn close(&mut self) {}
}

struct Partial {
    kind: Kind,
    items: Vec<Frame>,
    dropped: bool,
}

struct Builder<'a> {
    src: &'a Bytes,
    stack: Vec<Partial>,
    done: Option<Frame>,
}

impl Builder<'_> {
    fn bytes(&self, (start, end): Span) -> Bytes {
        if start <= end && end <= self.src.len() {
            self.src.slice(start..end)
        } else {
            Bytes::new()
        }
    }

    fn add(&mut self, frame: Frame) {
        match self.stack.last_mut() {
            Some(top) => top.items.push(frame),
            None => self.done = Some(frame),
        }
    }
}

fn into_pairs(items: Vec<Frame>) -> Vec<(Frame, Frame)> {
    let mut pairs = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        pairs.push((k, v));
    }
    pairs
}

impl Sink for Builder<'_> {
    fn leaf(&mut self, leaf: Leaf) {
        let frame = match leaf {
            Leaf::Simple(s) => Frame::Simple(self.bytes(s)),
            Leaf::Error(s) => Frame::Error(self.bytes(s)),
            Leaf::Integer(n) => Frame::Integer(n),
            Leaf::Bulk(s) => Frame::Bulk(self.bytes(s)),
            Leaf::NullBulk => Frame::NullBulk,
            Leaf::NullArray => Frame::NullArray,
            Leaf::Null => Frame::Null,
            Leaf::Double(d) => Frame::Double(d),
            Leaf::Boolean(b) => Frame::Boolean(b),
            Leaf::BigNumber(s) => Frame::BigNumber(self.bytes(s)),
            Leaf::Verbatim(format, s) => Frame::Verbatim {
                format,
                text: self.bytes(s),
            },
            Leaf::BlobError(s) => Frame::BlobError(self.bytes(s)),
        };
        self.add(frame);
    }

    fn open(&mut self, kind: Kind, len: usize, dropped: bool) {
        let slots = if matches!(kind, Kind::Map | Kind::Attribute) {
            len.saturating_mul(2)
        } else {
            len
        };
        let items = if dropped {
            Vec::new()
        } else {
            Vec::with_capacity(slots.min(MAX_PREALLOC))
        };
        self.stack.push(Partial { kind, items, dropped });
    }

    fn close(&mut self) {
        let Some(p) = self.stack.pop() else { return };
        if p.dropped {
            return;
        }
        let frame = match p.kind {
            Kind::Array => Frame::Array(p.items),
            Kind::Set => Frame::Set(p.items),
            Kind::Push => Frame::Push(p.items),
            Kind::Map => Frame::Map(into_pairs(p.items)),
            Kind::Attribute => Frame::Attribute(into_pairs(p.items)),
        };
        self.add(frame);
    }
}

/// An aggregate being read: element slots still to come, and whether it is an attribute (which fills no slot
/// of its parent).
#[derive(Debug)]
struct Open {
    remaining: usize,
    attribute: bool,
}

/// How far the completeness check got: the start of the first element not yet complete, and the aggregates
/// open around it.
#[derive(Debug, Default)]
struct Progress {
    pos: usize,
    stack: Vec<Open>,
}

/// Walks one frame from the start of `buf` without recursion (so depth is bounded by `max_depth`, not by the
/// stack), telling `sink` what it finds. `Ok(Some(n))`: the frame is `n` bytes long. `progress` is where a
/// previous call found the frame incomplete; the walk resumes there and leaves the new stopping point in it.
fn drive<S: Sink>(
    buf: &[u8],
    limits: &FrameLimits,
    sink: &mut S,
    progress: &mut Progress,
) -> Result<Option<usize>, ProtocolError> {
    let mut pos = progress.pos;
    let mut stack = std::mem::take(&mut progress.stack);
    progress.pos = 0;
    loop {
        let Some((item, next)) = item(buf, pos, limits)? else {
            *progress = Progress { pos, stack };
            return Ok(None);
        };
        pos = next;
        match item {
            Item::Leaf(leaf) => sink.leaf(leaf),
            Item::Open(kind, len) => {
                if stack.len() >= limits.max_depth {
                    return Err(ProtocolError::Invalid("aggregates nested too deeply"));
                }
                let attribute = kind == Kind::Attribute;
                sink.open(kind, len, attribute && !stack.is_empty());
                let slots = if matches!(kind, Kind::Map | Kind::Attribute) {
                    len.checked_mul(2).ok_or(ProtocolError::Invalid("aggregate too long"))?
                } else {
                    len
                };
                if slots > 0 {
                    stack.push(Open {
                        remaining: slots,
                        attribute,
                    });
                    continue;
                }
                sink.close();
                if attribute {
                    if stack.is_empty() {
                        return Ok(Some(pos));
                    }
                    continue;
                }
            }
        }
        // An element is complete: count it against its enclosing aggregates, closing those it completes.
        loop {
            let Some(top) = stack.last_mut() else {
                return Ok(Some(pos));
            };
            top.remaining -= 1;
            if top.remaining > 0 {
                break;
            }
            let attribute = top.attribute;
            stack.pop();
            sink.close();
            if attribute {
                if stack.is_empty() {
                    return Ok(Some(pos));
                }
                break;
            }
        }
    }
}

/// Reads the element header at `pos`: `Ok(None)` if incomplete, else the item and where the next one starts.
fn item(buf: &[u8], pos: usize, limits: &FrameLimits) -> Result<Option<(Item, usize)>, ProtocolError> {
    let Some(&kind) = buf.get(pos) else {
        return Ok(None);
    };
    let Some((line_end, next)) = read_line(buf, pos + 1, limits)? else {
        return Ok(None);
    };
    let text = buf.get(pos + 1..line_end).unwrap_or_default();
    let span = (pos + 1, line_end);
    let leaf = match kind {
        b'+' => Leaf::Simple(span),
        b'-' => Leaf::Error(span),
        b':' => Leaf::Integer(parse_int(text).ok_or(ProtocolError::Invalid("invalid integer"))?),
        b'_' if text.is_empty() => Leaf::Null,
        b'_' => return Err(ProtocolError::Invalid("invalid null")),
        b'#' => match text {
            b"t" => Leaf::Boolean(true),
            b"f" => Leaf::Boolean(false),
            _ => return Err(ProtocolError::Invalid("invalid boolean")),
        },
        b',' => Leaf::Double(parse_double(text).ok_or(ProtocolError::Invalid("invalid double"))?),
        b'(' => {
            let digits = text.strip_prefix(b"-").unwrap_or(text);
            if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                return Err(ProtocolError::Invalid("invalid big number"));
            }
            Leaf::BigNumber(span)
        }
        b'$' | b'!' | b'=' => {
            let len = parse_int(text).ok_or(ProtocolError::Invalid("invalid bulk length"))?;
            if kind == b'$' && len == -1 {
                return Ok(Some((Item::Leaf(Leaf::NullBulk), next)));
            }
            let len = usize::try_from(len)
                .ok()
                .filter(|&n| n <= limits.max_bulk_len)
                .ok_or(ProtocolError::Invalid("invalid bulk length"))?;
            let end = next
                .checked_add(len)
                .ok_or(ProtocolError::Invalid("invalid bulk length"))?;
            let Some(terminator) = buf.get(end..end.saturating_add(2)) else {
                return Ok(None);
            };
            if terminator.len() < 2 {
                return Ok(None);
            }
            if terminator != CRLF {
                return Err(ProtocolError::Invalid("bulk payload not followed by CRLF"));
            }
            let leaf = match kind {
                b'$' => Leaf::Bulk((next, end)),
                b'!' => Leaf::BlobError((next, end)),
                _ => {
                    let format = buf
                        .get(next..next + 3)
                        .and_then(|f| <[u8; 3]>::try_from(f).ok())
                        .filter(|_| len >= 4 && buf.get(next + 3) == Some(&b':'))
                        .ok_or(ProtocolError::Invalid("invalid verbatim string"))?;
                    Leaf::Verbatim(format, (next + 4, end))
                }
            };
            return Ok(Some((Item::Leaf(leaf), end + 2)));
        }
        b'*' | b'%' | b'~' | b'|' | b'>' => {
            let len = parse_int(text).ok_or(ProtocolError::Invalid("invalid aggregate length"))?;
            if kind == b'*' && len == -1 {
                return Ok(Some((Item::Leaf(Leaf::NullArray), next)));
            }
            let len = usize::try_from(len)
                .ok()
                .filter(|&n| n <= limits.max_aggregate_len)
                .ok_or(ProtocolError::Invalid("invalid aggregate length"))?;
            let kind = match kind {
                b'*' => Kind::Array,
                b'%' => Kind::Map,
                b'~' => Kind::Set,
                b'|' => Kind::Attribute,
                _ => Kind::Push,
            };
            return Ok(Some((Item::Open(kind, len), next)));
        }
        _ => return Err(ProtocolError::Invalid("unknown reply type byte")),
    };
    Ok(Some((Item::Leaf(leaf), next)))
}

/// Finds the CRLF ending the line that starts at `start`: `(end of content, start of next line)`.
fn read_line(buf: &[u8], start: usize, limits: &FrameLimits) -> Result<Option<(usize, usize)>, ProtocolError> {
    let window_end = buf
        .len()
        .min(start.saturating_add(limits.max_inline_len).saturating_add(1));
    let found = buf
        .get(start..window_end)
        .and_then(|w| w.iter().position(|&b| b == b'\r' || b == b'\n'));
    let Some(offset) = found else {
        if buf.len().saturating_sub(start) > limits.max_inline_len {
            return Err(ProtocolError::Invalid("line too long"));
        }
        return Ok(None);
    };
    let cr = start + offset;
    match (buf.get(cr), buf.get(cr + 1)) {
        (Some(b'\r'), Some(b'\n')) => Ok(Some((cr, cr + 2))),
        (Some(b'\r'), None) => Ok(None),
        _ => Err(ProtocolError::Invalid("line not terminated by CRLF")),
    }
}

/// A decimal `i64`: an optional sign and at least one digit, nothing else.
fn parse_int(s: &[u8]) -> Option<i64> {
    let (negative, digits) = match s.split_first()? {
        (b'-', rest) => (true, rest),
        (b'+', rest) => (false, rest),
        _ => (false, s),
    };
    if digits.is_empty() {
        return None;
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let d = i64::from(d - b'0');
        // Accumulating negatively reaches i64::MIN without overflowing on the way.
        v = v.checked_mul(10)?;
        v = if negative { v.checked_sub(d)? } else { v.checked_add(d)? };
    }
    Some(v)
}

/// A RESP3 double: `inf`, `-inf`, `nan` (also `-nan`, which C's printf writes) or a decimal number.
fn parse_double(s: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(s).ok()?;
    match text {
        "inf" | "+inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        "nan" | "-nan" | "+nan" => Some(f64::NAN),
        // Rust also accepts "infinity" and "NaN" spellings; both mean what they say.
        _ if text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+')) =>
        {
            text.parse().ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_one(bytes: &[u8]) -> Result<Option<Frame>, ProtocolError> {
        let mut buf = BytesMut::from(bytes);
        Frame::parse(&mut buf, &FrameLimits::default())
    }

    fn b(s: &[u8]) -> Bytes {
        Bytes::copy_from_slice(s)
    }

    #[test]
    fn every_type_parses() {
        let cases: Vec<(&[u8], Frame)> = vec![
            (b"+OK\r\n", Frame::Simple(b(b"OK"))),
            (b"-ERR bad\r\n", Frame::Error(b(b"ERR bad"))),
            (b":-42\r\n", Frame::Integer(-42)),
            (b"$3\r\nfoo\r\n", Frame::Bulk(b(b"foo"))),
            (b"$0\r\n\r\n", Frame::Bulk(Bytes::new())),
            (b"$-1\r\n", Frame::NullBulk),
            (b"*-1\r\n", Frame::NullArray),
            (b"_\r\n", Frame::Null),
            (
                b"*2\r\n:1\r\n+a\r\n",
                Frame::Array(vec![Frame::Integer(1), Frame::Simple(b(b"a"))]),
            ),
            (
                b"%1\r\n+k\r\n:1\r\n",
                Frame::Map(vec![(Frame::Simple(b(b"k")), Frame::Integer(1))]),
            ),
            (b"~1\r\n#t\r\n", Frame::Set(vec![Frame::Boolean(true)])),
            (
                b">2\r\n+message\r\n#f\r\n",
                Frame::Push(vec![Frame::Simple(b(b"message")), Frame::Boolean(false)]),
            ),
            (b",1.5\r\n", Frame::Double(1.5)),
            (b",inf\r\n", Frame::Double(f64::INFINITY)),
            (b",-inf\r\n", Frame::Double(f64::NEG_INFINITY)),
            (b",nan\r\n", Frame::Double(f64::NAN)),
            (b",-nan\r\n", Frame::Double(f64::NAN)),
            (b",1e300\r\n", Frame::Double(1e300)),
            (
                b"(-12345678901234567890123\r\n",
                Frame::BigNumber(b(b"-12345678901234567890123")),
            ),
            (
                b"=8\r\ntxt:abcd\r\n",
                Frame::Verbatim {
                    format: *b"txt",
                    text: b(b"abcd"),
                },
            ),
            (
                b"=4\r\nmkd:\r\n",
                Frame::Verbatim {
                    format: *b"mkd",
                    text: Bytes::new(),
                },
            ),
            (b"!5\r\nERR x\r\n", Frame::BlobError(b(b"ERR x"))),
            (b"*0\r\n", Frame::Array(vec![])),
            (b"%0\r\n", Frame::Map(vec![])),
        ];
        for (bytes, expected) in cases {
            assert_eq!(
                parse_one(bytes),
                Ok(Some(expected)),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn parse_consumes_exactly_one_frame() {
        let mut buf = BytesMut::from(&b"+a\r\n:1\r\n"[..]);
        assert_eq!(
            Frame::parse(&mut buf, &FrameLimits::default()),
            Ok(Some(Frame::Simple(b(b"a"))))
        );
        assert_eq!(&buf[..], b":1\r\n");
    }

    #[test]
    fn incomplete_input_leaves_the_buffer_untouched() {
        for partial in [
            &b"$5\r\nab"[..],
            b"*2\r\n:1\r\n",
            b"+OK\r",
            b"",
            b"%1\r\n+k\r\n",
            b"$3\r\nabc\r",
        ] {
            let mut buf = BytesMut::from(partial);
            assert_eq!(Frame::parse(&mut buf, &FrameLimits::default()), Ok(None));
            assert_eq!(&buf[..], partial);
        }
    }

    #[test]
    fn bulk_payloads_are_slices_of_the_read_buffer() {
        let mut buf = BytesMut::from(&b"*1\r\n$5\r\nhello\r\n"[..]);
        let start = buf.as_ptr() as usize;
        let Ok(Some(Frame::Array(items))) = Frame::parse(&mut buf, &FrameLimits::default()) else {
            panic!()
        };
        assert_eq!(items[0].as_bulk().map(|b| b.as_ptr() as usize), Some(start + 8));
    }

    #[test]
    fn a_top_level_attribute_is_a_frame_of_its_own() {
        let mut buf = BytesMut::from(&b"|1\r\n+ttl\r\n:3\r\n$1\r\nv\r\n"[..]);
        let limits = FrameLimits::default();
        assert_eq!(
            Frame::parse(&mut buf, &limits),
            Ok(Some(Frame::Attribute(vec![(
                Frame::Simple(b(b"ttl")),
                Frame::Integer(3)
            )])))
        );
        assert_eq!(Frame::parse(&mut buf, &limits), Ok(Some(Frame::Bulk(b(b"v")))));
        assert_eq!(parse_one(b"|0\r\n"), Ok(Some(Frame::Attribute(vec![]))));
    }

    #[test]
    fn a_nested_attribute_is_dropped_without_taking_an_element_slot() {
        assert_eq!(
            parse_one(b"*2\r\n:1\r\n|1\r\n+a\r\n*1\r\n:9\r\n:2\r\n"),
            Ok(Some(Frame::Array(vec![Frame::Integer(1), Frame::Integer(2)])))
        );
        assert_eq!(
            parse_one(b"%1\r\n|0\r\n+k\r\n|0\r\n+v\r\n"),
            Ok(Some(Frame::Map(vec![(Frame::Simple(b(b"k")), Frame::Simple(b(b"v")))])))
        );
        assert_eq!(parse_one(b"*1\r\n|0\r\n"), Ok(None));
    }

    #[test]
    fn malformed_input_is_an_error() {
        for bad in [
            &b"?x\r\n"[..],
            b":12a\r\n",
            b":\r\n",
            b":9223372036854775808\r\n",
            b"$-2\r\n",
            b"$abc\r\n",
            b"$3\r\nabcXY",
            b"*-2\r\n",
            b"%-1\r\n",
            b"#x\r\n",
            b"_x\r\n",
            b",abc\r\n",
            b",\r\n",
            b"(12a\r\n",
            b"(-\r\n",
            b"=3\r\ntxt\r\n",
            b"=5\r\ntxt-a\r\n",
            b"+a\rb\r\n",
            b"+a\nb\r\n",
        ] {
            assert!(parse_one(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn integers_cover_the_whole_range() {
        assert_eq!(
            parse_one(b":-9223372036854775808\r\n"),
            Ok(Some(Frame::Integer(i64::MIN)))
        );
        assert_eq!(
            parse_one(b":9223372036854775807\r\n"),
            Ok(Some(Frame::Integer(i64::MAX)))
        );
    }

    #[test]
    fn limits_are_errors_not_allocations() {
        let limits = FrameLimits {
            max_bulk_len: 4,
            max_aggregate_len: 2,
            max_depth: 2,
            max_inline_len: 8,
        };
        let parse = |bytes: &[u8]| Frame::parse(&mut BytesMut::from(bytes), &limits);
        assert!(parse(b"$5\r\n").is_err());
        assert_eq!(parse(b"$4\r\nabcd\r\n"), Ok(Some(Frame::Bulk(b(b"abcd")))));
        assert!(parse(b"*3\r\n").is_err());
        assert!(parse(b"%3\r\n").is_err());
        assert!(parse(b"*1\r\n*1\r\n*1\r\n").is_err());
        assert_eq!(
            parse(b"*1\r\n*0\r\n"),
            Ok(Some(Frame::Array(vec![Frame::Array(vec![])])))
        );
        assert!(parse(b"+123456789").is_err());
        assert!(parse(b"+123456789\r\n").is_err());
        assert_eq!(parse(b"+12345678\r\n"), Ok(Some(Frame::Simple(b(b"12345678")))));
        // The default limits let a huge claimed length wait for its bytes without reserving them.
        assert_eq!(parse_one(b"*2147483647\r\n"), Ok(None));
        assert_eq!(parse_one(b"$536870912\r\n"), Ok(None));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let mut bytes = b"*1\r\n".repeat(100_000);
        bytes.extend_from_slice(b":1\r\n");
        assert!(parse_one(&bytes).is_err());
    }

    #[test]
    fn doubles_encode_in_shortest_round_trip_form() {
        assert_eq!(Frame::Double(1.5).to_bytes(), &b",1.5\r\n"[..]);
        assert_eq!(Frame::Double(3.0).to_bytes(), &b",3.0\r\n"[..]);
        assert_eq!(Frame::Double(0.1).to_bytes(), &b",0.1\r\n"[..]);
        assert_eq!(Frame::Double(1e300).to_bytes(), &b",1e300\r\n"[..]);
        assert_eq!(Frame::Double(f64::INFINITY).to_bytes(), &b",inf\r\n"[..]);
        assert_eq!(Frame::Double(f64::NEG_INFINITY).to_bytes(), &b",-inf\r\n"[..]);
        assert_eq!(Frame::Double(-f64::NAN).to_bytes(), &b",nan\r\n"[..]);
    }

    #[test]
    fn doubles_compare_by_bits_and_nan_equals_nan() {
        assert_eq!(Frame::Double(f64::NAN), Frame::Double(-f64::NAN));
        assert_ne!(Frame::Double(0.0), Frame::Double(-0.0));
    }

    #[test]
    fn encoding_uses_each_types_own_prefix() {
        let frame = Frame::Array(vec![
            Frame::NullBulk,
            Frame::NullArray,
            Frame::Null,
            Frame::Verbatim {
                format: *b"txt",
                text: b(b"hi"),
            },
            Frame::Map(vec![(Frame::Boolean(true), Frame::BigNumber(b(b"-1")))]),
            Frame::BlobError(b(b"E")),
        ]);
        assert_eq!(
            frame.to_bytes(),
            &b"*6\r\n$-1\r\n*-1\r\n_\r\n=6\r\ntxt:hi\r\n%1\r\n#t\r\n(-1\r\n!1\r\nE\r\n"[..]
        );
    }

    #[test]
    fn line_breaks_in_simple_strings_are_encoded_as_spaces() {
        assert_eq!(Frame::Error(b(b"ERR a\r\nb")).to_bytes(), &b"-ERR a  b\r\n"[..]);
    }

    #[test]
    fn command_is_an_array_of_bulks() {
        assert_eq!(
            Frame::command(["SET", "k", "v"]).to_bytes(),
            &b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"[..]
        );
    }

    #[test]
    fn accessors_see_through_string_types() {
        assert_eq!(Frame::Simple(b(b"OK")).as_bulk(), Some(&b(b"OK")));
        assert_eq!(
            Frame::Verbatim {
                format: *b"txt",
                text: b(b"x")
            }
            .as_bulk(),
            Some(&b(b"x"))
        );
        assert_eq!(Frame::Integer(1).as_bulk(), None);
        assert_eq!(Frame::Integer(7).as_integer(), Some(7));
        assert!(Frame::BlobError(b(b"E")).is_error());
        assert!(Frame::Error(b(b"E")).is_error());
        assert!(!Frame::Simple(b(b"E")).is_error());
    }

    fn arb_line() -> impl Strategy<Value = Bytes> {
        prop::collection::vec(
            any::<u8>().prop_filter("no line breaks", |&c| c != b'\r' && c != b'\n'),
            0..12,
        )
        .prop_map(Bytes::from)
    }

    fn arb_blob() -> impl Strategy<Value = Bytes> {
        prop::collection::vec(any::<u8>(), 0..24).prop_map(Bytes::from)
    }

    fn arb_leaf() -> impl Strategy<Value = Frame> {
        prop_oneof![
            arb_line().prop_map(Frame::Simple),
            arb_line().prop_map(Frame::Error),
            any::<i64>().prop_map(Frame::Integer),
            arb_blob().prop_map(Frame::Bulk),
            Just(Frame::NullBulk),
            Just(Frame::NullArray),
            Just(Frame::Null),
            any::<f64>().prop_map(Frame::Double),
            prop_oneof![Just(f64::INFINITY), Just(f64::NEG_INFINITY), Just(f64::NAN), Just(-0.0)]
                .prop_map(Frame::Double),
            any::<bool>().prop_map(Frame::Boolean),
            "-?[0-9]{1,40}".prop_map(|s| Frame::BigNumber(Bytes::from(s))),
            (any::<[u8; 3]>(), arb_blob()).prop_map(|(format, text)| Frame::Verbatim { format, text }),
            arb_blob().prop_map(Frame::BlobError),
        ]
    }

    /// Any frame that can appear inside an aggregate: everything but attributes, nested up to 4 deep.
    fn arb_frame() -> impl Strategy<Value = Frame> {
        arb_leaf().prop_recursive(4, 48, 6, |inner| {
            let items = prop::collection::vec(inner.clone(), 0..6);
            let pairs = prop::collection::vec((inner.clone(), inner), 0..4);
            prop_oneof![
                items.clone().prop_map(Frame::Array),
                items.clone().prop_map(Frame::Set),
                items.prop_map(Frame::Push),
                pairs.prop_map(Frame::Map),
            ]
        })
    }

    /// A top-level frame: anything, or an attribute (which the next frame follows on the wire).
    fn arb_top() -> impl Strategy<Value = Frame> {
        prop_oneof![
            4 => arb_frame(),
            1 => prop::collection::vec((arb_frame(), arb_frame()), 0..3).prop_map(Frame::Attribute),
        ]
    }

    /// Feeds `stream` in chunks cut at `cuts`, parsing after each, with a fresh parse per call or with one
    /// decoder that keeps its progress.
    fn parse_stream(
        stream: &[u8],
        cuts: &[usize],
        decoder: Option<&mut FrameDecoder>,
    ) -> Result<Vec<Frame>, ProtocolError> {
        let limits = FrameLimits::default();
        let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(stream.len())).collect();
        cuts.sort_unstable();
        cuts.push(stream.len());
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        let mut fed = 0;
        let mut fresh = FrameDecoder::new();
        let use_fresh = decoder.is_none();
        let decoder = decoder.unwrap_or(&mut fresh);
        for cut in cuts {
            buf.extend_from_slice(&stream[fed..cut]);
            fed = cut;
            loop {
                let next = if use_fresh {
                    Frame::parse(&mut buf, &limits)?
                } else {
                    decoder.decode(&mut buf, &limits)?
                };
                match next {
                    Some(frame) => frames.push(frame),
                    None => break,
                }
            }
        }
        assert!(buf.is_empty(), "{} bytes left over", buf.len());
        Ok(frames)
    }

    #[test]
    fn a_decoder_checks_a_huge_reply_only_once() {
        // 200,000 elements fed 64 bytes at a time: rescanning from the start on every read would take
        // billions of steps; resuming takes a blink.
        let n = 200_000;
        let mut stream = format!("*{n}\r\n").into_bytes();
        for i in 0..n {
            stream.extend_from_slice(format!(":{}\r\n", i % 10).as_bytes());
        }
        let cuts: Vec<usize> = (0..stream.len()).step_by(64).collect();
        let frames = parse_stream(&stream, &cuts, Some(&mut FrameDecoder::new()));
        let Ok([Frame::Array(items)]) = frames.as_deref() else {
            panic!("{frames:?}")
        };
        assert_eq!(items.len(), n);
    }

    #[test]
    fn a_decoder_given_a_shorter_buffer_starts_over() {
        let limits = FrameLimits::default();
        let mut decoder = FrameDecoder::new();
        let mut buf = BytesMut::from(&b"*2\r\n:1\r\n"[..]);
        assert_eq!(decoder.decode(&mut buf, &limits), Ok(None));
        let mut other = BytesMut::from(&b":7\r\n"[..]);
        assert_eq!(decoder.decode(&mut other, &limits), Ok(Some(Frame::Integer(7))));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn encode_then_parse_gives_the_same_frame(frame in arb_top()) {
            let bytes = frame.to_bytes();
            let mut buf = BytesMut::from(&bytes[..]);
            prop_assert_eq!(Frame::parse(&mut buf, &FrameLimits::default()), Ok(Some(frame)));
            prop_assert!(buf.is_empty());
        }

        #[test]
        fn any_split_of_a_frame_stream_gives_the_same_frames(
            frames in prop::collection::vec(arb_top(), 1..5),
            cuts in prop::collection::vec(0usize..600, 0..10),
        ) {
            let mut stream = BytesMut::new();
            for f in &frames {
                f.encode(&mut stream);
            }
            prop_assert_eq!(parse_stream(&stream, &cuts, None), Ok(frames.clone()));
            prop_assert_eq!(parse_stream(&stream, &cuts, Some(&mut FrameDecoder::new())), Ok(frames));
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in prop::collection::vec(
                prop_oneof![any::<u8>(), prop::sample::select(b"+-:$*_,#(=!%~|>\r\n0123456789".to_vec())], 0..200),
        ) {
            let limits = FrameLimits { max_bulk_len: 64, max_aggregate_len: 16, max_depth: 8, max_inline_len: 32 };
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = Frame::parse(&mut buf, &limits) {}
        }
    }
}
