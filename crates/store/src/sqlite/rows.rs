//! Converting between rows and model types.

use ck_model::{
    Candle, CandleState, Decimal, Exchange, Instrument, Interval, Quote, RecordFields, Side, Trade,
    TradeId, Ts,
};
use rusqlite::Row;
use rusqlite::types::{ToSqlOutput, Value, ValueRef};

use crate::Error;

/// Trade ids go in as integers when they fit, else as text.
pub(crate) fn id_param(id: &TradeId) -> ToSqlOutput<'_> {
    match id {
        TradeId::Num(n) => match i64::try_from(*n) {
            Ok(i) => ToSqlOutput::Owned(Value::Integer(i)),
            Err(_) => ToSqlOutput::Owned(Value::Text(n.to_string())),
        },
        TradeId::Str(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
    }
}

fn id_from(v: ValueRef<'_>) -> Result<Option<TradeId>, Error> {
    match v {
        ValueRef::Null => Ok(None),
        ValueRef::Integer(i) => u64::try_from(i)
            .map(|n| Some(TradeId::Num(n)))
            .map_err(|_| Error::Corrupt {
                what: "trade id",
                value: i.to_string(),
            }),
        ValueRef::Text(t) | ValueRef::Blob(t) => {
            let s = std::str::from_utf8(t).map_err(|_| Error::Corrupt {
                what: "trade id",
                value: format!("{t:?}"),
            })?;
            // Numeric ids too large for i64 were stored as text.
            Ok(Some(match s.parse::<u64>() {
                Ok(n) if i64::try_from(n).is_err() => TradeId::Num(n),
                _ => TradeId::Str(s.into()),
            }))
        }
        ValueRef::Real(r) => Err(Error::Corrupt {
            what: "trade id",
            value: r.to_string(),
        }),
    }
}

pub(crate) const fn side_code(side: Side) -> i64 {
    match side {
        Side::Buy => 1,
        Side::Sell => 2,
        Side::Unknown => 0,
    }
}

fn side_from(code: i64) -> Side {
    match code {
        1 => Side::Buy,
        2 => Side::Sell,
        _ => Side::Unknown,
    }
}

fn dec(what: &'static str, text: &str) -> Result<Decimal, Error> {
    Decimal::parse(text).map_err(|_| Error::Corrupt {
        what,
        value: text.to_owned(),
    })
}

fn opt_dec(what: &'static str, text: Option<String>) -> Result<Option<Decimal>, Error> {
    text.map(|t| dec(what, &t)).transpose()
}

/// Reads `open_time, open, high, low, close, volume, quote_volume, vwap,
/// taker_buy_volume, trades, first_trade_id, last_trade_id, state`.
pub(crate) fn candle_from_row(
    r: &Row<'_>,
    exchange: Exchange,
    instrument: &Instrument,
    interval: Interval,
) -> Result<Candle, Error> {
    // Borrowed from SQLite's row: no copy per column.
    let text = |i: usize| -> Result<&str, Error> {
        r.get_ref(i)
            .map_err(sqlerr)?
            .as_str()
            .map_err(|e| Error::Corrupt {
                what: "candle column",
                value: e.to_string(),
            })
    };
    let state = text(12)?;
    let trades: i64 = r.get(9).map_err(sqlerr)?;
    Ok(Candle {
        exchange,
        instrument: instrument.clone(),
        interval,
        open_time: Ts(r.get(0).map_err(sqlerr)?),
        open: dec("open", text(1)?)?,
        high: dec("high", text(2)?)?,
        low: dec("low", text(3)?)?,
        close: dec("close", text(4)?)?,
        volume: dec("volume", text(5)?)?,
        quote_volume: dec("quote_volume", text(6)?)?,
        vwap: dec("vwap", text(7)?)?,
        taker_buy_volume: dec("taker_buy_volume", text(8)?)?,
        trades: u64::try_from(trades).map_err(|_| Error::Corrupt {
            what: "trades",
            value: trades.to_string(),
        })?,
        first_trade_id: id_from(r.get_ref(10).map_err(sqlerr)?)?,
        last_trade_id: id_from(r.get_ref(11).map_err(sqlerr)?)?,
        state: CandleState::parse(state).ok_or_else(|| Error::Corrupt {
            what: "state",
            value: state.to_owned(),
        })?,
    })
}

