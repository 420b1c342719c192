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

use crate::book_checks::{
    cli_prints_the_api_book, follow_book, series_is_the_book_each_second,
    stats_are_the_book_at_a_glance, tardis_export_replays_to_the_api_book,
    tops_are_the_book_at_their_time,
};
use crate::support::{eventually, settings};

/// The cadence of the stats series in these tests.
pub(crate) const STATS_EVERY_MS: u64 = 5;

/// A book as a plain map: (bid, price) to size, by value.
pub(crate) type Plain = BTreeMap<(bool, Decimal), Decimal>;

pub(crate) fn decimal(f: ck_book::Fixed) -> Decimal {
    Decimal::parse(&f.text()).expect("a book number is a decimal")
}

/// One book as two plain maps of decimals.
#[derive(Default, Clone)]
struct Sides {
    bids: BTreeMap<Decimal, Decimal>,
    asks: BTreeMap<Decimal, Decimal>,
}

impl Sides {
    fn plain(&self) -> Plain {
        let bids = self.bids.iter().map(|(p, s)| ((true, *p), *s));
        let asks = self.asks.iter().map(|(p, s)| ((false, *p), *s));
        bids.chain(asks).collect()
    }
}

/// A message's place in its book's order, where the venue gives one that
/// a snapshot covers (Binance's last update id, Bitstamp's time).
fn place(sequence: ck_book::sync::Sequence) -> Option<i64> {
    match sequence {
        ck_book::sync::Sequence::Range { last, .. } => i64::try_from(last).ok(),
        ck_book::sync::Sequence::Time(t) => Some(t),
        _ => None,
    }
}

/// One book of the plain model: its levels, what its snapshot covers, and
/// the diffs that came before its first snapshot.
#[derive(Default)]
struct PlainBook {
    sides: Sides,
    covered: Option<i64>,
    snapshot: bool,
    held: Vec<ck_book::sync::BookMessage>,
}

impl PlainBook {
    fn apply(&mut self, changes: &[ck_book::sync::Change]) {
        for c in changes {
            let side = if c.side == BookSide::Bid {
                &mut self.sides.bids
            } else {
                &mut self.sides.asks
            };
            let size = decimal(c.size);
            if size.is_zero() {
                side.remove(&decimal(c.price));
            } else {
                side.insert(decimal(c.price), size);
            }
        }
    }

    /// A delta, unless the snapshot covers it.
    fn delta(&mut self, m: &ck_book::sync::BookMessage) {
        if let (Some(covered), Some(at)) = (self.covered, place(m.sequence))
            && at <= covered
        {
            return;
        }
        self.apply(&m.changes);
    }
}

/// The books of `messages` (a tape, in order) at each of `instants`
/// (ascending), by the venue's reader and plain maps: a snapshot replaces
/// the book; a delta sets or removes levels, unless the snapshot covers it
/// (where the venue orders its diffs: Binance's update ids, Bitstamp's
/// times), and diffs before the first snapshot wait for it; the book is cut
/// to the depth the venue checks. Only books whose snapshot came by then.
pub(crate) fn plain_books_at(
    exchange: Exchange,
    messages: &[RawMessage],
    instants: &[Ts],
) -> Vec<BTreeMap<String, Plain>> {
    let mut reader = ck_sources::book::book_reader_for(exchange).expect("a book reader");
    let mut books: BTreeMap<String, PlainBook> = BTreeMap::new();
    let mut read = Vec::new();
    let mut out = Vec::with_capacity(instants.len());
    let mut next = messages.iter().peekable();
    for &at in instants {
        while let Some(m) = next.next_if(|m| m.ts_received <= at) {
            read.clear();
            reader.read(m, &mut read).expect("a recorded book message");
            for sb in read.drain(..) {
                let book = books.entry(sb.symbol.clone()).or_default();
                match sb.message.kind {
                    MessageKind::Snapshot => {
                        book.sides = Sides::default();
                        book.apply(&sb.message.changes);
                        book.covered = place(sb.message.sequence);
                        book.snapshot = true;
                        for held in std::mem::take(&mut book.held) {
                            book.delta(&held);
                        }
                    }
                    MessageKind::Delta if !book.snapshot => book.held.push(sb.message.clone()),
                    MessageKind::Delta => book.delta(&sb.message),
                }
                if let Some(depth) = reader.depth(&sb.symbol) {
                    while book.sides.bids.len() > depth {
                        book.sides.bids.pop_first();
                    }
                    while book.sides.asks.len() > depth {
                        book.sides.asks.pop_last();
                    }
                }
            }
        }
        out.push(
            books
                .iter()
                .filter(|(_, b)| b.snapshot)
                .map(|(k, b)| (k.clone(), b.sides.plain()))
                .collect(),
        );
    }
    out
}

