//! The JSON of a live record as the API pushes it to WebSocket clients:
//! one shape per kind, shared by every consumer that hands records to the
//! outside (the WebSocket encoder, the Kafka sink), so a record reads the
//! same wherever it is taken from.
//!
//! - `{"type":"trade","exchange","instrument","trade_id","price","qty","side","ts","received"}`
//! - `{"type":"ticker","exchange","instrument","bid","ask","bid_size","ask_size","last","ts"}`
//! - `{"type":"candle","exchange","instrument","interval","state","candle":{…CandleRecord}}`
//! - `{"type":"gap", …Gap}` (exchange, instrument, from_ts, to_ts, ids, state, reason, detected_at)
//!
//! Decimals are exact strings, trade ids strings, times RFC 3339.

use ck_model::CandleRecord;
use serde_json::{Value, json};

use crate::Event;

/// The JSON of `event`, if it is a trade, quote, candle or gap.
#[must_use]
pub fn record_json(event: &Event) -> Option<Value> {
    Some(match event {
        Event::Trade(t) => {
            json!({"type": "trade", "exchange": t.exchange, "instrument": t.instrument,
           "trade_id": t.trade_id, "price": t.price, "qty": t.size, "side": t.side,
           "ts": t.ts_exchange, "received": t.ts_received})
        }
        Event::Quote(q) => {
            json!({"type": "ticker", "exchange": q.exchange, "instrument": q.instrument,
           "bid": q.bid, "ask": q.ask, "bid_size": q.bid_size, "ask_size": q.ask_size,
           "last": q.last, "ts": q.ts_exchange})
        }
        Event::Candle(c) => {
            json!({"type": "candle", "exchange": c.exchange, "instrument": c.instrument,
           "interval": c.interval, "state": c.state, "candle": CandleRecord::from(c.as_ref())})
        }
        Event::Gap(g) => {
            let mut v = serde_json::to_value(g).ok()?;
            v.as_object_mut()?.insert("type".to_owned(), json!("gap"));
            v
        }
        _ => return None,
    })
}