/// Gives `take` the record fields of the row [`candle_from_row`] reads,
/// straight from the stored text, to write as a record of either form:
/// decimals are kept as the text a `Decimal` wrote, so they are copied
/// (after checking that they are plain decimal text, which needs neither
/// JSON escaping nor CSV quoting).
pub(crate) fn candle_record_from_row(
    r: &Row<'_>,
    take: impl FnOnce(Ts, &RecordFields<'_, [u8]>),
) -> Result<(), Error> {
    let text = |i: usize, what: &'static str| -> Result<&[u8], Error> {
        let v = r.get_ref(i).map_err(sqlerr)?;
        let bytes = match v {
            ValueRef::Text(t) => t,
            other => {
                return Err(Error::Corrupt {
                    what,
                    value: format!("{other:?}"),
                });
            }
        };
        // Plain decimal text only: it needs no JSON escaping.
        if bytes.is_empty()
            || !bytes
                .iter()
                .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-'))
        {
            return Err(Error::Corrupt {
                what,
                value: String::from_utf8_lossy(bytes).into_owned(),
            });
        }
        Ok(bytes)
    };
    let open_time = Ts(r.get(0).map_err(sqlerr)?);
    let decimals = [
        text(1, "open")?,
        text(2, "high")?,
        text(3, "low")?,
        text(4, "close")?,
        text(5, "volume")?,
        text(6, "quote_volume")?,
        text(7, "vwap")?,
        text(8, "taker_buy_volume")?,
    ];
    let trades: i64 = r.get(9).map_err(sqlerr)?;
    let first = id_from(r.get_ref(10).map_err(sqlerr)?)?;
    let last = id_from(r.get_ref(11).map_err(sqlerr)?)?;
    let state_text = r.get_ref(12).map_err(sqlerr)?.as_str().unwrap_or_default();
    let state = CandleState::parse(state_text).ok_or_else(|| Error::Corrupt {
        what: "state",
        value: state_text.to_owned(),
    })?;
    let fields = RecordFields {
        open_time,
        decimals,
        trades: u64::try_from(trades).map_err(|_| Error::Corrupt {
            what: "trades",
            value: trades.to_string(),
        })?,
        first_trade_id: first.as_ref(),
        last_trade_id: last.as_ref(),
        state,
    };
    take(open_time, &fields);
    Ok(())
}

fn sqlerr(source: rusqlite::Error) -> Error {
    Error::Sqlite {
        context: "reading row",
        source,
    }
}

/// Reads `trade_id, ts, price, size, side, ts_received, fills`.
pub(crate) fn trade_from_row(
    r: &Row<'_>,
    exchange: Exchange,
    instrument: &Instrument,
) -> Result<Trade, Error> {
    let price: String = r.get(2).map_err(sqlerr)?;
    let size: String = r.get(3).map_err(sqlerr)?;
    let fills: i64 = r.get(6).map_err(sqlerr)?;
    Ok(Trade {
        exchange,
        instrument: instrument.clone(),
        trade_id: id_from(r.get_ref(0).map_err(sqlerr)?)?.ok_or(Error::Corrupt {
            what: "trade id",
            value: "NULL".into(),
        })?,
        ts_exchange: Ts(r.get(1).map_err(sqlerr)?),
        price: dec("price", &price)?,
        size: dec("size", &size)?,
        side: side_from(r.get(4).map_err(sqlerr)?),
        ts_received: Ts(r.get(5).map_err(sqlerr)?),
        fills: u32::try_from(fills).map_err(|_| Error::Corrupt {
            what: "fills",
            value: fills.to_string(),
        })?,
    })
}

/// Reads `ts, ts_received, bid, bid_size, ask, ask_size, last`.
pub(crate) fn quote_from_row(
    r: &Row<'_>,
    exchange: Exchange,
    instrument: &Instrument,
) -> Result<Quote, Error> {
    let bid: String = r.get(2).map_err(sqlerr)?;
    let ask: String = r.get(4).map_err(sqlerr)?;
    Ok(Quote {
        exchange,
        instrument: instrument.clone(),
        ts_exchange: Ts(r.get(0).map_err(sqlerr)?),
        ts_received: Ts(r.get(1).map_err(sqlerr)?),
        bid: dec("bid", &bid)?,
        bid_size: opt_dec("bid_size", r.get(3).map_err(sqlerr)?)?,
        ask: dec("ask", &ask)?,
        ask_size: opt_dec("ask_size", r.get(5).map_err(sqlerr)?)?,
        last: opt_dec("last", r.get(6).map_err(sqlerr)?)?,
    })
}

/// Reads `exchange, instrument, from_ts, to_ts, from_trade_id, to_trade_id,
/// state, reason, detected_at, kind`.
pub(crate) fn gap_from_row(r: &Row<'_>) -> Result<ck_model::Gap, Error> {
    let exchange: String = r.get(0).map_err(sqlerr)?;
    let instrument: String = r.get(1).map_err(sqlerr)?;
    let state: String = r.get(6).map_err(sqlerr)?;
    let num = |i: usize| -> Result<Option<u64>, Error> {
        Ok(id_from(r.get_ref(i).map_err(sqlerr)?)?.and_then(|id| id.as_u64()))
    };
    Ok(ck_model::Gap {
        exchange: exchange.parse().map_err(|_| Error::Corrupt {
            what: "exchange",
            value: exchange.clone(),
        })?,
        instrument: Instrument::parse(&instrument).map_err(|_| Error::Corrupt {
            what: "instrument",
            value: instrument.clone(),
        })?,
        from_ts: Ts(r.get(2).map_err(sqlerr)?),
        to_ts: Ts(r.get(3).map_err(sqlerr)?),
        first_missing_id: num(4)?,
        last_missing_id: num(5)?,
        state: ck_model::GapState::parse(&state).ok_or(Error::Corrupt {
            what: "gap state",
            value: state.clone(),
        })?,
        reason: r
            .get::<_, Option<String>>(7)
            .map_err(sqlerr)?
            .unwrap_or_default(),
        detected_at: Ts(r.get(8).map_err(sqlerr)?),
        kind: {
            let kind: String = r.get(9).map_err(sqlerr)?;
            ck_model::GapKind::parse(&kind).ok_or(Error::Corrupt {
                what: "gap kind",
                value: kind.clone(),
            })?
        },
    })
}
