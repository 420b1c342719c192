//! Printing query results as JSON or CSV on stdout.

use std::io::Write;

use ck_app::pipeline::SourceReport;
use ck_bus::IngestError;
use ck_model::{Candle, CandleRecord, Quote, Trade};
use ck_store::StoredInstrument;
use serde::Serialize;

fn json<T: Serialize + ?Sized>(rows: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, rows)?;
    writeln!(out)?;
    Ok(())
}

fn csv<T: Serialize>(rows: &[T], header: &[&str]) -> anyhow::Result<()> {
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(std::io::stdout().lock());
    w.write_record(header)?;
    for r in rows {
        w.serialize(r)?;
    }
    w.flush()?;
    Ok(())
}

/// Candles as JSON (`candles`; CSV is [`candle_records_csv`]).
pub(crate) fn candles(candles: &[Candle]) -> anyhow::Result<()> {
    let rows: Vec<CandleRecord> = candles.iter().map(CandleRecord::from).collect();
    json(&rows)
}

/// Candle records as CSV rows under the header, as `candles --format csv`
/// prints them.
pub(crate) fn candle_records_csv(records: &ck_store::CandleRecords) -> anyhow::Result<()> {
    anyhow::ensure!(
        records.form == ck_store::RecordForm::Csv,
        "candle records in {:?}, not CSV",
        records.form
    );
    let mut out = std::io::stdout().lock();
    out.write_all(CandleRecord::CSV_HEADER)?;
    out.write_all(&records.bytes)?;
    out.flush()?;
    Ok(())
}

/// A trade as `trades` and `export` print it.
#[derive(Serialize)]
pub(crate) struct TradeRow<'a> {
    ts: ck_model::Ts,
    trade_id: &'a ck_model::TradeId,
    price: ck_model::Decimal,
    qty: ck_model::Decimal,
    side: ck_model::Side,
    received: ck_model::Ts,
}

impl TradeRow<'_> {
    /// The CSV header.
    pub(crate) const COLUMNS: [&'static str; 6] =
        ["ts", "trade_id", "price", "qty", "side", "received"];

    pub(crate) fn of(t: &Trade) -> TradeRow<'_> {
        TradeRow {
            ts: t.ts_exchange,
            trade_id: &t.trade_id,
            price: t.price,
            qty: t.size,
            side: t.side,
            received: t.ts_received,
        }
    }
}

pub(crate) fn trades(trades: &[Trade], as_csv: bool) -> anyhow::Result<()> {
    let rows: Vec<TradeRow<'_>> = trades.iter().map(TradeRow::of).collect();
    if as_csv {
        csv(&rows, &TradeRow::COLUMNS)
    } else {
        json(&rows)
    }
}

/// A quote as `quotes` and `export` print it.
#[derive(Serialize)]
pub(crate) struct QuoteRow {
    ts: ck_model::Ts,
    bid: ck_model::Decimal,
    bid_size: Option<ck_model::Decimal>,
    ask: ck_model::Decimal,
    ask_size: Option<ck_model::Decimal>,
    last: Option<ck_model::Decimal>,
    received: ck_model::Ts,
}

impl QuoteRow {
    /// The CSV header.
    pub(crate) const COLUMNS: [&'static str; 7] = [
        "ts", "bid", "bid_size", "ask", "ask_size", "last", "received",
    ];

    pub(crate) fn of(q: &Quote) -> QuoteRow {
        QuoteRow {
            ts: q.ts_exchange,
            bid: q.bid,
            bid_size: q.bid_size,
            ask: q.ask,
            ask_size: q.ask_size,
            last: q.last,
            received: q.ts_received,
        }
    }
}

pub(crate) fn quotes(quotes: &[Quote], as_csv: bool) -> anyhow::Result<()> {
    let rows: Vec<QuoteRow> = quotes.iter().map(QuoteRow::of).collect();
    if as_csv {
        csv(&rows, &QuoteRow::COLUMNS)
    } else {
        json(&rows)
    }
}

#[derive(Serialize)]
struct InstrumentRow<'a> {
    exchange: ck_model::Exchange,
    instrument: &'a ck_model::Instrument,
    native_symbol: String,
    status: Option<&'a str>,
    last_trade_time: Option<ck_model::Ts>,
}

pub(crate) fn instruments(list: &[StoredInstrument], as_csv: bool) -> anyhow::Result<()> {
    let rows: Vec<InstrumentRow<'_>> = list
        .iter()
        .map(|i| InstrumentRow {
            exchange: i.info.exchange,
            instrument: &i.info.instrument,
            native_symbol: if i.info.native_symbol.is_empty() {
                i.info.exchange.native_symbol(&i.info.instrument)
            } else {
                i.info.native_symbol.clone()
            },
            status: i.info.status.as_deref(),
            last_trade_time: i.last_trade_time,
        })
        .collect();
    if as_csv {
        csv(
            &rows,
            &[
                "exchange",
                "instrument",
                "native_symbol",
                "status",
                "last_trade_time",
            ],
        )
    } else {
        json(&rows)
    }
}

pub(crate) fn errors(list: &[IngestError], as_csv: bool) -> anyhow::Result<()> {
    if as_csv {
        csv(list, &["exchange", "origin", "message", "excerpt", "ts"])
    } else {
        json(list)
    }
}

pub(crate) fn gaps(list: &[ck_model::Gap], as_csv: bool) -> anyhow::Result<()> {
    if as_csv {
        csv(
            list,
            &[
                "exchange",
                "instrument",
                "from_ts",
                "to_ts",
                "first_missing_id",
                "last_missing_id",
                "state",
                "reason",
                "detected_at",
                "kind",
            ],
        )
    } else {
        json(list)
    }
}

