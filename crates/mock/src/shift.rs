//! Moving a recorded frame's times to now: each venue names its times in
//! known fields (ISO strings, or seconds, milliseconds or microseconds as
//! strings or numbers). The frame's text is edited in place, field by field,
//! so everything else (prices with their exact digits, ids) stays byte for
//! byte what the venue sent.
//!
//! Shifted by field: Coinbase Exchange (`time`), Coinbase Advanced Trade
//! (`time`, `timestamp`), Kraken v2 (`timestamp`), Bitstamp (`timestamp` s,
//! `microtimestamp` µs), OKX (`ts` ms), Bybit (`T`, `ts` ms). Shifted by
//! position: Bitfinex trades (`[ID, MTS, AMOUNT, PRICE]` in snapshots and
//! `te`/`tu` updates) and Kraken v1 trades (`[price, volume, "secs.frac", …]`,
//! moved by whole seconds so the fraction keeps its digits). Array frames
//! are rebuilt from their elements' own text.

use ck_model::{Exchange, Ts};

use crate::venues::TimeUnit as Unit;

/// Whether frames of `exchange` can be shifted.
#[must_use]
pub fn shiftable(exchange: Exchange) -> bool {
    let wire = crate::venues::wire(exchange);
    !wire.time_fields.is_empty() || wire.shift_rows.is_some()
}

/// `frame` with every time field of `exchange` moved by `offset` ns.
#[must_use]
pub fn shift_frame(exchange: Exchange, frame: &str, offset: i64) -> String {
    let wire = crate::venues::wire(exchange);
    if frame.starts_with('[')
        && let Some(shifted) = wire.shift_rows.and_then(|rows| rows(frame, offset))
    {
        return shifted;
    }
    let mut text = frame.to_owned();
    for (name, unit) in wire.time_fields {
        text = shift_field(&text, name, *unit, offset);
    }
    text
}

pub(crate) type Raw<'a> = &'a serde_json::value::RawValue;

fn join(items: &[String]) -> String {
    format!("[{}]", items.join(","))
}

fn texts(items: &[Raw<'_>]) -> Vec<String> {
    items.iter().map(|r| r.get().to_owned()).collect()
}

/// One trade row with its time at `index`, moved (`None` if it is not one).
fn shift_row(row: &str, index: usize, len: usize, unit: Unit, offset: i64) -> Option<String> {
    let items: Vec<Raw<'_>> = serde_json::from_str(row).ok()?;
    if items.len() != len {
        return None;
    }
    let mut out = texts(&items);
    let token = items[index].get();
    out[index] = match token.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        // "secs.frac": whole seconds move, the fraction keeps its digits.
        Some(inner) => {
            let (secs, frac) = inner.split_once('.').unwrap_or((inner, ""));
            let secs: i64 = secs.parse().ok()?;
            let moved = secs + offset / 1_000_000_000;
            if frac.is_empty() {
                format!("\"{moved}\"")
            } else {
                format!("\"{moved}.{frac}\"")
            }
        }
        None => shift_value(token, unit, offset)?,
    };
    Some(join(&out))
}

