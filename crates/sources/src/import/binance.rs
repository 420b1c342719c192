//! Binance's public dumps (data.binance.vision): trades, aggregated trades
//! and klines, zipped or not.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use ck_bus::{Closed, Event};

use super::{
    ImportError, ImportFormat, ImportStats, ImportTarget, Row, TsUnit, csv_reader, has_extension,
    is_header_row, read_records, row_to_trade, unix_time,
};
use crate::line_bound::LineBound;

/// A Binance dump (`target.format`), zipped or not.
pub(super) fn import_binance_dump(
    path: &Path,
    target: &ImportTarget,
    emit: &mut dyn FnMut(Event) -> Result<(), Closed>,
) -> Result<ImportStats, ImportError> {
    let io = |source| ImportError::Io {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    if !has_extension(path, "zip") {
        return read_binance_dump(path, target, BufReader::new(LineBound::new(file)), emit);
    }
    let bad_zip =
        |e: zip::result::ZipError| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e));
    let mut archive = zip::ZipArchive::new(file).map_err(bad_zip)?;
    // A dump holds one CSV; take the first that is one.
    let index = (0..archive.len())
        .find(|i| {
            archive
                .name_for_index(*i)
                .is_some_and(|n| n.to_ascii_lowercase().ends_with(".csv"))
        })
        .ok_or_else(|| {
            io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the zip archive holds no .csv file",
            ))
        })?;
    let entry = archive.by_index(index).map_err(bad_zip)?;
    read_binance_dump(path, target, BufReader::new(LineBound::new(entry)), emit)
}

fn read_binance_dump(
    path: &Path,
    target: &ImportTarget,
    reader: impl BufRead,
    emit: &mut dyn FnMut(Event) -> Result<(), Closed>,
) -> Result<ImportStats, ImportError> {
    if target.format == ImportFormat::BinanceKlines {
        return read_binance_klines(path, target, reader, emit);
    }
    let agg = target.format == ImportFormat::BinanceAggTrades;
    // Columns: id, price, qty, time, is_buyer_maker (and first, last ids).
    let (id, price, qty, time, maker, least) = if agg {
        (0, 1, 2, 5, 6, 7)
    } else {
        (0, 1, 2, 4, 5, 6)
    };
    let mut csv = csv_reader(reader, false);
    read_records(path, target, &mut csv, emit, |record, line_no| {
        if is_header_row(record, line_no) {
            return Row::Skip;
        }
        let field = |i: usize| super::field(record, i);
        let result = if record.len() < least {
            Err(format!(
                "expected at least {least} fields, found {}",
                record.len()
            ))
        } else {
            let side = match field(maker).to_ascii_lowercase().as_str() {
                // The buyer made the market: the taker sold.
                "true" => Ok("sell"),
                "false" => Ok("buy"),
                other => Err(format!(
                    "is_buyer_maker must be true or false, got `{other}`"
                )),
            };
            side.and_then(|side| {
                row_to_trade(
                    target,
                    field(time),
                    field(id),
                    field(price),
                    field(qty),
                    side,
                )
            })
            .and_then(|mut t| {
                if agg {
                    match (field(3).parse::<u64>(), field(4).parse::<u64>()) {
                        (Ok(f), Ok(l)) if l >= f => {
                            t.fills = u32::try_from(l - f + 1).unwrap_or(u32::MAX);
                        }
                        _ => {
                            return Err(format!(
                                "first_trade_id `{}` and last_trade_id `{}` are not a range",
                                field(3),
                                field(4)
                            ));
                        }
                    }
                }
                Ok(t)
            })
        };
        match result {
            Ok(t) => Row::Load(Event::Trade(t)),
            Err(message) => Row::Bad(message, record.get(id).map(|id| id.trim().to_owned())),
        }
    })
}

/// The interval a Binance kline dump's name says: `BTCUSDT-1m-2024-08-08.zip`.
pub(super) fn kline_interval(name: &str) -> Option<ck_model::Interval> {
    let mut parts = name.split('-');
    let _symbol = parts.next()?;
    let interval = parts.next()?;
    // A period follows: a year (and month, and day).
    parts.next()?.parse::<u16>().ok()?;
    interval.parse().ok()
}

