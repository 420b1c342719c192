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
fn plain_books_at(
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
fn plain_models(
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

/// Live capture with books of every instrument of a recording that has a
/// book, against the venue's mock, with the API of the same process.
struct Capture {
    /// Binance's mock, where the venue is Binance's (its WebSocket and
    /// REST with depth snapshots).
    binance: Option<ck_mock::binance::MockBinance>,
    /// Bitstamp's REST mock (its order books).
    _rest: Option<ck_mock::RestMock>,
    protocol: std::sync::Arc<dyn ck_sources::live::connector::WsProtocol>,
    instruments: Vec<Instrument>,
    mock: MockVenue,
    _dir: tempfile::TempDir,
    settings: ck_app::config::Settings,
    store: std::sync::Arc<dyn ck_store::Store>,
    runtime: ck_app::runtime::Runtime,
    token: tokio_util::sync::CancellationToken,
    pipeline: tokio::task::JoinHandle<anyhow::Result<ck_app::pipeline::PipelineReport>>,
    api: Api,
}

impl Capture {
    async fn start(
        exchange: Exchange,
        fixture: &str,
        kraken_v1: bool,
        options: VenueOptions,
    ) -> Capture {
        Capture::start_with(exchange, fixture, kraken_v1, options, false).await
    }

    /// With `stale`: the first REST snapshot of each book is stale.
    async fn start_with(
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
        let settings = settings(dir.path());
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
async fn settle(
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
fn symbol_in(
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
    api.stop.cancel();
}

/// A fault injected through the mock (`what`, whose incidents have
/// `cause`): the book is found wrong, recorded as a book gap, counted,
/// resynchronised (the mock sends a fresh book when it is subscribed
/// again), and right again; at the gap's start the API knows no book, at
/// its end the archive's book is the plain one.
async fn book_fault_is_resynchronised(
    exchange: Exchange,
    fixture: &str,
    kraken_v1: bool,
    fault: Fault,
    cause: &str,
) {
    let (options, stale) = match fault {
        Fault::Mock(options) => (options, false),
        Fault::StaleSnapshot => (VenueOptions::default(), true),
    };
    let c = Capture::start_with(exchange, fixture, kraken_v1, options, stale).await;
    let served = eventually(Duration::from_secs(60), || async {
        c.binance
            .as_ref()
            .map_or_else(|| c.mock.finished(), |b| b.finished())
    })
    .await;
    settle(&c.runtime, exchange, &c.instruments).await;
    let mut live = Vec::new();
    for i in &c.instruments {
        live.push((i.clone(), c.api.book(exchange, i, None).await));
    }
    let metrics = ck_bus::metrics::render_prometheus();
    c.token.cancel();
    let report = c.pipeline.await.expect("join").expect("pipeline");
    assert!(served, "{exchange}: every recorded frame was served");
    let books = report.books.expect("the book recorder ran");
    assert!(
        books.gaps >= 1,
        "{exchange}: the fault made a book gap: {books:?}"
    );
    assert_eq!(books.write_failures, 0);
    let incidents =
        format!("candlekeep_book_incidents_total{{exchange=\"{exchange}\",cause=\"{cause}\"}}");
    assert!(metrics.contains(&incidents), "{incidents} counted");
    if !stale {
        // Resynchronised by subscribing again (REST venues ask REST again:
        // the book right at the end shows it).
        assert!(
            c.mock.caught_up() > 0,
            "{exchange}: the books were sent again"
        );
        assert!(
            c.mock.subscribes().len() >= 2,
            "{exchange}: a book was subscribed again: {:?}",
            c.mock.subscribes()
        );
    }

    let tape = tape_messages(&c.settings.data_dir.join("tapes"));
    let last = tape.last().expect("taped").ts_received;
    let mut gaps = Vec::new();
    for i in &c.instruments {
        for g in c
            .store
            .gaps(Some(exchange), Some(i), 10_000)
            .await
            .expect("gaps")
        {
            if g.reason.starts_with(ck_sources::book_recorder::BOOK_GAP) {
                assert!(g.from_ts <= g.to_ts, "{g:?}");
                assert_eq!(g.state, ck_model::GapState::Unfillable);
                assert!(g.reason.contains(cause), "{}", g.reason);
                gaps.push(g);
            }
        }
    }
    assert_eq!(
        gaps.len() as u64,
        books.gaps,
        "{exchange}: every book gap stored"
    );
    let instants: Vec<Ts> = gaps.iter().map(|g| g.to_ts).chain([last]).collect();
    let models = plain_models(exchange, &tape, instants);
    for g in &gaps {
        assert_eq!(
            c.api.book(exchange, &g.instrument, Some(g.from_ts)).await,
            None,
            "{exchange} {}: unknown from the incident",
            g.instrument
        );
        let symbol = symbol_in(c.protocol.as_ref(), &models[&last], &g.instrument).expect("a book");
        let (_, resynced) = c
            .api
            .book(exchange, &g.instrument, Some(g.to_ts))
            .await
            .unwrap_or_else(|| {
                let day = ck_archive::layout::day_of(g.to_ts);
                let root = c.settings.config.archive.root(&c.settings.data_dir);
                let parts = ck_archive::books::book_parts(&root, exchange, &g.instrument, day);
                panic!("{exchange}: no book after the resync of {g:?}; parts {parts:?}; all gaps {gaps:?}")
            });
        assert_eq!(
            Some(resynced),
            models[&g.to_ts].get(&symbol).cloned().map(cut),
            "{exchange} {} at {}",
            g.instrument,
            g.to_ts
        );
    }
    // Right again at the end.
    for (i, answer) in live {
        let Some(symbol) = symbol_in(c.protocol.as_ref(), &models[&last], &i) else {
            continue;
        };
        let (source, book) =
            answer.unwrap_or_else(|| panic!("{exchange} {i}: a live book at the end"));
        assert_eq!(
            source, "live",
            "{exchange} {i}: the book is live at the end; gaps {gaps:#?}"
        );
        assert_eq!(
            Some(book),
            models[&last].get(&symbol).cloned().map(cut),
            "{exchange} {i}: the live book at the end"
        );
    }
    c.api.stop.cancel();
}

/// `candlekeep export --kind book --format tardis` from `from` to just
/// after `at`, replayed the way Tardis says (a run of snapshot rows resets
/// the book, an amount of zero removes a level), is the book the API gives
/// at `at`.
async fn tardis_export_replays_to_the_api_book(
    data_dir: &Path,
    exchange: Exchange,
    i: &Instrument,
    (from, at): (Ts, Ts),
    api: &Api,
) {
    let Some((_, expected)) = api.book(exchange, i, Some(at)).await else {
        panic!("{exchange} {i}: no book at {at}")
    };
    let out = data_dir.join("book.csv.gz");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_candlekeep"))
        .arg("--data-dir")
        .arg(data_dir)
        .args([
            "--log", "warn", "export", "--kind", "book", "--format", "tardis",
        ])
        .args(["--exchange", exchange.as_str(), "--instrument", i.as_str()])
        .args([
            "--from",
            &from.to_string(),
            "--to",
            &Ts(at.0 + 1).to_string(),
        ])
        .arg("--out")
        .arg(&out)
        .env_remove("CANDLEKEEP_CONFIG")
        .output()
        .expect("candlekeep export");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(&out).expect("the export")),
        &mut text,
    )
    .expect("gzip");
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount")
    );
    let mut book = Plain::new();
    let mut in_snapshot = false;
    let mut last_local = 0i64;
    let mut rows = 0;
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        let [ex, _symbol, _ts, local, snapshot, side, price, amount] = f[..] else {
            panic!("a Tardis row: {line}")
        };
        assert_eq!(ex, exchange.as_str());
        let local: i64 = local.parse().expect("local_timestamp");
        assert!(local >= last_local, "in time order: {line}");
        last_local = local;
        let snapshot = snapshot == "true";
        if snapshot && !in_snapshot {
            book.clear();
        }
        in_snapshot = snapshot;
        let key = (side == "bid", Decimal::parse(price).expect("price"));
        let amount = Decimal::parse(amount).expect("amount");
        if amount.is_zero() {
            book.remove(&key);
        } else {
            book.insert(key, amount);
        }
        rows += 1;
    }
    assert!(rows > 0, "{exchange} {i}: rows exported");
    assert_eq!(
        cut(book),
        expected,
        "{exchange} {i}: the Tardis rows replayed at {at}"
    );
}

/// `GET /api/v1/book/stats` at `at` is the API's book at `at` at a
/// glance, recomputed here in exact decimals: best bid and ask, mid,
/// spread, and the depth within 10, 50 and 100 bps of the mid each side.
async fn stats_are_the_book_at_a_glance(exchange: Exchange, i: &Instrument, at: Ts, api: &Api) {
    let (_, book) = api.book(exchange, i, Some(at)).await.expect("a book then");
    let path = format!("/api/v1/book/stats?exchange={exchange}&instrument={i}&at={at}");
    let addr = api.addr.clone();
    let response = tokio::task::spawn_blocking(move || crate::support::http_get(&addr, &path))
        .await
        .expect("join");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}\n{body}");
    let v: serde_json::Value = serde_json::from_str(body).expect("JSON");
    let d = |x: &serde_json::Value| {
        Decimal::parse(x.as_str().expect("a decimal string")).expect("decimal")
    };
    let bid = book.keys().filter(|k| k.0).map(|k| k.1).max();
    let ask = book.keys().filter(|k| !k.0).map(|k| k.1).min();
    let (Some(bid), Some(ask)) = (bid, ask) else {
        assert!(v["mid"].is_null(), "{v}");
        return;
    };
    assert_eq!(d(&v["best_bid"]), bid);
    assert_eq!(d(&v["best_ask"]), ask);
    assert_eq!(d(&v["spread"]), ask.checked_sub(bid).expect("spread"));
    let two_mids = bid.checked_add(ask).expect("sum");
    assert_eq!(
        d(&v["mid"]).checked_add(d(&v["mid"])).expect("twice"),
        two_mids,
        "the mid, exactly"
    );
    for (k, band) in [10i128, 50, 100].into_iter().enumerate() {
        // price ≥ mid × (1 - band/10⁴)  ⇔  price × 2×10⁴ ≥ (bid + ask) × (10⁴ - band)
        let scaled = |p: Decimal, m: i128| p.checked_mul(Decimal::new(m, 0)).expect("product");
        let floor = scaled(two_mids, 10_000 - band);
        let ceiling = scaled(two_mids, 10_000 + band);
        let sum = |bid_side: bool| {
            book.iter()
                .filter(|(key, _)| key.0 == bid_side)
                .filter(|(key, _)| {
                    let p = scaled(key.1, 20_000);
                    if bid_side { p >= floor } else { p <= ceiling }
                })
                .fold(Decimal::new(0, 0), |acc, (_, s)| {
                    acc.checked_add(*s).expect("sum")
                })
        };
        assert_eq!(
            d(&v["bid_depth"][k]),
            sum(true),
            "{exchange} {i}: bid depth within {band} bps"
        );
        assert_eq!(
            d(&v["ask_depth"][k]),
            sum(false),
            "{exchange} {i}: ask depth within {band} bps"
        );
    }
    let imbalance = v["imbalance"].as_f64().expect("imbalance");
    assert!((-1.0..=1.0).contains(&imbalance), "{imbalance}");
}

