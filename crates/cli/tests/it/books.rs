//! Order books captured live: each venue's real connector, with books on,
//! against the mock venue replaying that venue's recording. The book the
//! archive rebuilds at an instant equals the book a plain map of decimals
//! makes of the messages the tape holds up to that instant, and the live
//! book at the end equals it too.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use ck_app::pipeline::Source;
use ck_book::BookSide;
use ck_book::sync::MessageKind;
use ck_bus::RawMessage;
use ck_mock::venue::{MockVenue, VenueOptions};
use ck_model::{Decimal, Exchange, Instrument, Ts};
use ck_sources::live::BackoffPolicy;
use ck_sources::live::books::BookCapture;
use ck_sources::live::connector::LiveConfig;
use ck_sources::recordings::Recording;

use crate::support::{eventually, settings};

/// A book as a plain map: (bid, price) to size, by value.
type Plain = BTreeMap<(bool, Decimal), Decimal>;

fn decimal(f: ck_book::Fixed) -> Decimal {
    Decimal::parse(&f.text()).expect("a book number is a decimal")
}

/// The books of `messages` (a tape, in order) at `at`, by the venue's
/// reader and a plain map: a snapshot replaces the book, a delta sets or
/// removes levels, and the book is cut to the depth the venue checks.
/// Only books whose snapshot came by `at`.
fn plain_books(exchange: Exchange, messages: &[RawMessage], at: Ts) -> BTreeMap<String, Plain> {
    let mut reader = ck_sources::book::book_reader_for(exchange).expect("a book reader");
    let mut books: BTreeMap<String, Plain> = BTreeMap::new();
    let mut read = Vec::new();
    for m in messages.iter().take_while(|m| m.ts_received <= at) {
        read.clear();
        reader.read(m, &mut read).expect("a recorded book message");
        for sb in read.drain(..) {
            let book = match sb.message.kind {
                MessageKind::Snapshot => {
                    let b = books.entry(sb.symbol.clone()).or_default();
                    b.clear();
                    b
                }
                MessageKind::Delta => match books.get_mut(&sb.symbol) {
                    Some(b) => b,
                    None => continue,
                },
            };
            for c in &sb.message.changes {
                let key = (c.side == BookSide::Bid, decimal(c.price));
                let size = decimal(c.size);
                if size.is_zero() {
                    book.remove(&key);
                } else {
                    book.insert(key, size);
                }
            }
            if let Some(depth) = reader.depth(&sb.symbol) {
                let bids: Vec<_> = book.keys().filter(|k| k.0).cloned().collect();
                let asks: Vec<_> = book.keys().filter(|k| !k.0).cloned().collect();
                for k in bids.iter().rev().skip(depth).chain(asks.iter().skip(depth)) {
                    book.remove(k);
                }
            }
        }
    }
    books
}

fn plain_of(book: &ck_book::Book) -> Plain {
    [BookSide::Bid, BookSide::Ask]
        .into_iter()
        .flat_map(|side| {
            book.levels(side)
                .map(move |l| ((side == BookSide::Bid), decimal(l.price), decimal(l.size)))
        })
        .map(|(bid, p, s)| ((bid, p), s))
        .collect()
}

/// Every message of the tapes under `dir`, in order.
fn tape_messages(dir: &Path) -> Vec<RawMessage> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("tape folder") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut out: Vec<RawMessage> = files
        .iter()
        .flat_map(|f| {
            Recording::open(f)
                .expect("tape")
                .map(|r| r.expect("tape record"))
        })
        .collect();
    out.sort_by_key(|m| m.ts_received);
    out
}

