//! Converting between PostgreSQL rows and model types.
//!
//! Decimals travel as binary `NUMERIC` both ways ([`PgNumeric`]; candles'
//! and quotes' inputs as text cast on the server), so no digit is ever
//! rounded and the scale is kept.

use ck_model::{
    Candle, CandleState, Decimal, Exchange, Instrument, Interval, Quote, Side, Trade, TradeId, Ts,
};
use tokio_postgres::Row;

use crate::Error;

/// A trade id as stored: numbers as digits, strings behind `s:`.
pub(crate) fn id_text(id: &TradeId) -> String {
    match id {
        TradeId::Num(n) => n.to_string(),
        TradeId::Str(s) => format!("s:{s}"),
    }
}

/// The numeric id when it fits `BIGINT`, for ordering.
pub(crate) fn id_seq(id: &TradeId) -> Option<i64> {
    id.as_u64().and_then(|n| i64::try_from(n).ok())
}

pub(crate) fn id_from_text(text: &str) -> Result<TradeId, Error> {
    if let Some(s) = text.strip_prefix("s:") {
        return Ok(TradeId::Str(s.into()));
    }
    text.parse::<u64>()
        .map(TradeId::Num)
        .map_err(|_| Error::Corrupt {
            what: "trade id",
            value: text.to_owned(),
        })
}

pub(crate) const fn side_code(side: Side) -> i16 {
    match side {
        Side::Buy => 1,
        Side::Sell => 2,
        Side::Unknown => 0,
    }
}

fn side_from(code: i16) -> Side {
    match code {
        1 => Side::Buy,
        2 => Side::Sell,
        _ => Side::Unknown,
    }
}

fn get<'a, T: tokio_postgres::types::FromSql<'a>>(r: &'a Row, i: usize) -> Result<T, Error> {
    r.try_get(i).map_err(|source| Error::Postgres {
        context: "reading row",
        source,
    })
}

fn dec(r: &Row, i: usize, what: &'static str) -> Result<Decimal, Error> {
    opt_dec(r, i, what)?.ok_or_else(|| Error::Corrupt {
        what,
        value: "NULL".into(),
    })
}

fn opt_dec(r: &Row, i: usize, what: &'static str) -> Result<Option<Decimal>, Error> {
    r.try_get::<_, Option<PgNumeric>>(i)
        .map(|v| v.map(|n| n.0))
        .map_err(|e| Error::Corrupt {
            what,
            value: e.to_string(),
        })
}

/// The id of the instrument named by `$1` (exchange) and `$2` (instrument),
/// as a subquery (a literal, for `concat!`).
macro_rules! instrument_id {
    () => {
        "(SELECT id FROM instruments WHERE exchange = $1 AND instrument = $2)"
    };
}
pub(crate) use instrument_id;

/// The trade columns [`trade_from_row`] reads, in its order (a literal,
/// for `concat!`).
macro_rules! trade_columns {
    () => {
        "trade_id, ts, price, size, side, ts_received, fills"
    };
}
pub(crate) use trade_columns;

pub(crate) fn trade_from_row(
    r: &Row,
    exchange: Exchange,
    instrument: &Instrument,
) -> Result<Trade, Error> {
    let fills: i32 = get(r, 6)?;
    Ok(Trade {
        exchange,
        instrument: instrument.clone(),
        trade_id: id_from_text(get(r, 0)?)?,
        ts_exchange: Ts(get(r, 1)?),
        price: dec(r, 2, "price")?,
        size: dec(r, 3, "size")?,
        side: side_from(get(r, 4)?),
        ts_received: Ts(get(r, 5)?),
        fills: u32::try_from(fills).map_err(|_| Error::Corrupt {
            what: "fills",
            value: fills.to_string(),
        })?,
    })
}

/// The quote columns [`quote_from_row`] reads, in its order (a literal).
macro_rules! quote_columns {
    () => {
        "ts, ts_received, bid, bid_size, ask, ask_size, last"
    };
}
pub(crate) use quote_columns;

pub(crate) fn quote_from_row(
    r: &Row,
    exchange: Exchange,
    instrument: &Instrument,
) -> Result<Quote, Error> {
    Ok(Quote {
        exchange,
        instrument: instrument.clone(),
        ts_exchange: Ts(get(r, 0)?),
        ts_received: Ts(get(r, 1)?),
        bid: dec(r, 2, "bid")?,
        bid_size: opt_dec(r, 3, "bid_size")?,
        ask: dec(r, 4, "ask")?,
        ask_size: opt_dec(r, 5, "ask_size")?,
        last: opt_dec(r, 6, "last")?,
    })
}

/// The candle columns [`candle_from_row`] reads, in its order (a literal).
macro_rules! candle_columns {
    () => {
        "open_time, open, high, low, close, volume, quote_volume, vwap, \
         taker_buy_volume, trades, first_trade_id, last_trade_id, state"
    };
}
pub(crate) use candle_columns;

