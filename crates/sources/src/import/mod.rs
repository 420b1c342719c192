//! Importing trades from files: CSV with a `ts,trade_id,price,qty,side`
//! header, or JSON lines with the same fields; or Binance's public trade
//! and aggregated-trade dumps, zipped or not ([`ImportFormat`]).
//!
//! - `ts` is RFC 3339 (fractional seconds optional) or a unix time: by
//!   default its unit is read from its magnitude ([`TsUnit::Auto`]:
//!   seconds below 10^11, milliseconds below 10^14, microseconds below
//!   10^17, else nanoseconds; seconds may have a fraction), or forced with
//!   `--ts-unit`. Times before 2009-01-03 (the first bitcoin block) or more
//!   than a day past the import are refused.
//! - `trade_id` is an integer or a string, kept as written.
//! - `price` and `qty` are decimals, read exactly (JSON numbers too).
//! - `side` is the taker side, `buy` or `sell`.
//!
//! A bad row is reported with its line number, counted and skipped; the rest
//! of the file still loads. It is an ingest error, not a gap: its trade id,
//! where readable, goes with the error so that the gap detector does not
//! count it as missing. The first [`FIRST_BAD_ROWS`] bad rows are logged and
//! kept for the summary; the rest are counted.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use ck_bus::{Closed, Event, IngestError};
use ck_model::{Decimal, Exchange, Instrument, Side, Trade, TradeId, Ts};
use serde_json::value::RawValue;

/// How many bad rows an import logs and lists; later ones are counted.
pub const FIRST_BAD_ROWS: usize = 20;

/// What an import loaded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportStats {
    /// Trades read.
    pub trades: u64,
    /// Quotes read (Tardis `book_ticker` files).
    pub quotes: u64,
    /// The exchange's candles read (Binance `klines` dumps).
    pub candles: u64,
    /// Rows skipped.
    pub bad_row_count: u64,
    /// The first [`FIRST_BAD_ROWS`] rows skipped, with their line numbers
    /// and reasons.
    pub bad_rows: Vec<(u64, String)>,
}

/// The unit of a numeric `ts`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TsUnit {
    /// Read from the magnitude: see the module documentation.
    #[default]
    Auto,
    /// Unix seconds (a fraction allowed).
    Seconds,
    /// Unix milliseconds.
    Millis,
    /// Unix microseconds.
    Micros,
    /// Unix nanoseconds.
    Nanos,
}

impl TsUnit {
    /// The unit of `value` by its magnitude.
    fn of(value: u128) -> TsUnit {
        match value {
            v if v < 100_000_000_000 => TsUnit::Seconds,
            v if v < 100_000_000_000_000 => TsUnit::Millis,
            v if v < 100_000_000_000_000_000 => TsUnit::Micros,
            _ => TsUnit::Nanos,
        }
    }

    /// Nanoseconds per unit.
    fn nanos(self) -> i128 {
        match self {
            TsUnit::Auto | TsUnit::Seconds => 1_000_000_000,
            TsUnit::Millis => 1_000_000,
            TsUnit::Micros => 1_000,
            TsUnit::Nanos => 1,
        }
    }

    /// Its name, as `--ts-unit` takes it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            TsUnit::Auto => "auto",
            TsUnit::Seconds => "s",
            TsUnit::Millis => "ms",
            TsUnit::Micros => "us",
            TsUnit::Nanos => "ns",
        }
    }
}

impl std::str::FromStr for TsUnit {
    type Err = String;
    fn from_str(s: &str) -> Result<TsUnit, String> {
        match s {
            "auto" => Ok(TsUnit::Auto),
            "s" | "seconds" => Ok(TsUnit::Seconds),
            "ms" | "millis" => Ok(TsUnit::Millis),
            "us" | "micros" => Ok(TsUnit::Micros),
            "ns" | "nanos" => Ok(TsUnit::Nanos),
            _ => Err(format!(
                "`{s}` is not a time unit; valid: auto, s, ms, us, ns"
            )),
        }
    }
}

