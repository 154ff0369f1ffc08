//! Redis-exact conversions between strings and numbers, so string-command replies match Redis 7.0 byte for byte.
//!
//! This module owns:
//! - integer parsing with Redis's `string2ll` rules ([`parse_i64`]), used for every integer argument (INCRBY,
//!   SETRANGE/GETRANGE offsets, EXPIRE and SET EX/PX times) and for stored values INCR reads;
//! - double parsing with Redis's `string2d` rules ([`parse_f64`]);
//! - INCRBYFLOAT's `long double` arithmetic and its `ld2string(LD_STR_HUMAN)` formatting ([`LongDouble`],
//!   [`parse_long_double`], [`incr_by_float`]), done in C (`csrc/ldouble.c`) because Rust has no `long double`;
//! - INCR/INCRBY/DECR/DECRBY overflow rules and their error texts ([`incr_by_i64`], [`decrby_increment`]);
//! - the encoding `OBJECT ENCODING` reports for a string value ([`string_encoding`] and friends).
//!
//! Integer formatting (Redis's `ll2string`) is `shoal_protocol::reply::fmt_i64` and `%.17g` double replies are
//! `shoal_protocol::reply::format_double`; they are not duplicated here. On the LP64 targets we build for, C's
//! `long` is 64 bits, so Redis's `string2l` (SETRANGE offsets, `tryObjectEncoding`) is exactly [`parse_i64`].

use std::fmt;

/// Redis's `LONG_STR_SIZE`: strings of this length or longer are never integers (`string2ll` rejects them
/// before looking at the digits; the longest i64, `-9223372036854775808`, has 20 bytes).
pub const LONG_STR_SIZE: usize = 21;

/// Redis's `OBJ_ENCODING_EMBSTR_SIZE_LIMIT`: strings up to this many bytes are created `embstr`, longer `raw`.
pub const EMBSTR_SIZE_LIMIT: usize = 44;

/// Redis's `MAX_LONG_DOUBLE_CHARS`: `string2ld` rejects inputs of this length or longer.
pub const MAX_LONG_DOUBLE_CHARS: usize = 5 * 1024;

mod ffi {
    use super::LongDouble;

    extern "C" {
        #[cfg(test)]
        pub fn shoal_max_long_double_chars() -> usize;
        pub fn shoal_string2ld(s: *const u8, slen: usize, out: *mut LongDouble) -> libc::c_int;
        pub fn shoal_string2d(s: *const u8, slen: usize, out: *mut f64) -> libc::c_int;
        pub fn shoal_ld2string_human(buf: *mut u8, len: usize, v: *const LongDouble) -> usize;
        pub fn shoal_ld_add(out: *mut LongDouble, a: *const LongDouble, b: *const LongDouble);
        pub fn shoal_ld_from_ll(out: *mut LongDouble, n: libc::c_longlong);
        pub fn shoal_ld_to_double(v: *const LongDouble) -> f64;
        pub fn shoal_ld_is_nan(v: *const LongDouble) -> libc::c_int;
        pub fn shoal_ld_is_inf(v: *const LongDouble) -> libc::c_int;
    }
}

/// Parses `s` exactly as Redis's `string2ll`: an optional `-`, then either the single digit `0` or a digit
/// `1`-`9` followed by digits, all of `s` consumed, no overflow. So no `+`, no spaces, no leading zeros, no `-0`,
/// nothing longer than 20 bytes. Only such strings round-trip through `ll2string` unchanged, which is why Redis
/// (and we) may store them as integers.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() >= LONG_STR_SIZE {
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
    // Accumulate in u64 so i64::MIN's magnitude (one more than i64::MAX) is representable before negating.
    let mut v: u64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    if negative {
        if v > i64::MIN.unsigned_abs() {
            return None;
        }
        // v <= 2^63, so the wrapping negation is exact (2^63 wraps to i64::MIN).
        Some((v as i64).wrapping_neg())
    } else {
        i64::try_from(v).ok()
    }
}

/// Parses `s` exactly as Redis's `string2d` (`getDoubleFromObject`): C `strtod` must consume all of `s`; no
/// leading whitespace; overflow to ±infinity and underflow to zero are rejected (subnormals are accepted);
/// NaN is rejected. Unlike Rust's `f64::from_str` this accepts hex floats (`0x1p-2`), a leading `+` and `inf`,
/// `infinity` in any case, because that is what glibc's strtod does.
pub fn parse_f64(s: &[u8]) -> Option<f64> {
    // strtod stops at an embedded NUL, so Redis's "consumed all of slen" test fails for such strings; decide it
    // here, which also makes the copy below a valid C string.
    if s.is_empty() || s.contains(&0) {
        return None;
    }
    let mut stack = [0u8; 128];
    let heap: Vec<u8>;
    let cstr: &[u8] = if s.len() < stack.len() {
        stack[..s.len()].copy_from_slice(s);
        &stack[..=s.len()]
    } else {
        heap = [s, b"\0"].concat();
        &heap
    };
    let mut out = 0.0f64;
    // SAFETY: `cstr` holds `s.len()` bytes followed by a NUL, as shoal_string2d requires; `out` is a valid f64.
    let ok = unsafe { ffi::shoal_string2d(cstr.as_ptr(), s.len(), &mut out) };
    (ok == 1).then_some(out)
}

