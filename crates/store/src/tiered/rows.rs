//! What the tiered store does alike with trades and quotes: a row's time
//! and key, reading rows from either tier, and writing a day's file.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use ck_archive::Written;
use ck_archive::layout::Kind;
use ck_archive::quotes::{QuoteShape, QuoteWriter};
use ck_archive::trades::{TradeShape, TradeWriter};
use ck_model::{Exchange, Instrument, Quote, Trade, TradeId, Ts};

use crate::{ArchivedRows, Error, RangeQuery, RowKind, Store};

type Read<'a, R> = Pin<Box<dyn Future<Output = Result<Vec<R>, Error>> + Send + 'a>>;

/// A row kept in both tiers: trades or quotes.
pub(crate) trait DayRow: Clone + Send + Sync + Sized + 'static {
    /// The archive's folder of them.
    const KIND: Kind;
    /// The store's table of them.
    const ROW_KIND: RowKind;
    /// What tells two rows of one time apart (a row stored twice has one
    /// time and one key).
    type Key: Ord + Clone + Send + Sync + std::fmt::Debug + 'static;
    /// What a file of them must hold, learnt before it is written.
    type Shape: Send;
    /// A file being written.
    type Writer: Send;

    fn time(&self) -> Ts;
    fn key(&self) -> Self::Key;
    /// The store's rows in `q`'s range, in order.
    fn hot<'a>(store: &'a dyn Store, q: &'a RangeQuery) -> Read<'a, Self>;
    /// A day file's rows with exchange time in `[from, to)`, in order.
    fn read(path: &Path, from: Ts, to: Ts) -> Result<Vec<Self>, ck_archive::Error>;
    fn shape(exchange: Exchange, instrument: &Instrument) -> Self::Shape;
    fn observe(shape: &mut Self::Shape, row: &Self);
    fn create(path: &Path, shape: Self::Shape) -> Result<Self::Writer, ck_archive::Error>;
    fn write(writer: &mut Self::Writer, rows: &[Self]) -> Result<(), ck_archive::Error>;
    fn finish(writer: Self::Writer) -> Result<Written, ck_archive::Error>;
    /// The rows with these keys, to delete from the store.
    fn archived<'a>(
        exchange: Exchange,
        instrument: &'a Instrument,
        keys: &'a [(Ts, Self::Key)],
        scratch: &'a mut Vec<Self::Key>,
    ) -> ArchivedRows<'a>;
}

impl DayRow for Trade {
    const KIND: Kind = Kind::Trades;
    const ROW_KIND: RowKind = RowKind::Trades;
    type Key = TradeId;
    type Shape = TradeShape;
    type Writer = TradeWriter;

    fn time(&self) -> Ts {
        self.ts_exchange
    }
    fn key(&self) -> TradeId {
        self.trade_id.clone()
    }
    fn hot<'a>(store: &'a dyn Store, q: &'a RangeQuery) -> Read<'a, Trade> {
        Box::pin(store.trades(q))
    }
    fn read(path: &Path, from: Ts, to: Ts) -> Result<Vec<Trade>, ck_archive::Error> {
        ck_archive::trades::read_trades_between(path, from, to).map(|d| d.trades)
    }
    fn shape(exchange: Exchange, instrument: &Instrument) -> TradeShape {
        TradeShape::new(exchange, instrument)
    }
    fn observe(shape: &mut TradeShape, row: &Trade) {
        shape.observe(row);
    }
    fn create(path: &Path, shape: TradeShape) -> Result<TradeWriter, ck_archive::Error> {
        TradeWriter::create(path, shape)
    }
    fn write(writer: &mut TradeWriter, rows: &[Trade]) -> Result<(), ck_archive::Error> {
        writer.write(rows)
    }
    fn finish(writer: TradeWriter) -> Result<Written, ck_archive::Error> {
        writer.finish()
    }
    fn archived<'a>(
        exchange: Exchange,
        instrument: &'a Instrument,
        keys: &'a [(Ts, TradeId)],
        scratch: &'a mut Vec<TradeId>,
    ) -> ArchivedRows<'a> {
        scratch.clear();
        scratch.extend(keys.iter().map(|k| k.1.clone()));
        ArchivedRows::Trades {
            exchange,
            instrument,
            ids: scratch,
        }
    }
}

impl DayRow for Quote {
    const KIND: Kind = Kind::Quotes;
    const ROW_KIND: RowKind = RowKind::Quotes;
    type Key = Ts;
    type Shape = QuoteShape;
    type Writer = QuoteWriter;

    fn time(&self) -> Ts {
        self.ts_exchange
    }
    fn key(&self) -> Ts {
        self.ts_received
    }
    fn hot<'a>(store: &'a dyn Store, q: &'a RangeQuery) -> Read<'a, Quote> {
        Box::pin(store.quotes(q))
    }
    fn read(path: &Path, from: Ts, to: Ts) -> Result<Vec<Quote>, ck_archive::Error> {
        ck_archive::quotes::read_quotes_between(path, from, to).map(|d| d.quotes)
    }
    fn shape(exchange: Exchange, instrument: &Instrument) -> QuoteShape {
        QuoteShape::new(exchange, instrument)
    }
    fn observe(shape: &mut QuoteShape, row: &Quote) {
        shape.observe(row);
    }
    fn create(path: &Path, shape: QuoteShape) -> Result<QuoteWriter, ck_archive::Error> {
        QuoteWriter::create(path, shape)
    }
    fn write(writer: &mut QuoteWriter, rows: &[Quote]) -> Result<(), ck_archive::Error> {
        writer.write(rows)
    }
    fn finish(writer: QuoteWriter) -> Result<Written, ck_archive::Error> {
        writer.finish()
    }
    fn archived<'a>(
        exchange: Exchange,
        instrument: &'a Instrument,
        keys: &'a [(Ts, Ts)],
        _scratch: &'a mut Vec<Ts>,
    ) -> ArchivedRows<'a> {
        ArchivedRows::Quotes {
            exchange,
            instrument,
            keys,
        }
    }
}

/// `a` and `b` (each in order) as one list in order, a row in both tiers
/// once, at most `limit` rows.
pub(crate) fn merge<R: DayRow>(a: Vec<R>, b: Vec<R>, limit: usize) -> Vec<R> {
    if b.is_empty() {
        let mut a = a;
        a.truncate(limit);
        return a;
    }
    let mut all = a;
    all.extend(b);
    // Two sorted runs: the stable sort merges them in linear time.
    all.sort_by_key(|x| (x.time(), x.key()));
    all.dedup_by(|x, y| x.time() == y.time() && x.key() == y.key());
    all.truncate(limit);
    all
}

/// Writes `rows` (in order, of one instrument) as a whole file at `path`.
pub(crate) fn write_file<R: DayRow>(
    path: &Path,
    exchange: Exchange,
    instrument: &Instrument,
    rows: &[R],
) -> Result<Written, ck_archive::Error> {
    let mut shape = R::shape(exchange, instrument);
    for r in rows {
        R::observe(&mut shape, r);
    }
    let mut writer = R::create(path, shape)?;
    R::write(&mut writer, rows)?;
    R::finish(writer)
}
