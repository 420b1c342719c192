//! The capture stage of live data: raw messages in; each is written to its
//! exchange's tape exactly as received, then normalized into events.
//!
//! Tape writes are blocking file IO, so each batch is handed to tokio's
//! blocking pool, and written while the batch's events go downstream. The
//! tapes are flushed as complete compressed blocks every `flush_every`
//! messages and on every tick, so a crash loses at most one tick of tape; at
//! the end every day file is finished and fsync'd.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::normalize::{NormalizeStats, Normalizer};
use crate::tape::{TapeError, TapeWriter};
use ck_bus::{Closed, Event, RawMessage, Receiver, Sender};
use ck_model::Exchange;

/// Where and how to record tapes.
#[derive(Debug, Clone)]
pub struct TapeSettings {
    /// The tapes root (`<data_dir>/tapes`).
    pub dir: PathBuf,
    /// Flush a compressed block at least every this many messages.
    pub flush_every: usize,
    /// Flush at least this often while messages arrive.
    pub flush_interval: Duration,
}

/// What the capture stage did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Raw messages received.
    pub messages: u64,
    /// Messages written to tapes.
    pub taped: u64,
    /// What the parsers made of them.
    pub normalized: NormalizeStats,
}

/// Why the capture stage stopped early.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// A tape could not be written: data would be lost, so capture stops.
    #[error("writing tape")]
    Tape(#[from] TapeError),
    /// The pipeline downstream stopped.
    #[error(transparent)]
    Closed(#[from] Closed),
    /// The blocking tape task failed.
    #[error("tape task failed")]
    Join(#[from] tokio::task::JoinError),
}

type Tapes = HashMap<Exchange, TapeWriter>;

fn write_batch(
    mut tapes: Tapes,
    settings: &TapeSettings,
    batch: &[RawMessage],
) -> Result<Tapes, TapeError> {
    for msg in batch {
        tapes
            .entry(msg.exchange)
            .or_insert_with(|| TapeWriter::new(&settings.dir, msg.exchange, settings.flush_every))
            .write(msg)?;
    }
    Ok(tapes)
}

fn flush_all(mut tapes: Tapes, close: bool) -> Result<Tapes, TapeError> {
    for w in tapes.values_mut() {
        if close { w.close_day()? } else { w.flush()? }
    }
    Ok(tapes)
}

/// Runs until `input` closes: tapes (if `tape` is set), then normalizes.
pub async fn run_capture(
    mut input: Receiver<RawMessage>,
    output: Sender<Event>,
    tape: Option<TapeSettings>,
) -> Result<CaptureStats, CaptureError> {
    let mut normalizer = Normalizer::new();
    let mut stats = CaptureStats::default();
    let mut tapes: Option<Tapes> = tape.as_ref().map(|_| Tapes::new());
    let mut batch = Vec::with_capacity(1024);
    let mut events = Vec::with_capacity(1024);
    let flush_every = tape
        .as_ref()
        .map_or(Duration::from_secs(3600), |t| t.flush_interval);
    let mut tick = tokio::time::interval(flush_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            n = input.recv_many(&mut batch, 1024) => {
                if n == 0 {
                    break;
                }
                stats.messages += n as u64;
                let messages = std::mem::take(&mut batch);
                for msg in &messages {
                    normalizer.handle(msg, &|| format!("{} live", msg.exchange), &mut events);
                }
                // Tape the batch on the blocking pool while its events go on.
                let pending = match (tapes.take(), tape.clone()) {
                    (Some(t), Some(settings)) => Some(tokio::task::spawn_blocking(move || {
                        let written = write_batch(t, &settings, &messages);
                        (written, messages)
                    })),
                    _ => None,
                };
                for e in events.drain(..) {
                    output.send(e).await?;
                }
                if let Some(task) = pending {
                    let (written, messages) = task.await?;
                    tapes = Some(written?);
                    stats.taped += messages.len() as u64;
                    batch = messages;
                    batch.clear();
                }
            }
            _ = tick.tick() => {
                if let Some(t) = tapes.take() {
                    tapes = Some(tokio::task::spawn_blocking(move || flush_all(t, false)).await??);
                }
            }
        }
    }
    if let Some(t) = tapes.take() {
        tokio::task::spawn_blocking(move || flush_all(t, true)).await??;
    }
    stats.normalized = normalizer.stats();
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recordings::Recording;
    use crate::tape::tests::msg;
    use ck_bus::channel;
    use ck_model::Ts;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tapes_every_message_and_normalizes_it() {
        let dir = tempfile::tempdir().expect("dir");
        let settings = TapeSettings {
            dir: dir.path().to_owned(),
            flush_every: 2,
            flush_interval: Duration::from_millis(50),
        };
        let (raw_tx, raw_rx) = channel::<RawMessage>("raw-test", 16);
        let (ev_tx, mut ev_rx) = channel::<Event>("events-test", 16);
        let stage = tokio::spawn(run_capture(raw_rx, ev_tx, Some(settings)));
        let day = Ts::parse("2024-08-08T23:59:59Z").expect("t").0;
        let sent = vec![
            msg(
                day,
                r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"1.5","q":"2","T":1,"m":true,"M":true}}"#,
            ),
            msg(day + 1, "not json at all"),
            msg(day + 2_000_000_000, r#"{"result":null,"id":1}"#),
        ];
        for m in &sent {
            raw_tx.send(m.clone()).await.expect("send");
        }
        drop(raw_tx);
        let mut events = Vec::new();
        while let Some(e) = ev_rx.recv().await {
            events.push(e);
        }
        let stats = stage.await.expect("join").expect("capture");
        assert_eq!((stats.messages, stats.taped), (3, 3));
        assert!(matches!(events[0], Event::Trade(_)));
        assert!(
            matches!(&events[1], Event::IngestError(e) if e.message.contains("malformed")),
            "{:?}",
            events[1]
        );
        assert_eq!(
            events.len(),
            2,
            "the subscription ack is ignored, not an event"
        );

        // Two UTC days, two tapes; together they hold every message exactly.
        let mut back = Vec::new();
        for day_start in [Ts(day).day_start(), Ts(day + 2_000_000_000).day_start()] {
            let path = TapeWriter::path_for(dir.path(), Exchange::Binance, day_start);
            back.extend(
                Recording::open(&path)
                    .expect("tape")
                    .map(|r| r.expect("line")),
            );
        }
        assert_eq!(back, sent);
    }
}