use crate::line_bound::LineBound;
pub use crate::line_bound::MAX_LINE;

/// The first bitcoin block (2009-01-03T18:15:05Z): no trade is older.
const EARLIEST: Ts = Ts(1_231_006_505_000_000_000);

/// Reads a numeric unix time `ts` in `unit`.
pub(crate) fn unix_time(ts: &str, unit: TsUnit) -> Result<Ts, String> {
    let bad = || format!("bad ts `{ts}`");
    let (whole, fraction) = ts.split_once('.').unwrap_or((ts, ""));
    if whole.is_empty() || whole.len() > 30 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let value: u128 = whole.parse().map_err(|_| bad())?;
    let unit = match unit {
        TsUnit::Auto => TsUnit::of(value),
        u => u,
    };
    if !fraction.is_empty() && unit != TsUnit::Seconds {
        return Err(format!(
            "ts `{ts}` has a fraction, which only seconds may have (read as {})",
            unit.as_str()
        ));
    }
    let mut nanos = i128::try_from(value).map_err(|_| bad())? * unit.nanos();
    let digits = fraction.len().min(9);
    if digits > 0 {
        let frac: i128 = fraction[..digits].parse().map_err(|_| bad())?;
        nanos += frac * 10_i128.pow(9 - digits as u32);
    }
    i64::try_from(nanos)
        .map(Ts)
        .map_err(|_| format!("ts `{ts}` is out of range (read as {})", unit.as_str()))
}

/// Why an import could not run at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The CSV header lacks a required column.
    #[error(
        "{path}: the CSV header must have ts, trade_id, price, qty and side; missing `{column}`"
    )]
    Header {
        /// The file.
        path: PathBuf,
        /// The missing column.
        column: &'static str,
    },
    /// The file is not of the layout named.
    #[error("{path}: {why}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The pipeline stopped taking events.
    #[error(transparent)]
    Closed(#[from] Closed),
}

/// The instrument and clock an import assigns to every row.
#[derive(Debug, Clone)]
pub struct ImportTarget {
    /// The venue the trades are from.
    pub exchange: Exchange,
    /// Their instrument.
    pub instrument: Instrument,
    /// The receive time given to every trade (the import time).
    pub received: Ts,
    /// The unit of numeric times.
    pub ts_unit: TsUnit,
    /// The file's layout.
    pub format: ImportFormat,
}

/// Which layout a trade file has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImportFormat {
    /// candlekeep's own: CSV with a `ts,trade_id,price,qty,side` header, or
    /// JSON lines with those fields.
    #[default]
    Candlekeep,
    /// Binance's public trade dumps (data.binance.vision,
    /// `<SYMBOL>-trades-<period>.zip` or the CSV inside):
    /// `id,price,qty,quote_qty,time,is_buyer_maker[,is_best_match]`, with or
    /// without that header row; `time` in milliseconds (microseconds in the
    /// spot files since 2025: read from its magnitude).
    BinanceTrades,
    /// Binance's aggregated trade dumps (`<SYMBOL>-aggTrades-<period>`):
    /// `agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker[,is_best_match]`;
    /// each row is one trade of `last - first + 1` fills.
    BinanceAggTrades,
    /// Binance's kline dumps (`<SYMBOL>-<interval>-<period>`, the interval
    /// from the name), imported as the exchange's candles
    /// (`--source exchange`, for `verify`): `open_time,open,high,low,close,
    /// volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore`.
    BinanceKlines,
    /// Tardis.dev's downloadable `trades` CSV (`.csv.gz` or plain):
    /// `exchange,symbol,timestamp,local_timestamp,id,side,price,amount`,
    /// times in microseconds; `local_timestamp` becomes the receive time.
    TardisTrades,
    /// Tardis.dev's `book_ticker` CSV, imported as quotes:
    /// `exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount`.
    TardisBookTicker,
    /// freqtrade's trade files (`<PAIR>-trades.json` or `.json.gz`): a JSON
    /// array of `[timestamp, id, type, side, price, amount, cost]`, or of
    /// objects with those keys in older files.
    FreqtradeTrades,
}

