//! The API node role: live updates from the processors (core NATS, or the
//! Kafka notes topic).

use super::*;

/// API side: feeds live updates from the processors into this process's live feed
/// (for WebSocket clients), until `stop`.
///
/// # Errors
/// When the subscription cannot be made.
pub async fn follow_live(bus: Bus, feed: LiveFeed, stop: CancellationToken) -> anyhow::Result<()> {
    bus.follow("live", stop, |wire: Wire| {
        let _ = feed.send(Arc::new(wire.into_event()));
    })
    .await
}
