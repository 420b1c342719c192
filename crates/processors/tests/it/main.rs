//! ck-processors integration tests on real recorded data.

mod binance_klines;
