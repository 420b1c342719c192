//! The alert service: reads the live feed, evaluates the rules on every
//! relevant update (and stale feeds every second), records each firing in
//! the store and delivers it on a task of its own, so that a slow or
//! failing channel never holds evaluation back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ck_bus::Event;
use ck_model::Ts;
use ck_store::Store;
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

use crate::engine::{Engine, Firing};
use crate::notify::Notifier;
use crate::rule::Rule;

/// What the API needs to list and change rules: the config's rules (read
/// only) and a way to make the service reload after a change.
#[derive(Debug, Clone, Default)]
pub struct AlertHandle {
    /// Rules from the config file, with their ids (`config:1`, ...).
    pub config_rules: Arc<Vec<(String, Rule)>>,
    /// Wakes the service to reload the rules from the store.
    pub reload: Arc<Notify>,
    /// The channel names rules may use in `notify`.
    pub channels: Arc<Vec<String>>,
    /// The order books captured live, for book rules (their stats are
    /// read every second); `None` where none are.
    pub books: Option<ck_bus::books::LiveBooks>,
}

impl AlertHandle {
    /// A handle for the config's `rules`, numbered from 1, and `channels`.
    #[must_use]
    pub fn new(rules: Vec<Rule>, channels: Vec<String>) -> AlertHandle {
        AlertHandle {
            channels: Arc::new(channels),
            config_rules: Arc::new(
                rules
                    .into_iter()
                    .enumerate()
                    .map(|(i, r)| (format!("config:{}", i + 1), r))
                    .collect(),
            ),
            reload: Arc::default(),
            books: None,
        }
    }

    /// Book rules read the stats of `books` every second.
    #[must_use]
    pub fn with_books(mut self, books: ck_bus::books::LiveBooks) -> AlertHandle {
        self.books = Some(books);
        self
    }
}

/// Every rule: the config's, then the store's (by their numeric ids). A
/// stored rule that no longer reads is logged and skipped.
pub async fn all_rules(handle: &AlertHandle, store: &dyn Store) -> Vec<(String, Rule)> {
    let mut rules: Vec<(String, Rule)> = handle.config_rules.as_ref().clone();
    match store.alert_rules().await {
        Ok(stored) => {
            for s in stored {
                match Rule::from_json(&s.rule) {
                    Ok(r) => rules.push((s.id.to_string(), r)),
                    Err(e) => {
                        tracing::error!(id = s.id, error = %e, "stored alert rule cannot be read; skipped")
                    }
                }
            }
        }
        Err(e) => tracing::error!(error = %e, "reading alert rules"),
    }
    rules
}

/// The next update, or never when not listening.
async fn next(
    rx: &mut Option<broadcast::Receiver<Arc<Event>>>,
) -> Result<Arc<Event>, broadcast::error::RecvError> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// How often the rules are read again even without a change here (another
/// process may have changed them).
const RELOAD_EVERY: Duration = Duration::from_secs(60);

/// Runs until `stop`: evaluates, records and delivers. It listens to the
/// live feed only while there are rules, so that a process without alerts
/// does not copy every update for nobody.
pub async fn run(
    feed: ck_bus::LiveFeed,
    store: Arc<dyn Store>,
    handle: AlertHandle,
    notifier: Arc<Notifier>,
    stop: CancellationToken,
) {
    let fired_total = ck_bus::metrics::counter("candlekeep_alerts_fired_total");
    let missed = ck_bus::metrics::counter("candlekeep_alerts_updates_missed_total");
    let mut engine = Engine::new(Ts::now());
    let mut channels = load(&mut engine, all_rules(&handle, store.as_ref()).await);
    let mut rx = (!engine.is_empty()).then(|| feed.subscribe());
    tracing::info!(rules = engine.len(), "alerts: evaluating");
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut reload = tokio::time::interval(RELOAD_EVERY);
    reload.tick().await;
    loop {
        let fired: Vec<Firing> = tokio::select! {
            () = stop.cancelled() => return,
            () = handle.reload.notified() => Vec::new(),
            _ = reload.tick() => Vec::new(),
            _ = tick.tick() => {
                let now = Ts::now();
                let mut fired = engine.on_tick(now);
                if let Some(books) = &handle.books {
                    for (exchange, instrument) in engine.books() {
                        let stats = books
                            .read(exchange, &instrument, |b| {
                                b.valid.then(|| ck_book::stats::BookStats::of(&b.book)).flatten()
                            })
                            .flatten();
                        if let Some(stats) = stats {
                            fired.extend(engine.on_book(exchange, &instrument, &stats, now));
                        }
                    }
                }
                if fired.is_empty() { continue } else { fired }
            }
            event = next(&mut rx) => match event {
                Ok(e) => {
                    let fired = engine.on_event(&e);
                    if fired.is_empty() { continue } else { fired }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    missed.inc_by(n);
                    tracing::warn!(missed = n, "alerts fell behind the live feed; those updates were not evaluated");
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        if fired.is_empty() {
            // A reload: read the rules again, and listen only while there are some.
            channels = load(&mut engine, all_rules(&handle, store.as_ref()).await);
            tracing::debug!(rules = engine.len(), "alerts: rules reloaded");
            if engine.is_empty() {
                rx = None;
            } else if rx.is_none() {
                rx = Some(feed.subscribe());
            }
            continue;
        }
        for f in fired {
            fired_total.inc();
            let targets = channels.get(&f.rule_id).cloned().unwrap_or_default();
            record_and_deliver(store.clone(), notifier.clone(), f, targets).await;
        }
    }
}

/// Gives `engine` the rules; each rule's channels, by rule id.
fn load(engine: &mut Engine, rules: Vec<(String, Rule)>) -> HashMap<String, Vec<String>> {
    let channels = rules
        .iter()
        .map(|(id, r)| (id.clone(), r.notify.clone()))
        .collect();
    engine.set_rules(rules);
    channels
}

/// Stores the firing, then delivers it on a task of its own and stores the
/// results when they are known.
async fn record_and_deliver(
    store: Arc<dyn Store>,
    notifier: Arc<Notifier>,
    firing: Firing,
    channels: Vec<String>,
) {
    let json = serde_json::to_string(&firing).unwrap_or_default();
    let id = match store
        .record_firing(&firing.rule_id, firing.time, &json)
        .await
    {
        Ok(id) => Some(id),
        Err(e) => {
            tracing::error!(error = %e, rule = %firing.rule, "recording an alert firing");
            None
        }
    };
    tokio::spawn(async move {
        let results = notifier.deliver(&firing, &channels).await;
        if let Some(id) = id {
            let json = serde_json::to_string(&results).unwrap_or_default();
            if let Err(e) = store.set_firing_deliveries(id, &json).await {
                tracing::error!(error = %e, "recording alert deliveries");
            }
        }
    });
}
