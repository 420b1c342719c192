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

use crate::support::{eventually, settings};

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

    let mock = MockVenue::start(
        exchange,
        &messages,
        VenueOptions {
            drop_after: Some(mock_frames(&messages) / 2),
            ..VenueOptions::default()
        },
    )
    .await
    .expect("mock");
    let (protocol, _) = ck_sources::live::protocol_for(exchange, kraken_v1).expect("protocol");
    let dir = tempfile::tempdir().expect("dir");
    let settings = settings(dir.path());
    let store = ck_app::open_store(&settings).expect("store");
    let source = Source::Live {
        protocol,
        config: LiveConfig {
            ws_url: mock.ws_url(),
            instruments: instruments.clone(),
            backoff: BackoffPolicy {
                initial: Duration::from_millis(20),
                ..BackoffPolicy::default()
            },
            stale_after: Duration::from_secs(30),
            rest_url: None,
        },
    };
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
    assert!(
        stored_quotes <= recorded_quotes && stored_quotes * 10 >= recorded_quotes * 9,
        "{exchange}: {stored_quotes} of {recorded_quotes} quotes stored (identical quotes at one instant are one row)"
    );
}

fn mock_frames(messages: &[RawMessage]) -> usize {
    messages.iter().filter(|m| m.origin == Origin::Ws).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coinbase_advanced_live_capture_equals_its_recording() {
    live_capture_equals_recording(Exchange::Coinbase, "cryptofeed/COINBASE.jsonl.zst", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coinbase_exchange_live_capture_equals_its_recording() {
    live_capture_equals_recording(
        Exchange::CoinbaseExchange,
        "cryptofeed/COINBASE_EXCHANGE.ws.28.0",
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitfinex_live_capture_equals_its_recording() {
    live_capture_equals_recording(Exchange::Bitfinex, "cryptofeed/BITFINEX.jsonl.zst", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kraken_v1_live_capture_equals_its_recording() {
    live_capture_equals_recording(Exchange::Kraken, "cryptofeed/KRAKEN.jsonl.zst", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitstamp_live_capture_equals_its_recording() {
    live_capture_equals_recording(Exchange::Bitstamp, "cryptofeed/BITSTAMP.jsonl.zst", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okx_live_capture_equals_its_recording() {
    live_capture_equals_recording(Exchange::Okx, "cryptofeed/OKX.jsonl.zst", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bybit_live_capture_equals_its_recording() {
    live_capture_equals_recording(Exchange::Bybit, "cryptofeed/BYBIT.jsonl.zst", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binance_combined_streams_live_capture_equals_its_recording() {
    live_capture_equals_recording(Exchange::Binance, "cryptofeed/BINANCE.jsonl.zst", false).await;
}
