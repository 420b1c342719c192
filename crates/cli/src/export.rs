//! `candlekeep export`: stored trades, quotes or candles of one instrument
//! to a Parquet, CSV or JSON-lines file, exactly, streaming from the store a
//! window at a time (an hour of trades or quotes, thirty days of candles)
//! with a progress bar.
//!
//! - Parquet files are the archive's own (`ck_archive`): typed, exact
//!   columns, one file. Their decimal columns' scales are learnt from a
//!   first pass over the range, then the rows are written in a second.
//! - CSV and JSON lines have the columns of `candlekeep trades|quotes|candles
//!   --format csv|json`.
//! - The file is written beside `--out` (`PATH.partial`) and renamed into
//!   place when it is complete: a failed export removes it, and an
//!   interrupted one leaves no half file under the name asked for.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use ck_model::{Candle, Exchange, Instrument, Interval, Quote, Trade, Ts};
use ck_store::{CandleSource, RangeQuery, Store};

use crate::args::ExportFormat;

/// What of the store `export` writes (books come from the archive's book
/// files: [`crate::export_book`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreKind {
    Trades,
    Quotes,
    Candles,
}

impl StoreKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            StoreKind::Trades => "trades",
            StoreKind::Quotes => "quotes",
            StoreKind::Candles => "candles",
        }
    }
}

/// What to export, from the command line.
#[derive(Debug, Clone)]
pub(crate) struct ExportRequest {
    pub(crate) kind: StoreKind,
    pub(crate) exchange: Exchange,
    pub(crate) instrument: Instrument,
    /// Candles: these intervals.
    pub(crate) intervals: Vec<Interval>,
    pub(crate) from: Option<Ts>,
    pub(crate) to: Ts,
    pub(crate) format: ExportFormat,
    pub(crate) out: PathBuf,
}

/// Rows of one kind, read a window at a time.
enum Rows {
    Trades(Vec<Trade>),
    Quotes(Vec<Quote>),
    Candles(Vec<Candle>),
}

impl Rows {
    fn len(&self) -> usize {
        match self {
            Rows::Trades(v) => v.len(),
            Rows::Quotes(v) => v.len(),
            Rows::Candles(v) => v.len(),
        }
    }
}

/// How long a window of each kind is.
fn window(kind: StoreKind) -> i64 {
    const HOUR: i64 = 3_600_000_000_000;
    match kind {
        StoreKind::Trades | StoreKind::Quotes => HOUR,
        StoreKind::Candles => 30 * 24 * HOUR,
    }
}

/// The windows of `[from, to)`, in order, for each interval (candles) or
/// once.
fn windows(request: &ExportRequest, from: Ts) -> Vec<(Option<Interval>, Ts, Ts)> {
    let step = window(request.kind);
    let passes: Vec<Option<Interval>> = match request.kind {
        StoreKind::Candles => request.intervals.iter().copied().map(Some).collect(),
        _ => vec![None],
    };
    let mut out = Vec::new();
    for interval in passes {
        let mut at = from;
        while at < request.to {
            let end = Ts(at.0.saturating_add(step).min(request.to.0));
            out.push((interval, at, end));
            at = end;
        }
    }
    out
}

async fn read(
    store: &dyn Store,
    request: &ExportRequest,
    (interval, from, to): (Option<Interval>, Ts, Ts),
) -> anyhow::Result<Rows> {
    let q = RangeQuery {
        exchange: request.exchange,
        instrument: request.instrument.clone(),
        from,
        to,
        limit: usize::MAX,
    };
    Ok(match (request.kind, interval) {
        (StoreKind::Trades, _) => Rows::Trades(store.trades(&q).await?),
        (StoreKind::Quotes, _) => Rows::Quotes(store.quotes(&q).await?),
        (StoreKind::Candles, Some(interval)) => {
            Rows::Candles(store.candles(&q, interval, CandleSource::Ours).await?)
        }
        (StoreKind::Candles, None) => Rows::Candles(Vec::new()),
    })
}

/// Where the export begins: `--from`, or the oldest stored row.
async fn start(store: &dyn Store, request: &ExportRequest) -> anyhow::Result<Option<Ts>> {
    if let Some(from) = request.from {
        return Ok(Some(from));
    }
    let q = RangeQuery {
        exchange: request.exchange,
        instrument: request.instrument.clone(),
        from: Ts(0),
        to: request.to,
        limit: 1,
    };
    Ok(match request.kind {
        StoreKind::Trades => store.trades(&q).await?.first().map(|t| t.ts_exchange),
        StoreKind::Quotes => store.quotes(&q).await?.first().map(|q| q.ts_exchange),
        StoreKind::Candles => {
            let mut first = None;
            for interval in &request.intervals {
                let oldest = store.candles(&q, *interval, CandleSource::Ours).await?;
                if let Some(c) = oldest.first() {
                    first = Some(first.map_or(c.open_time, |f: Ts| f.min(c.open_time)));
                }
            }
            first
        }
    })
}

/// Runs an export; how many rows it wrote.
pub(crate) async fn export(store: Arc<dyn Store>, request: &ExportRequest) -> anyhow::Result<u64> {
    let Some(from) = start(store.as_ref(), request).await? else {
        anyhow::bail!(
            "nothing stored to export: no {} of {} {} before {}",
            request.kind.as_str(),
            request.exchange,
            request.instrument,
            request.to
        );
    };
    let windows = windows(request, from);
    let partial = partial_path(&request.out);
    let written = write(store.as_ref(), request, &windows, &partial).await;
    put_in_place(&partial, &request.out, written)
}

