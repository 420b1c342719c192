//! End-to-end tests: the pipeline on real recordings, and the binary itself.

mod cli;
mod live;
mod replay;
