//! A quick check for the usual JSON: one pass, eight bytes at a time through
//! strings, no allocation. It answers `true` only for text serde_json certainly
//! accepts; `false` means "ask serde_json", not "invalid". Callers that must
//! answer exactly (is this JSON?) fall back to serde_json on `false`.

/// Containers [`plain_value`] follows into; serde_json's own limit is 128.
const PLAIN_DEPTH: u32 = 64;

/// Digits before the point that [`plain_value`] takes for a finite number: below
/// 10^300, far from `f64::MAX` (about 1.8 × 10^308).
const PLAIN_DIGITS: usize = 300;

/// Whether `data` is plainly one JSON value (see [`plain_value`]) with nothing
/// but whitespace around it.
pub(crate) fn plainly_json(data: &[u8]) -> bool {
    std::str::from_utf8(data).is_ok_and(plainly_utf8_json)
}

/// [`plainly_json`] for text known to be UTF-8.
pub(crate) fn plainly_utf8_json(text: &str) -> bool {
    let data = text.as_bytes();
    let mut at = 0;
    let mut spaced = false;
    skip_space(data, &mut at, &mut spaced);
    plain_value(data, &mut at, &mut spaced) && {
        skip_space(data, &mut at, &mut spaced);
        at == data.len()
    }
}

/// Whether a JSON value serde_json certainly accepts starts at `at` of `data`,
/// which must be UTF-8 (the caller checks; bytes are not decoded here): nested at
/// most [`PLAIN_DEPTH`] deep, strings without `\u` escapes (a lone surrogate fails
/// serde_json) or control characters, numbers without an exponent and with at most
/// [`PLAIN_DIGITS`] digits before the point (so in range). On `true`, `at` is just
/// past the value, and `spaced` is set if the value holds whitespace outside its
/// strings (so compacting it would change it); on `false`, both are unspecified.
pub(crate) fn plain_value(data: &[u8], at: &mut usize, spaced: &mut bool) -> bool {
    // One bit per open container, innermost lowest: 1 for an object.
    let (mut objects, mut depth) = (0u64, 0u32);
    loop {
        // A value.
        let opened = match data.get(*at) {
            Some(&open @ (b'{' | b'[')) => {
                if depth == PLAIN_DEPTH {
                    return false;
                }
                *at += 1;
                skip_space(data, at, spaced);
                let close = if open == b'{' { b'}' } else { b']' };
                if data.get(*at) == Some(&close) {
                    *at += 1;
                    Some(false)
                } else {
                    objects = objects << 1 | u64::from(open == b'{');
                    depth += 1;
                    Some(true)
                }
            }
            Some(b'"') => plain_string_escapes(data, at).map(|_| false),
            Some(b't') => literal(data, at, b"true").then_some(false),
            Some(b'f') => literal(data, at, b"false").then_some(false),
            Some(b'n') => literal(data, at, b"null").then_some(false),
            Some(b'-' | b'0'..=b'9') => plain_number(data, at).then_some(false),
            _ => None,
        };
        let Some(opened) = opened else {
            return false;
        };
        if opened {
            if objects & 1 == 1 && member_name(data, at, spaced).is_none() {
                return false;
            }
            skip_space(data, at, spaced);
            continue;
        }
        // After a value: close containers until one goes on.
        loop {
            if depth == 0 {
                return true;
            }
            skip_space(data, at, spaced);
            let in_object = objects & 1 == 1;
            match data.get(*at) {
                Some(b',') => {
                    *at += 1;
                    if in_object && member_name(data, at, spaced).is_none() {
                        return false;
                    }
                    skip_space(data, at, spaced);
                    break;
                }
                Some(b'}') if in_object => {}
                Some(b']') if !in_object => {}
                _ => return false,
            }
            *at += 1;
            objects >>= 1;
            depth -= 1;
        }
    }
}

