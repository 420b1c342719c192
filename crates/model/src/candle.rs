//! Candles (OHLCV bars) and their lifecycle.

use crate::{Decimal, Exchange, Instrument, Interval, TradeId, Ts};

/// Where a candle is in its life.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CandleState {
    /// Its interval has not passed yet; it will change.
    Provisional,
    /// Its interval has passed (by the watermark or the timer).
    Closed,
    /// A late trade changed it after it closed.
    Revised,
}

impl CandleState {
    /// `provisional`, `closed` or `revised`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            CandleState::Provisional => "provisional",
            CandleState::Closed => "closed",
            CandleState::Revised => "revised",
        }
    }

    /// Parses the name written by [`CandleState::as_str`].
    #[must_use]
    pub fn parse(text: &str) -> Option<CandleState> {
        match text {
            "provisional" => Some(CandleState::Provisional),
            "closed" => Some(CandleState::Closed),
            "revised" => Some(CandleState::Revised),
            _ => None,
        }
    }
}

/// A field of a candle that can be compared with the exchange's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CandleField {
    /// Open.
    Open,
    /// High.
    High,
    /// Low.
    Low,
    /// Close.
    Close,
    /// Base volume.
    Volume,
    /// Quote volume.
    QuoteVolume,
    /// Base volume of taker buys.
    TakerBuyVolume,
    /// Number of trades.
    Trades,
}

impl CandleField {
    /// Every field.
    pub const ALL: [CandleField; 8] = [
        CandleField::Open,
        CandleField::High,
        CandleField::Low,
        CandleField::Close,
        CandleField::Volume,
        CandleField::QuoteVolume,
        CandleField::TakerBuyVolume,
        CandleField::Trades,
    ];

    /// Open, high, low, close and volume: what every venue publishes.
    pub const OHLCV: [CandleField; 5] = [
        CandleField::Open,
        CandleField::High,
        CandleField::Low,
        CandleField::Close,
        CandleField::Volume,
    ];

    /// The name the API and the CLI use.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            CandleField::Open => "open",
            CandleField::High => "high",
            CandleField::Low => "low",
            CandleField::Close => "close",
            CandleField::Volume => "volume",
            CandleField::QuoteVolume => "quote_volume",
            CandleField::TakerBuyVolume => "taker_buy_volume",
            CandleField::Trades => "trades",
        }
    }

    /// The field's value in `candle`, as text (decimals exact).
    #[must_use]
    pub fn value(self, candle: &Candle) -> FieldValue {
        match self {
            CandleField::Open => FieldValue::Decimal(candle.open),
            CandleField::High => FieldValue::Decimal(candle.high),
            CandleField::Low => FieldValue::Decimal(candle.low),
            CandleField::Close => FieldValue::Decimal(candle.close),
            CandleField::Volume => FieldValue::Decimal(candle.volume),
            CandleField::QuoteVolume => FieldValue::Decimal(candle.quote_volume),
            CandleField::TakerBuyVolume => FieldValue::Decimal(candle.taker_buy_volume),
            CandleField::Trades => FieldValue::Count(candle.trades),
        }
    }
}

/// One field's value, compared numerically (`1.50` equals `1.5`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValue {
    /// A price or volume.
    Decimal(Decimal),
    /// A count.
    Count(u64),
}

impl std::fmt::Display for FieldValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FieldValue::Decimal(d) => d.fmt(f),
            FieldValue::Count(n) => n.fmt(f),
        }
    }
}

/// What a candle stream does for an interval with no trades.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmptyIntervalPolicy {
    /// No candle (Coinbase, Bitfinex).
    Skip,
    /// A flat candle at the previous close with zero volume (Binance, Kraken).
    Flat,
}

