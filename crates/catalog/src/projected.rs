//! Reading only some top-level fields of JSON data: the others are checked as a
//! full parse checks them (strings unescaped, numbers read) and skipped without
//! building them, so that data reads the same whatever is kept.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::plain::plainly_json;

/// `data` parsed as JSON, keeping only the top-level fields `keep` accepts. Data
/// that is not an object is parsed whole. Invalid JSON is `None`, exactly when
/// `serde_json::from_slice::<Value>` fails; duplicate keys keep the last value,
/// as it does.
pub(crate) fn parse(data: &[u8], keep: &dyn Fn(&str) -> bool) -> Option<Value> {
    Some(match members(data, &|k| keep(k).then(|| k.to_owned()))? {
        DataMembers::Object(members) => {
            let mut map = Map::new();
            for (k, v) in members {
                map.insert(k, v);
            }
            Value::Object(map)
        }
        DataMembers::Other(value) => value,
    })
}

/// JSON data read as `parse` reads it, its object's members not yet made a map:
/// each kept one named by what `keep` gives for its name.
pub enum DataMembers<K> {
    /// The kept members of an object in the order written, a name given twice
    /// twice (the last one counts, as a JSON object read by serde_json keeps it).
    Object(Vec<(K, Value)>),
    /// Data that is not an object, whole.
    Other(Value),
}

/// [`parse`] giving the members (see [`DataMembers`]).
pub(crate) fn members<K>(data: &[u8], keep: &dyn Fn(&str) -> Option<K>) -> Option<DataMembers<K>> {
    if let Some(members) = Fast::new(data).and_then(|fast| fast.object(keep)) {
        return Some(DataMembers::Object(members));
    }
    members_with_serde(data, keep)
}

/// [`members`] by serde_json alone.
fn members_with_serde<K>(data: &[u8], keep: &dyn Fn(&str) -> Option<K>) -> Option<DataMembers<K>> {
    let first = data.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first != b'{' {
        return serde_json::from_slice(data).ok().map(DataMembers::Other);
    }
    let mut de = serde_json::Deserializer::from_slice(data);
    let members = de.deserialize_map(Object { keep }).ok()?;
    de.end().ok()?;
    Some(DataMembers::Object(members))
}

/// The common case, read without serde: an object whose member names and strings
/// have no escapes (nor control characters or invalid UTF-8), whose numbers are plain
/// integers of up to 18 digits or decimals without an exponent (those kept are
/// read by serde_json, so they come out exactly as a full parse gives them), and
/// whose nesting stays shallow. Anything else, valid or not, makes it give up
/// (`None`) and leaves the data to the serde path, so it never accepts what a full
/// parse refuses nor reads a value differently.
struct Fast<'a> {
    /// The data, checked to be UTF-8 once: its strings are slices of it.
    text: &'a str,
    data: &'a [u8],
    at: usize,
}

/// Nesting a skipped value may have before the fast path gives up (serde_json's
/// limit is 128).
const FAST_DEPTH: usize = 64;

impl<'a> Fast<'a> {
    /// `None` when `data` is not UTF-8 (no JSON is, so the serde path refuses it).
    fn new(data: &'a [u8]) -> Option<Self> {
        let text = std::str::from_utf8(data).ok()?;
        Some(Fast {
            text,
            data: text.as_bytes(),
            at: 0,
        })
    }

    fn object<K>(mut self, keep: &dyn Fn(&str) -> Option<K>) -> Option<Vec<(K, Value)>> {
        self.whitespace();
        self.eat(b'{')?;
        // Room for the few fields a reader keeps, allocated once.
        let mut members = Vec::with_capacity(4);
        self.sequence(b'}', |p| {
            let key = p.key()?;
            match keep(key) {
                Some(name) => members.push((name, p.value_built()?)),
                None => p.value(0)?,
            }
            Some(())
        })?;
        self.whitespace();
        (self.at == self.data.len()).then_some(members)
    }

    /// The items of an array or the members of an object, after its opening
    /// bracket: each read by `item`, separated by commas, up to `close`.
    fn sequence(&mut self, close: u8, mut item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.whitespace();
        if self.peek() == Some(close) {
            self.at += 1;
            return Some(());
        }
        loop {
            self.whitespace();
            item(self)?;
            self.whitespace();
            match self.next()? {
                b',' => continue,
                b if b == close => return Some(()),
                _ => return None,
            }
        }
    }

