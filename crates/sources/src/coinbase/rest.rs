//! Coinbase Advanced Trade public REST candles:
//! `GET /api/v3/brokerage/market/products/{id}/candles?start=<s>&end=<s>&granularity=ONE_MINUTE`
//! (UNIX seconds; both ends bucket starts), answered as
//! `{"candles":[{"start":"<s>","low":..,"high":..,"open":..,"close":..,"volume":..}]}`,
//! newest first, about 350 at most per request (unverified; this asks for
//! 300), none for intervals without trades. Open, high, low, close and
//! volume only.
//!
//! Trades: `GET /api/v3/brokerage/market/products/{id}/ticker?limit=&start=<s>&end=<s>`,
//! `{"trades":[{"trade_id":"…","product_id":"BTC-USD","price":"…","size":"…","time":"…","side":"BUY"|"SELL"}],"best_bid":…,"best_ask":…}`.
//! Which trades a full window returns (oldest or newest), and whether its
//! ends are inclusive, are unverified, so this history relies on neither:
//! it asks for windows of whole seconds with a second of overlap on each
//! side and keeps only the window's own trades, and a window that comes
//! back full (as many trades as asked for) is halved and asked again, so
//! every window it keeps is complete. Empty windows double, up to a day, so
//! a quiet stretch is crossed in a few requests. `side` is read as the
//! WebSocket's: the maker's (unverified for REST).

use ck_model::{Candle, Exchange, Instrument, Interval, Side, Trade, TradeId, Ts};
use serde::Deserialize;

use crate::history::{
    CandlePage, History, HistoryError, VenueCandle, no_such_interval, window_end,
};
use crate::parse::{ParseError, json};
use crate::rest::RestClient;

const EX: Exchange = Exchange::Coinbase;

/// The public REST root.
pub const DEFAULT_REST_URL: &str = "https://api.coinbase.com";

/// Candles per request, at most.
const MAX_CANDLES: u32 = 300;

/// Trades asked for per window; a window returning this many is too full.
const WINDOW_TRADES: u32 = 1_000;

/// The first window of a trade page, and the longest.
const FIRST_WINDOW: i64 = 60 * ck_model::NANOS_PER_SEC;
const LONGEST_WINDOW: i64 = 86_400 * ck_model::NANOS_PER_SEC;

/// Coinbase Advanced Trade history (candles) over one [`RestClient`].
#[derive(Debug)]
pub struct CoinbaseRest {
    client: std::sync::Arc<RestClient>,
}

impl CoinbaseRest {
    /// History over `client` (whose base URL is the REST root).
    #[must_use]
    pub fn new(client: std::sync::Arc<RestClient>) -> CoinbaseRest {
        CoinbaseRest { client }
    }
}

#[derive(Deserialize)]
struct Answer<'a> {
    #[serde(borrow)]
    candles: Vec<Row<'a>>,
}

#[derive(Deserialize)]
struct Row<'a> {
    start: &'a str,
    low: &'a str,
    high: &'a str,
    open: &'a str,
    close: &'a str,
    volume: &'a str,
}

/// The `granularity` name of `interval`, where Coinbase has it.
fn granularity(interval: Interval) -> Option<&'static str> {
    Some(match interval {
        Interval::M1 => "ONE_MINUTE",
        Interval::M5 => "FIVE_MINUTE",
        Interval::M15 => "FIFTEEN_MINUTE",
        Interval::M30 => "THIRTY_MINUTE",
        Interval::H1 => "ONE_HOUR",
        Interval::H2 => "TWO_HOUR",
        Interval::H6 => "SIX_HOUR",
        Interval::D1 => "ONE_DAY",
        _ => return None,
    })
}

/// Reads a candles answer, oldest first; an error body (no `candles`) as
/// [`ParseError::Venue`].
fn candles_from(
    body: &str,
    instrument: &Instrument,
    interval: Interval,
    now: Ts,
) -> Result<Vec<Candle>, ParseError> {
    let answer: Answer<'_> = match serde_json::from_str(body) {
        Ok(a) => a,
        Err(e) => {
            return match serde_json::from_str::<serde_json::Value>(body) {
                Ok(v) if v.get("candles").is_none() => Err(ParseError::Venue {
                    exchange: EX,
                    message: body.chars().take(200).collect(),
                }),
                _ => Err(json(EX)(e)),
            };
        }
    };
    let mut out = answer
        .candles
        .iter()
        .map(|r| {
            let secs: i64 = r.start.parse().map_err(|_| ParseError::BadField {
                exchange: EX,
                field: "candle start",
                value: r.start.to_owned(),
            })?;
            VenueCandle {
                open_time: Ts::from_secs(secs),
                open: r.open,
                high: r.high,
                low: r.low,
                close: r.close,
                volume: r.volume,
                quote_volume: None,
                trades: None,
            }
            .candle(EX, instrument, interval, now)
        })
        .collect::<Result<Vec<Candle>, ParseError>>()?;
    out.sort_by_key(|c| c.open_time);
    Ok(out)
}

