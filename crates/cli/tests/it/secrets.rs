//! Credentials planted in the configuration never show: not in `candlekeep
//! config`, not in logs, not in errors.

use crate::stopping::Running;
use crate::support::free_port;
use crate::support::text;

/// Every secret the configuration below plants.
const SECRETS: [&str; 8] = [
    "PGSECRET-1",
    "REDISSECRET-2",
    "NATSSECRET-3",
    "SLACKSECRET44",
    "TGSECRET-5",
    "WEBHOOKSECRET6",
    "HMACSECRET7",
    "APITOKEN-8",
];

fn assert_clean(what: &str, output: &str) {
    for secret in SECRETS {
        assert!(!output.contains(secret), "{what} shows {secret}:\n{output}");
    }
}

#[test]
fn planted_secrets_never_show_in_config_logs_or_errors() {
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let config = dir.path().join("candlekeep.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[redis]
url = "redis://:REDISSECRET-2@127.0.0.1:{port}/0"

[nats]
url = "nats://user:NATSSECRET-3@127.0.0.1:{port}"

[api]
token = "APITOKEN-8"

[[alerts.channels]]
name = "slack"
kind = "slack"
url = "https://hooks.slack.com/services/T000/B000/SLACKSECRET44"

[[alerts.channels]]
name = "telegram"
kind = "telegram"
url = "https://api.telegram.org/bot123456:TGSECRET-5/sendMessage"
chat_id = "42"

[[alerts.channels]]
name = "hook"
kind = "webhook"
url = "http://127.0.0.1:{port}/hook?key=WEBHOOKSECRET6"
secret = "HMACSECRET7"

[[sources]]
kind = "binance"
instruments = ["BTC-USDT"]
ws_url = "ws://127.0.0.1:{port}"
rest_url = ""
"#
        ),
    )
    .expect("config");
    let store = format!("postgres://candle:PGSECRET-1@127.0.0.1:{port}/candlekeep");
    let candlekeep = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_candlekeep"))
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.path())
            .args(args)
            .env_remove("CANDLEKEEP_CONFIG")
            .output()
            .expect("run candlekeep")
    };

    let out = candlekeep(&["--store", &store, "config"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    assert_clean("config", &printed);
    assert!(
        printed.contains("postgres://candle:***@127.0.0.1")
            && printed.contains("redis://:***@127.0.0.1")
            && printed.contains("nats://user:***@127.0.0.1")
            && printed.contains("https://hooks.slack.com/***"),
        "where each server is stays: {printed}"
    );

    // An error about the store (unreachable), at debug level.
    let out = candlekeep(&["--store", &store, "--log", "debug", "instruments"]);
    assert!(!out.status.success());
    assert_clean("a store error", &text(&out.stderr));

    // A run whose Redis sink and connector fail, logging at debug level.
    let mut run = Running::start(
        dir.path(),
        Some(&config),
        &["--log", "debug", "run", "--listen", "127.0.0.1:0"],
    );
    run.wait_for("could not connect; retrying");
    let (_, _, stderr) = run.terminate();
    assert!(stderr.contains("redis://:***@127.0.0.1"), "{stderr}");
    assert_clean("the log of a run", &stderr);
}
