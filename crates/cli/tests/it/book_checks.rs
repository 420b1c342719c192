//! Checks of what candlekeep serves of a captured book, each against the
//! API's own answer: `candlekeep book`, the Tardis export, the stats, the
//! `book_top` files and a WebSocket follower.

use std::path::Path;

use ck_model::{Decimal, Exchange, Instrument, Ts};

use crate::books::{Api, Plain, cut, top};

/// `candlekeep book` prints what the API answers, in JSON and CSV.
pub(crate) async fn cli_prints_the_api_book(
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

/// `candlekeep export --kind book --format tardis` from `from` to just
/// after `at`, replayed the way Tardis says (a run of snapshot rows resets
/// the book, an amount of zero removes a level), is the book the API gives
/// at `at`.
pub(crate) async fn tardis_export_replays_to_the_api_book(
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
    export_book(
        data_dir,
        "tardis",
        (exchange, i),
        (&from.to_string(), at),
        &out,
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

/// `candlekeep export --format hftbacktest` up to `at`, replayed by
/// hftbacktest itself (its `HashMapMarketDepthBacktest`, from PyPI),
/// leaves the API's book at `at` as its local book; each of its two
/// processors sees every event once, in its own time order.
pub(crate) async fn hftbacktest_export_replays_to_the_api_book(
    data_dir: &Path,
    exchange: Exchange,
    i: &Instrument,
    at: Ts,
    api: &Api,
) {
    let python = ck_testkit::python_with(
        &["hftbacktest", "numpy"],
        "replays a book export with hftbacktest",
    );
    let Some((_, expected)) = api.book(exchange, i, Some(at)).await else {
        panic!("{exchange} {i}: no book at {at}")
    };
    let out = data_dir.join("book.npz");
    export_book(
        data_dir,
        "hftbacktest",
        (exchange, i),
        ("2000-01-01", at),
        &out,
    );
    // Ticks and lots as fine as the book's decimals.
    let scale = |sizes: bool| {
        expected
            .iter()
            .map(|(k, v)| if sizes { v.scale() } else { k.1.scale() })
            .max()
            .unwrap_or(0)
    };
    let (price_scale, size_scale) = (scale(false), scale(true));
    let unit = |s: u8| format!("1e-{s}");
    let script = ck_testkit::project_root().join("crates/cli/tests/it/py/hftbacktest_book.py");
    let replay = std::process::Command::new(python)
        .arg(script)
        .arg(&out)
        .arg(unit(price_scale))
        .arg(unit(size_scale))
        .output()
        .expect("python");
    assert!(
        replay.status.success(),
        "hftbacktest: {}",
        String::from_utf8_lossy(&replay.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&replay.stdout).expect("the script's JSON");
    assert!(
        v["exch_in_order"].as_bool().expect("flag"),
        "{exchange} {i}: {v}"
    );
    assert!(
        v["local_in_order"].as_bool().expect("flag"),
        "{exchange} {i}"
    );
    assert_eq!(
        v["exch_events"], v["local_events"],
        "{exchange} {i}: each processor sees every event"
    );
    assert!(
        v["clears"].as_u64().expect("clears") >= 1,
        "a part begins with a clear"
    );
    // From the year 2000: every stored trade up to `at` by the venue's
    // time (the mocks replay the recordings' own) comes with the book.
    let path = format!(
        "/api/v1/trades?exchange={exchange}&instrument={i}&from=2000-01-01&to={}&limit=1000000",
        Ts(at.0 + 1)
    );
    let stored = get_json_or_404(api, path)
        .await
        .map_or(0, |rows| rows.as_array().expect("trades").len() as u64);
    assert_eq!(
        v["trades"].as_u64(),
        Some(stored),
        "{exchange} {i}: every stored trade"
    );
    // hftbacktest's f64 levels, written back at the book's scales.
    let mut book = Plain::new();
    for (side, bid) in [("bids", true), ("asks", false)] {
        for l in v[side].as_array().expect("levels") {
            let f = |x: &serde_json::Value, s: u8| {
                let x: f64 = x.as_str().expect("text").parse().expect("f64");
                Decimal::parse(&format!("{x:.*}", usize::from(s))).expect("decimal")
            };
            book.insert((bid, f(&l[0], price_scale)), f(&l[1], size_scale));
        }
    }
    assert_eq!(
        cut(book),
        expected,
        "{exchange} {i}: hftbacktest's book at the end of the export ({} events, {} trades)",
        v["events"],
        v["trades"]
    );
}

/// `candlekeep export --kind book --format <format>` of `[from, at]` to
/// `out`, which must succeed.
fn export_book(
    data_dir: &Path,
    format: &str,
    (exchange, i): (Exchange, &Instrument),
    (from, at): (&str, Ts),
    out: &Path,
) {
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_candlekeep"))
        .arg("--data-dir")
        .arg(data_dir)
        .args([
            "--log", "warn", "export", "--kind", "book", "--format", format,
        ])
        .args(["--exchange", exchange.as_str(), "--instrument", i.as_str()])
        .args(["--from", from, "--to", &Ts(at.0 + 1).to_string()])
        .arg("--out")
        .arg(out)
        .env_remove("CANDLEKEEP_CONFIG")
        .output()
        .expect("candlekeep export");
    assert!(
        run.status.success(),
        "{format}: {}",
        String::from_utf8_lossy(&run.stderr)
    );
}

/// `GET /api/v1/book/stats` at `at` is the API's book at `at` at a
/// glance ([`glance_is`]).
pub(crate) async fn stats_are_the_book_at_a_glance(
    exchange: Exchange,
    i: &Instrument,
    at: Ts,
    api: &Api,
) {
    let (_, book) = api.book(exchange, i, Some(at)).await.expect("a book then");
    let v = get_json(
        api,
        format!("/api/v1/book/stats?exchange={exchange}&instrument={i}&at={at}"),
    )
    .await;
    glance_is(&v, &book, &format!("{exchange} {i} at {at}"));
}

/// `GET path`'s JSON, which must be a 200.
pub(crate) async fn get_json(api: &Api, path: String) -> serde_json::Value {
    let what = path.clone();
    get_json_or_404(api, path)
        .await
        .unwrap_or_else(|| panic!("{what}: 404"))
}

/// `GET path`'s JSON for a 200, `None` for a 404; anything else fails.
async fn get_json_or_404(api: &Api, path: String) -> Option<serde_json::Value> {
    let addr = api.addr.clone();
    let response = tokio::task::spawn_blocking(move || crate::support::http_get(&addr, &path))
        .await
        .expect("join");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP answer");
    if head.starts_with("HTTP/1.1 404") {
        return None;
    }
    assert!(head.starts_with("HTTP/1.1 200"), "{head}\n{body}");
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        crate::books::dechunk(body)
    } else {
        body.to_owned()
    };
    Some(serde_json::from_str(&body).expect("JSON"))
}

/// `v` (a stats answer or a row of the series) is `book` at a glance,
/// recomputed here in exact decimals: best bid and ask, mid, spread, and
/// the depth within 10, 50 and 100 bps of the mid each side.
fn glance_is(v: &serde_json::Value, book: &Plain, what: &str) {
    let d = |x: &serde_json::Value| {
        Decimal::parse(x.as_str().expect("a decimal string")).expect("decimal")
    };
    let bid = book.keys().filter(|k| k.0).map(|k| k.1).max();
    let ask = book.keys().filter(|k| !k.0).map(|k| k.1).min();
    let (Some(bid), Some(ask)) = (bid, ask) else {
        assert!(v["mid"].is_null(), "{what}: {v}");
        return;
    };
    assert_eq!(d(&v["best_bid"]), bid, "{what}");
    assert_eq!(d(&v["best_ask"]), ask, "{what}");
    assert_eq!(
        d(&v["spread"]),
        ask.checked_sub(bid).expect("spread"),
        "{what}"
    );
    let two_mids = bid.checked_add(ask).expect("sum");
    assert_eq!(
        d(&v["mid"]).checked_add(d(&v["mid"])).expect("twice"),
        two_mids,
        "{what}: the mid, exactly"
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
            "{what}: bid depth within {band} bps"
        );
        assert_eq!(
            d(&v["ask_depth"][k]),
            sum(false),
            "{what}: ask depth within {band} bps"
        );
    }
    let imbalance = v["imbalance"].as_f64().expect("imbalance");
    assert!((-1.0..=1.0).contains(&imbalance), "{what}: {imbalance}");
}

/// `GET /api/v1/book/series` over `[from, to)` has a row at each instant
/// of the cadence ([`crate::books::STATS_EVERY_MS`]) at which the API
/// knows a two-sided book, and none at others; each row is that book at a
/// glance. Returns the rows.
pub(crate) async fn series_is_the_book_each_second(
    exchange: Exchange,
    i: &Instrument,
    (from, to): (Ts, Ts),
    api: &Api,
) -> Vec<serde_json::Value> {
    const EVERY: i64 = crate::books::STATS_EVERY_MS as i64 * 1_000_000;
    let v = get_json(
        api,
        format!(
            "/api/v1/book/series?exchange={exchange}&instrument={i}&from={from}&to={to}&limit=1000000"
        ),
    )
    .await;
    assert!(v["interval"].is_null(), "every row: {}", v["interval"]);
    let rows = v["series"].as_array().expect("series").clone();
    let time = |r: &serde_json::Value| Ts::parse(r["time"].as_str().expect("time")).expect("time");
    let mut second = from.0.div_euclid(EVERY) * EVERY;
    if second < from.0 {
        second += EVERY;
    }
    let mut known = 0;
    while second < to.0 {
        let at = Ts(second);
        let row = rows.iter().find(|r| time(r) == at);
        let two_sided = api
            .book(exchange, i, Some(at))
            .await
            .filter(|(_, b)| b.keys().any(|k| k.0) && b.keys().any(|k| !k.0));
        match (row, two_sided) {
            (Some(row), Some((_, book))) => {
                glance_is(row, &book, &format!("{exchange} {i}: the series at {at}"));
                known += 1;
            }
            (None, None) => {}
            (row, book) => panic!("{exchange} {i} at {at}: row {row:?}, book {book:?}"),
        }
        second += EVERY;
    }
    assert_eq!(
        known,
        rows.len(),
        "{exchange} {i}: a row only at the cadence"
    );
    rows
}

/// The `book_top` files (the best 25 a side, every second) hold, at each
/// of their times, the book the API rebuilds there, cut to 25.
pub(crate) async fn tops_are_the_book_at_their_time(
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

/// Follows one book over `/api/v1/ws` (`channel` `book`, depth 10) until
/// `stop`: its view after applying every message, checked on the way
/// (`sequence` one more each time, a snapshot first).
pub(crate) async fn follow_book(
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
