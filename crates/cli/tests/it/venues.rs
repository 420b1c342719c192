//! Every venue's real connector code against the mock venue replaying that
//! venue's recording: the normalized trades and quotes stored by live
//! capture equal what the recording contains (count, ids, prices, sizes,
//! sides; quotes by bid and ask).

use std::collections::BTreeMap;
use std::time::Duration;

use ck_app::pipeline::{Source, SourceReport};
use ck_bus::{Event, Origin, RawMessage};
use ck_mock::venue::{MockVenue, VenueOptions};
use ck_model::{Exchange, Instrument, Ts};
use ck_sources::live::BackoffPolicy;
use ck_sources::live::connector::LiveConfig;
use ck_sources::normalize::Normalizer;
use ck_sources::recordings::Recording;
use ck_store::RangeQuery;

use crate::support::{PagedBy5, busiest_instrument, eventually, settings};

type TradeKey = (String, String, String, String, String);
type QuoteKey = (String, String, String);

/// What must match of a trade: instrument, id, price, size and side.
fn trade_key(t: &ck_model::Trade) -> TradeKey {
    (
        t.instrument.to_string(),
        t.trade_id.to_string(),
        t.price.normalize().to_string(),
        t.size.normalize().to_string(),
        t.side.as_str().to_owned(),
    )
}

/// What must match of a quote: instrument, bid and ask.
fn quote_key(q: &ck_model::Quote) -> QuoteKey {
    (
        q.instrument.to_string(),
        q.bid.to_string(),
        q.ask.to_string(),
    )
}

/// What the recording's WebSocket frames contain, by the venue's parser.
fn recorded(messages: &[RawMessage]) -> (BTreeMap<TradeKey, usize>, BTreeMap<QuoteKey, usize>) {
    let mut normalizer = Normalizer::new();
    let mut out = Vec::new();
    for m in messages.iter().filter(|m| m.origin == Origin::Ws) {
        normalizer.handle(m, &|| "recording".to_owned(), &mut out);
    }
    let (mut trades, mut quotes) = (BTreeMap::new(), BTreeMap::new());
    for e in out {
        match e {
            Event::Trade(t) => {
                let key = trade_key(&t);
                *trades.entry(key).or_insert(0) += 1;
            }
            Event::Quote(q) => {
                let key = quote_key(&q);
                *quotes.entry(key).or_insert(0) += 1;
            }
            _ => {}
        }
    }
    (trades, quotes)
}

fn all(exchange: Exchange, instrument: &Instrument) -> RangeQuery {
    RangeQuery {
        exchange,
        instrument: instrument.clone(),
        from: Ts(i64::MIN),
        to: Ts(i64::MAX),
        limit: usize::MAX >> 1,
    }
}

async fn live_capture_equals_recording(exchange: Exchange, fixture: &str, kraken_v1: bool) {
    let file = ck_testkit::fixture(fixture);
    let messages: Vec<RawMessage> = Recording::open(&file)
        .expect("open")
        .map(|r| r.expect("record"))
        .collect();
    let (trades, quotes) = recorded(&messages);
    assert!(!trades.is_empty(), "{fixture} has trades");
    let mut instruments: Vec<Instrument> = trades
        .keys()
        .map(|k| k.0.clone())
        .chain(quotes.keys().map(|k| k.0.clone()))
        .map(|i| Instrument::parse(&i).expect("instrument"))
        .collect();
    instruments.sort();
    instruments.dedup();

    // Faults: the connection dropped halfway, a malformed frame before
    // every tenth of the frames, and two stalls (pings go on).
    // Counted in the frames the client gets (the mock sends it nothing
    // about products it did not subscribe to).
    let frames = frames_for_data(exchange, &messages);
    let mock = MockVenue::start(
        exchange,
        &messages,
        VenueOptions {
            drop_after: Some(frames / 2),
            malformed_every: Some((frames / 10).max(2)),
            stall: Some(((frames / 3).max(1), Duration::from_millis(300))),
            ..VenueOptions::default()
        },
    )
    .await
    .expect("mock");
    let dir = tempfile::tempdir().expect("dir");
    let settings = settings(dir.path());
    let store = ck_app::open_store(&settings).await.expect("store");
    let source = live_source(exchange, kraken_v1, &mock, &instruments);
    let (token, pipeline) = crate::support::spawn_pipeline(&settings, &store, source);
    let expected_trades: usize = trades.len();
    let expected_quotes: std::collections::BTreeSet<QuoteKey> = quotes.keys().cloned().collect();
    // Done when every frame was served and every trade and distinct quote is
    // stored: frames still unread when the pipeline stops are not captured.
    let done = eventually(Duration::from_secs(60), || {
        let (store, mock, instruments, expected_quotes) =
            (store.clone(), &mock, &instruments, &expected_quotes);
        async move {
            if !mock.finished()
                || store.counts().await.map(|c| c.trades as usize).unwrap_or(0) < expected_trades
            {
                return false;
            }
            let mut seen = std::collections::BTreeSet::new();
            for i in instruments {
                for q in store.quotes(&all(exchange, i)).await.unwrap_or_default() {
                    seen.insert(quote_key(&q));
                }
            }
            &seen == expected_quotes
        }
    })
    .await;
    token.cancel();
    let report = pipeline.await.expect("join").expect("pipeline");
    assert!(
        done,
        "{exchange}: every recorded frame was served and stored"
    );
    let SourceReport::Live(status) = &report.sources[0] else {
        panic!("live report")
    };
    assert_eq!(
        status.reconnects, 1,
        "{exchange}: the dropped connection was renewed"
    );
    assert_eq!(mock.connections(), 2);
    assert!(mock.stalls() >= 1, "{exchange}: stalled");
    let malformed = mock.malformed() as u64;
    let errors = report.capture.as_ref().map_or(0, |c| c.normalized.errors);
    assert!(
        malformed >= 1 && errors >= malformed,
        "{exchange}: {malformed} malformed frames sent, {errors} counted as errors"
    );
    if exchange != Exchange::Binance {
        // Binance names its streams in the URL.
        assert!(
            mock.subscribes().len() >= 2,
            "{exchange}: subscribed on both connections"
        );
    }

    let mut got_trades = BTreeMap::new();
    let mut got_quotes = BTreeMap::new();
    for i in &instruments {
        for t in store.trades(&all(exchange, i)).await.expect("trades") {
            let key = trade_key(&t);
            *got_trades.entry(key).or_insert(0) += 1;
        }
        for q in store.quotes(&all(exchange, i)).await.expect("quotes") {
            let key = quote_key(&q);
            *got_quotes.entry(key).or_insert(0) += 1;
        }
    }
    // The store keeps one row per trade id: compare distinct trades.
    let distinct: BTreeMap<TradeKey, usize> = trades.keys().map(|k| (k.clone(), 1)).collect();
    assert_eq!(got_trades, distinct, "{exchange}: trades");
    let distinct_quotes: std::collections::BTreeSet<&QuoteKey> = quotes.keys().collect();
    let got_distinct: std::collections::BTreeSet<&QuoteKey> = got_quotes.keys().collect();
    assert_eq!(got_distinct, distinct_quotes, "{exchange}: quotes");
    let stored_quotes: usize = got_quotes.values().sum();
    let recorded_quotes: usize = quotes.values().sum();
    // The reconnected client's books are sent again (as a venue sends a
    // fresh snapshot on subscribe); a venue that reads quotes from its book
    // frames (Bybit) gets those again too.
    let again = mock.caught_up();
    assert!(
        stored_quotes <= recorded_quotes + again && stored_quotes * 10 >= recorded_quotes * 9,
        "{exchange}: {stored_quotes} of {recorded_quotes} quotes stored, {again} book frames sent again (identical quotes at one instant are one row)"
    );
}

