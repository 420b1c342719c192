//! One day of one instrument's candles, every interval, as a Parquet file
//! (a candle belongs to the day of its open time).
//!
//! ```text
//! message candlekeep_candles {
//!   REQUIRED BYTE_ARRAY interval (STRING);                -- 1s, 1m, …, 1M; dictionary
//!   REQUIRED INT64 open_time (TIMESTAMP(NANOS,true));     -- delta-encoded
//!   REQUIRED INT64 open, high, low, close (DECIMAL(18,P));
//!   REQUIRED INT64 volume, quote_volume, vwap, taker_buy_volume (DECIMAL(…));
//!   REQUIRED INT64 trades;
//!   OPTIONAL INT64 first_trade_id, last_trade_id;         -- STRING where an id is not a number
//!   REQUIRED BYTE_ARRAY state (STRING);                   -- closed, revised, provisional
//! }
//! ```
//!
//! Each decimal column has its own scale, and widens to 16-byte
//! `DECIMAL(38, s)` where a value needs it (a day's quote volume often
//! does). Rows are sorted by interval (shortest first), then open time.

use std::path::Path;

use ck_model::{Candle, CandleState, Decimal, Exchange, Instrument, Interval, TradeId, Ts};

use crate::Error;
use crate::columns::{Column, DecimalShape, Enc, Select, Span, Values, Written, read_file_select};

/// A day of candles read back.
#[derive(Debug, Clone, PartialEq)]
pub struct CandleDay {
    /// The venue.
    pub exchange: Exchange,
    /// The instrument.
    pub instrument: Instrument,
    /// The candles, by interval then open time.
    pub candles: Vec<Candle>,
}

/// The decimal columns, in order.
const DECIMALS: [&str; 8] = [
    "open",
    "high",
    "low",
    "close",
    "volume",
    "quote_volume",
    "vwap",
    "taker_buy_volume",
];

fn decimal_of(c: &Candle, column: &str) -> Decimal {
    match column {
        "open" => c.open,
        "high" => c.high,
        "low" => c.low,
        "close" => c.close,
        "volume" => c.volume,
        "quote_volume" => c.quote_volume,
        "vwap" => c.vwap,
        _ => c.taker_buy_volume,
    }
}

/// What a file of candles must be able to hold: each decimal column's
/// shape and whether every trade id is a number, learnt from its candles
/// before it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct CandleShape {
    exchange: Exchange,
    instrument: Instrument,
    decimals: [DecimalShape; 8],
    numeric_ids: bool,
}

impl CandleShape {
    /// The shape of no candles yet.
    #[must_use]
    pub fn new(exchange: Exchange, instrument: &Instrument) -> CandleShape {
        CandleShape {
            exchange,
            instrument: instrument.clone(),
            decimals: [DecimalShape::default(); 8],
            numeric_ids: true,
        }
    }

    /// Takes `candle` into account.
    pub fn observe(&mut self, candle: &Candle) {
        for (shape, name) in self.decimals.iter_mut().zip(DECIMALS) {
            shape.observe(decimal_of(candle, name));
        }
        let numeric = |id: &Option<TradeId>| match id {
            None => true,
            Some(TradeId::Num(n)) => i64::try_from(*n).is_ok(),
            Some(TradeId::Str(_)) => false,
        };
        self.numeric_ids &= numeric(&candle.first_trade_id) && numeric(&candle.last_trade_id);
    }

    fn columns(&self, rows: &[&Candle]) -> Result<Vec<Column>, String> {
        let mut columns = vec![
            Column::words("interval", rows.iter().map(|c| c.interval.as_str())),
            Column::times("open_time", rows.iter().map(|c| c.open_time.0)),
        ];
        for (name, shape) in DECIMALS.into_iter().zip(self.decimals) {
            let enc = if name.ends_with("volume") {
                Enc::Dictionary
            } else {
                Enc::Delta
            };
            let values = rows.iter().map(|c| Some(decimal_of(c, name)));
            columns.push(Column::decimals_as(name, false, enc, shape, values)?);
        }
        columns.push(Column {
            name: "trades",
            logical: String::new(),
            optional: false,
            enc: Enc::Delta,
            values: Values::I64(rows.iter().map(|c| i64::try_from(c.trades).ok()).collect()),
        });
        let numeric_ids = self.numeric_ids;
        for (name, get) in [
            (
                "first_trade_id",
                (|c: &Candle| c.first_trade_id.clone()) as fn(&Candle) -> Option<TradeId>,
            ),
            ("last_trade_id", |c: &Candle| c.last_trade_id.clone()),
        ] {
            let values = if numeric_ids {
                Values::I64(
                    rows.iter()
                        .map(|c| match get(c) {
                            Some(TradeId::Num(n)) => i64::try_from(n).ok(),
                            _ => None,
                        })
                        .collect(),
                )
            } else {
                Values::Bytes(
                    rows.iter()
                        .map(|c| get(c).map(|id| id.to_string().into_bytes().into()))
                        .collect(),
                )
            };
            columns.push(Column {
                name,
                logical: if numeric_ids {
                    String::new()
                } else {
                    "STRING".into()
                },
                optional: true,
                enc: if numeric_ids {
                    Enc::Delta
                } else {
                    Enc::Dictionary
                },
                values,
            });
        }
        columns.push(Column::words(
            "state",
            rows.iter().map(|c| c.state.as_str()),
        ));
        Ok(columns)
    }
}