/// What a prune removed (or would), as JSON, with the cutoffs used.
pub(crate) fn prune(
    report: &ck_app::retention::RetentionReport,
    plan: &ck_store::PrunePlan,
) -> anyhow::Result<()> {
    let candles: serde_json::Map<String, serde_json::Value> = report
        .store
        .candles
        .iter()
        .map(|(interval, n)| {
            let before = plan
                .candles_before
                .iter()
                .find(|(i, _)| i == interval)
                .map(|(_, t)| t.to_string());
            (
                interval.as_str().to_owned(),
                serde_json::json!({"rows": n, "before": before}),
            )
        })
        .collect();
    json(&serde_json::json!({
        "dry_run": plan.dry_run,
        "trades": {"rows": report.store.trades, "before": plan.trades_before.map(|t| t.to_string())},
        "quotes": {"rows": report.store.quotes, "before": plan.quotes_before.map(|t| t.to_string())},
        "candles": candles,
        "tapes": report.tapes.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "database_bytes_before": report.store.bytes_before,
        "database_bytes_after": report.store.bytes_after,
    }))
}

/// The summary of a run, on stderr.
pub(crate) fn print_report(report: &ck_app::pipeline::PipelineReport, started: std::time::Instant) {
    let secs = started.elapsed().as_secs_f64();
    for s in &report.sources {
        match s {
            SourceReport::Replay(r) => {
                // Every message is used, ignored, a parse error or of an
                // exchange without a parser: the four add up.
                let n = &r.normalized;
                let used = r
                    .records
                    .saturating_sub(n.ignored + n.errors + n.unsupported);
                eprintln!(
                    "replayed {} file(s): {} messages ({used} used, giving {} events; {} ignored; {} parse errors; {} from exchanges without a parser); {} unreadable lines",
                    r.files, r.records, n.events, n.ignored, n.errors, n.unsupported, r.bad_records
                );
            }
            SourceReport::Live(s) => eprintln!(
                "{}: {} messages, {} reconnects, last message {}",
                s.exchange,
                s.messages,
                s.reconnects,
                s.last_message.map_or("never".to_owned(), |t| t.to_string())
            ),
            SourceReport::Poll(p) => {
                eprintln!("polled: {} responses", p.responses);
                for r in &p.refused {
                    eprintln!("  {r}");
                }
            }
            SourceReport::Backfill(jobs) => {
                for j in jobs {
                    match j {
                        Ok(r) if r.already_done => eprintln!("{}: already complete", r.job),
                        Ok(r) => eprintln!(
                            "{}: {} rows in {} pages{}",
                            r.job,
                            r.rows,
                            r.pages,
                            if r.done {
                                ", complete"
                            } else {
                                ", stopped (rerun to continue)"
                            }
                        ),
                        Err(e) => eprintln!("backfill failed: {e}"),
                    }
                }
            }
            SourceReport::Nats(n) => eprintln!(
                "nats: {} messages ({} events) received, {} undecodable, acknowledged through stream sequence {}",
                n.received, n.events, n.undecodable, n.acked
            ),
            SourceReport::Kafka(k) => eprintln!(
                "kafka: {} messages ({} events) received, {} undecodable, {} offset commits",
                k.received, k.events, k.undecodable, k.acked
            ),
            SourceReport::Import(i) => {
                let mut quotes = String::new();
                if i.quotes > 0 {
                    quotes.push_str(&format!(", {} quotes", i.quotes));
                }
                if i.candles > 0 {
                    quotes.push_str(&format!(
                        ", {} exchange candles (`--source exchange`)",
                        i.candles
                    ));
                }
                eprintln!(
                    "imported {} trades{quotes}; {} bad rows skipped (each is an ingest error: `candlekeep errors`)",
                    i.trades, i.bad_row_count
                );
                for (line, why) in &i.bad_rows {
                    eprintln!("  line {line}: {why}");
                }
                let more = i.bad_row_count.saturating_sub(i.bad_rows.len() as u64);
                if more > 0 {
                    eprintln!("  and {more} more");
                }
            }
        }
    }
    if let Some(c) = &report.collector {
        eprintln!(
            "collector: {} events published to NATS, {} gaps found",
            c.published, c.gaps
        );
        return;
    }
    let a = &report.aggregator;
    let w = &report.writer.written;
    eprintln!(
        "candles: {} trades aggregated, {} duplicates, {} late (revised), {} too late; {} closed, {} revised, {} flat",
        a.trades,
        a.duplicates,
        a.late_trades,
        a.too_late,
        a.candles_closed,
        a.candles_revised,
        a.flat_candles
    );
    eprintln!(
        "store: {} new trades ({} already stored), {} candle writes, {} quotes in {} commits; {:.2}s",
        w.trades_inserted,
        w.trades_duplicate,
        w.candles_upserted,
        w.quotes_inserted,
        report.writer.commits,
        secs
    );
    let p = &report.packed;
    if p.days_packed > 0 {
        // A pack is one UTC day of one instrument at one interval.
        eprintln!(
            "packed {} settled day(s) of one instrument and interval each ({} candles, {} KB) for fast long reads",
            p.days_packed,
            p.candles,
            p.bytes / 1_000
        );
    }
    let a = &report.archived;
    if a.days > 0 {
        eprintln!(
            "archived {} settled day file(s) of one instrument each: {} trades, {} quotes, {} candles, {} KB of Parquet",
            a.days,
            a.trades,
            a.quotes,
            a.candles,
            a.bytes / 1_000
        );
    }
}

/// Where the API of a process listens, on stderr (scripts and tests read it).
pub(crate) fn announce_api(topology: &ck_app::topology::Topology) {
    if let Some(addr) = topology.api_addr() {
        eprintln!("API on http://{addr} (docs at /api/docs)");
    }
}
