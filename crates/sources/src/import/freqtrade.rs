//! freqtrade's trade files (`freqtrade download-data --dl-trades`):
//! `<PAIR>-trades.json` or `.json.gz`, one JSON array of trades, each a
//! list in freqtrade's column order `[timestamp, id, type, side, price,
//! amount, cost]` (timestamp in milliseconds, `type` and `cost` unused),
//! or, in files written before freqtrade 2020.x, an object with those keys
//! (ccxt's trade). Read as a stream: the array is never held whole.
//!
//! Prices and amounts are the JSON numbers' text, exactly as written
//! (freqtrade writes Python floats, shortest round-trip; an exponent such as
//! `1e-05` is written out in full). freqtrade's `feather` and `parquet`
//! trade files are read by [`super::freqtrade_columns`].

use std::fmt;
use std::io::BufReader;
use std::path::Path;

use ck_bus::{Closed, Event};
use serde::de::{DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::{
    ImportError, ImportStats, ImportTarget, TsUnit, has_extension, open_maybe_gzipped, report_bad,
    row_to_trade,
};

/// A freqtrade trades file, gzipped (`.gz`) or not.
pub(super) fn import_freqtrade(
    path: &Path,
    target: &ImportTarget,
    emit: &mut dyn FnMut(Event) -> Result<(), Closed>,
) -> Result<ImportStats, ImportError> {
    if has_extension(path, "feather") {
        return super::freqtrade_columns::import_feather(path, target, emit);
    }
    if has_extension(path, "parquet") {
        return super::freqtrade_columns::import_parquet(path, target, emit);
    }
    let io = |source| ImportError::Io {
        path: path.to_owned(),
        source,
    };
    let reader = open_maybe_gzipped(path)?;
    let millis = ImportTarget {
        ts_unit: TsUnit::Millis,
        ..target.clone()
    };
    let mut each = EachTrade {
        path,
        target: &millis,
        emit,
        stats: ImportStats::default(),
        closed: None,
    };
    let mut json = serde_json::Deserializer::from_reader(BufReader::new(reader));
    let read = (&mut json).deserialize_seq(&mut each);
    if let Some(closed) = each.closed {
        return Err(closed.into());
    }
    read.and_then(|()| json.end()).map_err(|e| {
        if e.is_io() {
            io(e.into())
        } else {
            ImportError::Format {
                path: path.to_owned(),
                why: format!("not a freqtrade trades file (a JSON array of trades): {e}"),
            }
        }
    })?;
    Ok(each.stats)
}

/// Takes the array's elements one at a time.
struct EachTrade<'a> {
    path: &'a Path,
    target: &'a ImportTarget,
    emit: &'a mut dyn FnMut(Event) -> Result<(), Closed>,
    stats: ImportStats,
    /// Set when the pipeline stopped taking events.
    closed: Option<Closed>,
}

impl<'de> Visitor<'de> for &mut EachTrade<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array of trades")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut row = 0u64;
        while let Some(element) = seq.next_element::<Box<RawValue>>()? {
            row += 1;
            let text = element.get();
            let event = trade_of(self.target, text);
            let sent = match event {
                Ok(trade) => {
                    self.stats.trades += 1;
                    (self.emit)(Event::Trade(trade))
                }
                Err((message, id)) => report_bad(
                    self.path,
                    self.target,
                    &mut self.stats,
                    (row, message, text, id.as_deref()),
                    self.emit,
                ),
            };
            if let Err(closed) = sent {
                self.closed = Some(closed);
                return Err(serde::de::Error::custom("the pipeline stopped"));
            }
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for &mut EachTrade<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

/// One element: a list `[timestamp, id, type, side, price, amount, cost]`
/// or an object with those keys. On error, why and the id if readable.
fn trade_of(
    target: &ImportTarget,
    text: &str,
) -> Result<ck_model::Trade, (String, Option<String>)> {
    #[derive(serde::Deserialize)]
    struct Object<'a> {
        #[serde(borrow)]
        timestamp: &'a RawValue,
        #[serde(borrow)]
        id: &'a RawValue,
        #[serde(borrow, default)]
        side: Option<&'a RawValue>,
        #[serde(borrow)]
        price: &'a RawValue,
        #[serde(borrow)]
        amount: &'a RawValue,
    }
    let fields: [&RawValue; 5] = if text.trim_start().starts_with('[') {
        let list: Vec<&RawValue> =
            serde_json::from_str(text).map_err(|e| (format!("bad trade: {e}"), None))?;
        if list.len() < 6 {
            return Err((
                format!(
                    "a trade has {} fields, not [timestamp, id, type, side, price, amount, cost]",
                    list.len()
                ),
                None,
            ));
        }
        [list[0], list[1], list[3], list[4], list[5]]
    } else {
        let o: Object<'_> =
            serde_json::from_str(text).map_err(|e| (format!("bad trade: {e}"), None))?;
        let null: &RawValue = serde_json::from_str("null").map_err(|e| (e.to_string(), None))?;
        [o.timestamp, o.id, o.side.unwrap_or(null), o.price, o.amount]
    };
    let [ts, id, side, price, amount] = fields.map(plain);
    let number = |raw: String| -> String {
        // A float written with an exponent, written out in full.
        if raw.contains(['e', 'E']) {
            raw.parse::<f64>().map_or(raw, |f| f.to_string())
        } else {
            raw
        }
    };
    let id_text = (!id.is_empty()).then(|| id.clone());
    row_to_trade(target, &ts, &id, &number(price), &number(amount), &side)
        .map_err(|message| (message, id_text))
}

