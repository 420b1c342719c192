//! Order books on a live connection: every frame goes through the
//! connection's [`BookKeeper`] after it is sent on to the tape, and what
//! the keeper records goes to the book recorder as [`BookEvent`]s.
//!
//! - **Subscription.** After the venue's usual channels, its book channels
//!   ([`WsProtocol::subscribe_books`]) at the depth configured for each
//!   instrument.
//! - **REST snapshots** (Binance, Bitstamp: [`WsProtocol::book_snapshot_path`]).
//!   A book's first diff is held, which asks for its snapshot: one request
//!   at a time per book, within the venue's REST budget. The answer is
//!   taped like a frame (so a tape replays the same books) and applied
//!   after the diffs held meanwhile.
//! - **Resync.** An incident (a sequence gap, a checksum that does not
//!   hold, a snapshot older than the diffs) leaves the book invalid; it is
//!   sent to the recorder, counted in
//!   `candlekeep_book_incidents_total{exchange,cause}`, and the book is
//!   renewed: a fresh REST snapshot, or its channel subscribed again
//!   ([`WsProtocol::resubscribe_book`]) where the snapshot comes on it, or
//!   a new connection where the venue renews a channel no other way
//!   (Bitfinex).
//! - When the connection ends, every book is unknown from then until its
//!   next snapshot ([`BookUpdate::Ended`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ck_archive::books::{BookFile, BookRow};
use ck_bus::{Closed, Event, IngestError, Origin, RawMessage, Sender, metrics};
use ck_model::{Exchange, Instrument, Ts};
use tokio::task::JoinSet;

use super::connector::WsProtocol;
use crate::book_keeper::{BookKeeper, BookOutput, SNAPSHOT_EVERY_NS};
use crate::rest::{RestClient, RestError, RestResponse};

/// The depth a book is asked for when none is configured: 1,000 levels a
/// side (or the nearest the venue offers).
pub const DEFAULT_DEPTH: usize = 1_000;

/// How a live source captures order books.
#[derive(Debug, Clone)]
pub struct BookCapture {
    /// Levels a side asked for, where the venue takes a depth.
    pub depth: usize,
    /// Depth per instrument (`BASE-QUOTE`), over `depth`.
    pub depths: HashMap<String, usize>,
    /// A whole-book snapshot is recorded this often (ns of receive time).
    pub snapshot_every_ns: i64,
    /// The venue's REST client, for venues whose books start from a REST
    /// snapshot; without one their books never become valid.
    pub rest: Option<Arc<RestClient>>,
    /// Where the books go: the book recorder.
    pub sink: Option<Sender<BookEvent>>,
}

impl Default for BookCapture {
    fn default() -> Self {
        BookCapture {
            depth: DEFAULT_DEPTH,
            depths: HashMap::new(),
            snapshot_every_ns: SNAPSHOT_EVERY_NS,
            rest: None,
            sink: None,
        }
    }
}

impl BookCapture {
    /// The depth asked for `instrument`.
    #[must_use]
    pub fn depth_of(&self, instrument: &Instrument) -> usize {
        self.depths
            .get(instrument.as_str())
            .copied()
            .unwrap_or(self.depth)
            .max(1)
    }
}

/// One instrument's book, as a connection saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct BookEvent {
    /// The venue.
    pub exchange: Exchange,
    /// The instrument.
    pub instrument: Instrument,
    /// What happened.
    pub update: BookUpdate,
}

/// What happened to a book.
#[derive(Debug, Clone, PartialEq)]
pub enum BookUpdate {
    /// Rows for one of the book's files, in order. Their message numbers
    /// run per connection: a book's numbering starts again with each
    /// connection's first snapshot.
    Rows {
        /// Snapshots or deltas.
        file: BookFile,
        /// The rows.
        rows: Vec<BookRow>,
    },
    /// The book was found wrong at `at` (receive time): invalid until its
    /// next snapshot.
    Incident {
        /// When.
        at: Ts,
        /// The cause's short name (`gap`, `checksum`, …).
        kind: &'static str,
        /// The cause, in words.
        cause: String,
    },
    /// The connection carrying the book ended at `at`: the book is unknown
    /// until the next connection's snapshot.
    Ended {
        /// When.
        at: Ts,
    },
}

type Answer = (String, Result<RestResponse, RestError>);

/// The books of one connection (module docs).
pub(crate) struct ConnectionBooks<'a> {
    exchange: Exchange,
    capture: &'a BookCapture,
    sink: Sender<BookEvent>,
    keeper: BookKeeper,
    /// The book symbol of each instrument, and its instrument.
    instruments: HashMap<String, Instrument>,
    out: Vec<BookOutput>,
    /// Books whose REST snapshot is being fetched.
    fetching: HashSet<String>,
    fetches: JoinSet<Answer>,
    /// Unknown symbols already reported.
    unknown: HashSet<String>,
    /// A book needs a fresh snapshot the venue only sends on a new
    /// connection (Bitfinex).
    reconnect: bool,
}

