//! Order books rebuilt from recordings (`candlekeep replay --books`): every
//! raw message of a replay also goes through a [`BookKeeper`] of its venue,
//! the same engine, readers and checks as live capture, and what it gives
//! goes to the book recorder ([`crate::book_recorder`]) as [`BookEvent`]s.
//!
//! - **One keeper a venue**, across the replay's files, so a recording
//!   split over files (cryptofeed's text recordings: the REST snapshots in
//!   `NAME.0`, the frames in `NAME.ws.N.0`) rebuilds its books when the
//!   files are given in the order they were written. A tape holds the REST
//!   snapshots live capture fetched, where live capture took them.
//! - **Venue symbols to instruments.** A recording has no subscription
//!   list, so before a file is replayed it is read once through the
//!   normalizer: each instrument its trades and quotes name gives its book
//!   symbol ([`WsProtocol::book_symbol`]). A symbol still unknown is read
//!   as the venue writes instruments (`BTC-USDT`, `BTCUSDT`), and taken
//!   only when that instrument's book symbol is the symbol again. Books of
//!   a symbol that maps to nothing are counted (an ingest error each) and
//!   skipped.
//! - **No resynchronisation.** A replay cannot ask a venue for anything:
//!   after an incident a book is unknown until the recording's next
//!   snapshot (a book gap, as live), and a book whose recording holds no
//!   snapshot (hftbacktest's Binance streams, Binance diffs without their
//!   REST answer) is never known; both are counted in [`ReplayBookStats`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ck_bus::{Closed, Event, IngestError, RawMessage, Sender, metrics};
use ck_model::{Exchange, Instrument};

use crate::book_keeper::{BookKeeper, BookOutput};
use crate::live::books::{BookEvent, BookUpdate};
use crate::live::connector::WsProtocol;

/// What rebuilding books in a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayBookStats {
    /// Book messages applied (snapshots and deltas).
    pub applied: u64,
    /// Books found wrong (a sequence gap, a checksum).
    pub incidents: u64,
    /// Diffs held for a snapshot the recording did not bring (yet).
    pub held: u64,
    /// Book symbols that map to no instrument.
    pub unmapped: u64,
}

/// The books of one replay (module docs).
pub struct ReplayBooks {
    sink: Sender<BookEvent>,
    cadence_ns: i64,
    keepers: HashMap<Exchange, BookKeeper>,
    /// Each venue's live protocols (every API version: Kraken's v1 and
    /// v2 name books differently).
    protocols: HashMap<Exchange, Vec<Arc<dyn WsProtocol>>>,
    /// (venue, lowercase book symbol) to instrument.
    symbols: HashMap<(Exchange, String), Instrument>,
    unmapped: HashSet<(Exchange, String)>,
    out: Vec<BookOutput>,
    stats: ReplayBookStats,
    /// The books sent, and the latest receive time taken.
    sent: HashSet<(Exchange, Instrument)>,
    latest: Option<ck_model::Ts>,
}

