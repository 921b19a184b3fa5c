//! A strict, forward-only reader of one JSON text, for the adapters: the native fast path
//! reads records straight into events with it, and [`super::json::Value::parse_record`] the
//! vendor formats into their tree.
//!
//! It reads what well-formed records are made of and answers `None` at anything else: the
//! caller then takes serde_json's path, which decides and names the fault. So it may refuse
//! valid JSON it finds unusual (nesting deeper than [`MAX_DEPTH`], a string whose escapes
//! serde_json would skip but not decode), but must never accept a text serde_json refuses,
//! nor read a value other than serde_json would: escaped strings and every number but a short
//! non-negative integer are handed to serde_json itself.
//!
//! It exists because serde_json's visitor machinery over a record of two dozen short strings
//! cost about half of parsing one (the per-string calls, the `Option` wrappers, the key
//! visitor); this reader finds each string's end eight bytes at a time and hands back a slice.

use std::borrow::Cow;

/// The deepest nesting its callers read, and [`Reader::skip`] follows, before they give up
/// (serde_json's own limit is 128).
pub const MAX_DEPTH: u32 = 64;

/// A JSON number, as serde_json reads it: a non-negative integer that fits `u64`, a negative
/// one that fits `i64`, else a float.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    /// A non-negative integer.
    U64(u64),
    /// A negative integer.
    I64(i64),
    /// Anything else.
    F64(f64),
}

impl Num {
    /// The number as `f64`, as serde's `f64` takes any of them.
    pub fn as_f64(self) -> f64 {
        match self {
            Num::U64(u) => u as f64,
            Num::I64(i) => i as f64,
            Num::F64(x) => x,
        }
    }
}

/// Reads one JSON text from its start.
pub struct Reader<'a> {
    text: &'a str,
    pos: usize,
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `w` that is a quote, a backslash or a control character;
/// the lowest flagged byte is exact (a borrow may flag bytes above it).
#[inline(always)]
fn specials(w: u64) -> u64 {
    let quote = w ^ (ONES * u64::from(b'"'));
    let backslash = w ^ (ONES * u64::from(b'\\'));
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x;
    (zero_byte(quote) | zero_byte(backslash) | (w.wrapping_sub(ONES * 0x20) & !w)) & HIGHS
}

impl<'a> Reader<'a> {
    /// A reader at the start of `text`.
    pub fn new(text: &'a str) -> Self {
        Self { text, pos: 0 }
    }

