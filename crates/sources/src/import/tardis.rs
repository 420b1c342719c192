//! Tardis.dev's downloadable CSV: trades, and book tickers as quotes.

use std::io::BufReader;
use std::path::Path;

use ck_bus::{Closed, Event};
use ck_model::Decimal;

use super::{
    ImportError, ImportFormat, ImportStats, ImportTarget, Row, TsUnit, csv_reader,
    open_maybe_gzipped, read_records, row_to_trade, unix_time,
};
use crate::line_bound::LineBound;

/// A Tardis.dev CSV (`target.format`), gzipped (`.gz`) or not.
pub(super) fn import_tardis(
    path: &Path,
    target: &ImportTarget,
    emit: &mut dyn FnMut(Event) -> Result<(), Closed>,
) -> Result<ImportStats, ImportError> {
    let io = |source| ImportError::Io {
        path: path.to_owned(),
        source,
    };
    let reader = open_maybe_gzipped(path)?;
    let mut csv = csv_reader(BufReader::new(LineBound::new(reader)), true);
    let headers = csv.headers().map_err(|e| io(e.into()))?.clone();
    let wanted: &[&'static str] = if target.format == ImportFormat::TardisTrades {
        &[
            "timestamp",
            "local_timestamp",
            "id",
            "side",
            "price",
            "amount",
        ]
    } else {
        &[
            "timestamp",
            "local_timestamp",
            "ask_amount",
            "ask_price",
            "bid_price",
            "bid_amount",
        ]
    };
    let mut cols = Vec::new();
    for name in wanted {
        cols.push(
            headers
                .iter()
                .position(|h| h.eq_ignore_ascii_case(name))
                .ok_or(ImportError::Header {
                    path: path.to_owned(),
                    column: name,
                })?,
        );
    }
    // Tardis times are microseconds since the epoch.
    let micros = ImportTarget {
        ts_unit: TsUnit::Micros,
        ..target.clone()
    };
    let trades = target.format == ImportFormat::TardisTrades;
    read_records(path, target, &mut csv, emit, |record, _| {
        let field = |i: usize| super::field(record, cols[i]);
        let event = unix_time(field(1), TsUnit::Micros).and_then(|received| {
            let at = ImportTarget {
                received,
                ..micros.clone()
            };
            if trades {
                row_to_trade(&at, field(0), field(2), field(4), field(5), field(3)).map(|mut t| {
                    t.ts_received = received;
                    Event::Trade(t)
                })
            } else {
                tardis_quote(&at, [field(0), field(2), field(3), field(4), field(5)])
                    .map(Event::Quote)
            }
        });
        match event {
            Ok(e) => Row::Load(e),
            Err(message) => Row::Bad(message, trades.then(|| field(2).to_owned())),
        }
    })
}

/// A Tardis `book_ticker` row: `[timestamp, ask_amount, ask_price,
/// bid_price, bid_amount]`.
fn tardis_quote(
    target: &ImportTarget,
    [ts, ask_amount, ask, bid, bid_amount]: [&str; 5],
) -> Result<ck_model::Quote, String> {
    let ts_exchange = unix_time(ts, TsUnit::Micros)?;
    let decimal =
        |what: &str, text: &str| Decimal::parse(text).map_err(|e| format!("bad {what}: {e}"));
    let optional = |what: &str, text: &str| {
        if text.is_empty() {
            Ok(None)
        } else {
            decimal(what, text).map(Some)
        }
    };
    let (bid, ask) = (decimal("bid_price", bid)?, decimal("ask_price", ask)?);
    if bid.is_negative() || ask.is_negative() || bid.is_zero() || ask.is_zero() {
        return Err(format!(
            "prices must be positive, got bid {bid} and ask {ask}"
        ));
    }
    Ok(ck_model::Quote {
        exchange: target.exchange,
        instrument: target.instrument.clone(),
        bid,
        bid_size: optional("bid_amount", bid_amount)?,
        ask,
        ask_size: optional("ask_amount", ask_amount)?,
        last: None,
        ts_exchange,
        ts_received: target.received,
    })
}

#[cfg(test)]
mod tests {
    use super::super::import_file;
    use super::super::tests::{import_dump, same_trades, target};
    use super::*;
    use ck_model::Ts;
    use std::fs::File;

    #[test]
    fn tardis_trades_and_book_tickers_import_exactly_gzipped() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().expect("dir");
        let recorded = ck_testkit::bench_data::binance_trades();
        let quotes =
            ck_testkit::bench_data::recorded_quotes("hftbacktest/binance_spot_btcusdt_20240808.gz");
        let micros = |ts: Ts| ts.0 / 1_000;
        let gz = |name: &str, body: &str| {
            let path = dir.path().join(name);
            let mut w = flate2::write::GzEncoder::new(
                File::create(&path).expect("file"),
                flate2::Compression::default(),
            );
            w.write_all(body.as_bytes()).expect("write");
            w.finish().expect("finish");
            path
        };
        let mut body =
            "exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n".to_owned();
        for t in &recorded {
            body.push_str(&format!(
                "binance,BTCUSDT,{},{},{},{},{},{}\n",
                micros(t.ts_exchange),
                micros(t.ts_received),
                t.trade_id,
                t.side.as_str(),
                t.price,
                t.size
            ));
        }
        body.push_str("binance,BTCUSDT,1723161255342000,1723161255343000,,buy,61000,1\n");
        // Tardis writes `unknown` where the venue does not say the side.
        body.push_str(
            "binance,BTCUSDT,1723161255344000,1723161255345000,99000001,unknown,61000,1\n",
        );
        let path = gz("binance_trades_2024-08-08_BTCUSDT.csv.gz", &body);
        assert_eq!(ImportFormat::detect(&path), ImportFormat::TardisTrades);
        let (got, stats) = import_dump(&path, ImportFormat::TardisTrades);
        same_trades(&got[..recorded.len()], &recorded);
        assert_eq!(got[recorded.len()].side, ck_model::Side::Unknown);
        assert_eq!(
            got[0].ts_received.0,
            micros(recorded[0].ts_received) * 1_000,
            "local_timestamp is the receive time"
        );
        assert_eq!(stats.bad_row_count, 1, "the row without an id");
        assert!(
            stats.bad_rows[0].1.contains("trade_id"),
            "{:?}",
            stats.bad_rows
        );

        let mut body =
            "exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount\n"
                .to_owned();
        for q in &quotes {
            body.push_str(&format!(
                "binance,BTCUSDT,{},{},{},{},{},{}\n",
                micros(q.ts_exchange),
                micros(q.ts_received),
                q.ask_size.map(|d| d.to_string()).unwrap_or_default(),
                q.ask,
                q.bid,
                q.bid_size.map(|d| d.to_string()).unwrap_or_default(),
            ));
        }
        let path = gz("binance_book_ticker_2024-08-08_BTCUSDT.csv.gz", &body);
        let target = ImportTarget {
            format: ImportFormat::detect(&path),
            ..target()
        };
        let mut got = Vec::new();
        let stats = import_file(&path, &target, |e| {
            if let Event::Quote(q) = e {
                got.push(q);
            }
            Ok(())
        })
        .expect("import");
        assert_eq!(
            (stats.quotes, stats.bad_row_count),
            (quotes.len() as u64, 0)
        );
        for (a, b) in got.iter().zip(&quotes) {
            assert_eq!(
                (a.bid, a.ask, a.bid_size, a.ask_size),
                (b.bid, b.ask, b.bid_size, b.ask_size)
            );
            assert_eq!(a.ts_exchange.0 / 1_000, micros(b.ts_exchange));
        }
    }
}
