//! The web page in a real browser: headless Chromium against `candlekeep
//! demo` (live Binance from the mock) on a store that also holds the
//! cryptofeed recordings of five more venues, replayed first.
//!
//! It checks, from the page's DOM after its scripts ran, that the chart drew
//! stored candles and took live ones over the WebSocket, that the
//! comparison overlays four instruments across two exchanges, and that the
//! statistics table has a row per instrument; and saves a screenshot as
//! `target/ui-test/candlekeep.png`.
//!
//! Chromium must be installed (`apt-get install -y chromium`; `.ci/run`
//! does it), or named by `CK_TEST_CHROMIUM`.

use std::path::PathBuf;
use std::process::Command;

use crate::support::{Demo, http_get};

/// The Chromium binary, or a loud failure saying how to get one.
fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("CK_TEST_CHROMIUM") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "the browser test needs Chromium: `apt-get install -y chromium` (or set CK_TEST_CHROMIUM)"
    );
}

/// The value of `attr="..."` on the element with `id="id"` in `dom` (the
/// body when `id` is empty).
fn attribute(dom: &str, id: &str, attr: &str) -> Option<String> {
    let (at, tag_start) = if id.is_empty() {
        let at = dom.find("<body")?;
        (at, at)
    } else {
        let at = dom.find(&format!("id=\"{id}\""))?;
        (at, dom[..at].rfind('<')?)
    };
    let tag_end = at + dom[at..].find('>')?;
    let tag = &dom[tag_start..tag_end];
    let key = format!("{attr}=\"");
    let v = tag.find(&key)? + key.len();
    Some(tag[v..v + tag[v..].find('"')?].to_owned())
}

fn number(dom: &str, id: &str, attr: &str) -> u64 {
    attribute(dom, id, attr)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("#{id} has no numeric {attr} in the page"))
}

/// Chromium's run of `url` (its DOM after the scripts ran), saving a
/// screenshot to `screenshot`.
fn render(
    browser: &std::path::Path,
    url: &str,
    screenshot: &std::path::Path,
) -> std::process::Output {
    let profile = tempfile::tempdir().expect("profile");
    Command::new("timeout")
        .arg("120")
        .arg(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1400,1700",
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg("--dump-dom")
        .arg(url)
        .output()
        .expect("run chromium")
}

/// Where screenshots are kept: `target/ui-test`.
fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/ui-test");
    std::fs::create_dir_all(&dir).expect("artifact dir");
    dir
}

/// The book panel, against `candlekeep demo` with OKX's recording: its
/// books are captured live, and the page shows the figures, the depth
/// chart and the spread over time from `/api/v1/book`, `/book/stats` and
/// `/book/series`.
#[test]
fn the_page_draws_the_order_book() {
    let browser = chromium();
    let dir = tempfile::tempdir().expect("dir");
    let venues = tempfile::tempdir().expect("venues");
    std::fs::copy(
        ck_testkit::fixture("cryptofeed/OKX.jsonl.zst"),
        venues.path().join("OKX.jsonl.zst"),
    )
    .expect("copy the OKX recording");
    let recording = ck_testkit::fixture("hftbacktest/binance_spot_btcusdt_20240808.gz");
    let demo = Demo::start_with_venues(dir.path(), &recording, 20, venues.path());
    // Bounded wait until the OKX book has a few seconds of its series.
    let series = "/api/v1/book/series?exchange=okx&instrument=BTC-USDT";
    let mut rows = 0;
    for _ in 0..300 {
        let answer = http_get(&demo.api, series);
        rows = answer.matches("\"spread_bps\"").count();
        if rows >= 3 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(rows >= 3, "the OKX book's series grows: {rows} rows");
    let screenshot = artifacts().join("candlekeep-book.png");
    let _ = std::fs::remove_file(&screenshot);
    let url = format!(
        "http://{}/#exchange=okx&instrument=BTC-USDT&interval=1m",
        demo.api
    );
    let out = render(&browser, &url, &screenshot);
    let (status, stderr) = demo.stop();
    assert!(status.success(), "{stderr}");
    assert!(
        out.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dom = String::from_utf8_lossy(&out.stdout);
    assert_eq!(attribute(&dom, "", "data-ready").as_deref(), Some("true"));
    assert_eq!(
        attribute(&dom, "book-panel", "hidden"),
        None,
        "the book panel shows: {dom}"
    );
    assert!(
        dom.contains("okx BTC-USDT · live"),
        "the panel names the book"
    );
    assert!(number(&dom, "depth", "data-bids") >= 1, "bid depth drawn");
    assert!(number(&dom, "depth", "data-asks") >= 1, "ask depth drawn");
    let best = |attr| {
        attribute(&dom, "depth", attr)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("#depth {attr}"))
    };
    assert!(
        best("data-best-bid") < best("data-best-ask"),
        "bid below ask"
    );
    assert!(
        number(&dom, "spread", "data-points") >= 2,
        "the spread over time"
    );
    assert!(dom.contains("imbalance"), "the figures");
    let png = std::fs::read(&screenshot).expect("the screenshot is saved");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "a real picture"
    );
    eprintln!("screenshot: {}", screenshot.display());
}