crate::columns::batch_writer!(
    /// A file of candles written a batch at a time, in the order given.
    CandleWriter,
    CandleShape,
    Candle,
    "candles"
);

/// Writes `candles` (one exchange and instrument; any order) to `path`,
/// sorted, and fsyncs it.
///
/// # Errors
/// When the file cannot be written, or a value has no exact representation.
pub fn write_candles(
    path: &Path,
    exchange: Exchange,
    instrument: &Instrument,
    candles: &[Candle],
) -> Result<Written, Error> {
    write_candle_refs(path, exchange, instrument, candles.iter().collect())
}

/// [`write_candles`] of borrowed candles (no copy of a day of them).
///
/// # Errors
/// When the file cannot be written, or a value has no exact representation.
pub fn write_candle_refs(
    path: &Path,
    exchange: Exchange,
    instrument: &Instrument,
    mut rows: Vec<&Candle>,
) -> Result<Written, Error> {
    rows.sort_by_key(|c| (c.interval.index(), c.open_time));
    let mut shape = CandleShape::new(exchange, instrument);
    for c in &rows {
        shape.observe(c);
    }
    write_candle_runs(
        path,
        shape,
        rows.chunk_by(|a, b| a.interval == b.interval)
            .map(|run| run.iter().copied()),
    )
}

/// Writes candles already in a file's order, one run per interval (finest
/// first), each in open-time order, into columns of `shape` (observed over
/// them all), and fsyncs the file. A run is taken a piece at a time, so
/// the candles may be made as they are written.
///
/// # Errors
/// When the file cannot be written, or a value has no exact representation.
pub fn write_candle_runs<C: std::borrow::Borrow<Candle>>(
    path: &Path,
    shape: CandleShape,
    runs: impl IntoIterator<Item = impl IntoIterator<Item = C>>,
) -> Result<Written, Error> {
    let mut writer = CandleWriter::create(path, shape)?;
    let mut piece: Vec<C> = Vec::new();
    let write = |writer: &mut CandleWriter, piece: &mut Vec<C>| {
        let rows: Vec<&Candle> = piece.iter().map(std::borrow::Borrow::borrow).collect();
        let written = writer.write_refs(&rows);
        piece.clear();
        written
    };
    // Each interval in row groups of its own, so that a reader of one
    // interval skips the others by their statistics.
    for run in runs {
        for c in run {
            piece.push(c);
            if piece.len() == crate::PIECE_ROWS {
                write(&mut writer, &mut piece)?;
            }
        }
        write(&mut writer, &mut piece)?;
        writer.end_row_group()?;
    }
    writer.finish()
}

/// Reads the candles of one interval with open time in `[from, to)` from
/// a file [`write_candles`] wrote, reading only the row groups that may
/// hold them.
///
/// # Errors
/// When the file cannot be read, or is not such a file.
pub fn read_candles_of(
    path: &Path,
    interval: Interval,
    from: Ts,
    to: Ts,
) -> Result<CandleDay, Error> {
    let select = Select {
        span: Some(Span {
            column: "open_time",
            from: from.0,
            to: to.0,
        }),
        equal: Some(("interval", interval.as_str())),
    };
    let mut day = read_candles_select(path, select)?;
    day.candles
        .retain(|c| c.interval == interval && c.open_time >= from && c.open_time < to);
    Ok(day)
}

/// Reads a file [`write_candles`] wrote.
///
/// # Errors
/// When the file cannot be read, or is not such a file.
pub fn read_candles(path: &Path) -> Result<CandleDay, Error> {
    read_candles_select(
        path,
        Select {
            span: None,
            equal: None,
        },
    )
}