pub(crate) fn candle_from_row(
    r: &Row,
    exchange: Exchange,
    instrument: &Instrument,
    interval: Interval,
) -> Result<Candle, Error> {
    let trades: i64 = get(r, 9)?;
    let state: &str = get(r, 12)?;
    let id = |i: usize| -> Result<Option<TradeId>, Error> {
        get::<Option<&str>>(r, i)?.map(id_from_text).transpose()
    };
    Ok(Candle {
        exchange,
        instrument: instrument.clone(),
        interval,
        open_time: Ts(get(r, 0)?),
        open: dec(r, 1, "open")?,
        high: dec(r, 2, "high")?,
        low: dec(r, 3, "low")?,
        close: dec(r, 4, "close")?,
        volume: dec(r, 5, "volume")?,
        quote_volume: dec(r, 6, "quote_volume")?,
        vwap: dec(r, 7, "vwap")?,
        taker_buy_volume: dec(r, 8, "taker_buy_volume")?,
        trades: u64::try_from(trades).map_err(|_| Error::Corrupt {
            what: "trades",
            value: trades.to_string(),
        })?,
        first_trade_id: id(10)?,
        last_trade_id: id(11)?,
        state: CandleState::parse(state).ok_or_else(|| Error::Corrupt {
            what: "state",
            value: state.to_owned(),
        })?,
    })
}

pub(crate) fn exchange_from(text: &str) -> Result<Exchange, Error> {
    text.parse().map_err(|_| Error::Corrupt {
        what: "exchange",
        value: text.to_owned(),
    })
}

pub(crate) fn instrument_from(text: &str) -> Result<Instrument, Error> {
    Instrument::parse(text).map_err(|_| Error::Corrupt {
        what: "instrument",
        value: text.to_owned(),
    })
}

/// The gap columns [`gap_from_row`] reads, in its order (joined with
/// instruments as `i`; a literal).
macro_rules! gap_columns {
    () => {
        "i.exchange, i.instrument, g.from_ts, g.to_ts, \
         g.from_trade_id::text, g.to_trade_id::text, g.state, g.reason, g.detected_at, g.kind"
    };
}
pub(crate) use gap_columns;

pub(crate) fn gap_from_row(r: &Row) -> Result<ck_model::Gap, Error> {
    let state: &str = get(r, 6)?;
    let num = |i: usize| -> Result<Option<u64>, Error> {
        get::<Option<&str>>(r, i)?
            .map(|t| {
                t.parse::<u64>().map_err(|_| Error::Corrupt {
                    what: "gap trade id",
                    value: t.to_owned(),
                })
            })
            .transpose()
    };
    Ok(ck_model::Gap {
        exchange: exchange_from(get(r, 0)?)?,
        instrument: instrument_from(get(r, 1)?)?,
        from_ts: Ts(get(r, 2)?),
        to_ts: Ts(get(r, 3)?),
        first_missing_id: num(4)?,
        last_missing_id: num(5)?,
        state: ck_model::GapState::parse(state).ok_or_else(|| Error::Corrupt {
            what: "gap state",
            value: state.to_owned(),
        })?,
        reason: get::<Option<String>>(r, 7)?.unwrap_or_default(),
        detected_at: Ts(get(r, 8)?),
        kind: {
            let kind: &str = get(r, 9)?;
            ck_model::GapKind::parse(kind).ok_or_else(|| Error::Corrupt {
                what: "gap kind",
                value: kind.to_owned(),
            })?
        },
    })
}

/// A decimal sent to PostgreSQL as binary `NUMERIC` (base-10000 digits), so
/// the server does not parse text for every price and size.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PgNumeric(pub(crate) Decimal);

impl PgNumeric {
    /// `(weight, base-10000 digits, most significant first)` of |value|.
    fn groups(self) -> (i16, Vec<i16>) {
        let scale = u32::from(self.0.scale());
        let mut abs = self.0.mantissa().unsigned_abs();
        // Least significant group first; fraction groups end at the point.
        let mut groups: Vec<i16> = Vec::with_capacity(10);
        let partial = scale % 4;
        if partial != 0 {
            let p = 10u128.pow(partial);
            groups.push(((abs % p) * 10u128.pow(4 - partial)) as i16);
            abs /= p;
        }
        while abs > 0 {
            groups.push((abs % 10_000) as i16);
            abs /= 10_000;
        }
        let fraction_groups = scale.div_ceil(4) as i16;
        // Every fraction group exists even when zero-valued at the top.
        while (groups.len() as i16) < fraction_groups {
            groups.push(0);
        }
        let weight = groups.len() as i16 - 1 - fraction_groups;
        groups.reverse();
        // Trailing and leading zero groups are implied.
        while groups.last() == Some(&0) {
            groups.pop();
        }
        let leading = groups.iter().take_while(|g| **g == 0).count();
        groups.drain(..leading);
        (weight - leading as i16, groups)
    }
}