/// The venue's real connector, on `mock`, for `instruments`, without REST.
fn live_source(
    exchange: Exchange,
    kraken_v1: bool,
    mock: &MockVenue,
    instruments: &[Instrument],
) -> Source {
    let (protocol, _) = ck_sources::live::protocol_for(exchange, kraken_v1).expect("protocol");
    Source::Live {
        protocol,
        config: LiveConfig {
            ws_url: mock.ws_url(),
            instruments: instruments.to_vec(),
            backoff: BackoffPolicy {
                initial: Duration::from_millis(20),
                ..BackoffPolicy::default()
            },
            stale_after: Duration::from_secs(30),
            rest_url: None,
            books: None,
        },
    }
}

/// The WebSocket frames a client subscribed to every product with data
/// gets: those about no product, and those about a product of which some
/// frame yields a trade or quote.
fn frames_for_data(exchange: Exchange, messages: &[RawMessage]) -> usize {
    let ws: Vec<&RawMessage> = messages.iter().filter(|m| m.origin == Origin::Ws).collect();
    let texts: Vec<String> = ws.iter().map(|m| m.data.clone()).collect();
    let products = ck_mock::route::products(exchange, &texts);
    let mut normalizer = Normalizer::new();
    let mut out = Vec::new();
    let mut with_data = std::collections::HashSet::new();
    for (m, product) in ws.iter().zip(&products) {
        out.clear();
        normalizer.handle(m, &|| "recording".to_owned(), &mut out);
        if out
            .iter()
            .any(|e| matches!(e, Event::Trade(_) | Event::Quote(_)))
        {
            with_data.insert(product.clone());
        }
    }
    products
        .iter()
        .filter(|p| p.is_none() || with_data.contains(*p))
        .count()
}

