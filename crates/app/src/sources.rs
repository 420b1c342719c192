//! The sources a configuration names, built through the venue registry.

use ck_model::{Exchange, Instrument};
use ck_sources::live::BackoffPolicy;
use ck_sources::live::connector::LiveConfig;

use ck_sources::live::books::{BookCapture, DEFAULT_DEPTH};

use crate::config::{AppConfig, BooksConfig, SourceConfig, VenueSourceConfig};
use crate::pipeline::{ReplayOptions, Source};

/// The sources `config` names, in order.
///
/// # Errors
/// When an instrument cannot be read, or a venue has no live connector or
/// public REST root where one is needed.
pub fn from_config(config: &AppConfig) -> anyhow::Result<Vec<Source>> {
    config
        .sources
        .iter()
        .map(|s| source_of(s, &config.books))
        .collect()
}

/// A live source's book settings; the REST client and the recorder's
/// queue are joined when the pipeline starts.
fn book_capture(v: &VenueSourceConfig, books: &BooksConfig) -> anyhow::Result<BookCapture> {
    for (instrument, depth) in &v.book_depths {
        Instrument::parse(instrument)?;
        if !v.instruments.contains(instrument) {
            anyhow::bail!("book_depths names {instrument}, which the source does not capture");
        }
        if *depth == 0 {
            anyhow::bail!("book_depths: {instrument} needs a depth above zero");
        }
    }
    Ok(BookCapture {
        depth: v.book_depth.unwrap_or(DEFAULT_DEPTH).max(1),
        depths: v.book_depths.clone().into_iter().collect(),
        snapshot_every_ns: i64::try_from(books.snapshot_every_secs)
            .unwrap_or(i64::MAX / 1_000_000_000)
            .saturating_mul(1_000_000_000),
        rest: None,
        sink: None,
    })
}

fn source_of(s: &SourceConfig, books: &BooksConfig) -> anyhow::Result<Source> {
    Ok(match s {
        SourceConfig::Replay {
            files,
            speed,
            exchange,
        } => Source::Replay {
            files: files.clone(),
            options: ReplayOptions {
                speed: (*speed > 0.0).then_some(*speed),
                exchange: *exchange,
                books: None,
            },
        },
        SourceConfig::Poll {
            exchange,
            rest_url,
            tickers,
        } => Source::Poll {
            exchange: *exchange,
            rest_url: rest_url
                .clone()
                .or_else(|| ck_sources::history::default_rest_url(*exchange).map(str::to_owned))
                .ok_or_else(|| anyhow::anyhow!("{exchange} has no public REST root"))?,
            targets: tickers
                .iter()
                .map(|t| {
                    Ok(ck_sources::poll::PollTarget {
                        instrument: Instrument::parse(&t.instrument)?,
                        every: std::time::Duration::from_millis(t.every_ms),
                    })
                })
                .collect::<Result<Vec<_>, ck_model::InstrumentError>>()?,
        },
        live => {
            let (exchange, v) = live
                .venue()
                .ok_or_else(|| anyhow::anyhow!("a live source names no exchange"))?;
            let venue = ck_sources::venues::venue(exchange)
                .ok_or_else(|| anyhow::anyhow!("no live connector for {exchange}"))?;
            let (protocol, default_url) = (venue.live)(v.api.as_deref());
            Source::Live {
                protocol,
                config: LiveConfig {
                    ws_url: v.ws_url.clone().unwrap_or_else(|| default_url.to_owned()),
                    instruments: v
                        .instruments
                        .iter()
                        .map(|i| Instrument::parse(i))
                        .collect::<Result<Vec<_>, _>>()?,
                    backoff: BackoffPolicy::default(),
                    stale_after: std::time::Duration::from_secs(v.stale_after_secs.max(1)),
                    rest_url: match &v.rest_url {
                        Some(url) if url.is_empty() => None,
                        Some(url) => Some(url.clone()),
                        None => Some(venue.rest_url.to_owned()),
                    },
                    books: v.books.then(|| book_capture(v, books)).transpose()?,
                },
            }
        }
    })
}

impl AppConfig {
    /// The REST root a configured live source of `exchange` names, if any.
    #[must_use]
    pub fn rest_url_of(&self, exchange: Exchange) -> Option<String> {
        self.sources.iter().find_map(|s| {
            s.venue()
                .filter(|(e, _)| *e == exchange)
                .and_then(|(_, v)| v.rest_url.clone())
                .filter(|u| !u.is_empty())
        })
    }
}