impl tokio_postgres::types::ToSql for PgNumeric {
    fn to_sql(
        &self,
        _ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use bytes::BufMut as _;
        let (weight, groups) = self.groups();
        let sign: u16 = if self.0.is_negative() && !groups.is_empty() {
            0x4000
        } else {
            0
        };
        out.put_i16(i16::try_from(groups.len())?);
        out.put_i16(if groups.is_empty() { 0 } else { weight });
        out.put_u16(sign);
        out.put_u16(u16::from(self.0.scale()));
        for g in groups {
            out.put_i16(g);
        }
        Ok(tokio_postgres::types::IsNull::No)
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        *ty == tokio_postgres::types::Type::NUMERIC
    }

    tokio_postgres::types::to_sql_checked!();
}

impl<'a> tokio_postgres::types::FromSql<'a> for PgNumeric {
    fn from_sql(
        _ty: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<PgNumeric, Box<dyn std::error::Error + Sync + Send>> {
        let word = |i: usize| -> Result<u16, Box<dyn std::error::Error + Sync + Send>> {
            raw.get(i * 2..i * 2 + 2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
                .ok_or_else(|| "short NUMERIC".into())
        };
        let ndigits = usize::from(word(0)?);
        let weight = i64::from(word(1)? as i16);
        let sign = word(2)?;
        let dscale = word(3)?;
        if sign == 0xC000 {
            return Err("NUMERIC NaN is not a price".into());
        }
        let too_big = || -> Box<dyn std::error::Error + Sync + Send> {
            "NUMERIC beyond the decimal's range".into()
        };
        let mut acc: i128 = 0;
        for i in 0..ndigits {
            let digit = i128::from(word(4 + i)?);
            acc = acc
                .checked_mul(10_000)
                .and_then(|a| a.checked_add(digit))
                .ok_or_else(too_big)?;
        }
        // `acc` is the value times 10^(4 * (ndigits - 1 - weight)).
        let held = 4 * (ndigits as i64 - 1 - weight);
        let scale = i64::from(dscale);
        let pow = |n: i64| -> Option<i128> { ck_model::pow10(u32::try_from(n).ok()?) };
        let mantissa = if ndigits == 0 {
            0
        } else if held > scale {
            acc / pow(held - scale).ok_or_else(too_big)?
        } else {
            acc.checked_mul(pow(scale - held).ok_or_else(too_big)?)
                .ok_or_else(too_big)?
        };
        let scale = u8::try_from(dscale)
            .ok()
            .filter(|s| *s <= ck_model::MAX_SCALE)
            .ok_or_else(too_big)?;
        let mantissa = if sign == 0x4000 { -mantissa } else { mantissa };
        Ok(PgNumeric(Decimal::new(mantissa, scale)))
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        *ty == tokio_postgres::types::Type::NUMERIC
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_groups_are_base_10000_around_the_point() {
        let g = |s: &str| PgNumeric(Decimal::parse(s).expect("decimal")).groups();
        assert_eq!(g("61837.63000000"), (1, vec![6, 1837, 6300]));
        assert_eq!(g("0.00000638"), (-2, vec![638]));
        assert_eq!(g("1e-8"), (-2, vec![1]));
        assert_eq!(g("5"), (0, vec![5]));
        assert_eq!(g("10000"), (1, vec![1]));
        assert_eq!(g("0.5"), (-1, vec![5000]));
        assert_eq!(g("0"), (-1, vec![]));
        assert_eq!(g("-12.34"), (0, vec![12, 3400]));
    }

    #[test]
    fn numeric_binary_round_trips_with_its_scale() {
        use tokio_postgres::types::{FromSql as _, ToSql as _, Type};
        for text in [
            "61837.63000000",
            "0.00000638",
            "1e-8",
            "5",
            "10000",
            "0.5",
            "0",
            "-12.34",
            "123456789012345678.123456789012",
            "0.000000000000000000000000000001",
        ] {
            let d = Decimal::parse(text).expect("decimal");
            let mut buf = bytes::BytesMut::new();
            PgNumeric(d)
                .to_sql(&Type::NUMERIC, &mut buf)
                .expect("encode");
            let back = PgNumeric::from_sql(&Type::NUMERIC, &buf).expect("decode").0;
            assert_eq!(
                (back.mantissa(), back.scale(), back.to_string()),
                (d.mantissa(), d.scale(), d.to_string()),
                "{text}"
            );
        }
        assert!(
            PgNumeric::from_sql(&Type::NUMERIC, &[0, 0, 0, 0, 0xC0, 0, 0, 0]).is_err(),
            "NaN"
        );
        assert!(
            PgNumeric::from_sql(&Type::NUMERIC, &[0, 1]).is_err(),
            "short"
        );
    }
}