impl ImportFormat {
    /// Every format's name, for `--format`.
    pub const NAMES: [&'static str; 7] = [
        "candlekeep",
        "binance-trades",
        "binance-agg-trades",
        "binance-klines",
        "tardis-trades",
        "tardis-book-ticker",
        "freqtrade-trades",
    ];

    /// The name `--format` takes.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ImportFormat::Candlekeep => "candlekeep",
            ImportFormat::BinanceTrades => "binance-trades",
            ImportFormat::BinanceAggTrades => "binance-agg-trades",
            ImportFormat::BinanceKlines => "binance-klines",
            ImportFormat::TardisTrades => "tardis-trades",
            ImportFormat::TardisBookTicker => "tardis-book-ticker",
            ImportFormat::FreqtradeTrades => "freqtrade-trades",
        }
    }

    /// The format a file's name says: Binance's dump names
    /// (`BTCUSDT-aggTrades-2024-08-08.zip`, `BTCUSDT-trades-2024-08.csv`),
    /// Tardis's (`binance_trades_2024-08-08_BTCUSDT.csv.gz`,
    /// `binance_book_ticker_…`), freqtrade's (`BTC_USDT-trades.json.gz`, `.feather`, `.parquet`),
    /// else candlekeep's.
    #[must_use]
    pub fn detect(path: &Path) -> ImportFormat {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.contains("-trades.json")
            || name.ends_with("-trades.feather")
            || name.ends_with("-trades.parquet")
        {
            ImportFormat::FreqtradeTrades
        } else if name.contains("_book_ticker_") {
            ImportFormat::TardisBookTicker
        } else if name.contains("_trades_") {
            ImportFormat::TardisTrades
        } else if name.contains("-aggTrades-") {
            ImportFormat::BinanceAggTrades
        } else if name.contains("-trades-") {
            ImportFormat::BinanceTrades
        } else if binance::kline_interval(name).is_some() {
            ImportFormat::BinanceKlines
        } else {
            ImportFormat::Candlekeep
        }
    }
}

impl std::str::FromStr for ImportFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<ImportFormat, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "candlekeep" => Ok(ImportFormat::Candlekeep),
            "binance-trades" => Ok(ImportFormat::BinanceTrades),
            "binance-agg-trades" | "binance-aggtrades" => Ok(ImportFormat::BinanceAggTrades),
            "binance-klines" => Ok(ImportFormat::BinanceKlines),
            "tardis-trades" => Ok(ImportFormat::TardisTrades),
            "tardis-book-ticker" => Ok(ImportFormat::TardisBookTicker),
            "freqtrade-trades" | "freqtrade" => Ok(ImportFormat::FreqtradeTrades),
            other => Err(format!(
                "unknown import format `{other}`: use {}",
                ImportFormat::NAMES.join(", ")
            )),
        }
    }
}