/// Moves `at` past JSON whitespace; sets `spaced` if there was any.
fn skip_space(data: &[u8], at: &mut usize, spaced: &mut bool) {
    let from = *at;
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = data.get(*at) {
        *at += 1;
    }
    *spaced |= *at != from;
}

/// `"name" :` at `at` (after spaces), for a member: the span of its name between
/// the quotes, and whether the name has escapes.
fn member_name(data: &[u8], at: &mut usize, spaced: &mut bool) -> Option<(std::ops::Range<usize>, bool)> {
    skip_space(data, at, spaced);
    if data.get(*at) != Some(&b'"') {
        return None;
    }
    let start = *at + 1;
    let escapes = plain_string_escapes(data, at)?;
    let name = start..*at - 1;
    skip_space(data, at, spaced);
    if data.get(*at) != Some(&b':') {
        return None;
    }
    *at += 1;
    Some((name, escapes))
}

/// One member of an object [`plain_object`] scans.
pub struct PlainMember<'a> {
    /// As written between its quotes.
    pub name: &'a str,
    /// Whether the name has escapes (so it is not its own text).
    pub escapes: bool,
    /// The value's text, without the whitespace around it.
    pub value: &'a str,
    /// Whether the value holds whitespace outside its strings.
    pub spaced: bool,
}

/// Whether `text` is plainly one JSON object (see `plain_value`; whitespace
/// around it allowed), giving `member` each member in document order, repeats
/// included; `member` may stop the scan by answering `false`, which is then the
/// answer.
pub fn plain_object<'a>(text: &'a str, mut member: impl FnMut(PlainMember<'a>) -> bool) -> bool {
    let data = text.as_bytes();
    // Whitespace between members is no value's.
    let mut between = false;
    let mut at = 0;
    skip_space(data, &mut at, &mut between);
    if data.get(at) != Some(&b'{') {
        return false;
    }
    at += 1;
    skip_space(data, &mut at, &mut between);
    if data.get(at) == Some(&b'}') {
        at += 1;
    } else {
        loop {
            let Some((name, escapes)) = member_name(data, &mut at, &mut between) else {
                return false;
            };
            skip_space(data, &mut at, &mut between);
            let (from, mut spaced) = (at, false);
            if !plain_value(data, &mut at, &mut spaced) {
                return false;
            }
            let (Some(name), Some(value)) = (text.get(name), text.get(from..at)) else {
                return false;
            };
            if !member(PlainMember {
                name,
                escapes,
                value,
                spaced,
            }) {
                return false;
            }
            skip_space(data, &mut at, &mut between);
            match data.get(at) {
                Some(b',') => at += 1,
                Some(b'}') => {
                    at += 1;
                    break;
                }
                _ => return false,
            }
        }
    }
    skip_space(data, &mut at, &mut between);
    at == data.len()
}

/// The literal `word` at `at`.
fn literal(data: &[u8], at: &mut usize, word: &[u8]) -> bool {
    let found = data[*at..].starts_with(word);
    if found {
        *at += word.len();
    }
    found
}

/// A string at `at` (its opening quote): escapes other than `\u`, no control
/// characters. Moves past the closing quote, telling whether the string has
/// escapes; `None` if it is not plainly a string.
fn plain_string_escapes(data: &[u8], at: &mut usize) -> Option<bool> {
    let mut i = *at + 1;
    let mut escapes = false;
    loop {
        i += data.get(i..).and_then(string_stop)?;
        match data[i] {
            b'"' => {
                *at = i + 1;
                return Some(escapes);
            }
            b'\\' => match data.get(i + 1) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                    escapes = true;
                    i += 2;
                }
                _ => return None,
            },
            _ => return None,
        }
    }
}

