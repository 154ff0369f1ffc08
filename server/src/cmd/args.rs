//! Small argument parsers shared by the command families, each failing with the error text Redis gives.

use crate::error::CmdError;
use crate::num;

/// An integer argument (`ERR value is not an integer or out of range`).
#[inline]
pub fn int(arg: &[u8]) -> Result<i64, CmdError> {
    num::parse_i64(arg).ok_or_else(CmdError::not_integer)
}

/// A non-negative integer argument that must fit in `usize`.
pub fn uint(arg: &[u8]) -> Result<usize, CmdError> {
    match num::parse_i64(arg) {
        Some(n) if n >= 0 => Ok(n as usize),
        _ => Err(CmdError::not_integer()),
    }
}

/// A float argument (`ERR value is not a valid float`).
pub fn float(arg: &[u8]) -> Result<f64, CmdError> {
    num::parse_f64(arg).ok_or_else(CmdError::not_float)
}

/// Case-insensitive keyword comparison (`kw` is given in lower case).
#[inline]
pub fn is(arg: &[u8], kw: &str) -> bool {
    arg.eq_ignore_ascii_case(kw.as_bytes())
}

/// The argument as lower-case ASCII text, for matching options.
pub fn lower(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).to_ascii_lowercase()
}

/// `yes`/`no` or `on`/`off` as CLIENT subcommands take them.
pub fn on_off(arg: &[u8]) -> Option<bool> {
    if is(arg, "on") || is(arg, "yes") {
        Some(true)
    } else if is(arg, "off") || is(arg, "no") {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_ignore_case() {
        assert!(is(b"NX", "nx"));
        assert!(!is(b"NXX", "nx"));
    }

    #[test]
    fn integers_reject_garbage_with_redis_text() {
        assert_eq!(int(b"12").unwrap(), 12);
        assert_eq!(
            int(b"1x").unwrap_err().text(),
            "ERR value is not an integer or out of range"
        );
        assert!(uint(b"-1").is_err());
    }
}