/// The `book_top` files (the best 25 a side, every second) hold, at each
/// of their times, the book the API rebuilds there, cut to 25.
async fn tops_are_the_book_at_their_time(
    root: &Path,
    exchange: Exchange,
    i: &Instrument,
    api: &Api,
) {
    // The capture began today, or yesterday just before midnight.
    let today = ck_archive::layout::day_of(Ts::now());
    let mut parts = ck_archive::books::book_parts(root, exchange, i, today - 1).expect("parts");
    parts.extend(ck_archive::books::book_parts(root, exchange, i, today).expect("parts"));
    let mut checked = 0;
    for part in &parts {
        let path = part.top.as_ref().expect("a part has its top file");
        let rows = ck_archive::books::read_book_rows(path, ck_archive::books::BookFile::Top)
            .expect("top rows")
            .rows;
        let mut times: Vec<Ts> = rows.iter().map(|r| r.ts_received).collect();
        times.dedup();
        assert!(!times.is_empty(), "a top at the part's start");
        assert_eq!(times[0], part.from, "the first top is the part's snapshot");
        for w in times.windows(2) {
            assert!(w[1].0 - w[0].0 >= 1_000_000_000, "a second apart at least");
        }
        for at in times.iter().take(3) {
            let top_rows: Plain = rows
                .iter()
                .filter(|r| r.ts_received == *at)
                .map(|r| ((r.bid, r.price), r.size))
                .collect();
            let (_, book) = api
                .book(exchange, i, Some(*at))
                .await
                .expect("the book then");
            assert_eq!(top_rows, top(book, 25), "{exchange} {i}: the top at {at}");
            checked += 1;
        }
    }
    assert!(checked >= 1, "{exchange} {i}: tops checked");
}

