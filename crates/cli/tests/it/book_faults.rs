//! Book faults injected through the mocks (a skipped diff, a corrupted
//! checksum, a stale snapshot), each resynchronised with its incident
//! recorded; and a book alert rule firing on a live book.

use std::time::Duration;

use ck_mock::venue::VenueOptions;
use ck_model::{Exchange, Ts};

use crate::books::{Capture, cut, plain_models, settle, symbol_in, tape_messages};
use crate::support::eventually;

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
            if g.kind == ck_model::GapKind::Book {
                assert!(
                    g.reason.starts_with(ck_sources::book_recorder::BOOK_GAP),
                    "{}",
                    g.reason
                );
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
        async move { store.firings(10).await.is_ok_and(|f| !f.is_empty()) }
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
