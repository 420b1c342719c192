//! `candlekeep mock-exchange --venue`: any venue on the ports asked for, its
//! recorded times moved to when the first client comes, with a collector
//! capturing from it as from the venue.

use std::time::{Duration, Instant};

use crate::stopping::Running;
use crate::support::{candlekeep, free_port, text};

#[test]
fn mock_exchange_serves_any_venue_on_chosen_ports_from_its_first_client() {
    let dir = tempfile::tempdir().expect("dir");
    let (ws, rest) = (free_port(), free_port());
    let (ws_addr, rest_addr) = (format!("127.0.0.1:{ws}"), format!("127.0.0.1:{rest}"));
    let mut mock = Running::start(
        &dir.path().join("mock"),
        None,
        &[
            "mock-exchange",
            "--venue",
            "okx",
            "--speed",
            "1",
            "--loop",
            "--listen",
            &ws_addr,
            "--rest-listen",
            &rest_addr,
        ],
    );
    let banner = mock.wait_for("times move to when the first client connects");
    assert!(
        banner.contains(&format!("ws://{ws_addr}")) && banner.contains("recorded 2022-05-13"),
        "{banner}"
    );
    // The first client comes late. The mock is a subprocess, so the time
    // cannot be paused: a real wait, which the recorded times must not lag.
    std::thread::sleep(Duration::from_secs(5));

    let config = dir.path().join("collector.toml");
    std::fs::write(
        &config,
        format!(
            "[[sources]]\nkind = \"live\"\nexchange = \"okx\"\ninstruments = [\"BTC-USDT\"]\n\
             ws_url = \"ws://{ws_addr}\"\nrest_url = \"http://{rest_addr}\"\n"
        ),
    )
    .expect("config");
    let data = dir.path().join("data");
    let api = format!("127.0.0.1:{}", free_port());
    let mut run = Running::start(&data, Some(&config), &["run", "--listen", &api]);
    run.wait_for("connected and subscribed");
    mock.wait_for("first client connected");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let body = crate::support::http_get(
            &api,
            "/api/v1/trades?exchange=okx&instrument=BTC-USDT&limit=1000",
        );
        if body.matches("\"trade_id\"").count() >= 10 {
            break;
        }
        assert!(Instant::now() < deadline, "no trades captured: {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, status, _) = run.terminate();
    assert!(status.success());
    let (_, status, _) = mock.terminate();
    assert!(status.success());

    let out = candlekeep(
        &data,
        &["trades", "--exchange", "okx", "--instrument", "BTC-USDT"],
    );
    let trades: serde_json::Value = serde_json::from_str(&text(&out.stdout)).expect("json");
    let trades = trades.as_array().expect("array");
    assert!(trades.len() >= 10, "{trades:?}");
    for t in trades {
        let at = |k: &str| nanos(t[k].as_str().expect("time")).expect("an RFC 3339 time");
        let lag = (at("received") - at("ts")).abs();
        assert!(
            // Without the move to the first client, every trade would lag
            // by the 5 s wait at least; 3.5 s leaves room for a busy machine.
            lag < 3_500_000_000,
            "a trade's time follows the first client, not the mock's start: {t}"
        );
    }
}

/// Nanoseconds since the epoch of an RFC 3339 time.
fn nanos(s: &str) -> Option<i64> {
    s.parse::<ck_model::Ts>().ok().map(|t| t.0)
}