impl<'a> ConnectionBooks<'a> {
    /// The books of a new connection carrying `instruments`; `None` when
    /// books are not captured, or the venue has no book reader.
    pub(crate) fn new(
        protocol: &dyn WsProtocol,
        instruments: &[Instrument],
        capture: Option<&'a BookCapture>,
    ) -> Option<ConnectionBooks<'a>> {
        let capture = capture?;
        let sink = capture.sink.clone()?;
        let exchange = protocol.exchange();
        let Some(keeper) = BookKeeper::new(exchange, capture.snapshot_every_ns) else {
            tracing::warn!(%exchange, "candlekeep reads no order book of this venue; capturing its trades only");
            return None;
        };
        Some(ConnectionBooks {
            exchange,
            capture,
            sink,
            keeper,
            instruments: instruments
                .iter()
                .map(|i| (protocol.book_symbol(i), i.clone()))
                .collect(),
            out: Vec::new(),
            fetching: HashSet::new(),
            fetches: JoinSet::new(),
            unknown: HashSet::new(),
            reconnect: false,
        })
    }

    /// The messages that subscribe the books, by depth.
    pub(crate) fn subscribe(&self, protocol: &dyn WsProtocol) -> Vec<String> {
        let mut by_depth: Vec<(usize, Vec<Instrument>)> = Vec::new();
        let mut instruments: Vec<&Instrument> = self.instruments.values().collect();
        instruments.sort();
        for i in instruments {
            let depth = self.capture.depth_of(i);
            match by_depth.iter_mut().find(|(d, _)| *d == depth) {
                Some((_, group)) => group.push(i.clone()),
                None => by_depth.push((depth, vec![i.clone()])),
            }
        }
        by_depth
            .iter()
            .flat_map(|(depth, group)| protocol.subscribe_books(group, *depth))
            .collect()
    }

    /// The next REST snapshot answered (pending for ever when none is
    /// being fetched).
    pub(crate) async fn next_answer(books: &mut Option<ConnectionBooks<'_>>) -> Answer {
        match books.as_mut() {
            Some(b) if !b.fetches.is_empty() => loop {
                match b.fetches.join_next().await {
                    Some(Ok(answer)) => return answer,
                    Some(Err(e)) => tracing::warn!(error = %e, "book snapshot request failed"),
                    None => std::future::pending::<()>().await,
                }
            },
            _ => std::future::pending().await,
        }
    }

    /// A REST snapshot's answer: taped through `raw` like a frame, then
    /// applied. Returns the messages to send the venue.
    pub(crate) async fn on_answer(
        &mut self,
        protocol: &dyn WsProtocol,
        (symbol, answer): Answer,
        at: Ts,
        raw: &Sender<RawMessage>,
        events: &Sender<Event>,
    ) -> Result<Vec<String>, Closed> {
        self.fetching.remove(&symbol);
        match answer {
            Ok(response) => {
                let msg = RawMessage {
                    exchange: self.exchange,
                    ts_received: at,
                    origin: Origin::Rest { url: response.url },
                    data: response.body,
                };
                raw.send(msg.clone()).await?;
                self.take(protocol, &msg, events).await
            }
            Err(e) => {
                // The client retried already; the next diff held asks again.
                metrics::counter(&format!(
                    "candlekeep_book_snapshot_failures_total{{exchange=\"{}\"}}",
                    self.exchange
                ))
                .inc();
                tracing::warn!(exchange = %self.exchange, %symbol, error = %ck_bus::error_chain(&e), "book snapshot unavailable; asking again at the next diff");
                Ok(Vec::new())
            }
        }
    }

    /// One frame (or REST answer) through the keeper. Returns the
    /// messages to send the venue (resubscriptions).
    pub(crate) async fn take(
        &mut self,
        protocol: &dyn WsProtocol,
        raw: &RawMessage,
        events: &Sender<Event>,
    ) -> Result<Vec<String>, Closed> {
        let mut send = Vec::new();
        self.out.clear();
        if let Err(e) = self.keeper.take(raw, &mut self.out) {
            let origin = format!("{} live book", self.exchange);
            match crate::book_keeper::unreadable_book_message(raw, origin, &e) {
                Some(error) => events.send(error).await?,
                None => return Ok(send),
            }
        }
        // The keeper's output buffer is reused frame after frame.
        let mut outputs = std::mem::take(&mut self.out);
        for output in outputs.drain(..) {
            let (symbol, update) = match output {
                BookOutput::Rows { symbol, file, rows } => {
                    (symbol, BookUpdate::Rows { file, rows })
                }
                BookOutput::Held { symbol } => {
                    self.ask_snapshot(protocol, &symbol);
                    continue;
                }
                BookOutput::Incident {
                    symbol,
                    at,
                    incident,
                } => {
                    let update = crate::book_keeper::incident_update(self.exchange, at, &incident);
                    tracing::warn!(exchange = %self.exchange, %symbol, %incident, "book invalid; resynchronising");
                    if let Some(instrument) = self.instrument(&symbol) {
                        let depth = self.capture.depth_of(&instrument);
                        if protocol.book_snapshot_path(&instrument, depth).is_some() {
                            self.ask_snapshot(protocol, &symbol);
                        } else {
                            let again = protocol.resubscribe_book(&instrument, depth);
                            self.reconnect |= again.is_empty();
                            send.extend(again);
                        }
                    }
                    (symbol, update)
                }
            };
            let Some(instrument) = self.instrument(&symbol) else {
                if self.unknown.insert(symbol.clone()) {
                    events
                        .send(Event::IngestError(IngestError::new(
                            Some(self.exchange),
                            format!("{} live book", self.exchange),
                            format!("a book of {symbol}, which this connection did not subscribe"),
                            &raw.data,
                        )))
                        .await?;
                }
                continue;
            };
            self.sink
                .send(BookEvent {
                    exchange: self.exchange,
                    instrument,
                    update,
                })
                .await?;
        }
        self.out = outputs;
        Ok(send)
    }

    fn instrument(&self, symbol: &str) -> Option<Instrument> {
        self.instruments.get(symbol).cloned().or_else(|| {
            self.instruments
                .iter()
                .find(|(s, _)| s.eq_ignore_ascii_case(symbol))
                .map(|(_, i)| i.clone())
        })
    }

    /// True when a book can only be renewed by a new connection.
    pub(crate) fn wants_reconnect(&self) -> bool {
        self.reconnect
    }

    /// Starts fetching `symbol`'s REST snapshot, unless one is on its way.
    fn ask_snapshot(&mut self, protocol: &dyn WsProtocol, symbol: &str) {
        let Some(instrument) = self.instrument(symbol) else {
            return;
        };
        let Some((path, weight)) =
            protocol.book_snapshot_path(&instrument, self.capture.depth_of(&instrument))
        else {
            return;
        };
        let Some(client) = self.capture.rest.clone() else {
            if self.fetching.insert(symbol.to_owned()) {
                tracing::warn!(exchange = %self.exchange, %symbol, "the book starts from a REST snapshot, and this source has no REST root");
            }
            return;
        };
        if !self.fetching.insert(symbol.to_owned()) {
            return;
        }
        let symbol = symbol.to_owned();
        self.fetches.spawn(async move {
            let answer = client.get(&path, weight).await;
            (symbol, answer)
        });
    }

    /// The connection ended at `at`: every book is unknown from then.
    pub(crate) async fn end(self, at: Ts) -> Result<(), Closed> {
        let mut instruments: Vec<Instrument> = self.instruments.into_values().collect();
        instruments.sort();
        for instrument in instruments {
            self.sink
                .send(BookEvent {
                    exchange: self.exchange,
                    instrument,
                    update: BookUpdate::Ended { at },
                })
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use ck_bus::{Event, Origin, RawMessage, channel};
    use ck_model::{Exchange, Instrument, Ts};

    use super::{BookCapture, ConnectionBooks};

    fn frame(data: &str) -> RawMessage {
        RawMessage {
            exchange: Exchange::Okx,
            ts_received: Ts(1),
            origin: Origin::Ws,
            data: data.to_owned(),
        }
    }

    /// A book frame cut in half is the parser's to report (it is not
    /// JSON); a whole frame the book reader cannot use is the keeper's:
    /// each bad frame is one ingest error.
    #[tokio::test]
    async fn each_bad_book_frame_is_one_ingest_error() {
        let (sink, _books) = channel("books-test", 16);
        let capture = BookCapture {
            sink: Some(sink),
            ..BookCapture::default()
        };
        let protocol = crate::okx::ws::OkxProtocol;
        let instruments = [Instrument::new("BTC", "USDT")];
        let mut books =
            ConnectionBooks::new(&protocol, &instruments, Some(&capture)).expect("books");
        let (events, mut errors) = channel::<Event>("events-test", 16);
        let whole = r#"{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"snapshot","data":[{"asks":[["not a price","1","0","1"]],"bids":[],"ts":"1"}]}"#;
        let cut = &whole[..whole.len() / 2];
        books
            .take(&protocol, &frame(cut), &events)
            .await
            .expect("open");
        books
            .take(&protocol, &frame(whole), &events)
            .await
            .expect("open");
        drop(events);
        let mut reported = Vec::new();
        while let Some(e) = errors.recv().await {
            reported.push(e);
        }
        assert_eq!(reported.len(), 1, "{reported:?}");
        assert!(
            matches!(&reported[0], Event::IngestError(e) if e.message.starts_with("book message") && e.excerpt.contains("not a price")),
            "{:?}",
            reported[0]
        );
    }
}