/// Two clients of one mock, each subscribed to another instrument (the two
/// most traded; the same one twice where the recording trades only one):
/// each stores exactly the recorded trades of its own instrument, so the
/// mock sends every client every frame of what it subscribed to, and
/// nothing else.
async fn each_client_gets_what_it_subscribed_to(
    exchange: Exchange,
    fixture: &str,
    kraken_v1: bool,
) {
    let file = ck_testkit::fixture(fixture);
    let messages: Vec<RawMessage> = Recording::open(&file)
        .expect("open")
        .map(|r| r.expect("record"))
        .collect();
    let (trades, _) = recorded(&messages);
    let mut per_instrument: BTreeMap<String, BTreeMap<TradeKey, usize>> = BTreeMap::new();
    for (k, n) in &trades {
        per_instrument
            .entry(k.0.clone())
            .or_default()
            .insert(k.clone(), *n);
    }
    let mut ranked: Vec<(&String, usize)> =
        per_instrument.iter().map(|(i, t)| (i, t.len())).collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let first = ranked.first().expect("the recording has trades").0.clone();
    let second = ranked.get(1).map_or(first.clone(), |r| r.0.clone());

    let mock = MockVenue::start(exchange, &messages, VenueOptions::default())
        .await
        .expect("mock");
    let mut clients = Vec::new();
    for name in [&first, &second] {
        let instrument = Instrument::parse(name).expect("instrument");
        let dir = tempfile::tempdir().expect("dir");
        let settings = settings(dir.path());
        let store = ck_app::open_store(&settings).await.expect("store");
        let source = live_source(
            exchange,
            kraken_v1,
            &mock,
            std::slice::from_ref(&instrument),
        );
        let (token, pipeline) = crate::support::spawn_pipeline(&settings, &store, source);
        clients.push((dir, instrument, store, token, pipeline));
    }
    let done = eventually(Duration::from_secs(60), || {
        let (clients, per_instrument) = (&clients, &per_instrument);
        async move {
            for (_, instrument, store, _, _) in clients {
                let want = per_instrument[&instrument.to_string()].len() as u64;
                if store.counts().await.map(|c| c.trades).unwrap_or(0) < want {
                    return false;
                }
            }
            true
        }
    })
    .await;
    for (_, instrument, store, token, pipeline) in clients {
        token.cancel();
        pipeline.await.expect("join").expect("pipeline");
        assert!(
            done,
            "{exchange}: every client stored its instrument's trades"
        );
        let mut got = BTreeMap::new();
        for t in store
            .trades(&all(exchange, &instrument))
            .await
            .expect("trades")
        {
            *got.entry(trade_key(&t)).or_insert(0) += 1;
        }
        assert_eq!(
            got,
            per_instrument[&instrument.to_string()],
            "{exchange} {instrument}: exactly the recorded trades, once each"
        );
        let stored: Vec<String> = store
            .instruments()
            .await
            .expect("instruments")
            .iter()
            .map(|i| i.info.instrument.to_string())
            .collect();
        assert_eq!(
            stored,
            vec![instrument.to_string()],
            "{exchange}: nothing it did not subscribe to"
        );
    }
    assert_eq!(mock.connections(), 2);
}

