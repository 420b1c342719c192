//! Timestamps: nanoseconds since the Unix epoch, UTC, with RFC 3339 text.

use std::fmt;
use std::str::FromStr;

use crate::Decimal;

/// A point in time: nanoseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Ts(pub i64);

/// Why a text could not be read as a time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TsError {
    /// Neither RFC 3339 nor a `YYYY-MM-DD` date.
    #[error("`{0}` is not a time: use RFC 3339 (2024-01-01T00:00:00Z) or a date (2024-01-01)")]
    Invalid(String),
}

/// Nanoseconds in common units.
pub const NANOS_PER_SEC: i64 = 1_000_000_000;
const NANOS_PER_MILLI: i64 = 1_000_000;
const NANOS_PER_DAY: i64 = 86_400 * NANOS_PER_SEC;

impl Ts {
    /// From Unix milliseconds.
    #[must_use]
    pub const fn from_millis(ms: i64) -> Ts {
        Ts(ms.saturating_mul(NANOS_PER_MILLI))
    }

    /// From Unix microseconds.
    #[must_use]
    pub const fn from_micros(us: i64) -> Ts {
        Ts(us.saturating_mul(1_000))
    }

    /// From whole Unix seconds.
    #[must_use]
    pub const fn from_secs(s: i64) -> Ts {
        Ts(s.saturating_mul(NANOS_PER_SEC))
    }

    /// From Unix seconds written as decimal text (`"1633998523.963"`), exactly.
    pub fn parse_unix_secs(text: &str) -> Result<Ts, TsError> {
        let d = Decimal::parse(text).map_err(|_| TsError::Invalid(text.to_owned()))?;
        let nanos = d
            .normalize()
            .checked_mul(Decimal::new(i128::from(NANOS_PER_SEC), 0))
            .and_then(|n| {
                // Truncate anything finer than a nanosecond.
                let s = n.scale();
                let m = n.mantissa() / crate::decimal::pow10(u32::from(s))?;
                i64::try_from(m).ok()
            })
            .ok_or_else(|| TsError::Invalid(text.to_owned()))?;
        Ok(Ts(nanos))
    }

    /// Unix milliseconds, rounded down.
    #[must_use]
    pub const fn as_millis(self) -> i64 {
        self.0.div_euclid(NANOS_PER_MILLI)
    }

    /// Unix seconds, rounded down.
    #[must_use]
    pub const fn as_secs(self) -> i64 {
        self.0.div_euclid(NANOS_PER_SEC)
    }

    /// The current wall-clock time.
    #[must_use]
    pub fn now() -> Ts {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Ts(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
    }

    /// Midnight UTC of this time's day.
    #[must_use]
    pub const fn day_start(self) -> Ts {
        Ts(self.0 - self.0.rem_euclid(NANOS_PER_DAY))
    }

    /// The UTC calendar date `(year, month, day)`.
    #[must_use]
    pub const fn date(self) -> (i64, u32, u32) {
        civil_from_days(self.0.div_euclid(NANOS_PER_DAY))
    }

    /// Midnight UTC of a calendar date. `month` is 1..=12.
    #[must_use]
    pub const fn from_date(year: i64, month: u32, day: u32) -> Ts {
        Ts(days_from_civil(year, month, day) * NANOS_PER_DAY)
    }

    /// `YYYY-MM-DD` of this time's UTC day.
    #[must_use]
    pub fn date_string(self) -> String {
        let (y, m, d) = self.date();
        format!("{y:04}-{m:02}-{d:02}")
    }

    /// Parses RFC 3339 (`2024-01-01T00:00:00.123Z`, `+02:00` offsets too) or a
    /// bare date (`2024-01-01`, meaning midnight UTC).
    pub fn parse(text: &str) -> Result<Ts, TsError> {
        parse_rfc3339(text.trim()).ok_or_else(|| TsError::Invalid(text.to_owned()))
    }
}

impl FromStr for Ts {
    type Err = TsError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ts::parse(s)
    }
}

/// Writes RFC 3339 in UTC with `Z`, and with as many fractional digits as needed
/// (none, 3, 6 or 9).
impl Ts {
    /// Appends the RFC 3339 text (as [`Display`](fmt::Display) writes it)
    /// to `out`: the hot path of writing JSON.
    pub fn append_to(&self, out: &mut Vec<u8>) {
        let mut buf = [0u8; 40];
        let n = self.rfc3339(&mut buf);
        out.extend_from_slice(&buf[..n]);
    }

    /// Writes the RFC 3339 text into `buf`; returns its length. Fractions
    /// of a second take 3, 6 or 9 digits, the fewest that are exact.
    fn rfc3339(&self, buf: &mut [u8; 40]) -> usize {
        let days = self.0.div_euclid(NANOS_PER_DAY);
        let rem = self.0.rem_euclid(NANOS_PER_DAY);
        let (y, mo, d) = civil_from_days(days);
        let secs = rem / NANOS_PER_SEC;
        let nanos = rem % NANOS_PER_SEC;
        // An i64 of nanoseconds spans the years 1677 to 2262: four digits.
        let mut n = 0;
        put(buf, &mut n, y, 4);
        sep(buf, &mut n, b'-');
        put(buf, &mut n, i64::from(mo), 2);
        sep(buf, &mut n, b'-');
        put(buf, &mut n, i64::from(d), 2);
        sep(buf, &mut n, b'T');
        put(buf, &mut n, secs / 3600, 2);
        sep(buf, &mut n, b':');
        put(buf, &mut n, (secs / 60) % 60, 2);
        sep(buf, &mut n, b':');
        put(buf, &mut n, secs % 60, 2);
        if nanos != 0 {
            sep(buf, &mut n, b'.');
            if nanos % 1_000_000 == 0 {
                put(buf, &mut n, nanos / 1_000_000, 3);
            } else if nanos % 1_000 == 0 {
                put(buf, &mut n, nanos / 1_000, 6);
            } else {
                put(buf, &mut n, nanos, 9);
            }
        }
        sep(buf, &mut n, b'Z');
        n
    }
}

