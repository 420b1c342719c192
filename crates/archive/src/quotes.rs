//! One day of one instrument's best bids and asks as a Parquet file.
//!
//! ```text
//! message candlekeep_quotes {
//!   REQUIRED INT64 ts_exchange (TIMESTAMP(NANOS,true));   -- delta-encoded
//!   REQUIRED INT64 ts_received (TIMESTAMP(NANOS,true));   -- delta-encoded
//!   REQUIRED INT64 bid (DECIMAL(18,P));                   -- delta-encoded
//!   REQUIRED INT64 ask (DECIMAL(18,P));                   -- delta-encoded
//!   OPTIONAL INT64 bid_size (DECIMAL(18,S));              -- dictionary
//!   OPTIONAL INT64 ask_size (DECIMAL(18,S));              -- dictionary
//!   OPTIONAL INT64 last (DECIMAL(18,P));                  -- delta-encoded
//! }
//! ```
//!
//! Decimals widen to 16-byte `DECIMAL(38, s)` where a value needs it, as in
//! [`crate::trades`]. Rows are sorted by exchange time, then receive time.

use std::path::Path;

use ck_model::{Exchange, Instrument, Quote, Ts};

use crate::Error;
use crate::columns::{Column, Enc, Written, read_file, write_file};

/// A day of quotes read back.
#[derive(Debug, Clone, PartialEq)]
pub struct QuoteDay {
    /// The venue.
    pub exchange: Exchange,
    /// The instrument.
    pub instrument: Instrument,
    /// The quotes, by exchange time then receive time.
    pub quotes: Vec<Quote>,
}

/// Writes `quotes` (one exchange and instrument; any order) to `path`,
/// sorted, and fsyncs it.
///
/// # Errors
/// When the file cannot be written, or a value has no exact representation.
pub fn write_quotes(
    path: &Path,
    exchange: Exchange,
    instrument: &Instrument,
    quotes: &[Quote],
) -> Result<Written, Error> {
    let unrepresentable = |what: String| Error::Unrepresentable {
        path: path.to_owned(),
        what,
    };
    let mut rows: Vec<&Quote> = quotes.iter().collect();
    rows.sort_by_key(|q| (q.ts_exchange, q.ts_received));
    let decimals = |name, optional, enc, get: &dyn Fn(&Quote) -> Option<ck_model::Decimal>| {
        let values: Vec<_> = rows.iter().map(|q| get(q)).collect();
        Column::decimals(name, optional, enc, &values).map_err(unrepresentable)
    };
    let columns = [
        Column::times("ts_exchange", rows.iter().map(|q| q.ts_exchange.0)),
        Column::times("ts_received", rows.iter().map(|q| q.ts_received.0)),
        decimals("bid", false, Enc::Delta, &|q| Some(q.bid))?,
        decimals("ask", false, Enc::Delta, &|q| Some(q.ask))?,
        decimals("bid_size", true, Enc::Dictionary, &|q| q.bid_size)?,
        decimals("ask_size", true, Enc::Dictionary, &|q| q.ask_size)?,
        decimals("last", true, Enc::Delta, &|q| q.last)?,
    ];
    write_file(
        path,
        "candlekeep_quotes",
        &[
            ("candlekeep.kind", "quotes"),
            ("candlekeep.exchange", exchange.as_str()),
            ("candlekeep.instrument", instrument.as_str()),
        ],
        &columns,
    )
}

/// Reads a file [`write_quotes`] wrote.
///
/// # Errors
/// When the file cannot be read, or is not such a file.
pub fn read_quotes(path: &Path) -> Result<QuoteDay, Error> {
    let data = read_file(path, "quotes")?;
    let not = |why: String| Error::NotArchive {
        path: path.to_owned(),
        kind: "quotes",
        why,
    };
    let (exchange, instrument) = crate::trades::owner(&data).map_err(not)?;
    let ts_exchange = data.ints("ts_exchange").map_err(not)?;
    let ts_received = data.ints("ts_received").map_err(not)?;
    let [bid, ask, bid_size, ask_size, last] =
        ["bid", "ask", "bid_size", "ask_size", "last"].map(|name| data.decimals(name).map_err(not));
    let (bid, ask, bid_size, ask_size, last) = (bid?, ask?, bid_size?, ask_size?, last?);
    let mut quotes = Vec::with_capacity(data.rows);
    for i in 0..data.rows {
        let missing = || not(format!("row {i} misses a required value"));
        quotes.push(Quote {
            exchange,
            instrument: instrument.clone(),
            bid: bid[i].ok_or_else(missing)?,
            bid_size: bid_size[i],
            ask: ask[i].ok_or_else(missing)?,
            ask_size: ask_size[i],
            last: last[i],
            ts_exchange: Ts(ts_exchange[i].ok_or_else(missing)?),
            ts_received: Ts(ts_received[i].ok_or_else(missing)?),
        });
    }
    Ok(QuoteDay {
        exchange,
        instrument,
        quotes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_quotes_round_trip_exactly_missing_sizes_included() {
        let mut quotes: Vec<Quote> =
            ck_testkit::bench_data::recorded_quotes("hftbacktest/binance_spot_btcusdt_20240808.gz");
        assert!(quotes.len() > 1_000, "{} quotes", quotes.len());
        // Some venues send no sizes or no last price.
        quotes[1].bid_size = None;
        quotes[2].ask_size = None;
        quotes[3].last = Some(quotes[3].bid);
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("q.parquet");
        let first = &quotes[0];
        let written =
            write_quotes(&path, first.exchange, &first.instrument, &quotes).expect("written");
        let back = read_quotes(&path).expect("read");
        let mut sorted = quotes.clone();
        sorted.sort_by_key(|q| (q.ts_exchange, q.ts_received));
        assert_eq!(back.quotes, sorted);
        let per = written.bytes as f64 / quotes.len() as f64;
        println!(
            "{} quotes, {} bytes, {per:.2} B/quote",
            quotes.len(),
            written.bytes
        );
        assert!(per < 16.0, "{per:.2} bytes a quote");
    }
}
