//! The API node role: live updates from the processors, over core NATS.

use super::*;

/// API side: feeds live updates from NATS into this process's live feed
/// (for WebSocket clients), until `stop`.
///
/// # Errors
/// When the subscription cannot be made.
pub async fn follow_live(
    cluster: Arc<Cluster>,
    feed: LiveFeed,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    follow(&cluster, "live", stop, |wire: Wire| {
        let _ = feed.send(Arc::new(wire.into_event()));
    })
    .await
}