/// `candlekeep book` prints what the API answers, in JSON and CSV.
async fn cli_prints_the_api_book(
    data_dir: &Path,
    exchange: Exchange,
    i: &Instrument,
    at: Ts,
    api: &Api,
) {
    let answer = api.book(exchange, i, Some(at)).await;
    let printed = |format: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_candlekeep"))
            .arg("--data-dir")
            .arg(data_dir)
            .args([
                "--log",
                "warn",
                "book",
                "--exchange",
                exchange.as_str(),
                "--instrument",
                i.as_str(),
            ])
            .args([
                "--at",
                &at.to_string(),
                "--depth",
                "10000",
                "--format",
                format,
            ])
            .env_remove("CANDLEKEEP_CONFIG")
            .output()
            .expect("candlekeep book");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, json, err) = printed("json");
    // The last of the spread instants: every book is known by then.
    let Some((_, plain)) = &answer else {
        panic!("{exchange} {i}: no book at {at}")
    };
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(v["source"], "archive");
    assert_eq!(v["time"], at.to_string());
    let levels =
        v["bids"].as_array().map_or(0, Vec::len) + v["asks"].as_array().map_or(0, Vec::len);
    assert_eq!(levels, plain.len());
    let (ok, csv, err) = printed("csv");
    assert!(ok, "{err}");
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("side,price,size"));
    let mut from_csv = Plain::new();
    for line in lines {
        let [side, price, size] = line.split(',').collect::<Vec<_>>()[..] else {
            panic!("a CSV row: {line}")
        };
        from_csv.insert(
            (side == "bid", Decimal::parse(price).expect("price")),
            Decimal::parse(size).expect("size"),
        );
    }
    assert_eq!(&from_csv, plain, "{exchange} {i}: the CSV book");
}

