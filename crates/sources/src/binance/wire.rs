//! Binance spot wire types, exactly as the exchange sends them.

use serde::Deserialize;

use crate::flat_json::{Scalar, for_each_field};
use serde_json::value::RawValue;

/// A combined-stream envelope.
///
/// `{"stream":"btcusdt@trade","data":{"e":"trade",...}}`
#[derive(Debug, Deserialize)]
pub(crate) struct BinanceCombined<'a> {
    #[serde(borrow)]
    pub(crate) stream: Option<&'a str>,
    #[serde(borrow)]
    pub(crate) data: Option<&'a RawValue>,
    /// Raw streams have the event type here instead.
    #[serde(borrow, default)]
    pub(crate) e: Option<&'a str>,
    /// Error replies: `{"code":2,"msg":"Invalid request","id":1}`.
    pub(crate) code: Option<i64>,
    #[serde(borrow, default)]
    pub(crate) msg: Option<std::borrow::Cow<'a, str>>,
}

/// `<symbol>@trade`:
/// `{"e":"trade","E":1723161255343,"s":"BTCUSDT","t":3735683259,"p":"61837.63000000","q":"0.02000000","T":1723161255342,"m":true,"M":true}`
#[derive(Debug, Deserialize)]
pub(crate) struct BinanceTrade<'a> {
    #[serde(rename = "s")]
    pub(crate) symbol: &'a str,
    #[serde(rename = "t")]
    pub(crate) id: u64,
    #[serde(rename = "p")]
    pub(crate) price: &'a str,
    #[serde(rename = "q")]
    pub(crate) qty: &'a str,
    #[serde(rename = "T")]
    pub(crate) time_ms: i64,
    /// Buyer is the maker, so the taker sold.
    #[serde(rename = "m")]
    pub(crate) buyer_is_maker: bool,
}

/// `<symbol>@aggTrade`:
/// `{"e":"aggTrade","E":1633998523963,"s":"NKNUSDT","a":15683430,"p":"0.35280000","q":"58.00000000","f":19862790,"l":19862790,"T":1633998523963,"m":false,"M":true}`
#[derive(Debug, Deserialize)]
pub(crate) struct BinanceAggTrade<'a> {
    #[serde(rename = "s")]
    pub(crate) symbol: &'a str,
    #[serde(rename = "a")]
    pub(crate) id: u64,
    #[serde(rename = "p")]
    pub(crate) price: &'a str,
    #[serde(rename = "q")]
    pub(crate) qty: &'a str,
    #[serde(rename = "f")]
    pub(crate) first_trade: u64,
    #[serde(rename = "l")]
    pub(crate) last_trade: u64,
    #[serde(rename = "T")]
    pub(crate) time_ms: i64,
    #[serde(rename = "m")]
    pub(crate) buyer_is_maker: bool,
}

/// `<symbol>@bookTicker` (spot sends no time):
/// `{"u":499869768,"s":"NKNUSDT","b":"0.35210000","B":"672.00000000","a":"0.35260000","A":"3199.00000000"}`
#[derive(Debug, Deserialize)]
pub(crate) struct BinanceBookTicker<'a> {
    #[serde(rename = "s")]
    pub(crate) symbol: &'a str,
    #[serde(rename = "b")]
    pub(crate) bid: &'a str,
    #[serde(rename = "B")]
    pub(crate) bid_qty: &'a str,
    #[serde(rename = "a")]
    pub(crate) ask: &'a str,
    #[serde(rename = "A")]
    pub(crate) ask_qty: &'a str,
    /// Present on futures and newer spot payloads.
    #[serde(rename = "T", default)]
    pub(crate) time_ms: Option<i64>,
}

/// `<symbol>@kline_<interval>`:
/// `{"e":"kline","E":1633998534486,"s":"LRCBTC","k":{"t":1633998480000,"T":1633998539999,"s":"LRCBTC","i":"1m","f":12368013,"L":12368013,"o":"0.00000638","c":"0.00000638","h":"0.00000638","l":"0.00000638","v":"177.00000000","n":1,"x":false,"q":"0.00112926","V":"177.00000000","Q":"0.00112926","B":"0"}}`
#[derive(Debug, Deserialize)]
pub struct BinanceKlineEvent<'a> {
    /// Event time, ms.
    #[serde(rename = "E")]
    pub event_time_ms: i64,
    /// The kline.
    #[serde(rename = "k", borrow)]
    pub kline: BinanceKline<'a>,
}