impl std::fmt::Debug for ReplayBooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayBooks")
            .field("symbols", &self.symbols.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl ReplayBooks {
    /// Books sent to `sink`, a whole-book snapshot recorded every
    /// `cadence_ns` of receive time.
    #[must_use]
    pub fn new(sink: Sender<BookEvent>, cadence_ns: i64) -> ReplayBooks {
        ReplayBooks {
            sink,
            cadence_ns,
            keepers: HashMap::new(),
            protocols: HashMap::new(),
            symbols: HashMap::new(),
            unmapped: HashSet::new(),
            out: Vec::new(),
            stats: ReplayBookStats::default(),
            sent: HashSet::new(),
            latest: None,
        }
    }

    /// What it did so far.
    #[must_use]
    pub fn stats(&self) -> ReplayBookStats {
        self.stats
    }

    fn protocols(&mut self, exchange: Exchange) -> Vec<Arc<dyn WsProtocol>> {
        self.protocols
            .entry(exchange)
            .or_insert_with(|| {
                crate::venues::venue(exchange)
                    .map(|venue| {
                        [None, Some("v1")]
                            .into_iter()
                            .map(|api| (venue.live)(api).0)
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .clone()
    }

    /// Takes `instruments` of `exchange` (what a recording trades or
    /// quotes) as the instruments its book symbols stand for.
    pub fn learn(&mut self, exchange: Exchange, instruments: &[Instrument]) {
        for protocol in self.protocols(exchange) {
            for i in instruments {
                let symbol = protocol.book_symbol(i).to_ascii_lowercase();
                self.symbols
                    .entry((exchange, symbol))
                    .or_insert_with(|| i.clone());
            }
        }
    }

    /// The instrument of `symbol` on `exchange` (module docs).
    fn instrument(&mut self, exchange: Exchange, symbol: &str) -> Option<Instrument> {
        let key = (exchange, symbol.to_ascii_lowercase());
        if let Some(i) = self.symbols.get(&key) {
            return Some(i.clone());
        }
        let protocols = self.protocols(exchange);
        let candidates = [
            Instrument::parse(symbol).ok(),
            crate::parse::SymbolMap::default()
                .resolve(exchange, symbol, true)
                .ok(),
        ];
        let found = candidates.into_iter().flatten().find(|i| {
            protocols
                .iter()
                .any(|p| p.book_symbol(i).eq_ignore_ascii_case(symbol))
        })?;
        self.symbols.insert(key, found.clone());
        Some(found)
    }

    /// One raw message through its venue's keeper; its books' events to
    /// the recorder, a message it cannot read and a book of no known
    /// instrument to `events` as ingest errors.
    ///
    /// # Errors
    /// When the recorder or the pipeline stopped.
    pub fn take(
        &mut self,
        msg: &RawMessage,
        origin: &dyn Fn() -> String,
        events: &Sender<Event>,
    ) -> Result<(), Closed> {
        let exchange = msg.exchange;
        self.latest = Some(
            self.latest
                .map_or(msg.ts_received, |t| t.max(msg.ts_received)),
        );
        if !self.keepers.contains_key(&exchange) {
            let Some(keeper) = BookKeeper::new(exchange, self.cadence_ns) else {
                return Ok(());
            };
            self.keepers.insert(exchange, keeper);
        }
        let mut outputs = std::mem::take(&mut self.out);
        let read = match self.keepers.get_mut(&exchange) {
            Some(keeper) => keeper.take(msg, &mut outputs),
            None => Ok(()),
        };
        if let Err(e) = read
            && let Some(error) = crate::book_keeper::unreadable_book_message(msg, origin(), &e)
        {
            events.blocking_send(error)?;
        }
        for output in outputs.drain(..) {
            let (symbol, update) = match output {
                BookOutput::Rows { symbol, file, rows } => {
                    self.stats.applied += 1;
                    (symbol, BookUpdate::Rows { file, rows })
                }
                BookOutput::Held { .. } => {
                    self.stats.held += 1;
                    continue;
                }
                BookOutput::Incident {
                    symbol,
                    at,
                    incident,
                } => {
                    self.stats.incidents += 1;
                    tracing::warn!(%exchange, %symbol, %incident, "replayed book invalid until the recording's next snapshot");
                    (
                        symbol,
                        crate::book_keeper::incident_update(exchange, at, &incident),
                    )
                }
            };
            let Some(instrument) = self.instrument(exchange, &symbol) else {
                if self.unmapped.insert((exchange, symbol.clone())) {
                    self.stats.unmapped += 1;
                    metrics::counter(&format!(
                        "candlekeep_ingest_errors_total{{exchange=\"{exchange}\"}}"
                    ))
                    .inc();
                    events.blocking_send(Event::IngestError(IngestError::new(
                        Some(exchange),
                        origin(),
                        format!(
                            "a book of {symbol}, which names no instrument the recording trades or quotes; its book is skipped"
                        ),
                        &msg.data,
                    )))?;
                }
                continue;
            };
            if !self.sent.contains(&(exchange, instrument.clone())) {
                self.sent.insert((exchange, instrument.clone()));
            }
            self.sink.blocking_send(BookEvent {
                exchange,
                instrument,
                update,
            })?;
        }
        self.out = outputs;
        Ok(())
    }

    /// The recordings ended: each book is known until just after their
    /// last message (its files' parts end there), as a live book is while
    /// its connection carries messages.
    ///
    /// # Errors
    /// When the recorder stopped.
    pub fn finish(&mut self) -> Result<(), Closed> {
        let Some(latest) = self.latest else {
            return Ok(());
        };
        let at = ck_model::Ts(latest.0.saturating_add(1));
        for (exchange, instrument) in self.sent.drain() {
            self.sink.blocking_send(BookEvent {
                exchange,
                instrument,
                update: BookUpdate::Ended { at },
            })?;
        }
        Ok(())
    }
}