    /// A member's name and the colon after it, up to its value.
    fn key(&mut self) -> Option<&'a str> {
        let key = self.string()?;
        self.whitespace();
        self.eat(b':')?;
        self.whitespace();
        Some(key)
    }

    fn peek(&self) -> Option<u8> {
        self.data.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    fn eat(&mut self, expected: u8) -> Option<()> {
        (self.next()? == expected).then_some(())
    }

    fn whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// A string without escapes or control characters, in valid UTF-8; its text.
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.at;
        let rest = self.data.get(start..)?;
        let len = rest.iter().position(|&b| b < 0x20 || b == b'"' || b == b'\\')?;
        if rest[len] != b'"' {
            return None;
        }
        // Both ends are at a quote (ASCII), so on character boundaries.
        let text = self.text.get(start..start + len)?;
        self.at = start + len + 1;
        Some(text)
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.at.checked_add(word.len())?;
        (self.data.get(self.at..end)? == word).then(|| self.at = end)
    }

    /// A number of the plain shapes (see [`Fast`]).
    fn number(&mut self) -> Option<()> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        let digits = self.digits();
        if digits == 0 || digits > 18 || (digits > 1 && self.data[self.at - digits] == b'0') {
            return None;
        }
        let integer = match self.peek() {
            Some(b'.') => {
                self.at += 1;
                if self.digits() == 0 {
                    return None;
                }
                false
            }
            _ => true,
        };
        if matches!(self.peek(), Some(b'e' | b'E')) {
            return None;
        }
        // `-0` is left to serde_json, which reads it as a float.
        (!(integer && &self.data[start..self.at] == b"-0")).then_some(())
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
        self.at - start
    }

    /// Checks and steps over one value.
    fn value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            b'[' if depth < FAST_DEPTH => {
                self.at += 1;
                self.sequence(b']', |p| p.value(depth + 1))
            }
            b'{' if depth < FAST_DEPTH => {
                self.at += 1;
                self.sequence(b'}', |p| {
                    p.key()?;
                    p.value(depth + 1)
                })
            }
            _ => None,
        }
    }

    /// One value, built: strings and literals here, anything else checked here and
    /// then read by serde_json from its text.
    fn value_built(&mut self) -> Option<Value> {
        let start = self.at;
        match self.peek()? {
            b'"' => self.string().map(|s| Value::String(s.to_owned())),
            b't' => self.literal(b"true").map(|()| Value::Bool(true)),
            b'f' => self.literal(b"false").map(|()| Value::Bool(false)),
            b'n' => self.literal(b"null").map(|()| Value::Null),
            b'-' | b'0'..=b'9' => {
                self.number()?;
                let number = self.text.get(start..self.at)?;
                // An integer (at most 18 digits, so in range) as serde_json reads
                // it: non-negative ones as u64, negative ones as i64. Fractions go
                // to serde_json, whose float parsing the other paths use too.
                match number.parse::<i64>() {
                    Ok(n) => Some(Value::from(n)),
                    Err(_) => serde_json::from_str(number).ok(),
                }
            }
            _ => {
                self.value(1)?;
                serde_json::from_slice(&self.data[start..self.at]).ok()
            }
        }
    }
}

/// Whether `data` is JSON that `serde_json::from_slice::<Value>` accepts (strings
/// unescaped, numbers in range, nesting within its limit), building nothing.
pub fn is_json(data: &[u8]) -> bool {
    plainly_json(data) || {
        let mut de = serde_json::Deserializer::from_slice(data);
        Skip.deserialize(&mut de).is_ok() && de.end().is_ok()
    }
}

struct Object<'k, K> {
    keep: &'k dyn Fn(&str) -> Option<K>,
}

impl<'de, K> Visitor<'de> for Object<'_, K> {
    type Value = Vec<(K, Value)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Vec<(K, Value)>, A::Error> {
        let mut members = Vec::new();
        while let Some(key) = access.next_key_seed(Key { keep: self.keep })? {
            match key {
                Some(key) => {
                    let value: Value = access.next_value()?;
                    members.push((key, value));
                }
                None => access.next_value_seed(Skip)?,
            }
        }
        Ok(members)
    }
}

/// A key: `Some` (what `keep` makes of it) when kept, `None` when its value is to be
/// skipped.
struct Key<'k, K> {
    keep: &'k dyn Fn(&str) -> Option<K>,
}

impl<'de, K> DeserializeSeed<'de> for Key<'_, K> {
    type Value = Option<K>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<K>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de, K> Visitor<'de> for Key<'_, K> {
    type Value = Option<K>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Option<K>, E> {
        Ok((self.keep)(key))
    }
}

