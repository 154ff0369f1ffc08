//! Glob-style pattern matching: a port of Redis's `stringmatchlen` (util.c), the matcher behind
//! KEYS, SCAN MATCH, PSUBSCRIBE and CONFIG GET.
//!
//! Supported syntax: `*` (any run of bytes), `?` (any one byte), `[abc]` / `[a-z]` / `[^a-z]`
//! (a set, ranges, negation) and `\x` (the byte `x` literally). Matching works on raw bytes, so
//! keys need not be UTF-8; `nocase` folds ASCII letters only, as Redis does in the C locale.
//!
//! The quirks of the C code are kept on purpose, because clients can observe them: an unclosed
//! `[` set runs to the end of the pattern, a range may be written backwards (`[z-a]`), a trailing
//! lone `\` matches a literal backslash, an escape inside a set is always case-sensitive, and
//! range bounds compare as C's signed `char`, so bytes >= 0x80 sort before ASCII.

/// How deep `*` may recurse before the match gives up, as in newer Redis versions. A pattern
/// with more separate `*` runs than this cannot match anything; the guard keeps a hostile
/// pattern from exhausting the (small) stack of a worker thread.
const MAX_NESTING: u32 = 1000;

/// Whether `string` matches the glob `pattern`, byte for byte like Redis's `stringmatchlen`.
pub fn glob_match(pattern: &[u8], string: &[u8], nocase: bool) -> bool {
    let mut skip_longer_matches = false;
    match_from(pattern, string, nocase, &mut skip_longer_matches, 0)
}

/// The recursive matcher. `skip_longer_matches` is Redis's fix for exponential blow-up
/// (CVE-2022-36021): once the rest of the pattern after some `*` failed to match at every
/// position of the remaining string, no earlier `*` can help by swallowing more bytes, because
/// that would only start the same tail later in the string. Every caller up the stack then gives
/// up at once, which bounds the work to roughly pattern length times string length.
fn match_from(pattern: &[u8], string: &[u8], nocase: bool, skip_longer_matches: &mut bool, nesting: u32) -> bool {
    if nesting > MAX_NESTING {
        return false;
    }
    // The C code walks NUL-terminated buffers and may peek one byte past the pattern's end;
    // reading 0 there reproduces what it sees.
    let at = |i: usize| pattern.get(i).copied().unwrap_or(0);
    let mut p = 0;
    let mut s = 0;
    while p < pattern.len() && s < string.len() {
        match pattern[p] {
            b'*' => {
                while at(p + 1) == b'*' {
                    p += 1;
                }
                if p + 1 == pattern.len() {
                    return true;
                }
                while s < string.len() {
                    if match_from(
                        &pattern[p + 1..],
                        &string[s..],
                        nocase,
                        skip_longer_matches,
                        nesting + 1,
                    ) {
                        return true;
                    }
                    if *skip_longer_matches {
                        return false;
                    }
                    s += 1;
                }
                *skip_longer_matches = true;
                return false;
            }
            b'?' => s += 1,
            b'[' => {
                p += 1;
                let negate = at(p) == b'^';
                if negate {
                    p += 1;
                }
                let mut matched = false;
                loop {
                    let remaining = pattern.len() - p;
                    if at(p) == b'\\' && remaining >= 2 {
                        p += 1;
                        if pattern[p] == string[s] {
                            matched = true;
                        }
                    } else if at(p) == b']' {
                        break;
                    } else if remaining == 0 {
                        // Unclosed set: step back so the shared `p += 1` below lands on the end.
                        p -= 1;
                        break;
                    } else if remaining >= 3 && pattern[p + 1] == b'-' {
                        let (mut start, mut end) = (signed(pattern[p]), signed(pattern[p + 2]));
                        let mut c = signed(string[s]);
                        if start > end {
                            std::mem::swap(&mut start, &mut end);
                        }
                        if nocase {
                            start = lower_signed(start);
                            end = lower_signed(end);
                            c = lower_signed(c);
                        }
                        p += 2;
                        if (start..=end).contains(&c) {
                            matched = true;
                        }
                    } else if same_byte(pattern[p], string[s], nocase) {
                        matched = true;
                    }
                    p += 1;
                }
                if negate {
                    matched = !matched;
                }
                if !matched {
                    return false;
                }
                s += 1;
            }
            b'\\' => {
                if pattern.len() - p >= 2 {
                    p += 1;
                }
                if !same_byte(pattern[p], string[s], nocase) {
                    return false;
                }
                s += 1;
            }
            other => {
                if !same_byte(other, string[s], nocase) {
                    return false;
                }
                s += 1;
            }
        }
        p += 1;
        if s == string.len() {
            while at(p) == b'*' {
                p += 1;
            }
            break;
        }
    }
    p == pattern.len() && s == string.len()
}

fn same_byte(a: u8, b: u8, nocase: bool) -> bool {
    if nocase {
        a.eq_ignore_ascii_case(&b)
    } else {
        a == b
    }
}

/// A byte as C's (signed) `char` on the platforms Redis ships for.
fn signed(b: u8) -> i32 {
    i32::from(b as i8)
}

/// `tolower` in the C locale, applied to a signed `char` value.
fn lower_signed(c: i32) -> i32 {
    if (i32::from(b'A')..=i32::from(b'Z')).contains(&c) {
        c + 32
    } else {
        c
    }
}

#[cfg(test)]
mod tests {
    use super::glob_match;
    use std::time::{Duration, Instant};

    fn m(pattern: &str, string: &str) -> bool {
        glob_match(pattern.as_bytes(), string.as_bytes(), false)
    }