    #[inline(always)]
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    /// The next byte after whitespace, not consumed.
    #[inline(always)]
    pub fn peek(&mut self) -> Option<u8> {
        let b = self.bytes();
        while let Some(&c) = b.get(self.pos) {
            if !matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                return Some(c);
            }
            self.pos += 1;
        }
        None
    }

    /// Consumes `c` after whitespace.
    #[inline(always)]
    fn expect(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.pos += 1)
    }

    /// Consumes the literal `word` (at the current byte).
    #[inline(always)]
    fn literal(&mut self, word: &str) -> Option<()> {
        self.text[self.pos..]
            .starts_with(word)
            .then(|| self.pos += word.len())
    }

    /// Whether only whitespace is left.
    pub fn end(&mut self) -> bool {
        self.peek().is_none()
    }

    /// Consumes the `{` that opens an object; then [`Reader::key`] until it answers
    /// `Some(None)`.
    pub fn object(&mut self) -> Option<()> {
        self.expect(b'{')
    }

    /// The next member's key of the object being read (the reader then at its value), or
    /// `Some(None)` once the object is closed. `first` is true before the first member.
    #[inline(always)]
    pub fn key(&mut self, first: &mut bool) -> Option<Option<Cow<'a, str>>> {
        match self.peek()? {
            b'}' => {
                self.pos += 1;
                return Some(None);
            }
            b',' if !*first => self.pos += 1,
            b',' => return None,
            _ if *first => {}
            _ => return None,
        }
        *first = false;
        let k = self.string()?;
        self.expect(b':')?;
        Some(Some(k))
    }

    /// Consumes the `[` that opens an array; then [`Reader::element`] until it answers
    /// `Some(false)`.
    pub fn array(&mut self) -> Option<()> {
        self.expect(b'[')
    }

    /// Whether another element of the array being read follows (the reader then at it);
    /// `Some(false)` once the array is closed.
    pub fn element(&mut self, first: &mut bool) -> Option<bool> {
        match self.peek()? {
            b']' => {
                self.pos += 1;
                Some(false)
            }
            b',' if !*first => {
                self.pos += 1;
                Some(true)
            }
            b',' => None,
            _ if *first => {
                *first = false;
                Some(true)
            }
            _ => None,
        }
    }

    /// Consumes `null` if the next value is one.
    #[inline(always)]
    pub fn null(&mut self) -> Option<bool> {
        if self.peek()? == b'n' {
            self.literal("null")?;
            Some(true)
        } else {
            Some(false)
        }
    }

    /// `null` as `Some(None)`, else the value `read` reads (`None` if it reads none).
    #[inline(always)]
    pub fn or_null<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.null()? {
            Some(None)
        } else {
            read(self).map(Some)
        }
    }

    /// A string value, borrowed unless it holds escapes (those are decoded by serde_json).
    #[inline(always)]
    pub fn string(&mut self) -> Option<Cow<'a, str>> {
        if self.peek()? != b'"' {
            return None;
        }
        let b = self.bytes();
        let start = self.pos + 1;
        let mut i = start;
        loop {
            while let Some(chunk) = b.get(i..i + 8) {
                let w = u64::from_le_bytes(chunk.try_into().ok()?);
                let s = specials(w);
                if s != 0 {
                    i += (s.trailing_zeros() / 8) as usize;
                    break;
                }
                i += 8;
            }
            match *b.get(i)? {
                b'"' => {
                    self.pos = i + 1;
                    return self.text.get(start..i).map(Cow::Borrowed);
                }
                b'\\' => return self.escaped(start - 1),
                c if c < 0x20 => return None,
                _ => i += 1,
            }
        }
    }

    /// The string opening at `open` (its quote), which holds an escape: its end found, then
    /// decoded by serde_json.
    #[cold]
    fn escaped(&mut self, open: usize) -> Option<Cow<'a, str>> {
        let b = self.bytes();
        let mut i = open + 1;
        loop {
            match *b.get(i)? {
                b'"' => break,
                b'\\' => i += 2,
                c if c < 0x20 => return None,
                _ => i += 1,
            }
        }
        let s: String = serde_json::from_str(self.text.get(open..=i)?).ok()?;
        self.pos = i + 1;
        Some(Cow::Owned(s))
    }

    /// A `true` or `false` value.
    pub fn boolean(&mut self) -> Option<bool> {
        match self.peek()? {
            b't' => self.literal("true").map(|()| true),
            b'f' => self.literal("false").map(|()| false),
            _ => None,
        }
    }

    /// A number value, read as serde_json reads it.
    pub fn number(&mut self) -> Option<Num> {
        self.peek()?;
        let b = self.bytes();
        let start = self.pos;
        let mut i = start;
        let digits = |i: &mut usize| {
            let from = *i;
            while b.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            *i > from
        };
        let negative = b.get(i) == Some(&b'-');
        if negative {
            i += 1;
        }
        match b.get(i)? {
            b'0' => i += 1,
            b'1'..=b'9' => {
                digits(&mut i);
            }
            _ => return None,
        }
        let mut integer = true;
        if b.get(i) == Some(&b'.') {
            i += 1;
            if !digits(&mut i) {
                return None;
            }
            integer = false;
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if !digits(&mut i) {
                return None;
            }
            integer = false;
        }
        self.pos = i;
        let token = &self.text[start..i];
        // Nineteen digits always fit u64; serde_json reads them exactly so.
        if integer && !negative && token.len() <= 19 {
            return Some(Num::U64(
                token
                    .bytes()
                    .fold(0u64, |n, d| n * 10 + u64::from(d - b'0')),
            ));
        }
        let n: serde_json::Number = serde_json::from_str(token).ok()?;
        Some(match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Num::U64(u),
            (None, Some(i)) => Num::I64(i),
            (None, None) => Num::F64(n.as_f64()?),
        })
    }

    /// Skips one value of any type, checking its syntax; `None` at a fault, at more than
    /// `max_depth` containers open at once or at an escaped string that does not decode.
    pub fn skip(&mut self, max_depth: u32) -> Option<()> {
        // One bit per open container, from the lowest: set for an object.
        let mut objects = 0u64;
        let mut depth = 0u32;
        loop {
            // A value.
            match self.peek()? {
                b'{' | b'[' => {
                    if depth >= max_depth {
                        return None;
                    }
                    let object = self.bytes()[self.pos] == b'{';
                    self.pos += 1;
                    let close = if object { b'}' } else { b']' };
                    if self.peek()? == close {
                        self.pos += 1;
                    } else {
                        objects = objects << 1 | u64::from(object);
                        depth += 1;
                        if object {
                            self.string()?;
                            self.expect(b':')?;
                        }
                        continue;
                    }
                }
                b'"' => {
                    self.string()?;
                }
                b't' => self.literal("true")?,
                b'f' => self.literal("false")?,
                b'n' => self.literal("null")?,
                _ => {
                    self.number()?;
                }
            }
            // What follows a value: the next one in its container, or the container's end.
            loop {
                if depth == 0 {
                    return Some(());
                }
                let object = objects & 1 == 1;
                match self.peek()? {
                    b',' => {
                        self.pos += 1;
                        if object {
                            self.string()?;
                            self.expect(b':')?;
                        }
                        break;
                    }
                    b'}' if object => {}
                    b']' if !object => {}
                    _ => return None,
                }
                self.pos += 1;
                objects >>= 1;
                depth -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skips(text: &str) -> bool {
        let mut r = Reader::new(text);
        r.skip(MAX_DEPTH).is_some() && r.end()
    }

    #[test]
    fn strings_borrow_unless_escaped_and_refuse_control_characters() {
        let mut r = Reader::new(r#"  "plain and long enough to take the wide loop" "#);
        assert!(matches!(
            r.string(),
            Some(Cow::Borrowed("plain and long enough to take the wide loop"))
        ));
        assert!(r.end());
        let mut r = Reader::new(r#""a \"b\" \u00e9 \ud83d\ude00 c""#);
        assert_eq!(r.string().as_deref(), Some("a \"b\" é 😀 c"));
        assert!(r.end());
        for bad in [
            "\"tab\there\"",
            "\"long string with a tab\there\"",
            "\"unterminated",
            r#""bad \x escape""#,
            r#""lone \ud800 surrogate""#,
            "plain",
        ] {
            assert_eq!(Reader::new(bad).string(), None, "{bad:?}");
        }
        // A quote or backslash in every position of the wide loop.
        for n in 0..20 {
            let s = format!("\"{}\"", "x".repeat(n));
            assert_eq!(
                Reader::new(&s).string().as_deref(),
                Some(&s[1..s.len() - 1])
            );
            let e = format!("\"{}\\n\"", "x".repeat(n));
            assert_eq!(
                Reader::new(&e).string().map(|c| c.into_owned()),
                Some(format!("{}\n", "x".repeat(n)))
            );
        }
    }

    #[test]
    fn numbers_read_as_serde_json_reads_them() {
        for text in [
            "0",
            "7",
            "1714550400123",
            "9999999999999999999",
            "18446744073709551615",
            "18446744073709551616",
            "-0",
            "-7",
            "-9223372036854775808",
            "-9223372036854775809",
            "2.5",
            "1e3",
            "1E+3",
            "-1.25e-2",
            "0.1",
            "123456789012345678901234567890",
        ] {
            let ours = Reader::new(text).number().expect(text);
            let theirs: serde_json::Number = serde_json::from_str(text).expect(text);
            let expected = if let Some(u) = theirs.as_u64() {
                Num::U64(u)
            } else if let Some(i) = theirs.as_i64() {
                Num::I64(i)
            } else {
                Num::F64(theirs.as_f64().expect("finite"))
            };
            assert_eq!(ours, expected, "{text}");
            if let Num::F64(x) = ours {
                assert_eq!(x.to_bits(), expected.as_f64().to_bits(), "{text}");
            }
        }
        for bad in ["-", "+1", ".5", "1.", "1e", "1e+", "-x", "1e400", "x"] {
            let mut r = Reader::new(bad);
            assert!(r.number().is_none() || !r.end(), "{bad}");
        }
        // A leading zero ends the number: what follows is not a delimiter.
        let mut r = Reader::new("01");
        assert_eq!(r.number(), Some(Num::U64(0)));
        assert!(!r.end());
    }

    #[test]
    fn skipping_checks_syntax_and_bounds_depth() {
        for good in [
            "null",
            "true",
            " false ",
            "12.5e-1",
            r#""s""#,
            "[]",
            "{}",
            r#"{"a": [1, {"b": null}, "c", [true, false]], "d": {}}"#,
            " [ [ ] , { } ] ",
        ] {
            assert!(skips(good), "{good}");
            assert!(serde_json::from_str::<serde::de::IgnoredAny>(good).is_ok());
        }
        for bad in [
            "",
            "nul",
            "tru",
            "[1,]",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{1:2}",
            "[1 2]",
            "{\"a\":1]",
            "[1}",
            "[",
            "{",
            "01",
            "\"\t\"",
        ] {
            assert!(!skips(bad), "{bad}");
            assert!(serde_json::from_str::<serde::de::IgnoredAny>(bad).is_err());
        }
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(skips(&deep(MAX_DEPTH as usize)));
        assert!(!skips(&deep(MAX_DEPTH as usize + 1)));
    }

    #[test]
    fn objects_and_arrays_are_read_member_by_member() {
        let mut r = Reader::new(r#" { "a" : [ "x" , "y" ] , "b":null,"c" :true } "#);
        r.object().expect("object");
        let mut first = true;
        assert_eq!(r.key(&mut first).expect("key").as_deref(), Some("a"));
        r.array().expect("array");
        let mut f = true;
        let mut items = Vec::new();
        while r.element(&mut f).expect("element") {
            items.push(r.string().expect("string"));
        }
        assert_eq!(items, ["x", "y"]);
        assert_eq!(r.key(&mut first).expect("key").as_deref(), Some("b"));
        assert_eq!(r.null(), Some(true));
        assert_eq!(r.key(&mut first).expect("key").as_deref(), Some("c"));
        assert_eq!(r.null(), Some(false));
        assert_eq!(r.boolean(), Some(true));
        assert_eq!(r.key(&mut first), Some(None));
        assert!(r.end());
        // A comma before the first member, or after the last, is refused.
        let mut first = true;
        let mut r = Reader::new("{,\"a\":1}");
        r.object().expect("object");
        assert_eq!(r.key(&mut first), None);
        let mut r = Reader::new("{\"a\":1,}");
        r.object().expect("object");
        let mut first = true;
        r.key(&mut first).expect("key");
        r.number().expect("number");
        assert_eq!(r.key(&mut first), None);
        let mut r = Reader::new("[,1]");
        r.array().expect("array");
        assert_eq!(r.element(&mut true), None);
    }
}