/// Writes `v` as `width` decimal digits at `buf[*n..]`.
fn put(buf: &mut [u8; 40], n: &mut usize, mut v: i64, width: usize) {
    for k in (0..width).rev() {
        buf[*n + k] = b'0' + (v.rem_euclid(10)) as u8;
        v /= 10;
    }
    *n += width;
}

/// Writes `c` at `buf[*n]`.
fn sep(buf: &mut [u8; 40], n: &mut usize, c: u8) {
    buf[*n] = c;
    *n += 1;
}

impl fmt::Display for Ts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 40];
        let n = self.rfc3339(&mut buf);
        // Only ASCII was written.
        f.write_str(std::str::from_utf8(&buf[..n]).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Ts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Ts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Ts {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Ts;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 time or unix milliseconds")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Ts, E> {
                Ts::parse(v).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Ts, E> {
                Ok(Ts::from_millis(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Ts, E> {
                Ok(Ts::from_millis(i64::try_from(v).map_err(E::custom)?))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
const fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A civil date to days since 1970-01-01.
const fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn digits(b: &[u8]) -> Option<i64> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0i64, |acc, c| acc * 10 + i64::from(c - b'0')))
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

fn parse_rfc3339(s: &str) -> Option<Ts> {
    let b = s.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year = digits(&b[0..4])?;
    let month = u32::try_from(digits(&b[5..7])?).ok()?;
    let day = u32::try_from(digits(&b[8..10])?).ok()?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    // Checked: a date outside 1677..2262 does not fit i64 nanoseconds.
    let midnight = days_from_civil(year, month, day).checked_mul(NANOS_PER_DAY)?;
    if b.len() == 10 {
        return Some(Ts(midnight));
    }
    if !matches!(b[10], b'T' | b't' | b' ') || b.len() < 19 || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let h = digits(&b[11..13])?;
    let mi = digits(&b[14..16])?;
    let sec = digits(&b[17..19])?;
    if h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &b[19..];
    let mut nanos = 0i64;
    if let Some((b'.', tail)) = rest.split_first() {
        let n = tail.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        let frac = &tail[..n.min(9)];
        nanos = digits(frac)? * 10i64.pow(9 - u32::try_from(frac.len()).ok()?);
        rest = &tail[n..];
    }
    let offset_secs = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), oh1, oh2, b':', om1, om2] => {
            let oh = digits(&[*oh1, *oh2])?;
            let om = digits(&[*om1, *om2])?;
            let off = oh * 3600 + om * 60;
            if *sign == b'+' { off } else { -off }
        }
        _ => return None,
    };
    let secs = h * 3600 + mi * 60 + sec - offset_secs;
    midnight.checked_add(secs * NANOS_PER_SEC + nanos).map(Ts)
}

/// A span written as a whole number and a unit, `s`, `m`, `h`, `d` or `w`
/// (`90m`, `24h`, `30d`), in nanoseconds; `None` for anything else, zero,
/// or a span that overflows.
#[must_use]
pub fn parse_span(text: &str) -> Option<i64> {
    let at = text.find(|c: char| !c.is_ascii_digit())?;
    let n: i64 = text[..at].parse().ok()?;
    let secs: i64 = match &text[at..] {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return None,
    };
    n.checked_mul(secs * NANOS_PER_SEC).filter(|n| *n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        for text in [
            "2024-01-01T00:00:00Z",
            "2021-10-12T00:28:43.963Z",
            "2014-11-07T08:19:28.464459Z",
            "1969-12-31T23:59:59.000000001Z",
            "2024-02-29T12:00:00Z",
            "1677-09-22T00:00:00.000000001Z",
            "2262-04-11T23:47:16.854775807Z",
        ] {
            let t = Ts::parse(text).expect("valid");
            assert_eq!(t.to_string(), text);
            let mut bytes = b"[".to_vec();
            t.append_to(&mut bytes);
            assert_eq!(bytes, format!("[{text}").into_bytes());
        }
        assert_eq!(Ts(i64::MIN).to_string(), "1677-09-21T00:12:43.145224192Z");
        assert_eq!(Ts(i64::MAX).to_string(), "2262-04-11T23:47:16.854775807Z");
    }

    #[test]
    fn dates_offsets_and_units() {
        assert_eq!(
            Ts::parse("2024-01-01").expect("date"),
            Ts::from_secs(1_704_067_200)
        );
        assert_eq!(
            Ts::parse("2024-01-01T02:00:00+02:00").expect("offset"),
            Ts::parse("2024-01-01T00:00:00Z").expect("utc")
        );
        assert_eq!(
            Ts::from_millis(1_633_998_523_963).to_string(),
            "2021-10-12T00:28:43.963Z"
        );
        assert_eq!(
            Ts::parse_unix_secs("1633998523.9630001").expect("secs"),
            Ts(1_633_998_523_963_000_100)
        );
    }

    #[test]
    fn invalid_times_are_refused() {
        for text in [
            "",
            "2024-13-01",
            "2023-02-29",
            "2024-01-01T25:00:00Z",
            "yesterday",
            "2024-01-01T00:00:00",
            // Outside what i64 nanoseconds hold.
            "0001-01-01",
            "9999-12-31T23:59:59Z",
            "2262-04-11T23:47:17Z",
            "1677-09-21T00:12:43Z",
        ] {
            assert!(Ts::parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn civil_round_trip_over_centuries() {
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