#[derive(Deserialize)]
struct TickerAnswer<'a> {
    #[serde(borrow)]
    trades: Vec<RestTrade<'a>>,
}

#[derive(Deserialize)]
struct RestTrade<'a> {
    trade_id: &'a str,
    price: &'a str,
    size: &'a str,
    time: &'a str,
    /// The maker's side, as on the WebSocket.
    side: &'a str,
}

/// Reads a `ticker` answer's trades (in any order); an error body as
/// [`ParseError::Venue`].
fn trades_from(
    body: &str,
    instrument: &Instrument,
    received: Ts,
) -> Result<Vec<Trade>, ParseError> {
    let answer: TickerAnswer<'_> = serde_json::from_str(body).map_err(|e| {
        match serde_json::from_str::<serde_json::Value>(body) {
            Ok(v) if v.get("trades").is_none() => ParseError::Venue {
                exchange: EX,
                message: body.chars().take(200).collect(),
            },
            _ => json(EX)(e),
        }
    })?;
    let bad = |field: &'static str, value: &str| ParseError::BadField {
        exchange: EX,
        field,
        value: value.to_owned(),
    };
    answer
        .trades
        .iter()
        .map(|t| {
            let maker = Side::parse(t.side).ok_or_else(|| bad("side", t.side))?;
            Ok(Trade {
                exchange: EX,
                instrument: instrument.clone(),
                trade_id: TradeId::Str(t.trade_id.into()),
                price: crate::parse::decimal(EX, "price", t.price)?,
                size: crate::parse::decimal(EX, "size", t.size)?,
                side: maker.opposite(),
                ts_exchange: Ts::parse(t.time).map_err(|_| bad("time", t.time))?,
                ts_received: received,
                fills: 1,
            })
        })
        .collect()
}

impl CoinbaseRest {
    /// The trades of `[start, end)` (whole seconds), asked for with a
    /// second of overlap on each side; `None` when the answer is full, so
    /// that the window may hold more.
    async fn window(
        &self,
        instrument: &Instrument,
        start: Ts,
        end: Ts,
    ) -> Result<Option<Vec<Trade>>, HistoryError> {
        let secs = |t: Ts| t.0.div_euclid(ck_model::NANOS_PER_SEC);
        let path = format!(
            "/api/v3/brokerage/market/products/{}/ticker?limit={WINDOW_TRADES}&start={}&end={}",
            EX.native_symbol(instrument),
            secs(start) - 1,
            secs(end) + 1
        );
        let mut trades = crate::history::get_read(
            &self.client,
            &path,
            |_| false,
            |body| trades_from(body, instrument, Ts::now()),
        )
        .await?;
        if trades.len() >= WINDOW_TRADES as usize {
            return Ok(None);
        }
        trades.retain(|t| t.ts_exchange >= start && t.ts_exchange < end);
        Ok(Some(trades))
    }
}

#[async_trait::async_trait]
impl History for CoinbaseRest {
    fn client(&self) -> &RestClient {
        &self.client
    }

    /// Trades per page (a candle request caps itself at 300).
    fn page_size(&self) -> u32 {
        WINDOW_TRADES
    }

    fn by_time(&self) -> bool {
        true
    }