    fn mi(pattern: &str, string: &str) -> bool {
        glob_match(pattern.as_bytes(), string.as_bytes(), true)
    }

    // Every case below was checked by hand against redis-server 7.0.15 with KEYS (case-sensitive)
    // or CONFIG GET (case-insensitive).

    #[test]
    fn star_matches_any_run_of_bytes() {
        assert!(m("*", "anything"));
        assert!(m("foo*", "foo"));
        assert!(m("foo*", "foobar"));
        assert!(m("*bar", "foobar"));
        assert!(m("f*o*r", "foobar"));
        assert!(m("**", "x"));
        assert!(!m("foo*", "fo"));
        assert!(!m("*bar", "barfoo"));
    }

    #[test]
    fn the_empty_string_is_matched_only_by_the_empty_pattern() {
        // Redis's loop never runs on an empty string, so even `*` fails; KEYS answers `*` without
        // calling the matcher, which is why it still lists an empty key.
        assert!(m("", ""));
        assert!(!m("*", ""));
        assert!(!m("**", ""));
        assert!(!m("", "a"));
        assert!(!m("a", ""));
    }

    #[test]
    fn question_mark_matches_exactly_one_byte() {
        assert!(m("h?llo", "hello"));
        assert!(m("h?llo", "hallo"));
        assert!(!m("h?llo", "hllo"));
        assert!(!m("?", ""));
        assert!(m("??", "ab"));
        assert!(!m("??", "abc"));
    }

    #[test]
    fn sets_ranges_and_negation() {
        assert!(m("h[ae]llo", "hello"));
        assert!(m("h[ae]llo", "hallo"));
        assert!(!m("h[ae]llo", "hillo"));
        assert!(m("h[^e]llo", "hallo"));
        assert!(!m("h[^e]llo", "hello"));
        assert!(m("h[a-b]llo", "hbllo"));
        assert!(!m("h[a-b]llo", "hcllo"));
        assert!(m("[0-9][0-9]", "42"));
    }

    #[test]
    fn backwards_ranges_are_swapped() {
        assert!(m("[z-a]", "q"));
        assert!(!m("[z-a]", "A"));
    }

    #[test]
    fn a_leading_dash_in_a_set_is_literal() {
        assert!(m("[-a]", "-"));
        assert!(m("[-a]", "a"));
        assert!(!m("[-a]", "b"));
    }

    #[test]
    fn a_trailing_dash_ranges_over_the_closing_bracket() {
        // `[a-]` reads as the range a..=']' (swapped to ']'..='a') in a set left unclosed.
        assert!(m("[a-]", "a"));
        assert!(m("[a-]", "_"));
        assert!(m("[a-]", "]"));
        assert!(!m("[a-]", "-"));
        assert!(!m("[a-]", "b"));
    }

    #[test]
    fn unclosed_set_runs_to_the_end_of_the_pattern() {
        assert!(m("[abc", "b"));
        assert!(!m("[abc", "d"));
        assert!(!m("a[", "a["));
        assert!(m("a[^", "ax"));
    }

    #[test]
    fn backslash_escapes_the_next_byte() {
        assert!(m("\\*", "*"));
        assert!(!m("\\*", "a"));
        assert!(m("a\\?", "a?"));
        assert!(!m("a\\?", "ab"));
        assert!(m("[\\]]", "]"));
        assert!(m("[\\-]", "-"));
    }

    #[test]
    fn trailing_lone_backslash_matches_itself() {
        assert!(m("a\\", "a\\"));
        assert!(!m("a\\", "a"));
    }

    #[test]
    fn nocase_folds_ascii_letters_in_literals_and_ranges() {
        assert!(mi("MAXMEMORY*", "maxmemory-policy"));
        assert!(mi("[A-Z]x", "qX"));
        assert!(mi("[a-z]", "Q"));
        assert!(!m("MAXMEMORY", "maxmemory"));
        assert!(!m("[A-Z]", "q"));
    }

    #[test]
    fn an_escape_inside_a_set_stays_case_sensitive_even_with_nocase() {
        assert!(!mi("[\\A]", "a"));
        assert!(mi("[A]", "a"));
    }

    #[test]
    fn ranges_compare_high_bytes_as_signed_chars() {
        // As a signed char 0xff is -1, so `[a-\xff]` is really the range -1..=97: it holds 0xff
        // and 0x00..=0x61, but neither 'b' nor 0x80 (-128).
        let pattern = b"[a-\xff]";
        assert!(glob_match(pattern, b"a", false));
        assert!(glob_match(pattern, b"0", false));
        assert!(glob_match(pattern, b"\xff", false));
        assert!(!glob_match(pattern, b"b", false));
        assert!(!glob_match(pattern, b"\x80", false));
    }

    #[test]
    fn binary_keys_match_byte_for_byte() {
        assert!(glob_match(b"a\x00*", b"a\x00b\xff", false));
        assert!(!glob_match(b"a\x00*", b"a\x01b", false));
    }

    #[test]
    fn many_stars_against_a_long_string_finish_quickly() {
        let pattern = "*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b";
        let string = "a".repeat(100_000);
        let start = Instant::now();
        assert!(!m(pattern, &string));
        assert!(start.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn thousands_of_stars_neither_overflow_the_stack_nor_match() {
        let pattern = "a*".repeat(5000) + "b";
        let string = "a".repeat(6000);
        assert!(!m(&pattern, &string));
        // Within the nesting limit the same shape still matches.
        assert!(m(&("a*".repeat(100) + "b"), &("a".repeat(200) + "b")));
    }
}