/// A JSON value as text: a string unquoted, `null` empty, a number as written.
fn plain(raw: &RawValue) -> String {
    let t = raw.get().trim();
    if t == "null" {
        String::new()
    } else if t.starts_with('"') {
        serde_json::from_str::<String>(t).unwrap_or_default()
    } else {
        t.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::io::Write as _;

    use super::super::tests::{import_dump, same_trades, target};
    use super::super::{ImportFormat, import_file};
    use super::*;

    /// A number as Python's `json` writes a float: the shortest text that
    /// reads back to the same double.
    fn float(d: ck_model::Decimal) -> String {
        let f: f64 = d.to_string().parse().expect("float");
        format!("{f:?}")
    }

    #[test]
    fn freqtrade_trade_files_import_in_every_layout() {
        let dir = tempfile::tempdir().expect("dir");
        let recorded = ck_testkit::bench_data::binance_trades();
        let ms = |t: &ck_model::Trade| t.ts_exchange.0 / 1_000_000;
        // Today's layout: lists in DEFAULT_TRADES_COLUMNS order.
        let lists: Vec<String> = recorded
            .iter()
            .map(|t| {
                format!(
                    "[{},\"{}\",null,\"{}\",{},{},{}]",
                    ms(t),
                    t.trade_id,
                    t.side.as_str(),
                    float(t.price),
                    float(t.size),
                    float(t.price) // `cost`, unused
                )
            })
            .collect();
        let mut body = format!("[{}", lists.join(", "));
        // A tiny amount Python writes with an exponent, and a trade
        // without a side (refused, counted).
        body.push_str(", [1723161255342,\"90000001\",null,\"buy\",61000.5,1e-05,0.61]");
        body.push_str(", [1723161255343,\"90000002\",null,null,61000.5,0.1,6100.05]]");
        let plain = dir.path().join("BTC_USDT-trades.json");
        std::fs::write(&plain, &body).expect("write");
        assert_eq!(ImportFormat::detect(&plain), ImportFormat::FreqtradeTrades);
        let (got, stats) = import_dump(&plain, ImportFormat::FreqtradeTrades);
        same_trades(&got[..recorded.len()], &recorded);
        let tiny = &got[recorded.len()];
        assert_eq!(tiny.size.to_string(), "0.00001", "the exponent written out");
        assert_eq!(stats.trades, recorded.len() as u64 + 1);
        assert_eq!(stats.bad_row_count, 1);
        assert!(stats.bad_rows[0].1.contains("side"), "{:?}", stats.bad_rows);
        assert_eq!(
            stats.bad_rows[0].0,
            recorded.len() as u64 + 2,
            "the element's number"
        );

        // Gzipped, as `jsongz` writes it.
        let gz = dir.path().join("BTC_USDT-trades.json.gz");
        let mut w = flate2::write::GzEncoder::new(
            File::create(&gz).expect("file"),
            flate2::Compression::default(),
        );
        w.write_all(body.as_bytes()).expect("write");
        w.finish().expect("finish");
        assert_eq!(ImportFormat::detect(&gz), ImportFormat::FreqtradeTrades);
        let (zipped, _) = import_dump(&gz, ImportFormat::FreqtradeTrades);
        assert_eq!(zipped, got);

        // Files from before 2020: ccxt's trade objects.
        let objects: Vec<String> = recorded
            .iter()
            .map(|t| {
                format!(
                    "{{\"info\": {{\"a\": 1}}, \"timestamp\": {}, \"datetime\": \"x\", \"symbol\": \"BTC/USDT\", \"id\": \"{}\", \"order\": null, \"type\": null, \"takerOrMaker\": null, \"side\": \"{}\", \"price\": {}, \"amount\": {}, \"cost\": 1.0, \"fee\": null}}",
                    ms(t),
                    t.trade_id,
                    t.side.as_str(),
                    float(t.price),
                    float(t.size),
                )
            })
            .collect();
        let old = dir.path().join("BTC_USDT-trades-old.json");
        std::fs::write(&old, format!("[{}]", objects.join(",\n"))).expect("write");
        let (from_objects, stats) = import_dump(&old, ImportFormat::FreqtradeTrades);
        same_trades(&from_objects, &recorded);
        assert_eq!(stats.bad_row_count, 0);

        // A file that is not an array of trades is an error naming it.
        let format = ImportTarget {
            format: ImportFormat::FreqtradeTrades,
            ..target()
        };
        let object = dir.path().join("BTC_USDT-trades-x.json");
        std::fs::write(&object, "{\"not\": \"an array\"}").expect("write");
        let err = import_file(&object, &format, |_| Ok(()))
            .expect_err("refused")
            .to_string();
        assert!(err.contains("not a freqtrade trades file"), "{err}");
    }
}