/// [`plain_books_at`] at each of `instants` (in any order, repeats
/// allowed), by instant.
pub(crate) fn plain_models(
    exchange: Exchange,
    tape: &[RawMessage],
    mut instants: Vec<Ts>,
) -> BTreeMap<Ts, BTreeMap<String, Plain>> {
    instants.sort();
    instants.dedup();
    instants
        .iter()
        .copied()
        .zip(plain_books_at(exchange, tape, &instants))
        .collect()
}

/// Every message of the tapes under `dir`, in order.
pub(crate) fn tape_messages(dir: &Path) -> Vec<RawMessage> {
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

/// Live capture with books of every instrument of a recording that has a
/// book, against the venue's mock, with the API of the same process.
pub(crate) struct Capture {
    /// Binance's mock, where the venue is Binance's (its WebSocket and
    /// REST with depth snapshots).
    pub(crate) binance: Option<ck_mock::binance::MockBinance>,
    /// Bitstamp's REST mock (its order books).
    pub(crate) _rest: Option<ck_mock::RestMock>,
    pub(crate) protocol: std::sync::Arc<dyn ck_sources::live::connector::WsProtocol>,
    pub(crate) instruments: Vec<Instrument>,
    pub(crate) mock: MockVenue,
    pub(crate) _dir: tempfile::TempDir,
    pub(crate) settings: ck_app::config::Settings,
    pub(crate) store: std::sync::Arc<dyn ck_store::Store>,
    pub(crate) runtime: ck_app::runtime::Runtime,
    pub(crate) token: tokio_util::sync::CancellationToken,
    pub(crate) pipeline: tokio::task::JoinHandle<anyhow::Result<ck_app::pipeline::PipelineReport>>,
    pub(crate) api: Api,
}

impl Capture {
    pub(crate) async fn start(
        exchange: Exchange,
        fixture: &str,
        kraken_v1: bool,
        options: VenueOptions,
    ) -> Capture {
        Capture::start_with(exchange, fixture, kraken_v1, options, false).await
    }

    /// With `stale`: the first REST snapshot of each book is stale.
    pub(crate) async fn start_with(
        exchange: Exchange,
        fixture: &str,
        kraken_v1: bool,
        options: VenueOptions,
        stale: bool,
    ) -> Capture {
        let file = ck_testkit::fixture(fixture);
        let messages: Vec<RawMessage> = Recording::open(&file)
            .expect("open")
            .map(|r| r.expect("record"))
            .collect();
        let (protocol, _) = ck_sources::live::protocol_for(exchange, kraken_v1).expect("protocol");
        // The recording's books, by symbol: every instrument is captured.
        let recorded = plain_books_at(exchange, &messages, &[Ts(i64::MAX)]).remove(0);
        assert!(!recorded.is_empty(), "{fixture} has books");
        // The instruments the venue's parser names in the recording that
        // have a book in it.
        let mut instruments: Vec<Instrument> = ck_sources::normalize::traded_instruments(&messages)
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

        let mock = MockVenue::start(exchange, &messages, options)
            .await
            .expect("mock");
        // Venues whose books start from a REST snapshot: Binance's own
        // mock (WebSocket and REST), Bitstamp's REST mock.
        let binance = match exchange {
            Exchange::Binance => Some(
                ck_mock::binance::MockBinance::start(
                    &messages,
                    ck_mock::binance::MockOptions {
                        faults: ck_mock::binance::Faults {
                            stale_depth_once: stale,
                            ..ck_mock::binance::Faults::default()
                        },
                        ..ck_mock::binance::MockOptions::default()
                    },
                )
                .await
                .expect("Binance mock"),
            ),
            _ => None,
        };
        let rest = match exchange {
            Exchange::Bitstamp => Some(
                ck_mock::bitstamp::MockBitstampRest::start_with(&messages, None, stale)
                    .await
                    .expect("Bitstamp REST mock"),
            ),
            _ => None,
        };
        let (ws_url, rest_url) = match (&binance, &rest) {
            (Some(b), _) => (b.ws_url(), Some(b.rest_url())),
            (None, Some(r)) => (mock.ws_url(), Some(r.rest_url())),
            (None, None) => (mock.ws_url(), None),
        };
        let dir = tempfile::tempdir().expect("dir");
        let mut settings = settings(dir.path());
        // A replay lasts 50 ms to a second: the stats series every 5 ms.
        settings.config.books.stats_every_ms = STATS_EVERY_MS;
        let store = ck_app::open_store(&settings).await.expect("store");
        let source = Source::Live {
            protocol: protocol.clone(),
            config: LiveConfig {
                ws_url,
                instruments: instruments.clone(),
                backoff: BackoffPolicy {
                    initial: Duration::from_millis(20),
                    ..BackoffPolicy::default()
                },
                stale_after: Duration::from_secs(30),
                rest_url,
                books: Some(BookCapture::default()),
            },
        };
        let runtime = ck_app::runtime::Runtime::new();
        let (token, pipeline) =
            crate::support::spawn_pipeline_with(&settings, &runtime, &store, source);
        let root = settings.config.archive.root(&settings.data_dir);
        let captured = instruments.iter().map(|i| (exchange, i.clone())).collect();
        let api = Api::start(&store, &runtime, &root, captured).await;
        Capture {
            binance,
            _rest: rest,
            protocol,
            instruments,
            mock,
            _dir: dir,
            settings,
            store,
            runtime,
            token,
            pipeline,
            api,
        }
    }
}

/// Waits until what was served is read: every book valid and none moved
/// for half a second (at most 20 s).
pub(crate) async fn settle(
    runtime: &ck_app::runtime::Runtime,
    exchange: Exchange,
    instruments: &[Instrument],
) {
    let state = || {
        instruments
            .iter()
            .map(|i| {
                runtime
                    .books
                    .read(exchange, i, |b| (b.valid, b.time, b.message))
            })
            .collect::<Vec<_>>()
    };
    let mut last = state();
    let mut still = 0;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = state();
        let valid = now.iter().all(|b| b.is_none_or(|b| b.0));
        still = if now == last && valid { still + 1 } else { 0 };
        if still >= 5 {
            return;
        }
        last = now;
    }
}

