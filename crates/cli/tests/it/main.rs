//! End-to-end tests: the pipeline on real recordings, and the binary itself.

mod alert_channels;
mod alerts;
mod backfill;
mod binance_us;
mod browser;
mod cli;
mod cluster;
mod crash;
mod cryptofeed_variants;
mod deploy;
mod disk_full;
mod exchange_candles;
mod gapfree;
mod kafka;
mod live;
mod migrate;
mod mock_exchange;
mod poll;
mod redis;
mod replay;
mod retention;
mod secrets;
mod stopping;
mod support;
mod venues;
mod watchdog;
