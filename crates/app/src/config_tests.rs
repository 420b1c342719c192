//! Tests of the configuration (`config.rs`).

use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn defaults_are_valid() {
    let c = AppConfig::load(None, env(&[])).expect("defaults");
    let s = c.settings().expect("settings");
    assert_eq!(
        s.store,
        StoreLocation::Sqlite(PathBuf::from("./data/candlekeep.sqlite"))
    );
    assert_eq!(s.aggregator.intervals.len(), 15);
    assert_eq!(s.durability, Durability::Full);
}

#[test]
fn the_api_token_variable_sets_the_token_and_is_never_printed() {
    let c = AppConfig::load(None, env(&[("CANDLEKEEP_API_TOKEN", "s3cret")])).expect("load");
    assert_eq!(c.api.token.as_deref(), Some("s3cret"));
    assert!(!c.to_toml().expect("toml").contains("s3cret"));
}

#[test]
fn environment_overrides_file() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[store]\ndurability = \"full\"\n[candles]\ngrace_ms = 1000\n",
    )
    .expect("write");
    let c = AppConfig::load(
        Some(&path),
        env(&[
            ("CANDLEKEEP_STORE__DURABILITY", "normal"),
            ("CANDLEKEEP_CANDLES__GRACE_MS", "5000"),
            ("CANDLEKEEP_DATA_DIR", "/tmp/x"),
            ("UNRELATED", "1"),
        ]),
    )
    .expect("load");
    assert_eq!(c.store.durability, DurabilityConfig::Normal);
    assert_eq!(c.candles.grace_ms, 5000);
    assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
}

#[test]
fn bad_keys_and_values_are_refused_clearly() {
    let cases = [
        (
            vec![("CANDLEKEEP_STORE__COLOUR", "blue")],
            "unknown field `colour`",
        ),
        (
            vec![("CANDLEKEEP_CANDLES__INTERVALS", "[\"1m\", \"7m\"]")],
            "unknown interval `7m`",
        ),
        (
            vec![("CANDLEKEEP_CANDLES__EMPTY_INTERVALS__BINANSE", "flat")],
            "unknown exchange `binanse`",
        ),
        (
            vec![("CANDLEKEEP_STORE__URL", "mysql://x")],
            "`mysql://x` is not a store URL",
        ),
        (vec![("CANDLEKEEP_STORE__URL", "sqlite:")], "needs a path"),
    ];
    for (vars, expected) in cases {
        let err = AppConfig::load(None, env(&vars))
            .expect_err(expected)
            .to_string();
        assert!(err.contains(expected), "{err}");
    }
}

#[test]
fn every_venue_is_a_source_kind() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("c.toml");
    let mut text = String::new();
    for kind in [
        "coinbase",
        "coinbase_exchange",
        "bitfinex",
        "bitstamp",
        "okx",
        "bybit",
    ] {
        text.push_str(&format!(
            "[[sources]]\nkind = \"{kind}\"\ninstruments = [\"BTC-USD\"]\n\n"
        ));
    }
    text.push_str("[[sources]]\nkind = \"kraken\"\ninstruments = [\"BTC-USD\"]\napi = \"v1\"\n");
    std::fs::write(&path, &text).expect("write");
    let c = AppConfig::load(Some(&path), env(&[])).expect("valid");
    let venues: Vec<_> = c
        .sources
        .iter()
        .filter_map(|s| s.venue().map(|v| v.0))
        .collect();
    assert_eq!(venues.len(), 7, "{venues:?}");
    std::fs::write(&path, text.replace("api = \"v1\"", "api = \"v3\"")).expect("write");
    let err = AppConfig::load(Some(&path), env(&[]))
        .expect_err("bad api")
        .to_string();
    assert!(err.contains("api `v3`"), "{err}");
}

#[test]
fn store_urls_name_sqlite_or_postgres() {
    let c = AppConfig::load(
        None,
        env(&[("CANDLEKEEP_STORE__URL", "postgres://ck:secret@db:5432/ck")]),
    )
    .expect("load");
    let s = c.settings().expect("settings");
    assert_eq!(
        s.store,
        StoreLocation::Postgres("postgres://ck:secret@db:5432/ck".into())
    );
    assert_eq!(
        s.store.to_string(),
        "postgres://db:5432/ck",
        "shown without the password"
    );
}

#[test]
fn shipped_configs_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
    for name in ["example.toml", "replay-demo.toml", "mock-demo.toml"] {
        let c = AppConfig::load(Some(&dir.join(name)), env(&[]))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(c.to_toml().is_ok(), "{name}");
    }
}

#[test]
fn printed_config_reloads_to_the_same() {
    let c =
        AppConfig::load(None, env(&[("CANDLEKEEP_CANDLES__LATENESS_SECS", "60")])).expect("load");
    let text = c.to_toml().expect("toml");
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("c.toml");
    std::fs::write(&path, &text).expect("write");
    let back = AppConfig::load(Some(&path), env(&[])).expect("reload");
    assert_eq!(back.to_toml().expect("toml"), text);
}