/// A value read and dropped. Unlike `IgnoredAny`, strings are unescaped (a lone
/// surrogate fails, as it does when the value is built).
struct Skip;

impl<'de> DeserializeSeed<'de> for Skip {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(Skip)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Skip)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key_seed(Skip)?.is_some() {
            map.next_value_seed(Skip)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keep_ab(k: &str) -> bool {
        k == "a" || k == "b"
    }

    #[test]
    fn keeps_only_the_named_fields() {
        let data = br#" {"a": 1, "x": {"deep": [1, 2, {"y": "z"}]}, "b": "two\u00e9", "c": null} "#;
        assert_eq!(
            parse(data, &keep_ab),
            Some(serde_json::json!({"a": 1, "b": "two\u{e9}"}))
        );
        assert_eq!(
            parse(br#"{"a\u0062": 1, "b": 2}"#, &keep_ab),
            Some(serde_json::json!({"b": 2}))
        );
        assert_eq!(
            parse(br#"{"a": 1, "a": 2}"#, &keep_ab),
            Some(serde_json::json!({"a": 2}))
        );
        assert_eq!(parse(b"[1, 2]", &keep_ab), Some(serde_json::json!([1, 2])));
        assert_eq!(parse(b"\"s\"", &keep_ab), Some(serde_json::json!("s")));
    }

    /// What `parse` must give: a full parse with the other top-level fields removed.
    fn reference(data: &[u8], keep: &dyn Fn(&str) -> bool) -> Option<Value> {
        match serde_json::from_slice::<Value>(data).ok()? {
            Value::Object(map) => Some(Value::Object(map.into_iter().filter(|(k, _)| keep(k)).collect())),
            other => Some(other),
        }
    }

    /// The fast path alone, its members made a map.
    fn fast(data: &[u8], keep: &dyn Fn(&str) -> bool) -> Option<Value> {
        let members = Fast::new(data)?.object(&|k| keep(k).then(|| k.to_owned()))?;
        Some(Value::Object(members.into_iter().collect()))
    }

    #[test]
    fn members_come_in_the_order_written_named_by_keep() {
        let named = |k: &str| keep_ab(k).then_some(k.len());
        for data in [
            &br#"{"b": 2, "x": 0, "a": 1, "b": 3}"#[..],
            br#"{"b": 2, "x": 0, "a": 1, "b": 3 }"#,
        ] {
            match members(data, &named) {
                Some(DataMembers::Object(m)) => assert_eq!(m, [(1, json!(2)), (1, json!(1)), (1, json!(3))]),
                _ => panic!("an object"),
            }
        }
        // Escapes leave the data to serde_json, which gives the same.
        match members(br#"{"\u0062": 2, "a": "\n"}"#, &|k| keep_ab(k).then(|| k.to_owned())) {
            Some(DataMembers::Object(m)) => assert_eq!(m, [("b".to_owned(), json!(2)), ("a".to_owned(), json!("\n"))]),
            _ => panic!("an object"),
        }
        assert!(matches!(members(b"[1]", &named), Some(DataMembers::Other(v)) if v == json!([1])));
        assert!(members(b"{", &named).is_none());
    }

    #[test]
    fn the_fast_path_reads_common_data_and_leaves_the_rest_to_serde() {
        let common = r#"{"order_id": "ORD-1", "total": 12500.5, "lines": [{"sku": "A", "qty": 2}],
            "customer": "café", "priority": true, "note": null, "count": -3}"#
            .as_bytes();
        let keep = |k: &str| matches!(k, "order_id" | "total" | "lines" | "count" | "customer");
        assert!(fast(common, &keep).is_some());
        assert_eq!(fast(common, &keep), reference(common, &keep));
        for unusual in [
            &br#"{"a": "tab\tbed"}"#[..],
            br#"{"a": 1e3}"#,
            br#"{"a": -0}"#,
            br#"{"a": 12345678901234567890}"#,
            br#"{"a": 01}"#,
            b"[1]",
        ] {
            assert_eq!(fast(unusual, &keep_ab), None, "{}", String::from_utf8_lossy(unusual));
            assert_eq!(parse(unusual, &keep_ab), reference(unusual, &keep_ab));
        }
    }

    #[test]
    fn invalid_json_is_none_as_for_a_full_parse() {
        for bad in [
            &br#"{"a": 1, "x": [1, }"#[..],
            br#"{"a": 1} trailing"#,
            br#"{"x": tru}"#,
            br#"{"a": 1"#,
            b"",
            b"   ",
            br#"{"x": "\ud800"}"#,
            br#"{"x": {"\udc00": 1}}"#,
            br#"{"x": [1e999]}"#,
        ] {
            assert!(serde_json::from_slice::<Value>(bad).is_err(), "{bad:?}");
            assert_eq!(parse(bad, &keep_ab), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    use proptest::prelude::*;

    /// JSON text of one value, with the shapes either path may meet: escapes,
    /// non-ASCII, control characters, numbers of every form, nesting.
    fn json_text() -> impl Strategy<Value = String> {
        let text = |pattern: &str| proptest::string::string_regex(pattern).expect("a valid regex");
        // Mostly valid text, so that broken pieces are not everywhere.
        let string = prop_oneof![
            8 => text(r"[a-z\u{e9}\u{1F600} \x7f]{0,6}"),
            2 => text(r#"([a-z]|\\[nt"/\\]|\\u00e9|\\ud83d\\ude00){0,4}"#),
            1 => text(r"([a-z]|\x01|\\ud800|\\x){0,3}"),
        ]
        .prop_map(|s| format!("\"{s}\""))
        .boxed();
        let number = prop_oneof![
            8 => text(r"-?(0|[1-9][0-9]{0,21})(\.[0-9]{1,4})?([eE][+-]?[0-9]{1,3})?"),
            1 => text(r"-?0[0-9]{1,2}|-|1\.|\.5"),
        ];
        let leaf = prop_oneof![
            string.clone(),
            number,
            Just("true".to_string()),
            Just("false".to_string()),
            Just("null".to_string()),
        ];
        leaf.prop_recursive(4, 24, 4, move |inner| {
            let key = prop_oneof![Just("\"a\"".to_string()), string.clone()];
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
                proptest::collection::vec((key, inner), 0..4).prop_map(|v| {
                    let members: Vec<String> = v.into_iter().map(|(k, v)| format!("{k}:{v}")).collect();
                    format!("{{{}}}", members.join(" ,"))
                }),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// `parse` agrees with a full parse, on valid and broken data alike.
        #[test]
        fn parse_is_a_full_parse_projected(
            members in proptest::collection::vec(
                (prop_oneof![Just("a"), Just("b"), Just("c"), Just(r"a\u0062")], json_text()),
                0..6,
            ),
            cut in proptest::option::of(0usize..400),
            poke in proptest::option::of((0usize..400, any::<u8>())),
        ) {
            let members: Vec<String> = members.iter().map(|(k, v)| format!("\"{k}\" : {v}")).collect();
            let mut data = format!(" {{ {} }} ", members.join(",")).into_bytes();
            if let Some(cut) = cut {
                data.truncate(cut);
            }
            if let Some((at, byte)) = poke
                && at < data.len()
            {
                data[at] = byte;
            }
            prop_assert_eq!(
                parse(&data, &keep_ab),
                reference(&data, &keep_ab),
                "{}",
                String::from_utf8_lossy(&data)
            );
        }

        /// The quick check says yes only where serde_json does, and `is_json` is
        /// serde_json's answer, on valid and broken text alike.
        #[test]
        fn is_json_is_serde_json(
            value in json_text(),
            cut in proptest::option::of(0usize..200),
            poke in proptest::option::of((0usize..200, any::<u8>())),
        ) {
            let mut data = format!(" {value}\n").into_bytes();
            if let Some(cut) = cut {
                data.truncate(cut);
            }
            if let Some((at, byte)) = poke
                && at < data.len()
            {
                data[at] = byte;
            }
            let serde = serde_json::from_slice::<Value>(&data).is_ok();
            let text = String::from_utf8_lossy(&data);
            prop_assert!(!plainly_json(&data) || serde, "quick check passed {}", text);
            prop_assert_eq!(is_json(&data), serde, "{}", text);
        }

        /// JSON as serializers write it (no `\u` escapes, integers) takes the quick way.
        #[test]
        fn usual_json_is_plainly_json(value in usual_json()) {
            for text in [serde_json::to_vec(&value), serde_json::to_vec_pretty(&value)] {
                let text = text.expect("serializable");
                prop_assert!(plainly_json(&text), "{}", String::from_utf8_lossy(&text));
            }
        }
    }

    fn usual_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            (-1_000_000i64..1_000_000).prop_map(|n| Value::from(n as f64 / 8.0)),
            "[ a\"\\\\\t\n/é😀{}:,\\[\\]]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(6, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map("[ a\"\\\\é]{0,6}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
