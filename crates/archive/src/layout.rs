//! Where archive files live: a Hive layout,
//! `<root>/<kind>/exchange=<e>/instrument=<i>/date=<YYYY-MM-DD>/<file>.parquet`,
//! with `<root>` usually `<data_dir>/archive`.

use std::path::{Path, PathBuf};

use ck_model::{Exchange, Instrument, Ts};

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Trades.
    Trades,
    /// Best bid and ask.
    Quotes,
    /// Candles of every interval (an `interval` column) built by candlekeep.
    Candles,
    /// The exchange's own candles (fetched to verify ours, or imported).
    ExchangeCandles,
}

impl Kind {
    /// The folder name: `trades`, `quotes`, `candles`, `exchange_candles`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Trades => "trades",
            Kind::Quotes => "quotes",
            Kind::Candles => "candles",
            Kind::ExchangeCandles => "exchange_candles",
        }
    }
}

/// Nanoseconds in a UTC day.
pub const DAY_NANOS: i64 = 86_400 * 1_000_000_000;

/// The UTC day holding `ts`, as days since 1970-01-01.
#[must_use]
pub const fn day_of(ts: Ts) -> i64 {
    ts.0.div_euclid(DAY_NANOS)
}

/// `YYYY-MM-DD` of a day since 1970-01-01 (proleptic Gregorian, UTC).
#[must_use]
pub fn date_text(day: i64) -> String {
    // Howard Hinnant's days-to-civil.
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The day since 1970-01-01 of a `YYYY-MM-DD` date, as [`date_text`]
/// writes it; `None` for anything else.
#[must_use]
pub fn parse_date(text: &str) -> Option<i64> {
    let mut parts = text.splitn(3, '-');
    let y: i64 = parts.next().filter(|p| p.len() == 4)?.parse().ok()?;
    let m: i64 = parts.next().filter(|p| p.len() == 2)?.parse().ok()?;
    let d: i64 = parts.next().filter(|p| p.len() == 2)?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Howard Hinnant's days-from-civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let day = era * 146_097 + doe - 719_468;
    // 2026-02-31 is not a date: it must print as itself.
    (date_text(day) == text).then_some(day)
}

/// The folder of one instrument's days: `<root>/<kind>/exchange=<e>/instrument=<i>`.
#[must_use]
pub fn instrument_dir(
    root: &Path,
    kind: Kind,
    exchange: Exchange,
    instrument: &Instrument,
) -> PathBuf {
    instrument_dir_named(root, kind.as_str(), exchange, instrument)
}

/// [`instrument_dir`] of a kind named by its folder (the book files'
/// kinds, which are not days rewritten whole).
#[must_use]
pub fn instrument_dir_named(
    root: &Path,
    kind: &str,
    exchange: Exchange,
    instrument: &Instrument,
) -> PathBuf {
    root.join(kind)
        .join(format!("exchange={}", exchange.as_str()))
        .join(format!("instrument={}", instrument.as_str()))
}

/// The folder of one day of one instrument.
#[must_use]
pub fn day_dir(
    root: &Path,
    kind: Kind,
    exchange: Exchange,
    instrument: &Instrument,
    day: i64,
) -> PathBuf {
    instrument_dir(root, kind, exchange, instrument).join(format!("date={}", date_text(day)))
}

/// The file of one day of one instrument: `data.parquet` in [`day_dir`].
/// A day is one file, rewritten whole (write, fsync, rename) when it
/// changes.
#[must_use]
pub fn day_file(
    root: &Path,
    kind: Kind,
    exchange: Exchange,
    instrument: &Instrument,
    day: i64,
) -> PathBuf {
    day_dir(root, kind, exchange, instrument, day).join("data.parquet")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_utc_dates() {
        assert_eq!(date_text(0), "1970-01-01");
        assert_eq!(date_text(-1), "1969-12-31");
        assert_eq!(date_text(19_723), "2024-01-01");
        assert_eq!(date_text(19_782), "2024-02-29", "a leap day");
        assert_eq!(date_text(20_793), "2026-12-06");
        assert_eq!(day_of(Ts(DAY_NANOS - 1)), 0);
        assert_eq!(day_of(Ts(-1)), -1);
        for day in [-700_000, -1, 0, 19_782, 20_793, 2_900_000] {
            assert_eq!(parse_date(&date_text(day)), Some(day), "{day}");
        }
        for bad in [
            "2026-02-29",
            "2026-13-01",
            "2026-1-01",
            "26-01-01",
            "2026-01-01x",
            "",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn paths_are_hive_partitions() {
        let btc = Instrument::parse("BTC-USDT").expect("instrument");
        let path = day_file(
            Path::new("/data/archive"),
            Kind::Trades,
            Exchange::Binance,
            &btc,
            20_793,
        );
        assert_eq!(
            path,
            Path::new(
                "/data/archive/trades/exchange=binance/instrument=BTC-USDT/date=2026-12-06/data.parquet"
            )
        );
    }
}
