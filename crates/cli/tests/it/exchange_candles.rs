//! Every venue's own candles, end to end through the command line: the
//! recording is replayed into a store (our candles), the exchange's 1m
//! candles are backfilled from the venue's REST mock (which computes them
//! from the same recorded trades, apart from candlekeep's aggregator, and
//! serves them in the venue's own shape and paging), and `verify` finds
//! them equal in every field the venue publishes. (The Kraken, Bybit and
//! Bitstamp recordings span less than a minute: one candle each.)
//! Every venue with candles is here; Binance's are in `backfill.rs`.

use ck_mock::RestMock;
use ck_model::{Exchange, Interval, Ts};

use crate::support::{busiest_instrument, candlekeep, recording, text};

/// Replays `fixture`, backfills `exchange`'s 1m candles over the busiest
/// instrument's trades from `rest` (pages of `page` candles where the
/// venue takes a size), and checks `verify`'s verdict. Returns how many
/// candles were compared.
async fn exchange_candles_verify(exchange: Exchange, fixture: &str, rest: &RestMock) -> usize {
    let messages = recording(fixture);
    let (instrument, trades) = busiest_instrument(&messages);
    let first = trades.first().expect("a trade").ts_exchange;
    let last = trades.last().expect("a trade").ts_exchange;
    let from = Interval::M1.bucket_start(first).to_string();
    let to = Ts(Interval::M1.bucket_start(last).0 + 60 * ck_model::NANOS_PER_SEC).to_string();
    let dir = tempfile::tempdir().expect("dir");
    let (d, url) = (dir.path().to_owned(), rest.rest_url());
    let file = ck_testkit::fixture(fixture).display().to_string();
    let (exchange_name, instrument_name) = (exchange.to_string(), instrument.to_string());
    // The commands block; the REST mock answers on this runtime meanwhile.
    let (replayed, backfilled, verified) = tokio::task::spawn_blocking(move || {
        let replayed = candlekeep(&d, &["replay", &file]);
        let common = [
            "--exchange",
            exchange_name.as_str(),
            "--instrument",
            instrument_name.as_str(),
            "--from",
            from.as_str(),
            "--to",
            to.as_str(),
        ];
        let mut backfill = vec!["backfill"];
        backfill.extend(common);
        backfill.extend(["--candles", "1m", "--rest-url", url.as_str()]);
        let backfilled = candlekeep(&d, &backfill);
        let mut verify = vec!["verify"];
        verify.extend(common);
        verify.extend(["--interval", "1m"]);
        (replayed, backfilled, candlekeep(&d, &verify))
    })
    .await
    .expect("commands");
    assert!(
        replayed.status.success(),
        "replay: {}",
        text(&replayed.stderr)
    );
    assert!(
        backfilled.status.success(),
        "backfill: {}",
        text(&backfilled.stderr)
    );
    let (out, err) = (text(&verified.stdout), text(&verified.stderr));
    assert!(
        verified.status.success(),
        "{exchange} {instrument}: verify found differences:\n{out}\n{err}"
    );
    let fields: Vec<&str> = exchange
        .candle_fields()
        .iter()
        .map(|f| f.as_str())
        .collect();
    assert!(
        err.contains(&format!("(compared: {},", fields.join(", "))),
        "{err}"
    );
    // "N candles on both sides: N equal; 0 differences".
    let summary = err
        .lines()
        .find(|l| l.contains("candles on both sides"))
        .unwrap_or_else(|| panic!("no summary in {err}"));
    let numbers: Vec<usize> = summary
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    assert_eq!(
        numbers.get(..3),
        Some(&[numbers[0], numbers[0], 0][..]),
        "{summary}"
    );
    numbers[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coinbase_exchange_candles_verify_against_ours() {
    let fixture = "cryptofeed/COINBASE_EXCHANGE.ws.28.0";
    let rest = ck_mock::coinbase_exchange::MockCoinbaseRest::start(&recording(fixture))
        .await
        .expect("rest mock");
    let compared = exchange_candles_verify(Exchange::CoinbaseExchange, fixture, &rest).await;
    assert!(compared >= 2, "{compared} candles compared");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitfinex_candles_verify_against_ours() {
    let fixture = "cryptofeed/BITFINEX.jsonl.zst";
    let rest = ck_mock::bitfinex::MockBitfinexRest::start(&recording(fixture), None)
        .await
        .expect("rest mock");
    let compared = exchange_candles_verify(Exchange::Bitfinex, fixture, &rest).await;
    assert!(compared >= 10, "{compared} candles compared");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kraken_candles_verify_against_ours_with_trade_counts() {
    let fixture = "cryptofeed/KRAKEN.jsonl.zst";
    let rest = ck_mock::kraken::MockKrakenRest::start(&recording(fixture), None)
        .await
        .expect("rest mock");
    let compared = exchange_candles_verify(Exchange::Kraken, fixture, &rest).await;
    assert!(compared >= 1, "{compared} candles compared");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bybit_candles_verify_against_ours_with_quote_volume() {
    let fixture = "cryptofeed/BYBIT.jsonl.zst";
    let rest = ck_mock::bybit::MockBybitRest::start(&recording(fixture), None)
        .await
        .expect("rest mock");
    let compared = exchange_candles_verify(Exchange::Bybit, fixture, &rest).await;
    assert!(compared >= 1, "{compared} candles compared");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitstamp_candles_verify_against_ours() {
    let fixture = "cryptofeed/BITSTAMP.jsonl.zst";
    let rest = ck_mock::bitstamp::MockBitstampRest::start(&recording(fixture), None)
        .await
        .expect("rest mock");
    let compared = exchange_candles_verify(Exchange::Bitstamp, fixture, &rest).await;
    assert!(compared >= 1, "{compared} candles compared");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okx_candles_verify_against_ours_with_quote_volume() {
    let fixture = "cryptofeed/OKX.jsonl.zst";
    let rest = ck_mock::okx::MockOkxRest::start(&recording(fixture), None)
        .await
        .expect("rest mock");
    let compared = exchange_candles_verify(Exchange::Okx, fixture, &rest).await;
    assert!(compared >= 1, "{compared} candles compared");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coinbase_advanced_candles_verify_against_ours() {
    let fixture = "cryptofeed/COINBASE.jsonl.zst";
    let rest =
        ck_mock::coinbase_advanced::MockCoinbaseAdvancedRest::start(&recording(fixture), None)
            .await
            .expect("rest mock");
    let compared = exchange_candles_verify(Exchange::Coinbase, fixture, &rest).await;
    assert!(compared >= 1, "{compared} candles compared");
}

/// Venues asked by time window (Bitfinex here) skip quiet minutes, so a
/// window can hold no candle while later ones do: the backfill pages on
/// through empty windows (pages of five minutes over two hours with a
/// candle every few minutes), stores exactly the candles one big request
/// returns, and they equal ours from the same trades.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candle_backfill_pages_through_quiet_windows() {
    use std::sync::Arc;

    use ck_app::backfill::{BackfillJob, BackfillKind};
    use ck_store::{CandleSource, RangeQuery};

    let exchange = Exchange::Bitfinex;
    let messages = recording("cryptofeed/BITFINEX.jsonl.zst");
    let rest = ck_mock::bitfinex::MockBitfinexRest::start(&messages, None)
        .await
        .expect("rest mock");
    let (instrument, trades) = busiest_instrument(&messages);
    let from = Interval::M1.bucket_start(trades.first().expect("trade").ts_exchange);
    let to = Ts(Interval::M1
        .bucket_start(trades.last().expect("trade").ts_exchange)
        .0
        + 60 * ck_model::NANOS_PER_SEC);
    let minutes = u64::try_from((to.0 - from.0) / (60 * ck_model::NANOS_PER_SEC)).expect("span");
    let client = ck_sources::rest::RestClient::new(
        exchange,
        ck_sources::rest::RestSettings::new(rest.rest_url()),
    )
    .expect("client");
    let full = ck_sources::history::for_exchange(exchange, Arc::new(client)).expect("history");
    let whole: Vec<ck_model::Candle> = full
        .candles(&instrument, Interval::M1, from, 1_000)
        .await
        .expect("one big request")
        .candles
        .into_iter()
        .filter(|c| c.open_time < to)
        .collect();

    let dir = tempfile::tempdir().expect("dir");
    let settings = crate::support::settings(dir.path());
    let store = ck_app::open_store(&settings).await.expect("store");
    let job = BackfillJob {
        exchange,
        instrument: instrument.clone(),
        from,
        to,
        kind: BackfillKind::Candles(Interval::M1),
    };
    let paged = Arc::new(crate::support::PagedBy5(full));
    let report = crate::backfill::run(&settings, store.clone(), vec![job], paged, None).await;
    let jobs = crate::backfill::job_reports(&report);
    assert!(jobs[0].done, "{jobs:?}");
    assert_eq!(
        jobs[0].pages,
        minutes.div_ceil(5),
        "every window asked once"
    );
    assert!(
        whole.len() >= 10 && (whole.len() as u64) < minutes / 2,
        "{} candles in {minutes} minutes: most minutes are quiet",
        whole.len()
    );

    let q = RangeQuery {
        exchange,
        instrument,
        from,
        to,
        limit: usize::MAX >> 1,
    };
    let stored = store
        .candles(&q, Interval::M1, CandleSource::Exchange)
        .await
        .expect("stored");
    let key = |c: &ck_model::Candle| (c.open_time, c.open, c.high, c.low, c.close, c.volume);
    assert_eq!(
        stored.iter().map(key).collect::<Vec<_>>(),
        whole.iter().map(key).collect::<Vec<_>>()
    );
    let ours: Vec<ck_model::Candle> =
        crate::support::expected_candles(&settings, &trades, Interval::M1)
            .into_values()
            .collect();
    let verdict = ck_app::verify::compare(&ours, &stored, exchange.candle_fields());
    assert_eq!(
        (verdict.compared, verdict.equal, verdict.differences.len()),
        (ours.len(), ours.len(), 0),
        "{:?}",
        verdict.differences
    );
}
