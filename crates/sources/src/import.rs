//! Importing trades from files: CSV with a `ts,trade_id,price,qty,side`
//! header, or JSON lines with the same fields.
//!
//! - `ts` is RFC 3339 (fractional seconds optional) or integer unix milliseconds.
//! - `trade_id` is an integer or a string, kept as written.
//! - `price` and `qty` are decimals, read exactly (JSON numbers too).
//! - `side` is the taker side, `buy` or `sell`.
//!
//! A bad row is reported with its line number, counted and skipped; the rest
//! of the file still loads.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use ck_bus::{Closed, Event, IngestError};
use ck_model::{Decimal, Exchange, Instrument, Side, Trade, TradeId, Ts};
use serde_json::value::RawValue;

/// What an import loaded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportStats {
    /// Trades read.
    pub trades: u64,
    /// Rows skipped, with their line numbers and reasons.
    pub bad_rows: Vec<(u64, String)>,
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
}

fn row_to_trade(
    target: &ImportTarget,
    ts: &str,
    id: &str,
    price: &str,
    qty: &str,
    side: &str,
) -> Result<Trade, String> {
    let ts_exchange = if !ts.is_empty() && ts.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        Ts::from_millis(ts.parse::<i64>().map_err(|_| format!("bad ts `{ts}`"))?)
    } else {
        Ts::parse(ts).map_err(|e| e.to_string())?
    };
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
    let side = match Side::parse(side) {
        Some(s @ (Side::Buy | Side::Sell)) => s,
        _ => return Err(format!("side must be buy or sell, got `{side}`")),
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
    let mut reader = BufReader::new(File::open(path).map_err(io)?);
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
    let bad = |stats: &mut ImportStats,
               line: u64,
               message: String,
               input: &str,
               emit: &mut dyn FnMut(Event) -> Result<(), Closed>| {
        tracing::warn!(file = %path.display(), line, error = %message, "skipped bad row");
        ck_bus::metrics::counter("candlekeep_import_bad_rows_total").inc();
        let err = IngestError::new(
            Some(target.exchange),
            format!("{}:{line}", path.display()),
            message.clone(),
            input,
        );
        stats.bad_rows.push((line, message));
        emit(Event::IngestError(err))
    };
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
                Err(message) => bad(&mut stats, line_no, message, &line, &mut emit)?,
            }
        }
        return Ok(stats);
    }
    let mut csv = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(reader);
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
    let mut record = csv::StringRecord::new();
    loop {
        let line_no = csv.position().line() + 1;
        match csv.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let line_no = record.position().map_or(line_no, csv::Position::line);
                let field = |i: usize| record.get(cols[i]).unwrap_or("");
                let result = if record.len() < headers.len() {
                    Err(format!(
                        "expected {} fields, found {}",
                        headers.len(),
                        record.len()
                    ))
                } else {
                    row_to_trade(target, field(0), field(1), field(2), field(3), field(4))
                };
                match result {
                    Ok(t) => {
                        stats.trades += 1;
                        emit(Event::Trade(t))?;
                    }
                    Err(message) => {
                        let text = record.iter().collect::<Vec<_>>().join(",");
                        bad(&mut stats, line_no, message, &text, &mut emit)?;
                    }
                }
            }
            Err(e) => {
                let line = e.position().map_or(line_no, csv::Position::line);
                bad(
                    &mut stats,
                    line,
                    format!("unreadable CSV row: {e}"),
                    "",
                    &mut emit,
                )?;
                if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                    break;
                }
            }
        }
    }
    Ok(stats)
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

    fn target() -> ImportTarget {
        ImportTarget {
            exchange: Exchange::Binance,
            instrument: Instrument::parse("BTC-USDT").expect("i"),
            received: Ts(0),
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
}
