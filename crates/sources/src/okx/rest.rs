//! OKX v5 REST candles: `GET /api/v5/market/history-candles?instId=&bar=&after=<ms>&before=<ms>&limit=<1..100>`,
//! rows `[ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm]` (strings,
//! newest first; `ts` the open time in ms, `volCcyQuote` the quote volume
//! on spot, `confirm` `"0"` while the candle is open) in
//! `{"code":"0","msg":"","data":[...]}`. `after` asks for rows older than a
//! time and `before` for newer ones (both exclusive), so a window of
//! `limit` candles from `start` is `before = start - 1`, `after = end`:
//! whichever way OKX picks rows within a larger range, the window holds at
//! most `limit`. Codes `50011` and `50113` mean too many requests.
//!
//! Trades: `GET /api/v5/market/history-trades?instId=&type=1|2&after=&before=&limit=<1..100>`,
//! rows like the `trades` channel's, in the same envelope. `type=1` pages
//! by trade id, `type=2` by time (ms); `after` and `before` are exclusive
//! bounds as for candles. Ids run on per instrument, so the ids
//! `[from, from + n)` are asked for as one window, which holds at most `n`
//! rows whichever rows OKX picks in a larger range (and where rows
//! aggregate fills, the next windows too, until `n` rows or an empty
//! window, so that a short page still means the end). The first trade at a
//! time comes from a time window that holds fewer rows than a page (so all
//! of its rows): narrowed while full, widened while empty.
//!
//! A row of `count` fills (as the `trades` channel sends them) is one
//! trade of that many fills with the last fill's id; whether REST history
//! aggregates like the channel is unverified, and both are read right:
//! single fills inside an aggregate already captured are dropped by the
//! gap stage, and `backfill` sends the stored aggregate in their place
//! ([`ck_model::Exchange::ids_end_aggregates`]).

use ck_model::{Candle, Exchange, Instrument, Interval, Trade, Ts};
use serde::Deserialize;

use crate::history::{
    CandlePage, History, HistoryError, VenueCandle, get_read, no_such_interval, window_end,
};
use crate::parse::{ParseError, json};
use crate::rest::RestClient;

use super::OkxRow;

const EX: Exchange = Exchange::Okx;

/// The public REST root.
pub const DEFAULT_REST_URL: &str = "https://www.okx.com";

/// Candles per `history-candles` request, at most.
const MAX_CANDLES: u32 = 100;

/// Trades per `history-trades` request, at most.
const MAX_TRADES: u32 = 100;

/// The first time window the search for a time's first trade asks for (ms).
const FIRST_WINDOW_MS: i64 = 60_000;

/// OKX history (trades and candles) over one [`RestClient`].
#[derive(Debug)]
pub struct OkxRest {
    client: std::sync::Arc<RestClient>,
}

impl OkxRest {
    /// History over `client` (whose base URL is the REST root).
    #[must_use]
    pub fn new(client: std::sync::Arc<RestClient>) -> OkxRest {
        OkxRest { client }
    }
}

/// OKX's refusals for too many requests.
fn limited(message: &str) -> bool {
    message.starts_with("code 50011") || message.starts_with("code 50113")
}

#[derive(Deserialize)]
struct TradeEnvelope<'a> {
    #[serde(borrow)]
    code: &'a str,
    #[serde(borrow, default)]
    msg: &'a str,
    #[serde(borrow, default)]
    data: Vec<OkxRow<'a>>,
}

/// Reads a `history-trades` answer, in the order sent; OKX's refusals as
/// [`ParseError::Venue`].
fn trades_from(
    body: &str,
    instrument: &Instrument,
    received: Ts,
) -> Result<Vec<Trade>, ParseError> {
    let envelope: TradeEnvelope<'_> = serde_json::from_str(body).map_err(json(EX))?;
    if envelope.code != "0" {
        return Err(ParseError::Venue {
            exchange: EX,
            message: format!("code {}: {}", envelope.code, envelope.msg),
        });
    }
    envelope
        .data
        .iter()
        .map(|row| super::trade_of(row, instrument.clone(), received))
        .collect()
}

/// A trade's first id (that of its first fill).
fn first_id(t: &Trade) -> u64 {
    t.id_span().map_or(0, |(first, _)| first)
}

/// A trade's own id (that of its last fill).
fn last_id(t: &Trade) -> u64 {
    t.id_span().map_or(0, |(_, last)| last)
}

impl OkxRest {
    /// The trades of one `history-trades` request (`type` 1 by id, 2 by
    /// time), between exclusive bounds, in the order sent.
    async fn trades_between(
        &self,
        instrument: &Instrument,
        by: u8,
        (before, after): (i64, i64),
        limit: u32,
    ) -> Result<Vec<Trade>, HistoryError> {
        let path = format!(
            "/api/v5/market/history-trades?instId={}&type={by}&after={after}&before={before}&limit={limit}",
            EX.native_symbol(instrument),
        );
        get_read(&self.client, &path, limited, |body| {
            trades_from(body, instrument, Ts::now())
        })
        .await
    }

