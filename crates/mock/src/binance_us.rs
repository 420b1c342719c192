//! The Binance.US mock: Binance's ([`crate::binance::MockBinance`]) on
//! Binance.US's terms: `historicalTrades` wants an API key
//! (`X-MBX-APIKEY`), as Binance.US's `MARKET_DATA` endpoints do.
//!
//! No recording of Binance.US is at hand: its demo replays the Binance
//! recording (hftbacktest's BTCUSDT, an instrument Binance.US lists too)
//! as Binance.US, and says so.

use futures_util::future::BoxFuture;

use crate::venues::{DemoRecording, MockSpec, MockStart, RunningMock};

fn start(start: MockStart<'_>) -> BoxFuture<'_, std::io::Result<RunningMock>> {
    Box::pin(crate::binance::start_family(start, true))
}

/// Binance.US in the mock registry ([`crate::venues`]).
pub const SPEC: MockSpec = MockSpec {
    exchange: ck_model::Exchange::BinanceUs,
    wire: crate::binance::WIRE,
    rest: None,
    custom_start: Some(start),
    demo: Some(DemoRecording {
        file: "binance_spot_btcusdt_20240808.gz",
        api: None,
        note: Some("Binance's BTCUSDT recording, replayed as Binance.US"),
    }),
};