/// The kline body of [`BinanceKlineEvent`].
#[derive(Debug, Deserialize)]
#[expect(
    missing_docs,
    reason = "fields are the exchange's, named in the serde renames"
)]
pub struct BinanceKline<'a> {
    #[serde(rename = "t")]
    pub open_time_ms: i64,
    #[serde(rename = "s")]
    pub symbol: &'a str,
    #[serde(rename = "i")]
    pub interval: &'a str,
    #[serde(rename = "f")]
    pub first_trade: i64,
    #[serde(rename = "L")]
    pub last_trade: i64,
    #[serde(rename = "o")]
    pub open: &'a str,
    #[serde(rename = "h")]
    pub high: &'a str,
    #[serde(rename = "l")]
    pub low: &'a str,
    #[serde(rename = "c")]
    pub close: &'a str,
    #[serde(rename = "v")]
    pub volume: &'a str,
    #[serde(rename = "q")]
    pub quote_volume: &'a str,
    #[serde(rename = "V")]
    pub taker_buy_volume: &'a str,
    #[serde(rename = "n")]
    pub trades: u64,
    #[serde(rename = "x")]
    pub closed: bool,
}

/// `GET /api/v3/ticker/bookTicker?symbol=`:
/// `{"symbol":"BTCUSDT","bidPrice":"61837.62000000","bidQty":"1.2","askPrice":"61837.63000000","askQty":"0.5"}`
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BinanceRestBookTicker<'a> {
    pub(crate) symbol: &'a str,
    pub(crate) bid_price: &'a str,
    pub(crate) bid_qty: &'a str,
    pub(crate) ask_price: &'a str,
    pub(crate) ask_qty: &'a str,
}

/// `GET /api/v3/exchangeInfo`, the parts we read.
#[derive(Debug, Deserialize)]
pub(crate) struct BinanceExchangeInfo {
    pub(crate) symbols: Vec<BinanceSymbol>,
}

/// One listed symbol.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BinanceSymbol {
    pub(crate) symbol: String,
    pub(crate) status: String,
    pub(crate) base_asset: String,
    pub(crate) quote_asset: String,
}

/// Reads a flat payload with [`crate::flat_json`], calling `set` for each
/// field; `None` if the payload is not flat or a known field has the wrong type.
fn read_flat<'a>(
    data: &'a str,
    mut set: impl FnMut(&'a str, Scalar<'a>) -> Option<()>,
) -> Option<()> {
    let mut ok = true;
    for_each_field(data, |k, v| ok &= set(k, v).is_some())?;
    ok.then_some(())
}

impl<'a> BinanceTrade<'a> {
    /// The fast reader; `None` means: use serde.
    pub(crate) fn from_flat(data: &'a str) -> Option<BinanceTrade<'a>> {
        let (mut symbol, mut id, mut price, mut qty, mut time, mut maker) =
            (None, None, None, None, None, None);
        read_flat(data, |k, v| {
            match k {
                "s" => symbol = Some(v.str()?),
                "t" => id = Some(v.u64()?),
                "p" => price = Some(v.str()?),
                "q" => qty = Some(v.str()?),
                "T" => time = Some(v.i64()?),
                "m" => maker = Some(v.bool()?),
                _ => {}
            }
            Some(())
        })?;
        Some(BinanceTrade {
            symbol: symbol?,
            id: id?,
            price: price?,
            qty: qty?,
            time_ms: time?,
            buyer_is_maker: maker?,
        })
    }
}

impl<'a> BinanceAggTrade<'a> {
    /// The fast reader; `None` means: use serde.
    pub(crate) fn from_flat(data: &'a str) -> Option<BinanceAggTrade<'a>> {
        let (mut symbol, mut id, mut price, mut qty, mut first, mut last, mut time, mut maker) =
            (None, None, None, None, None, None, None, None);
        read_flat(data, |k, v| {
            match k {
                "s" => symbol = Some(v.str()?),
                "a" => id = Some(v.u64()?),
                "p" => price = Some(v.str()?),
                "q" => qty = Some(v.str()?),
                "f" => first = Some(v.u64()?),
                "l" => last = Some(v.u64()?),
                "T" => time = Some(v.i64()?),
                "m" => maker = Some(v.bool()?),
                _ => {}
            }
            Some(())
        })?;
        Some(BinanceAggTrade {
            symbol: symbol?,
            id: id?,
            price: price?,
            qty: qty?,
            first_trade: first?,
            last_trade: last?,
            time_ms: time?,
            buyer_is_maker: maker?,
        })
    }
}
