//! freqtrade's columnar trade files: `<PAIR>-trades.feather` (Arrow IPC,
//! LZ4-compressed; freqtrade's default trades format) and
//! `<PAIR>-trades.parquet`, as pandas writes a trades frame.
//!
//! Columns are found by name: `timestamp` (milliseconds, an integer, or a
//! timestamp type), `id` (text or an integer), `side`, `price` and `amount`
//! (doubles); `type`, `cost`, `date` and any index column are not used.
//! A double is read as the shortest decimal that reads back to it (what
//! Python's `repr` and freqtrade's JSON files write), so `0.1` is `0.1`.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use arrow_array::Array;
use arrow_array::cast::AsArray as _;
use arrow_array::types::{Float32Type, Float64Type, Int32Type, Int64Type};
use arrow_schema::{DataType, TimeUnit};
use ck_bus::{Closed, Event};
use ck_model::Ts;
use parquet::file::reader::{FileReader as _, SerializedFileReader};
use parquet::record::Field;

use super::{ImportError, ImportStats, ImportTarget, TsUnit, report_bad, row_to_trade};

/// The columns read, in this order.
const COLUMNS: [&str; 5] = ["timestamp", "id", "side", "price", "amount"];

/// One value of a row.
#[derive(Debug, Clone, PartialEq)]
enum Cell<'a> {
    Null,
    Int(i64),
    Float(f64),
    /// A value already written as its text (an `f32`'s shortest form).
    Owned(String),
    Text(&'a str),
    /// A timestamp type, in nanoseconds.
    Nanos(i64),
}

impl Cell<'_> {
    /// The value as the trade's text field: a double as its shortest
    /// round-trip decimal, an integral double as an integer (an id pandas
    /// turned into floats), null as empty.
    fn text(&self) -> String {
        match self {
            Cell::Null => String::new(),
            Cell::Int(i) => i.to_string(),
            Cell::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => format!("{f:.0}"),
            Cell::Float(f) => f.to_string(),
            Cell::Owned(s) => s.clone(),
            Cell::Text(s) => (*s).to_owned(),
            Cell::Nanos(n) => Ts(*n).to_string(),
        }
    }
}

