//! Bitstamp REST trades: `GET /api/v2/transactions/{pair}/?time=minute|hour|day`,
//! every trade of the last minute, hour or day, newest first, as
//! `[{"date":"<s>","tid":"<id>","price":"...","amount":"...","type":"0"|"1"}]`
//! (`type` 0 is a taker buy, 1 a sell; `tid` is the WebSocket trade `id`;
//! `date` has whole seconds only). Bitstamp keeps no older trades there, so
//! this history [`History::keeps_only`] the last day: gap repair asks for the
//! shortest span that reaches back to the gap and reports an older gap
//! unfillable. The field types are as community code shows them
//! (unverified): numbers are accepted as strings or as JSON numbers.
//!
//! Candles (unverified): `GET /api/v2/ohlc/{pair}/?step=<s>&limit=<1..1000>&end=<s>`,
//! the `limit` candles up to `end`; open, high, low, close and volume only.

use ck_model::{Candle, Exchange, Instrument, Interval, Side, Trade, TradeId, Ts};
use serde_json::Value;

use crate::history::{
    CandlePage, History, HistoryError, VenueCandle, no_such_interval, window_end,
};
use crate::parse::{ParseError, decimal, json};
use crate::rest::RestClient;

const EX: Exchange = Exchange::Bitstamp;

/// The public REST root.
pub const DEFAULT_REST_URL: &str = "https://www.bitstamp.net";

/// Bitstamp history over one [`RestClient`].
#[derive(Debug)]
pub struct BitstampRest {
    client: std::sync::Arc<RestClient>,
}

impl BitstampRest {
    /// History over `client` (whose base URL is the REST root).
    #[must_use]
    pub fn new(client: std::sync::Arc<RestClient>) -> BitstampRest {
        BitstampRest { client }
    }
}

/// The shortest `time` span that reaches back from `now` to `from`.
fn span(now: Ts, from: Ts) -> &'static str {
    let back = now.0.saturating_sub(from.0);
    if back <= 60 * 1_000_000_000 {
        "minute"
    } else if back <= 3_600 * 1_000_000_000 {
        "hour"
    } else {
        "day"
    }
}

/// A field as text, whether sent as a string or a number.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Reads a `transactions` answer, oldest first.
fn trades_from(
    body: &str,
    instrument: &Instrument,
    received: Ts,
) -> Result<Vec<Trade>, ParseError> {
    let rows: Vec<Value> = match serde_json::from_str::<Value>(body).map_err(json(EX))? {
        Value::Array(rows) => rows,
        // Errors come as an object, such as {"status":"error","reason":...}.
        other => {
            return Err(ParseError::Venue {
                exchange: EX,
                message: other.to_string().chars().take(200).collect(),
            });
        }
    };
    let field = |row: &Value, name: &'static str| {
        text(&row[name]).ok_or(ParseError::BadField {
            exchange: EX,
            field: name,
            value: row[name].to_string(),
        })
    };
    let bad = |field: &'static str, value: String| ParseError::BadField {
        exchange: EX,
        field,
        value,
    };
    let mut out = Vec::with_capacity(rows.len());
    for row in rows.iter().rev() {
        let (date, tid, kind) = (field(row, "date")?, field(row, "tid")?, field(row, "type")?);
        out.push(Trade {
            exchange: EX,
            instrument: instrument.clone(),
            trade_id: TradeId::Num(tid.parse().map_err(|_| bad("tid", tid.clone()))?),
            price: decimal(EX, "price", &field(row, "price")?)?,
            size: decimal(EX, "amount", &field(row, "amount")?)?,
            side: match kind.as_str() {
                "0" => Side::Buy,
                "1" => Side::Sell,
                _ => return Err(bad("type", kind)),
            },
            ts_exchange: Ts::from_secs(date.parse().map_err(|_| bad("date", date.clone()))?),
            ts_received: received,
            fills: 1,
        });
    }
    Ok(out)
}

#[async_trait::async_trait]
impl History for BitstampRest {
    fn client(&self) -> &RestClient {
        &self.client
    }

    /// A page is every trade of the span: no fixed size.
    fn page_size(&self) -> u32 {
        u32::MAX
    }

    fn by_time(&self) -> bool {
        true
    }

    fn keeps_only(&self) -> Option<&'static str> {
        Some("the last day of trades")
    }

    /// Every trade of the shortest span reaching back to `from` (a minute,
    /// an hour or the day; `limit` does not cut a span), older ones too.
    async fn trades_from_time(
        &self,
        instrument: &Instrument,
        from: Ts,
        _limit: u32,
    ) -> Result<Vec<Trade>, HistoryError> {
        let now = Ts::now();
        let path = format!(
            "/api/v2/transactions/{}/?time={}",
            crate::bitstamp::ws::pair(instrument),
            span(now, from)
        );
        crate::history::get_read(
            &self.client,
            &path,
            |_| false,
            |body| trades_from(body, instrument, now),
        )
        .await
    }

    async fn candles(
        &self,
        instrument: &Instrument,
        interval: Interval,
        start: Ts,
        limit: u32,
    ) -> Result<CandlePage, HistoryError> {
        let step = ohlc_step(interval)
            .ok_or_else(|| no_such_interval(EX, interval, "1m 3m 5m 15m 30m 1h 2h 4h 6h 12h 1d"))?;
        let limit = limit.clamp(1, MAX_CANDLES);
        let end = window_end(interval, start, limit);
        // Given `end`, Bitstamp answers the `limit` candles up to it (and
        // ignores `start`): `end` is the window's last open time.
        let path = format!(
            "/api/v2/ohlc/{}/?step={step}&limit={limit}&end={}",
            crate::bitstamp::ws::pair(instrument),
            end.0.div_euclid(ck_model::NANOS_PER_SEC) - step
        );
        crate::history::candle_window(
            &self.client,
            &path,
            (start, end),
            |_| false,
            |body, now| candles_from(body, instrument, interval, now),
        )
        .await
    }
}

