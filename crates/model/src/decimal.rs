//! Exact decimal numbers, parsed from an exchange's own text.
//!
//! A [`Decimal`] is an `i128` mantissa and a decimal scale: `"0.35280000"` is
//! mantissa `35280000`, scale `8`. Parsing never goes through `f64`, and the
//! scale the exchange sent is kept, so `Display` writes back the same text.
//! Equality, ordering and hashing are numeric: `1.50 == 1.5`.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

/// The largest scale a [`Decimal`] may carry.
pub const MAX_SCALE: u8 = 30;

const POW10: [i128; 39] = {
    let mut table = [1i128; 39];
    let mut i = 1;
    while i < 39 {
        table[i] = table[i - 1] * 10;
        i += 1;
    }
    table
};

/// `10^n` as `i128`, or `None` past `10^38`.
#[must_use]
pub fn pow10(n: u32) -> Option<i128> {
    POW10.get(n as usize).copied()
}

/// An exact decimal number: `mantissa * 10^-scale`.
#[derive(Clone, Copy, Default)]
pub struct Decimal {
    mantissa: i128,
    scale: u8,
}

/// Why a text could not be read as a [`Decimal`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecimalError {
    /// The text is empty or has a character that is not part of a number.
    #[error("`{0}` is not a decimal number")]
    Invalid(String),
    /// The number has more digits than fit exactly.
    #[error("`{0}` has too many digits to hold exactly")]
    TooPrecise(String),
}

impl Decimal {
    /// Zero, with scale 0.
    pub const ZERO: Decimal = Decimal {
        mantissa: 0,
        scale: 0,
    };

    /// Builds a decimal from its parts.
    ///
    /// # Panics
    /// Panics if `scale > MAX_SCALE`; that is a programming error, not bad input.
    #[must_use]
    pub const fn new(mantissa: i128, scale: u8) -> Decimal {
        assert!(scale <= MAX_SCALE, "decimal scale out of range");
        Decimal { mantissa, scale }
    }

    /// The mantissa: the number times `10^scale`.
    #[must_use]
    pub const fn mantissa(self) -> i128 {
        self.mantissa
    }

    /// The number of digits after the decimal point.
    #[must_use]
    pub const fn scale(self) -> u8 {
        self.scale
    }

    /// True for zero at any scale.
    #[must_use]
    pub const fn is_zero(self) -> bool {
        self.mantissa == 0
    }

    /// True below zero.
    #[must_use]
    pub const fn is_negative(self) -> bool {
        self.mantissa < 0
    }

    /// The absolute value.
    #[must_use]
    pub const fn abs(self) -> Decimal {
        Decimal {
            mantissa: self.mantissa.abs(),
            scale: self.scale,
        }
    }

    /// The same number with `scale` digits, if that is exact and fits.
    #[must_use]
    pub fn rescale(self, scale: u8) -> Option<Decimal> {
        if scale > MAX_SCALE {
            return None;
        }
        match scale.cmp(&self.scale) {
            Ordering::Equal => Some(self),
            Ordering::Greater => {
                let factor = pow10(u32::from(scale - self.scale))?;
                Some(Decimal {
                    mantissa: self.mantissa.checked_mul(factor)?,
                    scale,
                })
            }
            Ordering::Less => {
                let factor = pow10(u32::from(self.scale - scale))?;
                (self.mantissa % factor == 0).then(|| Decimal {
                    mantissa: self.mantissa / factor,
                    scale,
                })
            }
        }
    }

    /// The same number with trailing fractional zeros removed.
    #[must_use]
    pub fn normalize(self) -> Decimal {
        let mut d = self;
        while d.scale > 0 && d.mantissa % 10 == 0 {
            d.mantissa /= 10;
            d.scale -= 1;
        }
        d
    }

    /// `self + other`, or `None` on overflow.
    #[must_use]
    pub fn checked_add(self, other: Decimal) -> Option<Decimal> {
        let scale = self.scale.max(other.scale);
        let a = self.rescale(scale)?;
        let b = other.rescale(scale)?;
        Some(Decimal {
            mantissa: a.mantissa.checked_add(b.mantissa)?,
            scale,
        })
    }

    /// `self - other`, or `None` on overflow.
    #[must_use]
    pub fn checked_sub(self, other: Decimal) -> Option<Decimal> {
        self.checked_add(Decimal {
            mantissa: other.mantissa.checked_neg()?,
            scale: other.scale,
        })
    }