/// A C `long double` (80-bit x87 extended precision on x86_64 Linux, IEEE quad on aarch64 Linux), held as an
/// opaque blob and only ever operated on by C, so INCRBYFLOAT rounds exactly as Redis does on the same platform.
#[derive(Clone, Copy)]
#[repr(C, align(16))]
pub struct LongDouble {
    bytes: [u8; 16],
}

impl LongDouble {
    /// Zero, the value INCRBYFLOAT starts from when the key does not exist.
    pub const ZERO: LongDouble = LongDouble { bytes: [0; 16] };

    /// The exact conversion Redis applies to an `int`-encoded value (`(long double)(long)o->ptr`).
    pub fn from_i64(n: i64) -> LongDouble {
        let mut out = LongDouble::ZERO;
        // SAFETY: `out` is a valid, aligned 16-byte blob the C side writes a long double into.
        unsafe { ffi::shoal_ld_from_ll(&mut out, n) };
        out
    }

    /// The nearest double (C's `(double)` conversion).
    pub fn to_f64(self) -> f64 {
        // SAFETY: `self` holds a long double stored by the C side (or the all-zero blob, which is +0.0).
        unsafe { ffi::shoal_ld_to_double(&self) }
    }

    pub fn is_nan(self) -> bool {
        // SAFETY: as in `to_f64`.
        unsafe { ffi::shoal_ld_is_nan(&self) != 0 }
    }

    pub fn is_infinite(self) -> bool {
        // SAFETY: as in `to_f64`.
        unsafe { ffi::shoal_ld_is_inf(&self) != 0 }
    }

    /// Neither NaN nor infinite: the condition INCRBYFLOAT (and HINCRBYFLOAT) require of a result.
    pub fn is_finite(self) -> bool {
        !self.is_nan() && !self.is_infinite()
    }

    /// Redis's `ld2string(..., LD_STR_HUMAN)`: `%.17Lf`, trailing zeros and a bare trailing dot dropped, `-0`
    /// printed as `0`, infinities as `inf`/`-inf`. This is the stored value and the reply of INCRBYFLOAT and
    /// HINCRBYFLOAT.
    pub fn to_human_bytes(self) -> Vec<u8> {
        // Format on the stack and copy out only the used bytes: the result is usually stored as a value, and a
        // truncated 5 KiB Vec would keep its whole capacity alive in the keyspace.
        let mut buf = [0u8; MAX_LONG_DOUBLE_CHARS];
        // SAFETY: `buf` is writable for its whole length, which is passed as the limit; `self` as in `to_f64`.
        let len = unsafe { ffi::shoal_ld2string_human(buf.as_mut_ptr(), buf.len(), &self) };
        // A zero length means "no room" in Redis, which then stores an empty string; with a 5 KiB buffer that
        // cannot happen for any finite long double, and we mirror Redis rather than invent an error.
        buf[..len.min(MAX_LONG_DOUBLE_CHARS)].to_vec()
    }
}

impl Default for LongDouble {
    fn default() -> Self {
        LongDouble::ZERO
    }
}

impl std::ops::Add for LongDouble {
    type Output = LongDouble;

    /// `long double` addition, rounded in the platform's extended precision like Redis's `value += incr`.
    fn add(self, rhs: LongDouble) -> LongDouble {
        let mut out = LongDouble::ZERO;
        // SAFETY: all three are valid, aligned blobs; the C side only reads `self`/`rhs` and writes `out`.
        unsafe { ffi::shoal_ld_add(&mut out, &self, &rhs) };
        out
    }
}

impl fmt::Debug for LongDouble {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LongDouble({})", String::from_utf8_lossy(&self.to_human_bytes()))
    }
}

/// Parses `s` exactly as Redis's `string2ld` (`getLongDoubleFromObject`): C `strtold` must consume all of `s`,
/// which must be non-empty and shorter than [`MAX_LONG_DOUBLE_CHARS`]; no leading whitespace; overflow to
/// ±infinity, underflow to zero and NaN are rejected. A literal `inf`/`infinity` is accepted (it is not an
/// overflow), so INCRBYFLOAT reports it through its NaN/Infinity result check instead.
pub fn parse_long_double(s: &[u8]) -> Option<LongDouble> {
    // Checked here as well as in C so the C side never sees a length it would have to reject anyway.
    if s.is_empty() || s.len() >= MAX_LONG_DOUBLE_CHARS {
        return None;
    }
    let mut out = LongDouble::ZERO;
    // SAFETY: `s` is readable for `s.len()` bytes (the C side copies it into its own NUL-terminated buffer);
    // `out` is a valid, aligned blob.
    let ok = unsafe { ffi::shoal_string2ld(s.as_ptr(), s.len(), &mut out) };
    (ok == 1).then_some(out)
}

/// Why INCRBYFLOAT failed; [`IncrFloatError::message`] is the exact error reply text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncrFloatError {
    /// The stored value or the increment is not a number `string2ld` accepts.
    NotAFloat,
    /// The sum is NaN or infinite (including an `inf` operand); the key is left untouched.
    NanOrInfinity,
}