/// Moves the file written at `partial` to `out` once `written` says it is
/// complete; removes it when writing failed (what was written is of no
/// use, and the error says why).
pub(crate) fn put_in_place<T>(
    partial: &Path,
    out: &Path,
    written: anyhow::Result<T>,
) -> anyhow::Result<T> {
    if written.is_err() {
        let _ = std::fs::remove_file(partial);
    }
    let done = written?;
    std::fs::rename(partial, out)
        .with_context(|| format!("moving {} to {}", partial.display(), out.display()))?;
    Ok(done)
}

/// Writes every window to `partial`; how many rows.
async fn write(
    store: &dyn Store,
    request: &ExportRequest,
    windows: &[(Option<Interval>, Ts, Ts)],
    partial: &Path,
) -> anyhow::Result<u64> {
    let mut sink = Sink::create(store, request, windows, partial).await?;
    let bar = indicatif::ProgressBar::new(windows.len() as u64).with_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} windows, {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut rows = 0u64;
    for w in windows {
        let batch = read(store, request, *w).await?;
        rows += batch.len() as u64;
        sink.write(batch)?;
        bar.inc(1);
        bar.set_message(format!("{rows} rows"));
    }
    bar.finish_and_clear();
    sink.finish()?;
    Ok(rows)
}

/// Where a file is written before it is complete: `PATH.partial`.
pub(crate) fn partial_path(out: &Path) -> PathBuf {
    let mut name = out
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".partial");
    out.with_file_name(name)
}

/// Where rows go.
enum Sink {
    Trades(ck_archive::trades::TradeWriter),
    Quotes(ck_archive::quotes::QuoteWriter),
    Candles(ck_archive::candles::CandleWriter),
    Text {
        out: std::io::BufWriter<std::fs::File>,
        csv: bool,
        header: bool,
    },
}

impl Sink {
    async fn create(
        store: &dyn Store,
        request: &ExportRequest,
        windows: &[(Option<Interval>, Ts, Ts)],
        path: &Path,
    ) -> anyhow::Result<Sink> {
        if request.format != ExportFormat::Parquet {
            let file = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            return Ok(Sink::Text {
                out: std::io::BufWriter::new(file),
                csv: request.format == ExportFormat::Csv,
                header: false,
            });
        }
        // Parquet: the columns' scales, from a first pass.
        let (exchange, instrument) = (request.exchange, &request.instrument);
        let mut trades = ck_archive::trades::TradeShape::new(exchange, instrument);
        let mut quotes = ck_archive::quotes::QuoteShape::new(exchange, instrument);
        let mut candles = ck_archive::candles::CandleShape::new(exchange, instrument);
        for w in windows {
            match read(store, request, *w).await? {
                Rows::Trades(v) => v.iter().for_each(|t| trades.observe(t)),
                Rows::Quotes(v) => v.iter().for_each(|q| quotes.observe(q)),
                Rows::Candles(v) => v.iter().for_each(|c| candles.observe(c)),
            }
        }
        Ok(match request.kind {
            StoreKind::Trades => {
                Sink::Trades(ck_archive::trades::TradeWriter::create(path, trades)?)
            }
            StoreKind::Quotes => {
                Sink::Quotes(ck_archive::quotes::QuoteWriter::create(path, quotes)?)
            }
            StoreKind::Candles => {
                Sink::Candles(ck_archive::candles::CandleWriter::create(path, candles)?)
            }
        })
    }

    fn write(&mut self, rows: Rows) -> anyhow::Result<()> {
        match (self, rows) {
            (Sink::Trades(w), Rows::Trades(v)) => w.write(&v)?,
            (Sink::Quotes(w), Rows::Quotes(v)) => w.write(&v)?,
            (Sink::Candles(w), Rows::Candles(v)) => w.write(&v)?,
            (Sink::Text { out, csv, header }, rows) => {
                let first = !*header;
                *header = true;
                match rows {
                    Rows::Trades(v) => {
                        let rows: Vec<_> = v.iter().map(crate::output::TradeRow::of).collect();
                        text(out, *csv, first, &crate::output::TradeRow::COLUMNS, &rows)?;
                    }
                    Rows::Quotes(v) => {
                        let rows: Vec<_> = v.iter().map(crate::output::QuoteRow::of).collect();
                        text(out, *csv, first, &crate::output::QuoteRow::COLUMNS, &rows)?;
                    }
                    Rows::Candles(v) => {
                        let rows: Vec<ck_model::CandleRecord> =
                            v.iter().map(ck_model::CandleRecord::from).collect();
                        text(out, *csv, first, &ck_model::CandleRecord::COLUMNS, &rows)?;
                    }
                }
            }
            _ => anyhow::bail!("rows of another kind than the file's"),
        }
        Ok(())
    }

    fn finish(self) -> anyhow::Result<()> {
        match self {
            Sink::Trades(w) => {
                w.finish()?;
            }
            Sink::Quotes(w) => {
                w.finish()?;
            }
            Sink::Candles(w) => {
                w.finish()?;
            }
            Sink::Text { out, .. } => {
                let file = out.into_inner().map_err(|e| e.into_error())?;
                file.sync_all()?;
            }
        }
        Ok(())
    }
}

/// Rows as CSV (a header first) or JSON lines.
fn text<T: serde::Serialize>(
    out: &mut std::io::BufWriter<std::fs::File>,
    csv: bool,
    first: bool,
    columns: &[&str],
    rows: &[T],
) -> anyhow::Result<()> {
    if csv {
        let mut w = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(&mut *out);
        if first {
            w.write_record(columns)?;
        }
        for r in rows {
            w.serialize(r)?;
        }
        w.flush()?;
    } else {
        for r in rows {
            serde_json::to_writer(&mut *out, r)?;
            out.write_all(b"\n")?;
        }
    }
    Ok(())
}