/// One OHLCV candle.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Candle {
    /// The venue.
    pub exchange: Exchange,
    /// The normalized instrument.
    pub instrument: Instrument,
    /// The interval.
    pub interval: Interval,
    /// The start of the interval (inclusive).
    pub open_time: Ts,
    /// The first trade's price, in exchange order.
    pub open: Decimal,
    /// The highest price.
    pub high: Decimal,
    /// The lowest price.
    pub low: Decimal,
    /// The last trade's price, in exchange order.
    pub close: Decimal,
    /// Base volume, exact.
    pub volume: Decimal,
    /// Quote volume (sum of price times size), exact.
    pub quote_volume: Decimal,
    /// Volume-weighted average price, `quote_volume / volume`, rounded half-even
    /// to four digits past the price's scale. Equal to `close` for a flat candle.
    pub vwap: Decimal,
    /// Base volume of trades whose taker bought.
    pub taker_buy_volume: Decimal,
    /// Exchange fills in the interval.
    pub trades: u64,
    /// The first trade's id, in exchange order.
    pub first_trade_id: Option<TradeId>,
    /// The last trade's id, in exchange order.
    pub last_trade_id: Option<TradeId>,
    /// Provisional, closed or revised.
    pub state: CandleState,
}

impl Candle {
    /// The end of the interval (exclusive), which is the next open time.
    #[must_use]
    pub fn close_time(&self) -> Ts {
        self.interval.next_start(self.open_time)
    }
}

/// A candle as the CLI and the API print it: the fields users asked for, with
/// decimals as strings and times in RFC 3339. CSV output has these columns,
/// in this order.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CandleRecord {
    /// Start of the interval, RFC 3339.
    pub open_time: Ts,
    /// Open.
    pub open: Decimal,
    /// High.
    pub high: Decimal,
    /// Low.
    pub low: Decimal,
    /// Close.
    pub close: Decimal,
    /// Base volume.
    pub volume: Decimal,
    /// Quote volume.
    pub quote_volume: Decimal,
    /// Volume-weighted average price.
    pub vwap: Decimal,
    /// Base volume bought by takers.
    pub taker_buy_volume: Decimal,
    /// Number of exchange fills.
    pub trades: u64,
    /// First trade id.
    pub first_trade_id: Option<TradeId>,
    /// Last trade id.
    pub last_trade_id: Option<TradeId>,
    /// `provisional`, `closed` or `revised`.
    pub state: CandleState,
}

impl CandleRecord {
    /// The CSV header line: [`CandleRecord::COLUMNS`] joined by commas,
    /// ending in a line break.
    pub const CSV_HEADER: &'static [u8] = b"open_time,open,high,low,close,volume,quote_volume,\
vwap,taker_buy_volume,trades,first_trade_id,last_trade_id,state\n";

    /// The CSV columns, in order (the fields above).
    pub const COLUMNS: [&'static str; 13] = [
        "open_time",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "quote_volume",
        "vwap",
        "taker_buy_volume",
        "trades",
        "first_trade_id",
        "last_trade_id",
        "state",
    ];
}

impl Candle {
    /// Appends the JSON of this candle's [`CandleRecord`] to `out`, byte for
    /// byte what `serde_json` writes for it, without building the record:
    /// the hot path of large candle responses.
    pub fn append_record_json(&self, out: &mut Vec<u8>) {
        self.record_fields().append_json(out);
    }

    /// Appends the CSV row of this candle's [`CandleRecord`] (ending in
    /// `\n`) to `out`, byte for byte what the `csv` crate writes for it.
    pub fn append_record_csv(&self, out: &mut Vec<u8>) {
        self.record_fields().append_csv(out);
    }

    /// The fields of this candle's [`CandleRecord`], borrowed.
    #[must_use]
    pub fn record_fields(&self) -> RecordFields<'_, Decimal> {
        RecordFields {
            open_time: self.open_time,
            decimals: [
                &self.open,
                &self.high,
                &self.low,
                &self.close,
                &self.volume,
                &self.quote_volume,
                &self.vwap,
                &self.taker_buy_volume,
            ],
            trades: self.trades,
            first_trade_id: self.first_trade_id.as_ref(),
            last_trade_id: self.last_trade_id.as_ref(),
            state: self.state,
        }
    }
}

/// A decimal as a candle record writes it: a [`Decimal`], or the exact text
/// a [`Decimal`] wrote (as a store keeps it), copied as it is.
pub trait DecimalText {
    /// Appends the decimal's text.
    fn append_decimal(&self, out: &mut Vec<u8>);
}

