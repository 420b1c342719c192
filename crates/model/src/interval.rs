//! Candle intervals, aligned to UTC.

use std::fmt;
use std::str::FromStr;

use crate::Ts;
use crate::time::NANOS_PER_SEC;

/// A candle interval. Fixed intervals align to the Unix epoch in UTC; `1w`
/// starts on Monday 00:00 UTC; `1M` is the calendar month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Interval {
    /// One second.
    S1,
    /// One minute.
    M1,
    /// Three minutes.
    M3,
    /// Five minutes.
    M5,
    /// Fifteen minutes.
    M15,
    /// Thirty minutes.
    M30,
    /// One hour.
    H1,
    /// Two hours.
    H2,
    /// Four hours.
    H4,
    /// Six hours.
    H6,
    /// Eight hours.
    H8,
    /// Twelve hours.
    H12,
    /// One day.
    D1,
    /// One week, from Monday 00:00 UTC.
    W1,
    /// One calendar month.
    Mo1,
}

/// An interval name that candlekeep does not build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown interval `{0}`; valid intervals: {list}", list = Interval::names().join(", "))]
pub struct IntervalError(pub String);

const MONDAY_OFFSET: i64 = 4 * 86_400 * NANOS_PER_SEC; // 1970-01-01 was a Thursday.

impl Interval {
    /// Every interval, finest first.
    pub const ALL: [Interval; 15] = [
        Interval::S1,
        Interval::M1,
        Interval::M3,
        Interval::M5,
        Interval::M15,
        Interval::M30,
        Interval::H1,
        Interval::H2,
        Interval::H4,
        Interval::H6,
        Interval::H8,
        Interval::H12,
        Interval::D1,
        Interval::W1,
        Interval::Mo1,
    ];

    /// The name used everywhere (`1s`, `1m`, ..., `1w`, `1M`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Interval::S1 => "1s",
            Interval::M1 => "1m",
            Interval::M3 => "3m",
            Interval::M5 => "5m",
            Interval::M15 => "15m",
            Interval::M30 => "30m",
            Interval::H1 => "1h",
            Interval::H2 => "2h",
            Interval::H4 => "4h",
            Interval::H6 => "6h",
            Interval::H8 => "8h",
            Interval::H12 => "12h",
            Interval::D1 => "1d",
            Interval::W1 => "1w",
            Interval::Mo1 => "1M",
        }
    }

    /// All names, for error messages.
    #[must_use]
    pub fn names() -> Vec<&'static str> {
        Interval::ALL.iter().map(|i| i.as_str()).collect()
    }

    /// The position in [`Interval::ALL`].
    #[must_use]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The fixed length in nanoseconds, or `None` for the calendar month.
    #[must_use]
    pub const fn fixed_nanos(self) -> Option<i64> {
        let secs = match self {
            Interval::S1 => 1,
            Interval::M1 => 60,
            Interval::M3 => 180,
            Interval::M5 => 300,
            Interval::M15 => 900,
            Interval::M30 => 1800,
            Interval::H1 => 3600,
            Interval::H2 => 7200,
            Interval::H4 => 14_400,
            Interval::H6 => 21_600,
            Interval::H8 => 28_800,
            Interval::H12 => 43_200,
            Interval::D1 => 86_400,
            Interval::W1 => 604_800,
            Interval::Mo1 => return None,
        };
        Some(secs * NANOS_PER_SEC)
    }

    /// The open time of the bucket that holds `ts`.
    #[must_use]
    pub const fn bucket_start(self, ts: Ts) -> Ts {
        match self {
            Interval::Mo1 => {
                let (y, m, _) = ts.date();
                Ts::from_date(y, m, 1)
            }
            Interval::W1 => {
                let len = 604_800 * NANOS_PER_SEC;
                Ts(ts.0 - (ts.0 - MONDAY_OFFSET).rem_euclid(len))
            }
            _ => {
                let len = match self.fixed_nanos() {
                    Some(n) => n,
                    None => NANOS_PER_SEC,
                };
                Ts(ts.0 - ts.0.rem_euclid(len))
            }
        }
    }

    /// The open time of the bucket after the one that opens at `open`, which is
    /// also that bucket's (exclusive) end.
    #[must_use]
    pub const fn next_start(self, open: Ts) -> Ts {
        match self.fixed_nanos() {
            Some(n) => Ts(open.0 + n),
            None => {
                let (y, m, _) = open.date();
                if m == 12 {
                    Ts::from_date(y + 1, 1, 1)
                } else {
                    Ts::from_date(y, m + 1, 1)
                }
            }
        }
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Interval {
    type Err = IntervalError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        // `1M` is the month; `1mo` is accepted too. Everything else is case-insensitive.
        if t == "1M" || t.eq_ignore_ascii_case("1mo") {
            return Ok(Interval::Mo1);
        }
        let lower = t.to_ascii_lowercase();
        Interval::ALL
            .into_iter()
            .find(|i| *i != Interval::Mo1 && i.as_str() == lower)
            .ok_or_else(|| IntervalError(s.to_owned()))
    }
}

impl serde::Serialize for Interval {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Interval {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Ts {
        Ts::parse(s).expect("time")
    }

    #[test]
    fn buckets_align_to_utc() {
        let ts = t("2024-03-13T17:47:31.5Z"); // a Wednesday
        let cases = [
            (Interval::S1, "2024-03-13T17:47:31Z", "2024-03-13T17:47:32Z"),
            (Interval::M3, "2024-03-13T17:45:00Z", "2024-03-13T17:48:00Z"),
            (Interval::H4, "2024-03-13T16:00:00Z", "2024-03-13T20:00:00Z"),
            (Interval::H8, "2024-03-13T16:00:00Z", "2024-03-14T00:00:00Z"),
            (Interval::D1, "2024-03-13T00:00:00Z", "2024-03-14T00:00:00Z"),
            (Interval::W1, "2024-03-11T00:00:00Z", "2024-03-18T00:00:00Z"),
            (
                Interval::Mo1,
                "2024-03-01T00:00:00Z",
                "2024-04-01T00:00:00Z",
            ),
        ];
        for (iv, open, next) in cases {
            let start = iv.bucket_start(ts);
            assert_eq!(start, t(open), "{iv}");
            assert_eq!(iv.next_start(start), t(next), "{iv}");
        }
        assert_eq!(Interval::Mo1.next_start(t("2023-12-01")), t("2024-01-01"));
        assert_eq!(
            Interval::W1.bucket_start(t("2024-03-11T00:00:00Z")),
            t("2024-03-11")
        );
        assert_eq!(
            Interval::W1.bucket_start(t("2024-03-10T23:59:59Z")),
            t("2024-03-04")
        );
    }

    #[test]
    fn names_round_trip_and_errors_list_valid_values() {
        for iv in Interval::ALL {
            assert_eq!(iv.as_str().parse::<Interval>(), Ok(iv));
        }
        assert_eq!("1m".parse::<Interval>(), Ok(Interval::M1));
        assert_eq!("1M".parse::<Interval>(), Ok(Interval::Mo1));
        let msg = "7m".parse::<Interval>().expect_err("bad").to_string();
        assert!(msg.contains("7m") && msg.contains("1s, 1m, 3m"), "{msg}");
    }
}