impl IncrFloatError {
    /// The error reply, code first, as `ReplyWriter::error` takes it.
    pub fn message(self) -> &'static [u8] {
        match self {
            IncrFloatError::NotAFloat => b"ERR value is not a valid float",
            IncrFloatError::NanOrInfinity => b"ERR increment would produce NaN or Infinity",
        }
    }
}

impl fmt::Display for IncrFloatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.message()))
    }
}

impl std::error::Error for IncrFloatError {}

/// INCRBYFLOAT on a string value: `current` is the stored value (`None` when the key does not exist, which
/// counts as 0), `incr` the argument. Returns the new value, which is both what to store and the bulk reply.
///
/// Redis stores this result with `createStringObject`, never trying the `int` encoding, so `OBJECT ENCODING`
/// reports it as [`created_string_encoding`] does (`INCRBYFLOAT k 1` on `10` gives an `embstr` `11`).
pub fn incr_by_float(current: Option<&[u8]>, incr: &[u8]) -> Result<Vec<u8>, IncrFloatError> {
    // Same order as Redis (stored value first); both failures give the same reply anyway.
    let value = match current {
        None => LongDouble::ZERO,
        Some(s) => parse_long_double(s).ok_or(IncrFloatError::NotAFloat)?,
    };
    let incr = parse_long_double(incr).ok_or(IncrFloatError::NotAFloat)?;
    let sum = value + incr;
    if !sum.is_finite() {
        return Err(IncrFloatError::NanOrInfinity);
    }
    Ok(sum.to_human_bytes())
}

/// Why INCR/DECR/INCRBY/DECRBY failed; [`IncrIntError::message`] is the exact error reply text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncrIntError {
    /// The stored value or the argument is not a [`parse_i64`] integer.
    NotAnInteger,
    /// The sum leaves the i64 range.
    Overflow,
    /// DECRBY with i64::MIN, whose negation does not exist (checked by Redis 7.0 before the key is read).
    DecrementOverflow,
}

impl IncrIntError {
    /// The error reply, code first, as `ReplyWriter::error` takes it.
    pub fn message(self) -> &'static [u8] {
        match self {
            IncrIntError::NotAnInteger => b"ERR value is not an integer or out of range",
            IncrIntError::Overflow => b"ERR increment or decrement would overflow",
            IncrIntError::DecrementOverflow => b"ERR decrement would overflow",
        }
    }
}

impl fmt::Display for IncrIntError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.message()))
    }
}

impl std::error::Error for IncrIntError {}

/// The increment DECRBY applies for argument `decr`: its negation, or [`IncrIntError::DecrementOverflow`] for
/// i64::MIN (Redis 7.0 replies that even when the key's value would absorb it, e.g. `0`).
pub fn decrby_increment(decr: i64) -> Result<i64, IncrIntError> {
    decr.checked_neg().ok_or(IncrIntError::DecrementOverflow)
}

/// The core of Redis's `incrDecrCommand`: `current` is the stored value (`None` when the key does not exist,
/// which counts as 0). Parse the increment argument with [`parse_i64`] first (a bad argument is reported before
/// a bad stored value, as in Redis). The result is stored with the `int` encoding.
pub fn incr_by_i64(current: Option<&[u8]>, incr: i64) -> Result<i64, IncrIntError> {
    let value = match current {
        None => 0,
        Some(s) => parse_i64(s).ok_or(IncrIntError::NotAnInteger)?,
    };
    // Redis's explicit same-sign test is exactly the condition under which the i64 sum overflows.
    value.checked_add(incr).ok_or(IncrIntError::Overflow)
}

/// Whether Redis's `tryObjectEncoding` turns this string into an `int`-encoded object: at most 20 bytes and
/// accepted by `string2l` (= [`parse_i64`] on LP64). So `123` and `-9223372036854775808` are ints, while `01`,
/// `+1`, `-0`, `1.0` and `9223372036854775808` stay strings.
pub fn string_is_int_encodable(s: &[u8]) -> bool {
    s.len() <= 20 && parse_i64(s).is_some()
}

/// The encoding `OBJECT ENCODING` reports for a string value, as Redis 7.0 gives it.
///
/// With `appended_or_setrange == false`: the value was stored by SET/SETNX/SETEX/PSETEX/GETSET/MSET/MSETNX,
/// by APPEND or INCR/DECR creating the key, or is an INCR/DECR result — all of which go through
/// `tryObjectEncoding` — so `int` if [`string_is_int_encodable`], else `embstr` up to [`EMBSTR_SIZE_LIMIT`]
/// bytes, else `raw`.
///
/// With `appended_or_setrange == true`: the value was modified in place by APPEND (even of an empty string) or
/// by SETRANGE on an existing key with a non-empty value (an empty one returns before touching the object), or
/// created by SETRANGE; Redis unshares it into a `raw` sds and reports `raw` whatever it contains, until a later
/// SET or INCR re-encodes it.
///
/// INCRBYFLOAT results use [`created_string_encoding`] instead.
pub fn string_encoding(s: &[u8], appended_or_setrange: bool) -> &'static str {
    if appended_or_setrange {
        "raw"
    } else if string_is_int_encodable(s) {
        "int"
    } else {
        created_string_encoding(s)
    }
}

