//! `candlekeep export --kind book --format tardis`: an instrument's
//! recorded order book as Tardis's `incremental_book_L2` CSV, exactly,
//! from the archive's book parts ([`ck_archive::books`]).
//!
//! `exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount`
//! with times in microseconds since 1970 (the venue's time where it sends
//! one, else the receive time), `side` `bid` or `ask`, and `amount` zero
//! for a level removed. Each part of the recording within the range begins
//! with the whole book as snapshot rows (`is_snapshot` true: a reader
//! resets its book there), at the part's start or at `--from`, whichever
//! is later, then every delta after it; a span where the book was unknown
//! (an incident, a lost connection) is simply no rows, and the snapshot
//! after it resets the book. hftbacktest's Tardis converter
//! (`hftbacktest.data.utils.tardis.convert`) reads the file as it is.
//! Written as `PATH.partial` and renamed when complete; `.gz` compresses.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use ck_archive::books::{BookFile, BookRow, book_at, book_parts, read_book_rows};
use ck_archive::layout::day_of;
use ck_book::BookSide;
use ck_model::{Exchange, Instrument, Ts};

/// What to export.
#[derive(Debug, Clone)]
pub(crate) struct BookExport {
    pub(crate) root: PathBuf,
    pub(crate) exchange: Exchange,
    pub(crate) instrument: Instrument,
    pub(crate) from: Option<Ts>,
    pub(crate) to: Ts,
    pub(crate) out: PathBuf,
}

/// Writes the export; how many rows.
pub(crate) fn export(request: &BookExport) -> anyhow::Result<u64> {
    let parts = recorded_parts(request)?;
    let partial = crate::export::partial_path(&request.out);
    let written = write(request, &parts, &partial);
    crate::export::put_in_place(&partial, &request.out, written)
}

/// The finished parts that overlap the range, in order; an error saying
/// where books come from when there are none.
pub(crate) fn recorded_parts(
    request: &BookExport,
) -> anyhow::Result<Vec<ck_archive::books::BookPart>> {
    let parts = parts(request)?;
    if parts.is_empty() {
        anyhow::bail!(
            "no recorded book of {} on {} in the range (books are recorded by live sources with `books = true`, under {})",
            request.instrument,
            request.exchange,
            request.root.display()
        );
    }
    Ok(parts)
}

/// The finished parts that overlap the range, in order.
fn parts(request: &BookExport) -> anyhow::Result<Vec<ck_archive::books::BookPart>> {
    let last = day_of(Ts(request.to.0.saturating_sub(1)));
    let first = match request.from {
        Some(from) => day_of(from) - 1,
        None => {
            let dir = ck_archive::layout::instrument_dir_named(
                &request.root,
                BookFile::Snapshots.kind(),
                request.exchange,
                &request.instrument,
            );
            let days = std::fs::read_dir(&dir)
                .map(|entries| {
                    entries
                        .filter_map(Result::ok)
                        .filter_map(|e| {
                            let name = e.file_name();
                            ck_archive::layout::parse_date(name.to_str()?.strip_prefix("date=")?)
                        })
                        .min()
                })
                .unwrap_or(None);
            match days {
                Some(d) => d,
                None => return Ok(Vec::new()),
            }
        }
    };
    let mut out = Vec::new();
    for day in first..=last {
        for p in book_parts(&request.root, request.exchange, &request.instrument, day)? {
            if p.to >= request.from.unwrap_or(Ts(i64::MIN)) && p.from < request.to {
                out.push(p);
            }
        }
    }
    Ok(out)
}

/// One level of what a book export holds, in order: each part's book at
/// its start (`snapshot`, its first level `first`), then every delta.
pub(crate) struct BookLine {
    /// The venue's time (the receive time where it sends none, and the
    /// part's start for a snapshot).
    pub(crate) exchange_time: Ts,
    /// The receive time.
    pub(crate) local_time: Ts,
    /// A level of the whole book (else a delta's change).
    pub(crate) snapshot: bool,
    /// The first level of a snapshot: a reader resets its book here.
    pub(crate) first: bool,
    pub(crate) bid: bool,
    pub(crate) price: ck_model::Decimal,
    /// Zero in a delta: the level is gone.
    pub(crate) size: ck_model::Decimal,
}

/// Calls `f` with every line of the export of `parts`, in order.
pub(crate) fn each_line(
    request: &BookExport,
    parts: &[ck_archive::books::BookPart],
    mut f: impl FnMut(&BookLine) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let decimal = |x: ck_book::Fixed| ck_model::Decimal::new(i128::from(x.mantissa), x.scale);
    for part in parts {
        let snapshots = read_book_rows(&part.snapshots, BookFile::Snapshots)?.rows;
        let deltas = read_book_rows(&part.deltas, BookFile::Deltas)?.rows;
        // The book at the start of what is exported of this part.
        let start = request.from.map_or(part.from, |f| f.max(part.from));
        let Some(book) = book_at(&snapshots, &deltas, start).with_context(|| {
            format!(
                "rebuilding the book at {start} from {}",
                part.deltas.display()
            )
        })?
        else {
            continue;
        };
        let mut first = true;
        for side in [BookSide::Bid, BookSide::Ask] {
            for l in book.levels(side) {
                f(&BookLine {
                    exchange_time: start,
                    local_time: start,
                    snapshot: true,
                    first,
                    bid: side == BookSide::Bid,
                    price: decimal(l.price),
                    size: decimal(l.size),
                })?;
                first = false;
            }
        }
        for r in deltas
            .iter()
            .filter(|r| r.ts_received > start && r.ts_received < request.to)
        {
            let BookRow {
                ts_received,
                ts_exchange,
                bid,
                price,
                size,
                ..
            } = r;
            f(&BookLine {
                exchange_time: ts_exchange.unwrap_or(*ts_received),
                local_time: *ts_received,
                snapshot: false,
                first: false,
                bid: *bid,
                price: *price,
                size: *size,
            })?;
        }
    }
    Ok(())
}

fn write(
    request: &BookExport,
    parts: &[ck_archive::books::BookPart],
    partial: &Path,
) -> anyhow::Result<u64> {
    let file = std::fs::File::create(partial)
        .with_context(|| format!("creating {}", partial.display()))?;
    let gz = request.out.extension().is_some_and(|e| e == "gz");
    let mut out: Box<dyn std::io::Write> = if gz {
        Box::new(flate2::write::GzEncoder::new(
            std::io::BufWriter::new(file),
            flate2::Compression::default(),
        ))
    } else {
        Box::new(std::io::BufWriter::new(file))
    };
    writeln!(
        out,
        "exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount"
    )?;
    let symbol = request.exchange.native_symbol(&request.instrument);
    let exchange = request.exchange.as_str();
    let mut rows = 0u64;
    each_line(request, parts, |l| {
        rows += 1;
        writeln!(
            out,
            "{exchange},{symbol},{},{},{},{},{},{}",
            l.exchange_time.0.div_euclid(1_000),
            l.local_time.0.div_euclid(1_000),
            l.snapshot,
            if l.bid { "bid" } else { "ask" },
            l.price,
            l.size,
        )?;
        Ok(())
    })?;
    out.flush()?;
    drop(out);
    Ok(rows)
}
