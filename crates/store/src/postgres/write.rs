//! The writer's commit of one batch: trades (a plain insert, or on a
//! conflict one that skips what is there), quotes and candles as upserts.

#[allow(clippy::wildcard_imports)]
use super::*;

pub(super) const TRADE_INSERT: &str = "INSERT INTO trades (instrument_id, trade_id, trade_seq, ts, price, size, side, ts_received, fills)
     SELECT i, t, s, ts, p, z, sd, tr, f
     FROM unnest($1::int8[], $2::text[], $3::int8[], $4::int8[], $5::numeric[], $6::numeric[], $7::int2[], $8::int8[], $9::int4[])
          AS u(i, t, s, ts, p, z, sd, tr, f)";

pub(super) const TRADE_INSERT_ON_CONFLICT: &str = "INSERT INTO trades (instrument_id, trade_id, trade_seq, ts, price, size, side, ts_received, fills)
     SELECT i, t, s, ts, p, z, sd, tr, f
     FROM unnest($1::int8[], $2::text[], $3::int8[], $4::int8[], $5::numeric[], $6::numeric[], $7::int2[], $8::int8[], $9::int4[])
          AS u(i, t, s, ts, p, z, sd, tr, f)
     ON CONFLICT DO NOTHING";

const QUOTE_UPSERT: &str = "INSERT INTO quotes (instrument_id, ts, ts_received, bid, bid_size, ask, ask_size, last)
     SELECT i, ts, tr, b::numeric, bs::numeric, a::numeric, az::numeric, l::numeric
     FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
          AS u(i, ts, tr, b, bs, a, az, l)
     ON CONFLICT (instrument_id, ts, ts_received) DO UPDATE SET
        bid = excluded.bid, bid_size = excluded.bid_size, ask = excluded.ask,
        ask_size = excluded.ask_size, last = excluded.last";

