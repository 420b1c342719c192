//! Moving a recorded frame's times to now: each venue names its times in
//! known fields (ISO strings, or seconds, milliseconds or microseconds as
//! strings or numbers). The frame's text is edited in place, field by field,
//! so everything else (prices with their exact digits, ids) stays byte for
//! byte what the venue sent.
//!
//! Shifted: Coinbase Exchange (`time`), Coinbase Advanced Trade (`time`,
//! `timestamp`), Kraken v2 (`timestamp`), Bitstamp (`timestamp` s,
//! `microtimestamp` µs), OKX (`ts` ms), Bybit (`T`, `ts` ms). Not shifted:
//! frames that carry times only by position in arrays (Bitfinex, Kraken v1).

use ck_model::{Exchange, Ts};

/// How a field holds its time.
#[derive(Debug, Clone, Copy)]
enum Unit {
    Iso,
    Secs,
    Millis,
    Micros,
}

fn fields(exchange: Exchange) -> &'static [(&'static str, Unit)] {
    match exchange {
        Exchange::CoinbaseExchange => &[("time", Unit::Iso)],
        Exchange::Coinbase => &[("time", Unit::Iso), ("timestamp", Unit::Iso)],
        Exchange::Kraken => &[("timestamp", Unit::Iso)],
        Exchange::Bitstamp => &[("timestamp", Unit::Secs), ("microtimestamp", Unit::Micros)],
        Exchange::Okx => &[("ts", Unit::Millis)],
        Exchange::Bybit => &[("T", Unit::Millis), ("ts", Unit::Millis)],
        _ => &[],
    }
}

/// Whether frames of `exchange` can be shifted.
#[must_use]
pub fn shiftable(exchange: Exchange) -> bool {
    !fields(exchange).is_empty()
}

/// `frame` with every time field of `exchange` moved by `offset` ns.
#[must_use]
pub fn shift_frame(exchange: Exchange, frame: &str, offset: i64) -> String {
    let mut text = frame.to_owned();
    for (name, unit) in fields(exchange) {
        text = shift_field(&text, name, *unit, offset);
    }
    text
}

fn shift_field(text: &str, name: &str, unit: Unit, offset: i64) -> String {
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
        let shifted = shift_value(token, unit, offset).unwrap_or_else(|| token.to_owned());
        if quoted {
            out.push('"');
            out.push_str(&shifted);
            out.push('"');
            rest = &rest[token.len() + 2..];
        } else {
            out.push_str(&shifted);
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
        let bitfinex = "[17,\"te\",[1,1618678150123,0.5,60000]]";
        assert_eq!(shift_frame(Exchange::Bitfinex, bitfinex, HOUR), bitfinex);
        assert!(!shiftable(Exchange::Bitfinex) && shiftable(Exchange::Okx));
    }
}