    /// `self * other`, exact, or `None` on overflow.
    #[must_use]
    pub fn checked_mul(self, other: Decimal) -> Option<Decimal> {
        let scale = self.scale.checked_add(other.scale)?;
        if scale > MAX_SCALE {
            // Drop trailing zeros first; a product is only refused if it cannot be exact.
            let (a, b) = (self.normalize(), other.normalize());
            if a.scale + b.scale > MAX_SCALE {
                return None;
            }
            return a.checked_mul(b);
        }
        Some(Decimal {
            mantissa: self.mantissa.checked_mul(other.mantissa)?,
            scale,
        })
    }

    /// `self / other` rounded half-even to `scale` digits, or `None` on
    /// division by zero or overflow.
    #[must_use]
    pub fn checked_div(self, other: Decimal, scale: u8) -> Option<Decimal> {
        if other.mantissa == 0 || scale > MAX_SCALE {
            return None;
        }
        // result = a/10^sa / (b/10^sb) = a * 10^(sb - sa) / b; scaled by 10^scale.
        let shift = i32::from(scale) + i32::from(other.scale) - i32::from(self.scale);
        let (num, den) = if shift >= 0 {
            (
                self.mantissa.checked_mul(pow10(shift.unsigned_abs())?)?,
                other.mantissa,
            )
        } else {
            (
                self.mantissa,
                other.mantissa.checked_mul(pow10(shift.unsigned_abs())?)?,
            )
        };
        let q = num / den;
        let r = num % den;
        let twice = r.checked_abs()?.checked_mul(2)?;
        let den_abs = den.checked_abs()?;
        let negative = (num < 0) != (den < 0);
        let round_away = match twice.cmp(&den_abs) {
            Ordering::Greater => true,
            Ordering::Equal => q % 2 != 0,
            Ordering::Less => false,
        };
        let q = if round_away {
            if negative { q - 1 } else { q + 1 }
        } else {
            q
        };
        Some(Decimal { mantissa: q, scale })
    }

    /// Parses decimal text: an optional sign, digits with an optional point,
    /// and an optional exponent (`1e-8`, as JSON numbers may be written).
    pub fn parse(text: &str) -> Result<Decimal, DecimalError> {
        parse_bytes(text.as_bytes()).ok_or_else(|| {
            if text.bytes().filter(u8::is_ascii_digit).count() > 38 {
                DecimalError::TooPrecise(text.to_owned())
            } else {
                DecimalError::Invalid(text.to_owned())
            }
        })
    }

    /// The mantissa at `scale` as an `i64`, if that is exact and fits.
    #[must_use]
    #[inline]
    pub fn to_fixed_i64(self, scale: u8) -> Option<i64> {
        if scale == self.scale {
            return i64::try_from(self.mantissa).ok();
        }
        self.rescale(scale)
            .and_then(|d| i64::try_from(d.mantissa).ok())
    }

    /// An approximate `f64`, for statistics and charts only. Never store it.
    #[must_use]
    pub fn to_f64(self) -> f64 {
        self.mantissa as f64 / 10f64.powi(i32::from(self.scale))
    }
}

/// Plain `digits[.digits]` of at most 19 bytes: fits a u64 without checks.
#[inline]
fn parse_plain(b: &[u8]) -> Option<Decimal> {
    if b.is_empty() || b.len() > 19 {
        return None;
    }
    let mut m: u64 = 0;
    let mut scale: u8 = 0;
    let mut point = false;
    for &c in b {
        match c {
            b'0'..=b'9' => {
                m = m * 10 + u64::from(c - b'0');
                scale += u8::from(point);
            }
            b'.' if !point => point = true,
            _ => return None,
        }
    }
    // "." alone, or a trailing/leading point with no digit at all, is not a number.
    (b.len() > usize::from(point)).then_some(Decimal {
        mantissa: i128::from(m),
        scale,
    })
}