/// `kind = "live"` takes any venue by `exchange`; the per-venue kinds stay
/// as aliases; a live source without a venue, or naming another one than its
/// kind, is refused with what to write.
#[test]
fn live_sources_name_their_venue() {
    let load = |toml: &str| {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, toml).expect("write");
        AppConfig::load(Some(&path), env(&[]))
    };
    for exchange in ck_model::Exchange::ALL {
        let c = load(&format!(
            "[[sources]]\nkind = \"live\"\nexchange = \"{exchange}\"\ninstruments = [\"BTC-USDT\"]\n"
        ))
        .unwrap_or_else(|e| panic!("{exchange}: {e}"));
        assert_eq!(c.sources[0].venue().map(|(e, _)| e), Some(exchange));
    }
    let alias = load("[[sources]]\nkind = \"okx\"\ninstruments = [\"BTC-USDT\"]\n").expect("alias");
    assert_eq!(
        alias.sources[0].venue().map(|(e, _)| e),
        Some(ck_model::Exchange::Okx)
    );
    let missing =
        load("[[sources]]\nkind = \"live\"\ninstruments = [\"BTC-USDT\"]\n").expect_err("no venue");
    assert!(
        missing.to_string().contains("needs `exchange`") && missing.to_string().contains("bybit"),
        "{missing}"
    );
    let other =
        load("[[sources]]\nkind = \"okx\"\nexchange = \"bybit\"\ninstruments = [\"BTC-USDT\"]\n")
            .expect_err("two venues");
    assert!(other.to_string().contains("kind = \"live\""), "{other}");
}

#[test]
fn the_sqlite_cache_is_set_from_the_environment_and_zero_is_refused() {
    let c =
        AppConfig::load(None, env(&[("CANDLEKEEP_STORE__SQLITE_CACHE_MIB", "8")])).expect("load");
    assert_eq!(c.store.sqlite_cache_mib, 8);
    let zero = AppConfig::load(None, env(&[("CANDLEKEEP_STORE__SQLITE_CACHE_MIB", "0")]))
        .expect_err("zero");
    assert!(zero.to_string().contains("sqlite_cache_mib"), "{zero}");
}

/// `books = true` on a live source gives it book capture at its depths;
/// a depth for an instrument it does not capture is refused, as are
/// `[books]` values out of range.
#[test]
fn live_sources_capture_books_at_their_depths() {
    let load = |toml: &str| {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, toml).expect("write");
        AppConfig::load(Some(&path), env(&[]))
    };
    let c = load(
        "[books]\nsnapshot_every_secs = 60\n[[sources]]\nkind = \"live\"\nexchange = \"okx\"\ninstruments = [\"BTC-USDT\", \"ETH-USDT\"]\nbooks = true\nbook_depth = 50\nbook_depths = { \"BTC-USDT\" = 400 }\n",
    )
    .expect("books");
    let sources = crate::sources::from_config(&c).expect("sources");
    let crate::pipeline::Source::Live { config, .. } = &sources[0] else {
        panic!("a live source")
    };
    let books = config.books.as_ref().expect("books captured");
    assert_eq!(
        books.depth_of(&ck_model::Instrument::new("BTC", "USDT")),
        400
    );
    assert_eq!(
        books.depth_of(&ck_model::Instrument::new("ETH", "USDT")),
        50
    );
    assert_eq!(books.snapshot_every_ns, 60_000_000_000);
    // Off unless asked.
    let c =
        load("[[sources]]\nkind = \"live\"\nexchange = \"okx\"\ninstruments = [\"BTC-USDT\"]\n")
            .expect("plain");
    let sources = crate::sources::from_config(&c).expect("sources");
    let crate::pipeline::Source::Live { config, .. } = &sources[0] else {
        panic!("a live source")
    };
    assert!(config.books.is_none());
    let c = load(
        "[[sources]]\nkind = \"live\"\nexchange = \"okx\"\ninstruments = [\"BTC-USDT\"]\nbooks = true\nbook_depths = { \"SOL-USDT\" = 5 }\n",
    )
    .expect("parsed");
    let err = crate::sources::from_config(&c).expect_err("an instrument not captured");
    assert!(err.to_string().contains("SOL-USDT"), "{err}");
    let err = load("[books]\npart_secs = 100000\n").expect_err("a part over a day");
    assert!(err.to_string().contains("books.part_secs"), "{err}");
    let err = load("[books]\npart_secs = 86400\nstats_every_ms = 1\n")
        .expect_err("86.4 million samples a part");
    assert!(err.to_string().contains("books.stats_every_ms"), "{err}");
    let ok = load("[books]\npart_secs = 600\nstats_every_ms = 1\n").expect("600,000 a part");
    assert_eq!(ok.books.stats_every_ms, 1);
}
