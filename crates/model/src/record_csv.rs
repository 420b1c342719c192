//! Candle records from JSON to CSV: the API's and the CLI's CSV answers
//! come from the same JSON records as their JSON answers (the stores'
//! packed days and the archive's cached days), turned into rows here
//! without building a [`crate::CandleRecord`].

/// The fields of a record, [`crate::CandleRecord::COLUMNS`].
const FIELDS: usize = 13;

/// Appends the CSV row (ending in `\n`) of one candle record's JSON, as
/// [`crate::Candle::append_record_json`] writes it: its values in order,
/// exactly as the `csv` crate writes a [`crate::CandleRecord`] (a field is
/// quoted only where it holds a comma, a quote or a line break; `null` is
/// empty).
///
/// # Errors
/// When `record` is not such a JSON object.
pub fn append_csv_row(record: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let start = out.len();
    if known_row(record, out).is_some() {
        return Ok(());
    }
    // Not in the exact form candlekeep writes (or with an escaped id): read
    // as any JSON object.
    out.truncate(start);
    let result = row(record, out);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// The keys in the order [`crate::Candle::append_record_json`] writes them,
/// each with what comes before it.
const KEYS: [&[u8]; FIELDS] = [
    b"{\"open_time\":",
    b",\"open\":",
    b",\"high\":",
    b",\"low\":",
    b",\"close\":",
    b",\"volume\":",
    b",\"quote_volume\":",
    b",\"vwap\":",
    b",\"taker_buy_volume\":",
    b",\"trades\":",
    b",\"first_trade_id\":",
    b",\"last_trade_id\":",
    b",\"state\":",
];

/// The fast way: a record exactly as candlekeep writes it, its keys in
/// order and no escape in any string, read in one pass. `None` (with a
/// part written) for anything else.
fn known_row(record: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let mut rest = record;
    for (k, key) in KEYS.iter().enumerate() {
        rest = rest.strip_prefix(*key)?;
        if k > 0 {
            out.push(b',');
        }
        match rest.first()? {
            b'"' => {
                let body = &rest[1..];
                let end = body.iter().position(|&c| c == b'"' || c == b'\\')?;
                if body[end] != b'"' {
                    return None;
                }
                // Only the ids can hold a comma, a quote or a line break.
                if k == 10 || k == 11 {
                    field(&body[..end], out);
                } else {
                    out.extend_from_slice(&body[..end]);
                }
                rest = &body[end + 1..];
            }
            b'n' => rest = rest.strip_prefix(b"null")?,
            _ => {
                let end = rest.iter().position(|&c| c == b',' || c == b'}')?;
                out.extend_from_slice(&rest[..end]);
                rest = &rest[end..];
            }
        }
    }
    (rest == b"}").then(|| out.push(b'\n'))
}

fn row(record: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let mut s = Scan { b: record, i: 0 };
    s.expect(b'{')?;
    let mut fields = 0;
    let mut value = Vec::new();
    loop {
        s.skip_space();
        if s.peek() == Some(b'}') && fields == 0 {
            break;
        }
        s.skip_string()?; // the key
        s.skip_space();
        s.expect(b':')?;
        s.skip_space();
        if fields > 0 {
            out.push(b',');
        }
        fields += 1;
        match s.peek() {
            Some(b'"') => match s.plain_string()? {
                Some(plain) => field(plain, out),
                None => {
                    s.string(&mut value)?;
                    field(&value, out);
                }
            },
            Some(b'n') => s.word(b"null")?,
            Some(_) => {
                let from = s.i;
                while s
                    .peek()
                    .is_some_and(|c| !matches!(c, b',' | b'}') && !c.is_ascii_whitespace())
                {
                    s.i += 1;
                }
                field(&record[from..s.i], out);
            }
            None => return Err("the record ends early".into()),
        }
        s.skip_space();
        match s.next() {
            Some(b',') => {}
            Some(b'}') => break,
            _ => return Err(format!("expected `,` or `}}` at byte {}", s.i)),
        }
    }
    if fields != FIELDS {
        return Err(format!("a candle record has {FIELDS} fields, not {fields}"));
    }
    out.push(b'\n');
    Ok(())
}

/// Writes a field, quoted where the `csv` crate quotes it.
fn field(value: &[u8], out: &mut Vec<u8>) {
    if value
        .iter()
        .any(|c| matches!(c, b',' | b'"' | b'\n' | b'\r'))
    {
        out.push(b'"');
        for &c in value {
            if c == b'"' {
                out.push(b'"');
            }
            out.push(c);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(value);
    }
}

struct Scan<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scan<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek();
        self.i += 1;
        c
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn expect(&mut self, want: u8) -> Result<(), String> {
        match self.next() {
            Some(c) if c == want => Ok(()),
            _ => Err(format!(
                "expected `{}` at byte {}",
                want as char,
                self.i - 1
            )),
        }
    }

    fn word(&mut self, word: &[u8]) -> Result<(), String> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(format!("unexpected value at byte {}", self.i))
        }
    }

    /// A JSON string without escapes, borrowed (and passed); `None`, with
    /// nothing passed, when it has an escape.
    fn plain_string(&mut self) -> Result<Option<&'a [u8]>, String> {
        let start = self.i + 1;
        let rest = self.b.get(start..).ok_or("a string does not end")?;
        match rest.iter().position(|&c| c == b'"' || c == b'\\') {
            Some(n) if rest[n] == b'"' => {
                self.i = start + n + 1;
                Ok(Some(&rest[..n]))
            }
            Some(_) => Ok(None),
            None => Err("a string does not end".into()),
        }
    }

    /// Passes a JSON string (a key).
    fn skip_string(&mut self) -> Result<(), String> {
        if self.plain_string()?.is_none() {
            let mut scratch = Vec::new();
            self.string(&mut scratch)?;
        }
        Ok(())
    }

    /// A JSON string, unescaped into `into`.
    fn string(&mut self, into: &mut Vec<u8>) -> Result<(), String> {
        into.clear();
        self.expect(b'"')?;
        loop {
            match self.next() {
                None => return Err("a string does not end".into()),
                Some(b'"') => return Ok(()),
                Some(b'\\') => {
                    let c = self.next().ok_or("an escape does not end")?;
                    let plain = match c {
                        b'"' => b'"',
                        b'\\' => b'\\',
                        b'/' => b'/',
                        b'b' => 0x08,
                        b'f' => 0x0c,
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'u' => {
                            let ch = self.unicode()?;
                            let mut buf = [0u8; 4];
                            into.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                            continue;
                        }
                        _ => return Err(format!("bad escape at byte {}", self.i - 1)),
                    };
                    into.push(plain);
                }
                Some(c) => into.push(c),
            }
        }
    }

    /// The character of a `\u` escape (after the `u`), a surrogate pair whole.
    fn unicode(&mut self) -> Result<char, String> {
        let first = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&first) {
            if self.next() != Some(b'\\') || self.next() != Some(b'u') {
                return Err("a lone surrogate".into());
            }
            let second = self.hex4()?;
            if !(0xDC00..0xE000).contains(&second) {
                return Err("a lone surrogate".into());
            }
            0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
        } else {
            first
        };
        char::from_u32(code).ok_or_else(|| format!("\\u{code:x} is not a character"))
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self
            .b
            .get(self.i..self.i + 4)
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| u32::from_str_radix(d, 16).ok())
            .ok_or_else(|| format!("bad \\u escape at byte {}", self.i))?;
        self.i += 4;
        Ok(digits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        Candle, CandleRecord, CandleState, Decimal, Exchange, Instrument, Interval, TradeId, Ts,
    };

    fn candle(first: Option<TradeId>, last: Option<TradeId>, state: CandleState) -> Candle {
        let d = |s: &str| Decimal::parse(s).expect("decimal");
        Candle {
            exchange: Exchange::Bybit,
            instrument: Instrument::parse("BTC-USDT").expect("instrument"),
            interval: Interval::M1,
            open_time: Ts(1_723_075_200_123_456_789),
            open: d("61000.10"),
            high: d("61010"),
            low: d("60999.5"),
            close: d("61005.00000001"),
            volume: d("12.345"),
            quote_volume: d("753000.123456789012"),
            vwap: d("61002.5"),
            taker_buy_volume: d("0"),
            trades: 1_234,
            first_trade_id: first,
            last_trade_id: last,
            state,
        }
    }

    /// What the `csv` crate writes for the record.
    fn by_csv_crate(c: &Candle) -> Vec<u8> {
        let mut w = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(Vec::new());
        w.serialize(CandleRecord::from(c)).expect("row");
        w.into_inner().expect("csv")
    }

    #[test]
    fn rows_are_what_the_csv_crate_writes() {
        let ids = [
            (None, None),
            (Some(TradeId::Num(1)), Some(TradeId::Num(u64::MAX))),
            (
                Some(TradeId::Str("a,b".into())),
                Some(TradeId::Str("say \"hi\"\nthen\r\tgo \\ é 😀 \u{1}".into())),
            ),
        ];
        for (first, last) in ids {
            for state in [
                CandleState::Provisional,
                CandleState::Closed,
                CandleState::Revised,
            ] {
                let c = candle(first.clone(), last.clone(), state);
                let mut json = Vec::new();
                c.append_record_json(&mut json);
                let mut row = Vec::new();
                append_csv_row(&json, &mut row).expect("converted");
                assert_eq!(
                    String::from_utf8_lossy(&row),
                    String::from_utf8_lossy(&by_csv_crate(&c)),
                    "{}",
                    String::from_utf8_lossy(&json)
                );
            }
        }
    }

    #[test]
    fn any_json_form_of_a_record_reads_as_the_exact_one() {
        let c = candle(Some(TradeId::Num(7)), None, CandleState::Closed);
        let mut json = Vec::new();
        c.append_record_json(&mut json);
        // The same keys in the same order, with spaces and line breaks.
        let pretty = String::from_utf8(json.clone())
            .expect("utf8")
            .replace("\":", "\" : ")
            .replace(",\"", ",\n  \"")
            .into_bytes();
        let (mut fast, mut slow) = (Vec::new(), Vec::new());
        append_csv_row(&json, &mut fast).expect("fast");
        append_csv_row(&pretty, &mut slow).expect("spaces and line breaks");
        assert_eq!(fast, slow);
        assert_eq!(fast, by_csv_crate(&c));
    }

    #[test]
    fn what_is_not_a_record_is_refused_and_writes_nothing() {
        let mut out = b"kept".to_vec();
        for bad in [
            &b""[..],
            b"[1]",
            b"{\"a\":1}",
            b"{\"a\":\"x",
            b"{\"a\":\"\\q\"}",
        ] {
            assert!(
                append_csv_row(bad, &mut out).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
            assert_eq!(out, b"kept");
        }
    }
}
