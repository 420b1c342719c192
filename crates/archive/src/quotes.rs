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
//! Bid, ask and last share one scale, the sizes another. Decimals widen
//! to 16-byte `DECIMAL(38, s)` where a value needs it, as in
//! [`crate::trades`]. Rows are sorted by exchange time, then receive time.

use std::path::Path;

use ck_model::{Decimal, Exchange, Instrument, Quote, Ts};

use crate::Error;
use crate::columns::{Column, DecimalShape, Enc, Span, Written, read_file_span};

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

/// What a file of quotes must be able to hold: each decimal column's
/// shape, learnt from its quotes before it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct QuoteShape {
    exchange: Exchange,
    instrument: Instrument,
    prices: DecimalShape,
    sizes: DecimalShape,
}

impl QuoteShape {
    /// The shape of no quotes yet.
    #[must_use]
    pub fn new(exchange: Exchange, instrument: &Instrument) -> QuoteShape {
        QuoteShape {
            exchange,
            instrument: instrument.clone(),
            prices: DecimalShape::default(),
            sizes: DecimalShape::default(),
        }
    }

    /// Takes `quote` into account.
    pub fn observe(&mut self, quote: &Quote) {
        for p in [Some(quote.bid), Some(quote.ask), quote.last]
            .into_iter()
            .flatten()
        {
            self.prices.observe(p);
        }
        for s in [quote.bid_size, quote.ask_size].into_iter().flatten() {
            self.sizes.observe(s);
        }
    }

    /// Whether a file of this shape has the columns one of `other`
    /// would have (so it holds `other`'s quotes exactly).
    #[must_use]
    pub fn same_columns(&self, other: &QuoteShape) -> bool {
        self.prices.same_column(&other.prices) && self.sizes.same_column(&other.sizes)
    }

    fn columns(&self, rows: &[&Quote]) -> Result<Vec<Column>, String> {
        let decimals = |name, optional, enc, shape, get: &dyn Fn(&Quote) -> Option<Decimal>| {
            Column::decimals_as(name, optional, enc, shape, rows.iter().map(|q| get(q)))
        };
        Ok(vec![
            Column::times("ts_exchange", rows.iter().map(|q| q.ts_exchange.0)),
            Column::times("ts_received", rows.iter().map(|q| q.ts_received.0)),
            decimals("bid", false, Enc::Delta, self.prices, &|q| Some(q.bid))?,
            decimals("ask", false, Enc::Delta, self.prices, &|q| Some(q.ask))?,
            decimals("bid_size", true, Enc::Dictionary, self.sizes, &|q| {
                q.bid_size
            })?,
            decimals("ask_size", true, Enc::Dictionary, self.sizes, &|q| {
                q.ask_size
            })?,
            decimals("last", true, Enc::Delta, self.prices, &|q| q.last)?,
        ])
    }
}

crate::columns::batch_writer!(
    /// A file of quotes written a batch at a time, in the order given.
    QuoteWriter,
    QuoteShape,
    Quote,
    "quotes"
);

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
    let mut rows: Vec<&Quote> = quotes.iter().collect();
    rows.sort_by_key(|q| (q.ts_exchange, q.ts_received));
    let mut shape = QuoteShape::new(exchange, instrument);
    for q in &rows {
        shape.observe(q);
    }
    let mut writer = QuoteWriter::create(path, shape)?;
    writer.write_refs(&rows)?;
    writer.finish()
}

/// Reads a file [`write_quotes`] wrote.
///
/// # Errors
/// When the file cannot be read, or is not such a file.
pub fn read_quotes(path: &Path) -> Result<QuoteDay, Error> {
    read_quotes_span(path, None)
}

/// Reads the rows of a file [`write_quotes`] wrote with exchange time in
/// `[from, to)`, reading only the row groups that may hold them.
///
/// # Errors
/// When the file cannot be read, or is not such a file.
pub fn read_quotes_between(path: &Path, from: Ts, to: Ts) -> Result<QuoteDay, Error> {
    let span = Span {
        column: "ts_exchange",
        from: from.0,
        to: to.0,
    };
    let mut day = read_quotes_span(path, Some(span))?;
    day.quotes
        .retain(|r| r.ts_exchange >= from && r.ts_exchange < to);
    Ok(day)
}

fn read_quotes_span(path: &Path, span: Option<Span<'_>>) -> Result<QuoteDay, Error> {
    let data = read_file_span(path, "quotes", span)?;
    let not = |why: String| Error::NotArchive {
        path: path.to_owned(),
        kind: "quotes",
        why,
    };
    let (exchange, instrument) = data.owner().map_err(not)?;
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