fn read_binance_klines(
    path: &Path,
    target: &ImportTarget,
    reader: impl BufRead,
    emit: &mut dyn FnMut(Event) -> Result<(), Closed>,
) -> Result<ImportStats, ImportError> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let Some(interval) = kline_interval(name) else {
        return Err(ImportError::Io {
            path: path.to_owned(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a kline dump's name says its interval, as Binance names them: SYMBOL-1m-2024-08-08.zip",
            ),
        });
    };
    let mut csv = csv_reader(reader, false);
    read_records(path, target, &mut csv, emit, |record, line_no| {
        if is_header_row(record, line_no) {
            return Row::Skip;
        }
        let field = |i: usize| super::field(record, i);
        if record.len() < 11 {
            return Row::Bad(format!("expected 12 fields, found {}", record.len()), None);
        }
        let candle = unix_time(field(0), TsUnit::Auto).and_then(|open| {
            let count: u64 = field(8)
                .parse()
                .map_err(|_| format!("count `{}` is not a number", field(8)))?;
            // The REST kline array these rows copy, times in milliseconds.
            let row = serde_json::json!([
                open.0 / 1_000_000,
                field(1),
                field(2),
                field(3),
                field(4),
                field(5),
                0,
                field(7),
                count,
                field(9),
                field(10),
                "0"
            ]);
            crate::binance::kline_row(
                target.exchange,
                &target.instrument,
                interval,
                &row,
                target.received,
            )
            .map_err(|e| e.to_string())
        });
        match candle {
            Ok(c) => Row::Load(Event::ExchangeCandle(Box::new(c))),
            Err(message) => Row::Bad(message, None),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::super::import_file;
    use super::super::tests::{import_dump, same_trades, target};
    use super::*;
    use ck_model::{Decimal, Side, Trade};
    use std::io::Write as _;

    /// The recorded Binance trades as a Binance dump would list them: one
    /// row each, `is_buyer_maker` true where the taker sold.
    fn dump_rows(agg: bool, micros: bool) -> (Vec<Trade>, String) {
        let trades = ck_testkit::bench_data::binance_trades();
        let mut body = String::new();
        for t in &trades {
            let ms = t.ts_exchange.0 / 1_000_000;
            let time = if micros { ms * 1_000 } else { ms };
            let maker = t.side == Side::Sell;
            let quote = t.price.checked_mul(t.size).expect("quote");
            if agg {
                // One aggregate per trade, its fills its own id twice over.
                body.push_str(&format!(
                    "{},{},{},{},{},{time},{},True\n",
                    t.trade_id, t.price, t.size, t.trade_id, t.trade_id, maker
                ));
            } else {
                body.push_str(&format!(
                    "{},{},{},{quote},{time},{},True\n",
                    t.trade_id,
                    t.price,
                    t.size,
                    if maker { "True" } else { "False" }
                ));
            }
        }
        (trades, body)
    }

    #[test]
    fn binance_trade_dumps_in_every_layout_import_exactly() {
        let dir = tempfile::tempdir().expect("dir");
        // Without a header, in milliseconds (the spot dumps until 2024).
        let (recorded, body) = dump_rows(false, false);
        let plain = dir.path().join("BTCUSDT-trades-2024-08-08.csv");
        std::fs::write(&plain, &body).expect("write");
        assert_eq!(ImportFormat::detect(&plain), ImportFormat::BinanceTrades);
        let (got, stats) = import_dump(&plain, ImportFormat::BinanceTrades);
        assert_eq!(stats.bad_row_count, 0, "{:?}", stats.bad_rows);
        same_trades(&got, &recorded);

        // With a header row, in microseconds (the spot dumps since 2025),
        // zipped as Binance publishes them.
        let (_, body) = dump_rows(false, true);
        let body = format!("id,price,qty,quote_qty,time,is_buyer_maker,is_best_match\n{body}");
        let zipped = dir.path().join("BTCUSDT-trades-2025-01.zip");
        {
            let mut zip = zip::ZipWriter::new(File::create(&zipped).expect("zip"));
            zip.start_file(
                "BTCUSDT-trades-2025-01.csv",
                zip::write::SimpleFileOptions::default()
                    .compression_method(zip::CompressionMethod::Deflated),
            )
            .expect("entry");
            zip.write_all(body.as_bytes()).expect("write");
            zip.finish().expect("finish");
        }
        let (got, stats) = import_dump(&zipped, ImportFormat::detect(&zipped));
        assert_eq!(stats.bad_row_count, 0, "{:?}", stats.bad_rows);
        same_trades(&got, &recorded);
        assert_eq!(
            got[0].ts_exchange, recorded[0].ts_exchange,
            "microseconds read as such"
        );
    }

    #[test]
    fn binance_agg_trade_dumps_count_their_fills_and_report_bad_rows() {
        let dir = tempfile::tempdir().expect("dir");
        let (recorded, body) = dump_rows(true, false);
        // A header, an aggregate of three fills, and two bad rows.
        let body = format!(
            "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker,is_best_match\n\
             {body}1,61000.5,0.5,10,12,1723161255342,false,true\n\
             2,61000.5,0.5,12,10,1723161255342,false,true\n\
             3,61000.5,0.5,13,13,1723161255342,maybe,true\n"
        );
        let path = dir.path().join("BTCUSDT-aggTrades-2024-08-08.csv");
        std::fs::write(&path, &body).expect("write");
        assert_eq!(ImportFormat::detect(&path), ImportFormat::BinanceAggTrades);
        let (got, stats) = import_dump(&path, ImportFormat::BinanceAggTrades);
        same_trades(&got[..recorded.len()], &recorded);
        let extra = &got[recorded.len()];
        assert_eq!(
            (extra.fills, extra.side),
            (3, Side::Buy),
            "is_buyer_maker false: the taker bought"
        );
        assert_eq!(stats.bad_row_count, 2, "{:?}", stats.bad_rows);
        assert!(
            stats.bad_rows[0].1.contains("not a range"),
            "{:?}",
            stats.bad_rows
        );
        assert!(
            stats.bad_rows[1].1.contains("is_buyer_maker"),
            "{:?}",
            stats.bad_rows
        );
        assert_eq!(
            stats.bad_rows[0].0,
            recorded.len() as u64 + 3,
            "line numbers count the header"
        );
    }

    #[test]
    fn binance_kline_dumps_import_as_the_exchanges_candles() {
        // One-minute klines of the recorded trades, computed plainly here.
        let trades = ck_testkit::bench_data::binance_trades();
        let mut minutes: std::collections::BTreeMap<i64, Vec<&Trade>> = Default::default();
        for t in &trades {
            minutes
                .entry(t.ts_exchange.0 / 60_000_000_000)
                .or_default()
                .push(t);
        }
        let mut body = "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore\n".to_owned();
        let mut expected = Vec::new();
        for (minute, ts) in &minutes {
            let sum = |f: &dyn Fn(&&Trade) -> Decimal, only_buys: bool| {
                ts.iter()
                    .filter(|t| !only_buys || t.side == Side::Buy)
                    .map(f)
                    .fold(Decimal::ZERO, |a, b| a.checked_add(b).expect("sum"))
            };
            let volume = sum(&|t| t.size, false);
            let quote = sum(&|t| t.price.checked_mul(t.size).expect("mul"), false);
            let high = ts.iter().map(|t| t.price).max().expect("high");
            let low = ts.iter().map(|t| t.price).min().expect("low");
            let (open, close) = (ts[0].price, ts[ts.len() - 1].price);
            let open_us = minute * 60_000_000; // microseconds, as 2025 spot dumps
            body.push_str(&format!(
                "{open_us},{open},{high},{low},{close},{volume},{},{quote},{},{},{},0\n",
                open_us + 59_999_999,
                ts.len(),
                sum(&|t| t.size, true),
                sum(&|t| t.price.checked_mul(t.size).expect("mul"), true),
            ));
            expected.push((
                minute * 60_000_000_000,
                open,
                high,
                low,
                close,
                volume,
                quote,
                ts.len() as u64,
            ));
        }
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("BTCUSDT-1m-2024-08-08.csv");
        std::fs::write(&path, &body).expect("write");
        assert_eq!(ImportFormat::detect(&path), ImportFormat::BinanceKlines);
        let target = ImportTarget {
            format: ImportFormat::BinanceKlines,
            ..target()
        };
        let mut got = Vec::new();
        let stats = import_file(&path, &target, |e| {
            if let Event::ExchangeCandle(c) = e {
                got.push(*c);
            }
            Ok(())
        })
        .expect("import");
        assert_eq!(
            (stats.candles, stats.bad_row_count),
            (expected.len() as u64, 0)
        );
        let got: Vec<_> = got
            .iter()
            .map(|c| {
                assert_eq!(c.interval, ck_model::Interval::M1);
                (
                    c.open_time.0,
                    c.open,
                    c.high,
                    c.low,
                    c.close,
                    c.volume,
                    c.quote_volume,
                    c.trades,
                )
            })
            .collect();
        assert_eq!(got, expected);

        // A name without an interval is refused, naming the layout.
        let unnamed = dir.path().join("klines.csv");
        std::fs::write(&unnamed, &body).expect("write");
        let err = import_file(&unnamed, &target, |_| Ok(())).expect_err("no interval");
        assert!(err.to_string().contains("klines.csv"), "{err}");
    }
}