/// Candles per request, at most.
const MAX_CANDLES: u32 = 1_000;

/// Bitstamp's `step` (seconds) for `interval`, where it has one.
fn ohlc_step(interval: Interval) -> Option<i64> {
    match interval {
        Interval::M1
        | Interval::M3
        | Interval::M5
        | Interval::M15
        | Interval::M30
        | Interval::H1
        | Interval::H2
        | Interval::H4
        | Interval::H6
        | Interval::H12
        | Interval::D1 => interval.fixed_nanos().map(|n| n / ck_model::NANOS_PER_SEC),
        _ => None,
    }
}

/// Reads an `ohlc` answer, `{"data":{"pair":"BTC/USD","ohlc":[{"timestamp":"<s>",
/// "open":..,"high":..,"low":..,"close":..,"volume":..}]}}` (numbers as
/// strings or numbers), oldest first.
fn candles_from(
    body: &str,
    instrument: &Instrument,
    interval: Interval,
    now: Ts,
) -> Result<Vec<Candle>, ParseError> {
    let v: Value = serde_json::from_str(body).map_err(json(EX))?;
    let Some(rows) = v["data"]["ohlc"].as_array() else {
        return Err(ParseError::Venue {
            exchange: EX,
            message: v.to_string().chars().take(200).collect(),
        });
    };
    let field = |row: &Value, name: &'static str| {
        text(&row[name]).ok_or(ParseError::BadField {
            exchange: EX,
            field: name,
            value: row[name].to_string(),
        })
    };
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let time = field(row, "timestamp")?;
        let secs: i64 = time.parse().map_err(|_| ParseError::BadField {
            exchange: EX,
            field: "timestamp",
            value: time.clone(),
        })?;
        let (open, high, low) = (field(row, "open")?, field(row, "high")?, field(row, "low")?);
        let (close, volume) = (field(row, "close")?, field(row, "volume")?);
        out.push(
            VenueCandle {
                open_time: Ts::from_secs(secs),
                open: &open,
                high: &high,
                low: &low,
                close: &close,
                volume: &volume,
                quote_volume: None,
                trades: None,
            }
            .candle(EX, instrument, interval, now)?,
        );
    }
    out.sort_by_key(|c| c.open_time);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transactions_come_oldest_first_in_either_number_form() {
        let body = r#"[{"date":"1641343709","tid":"216000484","price":"3802.93","amount":"0.93100000","type":"1"},{"date":1641343699,"tid":216000477,"price":"3805.44","amount":"0.07920000","type":0}]"#;
        let i = Instrument::new("ETH", "USD");
        let trades = trades_from(body, &i, Ts(0)).expect("parse");
        assert_eq!(trades[0].trade_id, TradeId::Num(216_000_477));
        assert_eq!(trades[0].side, Side::Buy);
        assert_eq!(trades[0].ts_exchange, Ts::from_secs(1_641_343_699));
        assert_eq!(trades[1].size.to_string(), "0.93100000");
        assert_eq!(trades[1].side, Side::Sell);
        assert!(matches!(
            trades_from(r#"{"status":"error","reason":"Invalid pair"}"#, &i, Ts(0)),
            Err(ParseError::Venue { .. })
        ));
        let now = Ts::from_secs(10_000);
        assert_eq!(span(now, Ts::from_secs(9_950)), "minute");
        assert_eq!(span(now, Ts::from_secs(7_000)), "hour");
        assert_eq!(span(now, Ts::from_secs(1)), "day");
    }

    #[test]
    fn ohlc_rows_in_either_number_form() {
        let body = r#"{"data":{"pair":"BTC/USD","ohlc":[{"high":"19500","timestamp":"1663200060","volume":"0.5","low":"19400.5","close":"19450","open":"19400.5"},{"high":19400.5,"timestamp":"1663200000","volume":1.25,"low":19300,"close":19400.5,"open":19350}]}}"#;
        let i = Instrument::new("BTC", "USD");
        let c = candles_from(body, &i, Interval::M1, Ts::from_secs(1_663_300_000)).expect("rows");
        assert_eq!(c[0].open_time, Ts::from_secs(1_663_200_000), "oldest first");
        assert_eq!(
            [&c[0].open, &c[0].high, &c[0].low, &c[0].close, &c[0].volume].map(ToString::to_string),
            ["19350", "19400.5", "19300", "19400.5", "1.25"]
        );
        assert_eq!(c[1].high.to_string(), "19500");
        assert!(
            candles_from(
                r#"{"status":"error","reason":"Invalid pair"}"#,
                &i,
                Interval::M1,
                Ts(0)
            )
            .is_err()
        );
    }
}
