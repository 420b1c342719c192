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
    type Shape: Send + Clone;
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
    /// Whether files of shapes `a` and `b` have the same columns.
    fn same_columns(a: &Self::Shape, b: &Self::Shape) -> bool;
    /// How this row stands to the one before it in a stream written
    /// straight to a day's file (see [`super::direct`]): after it, the
    /// same row again, or out of order (`last` is `None` for a day's first
    /// row).
    fn follows(&self, last: Option<&Self>) -> Follows;
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
    fn same_columns(a: &TradeShape, b: &TradeShape) -> bool {
        a.same_columns(b)
    }
    /// Numeric ids rising with time: a row after the last is unique
    /// without a set of the day's ids (the store's key is the id alone).
    /// A string id leaves the day to the store.
    fn follows(&self, last: Option<&Trade>) -> Follows {
        let TradeId::Num(id) = self.trade_id else {
            return Follows::Disorder;
        };
        let Some(last) = last else {
            return Follows::After;
        };
        let TradeId::Num(last_id) = last.trade_id else {
            return Follows::Disorder;
        };
        if id > last_id && self.ts_exchange >= last.ts_exchange {
            Follows::After
        } else if id == last_id && self.ts_exchange == last.ts_exchange {
            Follows::Same
        } else {
            Follows::Disorder
        }
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
    fn same_columns(a: &QuoteShape, b: &QuoteShape) -> bool {
        a.same_columns(b)
    }
    /// By exchange time, then receive time (the store's key).
    fn follows(&self, last: Option<&Quote>) -> Follows {
        let Some(last) = last else {
            return Follows::After;
        };
        match (self.ts_exchange, self.ts_received).cmp(&(last.ts_exchange, last.ts_received)) {
            std::cmp::Ordering::Greater => Follows::After,
            std::cmp::Ordering::Equal => Follows::Same,
            std::cmp::Ordering::Less => Follows::Disorder,
        }
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

/// How a row stands to the row before it ([`DayRow::follows`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Follows {
    /// After it: the stream goes on in order.
    After,
    /// The same row again: a duplicate.
    Same,
    /// Neither: the stream is not in the order a file is written in.
    Disorder,
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