impl DecimalText for Decimal {
    fn append_decimal(&self, out: &mut Vec<u8>) {
        self.append_to(out);
    }
}

impl DecimalText for str {
    fn append_decimal(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

/// Decimal text as bytes (checked by whoever read them).
impl DecimalText for [u8] {
    fn append_decimal(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
}

/// The fields of one [`CandleRecord`], borrowed, for writing its JSON
/// straight from a [`Candle`] or from a store's row: open, high, low,
/// close, volume, quote volume, VWAP and taker buy volume, in that order.
pub struct RecordFields<'a, D: DecimalText + ?Sized> {
    /// Start of the interval.
    pub open_time: Ts,
    /// The eight decimals, in [`CandleRecord::COLUMNS`] order.
    pub decimals: [&'a D; 8],
    /// Trade count.
    pub trades: u64,
    /// First trade id.
    pub first_trade_id: Option<&'a TradeId>,
    /// Last trade id.
    pub last_trade_id: Option<&'a TradeId>,
    /// The state.
    pub state: CandleState,
}

impl<D: DecimalText + ?Sized> RecordFields<'_, D> {
    /// Appends the record's JSON to `out`, byte for byte what `serde_json`
    /// writes for the [`CandleRecord`].
    pub fn append_json(&self, out: &mut Vec<u8>) {
        const KEYS: [&str; 8] = [
            ",\"open\":\"",
            ",\"high\":\"",
            ",\"low\":\"",
            ",\"close\":\"",
            ",\"volume\":\"",
            ",\"quote_volume\":\"",
            ",\"vwap\":\"",
            ",\"taker_buy_volume\":\"",
        ];
        out.extend_from_slice(b"{\"open_time\":\"");
        self.open_time.append_to(out);
        out.push(b'"');
        for (key, d) in KEYS.iter().zip(self.decimals) {
            out.extend_from_slice(key.as_bytes());
            d.append_decimal(out);
            out.push(b'"');
        }
        out.extend_from_slice(b",\"trades\":");
        out.extend_from_slice(self.trades.to_string().as_bytes());
        for (key, id) in [
            (",\"first_trade_id\":", self.first_trade_id),
            (",\"last_trade_id\":", self.last_trade_id),
        ] {
            out.extend_from_slice(key.as_bytes());
            match id {
                None => out.extend_from_slice(b"null"),
                Some(TradeId::Num(n)) => {
                    out.push(b'"');
                    out.extend_from_slice(n.to_string().as_bytes());
                    out.push(b'"');
                }
                Some(TradeId::Str(t)) => json_string(out, t),
            }
        }
        out.extend_from_slice(b",\"state\":\"");
        out.extend_from_slice(self.state.as_str().as_bytes());
        out.extend_from_slice(b"\"}");
    }
}

impl<D: DecimalText + ?Sized> RecordFields<'_, D> {
    /// Appends the record's CSV row, ending in `\n`, to `out`: byte for
    /// byte what the `csv` crate writes for the [`CandleRecord`] (in
    /// [`CandleRecord::COLUMNS`] order; an id is quoted only where it holds
    /// a comma, a quote or a line break; a missing id is empty).
    pub fn append_csv(&self, out: &mut Vec<u8>) {
        self.open_time.append_to(out);
        for d in self.decimals {
            out.push(b',');
            d.append_decimal(out);
        }
        out.push(b',');
        out.extend_from_slice(self.trades.to_string().as_bytes());
        for id in [self.first_trade_id, self.last_trade_id] {
            out.push(b',');
            match id {
                None => {}
                Some(TradeId::Num(n)) => out.extend_from_slice(n.to_string().as_bytes()),
                Some(TradeId::Str(t)) => csv_field(out, t.as_bytes()),
            }
        }
        out.push(b',');
        out.extend_from_slice(self.state.as_str().as_bytes());
        out.push(b'\n');
    }
}

/// Appends a CSV field, quoted where the `csv` crate quotes it (a comma, a
/// quote or a line break inside), its quotes doubled.
fn csv_field(out: &mut Vec<u8>, value: &[u8]) {
    if !value
        .iter()
        .any(|c| matches!(c, b',' | b'"' | b'\n' | b'\r'))
    {
        out.extend_from_slice(value);
        return;
    }
    out.push(b'"');
    for &c in value {
        if c == b'"' {
            out.push(b'"');
        }
        out.push(c);
    }
    out.push(b'"');
}

/// Appends `text` as a JSON string, escaped as `serde_json` escapes it.
fn json_string(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    for c in text.bytes() {
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            c if c < 0x20 => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(c >> 4)]);
                out.push(HEX[usize::from(c & 0xf)]);
            }
            c => out.push(c),
        }
    }
    out.push(b'"');
}