    /// The trades with ids in `[from, to)`, oldest first (at most
    /// [`MAX_TRADES`] ids).
    async fn id_window(
        &self,
        instrument: &Instrument,
        from: u64,
        to: u64,
    ) -> Result<Vec<Trade>, HistoryError> {
        let bound = |id: u64| i64::try_from(id).unwrap_or(i64::MAX);
        let limit = u32::try_from(to.saturating_sub(from))
            .unwrap_or(MAX_TRADES)
            .clamp(1, MAX_TRADES);
        let mut trades = self
            .trades_between(
                instrument,
                1,
                (bound(from).saturating_sub(1), bound(to)),
                limit,
            )
            .await?;
        trades.retain(|t| (from..to).contains(&last_id(t)));
        trades.sort_by_key(last_id);
        trades.dedup_by_key(|t| last_id(t));
        Ok(trades)
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    code: &'a str,
    #[serde(borrow, default)]
    msg: &'a str,
    #[serde(borrow, default)]
    data: Vec<Vec<&'a str>>,
}

/// OKX's `bar` for `interval`; from 6 hours up, the UTC-aligned variant
/// (the plain ones align to Hong Kong time).
fn bar(interval: Interval) -> Option<&'static str> {
    Some(match interval {
        Interval::M1 => "1m",
        Interval::M3 => "3m",
        Interval::M5 => "5m",
        Interval::M15 => "15m",
        Interval::M30 => "30m",
        Interval::H1 => "1H",
        Interval::H2 => "2H",
        Interval::H4 => "4H",
        Interval::H6 => "6Hutc",
        Interval::H12 => "12Hutc",
        Interval::D1 => "1Dutc",
        _ => return None,
    })
}

/// Reads a candles answer, oldest first; OKX's refusals as
/// [`ParseError::Venue`] (`code 50011: ...`).
fn candles_from(
    body: &str,
    instrument: &Instrument,
    interval: Interval,
    now: Ts,
) -> Result<Vec<Candle>, ParseError> {
    let envelope: Envelope<'_> = serde_json::from_str(body).map_err(json(EX))?;
    if envelope.code != "0" {
        return Err(ParseError::Venue {
            exchange: EX,
            message: format!("code {}: {}", envelope.code, envelope.msg),
        });
    }
    let mut out = Vec::with_capacity(envelope.data.len());
    for row in &envelope.data {
        let bad = || ParseError::BadField {
            exchange: EX,
            field: "candle row",
            value: row.join(",").chars().take(120).collect(),
        };
        let [
            ts,
            open,
            high,
            low,
            close,
            volume,
            _vol_ccy,
            quote_volume,
            confirm,
        ] = row[..]
        else {
            return Err(bad());
        };
        let ms: i64 = ts.parse().map_err(|_| bad())?;
        let mut candle = VenueCandle {
            open_time: Ts::from_millis(ms),
            open,
            high,
            low,
            close,
            volume,
            quote_volume: Some(quote_volume),
            trades: None,
        }
        .candle(EX, instrument, interval, now)?;
        if confirm == "0" {
            candle.state = ck_model::CandleState::Provisional;
        }
        out.push(candle);
    }
    out.sort_by_key(|c| c.open_time);
    Ok(out)
}

#[async_trait::async_trait]
impl History for OkxRest {
    fn client(&self) -> &RestClient {
        &self.client
    }

    fn page_size(&self) -> u32 {
        MAX_CANDLES
    }

    async fn trades_from_id(
        &self,
        instrument: &Instrument,
        from_id: u64,
        limit: u32,
    ) -> Result<Vec<Trade>, HistoryError> {
        // Windows of `limit` ids until `limit` trades: one window when
        // every row is one fill; more where rows aggregate fills (so that
        // a short answer still means the end), until a window is empty.
        let limit = limit.clamp(1, MAX_TRADES);
        let mut trades = Vec::new();
        let mut from = from_id;
        while trades.len() < limit as usize {
            let to = from.saturating_add(u64::from(limit));
            let window = self.id_window(instrument, from, to).await?;
            if window.is_empty() {
                break;
            }
            trades.extend(window);
            if to == u64::MAX {
                break;
            }
            from = to;
        }
        trades.truncate(limit as usize);
        Ok(trades)
    }