fn parse_bytes(b: &[u8]) -> Option<Decimal> {
    if let Some(d) = parse_plain(b) {
        return Some(d);
    }
    let (negative, mut rest) = match b.first()? {
        b'-' => (true, &b[1..]),
        b'+' => (false, &b[1..]),
        _ => (false, b),
    };
    // Up to 18 digits accumulate in a u64 (fast); more continue in i128.
    let mut small: u64 = 0;
    let mut mantissa: i128 = 0;
    let mut big = false;
    let mut scale: i32 = 0;
    let mut digits = 0u32;
    let mut seen_point = false;
    let mut seen_digit = false;
    let mut has_exponent = false;
    while let Some((&c, tail)) = rest.split_first() {
        match c {
            b'0'..=b'9' => {
                seen_digit = true;
                if small != 0 || big || c != b'0' {
                    digits += 1;
                }
                if digits > 38 {
                    return None;
                }
                if digits <= 18 {
                    small = small * 10 + u64::from(c - b'0');
                } else {
                    if !big {
                        mantissa = i128::from(small);
                        big = true;
                    }
                    mantissa = mantissa * 10 + i128::from(c - b'0');
                }
                if seen_point {
                    scale += 1;
                }
            }
            b'.' if !seen_point => seen_point = true,
            b'e' | b'E' => {
                rest = tail;
                has_exponent = true;
                break;
            }
            _ => return None,
        }
        rest = tail;
    }
    if !seen_digit {
        return None;
    }
    if !big {
        mantissa = i128::from(small);
    }
    if has_exponent {
        let exp: i32 = std::str::from_utf8(rest).ok()?.parse().ok()?;
        if !(-60..=60).contains(&exp) {
            return None;
        }
        scale -= exp;
    }
    if scale < 0 {
        mantissa = mantissa.checked_mul(pow10(scale.unsigned_abs())?)?;
        scale = 0;
    }
    while scale > i32::from(MAX_SCALE) {
        if mantissa % 10 != 0 {
            return None;
        }
        mantissa /= 10;
        scale -= 1;
    }
    let scale = u8::try_from(scale).ok()?;
    Some(Decimal {
        mantissa: if negative { -mantissa } else { mantissa },
        scale,
    })
}

impl FromStr for Decimal {
    type Err = DecimalError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Decimal::parse(s)
    }
}

impl From<i64> for Decimal {
    fn from(v: i64) -> Self {
        Decimal {
            mantissa: i128::from(v),
            scale: 0,
        }
    }
}

impl Decimal {
    /// Writes the text into `out` (cleared first), without allocating when
    /// `out` has room: the hot path of storing trades.
    pub fn write_to(&self, out: &mut String) {
        out.clear();
        let mut buf = [0u8; 48];
        out.push_str(self.text(&mut buf));
    }

    /// Appends the text to `out`: the hot path of writing JSON.
    pub fn append_to(&self, out: &mut Vec<u8>) {
        let mut buf = [0u8; 48];
        out.extend_from_slice(self.text(&mut buf).as_bytes());
    }

    /// The text, laid out at the end of `buf`.
    fn text<'a>(&self, buf: &'a mut [u8; 48]) -> &'a str {
        let mut n = self.mantissa.unsigned_abs();
        let mut i = buf.len();
        let mut digit = |buf: &mut [u8; 48], d: u8| {
            i -= 1;
            buf[i] = b'0' + d;
        };
        // 128-bit division is slow: peel digits in u128 only until the rest fits u64.
        let mut count = 0;
        while n > u128::from(u64::MAX) {
            digit(buf, (n % 10) as u8);
            n /= 10;
            count += 1;
        }
        let mut small = n as u64;
        loop {
            digit(buf, (small % 10) as u8);
            small /= 10;
            count += 1;
            if small == 0 {
                break;
            }
        }
        let scale = usize::from(self.scale);
        // Leading zeros so that there is a digit before the point.
        while count <= scale {
            digit(buf, 0);
            count += 1;
        }
        let end = buf.len();
        let start = end - count;
        if scale > 0 {
            // Shift the integer part left by one to open a gap for the point.
            let point = end - scale;
            buf.copy_within(start..point, start - 1);
            buf[point - 1] = b'.';
            i = start - 1;
        } else {
            i = start;
        }
        if self.mantissa < 0 {
            i -= 1;
            buf[i] = b'-';
        }
        // Only ASCII digits, '.' and '-' were written.
        std::str::from_utf8(&buf[i..]).unwrap_or("")
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = String::with_capacity(48);
        self.write_to(&mut text);
        f.write_str(&text)
    }
}

impl fmt::Debug for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl PartialEq for Decimal {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Decimal {}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> Ordering {
        if self.scale == other.scale {
            return self.mantissa.cmp(&other.mantissa);
        }
        let scale = self.scale.max(other.scale);
        match (self.rescale(scale), other.rescale(scale)) {
            (Some(a), Some(b)) => a.mantissa.cmp(&b.mantissa),
            // Rescaling up only overflows for the larger magnitude.
            (None, _) => {
                if self.mantissa < 0 {
                    Ordering::Less
                } else {
                    Ordering::Greater
                }
            }
            (_, None) => {
                if other.mantissa < 0 {
                    Ordering::Greater
                } else {
                    Ordering::Less
                }
            }
        }
    }
}