impl From<&Candle> for CandleRecord {
    fn from(c: &Candle) -> Self {
        CandleRecord {
            open_time: c.open_time,
            open: c.open,
            high: c.high,
            low: c.low,
            close: c.close,
            volume: c.volume,
            quote_volume: c.quote_volume,
            vwap: c.vwap,
            taker_buy_volume: c.taker_buy_volume,
            trades: c.trades,
            first_trade_id: c.first_trade_id.clone(),
            last_trade_id: c.last_trade_id.clone(),
            state: c.state,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candle(first: Option<TradeId>, last: Option<TradeId>, open_time: Ts) -> Candle {
        let d = |t: &str| Decimal::parse(t).expect("decimal");
        Candle {
            exchange: Exchange::Binance,
            instrument: Instrument::new("BTC", "USDT"),
            interval: Interval::M1,
            open_time,
            open: d("61234.01"),
            high: d("61300"),
            low: d("-0.00000001"),
            close: d("0.5"),
            volume: d("12.34500000"),
            quote_volume: d("755000.123456789012345678"),
            vwap: d("61200.1234"),
            taker_buy_volume: d("0"),
            trades: 18_446_744_073_709_551_615,
            first_trade_id: first,
            last_trade_id: last,
            state: CandleState::Revised,
        }
    }

    #[test]
    fn record_json_is_what_serde_writes() {
        for c in [
            candle(None, None, Ts::from_secs(1_704_067_200)),
            candle(
                Some(TradeId::Num(1)),
                Some(TradeId::Num(u64::MAX)),
                Ts(1_704_067_200_123_456_789),
            ),
            candle(
                Some(TradeId::Str("a\"b\\c\n\u{1}é".into())),
                Some(TradeId::Str("ff-00\t\u{7f}".into())),
                Ts(-1),
            ),
        ] {
            let mut fast = b"[".to_vec();
            c.append_record_json(&mut fast);
            let serde = serde_json::to_vec(&CandleRecord::from(&c)).expect("json");
            assert_eq!(
                String::from_utf8_lossy(&fast[1..]),
                String::from_utf8_lossy(&serde)
            );
        }
    }

    #[test]
    fn the_csv_header_is_the_columns() {
        assert_eq!(
            CandleRecord::CSV_HEADER,
            format!("{}\n", CandleRecord::COLUMNS.join(",")).as_bytes()
        );
    }

    #[test]
    fn record_csv_is_what_the_csv_crate_writes() {
        let ids = [
            (None, None),
            (Some(TradeId::Num(1)), Some(TradeId::Num(u64::MAX))),
            (
                Some(TradeId::Str("a,b".into())),
                Some(TradeId::Str("say \"hi\"\nthen\r\tgo \\ é 😀 \u{1}".into())),
            ),
            (Some(TradeId::Str("cr\ronly".into())), None),
        ];
        for (first, last) in ids {
            for state in [
                CandleState::Provisional,
                CandleState::Closed,
                CandleState::Revised,
            ] {
                let mut c = candle(first.clone(), last.clone(), Ts(-1_500_000_001));
                c.state = state;
                let mut fast = b"kept".to_vec();
                c.append_record_csv(&mut fast);
                let mut w = csv::WriterBuilder::new()
                    .has_headers(false)
                    .from_writer(b"kept".to_vec());
                w.serialize(CandleRecord::from(&c)).expect("row");
                let by_crate = w.into_inner().expect("csv");
                assert_eq!(
                    String::from_utf8_lossy(&fast),
                    String::from_utf8_lossy(&by_crate)
                );
            }
        }
    }
}