/// The book symbol of `i` among `books`' keys.
pub(crate) fn symbol_in(
    protocol: &dyn ck_sources::live::connector::WsProtocol,
    books: &BTreeMap<String, Plain>,
    i: &Instrument,
) -> Option<String> {
    let s = protocol.book_symbol(i);
    books.keys().find(|k| k.eq_ignore_ascii_case(&s)).cloned()
}

async fn live_books_equal_their_messages(exchange: Exchange, fixture: &str, kraken_v1: bool) {
    let Capture {
        _dir: _keep,
        _rest: _rest_keep,
        binance,
        protocol,
        instruments,
        mock,
        settings,
        runtime,
        token,
        pipeline,
        api,
        ..
    } = Capture::start(exchange, fixture, kraken_v1, VenueOptions::default()).await;
    // A WebSocket client follows the first book, 10 levels a side.
    let (stop_following, stopped) = tokio::sync::oneshot::channel();
    let follower = tokio::spawn(follow_book(
        api.addr.clone(),
        exchange,
        instruments[0].clone(),
        stopped,
    ));
    let served = eventually(Duration::from_secs(60), || async {
        binance
            .as_ref()
            .map_or_else(|| mock.finished(), |b| b.finished())
    })
    .await;
    settle(&runtime, exchange, &instruments).await;
    // What it holds is the live book's top 10 a side.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = stop_following.send(());
    let followed = follower.await.expect("follower");
    let live_top = api
        .book(exchange, &instruments[0], None)
        .await
        .map(|(_, b)| top(b, 10));
    assert_eq!(
        Some(followed),
        live_top,
        "{exchange} {}: the WebSocket book",
        instruments[0]
    );
    // While capture runs: the books as they stand, and at instants of the
    // part being written (rebuilt from memory).
    let mut live_answers = Vec::new();
    for i in &instruments {
        live_answers.push((i.clone(), None, api.book(exchange, i, None).await));
        let times: Vec<Ts> = runtime
            .books
            .read(exchange, i, |b| b.recent.iter().map(|r| r.at).collect())
            .unwrap_or_default();
        for k in 1..=4 {
            if let Some(&at) = times.get(times.len() * k / 5) {
                live_answers.push((i.clone(), Some(at), api.book(exchange, i, Some(at)).await));
            }
        }
    }
    // The stats series of the parts being written, from memory: up to
    // each book's last message (an instant after it waits for the next).
    let mut live_series = Vec::new();
    let mut still_open = 0;
    for i in &instruments {
        // A book whose connection the mock ended is archived already.
        still_open += usize::from(
            runtime
                .books
                .read(exchange, i, |b| b.valid && !b.series.is_empty())
                .unwrap_or(false),
        );
        let path = format!("/api/v1/book/series?exchange={exchange}&instrument={i}");
        let v = crate::book_checks::get_json(&api, path).await;
        live_series.push((i.clone(), v["series"].as_array().expect("series").clone()));
    }
    token.cancel();
    let report = pipeline.await.expect("join").expect("pipeline");
    assert!(served, "{exchange}: every recorded frame was served");
    let books = report.books.expect("the book recorder ran");
    assert_eq!(books.write_failures, 0, "{exchange}");
    assert_eq!(books.gaps, 0, "{exchange}: no book gap");
    assert!(books.parts >= 1 && books.rows > 0, "{exchange}: {books:?}");

    let tape = tape_messages(&settings.data_dir.join("tapes"));
    let last = tape.last().expect("taped").ts_received;
    // The instants asked, and the plain books there, in one pass.
    let spread: Vec<Ts> = (1..=12)
        .map(|k| tape[tape.len() * k / 13].ts_received)
        .collect();
    let instants: Vec<Ts> = live_answers
        .iter()
        .filter_map(|a| a.1)
        .chain(spread.iter().copied())
        .chain([last])
        .collect();
    let models = plain_models(exchange, &tape, instants);
    let symbol_of = |i: &Instrument| {
        let s = protocol.book_symbol(i);
        models[&last]
            .keys()
            .find(|k| k.eq_ignore_ascii_case(&s))
            .cloned()
    };
    let plain_at = |i: &Instrument, at: Ts| symbol_of(i).and_then(|s| models[&at].get(&s).cloned());
    let mut compared = 0;
    for (i, at, answer) in &live_answers {
        let plain = plain_at(i, at.unwrap_or(last));
        if let Some((source, book)) = answer {
            assert_eq!(source, "live", "{exchange} {i} at {at:?}");
            assert_eq!(
                Some(book),
                plain.map(cut).as_ref(),
                "{exchange} {i} at {at:?}: the live book"
            );
            compared += 1;
        } else {
            assert_eq!(
                plain, None,
                "{exchange} {i} at {at:?}: a book the API did not give"
            );
        }
    }
    // After the stop: from the archive's files, at instants spread over
    // the tape, and the latest book it holds.
    for i in &instruments {
        for &at in &spread {
            let plain = plain_at(i, at).map(cut);
            let answer = api.book(exchange, i, Some(at)).await;
            if let Some((source, _)) = &answer {
                assert_eq!(source, "archive");
            }
            assert_eq!(
                answer.map(|a| a.1),
                plain,
                "{exchange} {i} at {at}: the archived book"
            );
            compared += usize::from(plain.is_some());
        }
        if let Some(plain) = plain_at(i, last) {
            let (source, latest) = api.book(exchange, i, None).await.expect("the latest book");
            assert_eq!(
                (source.as_str(), latest),
                ("archive", cut(plain)),
                "{exchange} {i}"
            );
        }
    }
    assert!(compared >= 8, "{exchange}: {compared} books compared");
    cli_prints_the_api_book(
        &settings.data_dir,
        exchange,
        &instruments[0],
        spread[spread.len() - 1],
        &api,
    )
    .await;
    stats_are_the_book_at_a_glance(exchange, &instruments[0], spread[spread.len() - 1], &api).await;
    let series = series_is_the_book_each_second(
        exchange,
        &instruments[0],
        (tape[0].ts_received, Ts(last.0 + 1)),
        &api,
    )
    .await;
    assert!(
        !series.is_empty(),
        "{exchange}: the tape spans 50 ms: {} to {last}",
        tape[0].ts_received
    );
    let mut from_memory = 0;
    for (i, rows) in &live_series {
        let path = format!(
            "/api/v1/book/series?exchange={exchange}&instrument={i}&from={}&to={}&limit=1000000",
            tape[0].ts_received,
            Ts(last.0 + 1)
        );
        let archived = crate::book_checks::get_json(&api, path).await;
        let archived = archived["series"].as_array().expect("series");
        for row in rows {
            assert!(
                archived.contains(row),
                "{exchange} {i}: the series served from memory is the one archived: {row}"
            );
        }
        from_memory += rows.len();
    }
    assert!(
        from_memory >= still_open,
        "{exchange}: a series in memory for each open book"
    );
    tops_are_the_book_at_their_time(
        &settings.config.archive.root(&settings.data_dir),
        exchange,
        &instruments[0],
        &api,
    )
    .await;
    tardis_export_replays_to_the_api_book(
        &settings.data_dir,
        exchange,
        &instruments[0],
        (spread[2], spread[spread.len() - 1]),
        &api,
    )
    .await;
    crate::book_checks::hftbacktest_export_replays_to_the_api_book(
        &settings.data_dir,
        exchange,
        &instruments[0],
        spread[spread.len() - 1],
        &api,
    )
    .await;
    api.stop.cancel();
}

