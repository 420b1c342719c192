//! `candlekeep replay --books`: the order books of real recordings
//! (cryptofeed's v3 JSON lines, its v1 text pair, hftbacktest's Binance
//! streams) rebuilt through the live engine into the archive's book files,
//! then checked at instants spread over each recording against the plain
//! model of the tests ([`crate::books::plain_models`]) applied to the same
//! messages.

use std::path::PathBuf;
use std::process::Command;

use ck_model::{Exchange, Instrument, Ts};
use ck_sources::recordings::Recording;

use crate::books::{Plain, cut, decimal, plain_models};

/// Replays `fixtures` with `--books` into a fresh data directory and checks
/// its books.
fn replayed_books_equal_their_messages(exchange: Exchange, fixtures: &[&str]) {
    let dir = tempfile::tempdir().expect("dir");
    let files: Vec<PathBuf> = fixtures.iter().map(|f| ck_testkit::fixture(f)).collect();
    let run = Command::new(env!("CARGO_BIN_EXE_candlekeep"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--log", "warn", "replay", "--books"])
        .args(&files)
        .env_remove("CANDLEKEEP_CONFIG")
        .output()
        .expect("candlekeep replay");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(
        stderr.contains(" 0 incidents"),
        "{exchange}: every checksum and sequence rule held: {stderr}"
    );

    let messages: Vec<ck_bus::RawMessage> = files
        .iter()
        .flat_map(|f| {
            Recording::open(f)
                .expect("recording")
                .filter_map(Result::ok)
                .collect::<Vec<_>>()
        })
        .collect();
    // Recordings' receive times go back now and then (a REST answer
    // stamped after frames that came behind it). The keeper keeps a book's
    // times from going back; the model reads in file order up to the first
    // later time. They agree at the instants that cut the recording in
    // two: every message before at or before it, every one after later.
    let n = messages.len();
    let mut after_min = vec![Ts(i64::MAX); n + 1];
    for k in (0..n).rev() {
        after_min[k] = after_min[k + 1].min(messages[k].ts_received);
    }
    let mut cuts = Vec::new();
    let mut before_max = Ts(i64::MIN);
    for k in 0..n {
        before_max = before_max.max(messages[k].ts_received);
        if before_max < after_min[k + 1] {
            cuts.push(before_max);
        }
    }
    assert!(cuts.len() >= 10, "{exchange}: {} clean cuts", cuts.len());
    let instants: Vec<Ts> = (1..=10).map(|k| cuts[(cuts.len() - 1) * k / 10]).collect();
    let models = plain_models(exchange, &messages, instants.clone());
    let last = instants[instants.len() - 1];
    let venue = ck_sources::venues::venue(exchange).expect("venue");
    let protocols = [(venue.live)(None).0, (venue.live)(Some("v1")).0];
    let symbol_of = |i: &Instrument| {
        protocols.iter().find_map(|p| {
            let s = p.book_symbol(i);
            models[&last]
                .keys()
                .find(|k| k.eq_ignore_ascii_case(&s))
                .cloned()
        })
    };
    let root = dir.path().join("archive");
    let mut compared = 0;
    let mut books = 0;
    for i in ck_sources::normalize::traded_instruments(&messages) {
        let Some(symbol) = symbol_of(&i) else {
            continue;
        };
        books += 1;
        if books > 4 {
            break;
        }
        for &at in &instants {
            let plain = models[&at].get(&symbol).cloned().map(cut);
            let archived = ck_archive::books::archived_book_at(&root, exchange, &i, at)
                .expect("the archive")
                .map(|(book, _)| {
                    let mut p = Plain::new();
                    for side in [ck_book::BookSide::Bid, ck_book::BookSide::Ask] {
                        for l in book.levels(side) {
                            p.insert(
                                (side == ck_book::BookSide::Bid, decimal(l.price)),
                                decimal(l.size),
                            );
                        }
                    }
                    cut(p)
                });
            assert_eq!(archived, plain, "{exchange} {i} at {at}: the replayed book");
            compared += usize::from(plain.is_some());
        }
    }
    assert!(compared >= 5, "{exchange}: {compared} books compared");
}

macro_rules! replay_tests {
    ($($name:ident: $exchange:expr, [$($fixture:literal),+];)+) => {$(
        #[test]
        fn $name() {
            replayed_books_equal_their_messages($exchange, &[$($fixture),+]);
        }
    )+};
}

replay_tests! {
    okx_replayed_books_equal_their_messages: Exchange::Okx, ["cryptofeed/OKX.jsonl.zst"];
    kraken_v1_replayed_books_equal_their_messages: Exchange::Kraken, ["cryptofeed/KRAKEN.jsonl.zst"];
    binance_replayed_books_equal_their_messages: Exchange::Binance, ["cryptofeed/BINANCE.jsonl.zst"];
    bitfinex_replayed_books_equal_their_messages: Exchange::Bitfinex, ["cryptofeed/BITFINEX.jsonl.zst"];
    coinbase_advanced_replayed_books_equal_their_messages: Exchange::Coinbase, ["cryptofeed/COINBASE.jsonl.zst"];
    bybit_replayed_books_equal_their_messages: Exchange::Bybit, ["cryptofeed/BYBIT.jsonl.zst"];
    bitstamp_replayed_books_equal_their_messages: Exchange::Bitstamp, ["cryptofeed/BITSTAMP.jsonl.zst"];
    coinbase_exchange_text_pair_replayed_books_equal_their_messages: Exchange::CoinbaseExchange,
        ["cryptofeed/COINBASE_EXCHANGE.0", "cryptofeed/COINBASE_EXCHANGE.ws.28.0"];
    hftbacktest_binance_replayed_books_equal_their_messages: Exchange::Binance,
        ["hftbacktest/binance_spot_btcusdt_20240808.gz"];
}
