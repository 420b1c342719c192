//! Decimal numbers as a venue writes them in a book: an `i64` mantissa and
//! the number of digits after the point, exact, and read without building
//! anything. A book keeps each level's numbers in this form, so that a
//! checksum over the venue's own text can be computed again from them.

use std::fmt::Write as _;

/// Digits after the point a number may have.
pub const MAX_SCALE: u8 = 30;

/// A decimal number as written: `mantissa / 10^scale`, exactly. `0.35130000`
/// is `(35130000, 8)`; the scale is the text's, trailing zeros included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Fixed {
    /// The digits, as an integer.
    pub mantissa: i64,
    /// Digits after the point.
    pub scale: u8,
}

/// Why a text is not a number a book can hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a book number: {why}")]
pub struct FixedError {
    /// The text, cut to 40 characters.
    pub text: String,
    /// What is wrong with it.
    pub why: &'static str,
}

impl Fixed {
    /// A number from its mantissa and scale.
    #[must_use]
    pub const fn new(mantissa: i64, scale: u8) -> Fixed {
        Fixed { mantissa, scale }
    }

    /// Reads decimal text: an optional sign, digits with an optional point,
    /// and an optional exponent (`1e-7`, as JavaScript writes small
    /// numbers). At most 18 significant digits and [`MAX_SCALE`] digits
    /// after the point.
    pub fn parse(text: &[u8]) -> Result<Fixed, FixedError> {
        let fail = |why| FixedError {
            text: String::from_utf8_lossy(&text[..text.len().min(40)]).into_owned(),
            why,
        };
        let (negative, body) = match text.first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        let mut mantissa: i64 = 0;
        let mut digits = 0u32;
        let mut scale: i32 = 0;
        let mut seen_point = false;
        let mut seen_digit = false;
        let mut i = 0;
        while i < body.len() {
            match body[i] {
                c @ b'0'..=b'9' => {
                    seen_digit = true;
                    if mantissa != 0 || c != b'0' {
                        digits += 1;
                    }
                    if digits > 18 {
                        return Err(fail("more than 18 significant digits"));
                    }
                    mantissa = mantissa * 10 + i64::from(c - b'0');
                    if seen_point {
                        scale += 1;
                    }
                }
                b'.' if !seen_point => seen_point = true,
                b'e' | b'E' => break,
                _ => return Err(fail("not a digit, a point or an exponent")),
            }
            i += 1;
        }
        if !seen_digit {
            return Err(fail("no digits"));
        }
        if i < body.len() {
            let exponent = std::str::from_utf8(&body[i + 1..])
                .ok()
                .and_then(|e| e.parse::<i32>().ok())
                .filter(|e| e.abs() <= 64)
                .ok_or_else(|| fail("a bad exponent"))?;
            scale -= exponent;
        }
        while scale < 0 {
            mantissa = mantissa.checked_mul(10).ok_or_else(|| fail("too large"))?;
            scale += 1;
        }
        let scale = u8::try_from(scale)
            .ok()
            .filter(|s| *s <= MAX_SCALE)
            .ok_or_else(|| fail("too many digits after the point"))?;
        Ok(Fixed {
            mantissa: if negative { -mantissa } else { mantissa },
            scale,
        })
    }

    /// True for zero, at any scale.
    #[must_use]
    pub const fn is_zero(self) -> bool {
        self.mantissa == 0
    }

    /// The mantissa at `scale` (at least this number's): `None` when it
    /// would not fit, or when `scale` is smaller.
    #[must_use]
    pub fn mantissa_at(self, scale: u8) -> Option<i64> {
        let up = scale.checked_sub(self.scale)?;
        10i64
            .checked_pow(u32::from(up))
            .and_then(|f| self.mantissa.checked_mul(f))
    }

    /// The same value without trailing zeros after the point.
    #[must_use]
    pub fn normalized(self) -> Fixed {
        let mut f = self;
        while f.scale > 0 && f.mantissa % 10 == 0 {
            f.mantissa /= 10;
            f.scale -= 1;
        }
        f
    }

    /// The value as an `f64` (for derived series, never for the book).
    #[must_use]
    pub fn to_f64(self) -> f64 {
        self.mantissa as f64 / 10f64.powi(i32::from(self.scale))
    }