#[test]
fn the_page_draws_live_candles_the_comparison_and_the_statistics() {
    let browser = chromium();
    let dir = tempfile::tempdir().expect("dir");
    let fixtures: Vec<PathBuf> = [
        "cryptofeed/COINBASE.jsonl.zst",
        "cryptofeed/BYBIT.jsonl.zst",
        "cryptofeed/BITFINEX.jsonl.zst",
        "cryptofeed/KRAKEN.jsonl.zst",
        "cryptofeed/OKX.jsonl.zst",
    ]
    .into_iter()
    .map(ck_testkit::fixture)
    .collect();
    let replayed = Command::new(env!("CARGO_BIN_EXE_candlekeep"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--log", "warn", "replay"])
        .args(&fixtures)
        .env_remove("CANDLEKEEP_CONFIG")
        .output()
        .expect("replay");
    assert!(
        replayed.status.success(),
        "{}",
        String::from_utf8_lossy(&replayed.stderr)
    );

    let recording = ck_testkit::fixture("hftbacktest/binance_spot_btcusdt_20240808.gz");
    // One alert rule, which the first live trade fires.
    let config = dir.path().join("alerts.toml");
    std::fs::write(
        &config,
        "[alerts]\nrules = [{ kind = \"price_above\", exchange = \"binance\", instrument = \"BTC-USDT\", level = \"1\" }]\n",
    )
    .expect("config");
    let demo = Demo::start_with_config(dir.path(), &recording, 20, Some(&config));
    // Bounded wait until the live Binance trades are stored, so that the
    // page opens on them.
    let mut with_data = String::new();
    for _ in 0..300 {
        with_data = http_get(&demo.api, "/api/v1/instruments?with_data=true");
        if with_data.contains("\"exchange\":\"binance\"") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        with_data.contains("\"exchange\":\"binance\""),
        "live data arrives: {with_data}"
    );
    let instruments = with_data.matches("\"last_trade_time\":\"").count();

    let screenshot = artifacts().join("candlekeep.png");
    let _ = std::fs::remove_file(&screenshot);
    let url = format!(
        "http://{}/#interval=1m&compare=coinbase:BTC-USD,coinbase:ETH-USD,bybit:BTC-USDT,bybit:ETH-USDT&cw=24h&sw=24h",
        demo.api
    );
    let out = render(&browser, &url, &screenshot);
    // What the API says of the chart's instrument, for the window the
    // page asked.
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    let query = attribute(&dom, "completeness", "data-query")
        .expect("the page's completeness query")
        .replace("&amp;", "&");
    let completeness = http_get(&demo.api, &format!("/api/v1/completeness?{query}"));
    let (status, stderr) = demo.stop();
    assert!(status.success(), "{stderr}");
    assert!(
        out.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    assert_eq!(
        attribute(&dom, "problem", "hidden").as_deref(),
        Some(""),
        "no problem shown: {dom}"
    );
    assert_eq!(
        attribute(&dom, "live", "class").as_deref(),
        Some("badge on")
    );
    // The chart opened on the newest instrument (live Binance) and drew
    // its stored candles, then took updates over the WebSocket.
    assert!(
        dom.contains("binance BTC-USDT · 1m"),
        "the chart's title names it"
    );
    assert!(number(&dom, "chart", "data-candles") >= 1, "candles drawn");
    assert!(number(&dom, "chart", "data-updates") >= 1, "live updates");
    // Four instruments on two exchanges, overlaid in percent.
    assert_eq!(number(&dom, "compare", "data-series"), 4);
    assert!(number(&dom, "compare", "data-points") >= 8);
    assert!(dom.contains("bybit:ETH-USDT "), "legend names each series");
    // A statistics row per instrument with data.
    assert_eq!(number(&dom, "stats", "data-rows"), instruments as u64);
    assert!(dom.contains("<td class=\"\">kraken:XMR-USD</td>"));
    // The alerts panel lists the firing.
    assert!(number(&dom, "firings", "data-rows") >= 1, "a firing listed");
    assert!(dom.contains("binance BTC-USDT above 1"), "the rule's name");
    // The status panel shows the live connector.
    assert!(dom.contains("state-connected"), "connector row");
    // Its completeness panel says what the API says of the same window,
    // unless a candle came between the two reads.
    let body = completeness.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let api: serde_json::Value = serde_json::from_str(body).expect("completeness json");
    let api_pct = api["coverage_pct"].as_f64().expect("coverage");
    let page_pct: f64 = attribute(&dom, "completeness", "data-coverage")
        .and_then(|v| v.parse().ok())
        .expect("the page's coverage");
    let page_counts = (
        number(&dom, "completeness", "data-candles"),
        number(&dom, "completeness", "data-expected"),
    );
    let api_counts = (
        api["candles"].as_u64().expect("candles"),
        api["expected"].as_u64().expect("expected"),
    );
    if page_counts == api_counts {
        assert!(
            (api_pct - page_pct).abs() < 0.01,
            "page {page_pct}% vs API {api_pct}% over the same candles"
        );
    } else {
        assert!(
            api_counts.0 >= page_counts.0 && api_counts.1 >= page_counts.1,
            "only time moving on tells them apart: page {page_counts:?}, API {api_counts:?}"
        );
    }
    // At 1,400 px every statistics column shows, none behind a scroll bar.
    assert_eq!(
        attribute(&dom, "stats", "data-clipped").as_deref(),
        Some("false")
    );
    assert_eq!(attribute(&dom, "", "data-ready").as_deref(), Some("true"));

    let png = std::fs::read(&screenshot).expect("the screenshot is saved");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "a real picture: {} bytes",
        png.len()
    );
    eprintln!(
        "screenshot: {}; page ready after {} ms",
        screenshot.display(),
        attribute(&dom, "", "data-ready-ms").unwrap_or_default()
    );
}