/// For each venue with a recording: its live capture equals the recording
/// (with faults), looping it three times adds three laps of trades, and two
/// clients of one mock each get what they subscribed to.
macro_rules! venue_tests {
    ($($live:ident, $looped:ident, $clients:ident: $exchange:expr, $fixture:literal, $kraken_v1:literal;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $live() {
            live_capture_equals_recording($exchange, $fixture, $kraken_v1).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $clients() {
            each_client_gets_what_it_subscribed_to($exchange, $fixture, $kraken_v1).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $looped() {
            looped_capture_continues_the_recording($exchange, $fixture, $kraken_v1).await;
        }
    )*};
}

venue_tests! {
    coinbase_advanced_live_capture_equals_its_recording, coinbase_advanced_loops_its_recording, coinbase_advanced_clients_get_what_they_subscribed_to: Exchange::Coinbase, "cryptofeed/COINBASE.jsonl.zst", false;
    coinbase_exchange_live_capture_equals_its_recording, coinbase_exchange_loops_its_recording, coinbase_exchange_clients_get_what_they_subscribed_to: Exchange::CoinbaseExchange, "cryptofeed/COINBASE_EXCHANGE.ws.28.0", false;
    bitfinex_live_capture_equals_its_recording, bitfinex_loops_its_recording, bitfinex_clients_get_what_they_subscribed_to: Exchange::Bitfinex, "cryptofeed/BITFINEX.jsonl.zst", false;
    kraken_v1_live_capture_equals_its_recording, kraken_v1_loops_its_recording, kraken_v1_clients_get_what_they_subscribed_to: Exchange::Kraken, "cryptofeed/KRAKEN.jsonl.zst", true;
    bitstamp_live_capture_equals_its_recording, bitstamp_loops_its_recording, bitstamp_clients_get_what_they_subscribed_to: Exchange::Bitstamp, "cryptofeed/BITSTAMP.jsonl.zst", false;
    okx_live_capture_equals_its_recording, okx_loops_its_recording, okx_clients_get_what_they_subscribed_to: Exchange::Okx, "cryptofeed/OKX.jsonl.zst", false;
    bybit_live_capture_equals_its_recording, bybit_loops_its_recording, bybit_clients_get_what_they_subscribed_to: Exchange::Bybit, "cryptofeed/BYBIT.jsonl.zst", false;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binance_combined_streams_live_capture_equals_its_recording() {
    live_capture_equals_recording(Exchange::Binance, "cryptofeed/BINANCE.jsonl.zst", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binance_clients_get_what_they_subscribed_to() {
    each_client_gets_what_it_subscribed_to(
        Exchange::Binance,
        "cryptofeed/BINANCE.jsonl.zst",
        false,
    )
    .await;
}

/// The mock looping a recording three times, through the real connector:
/// the store ends with exactly the trades of the three laps as the mock
/// serves them (each lap's ids moved past the last lap's, its times a lap
/// on), so every lap adds a lap of new trades; and a venue with sequential
/// ids sees no gap between laps.
async fn looped_capture_continues_the_recording(
    exchange: Exchange,
    fixture: &str,
    kraken_v1: bool,
) {
    const LAPS: u64 = 3;
    let messages = crate::support::recording(fixture);
    let ws: Vec<&RawMessage> = messages.iter().filter(|m| m.origin == Origin::Ws).collect();
    let laps = ck_mock::laps::Laps::new(
        exchange,
        ws.iter().map(|m| m.data.clone()).collect(),
        ws.iter().map(|m| m.ts_received).collect(),
    );
    let served: Vec<RawMessage> = (0..laps.len() * LAPS as usize)
        .filter_map(|n| {
            let (text, at) = laps.frame(n)?;
            let offset = laps.offset(n);
            Some(RawMessage {
                exchange,
                ts_received: at,
                origin: Origin::Ws,
                data: if offset == 0 {
                    text
                } else {
                    ck_mock::shift::shift_frame(exchange, &text, offset)
                },
            })
        })
        .collect();
    let (one_lap, _) = recorded(&messages);
    let (trades, _) = recorded(&served);
    assert!(
        trades.len() == 3 * one_lap.len(),
        "{exchange}: {} trades in one lap, {} in three",
        one_lap.len(),
        trades.len()
    );
    let mut instruments: Vec<Instrument> = trades
        .keys()
        .map(|k| Instrument::parse(&k.0).expect("instrument"))
        .collect();
    instruments.sort();
    instruments.dedup();
    let mock = MockVenue::start(
        exchange,
        &messages,
        VenueOptions {
            laps: LAPS,
            ..VenueOptions::default()
        },
    )
    .await
    .expect("mock");
    let dir = tempfile::tempdir().expect("dir");
    let settings = settings(dir.path());
    let store = ck_app::open_store(&settings).await.expect("store");
    let source = live_source(exchange, kraken_v1, &mock, &instruments);
    let (token, pipeline) = crate::support::spawn_pipeline(&settings, &store, source);
    let expected = trades.len();
    let done = eventually(Duration::from_secs(60), || {
        let (store, mock) = (store.clone(), &mock);
        async move {
            mock.finished()
                && store.counts().await.map(|c| c.trades as usize).unwrap_or(0) >= expected
        }
    })
    .await;
    token.cancel();
    pipeline.await.expect("join").expect("pipeline");
    assert!(done, "{exchange}: three laps served and stored");
    let mut got = BTreeMap::new();
    for i in &instruments {
        for t in store.trades(&all(exchange, i)).await.expect("trades") {
            got.insert(trade_key(&t), 1);
        }
    }
    let want: BTreeMap<TradeKey, usize> = trades.keys().map(|k| (k.clone(), 1)).collect();
    assert_eq!(got, want, "{exchange}: the three laps' trades");
    let gaps = store.gaps(Some(exchange), None, 100).await.expect("gaps");
    assert!(gaps.is_empty(), "{exchange}: no gap between laps: {gaps:?}");
}

/// Coinbase Exchange with every 5th `match` frame withheld: the connector
/// sees the trade-id jumps, records each gap, and repairs it from the mock's
/// REST trades (the same recording). The store ends with every recorded
/// trade up to the last one served per product (a withheld tail is
/// invisible: no later id reveals it), each gap filled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coinbase_exchange_gaps_are_repaired_over_rest() {
    let messages = crate::support::recording("cryptofeed/COINBASE_EXCHANGE.ws.28.0");
    let rest = ck_mock::coinbase_exchange::MockCoinbaseRest::start(&messages)
        .await
        .expect("rest mock");
    id_gaps_are_repaired_over_rest(
        Exchange::CoinbaseExchange,
        &messages,
        ("\"type\":\"match\"", 5),
        |v| {
            vec![(
                v["product_id"].as_str().expect("product").to_owned(),
                v["trade_id"].as_u64().expect("id"),
            )]
        },
        &rest,
    )
    .await;
}

/// OKX with every 4th `trades` push withheld: the same as Coinbase
/// Exchange's, by `tradeId` per instrument, repaired from the mock's
/// `history-trades` (pages by id windows). Spot only: the recording's
/// derivatives are ignored by the connector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okx_gaps_are_repaired_over_rest() {
    let messages = crate::support::recording("cryptofeed/OKX.jsonl.zst");
    let rest = ck_mock::okx::MockOkxRest::start(&messages, None)
        .await
        .expect("rest mock");
    id_gaps_are_repaired_over_rest(
        Exchange::Okx,
        &messages,
        ("\"tradeId\"", 4),
        |v| {
            v["data"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| {
                    let inst = t["instId"].as_str()?;
                    (inst.matches('-').count() == 1).then(|| {
                        (
                            inst.to_owned(),
                            t["tradeId"]
                                .as_str()
                                .and_then(|s| s.parse().ok())
                                .expect("id"),
                        )
                    })
                })
                .collect()
        },
        &rest,
    )
    .await;
}

/// The live connector on a mock withholding every `every`th frame holding
/// `marker`, with REST on `rest`: every gap the withheld trades make (the
/// frames' `(instrument, id)`s by `ids`) is recorded and filled, and the
/// store ends with every recorded trade up to the last one served per
/// instrument.
async fn id_gaps_are_repaired_over_rest(
    exchange: Exchange,
    messages: &[RawMessage],
    (marker, every): (&str, usize),
    ids: fn(&serde_json::Value) -> Vec<(String, u64)>,
    rest: &ck_mock::RestMock,
) {
    // Which trades the mock will serve: every `every`th frame is withheld.
    let mut last_served: BTreeMap<String, u64> = BTreeMap::new();
    let mut withheld_frames = 0;
    let mut withheld: Vec<(String, u64)> = Vec::new();
    let mut seen = 0;
    for m in messages
        .iter()
        .filter(|m| m.origin == Origin::Ws && m.data.contains(marker))
    {
        seen += 1;
        let v: serde_json::Value = serde_json::from_str(&m.data).expect("json");
        let frame_ids = ids(&v);
        if seen % every == 0 {
            withheld_frames += 1;
            withheld.extend(frame_ids);
        } else {
            for (product, id) in frame_ids {
                let e = last_served.entry(product).or_insert(0);
                *e = (*e).max(id);
            }
        }
    }
    // Withheld trades followed by a served one of the same product: the gaps.
    let detectable = withheld
        .iter()
        .filter(|(p, id)| last_served.get(p).is_some_and(|last| id < last))
        .count() as u64;
    assert!(
        detectable >= 10,
        "the fault makes gaps: {detectable} of {} withheld",
        withheld.len()
    );
    let (trades, _) = recorded(messages);
    let expected: BTreeMap<TradeKey, usize> = trades
        .keys()
        .filter(|k| {
            let product = k.0.clone();
            let id: u64 = k.1.parse().expect("numeric id");
            last_served.get(&product).is_some_and(|last| id <= *last)
        })
        .map(|k| (k.clone(), 1))
        .collect();
    let instruments: Vec<Instrument> = last_served
        .keys()
        .map(|p| Instrument::parse(p).expect("instrument"))
        .collect();

    let mock = MockVenue::start(
        exchange,
        messages,
        VenueOptions {
            withhold: Some((marker.to_owned(), every)),
            ..VenueOptions::default()
        },
    )
    .await
    .expect("mock");
    let (protocol, _) = ck_sources::live::protocol_for(exchange, false).expect("protocol");
    let dir = tempfile::tempdir().expect("dir");
    let settings = settings(dir.path());
    let store = ck_app::open_store(&settings).await.expect("store");
    let source = Source::Live {
        protocol,
        config: LiveConfig {
            ws_url: mock.ws_url(),
            instruments: instruments.clone(),
            backoff: BackoffPolicy::default(),
            stale_after: Duration::from_secs(30),
            rest_url: Some(rest.rest_url()),
            books: None,
        },
    };
    let (token, pipeline) = crate::support::spawn_pipeline(&settings, &store, source);
    let done = eventually(Duration::from_secs(60), || {
        let (store, mock) = (store.clone(), &mock);
        let want = expected.len() as u64;
        async move {
            let open = store
                .gaps(Some(exchange), None, 10_000)
                .await
                .map(|g| g.iter().any(|g| g.state == ck_model::GapState::Open))
                .unwrap_or(true);
            mock.finished() && !open && store.counts().await.map(|c| c.trades).unwrap_or(0) >= want
        }
    })
    .await;
    token.cancel();
    pipeline.await.expect("join").expect("pipeline");
    assert!(done, "every gap repaired and every trade stored");
    assert_eq!(mock.withheld(), withheld_frames);

    let mut got = BTreeMap::new();
    for i in &instruments {
        for t in store.trades(&all(exchange, i)).await.expect("trades") {
            *got.entry(trade_key(&t)).or_insert(0) += 1;
        }
    }
    assert_eq!(got, expected, "exactly the recorded trades, once each");
    let gaps = store
        .gaps(Some(exchange), None, 10_000)
        .await
        .expect("gaps");
    assert!(!gaps.is_empty());
    let missing: u64 = gaps
        .iter()
        .map(|g| g.last_missing_id.unwrap_or(0) - g.first_missing_id.unwrap_or(1) + 1)
        .sum();
    assert!(
        missing >= detectable,
        "{missing} ids in gaps, {detectable} withheld"
    );
    assert!(
        gaps.iter().all(|g| g.state == ck_model::GapState::Filled),
        "{:?}",
        gaps.iter()
            .map(|g| (&g.state, &g.reason))
            .collect::<Vec<_>>()
    );
}

/// Coinbase Exchange's REST history against the mock: pages by id, oldest
/// first, and the binary search for the first trade at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coinbase_exchange_rest_history_pages_by_id_and_finds_a_time() {
    let messages = crate::support::recording("cryptofeed/COINBASE_EXCHANGE.ws.28.0");
    let rest = ck_mock::coinbase_exchange::MockCoinbaseRest::start(&messages)
        .await
        .expect("rest mock");
    rest_history_pages_by_id_and_finds_a_time(Exchange::CoinbaseExchange, &messages, &rest).await;
}

/// OKX's `history-trades` against the mock: windows of ids, oldest first,
/// and the first trade at a time from time windows (narrowed while full,
/// widened while empty, up to the present).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okx_rest_history_pages_by_id_and_finds_a_time() {
    let messages = crate::support::recording("cryptofeed/OKX.jsonl.zst");
    let rest = ck_mock::okx::MockOkxRest::start(&messages, None)
        .await
        .expect("rest mock");
    rest_history_pages_by_id_and_finds_a_time(Exchange::Okx, &messages, &rest).await;
    // Rows aggregating fills (`count`, the last fill's id): pages of five
    // rows reach past five ids, and paging on covers every fill once.
    let aggregating = ck_mock::okx::MockOkxRest::start_with(&messages, None, true)
        .await
        .expect("rest mock");
    let (instrument, fills) = busiest_instrument(&messages);
    let history = ck_sources::history::for_exchange(
        Exchange::Okx,
        std::sync::Arc::new(
            ck_sources::rest::RestClient::new(
                Exchange::Okx,
                ck_sources::rest::RestSettings::new(aggregating.rest_url()),
            )
            .expect("client"),
        ),
    )
    .expect("a history");
    let first = fills[0].trade_id.as_u64().expect("id");
    let mut next = first;
    let mut covered = Vec::new();
    loop {
        let page = history
            .trades_from_id(&instrument, next, 5)
            .await
            .expect("page");
        let Some(last) = page.last() else { break };
        next = last.trade_id.as_u64().expect("id") + 1;
        assert!(
            page.len() == 5 || next > fills.last().expect("a fill").trade_id.as_u64().expect("id"),
            "a short page only at the end"
        );
        for t in &page {
            let (a, b) = t.id_span().expect("span");
            covered.extend(a..=b);
        }
    }
    let want: Vec<u64> = fills
        .iter()
        .map(|t| t.trade_id.as_u64().expect("id"))
        .collect();
    assert_eq!(covered, want, "every fill's id once, in order");
    let aggregate = fills
        .windows(2)
        .find(|w| {
            w[0].ts_exchange == w[1].ts_exchange
                && w[0].price == w[1].price
                && w[0].side == w[1].side
        })
        .expect("fills to aggregate")[0]
        .clone();
    let found = history
        .first_trade_id_at(&instrument, aggregate.ts_exchange)
        .await
        .expect("search");
    let expected = fills
        .iter()
        .find(|t| t.ts_exchange >= aggregate.ts_exchange)
        .and_then(|t| t.trade_id.as_u64());
    assert_eq!(
        found, expected,
        "the first fill of the aggregate at that time"
    );
}

/// A venue read by id, against its REST mock serving `messages`' trades:
/// pages of ids `[first, first + 5)`, the first trade at or after a time,
/// and none after the last.
async fn rest_history_pages_by_id_and_finds_a_time(
    exchange: Exchange,
    messages: &[RawMessage],
    rest: &ck_mock::RestMock,
) {
    // The product with the most trades, from the recording.
    let (trades, _) = recorded(messages);
    let mut by_product: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for k in trades.keys() {
        by_product
            .entry(k.0.clone())
            .or_default()
            .push(k.1.parse().expect("id"));
    }
    let (product, mut ids) = by_product
        .into_iter()
        .max_by_key(|(_, ids)| ids.len())
        .expect("a product");
    ids.sort_unstable();
    let instrument = Instrument::parse(&product).expect("instrument");
    let client = ck_sources::rest::RestClient::new(
        exchange,
        ck_sources::rest::RestSettings::new(rest.rest_url()),
    )
    .expect("client");
    let history = ck_sources::history::for_exchange(exchange, std::sync::Arc::new(client))
        .expect("a history");
    let first = ids[0];
    let page = history
        .trades_from_id(&instrument, first, 5)
        .await
        .expect("page");
    let got: Vec<u64> = page
        .iter()
        .map(|t| t.trade_id.to_string().parse().expect("id"))
        .collect();
    let want: Vec<u64> = ids
        .iter()
        .copied()
        .filter(|&id| id >= first && id < first + 5)
        .collect();
    assert_eq!(got, want, "ids [first, first+5), oldest first");
    // The first trade at or after the time of the middle trade.
    let all = history
        .trades_from_id(&instrument, first, 1000)
        .await
        .expect("all");
    let middle = &all[all.len() / 2];
    let found = history
        .first_trade_id_at(&instrument, middle.ts_exchange)
        .await
        .expect("search")
        .expect("an id");
    let expected = all
        .iter()
        .find(|t| t.ts_exchange >= middle.ts_exchange)
        .map(|t| t.trade_id.to_string().parse::<u64>().expect("id"));
    assert_eq!(Some(found), expected);
    let later = Ts(all.last().expect("a trade").ts_exchange.0 + 1);
    assert_eq!(
        history
            .first_trade_id_at(&instrument, later)
            .await
            .expect("search"),
        None
    );
}

/// Bitfinex gap repair by time, against the REST mock serving the
/// recording's trades (the recording has snapshot trades only, no live `te`
/// updates, so the gap is given rather than provoked): a reconnect window
/// over the middle of the trades is fetched page by page (pages of 5, so
/// paging by time, and trades sharing a millisecond across a page boundary,
/// are exercised), every trade in the window comes out once, and the gap is
/// filled, although the mock refuses every third request with 429 and
/// answers slowly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitfinex_gap_is_filled_from_rest_history_by_time() {
    let messages = crate::support::recording("cryptofeed/BITFINEX.jsonl.zst");
    let rest = ck_mock::bitfinex::MockBitfinexRest::start(&messages, None)
        .await
        .expect("rest mock");
    // Every third request refused with 429 and `Retry-After`, every answer slow.
    rest.set_faults(ck_mock::RestFaults {
        every_429: Some(3),
        delay: Some(std::time::Duration::from_millis(20)),
    });
    gap_is_filled_by_time(Exchange::Bitfinex, &messages, &rest, trade_key, 20).await;
    let (requests, refused) = rest.requests();
    assert!(
        refused >= 1 && requests > refused,
        "{refused} of {requests} requests refused, and the repair went on"
    );
}