fn row_to_trade(
    target: &ImportTarget,
    ts: &str,
    id: &str,
    price: &str,
    qty: &str,
    side: &str,
) -> Result<Trade, String> {
    let ts_exchange = if !ts.is_empty() && ts.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        unix_time(ts, target.ts_unit)?
    } else if ts.starts_with('-') {
        return Err(format!("ts `{ts}` is negative"));
    } else {
        Ts::parse(ts).map_err(|e| e.to_string())?
    };
    let latest = Ts(target.received.0.saturating_add(86_400_000_000_000));
    if ts_exchange < EARLIEST || ts_exchange > latest {
        return Err(format!(
            "ts `{ts}` is {ts_exchange}, outside {EARLIEST} to a day past now{}",
            if ts.bytes().all(|b| b.is_ascii_digit()) && target.ts_unit == TsUnit::Auto {
                " (use --ts-unit if the unit was misread)"
            } else {
                ""
            }
        ));
    }
    if id.is_empty() {
        return Err("empty trade_id".into());
    }
    let price = Decimal::parse(price).map_err(|e| format!("bad price: {e}"))?;
    let size = Decimal::parse(qty).map_err(|e| format!("bad qty: {e}"))?;
    if price.is_negative() || price.is_zero() {
        return Err(format!("price must be positive, got {price}"));
    }
    if size.is_negative() || size.is_zero() {
        return Err(format!("qty must be positive, got {size}"));
    }
    // `unknown` is what Tardis writes where the venue did not say; an empty
    // side is a missing field.
    let side = match Side::parse(side) {
        Some(s @ (Side::Buy | Side::Sell)) => s,
        Some(Side::Unknown) if side.trim().eq_ignore_ascii_case("unknown") => Side::Unknown,
        _ => return Err(format!("side must be buy, sell or unknown, got `{side}`")),
    };
    Ok(Trade {
        exchange: target.exchange,
        instrument: target.instrument.clone(),
        trade_id: TradeId::from_text(id),
        price,
        size,
        side,
        ts_exchange,
        ts_received: target.received,
        fills: 1,
    })
}

/// Reads `path` and hands each trade (and each bad row, as an
/// [`Event::IngestError`]) to `emit`.
pub fn import_file(
    path: &Path,
    target: &ImportTarget,
    mut emit: impl FnMut(Event) -> Result<(), Closed>,
) -> Result<ImportStats, ImportError> {
    let io = |source| ImportError::Io {
        path: path.to_owned(),
        source,
    };
    match target.format {
        ImportFormat::Candlekeep => {}
        ImportFormat::BinanceTrades
        | ImportFormat::BinanceAggTrades
        | ImportFormat::BinanceKlines => {
            return binance::import_binance_dump(path, target, &mut emit);
        }
        ImportFormat::TardisTrades | ImportFormat::TardisBookTicker => {
            return tardis::import_tardis(path, target, &mut emit);
        }
        ImportFormat::FreqtradeTrades => {
            return freqtrade::import_freqtrade(path, target, &mut emit);
        }
    }
    let mut reader = BufReader::new(LineBound::new(File::open(path).map_err(io)?));
    let is_json = {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        match ext.as_str() {
            "jsonl" | "ndjson" | "json" => true,
            "csv" => false,
            _ => {
                reader
                    .fill_buf()
                    .map_err(io)?
                    .iter()
                    .find(|b| !b.is_ascii_whitespace())
                    == Some(&b'{')
            }
        }
    };
    let mut stats = ImportStats::default();
    if is_json {
        for (i, line) in reader.lines().enumerate() {
            let line_no = i as u64 + 1;
            let line = line.map_err(io)?;
            if line.trim().is_empty() {
                continue;
            }
            match json_row(target, &line) {
                Ok(t) => {
                    stats.trades += 1;
                    emit(Event::Trade(t))?;
                }
                Err(message) => {
                    let id = json_trade_id(&line);
                    let at = (line_no, message, line.as_str(), id.as_deref());
                    report_bad(path, target, &mut stats, at, &mut emit)?;
                }
            }
        }
        return Ok(stats);
    }
    let mut csv = csv_reader(reader, true);
    let headers = csv.headers().map_err(|e| io(e.into()))?.clone();
    let col = |name: &'static str| {
        headers
            .iter()
            .position(|h| h.eq_ignore_ascii_case(name))
            .ok_or(ImportError::Header {
                path: path.to_owned(),
                column: name,
            })
    };
    let cols = [
        col("ts")?,
        col("trade_id")?,
        col("price")?,
        col("qty")?,
        col("side")?,
    ];
    let fields = headers.len();
    read_records(path, target, &mut csv, &mut emit, |record, _| {
        let field = |i: usize| field(record, cols[i]);
        let result = if record.len() < fields {
            Err(format!("expected {fields} fields, found {}", record.len()))
        } else {
            row_to_trade(target, field(0), field(1), field(2), field(3), field(4))
        };
        match result {
            Ok(t) => Row::Load(Event::Trade(t)),
            Err(message) => Row::Bad(message, record.get(cols[1]).map(|id| id.trim().to_owned())),
        }
    })
}