/// The best `n` levels a side of `book`.
pub(crate) fn top(book: Plain, n: usize) -> Plain {
    let bids = book.iter().filter(|(k, _)| k.0).rev().take(n);
    let asks = book.iter().filter(|(k, _)| !k.0).take(n);
    bids.chain(asks).map(|(k, v)| (*k, *v)).collect()
}

/// A plain book cut to the API's most levels a side.
pub(crate) fn cut(book: Plain) -> Plain {
    let most = ck_api::book::MAX_DEPTH;
    let bids = book.iter().filter(|(k, _)| k.0).rev().take(most);
    let asks = book.iter().filter(|(k, _)| !k.0).take(most);
    bids.chain(asks).map(|(k, v)| (*k, *v)).collect()
}

/// The API of the test's process, on a free port.
pub(crate) struct Api {
    pub(crate) addr: String,
    pub(crate) stop: tokio_util::sync::CancellationToken,
}

impl Api {
    pub(crate) async fn start(
        store: &std::sync::Arc<dyn ck_store::Store>,
        runtime: &ck_app::runtime::Runtime,
        root: &Path,
        captured: Vec<(Exchange, Instrument)>,
    ) -> Api {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let state = ck_api::ApiState::new(
            store.clone(),
            runtime.connectors.clone(),
            runtime.feed.clone(),
            Duration::from_secs(30),
        )
        .with_books(Some(runtime.books.clone()), root.to_owned())
        .with_captured(captured);
        let stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn(ck_api::serve(
            listener,
            state,
            stop.clone().cancelled_owned(),
        ));
        Api { addr, stop }
    }