/// Kraken gap repair by time (`Trades` with a nanosecond `since`), against
/// the REST mock serving the v1 recording's trades. v1 trades carry no id
/// (the live ones get `v1:<time>:<price>:<volume>:<side>`, REST ones the
/// numeric id v2 uses), so trades are matched on everything else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kraken_gap_is_filled_from_rest_history_by_time() {
    let messages = crate::support::recording("cryptofeed/KRAKEN.jsonl.zst");
    let rest = ck_mock::kraken::MockKrakenRest::start(&messages, None)
        .await
        .expect("rest mock");
    let without_id = |t: &ck_model::Trade| -> TradeKey {
        let (instrument, _, price, size, side) = trade_key(t);
        (instrument, t.ts_exchange.to_string(), price, size, side)
    };
    gap_is_filled_by_time(Exchange::Kraken, &messages, &rest, without_id, 3).await;
}

/// Coinbase Advanced gap repair by time windows (the public `ticker`
/// endpoint with `start`/`end`), against the REST mock serving the
/// recording's trades: every trade of a reconnect window comes out once,
/// under 429s, although the mock answers a full window with its newest
/// trades only (the client halves such windows until they are complete).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coinbase_advanced_gap_is_filled_from_rest_history_by_time() {
    let messages = crate::support::recording("cryptofeed/COINBASE.jsonl.zst");
    let rest = ck_mock::coinbase_advanced::MockCoinbaseAdvancedRest::start(&messages, None)
        .await
        .expect("rest mock");
    rest.set_faults(ck_mock::RestFaults {
        every_429: Some(4),
        delay: None,
    });
    gap_is_filled_by_time(Exchange::Coinbase, &messages, &rest, trade_key, 10).await;
}