/// The rows of a frame of trade rows (`[CHAN, [[row], ...], ...]`) at
/// `rows` in `top`, each with its time at `index` of `len` moved; `None`
/// when they are not such rows.
pub(crate) fn shift_rows_at(
    top: &[Raw<'_>],
    rows: usize,
    index: usize,
    len: usize,
    unit: Unit,
    offset: i64,
) -> Option<String> {
    let mut out = texts(top);
    let items: Vec<Raw<'_>> = serde_json::from_str(top.get(rows)?.get()).ok()?;
    let shifted: Option<Vec<String>> = items
        .iter()
        .map(|r| shift_row(r.get(), index, len, unit, offset))
        .collect();
    out[rows] = join(&shifted?);
    Some(join(&out))
}

/// The frame with its element `at` (one row) moved as [`shift_rows_at`]
/// moves each row.
pub(crate) fn shift_one_row_at(
    top: &[Raw<'_>],
    at: usize,
    index: usize,
    len: usize,
    unit: Unit,
    offset: i64,
) -> Option<String> {
    let mut out = texts(top);
    out[at] = shift_row(top.get(at)?.get(), index, len, unit, offset)?;
    Some(join(&out))
}

fn shift_field(text: &str, name: &str, unit: Unit, offset: i64) -> String {
    edit_field(text, name, |token| shift_value(token, unit, offset))
}

/// `text` with the value of every `"name":` field (a string, or a number
/// of digits and `.`) replaced by `edit`, given the value without quotes;
/// `None` keeps it. Everything else stays byte for byte.
pub(crate) fn edit_field(
    text: &str,
    name: &str,
    mut edit: impl FnMut(&str) -> Option<String>,
) -> String {
    let key = format!("\"{name}\":");
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while let Some(at) = rest.find(&key) {
        let value_at = at + key.len();
        out.push_str(&rest[..value_at]);
        rest = &rest[value_at..];
        let trimmed = rest.trim_start();
        out.push_str(&rest[..rest.len() - trimmed.len()]);
        rest = trimmed;
        let (token, quoted) = if let Some(inner) = rest.strip_prefix('"') {
            match inner.find('"') {
                Some(end) => (&inner[..end], true),
                None => break,
            }
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            (&rest[..end], false)
        };
        let edited = edit(token).unwrap_or_else(|| token.to_owned());
        if quoted {
            out.push('"');
            out.push_str(&edited);
            out.push('"');
            rest = &rest[token.len() + 2..];
        } else {
            out.push_str(&edited);
            rest = &rest[token.len()..];
        }
    }
    out.push_str(rest);
    out
}

fn shift_value(token: &str, unit: Unit, offset: i64) -> Option<String> {
    let whole = |scale: i64| -> Option<String> {
        let n: i64 = token.parse().ok()?;
        Some((n + offset / scale).to_string())
    };
    match unit {
        Unit::Iso => {
            let t = Ts::parse(token).ok()?;
            Some(Ts(t.0 + offset).to_string())
        }
        Unit::Secs => whole(1_000_000_000),
        Unit::Millis => whole(1_000_000),
        Unit::Micros => whole(1_000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000_000_000;

    #[test]
    fn times_move_and_everything_else_stays() {
        let cb = r#"{"type":"match","trade_id":1,"price":"0.00001305","time":"2021-04-17T16:43:37.089723Z"}"#;
        assert_eq!(
            shift_frame(Exchange::CoinbaseExchange, cb, HOUR),
            r#"{"type":"match","trade_id":1,"price":"0.00001305","time":"2021-04-17T17:43:37.089723Z"}"#
        );
        let okx = r#"{"data":[{"px":"30243.4","ts":"1652458035576"}],"ts": "1652458035577"}"#;
        assert_eq!(
            shift_frame(Exchange::Okx, okx, HOUR),
            r#"{"data":[{"px":"30243.4","ts":"1652461635576"}],"ts": "1652461635577"}"#
        );
        let bybit = r#"{"data":[{"T":1754774861700,"p":"65140.4"}],"ts":1754774861701}"#;
        assert_eq!(
            shift_frame(Exchange::Bybit, bybit, HOUR),
            r#"{"data":[{"T":1754778461700,"p":"65140.4"}],"ts":1754778461701}"#
        );
        let bitstamp = r#"{"data":{"timestamp":"1641343721","microtimestamp":"1641343721269000"}}"#;
        assert_eq!(
            shift_frame(Exchange::Bitstamp, bitstamp, HOUR),
            r#"{"data":{"timestamp":"1641347321","microtimestamp":"1641347321269000"}}"#
        );
        let te = "[17,\"te\",[1,1618678150123,0.5,60000.10]]";
        assert_eq!(
            shift_frame(Exchange::Bitfinex, te, HOUR),
            "[17,\"te\",[1,1618681750123,0.5,60000.10]]"
        );
        let snapshot = "[232960,[[670002570,1618677535660,-76.7682617,0.00002516],[670002569,1618677306497,-692.4561076,0.00002523]]]";
        assert_eq!(
            shift_frame(Exchange::Bitfinex, snapshot, HOUR),
            "[232960,[[670002570,1618681135660,-76.7682617,0.00002516],[670002569,1618680906497,-692.4561076,0.00002523]]]"
        );
        // As recorded with sequence numbers (cryptofeed's Bitfinex recording).
        assert_eq!(
            shift_frame(
                Exchange::Bitfinex,
                "[232962,[[670155031,1618677442819,-0.00023057,60410]],10]",
                HOUR
            ),
            "[232962,[[670155031,1618681042819,-0.00023057,60410]],10]"
        );
        assert_eq!(
            shift_frame(
                Exchange::Bitfinex,
                "[17,\"te\",[1,1618678150123,0.5,60000.10],11]",
                HOUR
            ),
            "[17,\"te\",[1,1618681750123,0.5,60000.10],11]"
        );
        // A ticker and a heartbeat stay as they are.
        for other in ["[17,[1,2,3,4,5,6,7,8,9,10]]", "[17,\"hb\"]"] {
            assert_eq!(shift_frame(Exchange::Bitfinex, other, HOUR), other);
        }
        let kraken_v1 = r#"[993,[["354.11000000","0.89594024","1618678142.557535","s","l",""]],"trade","XMR/USD"]"#;
        assert_eq!(
            shift_frame(Exchange::Kraken, kraken_v1, HOUR),
            r#"[993,[["354.11000000","0.89594024","1618681742.557535","s","l",""]],"trade","XMR/USD"]"#
        );
        let kraken_v2 = r#"{"channel":"trade","data":[{"price":1.5,"timestamp":"2023-09-25T07:49:37.708706Z"}]}"#;
        assert_eq!(
            shift_frame(Exchange::Kraken, kraken_v2, HOUR),
            r#"{"channel":"trade","data":[{"price":1.5,"timestamp":"2023-09-25T08:49:37.708706Z"}]}"#
        );
        assert!(shiftable(Exchange::Bitfinex) && shiftable(Exchange::Okx));
        assert!(!shiftable(Exchange::Binance));
    }
}