fn read_candles_select(path: &Path, select: Select<'_>) -> Result<CandleDay, Error> {
    let data = read_file_select(path, "candles", select)?;
    let not = |why: String| Error::NotArchive {
        path: path.to_owned(),
        kind: "candles",
        why,
    };
    let (exchange, instrument) = data.owner().map_err(not)?;
    let intervals = data.strings("interval").map_err(not)?;
    let open_times = data.ints("open_time").map_err(not)?;
    let mut decimals = Vec::new();
    for name in DECIMALS {
        decimals.push(data.decimals(name).map_err(not)?);
    }
    let trades = data.ints("trades").map_err(not)?;
    let ids = |name: &str| -> Result<Vec<Option<TradeId>>, Error> {
        Ok(match data.column(name).map_err(not)?.0 {
            Values::I64(v) => v
                .iter()
                .map(|id| id.and_then(|id| u64::try_from(id).ok()).map(TradeId::Num))
                .collect(),
            _ => data
                .strings(name)
                .map_err(not)?
                .into_iter()
                .map(|s| s.map(|s| TradeId::Str(s.into())))
                .collect(),
        })
    };
    let (first, last) = (ids("first_trade_id")?, ids("last_trade_id")?);
    let states = data.strings("state").map_err(not)?;
    let mut candles = Vec::with_capacity(data.rows);
    for i in 0..data.rows {
        let missing = || not(format!("row {i} misses a required value"));
        let d = |k: usize| decimals[k][i].ok_or_else(missing);
        let interval: Interval = intervals[i]
            .as_deref()
            .ok_or_else(missing)?
            .parse()
            .map_err(|e| not(format!("row {i}: {e}")))?;
        candles.push(Candle {
            exchange,
            instrument: instrument.clone(),
            interval,
            open_time: Ts(open_times[i].ok_or_else(missing)?),
            open: d(0)?,
            high: d(1)?,
            low: d(2)?,
            close: d(3)?,
            volume: d(4)?,
            quote_volume: d(5)?,
            vwap: d(6)?,
            taker_buy_volume: d(7)?,
            trades: trades[i]
                .and_then(|n| u64::try_from(n).ok())
                .ok_or_else(missing)?,
            first_trade_id: first[i].clone(),
            last_trade_id: last[i].clone(),
            state: states[i]
                .as_deref()
                .and_then(CandleState::parse)
                .ok_or_else(|| not(format!("row {i}: no known state")))?,
        });
    }
    Ok(CandleDay {
        exchange,
        instrument,
        candles,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Candles of every interval built from the recorded trades, as the
    /// candle stage builds them.
    fn recorded_candles() -> Vec<Candle> {
        let trades = ck_testkit::bench_data::binance_trades();
        let mut aggregator = ck_processors::candles::CandleAggregator::new(
            ck_processors::candles::AggregatorConfig {
                intervals: Interval::ALL.to_vec(),
                ..ck_processors::candles::AggregatorConfig::default()
            },
        );
        let mut out = Vec::new();
        for t in &trades {
            aggregator.on_trade(t, &mut out);
        }
        aggregator.flush(&mut out);
        // The newest state of each candle.
        let mut newest = std::collections::BTreeMap::new();
        for c in out {
            newest.insert((c.interval.index(), c.open_time), c);
        }
        newest.into_values().collect()
    }

    #[test]
    fn one_interval_is_read_from_its_own_row_groups() {
        let candles = recorded_candles();
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("c.parquet");
        write_candles(&path, Exchange::Binance, &candles[0].instrument, &candles).expect("written");
        let file = std::fs::File::open(&path).expect("open");
        let reader = parquet::file::reader::SerializedFileReader::new(file).expect("parquet");
        let intervals: std::collections::BTreeSet<Interval> =
            candles.iter().map(|c| c.interval).collect();
        assert_eq!(
            parquet::file::reader::FileReader::num_row_groups(&reader),
            intervals.len(),
            "a row group per interval"
        );
        for interval in intervals {
            let all: Vec<&Candle> = candles.iter().filter(|c| c.interval == interval).collect();
            let (from, to) = (all[0].open_time, Ts(all[all.len() - 1].open_time.0 + 1));
            let got = read_candles_of(&path, interval, from, to).expect("read");
            assert_eq!(got.candles.iter().collect::<Vec<_>>(), all, "{interval}");
            let later = read_candles_of(&path, interval, Ts(from.0 + 1), to).expect("read");
            assert_eq!(
                later.candles.len(),
                all.len() - 1,
                "{interval}: the range applies"
            );
        }
    }

    #[test]
    fn candles_of_every_interval_round_trip_exactly() {
        let mut candles = recorded_candles();
        assert!(candles.len() > 300, "{} candles", candles.len());
        // A day's quote volume beyond 18 digits at its scale: a wide column.
        candles[0].quote_volume = Decimal::parse("123456789012.1234567890").expect("decimal");
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("c.parquet");
        let written = write_candles(&path, Exchange::Binance, &candles[0].instrument, &candles)
            .expect("written");
        let back = read_candles(&path).expect("read");
        let mut sorted = candles.clone();
        sorted.sort_by_key(|c| (c.interval.index(), c.open_time));
        assert_eq!(back.candles, sorted);
        let per = written.bytes as f64 / candles.len() as f64;
        println!(
            "{} candles, {} bytes, {per:.1} B/candle",
            candles.len(),
            written.bytes
        );
    }
}