/// Bybit keeps only its most recent trades (60 on spot): against the REST
/// mock serving the spot recording's trades, asked for pages of five, a gap
/// over the last five trades is filled with exactly those, and a gap older
/// than them is reported unfillable with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bybit_recent_trades_fill_recent_gaps_and_refuse_older_ones() {
    let exchange = Exchange::Bybit;
    let messages = crate::support::recording("cryptofeed/BYBIT.jsonl.zst");
    let rest = ck_mock::bybit::MockBybitRest::start(&messages, None)
        .await
        .expect("rest mock");
    let (instrument, trades) = busiest_instrument(&messages);
    let n = trades.len();
    assert!(n >= 10, "{n} trades");
    assert_eq!(rest.trades(), recorded(&messages).0.len());
    let history = PagedBy5(
        ck_sources::history::for_exchange(
            exchange,
            std::sync::Arc::new(
                ck_sources::rest::RestClient::new(
                    exchange,
                    ck_sources::rest::RestSettings::new(rest.rest_url()),
                )
                .expect("client"),
            ),
        )
        .expect("a history"),
    );
    assert!(ck_sources::history::History::keeps_only(&history).is_some());
    let history: std::sync::Arc<dyn ck_sources::history::History> = std::sync::Arc::new(history);
    let repair =
        |from: Ts, to: Ts| repair_window(exchange, history.clone(), instrument.clone(), from, to);
    // The last five trades: filled with exactly them, oldest first.
    let (got, gap) = repair(trades[n - 5].ts_exchange, trades[n - 1].ts_exchange).await;
    assert_eq!(gap.state, ck_model::GapState::Filled, "{}", gap.reason);
    assert_eq!(
        got,
        trades[n - 5..].iter().map(trade_key).collect::<Vec<_>>()
    );
    // Older than the most recent five: unfillable, and says why.
    let (_, gap) = repair(trades[1].ts_exchange, trades[n - 7].ts_exchange).await;
    assert_eq!(gap.state, ck_model::GapState::Unfillable, "{}", gap.reason);
    assert!(
        gap.reason
            .contains("serves only its 60 most recent spot trades"),
        "{}",
        gap.reason
    );
}