    async fn first_trade_id_at(
        &self,
        instrument: &Instrument,
        at: Ts,
    ) -> Result<Option<u64>, HistoryError> {
        // Rows carry ms: a trade at `ms` is at or after `at` from this ms on.
        let mut start = at.0.div_euclid(1_000_000) + i64::from(at.0.rem_euclid(1_000_000) != 0);
        let mut width = FIRST_WINDOW_MS;
        loop {
            let now_ms = Ts::now().as_millis();
            if start > now_ms {
                return Ok(None);
            }
            let end = start.saturating_add(width);
            let rows = self
                .trades_between(instrument, 2, (start - 1, end), MAX_TRADES)
                .await?;
            let first = rows
                .iter()
                .filter(|t| t.ts_exchange >= at)
                .map(first_id)
                .min();
            if rows.len() < MAX_TRADES as usize {
                // The whole window: its lowest id is the first at `at`.
                match first {
                    Some(id) => return Ok(Some(id)),
                    None if end > now_ms => return Ok(None),
                    None => {
                        start = end;
                        width = width.saturating_mul(4);
                    }
                }
            } else if width > 1 {
                width /= 2;
            } else {
                // A page of trades in one ms: walk down by id from its lowest.
                let Some(mut first) = first else {
                    return Ok(None);
                };
                loop {
                    let below = self
                        .id_window(
                            instrument,
                            first.saturating_sub(u64::from(MAX_TRADES)),
                            first,
                        )
                        .await?;
                    match below
                        .iter()
                        .filter(|t| t.ts_exchange >= at)
                        .map(first_id)
                        .min()
                    {
                        Some(id) if id < first => first = id,
                        _ => return Ok(Some(first)),
                    }
                }
            }
        }
    }

    async fn candles(
        &self,
        instrument: &Instrument,
        interval: Interval,
        start: Ts,
        limit: u32,
    ) -> Result<CandlePage, HistoryError> {
        let bar = bar(interval)
            .ok_or_else(|| no_such_interval(EX, interval, "1m 3m 5m 15m 30m 1h 2h 4h 6h 12h 1d"))?;
        let limit = limit.clamp(1, MAX_CANDLES);
        let end = window_end(interval, start, limit);
        let path = format!(
            "/api/v5/market/history-candles?instId={}&bar={bar}&after={}&before={}&limit={limit}",
            EX.native_symbol(instrument),
            end.as_millis(),
            start.as_millis() - 1
        );
        crate::history::candle_window(&self.client, &path, (start, end), limited, |body, now| {
            candles_from(body, instrument, interval, now)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candle_rows_come_oldest_first_with_the_quote_volume() {
        // The documented row: [ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm].
        let body = r#"{"code":"0","msg":"","data":[["1597026443085","8533.02","8553.74","8527.17","8548.26","45247","529.5858061","5529.5858061","0"],["1597026383085","8533.02","8553.74","8527.17","8548.26","45247","529.5858061","5529.5858061","1"]]}"#;
        let i = Instrument::new("BTC", "USDT");
        let c = candles_from(body, &i, Interval::M1, Ts::from_secs(2_000_000_000)).expect("rows");
        assert_eq!(c[0].open_time, Ts::from_millis(1_597_026_383_085));
        assert_eq!(
            [
                &c[0].open,
                &c[0].high,
                &c[0].low,
                &c[0].close,
                &c[0].volume,
                &c[0].quote_volume
            ]
            .map(ToString::to_string),
            [
                "8533.02",
                "8553.74",
                "8527.17",
                "8548.26",
                "45247",
                "5529.5858061"
            ]
        );
        assert_eq!(c[0].state, ck_model::CandleState::Closed);
        assert_eq!(c[1].state, ck_model::CandleState::Provisional, "confirm 0");
        let refused = candles_from(
            r#"{"code":"50011","msg":"Too Many Requests","data":[]}"#,
            &i,
            Interval::M1,
            Ts(0),
        )
        .expect_err("refused");
        assert!(refused.to_string().contains("code 50011"), "{refused}");
        assert!(
            candles_from(
                r#"{"code":"0","msg":"","data":[["1","2"]]}"#,
                &i,
                Interval::M1,
                Ts(0)
            )
            .is_err()
        );
        assert_eq!(bar(Interval::D1), Some("1Dutc"));
    }

    #[test]
    fn trade_rows_read_like_the_channel_with_counts() {
        let body = r#"{"code":"0","msg":"","data":[{"instId":"BTC-USDT","side":"sell","sz":"0.5","px":"29963.2","tradeId":"242720722","ts":"1654161646974","count":"2"},{"instId":"BTC-USDT","side":"buy","sz":"0.00001","px":"29963.1","tradeId":"242720720","ts":"1654161646970"}]}"#;
        let i = Instrument::new("BTC", "USDT");
        let t = trades_from(body, &i, Ts(5)).expect("rows");
        assert_eq!(t.len(), 2);
        assert_eq!(
            (first_id(&t[0]), last_id(&t[0]), t[0].fills, t[0].side),
            (242_720_721, 242_720_722, 2, ck_model::Side::Sell)
        );
        assert_eq!(
            (first_id(&t[1]), t[1].ts_exchange),
            (242_720_720, Ts::from_millis(1_654_161_646_970))
        );
        let refused = trades_from(
            r#"{"code":"50011","msg":"Too Many Requests","data":[]}"#,
            &i,
            Ts(0),
        )
        .expect_err("refused");
        assert!(refused.to_string().contains("code 50011"), "{refused}");
        assert!(limited("code 50011: Too Many Requests"));
        assert!(
            trades_from(
                r#"{"code":"0","data":[{"instId":"BTC-USDT","tradeId":"1"}]}"#,
                &i,
                Ts(0)
            )
            .is_err(),
            "a row without a price"
        );
    }
}