const CANDLE_UPSERT: &str = "INSERT INTO candles (instrument_id, interval, open_time, source, open, high, low, close, volume,
                          quote_volume, vwap, taker_buy_volume, trades, first_trade_id, last_trade_id, state)
     SELECT i, iv, ot, src, o::numeric, h::numeric, l::numeric, c::numeric, v::numeric, qv::numeric,
            vw::numeric, tb::numeric, n, ft, lt, st
     FROM unnest($1::int8[], $2::text[], $3::int8[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
                 $9::text[], $10::text[], $11::text[], $12::text[], $13::int8[], $14::text[], $15::text[], $16::text[])
          AS u(i, iv, ot, src, o, h, l, c, v, qv, vw, tb, n, ft, lt, st)
     ON CONFLICT (instrument_id, interval, source, open_time) DO UPDATE SET
        open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close,
        volume = excluded.volume, quote_volume = excluded.quote_volume, vwap = excluded.vwap,
        taker_buy_volume = excluded.taker_buy_volume, trades = excluded.trades,
        first_trade_id = excluded.first_trade_id, last_trade_id = excluded.last_trade_id,
        state = excluded.state
     WHERE excluded.state <> 'provisional' OR candles.state = 'provisional'";

/// Column arrays for one trade insert.
#[derive(Default)]
struct TradeColumns {
    instrument: Vec<i64>,
    id: Vec<String>,
    seq: Vec<Option<i64>>,
    ts: Vec<i64>,
    price: Vec<rows::PgNumeric>,
    size: Vec<rows::PgNumeric>,
    side: Vec<i16>,
    received: Vec<i64>,
    fills: Vec<i32>,
}

pub(super) async fn write_batch(
    conn: &mut Conn,
    state: &mut WriterState<'_>,
    b: &WriteBatch,
) -> Result<WriteSummary, Error> {
    let ids = &mut *state.ids;
    let mut summary = WriteSummary::default();
    let mut tx = conn
        .client
        .transaction()
        .await
        .map_err(pg("starting write"))?;
    for i in &b.instruments {
        tx.execute(
            "INSERT INTO instruments (exchange, instrument, native_symbol, status) VALUES ($1, $2, $3, $4)
             ON CONFLICT (exchange, instrument) DO UPDATE SET native_symbol = excluded.native_symbol, status = excluded.status",
            &[&i.exchange.as_str(), &i.instrument.as_str(), &i.native_symbol, &i.status],
        )
        .await
        .map_err(pg("upserting instrument"))?;
    }
    if !b.trades.is_empty() {
        let mut cols = TradeColumns::default();
        let mut last: Option<(Exchange, &Instrument, i64)> = None;
        // Each key once per statement: a repeat within the batch is a duplicate.
        let mut keys: std::collections::HashSet<(i64, String)> =
            std::collections::HashSet::with_capacity(b.trades.len());
        for t in &b.trades {
            let id = match last {
                Some((e, i, id))
                    if e == t.exchange && (i.ptr_eq(&t.instrument) || *i == t.instrument) =>
                {
                    id
                }
                _ => {
                    let id = instrument_id(&tx, ids, t.exchange, &t.instrument).await?;
                    last = Some((t.exchange, &t.instrument, id));
                    id
                }
            };
            let text = id_text(&t.trade_id);
            if !keys.insert((id, text.clone())) {
                continue;
            }
            cols.instrument.push(id);
            cols.id.push(text);
            cols.seq.push(id_seq(&t.trade_id));
            cols.ts.push(t.ts_exchange.0);
            cols.price.push(rows::PgNumeric(t.price));
            cols.size.push(rows::PgNumeric(t.size));
            cols.side.push(side_code(t.side));
            cols.received.push(t.ts_received.0);
            cols.fills.push(i32::try_from(t.fills).unwrap_or(i32::MAX));
        }
        let params: [&(dyn ToSql + Sync); 9] = [
            &cols.instrument,
            &cols.id,
            &cols.seq,
            &cols.ts,
            &cols.price,
            &cols.size,
            &cols.side,
            &cols.received,
            &cols.fills,
        ];
        // Fresh trades go in with a plain insert; if one is stored already
        // (a unique violation), the batch goes again with ON CONFLICT, and
        // so do the next batches for a while.
        let fast = if *state.conflict_batches > 0 {
            *state.conflict_batches -= 1;
            None
        } else {
            let sp = tx
                .savepoint("trades")
                .await
                .map_err(pg("starting savepoint"))?;
            match sp.execute(TRADE_INSERT, &params).await {
                Ok(n) => {
                    sp.commit().await.map_err(pg("releasing savepoint"))?;
                    Some(n)
                }
                Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
                    sp.rollback().await.map_err(pg("rolling back savepoint"))?;
                    *state.conflict_batches = 16;
                    None
                }
                Err(e) => return Err(pg("inserting trades")(e)),
            }
        };
        let n = match fast {
            Some(n) => n,
            None => tx
                .execute(TRADE_INSERT_ON_CONFLICT, &params)
                .await
                .map_err(pg("inserting trades"))?,
        };
        summary.trades_inserted = n;
        summary.trades_duplicate = b.trades.len() as u64 - n;
    }
    if !b.quotes.is_empty() {
        // One upsert may not touch a row twice: the last quote of a key wins,
        // as it would row by row.
        let mut by_key: HashMap<(i64, i64, i64), &Quote> = HashMap::new();
        let mut order = Vec::new();
        for q in &b.quotes {
            let id = instrument_id(&tx, ids, q.exchange, &q.instrument).await?;
            let key = (id, q.ts_exchange.0, q.ts_received.0);
            if by_key.insert(key, q).is_none() {
                order.push(key);
            }
        }
        let text = |d: Option<ck_model::Decimal>| d.map(|d| d.to_string());
        let mut c: (Vec<i64>, Vec<i64>, Vec<i64>) = Default::default();
        let mut d: [Vec<Option<String>>; 5] = Default::default();
        for key in &order {
            let q = by_key[key];
            c.0.push(key.0);
            c.1.push(key.1);
            c.2.push(key.2);
            d[0].push(Some(q.bid.to_string()));
            d[1].push(text(q.bid_size));
            d[2].push(Some(q.ask.to_string()));
            d[3].push(text(q.ask_size));
            d[4].push(text(q.last));
        }
        tx.execute(
            QUOTE_UPSERT,
            &[&c.0, &c.1, &c.2, &d[0], &d[1], &d[2], &d[3], &d[4]],
        )
        .await
        .map_err(pg("inserting quotes"))?;
        summary.quotes_inserted = b.quotes.len() as u64;
    }
    for (candles, source) in [
        (&b.candles, CandleSource::Ours),
        (&b.exchange_candles, CandleSource::Exchange),
    ] {
        if candles.is_empty() {
            continue;
        }
        summary.candles_upserted += upsert_candles(&tx, ids, candles, source).await?;
    }
    for e in &b.errors {
        tx.execute(
            "INSERT INTO ingest_errors (ts, exchange, origin, message, excerpt) VALUES ($1, $2, $3, $4, $5)",
            &[&e.ts.0, &e.exchange.map(Exchange::as_str), &e.origin, &e.message, &e.excerpt],
        )
        .await
        .map_err(pg("inserting ingest error"))?;
    }
    for g in &b.gaps {
        let id = instrument_id(&tx, ids, g.exchange, &g.instrument).await?;
        let [first, last] =
            [g.first_missing_id, g.last_missing_id].map(|v| v.map(|n| n.to_string()));
        tx.execute(
            "INSERT INTO gaps (instrument_id, from_ts, to_ts, from_trade_id, to_trade_id, state, reason, detected_at, updated_at, kind)
             VALUES ($1, $2, $3, $4::text::numeric, $5::text::numeric, $6, $7, $8, $9, $10)
             ON CONFLICT (instrument_id, kind, from_ts, to_ts, coalesce(from_trade_id, -1), coalesce(to_trade_id, -1))
             DO UPDATE SET state = excluded.state, reason = excluded.reason, updated_at = excluded.updated_at
             WHERE excluded.state <> 'open'",
            &[&id, &g.from_ts.0, &g.to_ts.0, &first, &last, &g.state.as_str(), &g.reason, &g.detected_at.0, &Ts::now().0, &g.kind.as_str()],
        )
        .await
        .map_err(pg("inserting gap"))?;
    }
    for p in &b.progress {
        tx.execute(
            "INSERT INTO backfill_progress (job, cursor, done, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (job) DO UPDATE SET cursor = excluded.cursor, done = excluded.done, updated_at = excluded.updated_at",
            &[&p.job, &p.cursor, &p.done, &p.updated_at.0],
        )
        .await
        .map_err(pg("writing backfill progress"))?;
    }
    tx.commit().await.map_err(pg("committing write"))?;
    Ok(summary)
}