/// Bitstamp keeps the last day of trades (`transactions?time=minute|hour|day`):
/// against the REST mock serving the recording moved to half a minute ago,
/// a gap over the recorded trades is filled with every one of them (from
/// the last minute), and a gap two days old is unfillable with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitstamp_recent_transactions_fill_recent_gaps_and_refuse_older_ones() {
    let exchange = Exchange::Bitstamp;
    let messages = crate::support::recording("cryptofeed/BITSTAMP.jsonl.zst");
    let shift_to = Ts(Ts::now().0 - 30_000_000_000);
    let rest = ck_mock::bitstamp::MockBitstampRest::start(&messages, Some(shift_to))
        .await
        .expect("rest mock");
    assert_eq!(rest.trades(), recorded(&messages).0.len());
    let first_frame = messages
        .iter()
        .find(|m| m.origin == Origin::Ws)
        .expect("frames")
        .ts_received;
    let shift = shift_to.0 - first_frame.0;
    let (instrument, trades) = busiest_instrument(&messages);
    assert!(trades.len() >= 3, "{} trades", trades.len());
    let client = ck_sources::rest::RestClient::new(
        exchange,
        ck_sources::rest::RestSettings::new(rest.rest_url()),
    )
    .expect("client");
    let history = ck_sources::history::for_exchange(exchange, std::sync::Arc::new(client))
        .expect("a history");
    assert!(history.keeps_only().is_some());
    let repair =
        |from: Ts, to: Ts| repair_window(exchange, history.clone(), instrument.clone(), from, to);
    // Whole seconds on REST: the window starts at the first trade's second.
    let first = Ts((trades[0].ts_exchange.0 + shift).div_euclid(1_000_000_000) * 1_000_000_000);
    let last = Ts(trades[trades.len() - 1].ts_exchange.0 + shift);
    let (got, gap) = repair(first, last).await;
    assert_eq!(gap.state, ck_model::GapState::Filled, "{}", gap.reason);
    let mut want: Vec<TradeKey> = trades.iter().map(trade_key).collect();
    let mut got_sorted = got.clone();
    want.sort();
    got_sorted.sort();
    assert_eq!(got_sorted, want, "every recorded trade, once");
    let two_days = 2 * 86_400 * 1_000_000_000;
    let (got, gap) = repair(Ts(first.0 - two_days), Ts(last.0 - two_days)).await;
    assert_eq!(gap.state, ck_model::GapState::Unfillable, "{}", gap.reason);
    assert!(got.is_empty());
    assert!(
        gap.reason.contains("serves only the last day of trades"),
        "{}",
        gap.reason
    );
}