    /// Whole windows from `from` until `limit` trades are in hand or the
    /// windows reach the present (see the module's notes).
    async fn trades_from_time(
        &self,
        instrument: &Instrument,
        from: Ts,
        limit: u32,
    ) -> Result<Vec<Trade>, HistoryError> {
        let second = ck_model::NANOS_PER_SEC;
        let now = Ts::now();
        let mut out: Vec<Trade> = Vec::new();
        // Windows start on whole seconds; trades before `from` are dropped.
        let mut start = Ts(from.0.div_euclid(second) * second);
        let mut span = FIRST_WINDOW;
        // Trades at `from` itself do not count: the caller has seen them
        // when it pages on from its last page's last instant.
        let mut after_from = 0usize;
        while after_from < limit as usize && start <= now {
            let end = Ts(start.0.saturating_add(span));
            match self.window(instrument, start, end).await? {
                None if span > second => span = (span / 2 / second).max(1) * second,
                None => {
                    return Err(HistoryError::Unsupported(format!(
                        "more than {WINDOW_TRADES} {instrument} trades in the second at {start}: Coinbase Advanced's windows cannot split it"
                    )));
                }
                Some(trades) => {
                    if trades.is_empty() {
                        span = (span * 2).min(LONGEST_WINDOW);
                    }
                    after_from += trades.iter().filter(|t| t.ts_exchange > from).count();
                    out.extend(trades.into_iter().filter(|t| t.ts_exchange >= from));
                    start = end;
                }
            }
        }
        out.sort_by(|a, b| (a.ts_exchange, &a.trade_id).cmp(&(b.ts_exchange, &b.trade_id)));
        // Cut after `limit` trades past `from`, but never inside an
        // instant: the windows hold every trade of it, and a page that ends
        // inside a burst of trades sharing one time could not page past it.
        let n = out.partition_point(|t| t.ts_exchange <= from) + limit as usize;
        if let (Some(cut), Some(before)) = (out.get(n), n.checked_sub(1).and_then(|i| out.get(i))) {
            let keep = if before.ts_exchange == cut.ts_exchange {
                out.partition_point(|t| t.ts_exchange <= cut.ts_exchange)
            } else {
                n
            };
            out.truncate(keep);
        }
        Ok(out)
    }

    async fn candles(
        &self,
        instrument: &Instrument,
        interval: Interval,
        start: Ts,
        limit: u32,
    ) -> Result<CandlePage, HistoryError> {
        let granularity = granularity(interval)
            .ok_or_else(|| no_such_interval(EX, interval, "1m 5m 15m 30m 1h 2h 6h 1d"))?;
        let limit = limit.clamp(1, MAX_CANDLES);
        let end = window_end(interval, start, limit);
        // Both ends are bucket starts: the window's last one ends it.
        let last_open = Ts(end.0 - interval.fixed_nanos().unwrap_or(0));
        let path = format!(
            "/api/v3/brokerage/market/products/{}/candles?start={}&end={}&granularity={granularity}",
            EX.native_symbol(instrument),
            start.0.div_euclid(ck_model::NANOS_PER_SEC),
            last_open.0.div_euclid(ck_model::NANOS_PER_SEC)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candles_come_oldest_first_and_errors_are_reported() {
        // The documented answer shape (docs.cdp.coinbase.com, Get Public Product Candles).
        let body = r#"{"candles":[{"start":"1712192460","low":"65000.1","high":"65100","open":"65010","close":"65090.5","volume":"1.5"},{"start":"1712192400","low":"64900","high":"65020","open":"64950","close":"65010","volume":"0.25"}]}"#;
        let i = Instrument::new("BTC", "USD");
        let c = candles_from(body, &i, Interval::M1, Ts::from_secs(1_712_192_500)).expect("rows");
        assert_eq!(c[0].open_time, Ts::from_secs(1_712_192_400));
        assert_eq!(
            [&c[1].open, &c[1].high, &c[1].low, &c[1].close, &c[1].volume].map(ToString::to_string),
            ["65010", "65100", "65000.1", "65090.5", "1.5"]
        );
        assert_eq!(c[1].state, ck_model::CandleState::Provisional);
        let err = candles_from(
            r#"{"error":"INVALID_ARGUMENT","message":"bad granularity"}"#,
            &i,
            Interval::M1,
            Ts(0),
        )
        .expect_err("refused");
        assert!(err.to_string().contains("bad granularity"), "{err}");
        assert_eq!(granularity(Interval::H4), None);
    }

    #[test]
    fn ticker_trades_read_the_maker_side_as_the_websocket_does() {
        // The documented answer shape (Get Public Market Trades).
        let body = r#"{"trades":[{"trade_id":"34b080bf","product_id":"BTC-USD","price":"140.91","size":"4","time":"2021-05-31T09:59:59.123Z","side":"BUY","bid":"","ask":"","exchange":""}],"best_bid":"291.13","best_ask":"292.40"}"#;
        let i = Instrument::new("BTC", "USD");
        let t = trades_from(body, &i, Ts(0)).expect("trades");
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].trade_id, TradeId::Str("34b080bf".into()));
        assert_eq!(t[0].side, Side::Sell, "the maker bought: the taker sold");
        assert_eq!(
            (t[0].price.to_string(), t[0].size.to_string()),
            ("140.91".into(), "4".into())
        );
        assert_eq!(t[0].ts_exchange.to_string(), "2021-05-31T09:59:59.123Z");
        let err = trades_from(
            r#"{"error":"NOT_FOUND","message":"product not found"}"#,
            &i,
            Ts(0),
        )
        .expect_err("refused");
        assert!(err.to_string().contains("product not found"), "{err}");
    }
}