async fn live_books_equal_their_messages(exchange: Exchange, fixture: &str, kraken_v1: bool) {
    let file = ck_testkit::fixture(fixture);
    let messages: Vec<RawMessage> = Recording::open(&file)
        .expect("open")
        .map(|r| r.expect("record"))
        .collect();
    let (protocol, _) = ck_sources::live::protocol_for(exchange, kraken_v1).expect("protocol");
    // The recording's books, by symbol: every instrument is captured.
    let recorded = plain_books(exchange, &messages, Ts(i64::MAX));
    assert!(!recorded.is_empty(), "{fixture} has books");
    // The instruments the venue's parser names in the recording.
    let mut normalizer = ck_sources::normalize::Normalizer::new();
    let mut events = Vec::new();
    for m in &messages {
        normalizer.handle(m, &|| "recording".to_owned(), &mut events);
    }
    let candidates: Vec<Instrument> = events
        .iter()
        .filter_map(|e| match e {
            ck_bus::Event::Trade(t) => Some(t.instrument.clone()),
            ck_bus::Event::Quote(q) => Some(q.instrument.clone()),
            _ => None,
        })
        .collect();
    let mut instruments: Vec<Instrument> = candidates
        .into_iter()
        .filter(|i| {
            recorded
                .keys()
                .any(|s| s.eq_ignore_ascii_case(&protocol.book_symbol(i)))
        })
        .collect();
    instruments.sort();
    instruments.dedup();
    assert!(
        !instruments.is_empty(),
        "{exchange}: instruments with books"
    );

    let mock = MockVenue::start(exchange, &messages, VenueOptions::default())
        .await
        .expect("mock");
    let dir = tempfile::tempdir().expect("dir");
    let settings = settings(dir.path());
    let store = ck_app::open_store(&settings).await.expect("store");
    let source = Source::Live {
        protocol: protocol.clone(),
        config: LiveConfig {
            ws_url: mock.ws_url(),
            instruments: instruments.clone(),
            backoff: BackoffPolicy {
                initial: Duration::from_millis(20),
                ..BackoffPolicy::default()
            },
            stale_after: Duration::from_secs(30),
            rest_url: None,
            books: Some(BookCapture::default()),
        },
    };
    let runtime = ck_app::runtime::Runtime::new();
    let (token, pipeline) =
        crate::support::spawn_pipeline_with(&settings, &runtime, &store, source);
    let served = eventually(Duration::from_secs(60), || async { mock.finished() }).await;
    // What was served is read: the tape has caught up when the books stop
    // moving.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let live: BTreeMap<Instrument, Option<Plain>> = instruments
        .iter()
        .map(|i| {
            let book = runtime
                .books
                .read(exchange, i, |b| b.valid.then(|| plain_of(&b.book)))
                .flatten();
            (i.clone(), book)
        })
        .collect();
    token.cancel();
    let report = pipeline.await.expect("join").expect("pipeline");
    assert!(served, "{exchange}: every recorded frame was served");
    let books = report.books.expect("the book recorder ran");
    assert_eq!(books.write_failures, 0, "{exchange}");
    assert_eq!(books.gaps, 0, "{exchange}: no book gap");
    assert!(books.parts >= 1 && books.rows > 0, "{exchange}: {books:?}");

    let tape = tape_messages(&settings.data_dir.join("tapes"));
    let root = settings.config.archive.root(&settings.data_dir);
    let last = tape.last().expect("taped").ts_received;
    let final_books = plain_books(exchange, &tape, last);
    let symbol_of = |i: &Instrument| {
        let s = protocol.book_symbol(i);
        final_books
            .keys()
            .find(|k| k.eq_ignore_ascii_case(&s))
            .cloned()
    };
    let mut compared = 0;
    for i in &instruments {
        let Some(symbol) = symbol_of(i) else {
            continue;
        };
        assert_eq!(
            live[i].as_ref(),
            final_books.get(&symbol),
            "{exchange} {i}: the live book at the end"
        );
        // Instants spread over the tape: the archive's book is the plain
        // one there.
        for k in 1..=12 {
            let at = tape[tape.len() * k / 13].ts_received;
            let plain = plain_books(exchange, &tape, at).remove(&symbol);
            let archived = ck_archive::books::archived_book_at(&root, exchange, i, at)
                .expect("archive")
                .map(|(b, _)| plain_of(&b));
            assert_eq!(archived, plain, "{exchange} {i} at {at}");
            compared += usize::from(plain.is_some());
        }
    }
    assert!(compared >= 6, "{exchange}: {compared} books compared");
}

macro_rules! book_tests {
    ($($name:ident: $exchange:expr, $fixture:literal, $kraken_v1:literal;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            live_books_equal_their_messages($exchange, $fixture, $kraken_v1).await;
        }
    )*};
}

book_tests! {
    okx_live_books_equal_their_messages: Exchange::Okx, "cryptofeed/OKX.jsonl.zst", false;
    bybit_live_books_equal_their_messages: Exchange::Bybit, "cryptofeed/BYBIT.jsonl.zst", false;
    kraken_v1_live_books_equal_their_messages: Exchange::Kraken, "cryptofeed/KRAKEN.jsonl.zst", true;
    coinbase_advanced_live_books_equal_their_messages: Exchange::Coinbase, "cryptofeed/COINBASE.jsonl.zst", false;
    coinbase_exchange_live_books_equal_their_messages: Exchange::CoinbaseExchange, "cryptofeed/COINBASE_EXCHANGE.ws.28.0", false;
    bitfinex_live_books_equal_their_messages: Exchange::Bitfinex, "cryptofeed/BITFINEX.jsonl.zst", false;
}