/// The best `n` levels a side of `book`.
fn top(book: Plain, n: usize) -> Plain {
    let bids = book.iter().filter(|(k, _)| k.0).rev().take(n);
    let asks = book.iter().filter(|(k, _)| !k.0).take(n);
    bids.chain(asks).map(|(k, v)| (*k, *v)).collect()
}

/// Follows one book over `/api/v1/ws` (`channel` `book`, depth 10) until
/// `stop`: its view after applying every message, checked on the way
/// (`sequence` one more each time, a snapshot first).
async fn follow_book(
    addr: String,
    exchange: Exchange,
    i: Instrument,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> Plain {
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/api/v1/ws"))
        .await
        .expect("WebSocket");
    let request = serde_json::json!({"op": "subscribe", "channel": "book", "exchange": exchange, "instrument": i, "depth": 10});
    ws.send(Message::Text(request.to_string().into()))
        .await
        .expect("subscribe");
    let mut view = Plain::new();
    let mut sequence = 0u64;
    let mut snapshots = 0;
    loop {
        let text = tokio::select! {
            _ = &mut stop => break,
            m = ws.next() => match m {
                Some(Ok(Message::Text(t))) => t.to_string(),
                Some(Ok(_)) => continue,
                other => panic!("the WebSocket ended: {other:?}"),
            },
        };
        let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        let kind = v["type"].as_str().unwrap_or_default();
        if !matches!(kind, "snapshot" | "book" | "book_invalid") {
            assert_ne!(kind, "error", "{text}");
            continue;
        }
        assert_eq!(v["channel"], "book", "{text}");
        let body = if kind == "snapshot" { &v["data"] } else { &v };
        if body.is_null() {
            // No book yet: the first known one comes as a snapshot.
            sequence += 1;
            continue;
        }
        sequence += 1;
        assert_eq!(body["sequence"].as_u64(), Some(sequence), "{text}");
        if kind != "book" {
            view.clear();
            snapshots += 1;
        }
        for (side, bid) in [("bids", true), ("asks", false)] {
            for l in body[side].as_array().into_iter().flatten() {
                let price = Decimal::parse(l[0].as_str().expect("price")).expect("price");
                let size = Decimal::parse(l[1].as_str().expect("size")).expect("size");
                if size.is_zero() {
                    view.remove(&(bid, price));
                } else {
                    view.insert((bid, price), size);
                }
            }
        }
    }
    assert!(snapshots >= 1, "{exchange} {i}: a snapshot came");
    view
}

/// A plain book cut to the API's most levels a side.
fn cut(book: Plain) -> Plain {
    let most = ck_api::book::MAX_DEPTH;
    let bids = book.iter().filter(|(k, _)| k.0).rev().take(most);
    let asks = book.iter().filter(|(k, _)| !k.0).take(most);
    bids.chain(asks).map(|(k, v)| (*k, *v)).collect()
}

/// The API of the test's process, on a free port.
struct Api {
    addr: String,
    stop: tokio_util::sync::CancellationToken,
}

impl Api {
    async fn start(
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
    async fn book(
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

fn dechunk(body: &str) -> String {
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

/// A fault the mock injects.
enum Fault {
    /// Through the WebSocket mock's options.
    Mock(VenueOptions),
    /// The first REST snapshot of each book is stale.
    StaleSnapshot,
}

/// Every Nth frame holding `marker` withheld: a skipped diff.
fn skipped(marker: &str, every: usize) -> Fault {
    Fault::Mock(VenueOptions {
        withhold: Some((marker.to_owned(), every)),
        ..VenueOptions::default()
    })
}

/// Every Nth checksum off by one.
fn corrupted(every: usize) -> Fault {
    Fault::Mock(VenueOptions {
        corrupt_checksum_every: Some(every),
        ..VenueOptions::default()
    })
}

macro_rules! fault_tests {
    ($($name:ident: $exchange:expr, $fixture:literal, $kraken_v1:literal, $fault:expr, $cause:literal;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            book_fault_is_resynchronised($exchange, $fixture, $kraken_v1, $fault, $cause).await;
        }
    )*};
}

fault_tests! {
    // The recording predates `seqId`: a skipped diff shows as a checksum
    // that does not hold.
    okx_skipped_diff_is_resynchronised: Exchange::Okx, "cryptofeed/OKX.jsonl.zst", false, skipped("\"action\":\"update\"", 40), "checksum";
    okx_corrupted_checksum_is_resynchronised: Exchange::Okx, "cryptofeed/OKX.jsonl.zst", false, corrupted(40), "checksum";
    bybit_skipped_diff_is_resynchronised: Exchange::Bybit, "cryptofeed/BYBIT.jsonl.zst", false, skipped("\"type\":\"delta\"", 40), "gap";
    kraken_v1_skipped_diff_is_resynchronised: Exchange::Kraken, "cryptofeed/KRAKEN.jsonl.zst", true, skipped("\"c\":\"", 40), "checksum";
    kraken_v1_corrupted_checksum_is_resynchronised: Exchange::Kraken, "cryptofeed/KRAKEN.jsonl.zst", true, corrupted(40), "checksum";
    binance_stale_snapshot_is_resynchronised: Exchange::Binance, "cryptofeed/BINANCE.jsonl.zst", false, Fault::StaleSnapshot, "gap";
    bitstamp_stale_snapshot_is_resynchronised: Exchange::Bitstamp, "cryptofeed/BITSTAMP.jsonl.zst", false, Fault::StaleSnapshot, "snapshot_stale";
    coinbase_advanced_skipped_message_is_resynchronised: Exchange::Coinbase, "cryptofeed/COINBASE.jsonl.zst", false, skipped("\"channel\":\"l2_data\"", 40), "gap";
}

/// A book rule fires on a live book: the alert service reads the stats of
/// the books captured every second. OKX's recorded books have spreads of
/// a few basis points: a rule at 0.01 bps fires, and its firing is stored
/// with the book's numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_book_rule_fires_on_the_live_book() {
    let c = Capture::start(
        Exchange::Okx,
        "cryptofeed/OKX.jsonl.zst",
        false,
        VenueOptions::default(),
    )
    .await;
    let i = c.instruments[0].clone();
    let rule = ck_alerts::Rule::from_json(&format!(
        r#"{{"kind":"book_spread_above","exchange":"okx","instrument":"{i}","bps":0.01}}"#
    ))
    .expect("rule");
    let handle =
        ck_alerts::AlertHandle::new(vec![rule], Vec::new()).with_books(c.runtime.books.clone());
    let notifier = ck_alerts::notify::Notifier::new(Vec::new(), 1, Duration::from_millis(10))
        .expect("notifier");
    let stop = tokio_util::sync::CancellationToken::new();
    let service = tokio::spawn(ck_alerts::service::run(
        c.runtime.feed.clone(),
        c.store.clone(),
        handle,
        std::sync::Arc::new(notifier),
        stop.clone(),
    ));
    let fired = eventually(Duration::from_secs(30), || {
        let store = c.store.clone();
        async move { store.firings(10).await.map_or(false, |f| !f.is_empty()) }
    })
    .await;
    stop.cancel();
    let _ = service.await;
    c.token.cancel();
    let _ = c.pipeline.await;
    c.api.stop.cancel();
    assert!(fired, "the book rule fired");
    let firings = c.store.firings(10).await.expect("firings");
    let v: serde_json::Value = serde_json::from_str(&firings[0].firing).expect("JSON");
    assert_eq!(v["kind"], "book_spread_above", "{v}");
    assert_eq!(v["instrument"], i.as_str(), "{v}");
    assert!(v["value"].as_f64().is_some_and(|x| x > 0.01), "{v}");
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("book spread")),
        "{v}"
    );
}