/// Counts, logs and emits a bad row as an ingest error: `(line, why,
/// the row's text, its trade id where it has one)`.
fn report_bad(
    path: &Path,
    target: &ImportTarget,
    stats: &mut ImportStats,
    (line, message, input, id): (u64, String, &str, Option<&str>),
    emit: &mut dyn FnMut(Event) -> Result<(), Closed>,
) -> Result<(), Closed> {
    ck_bus::metrics::counter("candlekeep_import_bad_rows_total").inc();
    stats.bad_row_count += 1;
    if stats.bad_rows.len() < FIRST_BAD_ROWS {
        tracing::warn!(file = %path.display(), line, error = %message, "skipped bad row");
        stats.bad_rows.push((line, message.clone()));
    } else if stats.bad_row_count == FIRST_BAD_ROWS as u64 + 1 {
        tracing::warn!(file = %path.display(), "more bad rows: counting them without a warning each");
    }
    let mut err = IngestError::new(
        Some(target.exchange),
        format!("{}:{line}", path.display()),
        message,
        input,
    );
    err.skipped_trade = id
        .and_then(|id| id.trim().parse::<u64>().ok())
        .map(|id| (target.instrument.clone(), id));
    emit(Event::IngestError(err))
}

/// `path` to read, gunzipped when its name ends in `.gz`.
fn open_maybe_gzipped(path: &Path) -> Result<Box<dyn std::io::Read>, ImportError> {
    let file = File::open(path).map_err(|source| ImportError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok(if has_extension(path, "gz") {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    })
}

/// A CSV reader as every layout reads: rows may differ in length, the
/// header row is trimmed (fields are trimmed as they are read, by
/// [`field`]: cheaper than rebuilding every record); `headers` when the
/// first row names the columns.
fn csv_reader<R: std::io::Read>(reader: R, headers: bool) -> csv::Reader<R> {
    csv::ReaderBuilder::new()
        .has_headers(headers)
        .flexible(true)
        .trim(csv::Trim::Headers)
        .from_reader(reader)
}

/// Field `i` of `record`, trimmed; empty when the row is shorter.
fn field(record: &csv::StringRecord, i: usize) -> &str {
    record.get(i).map_or("", str::trim)
}

/// Whether `path` ends in `.<extension>`, in any case.
fn has_extension(path: &Path, extension: &str) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case(extension))
}

/// Whether a headerless layout's record is a header row after all (dumps
/// have had one in some years and not in others): the first line, whose
/// first field is not a number.
fn is_header_row(record: &csv::StringRecord, line_no: u64) -> bool {
    line_no == 1 && !field(record, 0).bytes().all(|b| b.is_ascii_digit())
}

/// What one CSV record came to. (It lives for one record on the stack:
/// boxing the event would cost an allocation a row.)
#[allow(clippy::large_enum_variant)]
enum Row {
    /// Nothing to load (a header row).
    Skip,
    /// A trade, quote or candle.
    Load(Event),
    /// A bad row: why, and its trade id where it has one.
    Bad(String, Option<String>),
}

