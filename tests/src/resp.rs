//! Raw RESP2/RESP3 reply framing for byte-exact comparisons: where a reply ends and where the elements of an
//! aggregate are, without interpreting or re-encoding anything. This is deliberately not the server's own
//! parser (shoal-protocol), so that a bug there cannot hide itself.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RespError(pub String);

impl fmt::Display for RespError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Deepest aggregate nesting accepted.
const MAX_DEPTH: usize = 64;

/// The length of the complete reply at the start of `buf`: `Ok(None)` if more bytes are needed.
pub fn reply_len(buf: &[u8]) -> Result<Option<usize>, RespError> {
    element_end(buf, 0, 0)
}

fn line_end(buf: &[u8], pos: usize) -> Option<usize> {
    // Index of the '\r' of the first "\r\n" at or after pos.
    buf.get(pos..)?.windows(2).position(|w| w == b"\r\n").map(|i| pos + i)
}

fn parse_len(line: &[u8]) -> Result<i64, RespError> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| RespError(format!("bad length {}", escape(line))))
}

/// End (exclusive) of the element starting at `pos`.
fn element_end(buf: &[u8], pos: usize, depth: usize) -> Result<Option<usize>, RespError> {
    if depth > MAX_DEPTH {
        return Err(RespError("nesting too deep".into()));
    }
    let Some(&t) = buf.get(pos) else {
        return Ok(None);
    };
    let Some(le) = line_end(buf, pos + 1) else {
        return Ok(None);
    };
    let line = &buf[pos + 1..le];
    let after = le + 2;
    match t {
        b'+' | b'-' | b':' | b',' | b'#' | b'(' | b'_' => Ok(Some(after)),
        b'$' | b'!' | b'=' => {
            let n = parse_len(line)?;
            if n < 0 {
                return if n == -1 && t == b'$' {
                    Ok(Some(after))
                } else {
                    Err(RespError(format!("negative blob length {n}")))
                };
            }
            let end = after + n as usize + 2;
            if buf.len() < end {
                return Ok(None);
            }
            if &buf[end - 2..end] != b"\r\n" {
                return Err(RespError("blob not followed by CRLF".into()));
            }
            Ok(Some(end))
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let n = parse_len(line)?;
            if n < 0 {
                return if n == -1 && t == b'*' {
                    Ok(Some(after))
                } else {
                    Err(RespError(format!("negative aggregate length {n}")))
                };
            }
            let count = if t == b'%' || t == b'|' { n * 2 } else { n };
            let mut p = after;
            for _ in 0..count {
                match element_end(buf, p, depth + 1)? {
                    Some(e) => p = e,
                    None => return Ok(None),
                }
            }
            Ok(Some(p))
        }
        other => Err(RespError(format!("unknown reply type byte {:?}", other as char))),
    }
}

/// For a complete aggregate reply (`* ~ > % |`): its header line (with CRLF) and the raw bytes of each
/// element (of each key and value, in order, for maps). `None` for other replies.
pub fn split_aggregate(reply: &[u8]) -> Option<(Vec<u8>, Vec<Vec<u8>>)> {
    let t = *reply.first()?;
    if !matches!(t, b'*' | b'~' | b'>' | b'%' | b'|') {
        return None;
    }
    let le = line_end(reply, 1)?;
    let n = parse_len(&reply[1..le]).ok()?;
    if n < 0 {
        return None;
    }
    let count = if t == b'%' || t == b'|' { n * 2 } else { n };
    let mut p = le + 2;
    let mut elems = Vec::new();
    for _ in 0..count {
        let e = element_end(reply, p, 1).ok()??;
        elems.push(reply[p..e].to_vec());
        p = e;
    }
    Some((reply[..le + 2].to_vec(), elems))
}

/// A bulk string's payload (`$n\r\n...\r\n`), or a simple string's / verbatim string's text.
pub fn as_str(reply: &[u8]) -> Option<Vec<u8>> {
    match reply.first()? {
        b'+' | b'-' | b':' | b',' | b'(' => Some(reply[1..reply.len().checked_sub(2)?].to_vec()),
        b'$' | b'=' => {
            let le = line_end(reply, 1)?;
            let body = &reply[le + 2..reply.len().checked_sub(2)?];
            Some(if reply[0] == b'=' {
                body.get(4..)?.to_vec()
            } else {
                body.to_vec()
            })
        }
        _ => None,
    }
}

/// An integer reply's value.
pub fn as_int(reply: &[u8]) -> Option<i64> {
    if reply.first() != Some(&b':') {
        return None;
    }
    std::str::from_utf8(&reply[1..reply.len() - 2]).ok()?.parse().ok()
}

/// Printable form of raw bytes: printable ASCII as is, CR and LF as `\r` `\n`, the rest as `\xHH`.
pub fn escape(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len());
    for &c in b {
        match c {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(c as char),
            _ => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    s
}

/// [`escape`], cut to `max` characters.
pub fn escape_short(b: &[u8], max: usize) -> String {
    let s = escape(b);
    if s.len() <= max {
        s
    } else {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}... ({} bytes)", &s[..cut], b.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_every_type() {
        for r in [
            &b"+OK\r\n"[..],
            b"-ERR x\r\n",
            b":12\r\n",
            b"$3\r\nabc\r\n",
            b"$-1\r\n",
            b"*-1\r\n",
            b"$0\r\n\r\n",
            b"*2\r\n$1\r\na\r\n:1\r\n",
            b"%1\r\n+a\r\n*1\r\n_\r\n",
            b"~2\r\n,1.5\r\n#t\r\n",
            b"=7\r\ntxt:abc\r\n",
            b"(123\r\n",
            b"$4\r\na\r\nb\r\n",
        ] {
            let mut with_tail = r.to_vec();
            with_tail.extend_from_slice(b"+NEXT\r\n");
            assert_eq!(reply_len(&with_tail).unwrap(), Some(r.len()), "{}", escape(r));
            for cut in 0..r.len() {
                assert_eq!(reply_len(&r[..cut]).unwrap(), None, "{} cut {cut}", escape(r));
            }
        }
        assert!(reply_len(b"?x\r\n").is_err());
        assert!(reply_len(b"$3\r\nabcd\r\n").is_err());
    }

    #[test]
    fn splits_aggregates() {
        let (h, e) = split_aggregate(b"*3\r\n$1\r\nb\r\n*1\r\n:1\r\n+a\r\n").unwrap();
        assert_eq!(h, b"*3\r\n");
        assert_eq!(
            e,
            vec![b"$1\r\nb\r\n".to_vec(), b"*1\r\n:1\r\n".to_vec(), b"+a\r\n".to_vec()]
        );
        let (_, e) = split_aggregate(b"%1\r\n+k\r\n:2\r\n").unwrap();
        assert_eq!(e.len(), 2);
        assert!(split_aggregate(b"+OK\r\n").is_none());
        assert_eq!(as_str(b"$3\r\nabc\r\n").unwrap(), b"abc");
        assert_eq!(as_str(b"=7\r\ntxt:abc\r\n").unwrap(), b"abc");
        assert_eq!(as_int(b":-5\r\n"), Some(-5));
    }
}
