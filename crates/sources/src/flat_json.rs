//! A fast reader for flat JSON objects: `{"k":"v","n":123,"b":true}`.
//!
//! Exchange trade payloads are flat objects of plain strings, numbers and
//! booleans. Reading them key by key without building anything is several
//! times faster than a general deserializer. The reader is strict: a nested
//! value, an escape sequence or anything unexpected returns `None`, and the
//! caller falls back to `serde_json`, so no input is ever misread.

/// One value of a flat object, as its exact text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scalar<'a> {
    /// A string without escapes, quotes removed.
    Str(&'a str),
    /// A number, `true`, `false` or `null`, as written.
    Lit(&'a str),
}

impl<'a> Scalar<'a> {
    pub(crate) fn str(self) -> Option<&'a str> {
        match self {
            Scalar::Str(s) => Some(s),
            Scalar::Lit(_) => None,
        }
    }

    pub(crate) fn u64(self) -> Option<u64> {
        match self {
            Scalar::Lit(s) => s.parse().ok(),
            Scalar::Str(_) => None,
        }
    }

    pub(crate) fn i64(self) -> Option<i64> {
        match self {
            Scalar::Lit(s) => s.parse().ok(),
            Scalar::Str(_) => None,
        }
    }

    pub(crate) fn bool(self) -> Option<bool> {
        match self {
            Scalar::Lit("true") => Some(true),
            Scalar::Lit("false") => Some(false),
            _ => None,
        }
    }
}

/// Calls `f` with each key and value of the flat object `text`, in order.
/// Returns `None` if `text` is not a flat object this reader accepts.
pub(crate) fn for_each_field<'a>(
    text: &'a str,
    mut f: impl FnMut(&'a str, Scalar<'a>),
) -> Option<()> {
    let b = text.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        return (skip_ws(b, i + 1) == b.len()).then_some(());
    }
    loop {
        let (key, next) = string(text, i)?;
        i = skip_ws(b, next);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(b, i + 1);
        let value = match b.get(i)? {
            b'"' => {
                let (s, next) = string(text, i)?;
                i = next;
                Scalar::Str(s)
            }
            b'{' | b'[' => return None,
            _ => {
                let start = i;
                let word = b[i].is_ascii_alphabetic();
                while i < b.len() {
                    match b[i] {
                        b',' | b'}' | b' ' | b'\t' | b'\n' | b'\r' => break,
                        b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E' if !word => {}
                        b'a'..=b'z' if word => {}
                        _ => return None,
                    }
                    i += 1;
                }
                let lit = &text[start..i];
                if lit.is_empty() || (word && !matches!(lit, "true" | "false" | "null")) {
                    return None;
                }
                Scalar::Lit(lit)
            }
        };
        f(key, value);
        i = skip_ws(b, i);
        match b.get(i)? {
            b',' => i = skip_ws(b, i + 1),
            b'}' => return (skip_ws(b, i + 1) == b.len()).then_some(()),
            _ => return None,
        }
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// A string starting at `i` (which must be `"`), without escapes or control
/// characters: its content and the index after the closing quote.
fn string(text: &str, i: usize) -> Option<(&str, usize)> {
    let b = text.as_bytes();
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let start = i + 1;
    let len = b[start..]
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
    let end = start + len;
    (b[end] == b'"').then(|| (&text[start..end], end + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(text: &str) -> Option<Vec<(&str, Scalar<'_>)>> {
        let mut v = Vec::new();
        for_each_field(text, |k, s| v.push((k, s)))?;
        Some(v)
    }

    #[test]
    fn reads_flat_objects() {
        let f = fields(r#"{"e":"trade","E":1723161255343,"s":"BTCUSDT","p":"61837.63000000","m":true,"x":null}"#).expect("flat");
        assert_eq!(f[0], ("e", Scalar::Str("trade")));
        assert_eq!(f[1].1.i64(), Some(1_723_161_255_343));
        assert_eq!(f[3].1.str(), Some("61837.63000000"));
        assert_eq!(f[4].1.bool(), Some(true));
        assert_eq!(f[5].1, Scalar::Lit("null"));
        assert_eq!(fields(" { } ").map(|v| v.len()), Some(0));
        assert!(fields(r#"{ "a" : 1 , "b" : "x" }"#).is_some());
    }

    #[test]
    fn refuses_what_it_cannot_read_exactly() {
        for text in [
            r#"{"a":{"b":1}}"#,
            r#"{"a":[1]}"#,
            r#"{"a":"x\"y"}"#,
            r#"{"a":1"#,
            r#"{"a":1}x"#,
            r#"{"a" 1}"#,
            r#"{"a":tru}"#,
            r#"{"a":}"#,
            "[1]",
            "",
        ] {
            assert!(fields(text).is_none(), "{text}");
        }
    }
}