/// Upserts candles of one source. Within the batch, later versions of a
/// candle replace earlier ones by the store's rule (a provisional never
/// replaces a closed or revised candle), so one statement suffices.
pub(super) async fn upsert_candles(
    tx: &tokio_postgres::Transaction<'_>,
    ids: &mut HashMap<(Exchange, Instrument), i64>,
    candles: &[Candle],
    source: CandleSource,
) -> Result<u64, Error> {
    let mut latest: HashMap<(i64, Interval, i64), &Candle> = HashMap::new();
    let mut order = Vec::new();
    for c in candles {
        let id = instrument_id(tx, ids, c.exchange, &c.instrument).await?;
        let key = (id, c.interval, c.open_time.0);
        match latest.get(&key) {
            None => {
                order.push(key);
                latest.insert(key, c);
            }
            Some(old)
                if c.state != CandleState::Provisional || old.state == CandleState::Provisional =>
            {
                latest.insert(key, c);
            }
            Some(_) => {}
        }
    }
    let mut days = std::collections::BTreeSet::new();
    let mut ints: [Vec<i64>; 3] = Default::default();
    let mut texts: [Vec<String>; 11] = Default::default();
    let mut trade_ids: [Vec<Option<String>>; 2] = Default::default();
    for key in &order {
        let c = latest[key];
        if crate::packed::packable(c.interval) {
            days.insert((
                key.0,
                c.interval.as_str(),
                source.as_str(),
                crate::packed::day_of(key.2),
            ));
        }
        ints[0].push(key.0);
        ints[1].push(key.2);
        ints[2].push(i64::try_from(c.trades).unwrap_or(i64::MAX));
        for (i, v) in [
            c.interval.as_str().to_owned(),
            source.as_str().to_owned(),
            c.open.to_string(),
            c.high.to_string(),
            c.low.to_string(),
            c.close.to_string(),
            c.volume.to_string(),
            c.quote_volume.to_string(),
            c.vwap.to_string(),
            c.taker_buy_volume.to_string(),
            c.state.as_str().to_owned(),
        ]
        .into_iter()
        .enumerate()
        {
            texts[i].push(v);
        }
        trade_ids[0].push(c.first_trade_id.as_ref().map(id_text));
        trade_ids[1].push(c.last_trade_id.as_ref().map(id_text));
    }
    let n = tx
        .execute(
            CANDLE_UPSERT,
            &[
                &ints[0],
                &texts[0],
                &ints[1],
                &texts[1],
                &texts[2],
                &texts[3],
                &texts[4],
                &texts[5],
                &texts[6],
                &texts[7],
                &texts[8],
                &texts[9],
                &ints[2],
                &trade_ids[0],
                &trade_ids[1],
                &texts[10],
            ],
        )
        .await
        .map_err(pg("upserting candles"))?;
    // After the candles: a packer that locked one of these days first has
    // read its rows without them, and its pack is marked stale again here.
    candle_days::mark_stale(tx, &days).await?;
    Ok(n)
}