/// Reads every record of `csv` into `row`, loads what it makes, reports
/// bad rows with their line numbers, and ends on an I/O error (what came
/// before is loaded).
fn read_records<R: std::io::Read>(
    path: &Path,
    target: &ImportTarget,
    csv: &mut csv::Reader<R>,
    emit: &mut dyn FnMut(Event) -> Result<(), Closed>,
    mut row: impl FnMut(&csv::StringRecord, u64) -> Row,
) -> Result<ImportStats, ImportError> {
    let mut stats = ImportStats::default();
    let mut record = csv::StringRecord::new();
    loop {
        let line_no = csv.position().line() + u64::from(csv.has_headers());
        match csv.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let line_no = record.position().map_or(line_no, csv::Position::line);
                match row(&record, line_no) {
                    Row::Skip => {}
                    Row::Load(event) => {
                        match &event {
                            Event::Quote(_) => stats.quotes += 1,
                            Event::ExchangeCandle(_) => stats.candles += 1,
                            _ => stats.trades += 1,
                        }
                        emit(event)?;
                    }
                    Row::Bad(message, id) => {
                        let text = record.iter().collect::<Vec<_>>().join(",");
                        let at = (line_no, message, text.as_str(), id.as_deref());
                        report_bad(path, target, &mut stats, at, emit)?;
                    }
                }
            }
            // The file itself could not be read on: what came before is
            // imported, and the import fails naming the cause.
            Err(e) if matches!(e.kind(), csv::ErrorKind::Io(_)) => {
                return Err(ImportError::Io {
                    path: path.to_owned(),
                    source: e.into(),
                });
            }
            Err(e) => {
                let line = e.position().map_or(line_no, csv::Position::line);
                let message = format!("unreadable CSV row: {e}");
                report_bad(path, target, &mut stats, (line, message, "", None), emit)?;
            }
        }
    }
    Ok(stats)
}

mod binance;
mod freqtrade;
mod freqtrade_columns;
mod tardis;

/// The `trade_id` of a JSON row that did not import, if it can be read.
fn json_trade_id(line: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Id<'a> {
        #[serde(borrow)]
        trade_id: &'a RawValue,
    }
    let id: Id<'_> = serde_json::from_str(line).ok()?;
    let t = id.trade_id.get();
    Some(t.trim_matches('"').to_owned())
}