/// Repairs one reconnect gap of `instrument` from `from` to `to` with
/// `history`; the trades it fetched (as [`trade_key`]s, in order) and the
/// gap's new state.
async fn repair_window(
    exchange: Exchange,
    history: std::sync::Arc<dyn ck_sources::history::History>,
    instrument: Instrument,
    from: Ts,
    to: Ts,
) -> (Vec<TradeKey>, ck_model::Gap) {
    let (trades, gap, _) = repair_window_trades(exchange, history, instrument, from, to).await;
    (trades.iter().map(trade_key).collect(), gap)
}

/// [`repair_window`], with the trades as fetched and the repair's counts.
async fn repair_window_trades(
    exchange: Exchange,
    history: std::sync::Arc<dyn ck_sources::history::History>,
    instrument: Instrument,
    from: Ts,
    to: Ts,
) -> (
    Vec<ck_model::Trade>,
    ck_model::Gap,
    ck_sources::repair::RepairStats,
) {
    let mut histories = ck_sources::repair::Histories::new();
    histories.insert(exchange, history);
    let (tx, mut rx) = ck_bus::channel::<Event>("repair", 10_000);
    let (gap_tx, gap_rx) = ck_bus::gap_queue::gap_queue();
    gap_tx.offer(&ck_model::Gap {
        exchange,
        instrument,
        from_ts: from,
        to_ts: to,
        first_missing_id: None,
        last_missing_id: None,
        state: ck_model::GapState::Open,
        reason: "reconnect".into(),
        detected_at: Ts::now(),
        kind: ck_model::GapKind::Trades,
    });
    drop(gap_tx);
    let stats = ck_sources::repair::run_gap_repair(
        gap_rx,
        histories,
        tx,
        tokio_util::sync::CancellationToken::new(),
    )
    .await;
    let (mut got, mut gap) = (Vec::new(), None);
    while let Some(e) = rx.recv().await {
        match e {
            Event::Trade(t) => got.push(t),
            Event::Gap(g) => gap = Some(g),
            _ => {}
        }
    }
    (got, gap.expect("the gap's new state"), stats)
}

/// Repairs a reconnect gap over the recorded trades of the busiest
/// instrument of `messages` (the middle half, or all when there are few)
/// from `rest`, in pages of five, and checks that every trade of the window
/// comes out once (as `key` sees trades) and that the gap is filled.
async fn gap_is_filled_by_time(
    exchange: Exchange,
    messages: &[RawMessage],
    rest: &ck_mock::RestMock,
    key: impl Fn(&ck_model::Trade) -> TradeKey,
    at_least: usize,
) {
    let (trades, _) = recorded(messages);
    assert_eq!(
        rest.trades(),
        trades.len(),
        "REST serves the recorded trades"
    );

    let (instrument, recorded_trades) = busiest_instrument(messages);
    assert!(
        recorded_trades.len() >= at_least,
        "{}",
        recorded_trades.len()
    );
    // A reconnect window (no ids) over the middle half, margins included.
    let n = recorded_trades.len();
    let margin = 5_000_000_000;
    let (from, to) = if n >= 8 {
        (
            Ts(recorded_trades[n / 4].ts_exchange.0 + margin),
            Ts(recorded_trades[3 * n / 4].ts_exchange.0 - margin),
        )
    } else {
        (
            recorded_trades[0].ts_exchange,
            recorded_trades[n - 1].ts_exchange,
        )
    };
    let want: BTreeMap<TradeKey, usize> = recorded_trades
        .iter()
        .filter(|t| t.ts_exchange.0 >= from.0 - margin && t.ts_exchange.0 <= to.0 + margin)
        .map(|t| (key(t), 1))
        .collect();
    assert!(
        want.len() >= at_least.min(5),
        "{} trades in the window",
        want.len()
    );

    let client = ck_sources::rest::RestClient::new(
        exchange,
        ck_sources::rest::RestSettings::new(rest.rest_url()),
    )
    .expect("client");
    let history = PagedBy5(
        ck_sources::history::for_exchange(exchange, std::sync::Arc::new(client))
            .expect("a history"),
    );
    assert!(ck_sources::history::History::by_time(&history));
    let (trades, update, stats) =
        repair_window_trades(exchange, std::sync::Arc::new(history), instrument, from, to).await;
    let mut got: BTreeMap<TradeKey, usize> = BTreeMap::new();
    for t in &trades {
        *got.entry(key(t)).or_insert(0) += 1;
    }
    assert_eq!(got, want, "every trade of the window, once");
    assert_eq!(stats.filled, 1);
    assert_eq!(
        update.state,
        ck_model::GapState::Filled,
        "{}",
        update.reason
    );
}