impl Hash for Decimal {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let n = self.normalize();
        n.mantissa.hash(state);
        n.scale.hash(state);
    }
}

impl serde::Serialize for Decimal {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Decimal {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Decimal;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a decimal number as a string or integer")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Decimal, E> {
                Decimal::parse(v).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Decimal, E> {
                Ok(Decimal::from(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Decimal, E> {
                Ok(Decimal {
                    mantissa: i128::from(v),
                    scale: 0,
                })
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::parse(s).expect("valid decimal")
    }

    #[test]
    fn parse_keeps_exchange_text() {
        for text in [
            "0.35280000",
            "61837.63000000",
            "-0.00000001",
            "12",
            "0.1",
            "0",
        ] {
            assert_eq!(d(text).to_string(), text);
        }
    }

    #[test]
    fn parse_exponent_and_sign() {
        assert_eq!(d("1e-8"), d("0.00000001"));
        assert_eq!(d("-1.5E2"), d("-150"));
        assert_eq!(d("+2.50").to_string(), "2.50");
        assert_eq!(d(".5"), d("0.5"));
    }

    #[test]
    fn parse_rejects_garbage() {
        for text in ["", "-", "1.2.3", "abc", "1,5", "NaN", "1e", "0x10", "1e999"] {
            assert!(Decimal::parse(text).is_err(), "{text} should be refused");
        }
        assert!(matches!(
            Decimal::parse("123456789012345678901234567890123456789"),
            Err(DecimalError::TooPrecise(_))
        ));
    }

    #[test]
    fn numeric_equality_and_order() {
        assert_eq!(d("1.50"), d("1.5"));
        assert!(d("0.00000638") < d("0.0000064"));
        assert!(d("-1") < d("0.000001"));
        let mut v = vec![d("2"), d("1.999999999"), d("-3.1"), d("10")];
        v.sort();
        assert_eq!(v, vec![d("-3.1"), d("1.999999999"), d("2"), d("10")]);
    }

    #[test]
    fn arithmetic_is_exact() {
        assert_eq!(d("0.1").checked_add(d("0.2")), Some(d("0.3")));
        assert_eq!(
            d("0.35280000").checked_mul(d("58.00000000")),
            Some(d("20.4624"))
        );
        assert_eq!(d("10").checked_div(d("3"), 4), Some(d("3.3333")));
        assert_eq!(d("2").checked_div(d("3"), 2), Some(d("0.67")));
        assert_eq!(
            d("0.125").checked_div(d("1"), 2),
            Some(d("0.12")),
            "half-even"
        );
        assert_eq!(d("1").checked_div(d("0"), 2), None);
        assert_eq!(d("1.2300").normalize().to_string(), "1.23");
        assert_eq!(d("1.23").rescale(1), None);
    }

    #[test]
    fn write_to_matches_display() {
        let mut s = String::new();
        for (v, text) in [
            (d("0.35280000"), "0.35280000"),
            (d("-0.00000001"), "-0.00000001"),
            (d("12"), "12"),
            (d("0"), "0"),
            (Decimal::new(-125, 1), "-12.5"),
            (
                Decimal::new(i128::MIN + 1, 2),
                "-1701411834604692317316873037158841057.27",
            ),
            (
                Decimal::new(i128::MIN + 1, MAX_SCALE),
                "-170141183.460469231731687303715884105727",
            ),
            (
                Decimal::new(-5, MAX_SCALE),
                "-0.000000000000000000000000000005",
            ),
            (Decimal::new(7, 3), "0.007"),
            (Decimal::new(1_000, 3), "1.000"),
        ] {
            v.write_to(&mut s);
            assert_eq!(s, text);
            assert_eq!(v.to_string(), text);
            let mut bytes = b"x".to_vec();
            v.append_to(&mut bytes);
            assert_eq!(bytes, format!("x{text}").into_bytes());
        }
    }

    #[test]
    fn serde_round_trip_as_string() {
        let v: Decimal = serde_json::from_str("\"0.00009000\"").expect("json");
        assert_eq!(serde_json::to_string(&v).expect("json"), "\"0.00009000\"");
    }
}