/// Where the first quote, backslash or control character of `text` is (the
/// bytes a JSON string ends at or must escape): eight bytes at a time (serde_json's
/// own way), the rest one by one.
pub fn string_stop(text: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // The high bit of each byte below `n` (exact up to the first such byte).
    let below = |v: u64, n: u8| v.wrapping_sub(ONES * u64::from(n)) & !v & HIGHS;
    let mut words = text.chunks_exact(8);
    for (index, word) in words.by_ref().enumerate() {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(word);
        let v = u64::from_le_bytes(bytes);
        let stops = below(v ^ (ONES * u64::from(b'"')), 1) | below(v ^ (ONES * u64::from(b'\\')), 1) | below(v, 0x20);
        if stops != 0 {
            return Some(index * 8 + stops.trailing_zeros() as usize / 8);
        }
    }
    let done = text.len() - words.remainder().len();
    words
        .remainder()
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|found| done + found)
}

/// A number at `at` without an exponent, at most [`PLAIN_DIGITS`] digits before the
/// point.
fn plain_number(data: &[u8], at: &mut usize) -> bool {
    let mut i = *at;
    if data.get(i) == Some(&b'-') {
        i += 1;
    }
    let digits = |i: usize| {
        data[i.min(data.len())..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count()
    };
    let whole = digits(i);
    if whole == 0 || whole > PLAIN_DIGITS || (whole > 1 && data[i] == b'0') {
        return false;
    }
    i += whole;
    if data.get(i) == Some(&b'.') {
        let fraction = digits(i + 1);
        if fraction == 0 {
            return false;
        }
        i += 1 + fraction;
    }
    if matches!(data.get(i), Some(b'e' | b'E')) {
        return false;
    }
    *at = i;
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::is_json;

    #[test]
    fn string_stop_finds_the_first_quote_backslash_or_control_character() {
        let naive = |text: &[u8]| text.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20);
        for len in 0..20 {
            for at in 0..len {
                for stop in [b'"', b'\\', 0, 0x1f] {
                    // Bytes around the borrow edges of the eight-byte check.
                    for fill in [b'x', b' ', 0x21, 0x5d, 0x7f, 0x80, 0xff] {
                        let mut text = vec![fill; len];
                        text[at] = stop;
                        if at + 1 < len {
                            text[at + 1] = b'"';
                        }
                        assert_eq!(string_stop(&text), naive(&text), "{text:?}");
                    }
                }
            }
            assert_eq!(string_stop(&vec![b'a'; len]), None);
        }
    }

    #[test]
    fn plainly_json_leaves_the_hard_cases_to_serde_json() {
        for plain in [
            &b"0"[..],
            b"-0.5",
            b" [ ] ",
            b"{}",
            br#"{"a":[1,{"b":null}],"c":"x\"y\\z\/"}"#,
            "\"é😀\"".as_bytes(),
        ] {
            assert!(plainly_json(plain), "{}", String::from_utf8_lossy(plain));
        }
        // Asked of serde_json: valid, but not certainly so at a glance.
        for valid in [&b"1e3"[..], br#""\u00e9""#, br#""\ud83d\ude00""#] {
            assert!(
                !plainly_json(valid) && is_json(valid),
                "{}",
                String::from_utf8_lossy(valid)
            );
        }
        let deep = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        assert!(!plainly_json(deep.as_bytes()) && is_json(deep.as_bytes()));
        let huge = "9".repeat(400);
        assert!(!plainly_json(huge.as_bytes()) && !is_json(huge.as_bytes()));
        // Invalid, whichever way it is asked.
        for bad in [
            &b""[..],
            b" ",
            b"01",
            b"-",
            b"1.",
            b"[1,]",
            b"{\"a\"}",
            b"{\"a\":1,}",
            b"[1}",
            b"tru",
            b"truex",
            b"\"a",
            b"\"\x01\"",
            b"\"\\x\"",
            br#""\ud800""#,
            b"1e400",
            b"[1] 2",
            b"\xff",
        ] {
            assert!(!is_json(bad), "{}", String::from_utf8_lossy(bad));
        }
    }
}