fn json_row(target: &ImportTarget, line: &str) -> Result<Trade, String> {
    #[derive(serde::Deserialize)]
    struct Row<'a> {
        #[serde(borrow)]
        ts: &'a RawValue,
        #[serde(borrow)]
        trade_id: &'a RawValue,
        #[serde(borrow)]
        price: &'a RawValue,
        #[serde(borrow)]
        qty: &'a RawValue,
        side: String,
    }
    let row: Row<'_> = serde_json::from_str(line).map_err(|e| format!("bad JSON row: {e}"))?;
    // Strings are unquoted; numbers keep their exact text.
    let text = |raw: &RawValue| -> Result<String, String> {
        let t = raw.get();
        if t.starts_with('"') {
            serde_json::from_str::<String>(t).map_err(|e| e.to_string())
        } else {
            Ok(t.to_owned())
        }
    };
    row_to_trade(
        target,
        &text(row.ts)?,
        &text(row.trade_id)?,
        &text(row.price)?,
        &text(row.qty)?,
        &row.side,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    pub(super) fn target() -> ImportTarget {
        ImportTarget {
            format: ImportFormat::Candlekeep,
            exchange: Exchange::Binance,
            instrument: Instrument::parse("BTC-USDT").expect("i"),
            received: Ts::from_secs(1_800_000_000),
            ts_unit: TsUnit::Auto,
        }
    }

    fn run(name: &str, body: &str) -> (Vec<Trade>, ImportStats) {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join(name);
        File::create(&path)
            .and_then(|mut f| f.write_all(body.as_bytes()))
            .expect("write");
        let mut trades = Vec::new();
        let stats = import_file(&path, &target(), |e| {
            if let Event::Trade(t) = e {
                trades.push(t);
            }
            Ok(())
        })
        .expect("import");
        (trades, stats)
    }

    #[test]
    fn csv_with_bad_rows_reports_line_numbers_and_loads_the_rest() {
        let body = "ts,trade_id,price,qty,side\n\
                    2024-01-01T00:00:00.5Z,1,42000.10,0.5,buy\n\
                    1704067201000,2,42001,0.25,sell\n\
                    not-a-time,3,1,1,buy\n\
                    2024-01-01T00:00:02Z,4,abc,1,buy\n\
                    2024-01-01T00:00:02Z,5,1,1\n\
                    2024-01-01T00:00:03Z,x-6,42002.5,1,SELL\n";
        let (trades, stats) = run("t.csv", body);
        assert_eq!(trades.len(), 3);
        assert_eq!(trades[1].ts_exchange, Ts::from_millis(1_704_067_201_000));
        assert_eq!(trades[2].trade_id, TradeId::Str("x-6".into()));
        assert_eq!(trades[2].side, Side::Sell);
        let lines: Vec<u64> = stats.bad_rows.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, vec![4, 5, 6]);
        assert!(
            stats.bad_rows[1].1.contains("bad price"),
            "{:?}",
            stats.bad_rows
        );
    }

    #[test]
    fn numeric_times_are_read_in_the_unit_their_magnitude_says() {
        let body = "ts,trade_id,price,qty,side\n\
                    1709287201,1,1,1,buy\n\
                    1709287201.25,2,1,1,buy\n\
                    1709287201500,3,1,1,buy\n\
                    1709287201500250,4,1,1,buy\n\
                    1709287201500250750,5,1,1,buy\n\
                    9999999999999999,6,1,1,buy\n\
                    1230000000,7,1,1,buy\n\
                    -5,8,1,1,buy\n\
                    1709287201.5e3,9,1,1,buy\n";
        let (trades, stats) = run("t.csv", body);
        let times: Vec<Ts> = trades.iter().map(|t| t.ts_exchange).collect();
        let at = Ts::parse("2024-03-01T10:00:01Z").expect("ts").0;
        assert_eq!(
            times,
            vec![
                Ts(at),
                Ts(at + 250_000_000),
                Ts(at + 500_000_000),
                Ts(at + 500_250_000),
                Ts(at + 500_250_750),
            ]
        );
        let lines: Vec<u64> = stats.bad_rows.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, vec![7, 8, 9, 10], "{:?}", stats.bad_rows);
        assert!(
            stats.bad_rows[0].1.contains("out of range"),
            "microseconds past 2262 refused: {:?}",
            stats.bad_rows
        );
        assert!(stats.bad_rows[1].1.contains("outside"), "before 2009");
        assert!(stats.bad_rows[2].1.contains("negative"));
        // A forced unit reads every number in it.
        for (unit, ts, want) in [
            (TsUnit::Millis, "1709287201", Ts::from_millis(1_709_287_201)),
            (TsUnit::Seconds, "1709287", Ts::from_secs(1_709_287)),
            (
                TsUnit::Nanos,
                "1709287201000000000",
                Ts(1_709_287_201_000_000_000),
            ),
        ] {
            let got = unix_time(ts, unit);
            assert_eq!(got, Ok(want), "{ts} as {unit:?}");
        }
        assert!(unix_time("1709287201.5", TsUnit::Millis).is_err());
        // Within i64 but past a day from now: refused, with the hint.
        let t = target();
        let err = row_to_trade(&t, "9000000000", "1", "1", "1", "buy").expect_err("2255");
        assert!(
            err.contains("outside") && err.contains("--ts-unit"),
            "{err}"
        );
        assert_eq!("us".parse::<TsUnit>(), Ok(TsUnit::Micros));
        assert!("hours".parse::<TsUnit>().is_err());
    }

    #[test]
    fn bad_rows_carry_their_trade_ids_and_only_the_first_are_listed() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("t.csv");
        let mut body = String::from("ts,trade_id,price,qty,side\n");
        for id in 1..=100 {
            let price = if id % 2 == 0 { "bad" } else { "1" };
            body.push_str(&format!("2024-01-01T00:00:00Z,{id},{price},1,buy\n"));
        }
        std::fs::write(&path, body).expect("write");
        let mut skipped = Vec::new();
        let stats = import_file(&path, &target(), |e| {
            if let Event::IngestError(e) = e {
                skipped.push(e.skipped_trade.map(|(_, id)| id));
            }
            Ok(())
        })
        .expect("import");
        assert_eq!((stats.trades, stats.bad_row_count), (50, 50));
        assert_eq!(stats.bad_rows.len(), FIRST_BAD_ROWS);
        assert_eq!(skipped.len(), 50);
        assert_eq!(skipped[0], Some(2));
        assert_eq!(skipped[49], Some(100));
    }

    #[test]
    fn a_line_without_end_is_refused_not_read_into_memory() {
        let dir = tempfile::tempdir().expect("dir");
        for name in ["long.jsonl", "long.csv"] {
            let path = dir.path().join(name);
            let mut body = String::from(if name.ends_with("csv") {
                "ts,trade_id,price,qty,side\n"
            } else {
                ""
            });
            body.push_str(&"x".repeat(MAX_LINE + 10));
            std::fs::write(&path, body).expect("write");
            let err = import_file(&path, &target(), |_| Ok(()));
            let message = match err {
                Err(e) => format!(
                    "{e}: {}",
                    std::error::Error::source(&e)
                        .map(ToString::to_string)
                        .unwrap_or_default()
                ),
                Ok(stats) => panic!("{name} imported: {stats:?}"),
            };
            assert!(message.contains("a line longer than"), "{name}: {message}");
        }
    }

    #[test]
    fn json_lines_keep_exact_numbers() {
        let body = "{\"ts\":1704067200000,\"trade_id\":7,\"price\":0.1000,\"qty\":\"3\",\"side\":\"buy\"}\n\
                    {\"ts\":\"2024-01-01T00:00:01Z\",\"trade_id\":\"a\",\"price\":\"1\",\"qty\":\"1\",\"side\":\"up\"}\n\
                    {broken\n";
        let (trades, stats) = run("t.jsonl", body);
        assert_eq!(trades.len(), 1);
        assert_eq!(trades[0].price.to_string(), "0.1000");
        assert_eq!(
            stats.bad_rows.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
            vec![2, 3]
        );
    }

    #[test]
    fn missing_header_column_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("x.csv");
        std::fs::write(&path, "time,id,price\n1,2,3\n").expect("write");
        let err = import_file(&path, &target(), |_| Ok(()))
            .expect_err("refused")
            .to_string();
        assert!(err.contains("missing `ts`"), "{err}");
    }

    /// Imports `path` in `format`: its trades and what the import reported.
    pub(super) fn import_dump(path: &Path, format: ImportFormat) -> (Vec<Trade>, ImportStats) {
        let mut trades = Vec::new();
        let target = ImportTarget { format, ..target() };
        let stats = import_file(path, &target, |e| {
            if let Event::Trade(t) = e {
                trades.push(t);
            }
            Ok(())
        })
        .expect("import");
        (trades, stats)
    }

    pub(super) fn same_trades(got: &[Trade], recorded: &[Trade]) {
        assert_eq!(got.len(), recorded.len());
        for (a, b) in got.iter().zip(recorded) {
            assert_eq!(
                (
                    &a.trade_id,
                    a.price,
                    a.size,
                    a.side,
                    a.ts_exchange.0 / 1_000_000
                ),
                (
                    &b.trade_id,
                    b.price,
                    b.size,
                    b.side,
                    b.ts_exchange.0 / 1_000_000
                )
            );
        }
    }

    #[test]
    fn import_formats_parse_and_refuse_unknown_names() {
        assert_eq!("binance-trades".parse(), Ok(ImportFormat::BinanceTrades));
        assert_eq!(
            "Binance-AggTrades".parse(),
            Ok(ImportFormat::BinanceAggTrades)
        );
        let err = "tardis".parse::<ImportFormat>().expect_err("unknown");
        assert!(err.contains("binance-agg-trades"), "{err}");
        assert_eq!(
            ImportFormat::detect(Path::new("trades.csv")),
            ImportFormat::Candlekeep
        );
    }
}