/// A freqtrade `.feather` trades file.
pub(super) fn import_feather(
    path: &Path,
    target: &ImportTarget,
    emit: &mut dyn FnMut(Event) -> Result<(), Closed>,
) -> Result<ImportStats, ImportError> {
    let (file, format) = open(path)?;
    let batches = arrow_ipc::reader::FileReader::try_new(BufReader::new(file), None)
        .map_err(|e| format(format!("not a feather (Arrow IPC) file: {e}")))?;
    let mut rows = Rows::new(path, target, emit);
    for batch in batches {
        let batch = batch.map_err(|e| format(format!("a bad record batch: {e}")))?;
        let columns = COLUMNS
            .iter()
            .map(|name| {
                batch.column_by_name(name).ok_or_else(|| {
                    format(missing(
                        name,
                        batch.schema().fields().iter().map(|f| f.name().as_str()),
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        for r in 0..batch.num_rows() {
            let cells = columns
                .iter()
                .zip(COLUMNS)
                .map(|(array, name)| arrow_cell(array.as_ref(), r, name))
                .collect::<Result<Vec<_>, _>>()
                .map_err(format)?;
            rows.take(&cells)?;
        }
    }
    Ok(rows.stats)
}

/// A freqtrade `.parquet` trades file.
pub(super) fn import_parquet(
    path: &Path,
    target: &ImportTarget,
    emit: &mut dyn FnMut(Event) -> Result<(), Closed>,
) -> Result<ImportStats, ImportError> {
    let (file, format) = open(path)?;
    let reader =
        SerializedFileReader::new(file).map_err(|e| format(format!("not a Parquet file: {e}")))?;
    let fields = reader.metadata().file_metadata().schema().get_fields();
    let at = COLUMNS
        .iter()
        .map(|name| {
            fields
                .iter()
                .position(|f| f.name() == *name)
                .ok_or_else(|| format(missing(name, fields.iter().map(|f| f.name()))))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut rows = Rows::new(path, target, emit);
    let iter = reader
        .get_row_iter(None)
        .map_err(|e| format(format!("unreadable rows: {e}")))?;
    for row in iter {
        let row = row.map_err(|e| format(format!("an unreadable row: {e}")))?;
        let values: Vec<&Field> = row.get_column_iter().map(|(_, f)| f).collect();
        let cells = at
            .iter()
            .zip(COLUMNS)
            .map(|(&i, name)| {
                values
                    .get(i)
                    .ok_or_else(|| format!("a row without column `{name}`"))
                    .and_then(|f| parquet_cell(f, name))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(format)?;
        rows.take(&cells)?;
    }
    Ok(rows.stats)
}

/// The file, and the error for it as not of this layout (saying why).
fn open(path: &Path) -> Result<(File, impl Fn(String) -> ImportError + Copy + '_), ImportError> {
    let file = File::open(path).map_err(|source| ImportError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok((file, move |why| ImportError::Format {
        path: path.to_owned(),
        why,
    }))
}

/// Rows to trades, counted, bad ones reported.
struct Rows<'a> {
    path: &'a Path,
    target: ImportTarget,
    emit: &'a mut dyn FnMut(Event) -> Result<(), Closed>,
    stats: ImportStats,
    row: u64,
}

impl<'a> Rows<'a> {
    fn new(
        path: &'a Path,
        target: &ImportTarget,
        emit: &'a mut dyn FnMut(Event) -> Result<(), Closed>,
    ) -> Rows<'a> {
        Rows {
            path,
            // freqtrade's `timestamp` is in milliseconds.
            target: ImportTarget {
                ts_unit: TsUnit::Millis,
                ..target.clone()
            },
            emit,
            stats: ImportStats::default(),
            row: 0,
        }
    }

    /// One row's cells, in [`COLUMNS`]' order.
    fn take(&mut self, cells: &[Cell<'_>]) -> Result<(), ImportError> {
        self.row += 1;
        let text: Vec<String> = cells.iter().map(Cell::text).collect();
        let [ts, id, side, price, amount] = [0, 1, 2, 3, 4].map(|i| text[i].as_str());
        let sent = match row_to_trade(&self.target, ts, id, price, amount, side) {
            Ok(trade) => {
                self.stats.trades += 1;
                (self.emit)(Event::Trade(trade))
            }
            Err(message) => {
                let input = format!("[{ts}, {id:?}, {side:?}, {price}, {amount}]");
                report_bad(
                    self.path,
                    &self.target,
                    &mut self.stats,
                    (
                        self.row,
                        message,
                        &input,
                        Some(id).filter(|i| !i.is_empty()),
                    ),
                    self.emit,
                )
            }
        };
        sent.map_err(ImportError::from)
    }
}

/// Why a file lacks a column, naming those it has.
fn missing<'n>(name: &str, found: impl Iterator<Item = &'n str>) -> String {
    let found: Vec<&str> = found.collect();
    format!(
        "not a freqtrade trades file: no `{name}` column (found: {}; expected {})",
        found.join(", "),
        COLUMNS.join(", ")
    )
}

/// Row `r` of an Arrow column.
fn arrow_cell<'a>(array: &'a dyn Array, r: usize, name: &str) -> Result<Cell<'a>, String> {
    if array.is_null(r) {
        return Ok(Cell::Null);
    }
    Ok(match array.data_type() {
        DataType::Null => Cell::Null,
        DataType::Int64 => Cell::Int(array.as_primitive::<Int64Type>().value(r)),
        DataType::Int32 => Cell::Int(i64::from(array.as_primitive::<Int32Type>().value(r))),
        DataType::Float64 => Cell::Float(array.as_primitive::<Float64Type>().value(r)),
        DataType::Float32 => Cell::Owned(array.as_primitive::<Float32Type>().value(r).to_string()),
        DataType::Utf8 => Cell::Text(array.as_string::<i32>().value(r)),
        DataType::LargeUtf8 => Cell::Text(array.as_string::<i64>().value(r)),
        DataType::Utf8View => Cell::Text(array.as_string_view().value(r)),
        DataType::Timestamp(unit, _) => {
            let v = array.as_primitive::<Int64Type>().value(r);
            Cell::Nanos(nanos(v, *unit).ok_or_else(|| format!("`{name}` {v} is out of range"))?)
        }
        other => return Err(format!("column `{name}` is of type {other}, not read")),
    })
}

/// A timestamp of `unit` in nanoseconds.
fn nanos(v: i64, unit: TimeUnit) -> Option<i64> {
    match unit {
        TimeUnit::Second => v.checked_mul(1_000_000_000),
        TimeUnit::Millisecond => v.checked_mul(1_000_000),
        TimeUnit::Microsecond => v.checked_mul(1_000),
        TimeUnit::Nanosecond => Some(v),
    }
}

/// One Parquet value.
fn parquet_cell<'a>(field: &'a Field, name: &str) -> Result<Cell<'a>, String> {
    Ok(match field {
        Field::Null => Cell::Null,
        Field::Long(v) => Cell::Int(*v),
        Field::Int(v) => Cell::Int(i64::from(*v)),
        Field::Double(v) => Cell::Float(*v),
        Field::Float(v) => Cell::Owned(v.to_string()),
        Field::Str(s) => Cell::Text(s),
        Field::TimestampMillis(v) => Cell::Nanos(
            nanos(*v, TimeUnit::Millisecond).ok_or_else(|| format!("`{name}` {v} out of range"))?,
        ),
        Field::TimestampMicros(v) => Cell::Nanos(
            nanos(*v, TimeUnit::Microsecond).ok_or_else(|| format!("`{name}` {v} out of range"))?,
        ),
        other => return Err(format!("column `{name}` holds {other}, not read")),
    })
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::super::tests::{import_dump, same_trades, target};
    use super::super::{ImportFormat, import_file};
    use super::*;

    /// Writes a trades frame as freqtrade does (`trades_list_to_df`, then
    /// `to_feather(compression_level=9, compression="lz4")` and
    /// `to_parquet()`), with pandas and pyarrow from PyPI.
    const WRITE: &str = r#"
import json, sys
import pandas as pd
rows = json.load(open(sys.argv[1]))
df = pd.DataFrame(rows, columns=["timestamp", "id", "type", "side", "price", "amount", "cost"])
df["date"] = pd.to_datetime(df["timestamp"], unit="ms", utc=True)
df.reset_index(drop=True).to_feather(sys.argv[2], compression_level=9, compression="lz4")
df.reset_index(drop=True).to_parquet(sys.argv[3])
"#;

    #[test]
    fn freqtrade_feather_and_parquet_trade_files_import_exactly() {
        let python = ck_testkit::python_with(
            &["pandas", "pyarrow"],
            "writes freqtrade's feather and parquet trade files with pandas",
        );
        let recorded = ck_testkit::bench_data::binance_trades();
        let float = |d: ck_model::Decimal| -> f64 { d.to_string().parse().expect("float") };
        let mut rows: Vec<serde_json::Value> = recorded
            .iter()
            .map(|t| {
                serde_json::json!([
                    t.ts_exchange.0 / 1_000_000,
                    t.trade_id.to_string(),
                    null,
                    t.side.as_str(),
                    float(t.price),
                    float(t.size),
                    float(t.price) * float(t.size),
                ])
            })
            .collect();
        // A tiny amount, and a trade without a side (refused, counted).
        rows.push(serde_json::json!([
            1_723_161_255_342_i64,
            "90000001",
            null,
            "buy",
            61000.5,
            1e-5,
            0.61
        ]));
        rows.push(serde_json::json!([
            1_723_161_255_343_i64,
            "90000002",
            null,
            null,
            61000.5,
            0.1,
            6100.05
        ]));
        let dir = tempfile::tempdir().expect("dir");
        let json = dir.path().join("rows.json");
        std::fs::write(&json, serde_json::to_vec(&rows).expect("json")).expect("write");
        let feather = dir.path().join("BTC_USDT-trades.feather");
        let parquet = dir.path().join("BTC_USDT-trades.parquet");
        let out = Command::new(&python)
            .args(["-c", WRITE])
            .args([&json, &feather, &parquet])
            .output()
            .expect("python");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for path in [&feather, &parquet] {
            assert_eq!(ImportFormat::detect(path), ImportFormat::FreqtradeTrades);
            let (got, stats) = import_dump(path, ImportFormat::FreqtradeTrades);
            same_trades(&got[..recorded.len()], &recorded);
            assert_eq!(
                got[recorded.len()].size.to_string(),
                "0.00001",
                "{}: the shortest decimal of the double",
                path.display()
            );
            assert_eq!(stats.trades, recorded.len() as u64 + 1);
            assert_eq!(stats.bad_row_count, 1, "{}", path.display());
            assert!(stats.bad_rows[0].1.contains("side"), "{:?}", stats.bad_rows);
            assert_eq!(stats.bad_rows[0].0, recorded.len() as u64 + 2);
        }
    }

    #[test]
    fn a_file_that_is_not_a_trades_frame_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("dir");
        let target = ImportTarget {
            format: ImportFormat::FreqtradeTrades,
            ..target()
        };
        let feather = dir.path().join("BTC_USDT-trades.feather");
        std::fs::write(&feather, b"ARROW1\0\0not really").expect("write");
        let err = import_file(&feather, &target, |_| Ok(()))
            .expect_err("refused")
            .to_string();
        assert!(err.contains("not a feather (Arrow IPC) file"), "{err}");
        let parquet = dir.path().join("BTC_USDT-trades.parquet");
        std::fs::write(&parquet, b"PAR1 nope").expect("write");
        let err = import_file(&parquet, &target, |_| Ok(()))
            .expect_err("refused")
            .to_string();
        assert!(err.contains("not a Parquet file"), "{err}");
    }

    #[test]
    fn cells_read_as_freqtrade_wrote_them() {
        assert_eq!(Cell::Float(0.1).text(), "0.1");
        assert_eq!(Cell::Float(1e-5).text(), "0.00001");
        assert_eq!(Cell::Float(3_735_683_259.0).text(), "3735683259");
        assert_eq!(Cell::Int(42).text(), "42");
        assert_eq!(Cell::Null.text(), "");
        assert_eq!(
            Cell::Nanos(1_723_161_255_342_000_000).text(),
            Ts(1_723_161_255_342_000_000).to_string()
        );
        assert_eq!(
            nanos(1_723_161_255_342, TimeUnit::Millisecond),
            Some(1_723_161_255_342_000_000)
        );
        assert_eq!(nanos(i64::MAX, TimeUnit::Second), None);
    }
}