    /// `GET /api/v1/book` at its deepest: the source and the book, or
    /// `None` for a 404.
    pub(crate) async fn book(
        &self,
        exchange: Exchange,
        i: &Instrument,
        at: Option<Ts>,
    ) -> Option<(String, Plain)> {
        let mut path = format!(
            "/api/v1/book?exchange={exchange}&instrument={i}&depth={}",
            ck_api::book::MAX_DEPTH
        );
        if let Some(at) = at {
            path.push_str(&format!("&at={at}"));
        }
        let addr = self.addr.clone();
        let response = tokio::task::spawn_blocking(move || crate::support::http_get(&addr, &path))
            .await
            .expect("join");
        let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP answer");
        if head.starts_with("HTTP/1.1 404") {
            assert!(
                body.contains("not known at") || body.contains("held or recorded"),
                "{body}"
            );
            return None;
        }
        assert!(head.starts_with("HTTP/1.1 200"), "{head}\n{body}");
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_owned()
        };
        let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(v["exchange"], exchange.as_str());
        assert_eq!(v["instrument"], i.as_str());
        let mut plain = Plain::new();
        for (side, bid) in [("bids", true), ("asks", false)] {
            let levels = v[side].as_array().expect("levels");
            for l in levels {
                let price = Decimal::parse(l[0].as_str().expect("price text")).expect("price");
                let size = Decimal::parse(l[1].as_str().expect("size text")).expect("size");
                plain.insert((bid, price), size);
            }
            // Best first.
            let prices: Vec<Decimal> = levels
                .iter()
                .map(|l| Decimal::parse(l[0].as_str().expect("price")).expect("price"))
                .collect();
            let mut sorted = prices.clone();
            sorted.sort();
            if bid {
                sorted.reverse();
            }
            assert_eq!(prices, sorted, "{side} best first");
        }
        Some((v["source"].as_str().expect("source").to_owned(), plain))
    }
}

pub(crate) fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((len, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).expect("chunk length");
        if n == 0 {
            break;
        }
        out.push_str(&after[..n]);
        rest = &after[n + 2..];
    }
    out
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
    binance_live_books_equal_their_messages: Exchange::Binance, "cryptofeed/BINANCE.jsonl.zst", false;
    bitstamp_live_books_equal_their_messages: Exchange::Bitstamp, "cryptofeed/BITSTAMP.jsonl.zst", false;
}
