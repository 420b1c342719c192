//! The parse stage shared by live capture and replay: raw messages in,
//! normalized events out, every failure counted and reported.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use ck_bus::metrics::{self, Counter};
use ck_bus::{Event, IngestError, RawMessage};
use ck_model::Exchange;

use crate::parse::{Parsed, Parser, parser_for};

/// Counts of what the stage has seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NormalizeStats {
    /// Messages handled.
    pub messages: u64,
    /// Events produced.
    pub events: u64,
    /// Messages understood and deliberately not used (book diffs, acks).
    pub ignored: u64,
    /// Messages that failed to parse.
    pub errors: u64,
    /// Messages of exchanges without a parser yet.
    pub unsupported: u64,
}

struct Meters {
    messages: Arc<Counter>,
    ignored: Arc<Counter>,
    errors: Arc<Counter>,
}

impl Meters {
    fn new(exchange: Exchange) -> Meters {
        Meters {
            messages: metrics::counter(&format!(
                "candlekeep_messages_total{{exchange=\"{exchange}\"}}"
            )),
            ignored: metrics::counter(&format!(
                "candlekeep_messages_ignored_total{{exchange=\"{exchange}\"}}"
            )),
            errors: metrics::counter(&format!(
                "candlekeep_ingest_errors_total{{exchange=\"{exchange}\"}}"
            )),
        }
    }
}

/// One parser per exchange, created on first use.
#[derive(Default)]
pub struct Normalizer {
    parsers: HashMap<Exchange, (Box<dyn Parser>, Meters)>,
    unsupported: HashMap<Exchange, u64>,
    stats: NormalizeStats,
}

/// The instruments whose trades or quotes the WebSocket frames of
/// `messages` carry, by their venue's parser, sorted, each once (what a
/// mock of a recording can serve live).
#[must_use]
pub fn traded_instruments<M: std::borrow::Borrow<RawMessage>>(
    messages: impl IntoIterator<Item = M>,
) -> Vec<ck_model::Instrument> {
    let mut normalizer = Normalizer::new();
    let mut events = Vec::new();
    for m in messages {
        let m = m.borrow();
        if m.origin == ck_bus::Origin::Ws {
            normalizer.handle(m, &|| "recording".to_owned(), &mut events);
        }
    }
    let mut instruments: Vec<ck_model::Instrument> = events
        .into_iter()
        .filter_map(|e| match e {
            Event::Trade(t) => Some(t.instrument),
            Event::Quote(q) => Some(q.instrument),
            _ => None,
        })
        .collect();
    instruments.sort();
    instruments.dedup();
    instruments
}

impl Normalizer {
    /// An empty stage.
    #[must_use]
    pub fn new() -> Normalizer {
        Normalizer::default()
    }

    /// The counts so far.
    #[must_use]
    pub fn stats(&self) -> NormalizeStats {
        self.stats
    }

    /// Parses `msg`. Events go to `out`; a failure becomes an
    /// [`Event::IngestError`] naming `origin` (a file and line, or a connection).
    pub fn handle(&mut self, msg: &RawMessage, origin: &dyn Fn() -> String, out: &mut Vec<Event>) {
        self.stats.messages += 1;
        let exchange = msg.exchange;
        let (parser, meters) = match self.parsers.entry(exchange) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(slot) => {
                match parser_for(exchange) {
                    Some(p) => slot.insert((p, Meters::new(exchange))),
                    None => {
                        self.stats.unsupported += 1;
                        metrics::counter(&format!(
                            "candlekeep_unsupported_messages_total{{exchange=\"{exchange}\"}}"
                        ))
                        .inc();
                        let seen = self.unsupported.entry(exchange).or_default();
                        *seen += 1;
                        if *seen == 1 {
                            tracing::warn!(%exchange, "no parser for this exchange yet; its messages are counted and skipped");
                            out.push(Event::IngestError(IngestError::new(
                            Some(exchange),
                            origin(),
                            format!("no parser for {exchange} yet; its messages are skipped and counted"),
                            &msg.data,
                        )));
                        }
                        return;
                    }
                }
            }
        };
        meters.messages.inc();
        let before = out.len();
        match parser.parse(msg, out) {
            Ok(Parsed::Events(_)) => self.stats.events += (out.len() - before) as u64,
            Ok(Parsed::Ignored) => {
                self.stats.ignored += 1;
                meters.ignored.inc();
            }
            Err(e) => {
                out.truncate(before);
                self.stats.errors += 1;
                meters.errors.inc();
                let message = ck_bus::error_chain(&e);
                tracing::warn!(%exchange, origin = %origin(), error = %message, "skipped bad message");
                out.push(Event::IngestError(IngestError::new(
                    Some(exchange),
                    origin(),
                    message,
                    &msg.data,
                )));
            }
        }
    }
}