/// The encoding of a string object made by Redis's `createStringObject` with no `tryObjectEncoding` afterwards,
/// which is how INCRBYFLOAT and HINCRBYFLOAT results are stored: `embstr` up to [`EMBSTR_SIZE_LIMIT`] bytes,
/// `raw` beyond, even when the digits would fit an `int`.
pub fn created_string_encoding(s: &[u8]) -> &'static str {
    if s.len() <= EMBSTR_SIZE_LIMIT {
        "embstr"
    } else {
        "raw"
    }
}

/// Checks, once, that the C side was compiled with the limits this module assumes.
#[cfg(test)]
fn c_max_long_double_chars() -> usize {
    // SAFETY: a pure function without arguments.
    unsafe { ffi::shoal_max_long_double_chars() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_and_rust_agree_on_buffer_size() {
        assert_eq!(c_max_long_double_chars(), MAX_LONG_DOUBLE_CHARS);
    }

    /// Verified against redis-server 7.0.15 with `INCRBY k <arg>` on a missing key.
    #[test]
    fn parse_i64_matches_string2ll() {
        let cases: &[(&[u8], Option<i64>)] = &[
            (b"0", Some(0)),
            (b"1", Some(1)),
            (b"-1", Some(-1)),
            (b"99", Some(99)),
            (b"-99", Some(-99)),
            (b"9223372036854775807", Some(i64::MAX)),
            (b"-9223372036854775808", Some(i64::MIN)),
            (b"9223372036854775808", None),
            (b"-9223372036854775809", None),
            (b"18446744073709551615", None),
            (b"18446744073709551616", None),
            (b"99999999999999999999", None),
            (b"123456789012345678901", None),
            (b"-0", None),
            (b"+1", None),
            (b" 1", None),
            (b"1 ", None),
            (b"01", None),
            (b"00", None),
            (b"-01", None),
            (b"", None),
            (b"-", None),
            (b"1.0", None),
            (b"1e3", None),
            (b"0x10", None),
            (b"1\0", None),
            (b"\x001", None),
            ("١".as_bytes(), None),
            (b"12a", None),
            (b"a12", None),
            (b"--1", None),
            (b"1-", None),
        ];
        for &(input, want) in cases {
            assert_eq!(parse_i64(input), want, "input {:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn parse_i64_round_trips_through_decimal_formatting() {
        for n in [0, 1, -1, 10, -10, 12345, i64::MAX, i64::MIN, i64::MAX - 1, i64::MIN + 1] {
            assert_eq!(parse_i64(n.to_string().as_bytes()), Some(n));
        }
    }

    /// Verified against redis-server 7.0.15 with `ZADD z <arg> m` / `ZSCORE z m`.
    #[test]
    fn parse_f64_matches_string2d() {
        let cases: &[(&[u8], Option<f64>)] = &[
            (b"1", Some(1.0)),
            (b"1.5", Some(1.5)),
            (b"-1.5", Some(-1.5)),
            (b"+1", Some(1.0)),
            (b"0x10", Some(16.0)),
            (b"0x1p-2", Some(0.25)),
            (b"1e5", Some(100000.0)),
            (b"inf", Some(f64::INFINITY)),
            (b"-inf", Some(f64::NEG_INFINITY)),
            (b"+inf", Some(f64::INFINITY)),
            (b"Infinity", Some(f64::INFINITY)),
            (b"INF", Some(f64::INFINITY)),
            (b".5", Some(0.5)),
            (b"5.", Some(5.0)),
            (b"00012", Some(12.0)),
            (b"0", Some(0.0)),
            (b"0.1", Some(0.1)),
            (b"1e308", Some(1e308)),
            (b"1e-308", Some(1e-308)),
            (b"1e-320", Some(1e-320)),
            (b"4.9e-324", Some(4.9e-324)),
            (b"2.5e-324", Some(4.9e-324)),
            (b"12345678901234567890123", Some(1.2345678901234568e22)),
            (b"1.7976931348623157e308", Some(f64::MAX)),
            (b"1.7976931348623158e308", Some(f64::MAX)),
            (b" 1", None),
            (b"1 ", None),
            (b"\t1", None),
            (b"1e", None),
            (b"nan", None),
            (b"NaN", None),
            (b"-nan", None),
            (b"nan(1)", None),
            (b"", None),
            (b".", None),
            (b"-", None),
            (b"1e309", None),
            (b"-1e309", None),
            (b"1.7976931348623159e308", None),
            (b"1e-330", None),
            (b"2.4e-324", None),
            (b"-1e-400", None),
            (b"1\0", None),
            (b"1\x002", None),
            (b"1_0", None),
            (b"1,5", None),
        ];
        for &(input, want) in cases {
            let got = parse_f64(input);
            assert_eq!(
                got.map(f64::to_bits),
                want.map(f64::to_bits),
                "input {:?}: got {got:?}, want {want:?}",
                String::from_utf8_lossy(input)
            );
        }
        // The sign of zero survives parsing (Redis keeps -0.0 as the double; how it prints is the caller's).
        assert_eq!(parse_f64(b"-0").map(f64::to_bits), Some((-0.0f64).to_bits()));
    }

    #[test]
    fn parse_f64_handles_inputs_longer_than_the_stack_buffer() {
        let mut long = b"1.".to_vec();
        long.extend(std::iter::repeat_n(b'0', 300));
        long.push(b'1');
        assert_eq!(parse_f64(&long), Some(1.0));
        let mut bad = long.clone();
        bad.push(b' ');
        assert_eq!(parse_f64(&bad), None);
        // Exactly at the stack/heap boundary.
        let boundary = [b'1'; 127];
        assert!(parse_f64(&boundary).is_some());
        let boundary = [b'1'; 128];
        assert!(parse_f64(&boundary).is_some());
    }

    /// What `INCRBYFLOAT` replies, verified against redis-server 7.0.15 (x86_64, 80-bit long double).
    /// `None` as the first column means the key does not exist.
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    const INCRBYFLOAT_CASES: &[(Option<&str>, &str, Result<&str, IncrFloatError>)] = {
        use IncrFloatError::{NanOrInfinity as Inf, NotAFloat as Bad};
        &[
            (Some("10.50"), "0.1", Ok("10.6")),
            (Some("10.50"), "5.0e3", Ok("5010.5")),
            (None, "5.0e3", Ok("5000")),
            (None, "3.0e3", Ok("3000")),
            (None, " 1", Err(Bad)),
            (None, "1 ", Err(Bad)),
            (None, "\t1", Err(Bad)),
            (None, "\n1", Err(Bad)),
            (None, "1\n", Err(Bad)),
            (None, "0x10", Ok("16")),
            (None, "0X1p4", Ok("16")),
            (None, "0x1.8p1", Ok("3")),
            (None, "0x.8", Ok("0.5")),
            (None, "0x", Err(Bad)),
            (None, "1e", Err(Bad)),
            (None, "e5", Err(Bad)),
            (None, "inf", Err(Inf)),
            (None, "-inf", Err(Inf)),
            (None, "Infinity", Err(Inf)),
            (None, "infinity", Err(Inf)),
            (None, "-infinity", Err(Inf)),
            (None, "INF", Err(Inf)),
            (None, "inF", Err(Inf)),
            (None, "nan", Err(Bad)),
            (None, "NaN", Err(Bad)),
            (None, "nan(123)", Err(Bad)),
            (None, "-0", Ok("0")),
            (None, "0", Ok("0")),
            (Some("-0"), "0", Ok("0")),
            (Some("-0"), "-0", Ok("0")),
            (None, "-0.0", Ok("0")),
            (Some("0"), "-0.0", Ok("0")),
            (None, "+1", Ok("1")),
            (None, "+.5", Ok("0.5")),
            (None, ".5", Ok("0.5")),
            (None, "5.", Ok("5")),
            (None, ".", Err(Bad)),
            (None, "", Err(Bad)),
            (None, "-", Err(Bad)),
            (None, "1_0", Err(Bad)),
            (None, "1,5", Err(Bad)),
            (None, "00001.5", Ok("1.5")),
            (None, "12345678901234567890", Ok("12345678901234567890")),
            (
                None,
                "123456789012345678901234567890",
                Ok("123456789012345678899921813504"),
            ),
            (None, "0.12345678901234567890", Ok("0.12345678901234568")),
            (None, "5.0000000000000001", Ok("5.0000000000000001")),
            (Some("5"), "0.0000000000000001", Ok("5.0000000000000001")),
            (None, "0.1", Ok("0.1")),
            (Some("0.1"), "0.2", Ok("0.3")),
            (Some("1"), "0.1", Ok("1.1")),
            (None, "1.1", Ok("1.1")),
            (None, "-1.1", Ok("-1.1")),
            (Some("1.1"), "-1.1", Ok("0")),
            (Some("0.3"), "-0.1", Ok("0.2")),
            (Some("3"), "4", Ok("7")),
            (Some("17179869184"), "1.5", Ok("17179869185.5")),
            (Some("9223372036854775807"), "1", Ok("9223372036854775808")),
            (Some("-9223372036854775808"), "-1", Ok("-9223372036854775809")),
            (Some("abc"), "1", Err(Bad)),
            (Some("1"), "abc", Err(Bad)),
            (Some(""), "1", Err(Bad)),
            (Some(" 1"), "1", Err(Bad)),
            (Some("1 "), "1", Err(Bad)),
            (Some("0x10"), "1", Ok("17")),
            (Some("inf"), "1", Err(Inf)),
            (Some("nan"), "1", Err(Bad)),
            (Some("1e"), "1", Err(Bad)),
            (Some("1\0"), "1", Err(Bad)),
            (Some("1"), "1\0", Err(Bad)),
            (None, "1.5e-7", Ok("0.00000015")),
            (None, "0.000000000000000001", Ok("0")),
            (None, "1e-17", Ok("0.00000000000000001")),
            (None, "1e-18", Ok("0")),
            (None, "-1e-18", Ok("0")),
            (None, "1e20", Ok("100000000000000000000")),
            (None, "1e21", Ok("1000000000000000000000")),
            (None, "1e30", Ok("1000000000000000000024696061952")),
            (None, "1e17", Ok("100000000000000000")),
            (None, "1e18", Ok("1000000000000000000")),
            (None, "1.5e18", Ok("1500000000000000000")),
            (None, "18446744073709551616", Ok("18446744073709551616")),
            (None, "123.456", Ok("123.456")),
            (None, "-123.456", Ok("-123.456")),
            (None, "99999999999999999", Ok("99999999999999999")),
            (None, "0.99999999999999999", Ok("0.99999999999999999")),
            (None, "0.999999999999999999", Ok("1")),
            (None, "1.23456789012345678", Ok("1.23456789012345678")),
            (None, "10.5", Ok("10.5")),
            (Some("10.5"), "-10.5", Ok("0")),
            (None, "1e+5", Ok("100000")),
            (None, "1E5", Ok("100000")),
            (None, "1e-5", Ok("0.00001")),
            (None, "2.5", Ok("2.5")),
            (None, "0.5", Ok("0.5")),
            (None, "1.05", Ok("1.05")),
            (None, "2.675", Ok("2.675")),
            // Far below the double range but representable as an 80-bit long double, so not an underflow.
            (None, "1e-310", Ok("0")),
            (None, "1e-400", Ok("0")),
            (None, "1e-4000", Ok("0")),
            (None, "1e-4940", Ok("0")),
            (None, "3.6e-4951", Ok("0")),
            (None, "1e-5000", Err(Bad)),
            (None, "1e4933", Err(Bad)),
            (Some("1e4932"), "1e4932", Err(Inf)),
            (Some("1e4932"), "-inf", Err(Inf)),
            (Some("inf"), "-inf", Err(Inf)),
            (Some("10"), "1", Ok("11")),
            (Some("1e40"), "1", Ok("9999999999999999999783686092270256259072")),
        ]
    };

    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    #[test]
    fn incr_by_float_matches_redis() {
        for &(current, incr, ref want) in INCRBYFLOAT_CASES {
            let got = incr_by_float(current.map(str::as_bytes), incr.as_bytes());
            let want = want.map(|s| s.as_bytes().to_vec());
            assert_eq!(got, want, "current {current:?} incr {incr:?}");
        }
    }

    /// Results far beyond the double range print in full (thousands of digits), exactly as Redis does.
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    #[test]
    fn incr_by_float_prints_huge_values_in_full() {
        let got = incr_by_float(Some(b"1e308"), b"1e308").ok();
        let want = "199999999999999999993371759311691291321120199694831134415594095989843469737676123744200253843777078640893494450108026446304269499187921167194841628860392837535918200039206381557326219209014213335878306791577877829121087126122536729803237260434173178506889763247582601711514636284849020905456510092687857156096";
        assert_eq!(got.as_deref(), Some(want.as_bytes()));

        let got = incr_by_float(None, b"1.7976931348623157e308").ok();
        let want = "179769313486231569995921046774104434048386446944329178485314420765176628523124396354701868608387085564428793419425520689308708363451136055357897278026477617073498977686288394835618163294045594434929537447290627480669417384648879122776218333598953852832103282504751611691208117720159985926376802466863339536384";
        assert_eq!(got.as_deref(), Some(want.as_bytes()));

        // The largest 80-bit value: 4933 digits, still inside Redis's 5 KiB buffer. Redis's reply starts and
        // ends as below.
        let got = incr_by_float(None, b"1.18973149535723176502e+4932").unwrap_or_default();
        assert_eq!(got.len(), 4933);
        assert!(got.starts_with(b"118973149535723176502126385303097020516906332229462420044032373389173700552"));
        assert!(got.ends_with(b"10341532542385911089624710885385808688837777258648564145934262121086647588489260031762345960769508849149662444156604419552086811989770240"));

        let got = incr_by_float(None, b"-1e4932").unwrap_or_default();
        assert_eq!(got.len(), 4934);
        assert!(got.starts_with(b"-1000000000000000000006018949387963891323837774254533114773785041352533019486608722407533327779433142773666525563666277682061860906440460336623416164931097542108653623739947237824273607755646282077337746770628281083461244709457643633409272844851420914666765408339856497738306756454137037618440476182982865954054046320908299555942321302503320602080070208203623921079151881460203745014774931620490030394998719312614654064081373493248877120892455186383753439197870978041502797716880193955403107721911638646256939484197293128160329482360996995779489224859264034146949087194820794222433687849284561987230134006305414553626323614864479565079390052761980633463640128979696615362545507608303960553830866145592644372289102918602696741767741297153998359263135897985849697638678310586803720024647593066044070323761747439375151949994191528876172274034561238465689530914002496208547488452249219821049217690359246594326188537200846025476936856707726986425804304053688317572380292690880454677852210458790733177421098965346383845533016192965653377533421097553773202105452559589360227732550843545717469715211293029277100649951579279463212875228768700827274629951331584994203243708412190948315614798641721054158397351395747758548328754270534225721361640356227816080094892433366902417454242382629232277544026609640255325557814321580325340352330660617642326696140257239552549121071985189443846777623334881929189773707008403466595204838733621633273383631944856989484138444978386656058755310848833689791896484998847550364264104800800578245511762594691161545730891319744107953897993101008217601269310629890308357893793344340072837782716410520818640099771094401772024731084835860689936533035726854175396195351768096519310944631445923638053214575993378468775292865871435742249777979822775014324475845899615096380079899099538453121043851821349178371736640702645304284254885437611441690360616466368202194307769462209963387690446576691969551571041941288302648912827345194286271122230347823246073498285153708579500062656222714954113329293953346495615947784091175883554988117167387650681525781361864450364992605079129770604793291076559668041153558254765774288831330658676910296506538343982699076824147706077401185501337053676875440863113630172067902223837838525802181406003942606507609826320015193807633035586661539150425605940691768637845815434184585255915074081317250319572700370579877977177644345205933505850374212779064837146242765034714569464306865784829936445754893825213995710137567750342556762329137973387913047300554841737506800154984198686923965286147079273203561004647365286049876790788288301130050437207489067798842078443360167772245834103629301041345252122743437501935254370757049878526838283810705343010153283985958550741661374001212323172562230037290597675029278865489570268803618001520280748588481858632332145422181524500970533738858652881625738158955840469334830106366243262210429210258173978186522208306814207038831590332622155464159216193005478809313772661406449321989529908990407599717265354887081027622412165764793106246309910984757869627982700885055259900973567128498437782671492610351088858271463387495833021819318548705558606395846070390500323204636339383655528123657438115225035433947543876805317781492691295772410403746456774175666884503175504415270824258750305653788473882671038340481278188648013647450190431469737277008003041204693859153544058059108384516541261521127088116402349679151317227395183628490922161336429757386698401928682323657056924758648793848799822907606679071280964393541325129231682456669123450140879120137931548652537601508656209183486928384515842973760163601756230697826779237275078471824258664382133759876151537532598429521999758431018087001817485300919479583171049967781322202936864648780744025361452947117776701129210049872555316467204668470989130203733391349501708713181244068921199587314823974568234174792429139799088587794666528769986602820375968045445209219875596678877912103336949894142378173648692130854177898020194629670311101994938157038765957014792056173739623614871557317714453597336202068774935086409386414223375141765601758268418764114651053088281009248246110195084364468926837572992870110411414878770616397817334529367403238061699632089293543118185299881280463481800696201966723511922556078483839325067415562633057448408746541808590342228476964416681055875561781810005936328191844815915658719683522845979901018335050006246392027657149580332319739660376707180429166280658258434773362764563277134220525779869893832824866422909928484939374964071386248088592408142723646533801882861736205992781965360090000802821408763787641023437653119263757280212773694655213507075717622521160227187157631635583682130089364682543007292042009976150135189415923413244100006421082817394988300265734422677548100741829682842668334472314928702968616204691717366798642916146473018363370523427203416579250811577900985980957404830019403600361860520985937973506956557739754741783354728589350876379371163141086538418113791886622720"));
    }

    #[test]
    fn incr_by_float_is_portable_for_exact_values() {
        // Sums exact in every long double format (even one that is just a double).
        type Case<'a> = (Option<&'a [u8]>, &'a [u8], &'a [u8]);
        let cases: &[Case] = &[
            (None, b"1", b"1"),
            (Some(b"10"), b"1", b"11"),
            (Some(b"10.5"), b"0.25", b"10.75"),
            (Some(b"-3"), b"3", b"0"),
            (Some(b"1.5"), b"-2", b"-0.5"),
        ];
        for &(current, incr, want) in cases {
            assert_eq!(incr_by_float(current, incr).as_deref(), Ok(want));
        }
        assert_eq!(incr_by_float(None, b"inf"), Err(IncrFloatError::NanOrInfinity));
        assert_eq!(incr_by_float(Some(b"x"), b"1"), Err(IncrFloatError::NotAFloat));
    }

    #[test]
    fn incr_float_errors_carry_the_redis_text() {
        assert_eq!(IncrFloatError::NotAFloat.message(), b"ERR value is not a valid float");
        assert_eq!(
            IncrFloatError::NanOrInfinity.message(),
            b"ERR increment would produce NaN or Infinity"
        );
        assert_eq!(IncrFloatError::NotAFloat.to_string(), "ERR value is not a valid float");
    }

    #[test]
    fn parse_long_double_limits() {
        assert!(parse_long_double(b"").is_none());
        // Redis copies into a 5 KiB buffer: 5119 bytes is the longest accepted input.
        let mut long = b"1.".to_vec();
        long.resize(MAX_LONG_DOUBLE_CHARS - 1, b'0');
        assert_eq!(parse_long_double(&long).map(LongDouble::to_f64), Some(1.0));
        long.push(b'0');
        assert!(parse_long_double(&long).is_none());
        assert!(parse_long_double(b"nan").is_none());
        assert!(parse_long_double(b"inf").is_some_and(LongDouble::is_infinite));
    }

    #[test]
    fn long_double_helpers() {
        assert_eq!(LongDouble::ZERO.to_human_bytes(), b"0");
        assert_eq!(LongDouble::default().to_f64(), 0.0);
        assert_eq!(LongDouble::from_i64(-42).to_human_bytes(), b"-42");
        assert_eq!(LongDouble::from_i64(i64::MIN).to_human_bytes(), b"-9223372036854775808");
        let inf = parse_long_double(b"-inf").map(LongDouble::to_human_bytes);
        assert_eq!(inf.as_deref(), Some(&b"-inf"[..]));
        let half = parse_long_double(b"0.5").unwrap_or_default();
        assert_eq!((half + half).to_f64(), 1.0);
        assert!(half.is_finite() && !half.is_nan() && !half.is_infinite());
        let inf = parse_long_double(b"inf").unwrap_or_default();
        let minus_inf = parse_long_double(b"-inf").unwrap_or_default();
        let nan = inf + minus_inf;
        assert!(nan.is_nan() && !nan.is_finite());
        assert_eq!(nan.to_human_bytes(), b"nan");
        assert_eq!(format!("{half:?}"), "LongDouble(0.5)");
        assert!(
            half.to_human_bytes().capacity() < 64,
            "the formatted value must not carry the 5 KiB scratch buffer"
        );
    }

    /// Verified against redis-server 7.0.15: INCR/INCRBY/DECR/DECRBY replies and errors.
    #[test]
    fn incr_by_i64_matches_redis() {
        use IncrIntError::*;
        type Case<'a> = (Option<&'a [u8]>, i64, Result<i64, IncrIntError>);
        let cases: &[Case] = &[
            (None, 1, Ok(1)),
            (None, -1, Ok(-1)),
            (None, i64::MIN, Ok(i64::MIN)),
            (Some(b"12"), 1, Ok(13)),
            (Some(b"9223372036854775807"), 1, Err(Overflow)),
            (Some(b"-9223372036854775808"), -1, Err(Overflow)),
            (Some(b"-9223372036854775807"), -1, Ok(i64::MIN)),
            (Some(b"-1"), -9223372036854775807, Ok(i64::MIN)),
            (Some(b"-9223372036854775808"), -1, Err(Overflow)),
            (Some(b"1"), 9223372036854775806, Ok(i64::MAX)),
            (Some(b"9223372036854775807"), 1, Err(Overflow)),
            (Some(b"-1"), i64::MAX, Ok(9223372036854775806)),
            (Some(b"1"), i64::MIN, Ok(-9223372036854775807)),
            (Some(b"0"), i64::MIN, Ok(i64::MIN)),
            (Some(b"abc"), 1, Err(NotAnInteger)),
            (Some(b"01"), 1, Err(NotAnInteger)),
            (Some(b" 1"), 1, Err(NotAnInteger)),
            (Some(b"1.0"), 1, Err(NotAnInteger)),
            (Some(b""), 1, Err(NotAnInteger)),
        ];
        for &(current, incr, want) in cases {
            assert_eq!(incr_by_i64(current, incr), want, "current {current:?} incr {incr}");
        }
    }

    #[test]
    fn decrby_negates_except_min() {
        assert_eq!(decrby_increment(3), Ok(-3));
        assert_eq!(decrby_increment(-3), Ok(3));
        assert_eq!(decrby_increment(i64::MAX), Ok(-i64::MAX));
        assert_eq!(decrby_increment(i64::MIN), Err(IncrIntError::DecrementOverflow));
        assert_eq!(
            IncrIntError::DecrementOverflow.message(),
            b"ERR decrement would overflow"
        );
        assert_eq!(
            IncrIntError::Overflow.message(),
            b"ERR increment or decrement would overflow"
        );
        assert_eq!(
            IncrIntError::NotAnInteger.message(),
            b"ERR value is not an integer or out of range"
        );
    }

    /// Verified against redis-server 7.0.15 with `SET k <v>` then `OBJECT ENCODING k`.
    #[test]
    fn encoding_after_set_matches_redis() {
        let a44 = "a".repeat(44);
        let a45 = "a".repeat(45);
        let d44 = "1".repeat(44);
        let d45 = "1".repeat(45);
        let cases: &[(&str, &str)] = &[
            ("123", "int"),
            ("0", "int"),
            ("-1", "int"),
            ("9999", "int"),
            ("10000", "int"),
            ("-10000", "int"),
            ("9223372036854775807", "int"),
            ("-9223372036854775808", "int"),
            ("9223372036854775808", "embstr"),
            ("-9223372036854775809", "embstr"),
            ("12345678901234567890", "embstr"),
            ("11111111111111111111", "embstr"),
            ("01", "embstr"),
            ("00", "embstr"),
            ("-0", "embstr"),
            ("+1", "embstr"),
            (" 1", "embstr"),
            ("1 ", "embstr"),
            ("1.5", "embstr"),
            ("0x10", "embstr"),
            ("1e3", "embstr"),
            ("", "embstr"),
            ("\0", "embstr"),
            (&a44, "embstr"),
            (&a45, "raw"),
            (&d44, "embstr"),
            (&d45, "raw"),
        ];
        for &(value, want) in cases {
            assert_eq!(string_encoding(value.as_bytes(), false), want, "value {value:?}");
        }
    }

    /// Verified against redis-server 7.0.15: APPEND/SETRANGE leave `raw`; INCRBYFLOAT leaves embstr/raw.
    #[test]
    fn encoding_after_modification_matches_redis() {
        assert_eq!(string_encoding(b"1234", true), "raw");
        assert_eq!(string_encoding(b"123", true), "raw");
        assert_eq!(string_encoding(b"abc", true), "raw");
        // INCRBYFLOAT 10 + 1 stores "11" without trying the int encoding.
        assert_eq!(created_string_encoding(b"11"), "embstr");
        assert_eq!(
            created_string_encoding(b"9999999999999999999783686092270256259072"),
            "embstr"
        );
        assert_eq!(created_string_encoding(&[b'1'; 45]), "raw");
        assert!(string_is_int_encodable(b"-9223372036854775808"));
        assert!(!string_is_int_encodable(b"9223372036854775808"));
    }
}