    /// Appends the text as written: `0.35130000`.
    pub fn write(self, out: &mut String) {
        if self.mantissa < 0 {
            out.push('-');
        }
        let digits = self.mantissa.unsigned_abs().to_string();
        let scale = usize::from(self.scale);
        if scale == 0 {
            out.push_str(&digits);
        } else if digits.len() > scale {
            let (int, frac) = digits.split_at(digits.len() - scale);
            out.push_str(int);
            out.push('.');
            out.push_str(frac);
        } else {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', scale - digits.len()));
            out.push_str(&digits);
        }
    }

    /// Appends the value as JavaScript's `Number.prototype.toString`
    /// writes it (how Bitfinex's numbers are written): no trailing zeros,
    /// and below 1e-6 an exponent (`1e-7`, `1.5e-8`).
    pub fn write_js(self, out: &mut String) {
        let f = self.normalized();
        if f.mantissa == 0 {
            out.push('0');
            return;
        }
        let digits = f.mantissa.unsigned_abs().to_string();
        // The value is 0.d1d2… × 10^(point), point = digits - scale.
        let point = digits.len() as i32 - i32::from(f.scale);
        if point >= -5 {
            f.write(out);
            return;
        }
        if f.mantissa < 0 {
            out.push('-');
        }
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e-{}", 1 - point);
    }

    /// The text as written, as a `String`.
    #[must_use]
    pub fn text(self) -> String {
        let mut s = String::new();
        self.write(&mut s);
        s
    }
}

impl std::fmt::Display for Fixed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(t: &str) -> Fixed {
        Fixed::parse(t.as_bytes()).expect(t)
    }

    #[test]
    fn text_reads_exactly_and_writes_back_as_it_was() {
        for t in [
            "0.35130000",
            "6195.00000000",
            "0",
            "0.0",
            "-0.1903",
            "65083.66",
            "415",
            "0.00000001",
            "123456789012345678",
            "-66440",
        ] {
            assert_eq!(p(t).text(), t);
        }
        assert_eq!(p("0.35130000"), Fixed::new(35_130_000, 8));
        assert_eq!(p("+5"), Fixed::new(5, 0));
        assert_eq!(p(".5"), Fixed::new(5, 1));
        assert_eq!(p("5."), Fixed::new(5, 0));
    }

    #[test]
    fn exponents_read_as_plain_numbers() {
        assert_eq!(p("1e-7"), Fixed::new(1, 7));
        assert_eq!(p("1.5e-8"), Fixed::new(15, 9));
        assert_eq!(p("-2.5E-7"), Fixed::new(-25, 8));
        assert_eq!(p("1.5e3"), Fixed::new(1_500, 0));
        assert_eq!(p("12e+2"), Fixed::new(1_200, 0));
    }

    #[test]
    fn javascript_text_is_what_number_to_string_writes() {
        for (value, js) in [
            ("0.000001", "0.000001"),
            ("0.0000001", "1e-7"),
            ("0.00000015", "1.5e-7"),
            ("-0.000000025", "-2.5e-8"),
            ("60157.36709703", "60157.36709703"),
            ("282030.000", "282030"),
            ("0.10", "0.1"),
            ("0", "0"),
            ("0.00000123", "0.00000123"),
        ] {
            let mut out = String::new();
            p(value).write_js(&mut out);
            assert_eq!(out, js, "{value}");
        }
    }

    #[test]
    fn what_is_not_a_number_is_refused_by_name() {
        for bad in [
            "",
            "-",
            ".",
            "1.2.3",
            "abc",
            "1e",
            "1e999",
            "1234567890123456789",
            "1e-40",
            "9e30",
        ] {
            let err = Fixed::parse(bad.as_bytes()).expect_err(bad);
            assert!(err.to_string().contains(bad), "{err}");
        }
        // Leading zeros are not significant digits.
        assert_eq!(p("000000000000000000001"), Fixed::new(1, 0));
    }

    #[test]
    fn mantissas_move_up_in_scale_only_while_they_fit() {
        assert_eq!(p("1.5").mantissa_at(3), Some(1_500));
        assert_eq!(p("1.5").mantissa_at(0), None);
        assert_eq!(p("9").mantissa_at(19), None);
        assert_eq!(p("1.500").normalized(), Fixed::new(15, 1));
        assert_eq!(p("100").normalized(), Fixed::new(100, 0));
    }
}
