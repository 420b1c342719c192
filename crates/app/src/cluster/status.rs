//! Collectors' connector states, reported as notes (core NATS, or the
//! Kafka notes topic) and followed by API nodes.

use super::*;

/// How often a collector reports its connectors' state.
pub const STATUS_EVERY: Duration = Duration::from_secs(2);

/// One connector's state as a collector reports it on core NATS.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct StatusReport {
    node: String,
    connector: ConnectorSnapshot,
}

/// Collector side: reports the state of this process's connectors on core
/// NATS (`<prefix>.status.<exchange>`) every [`STATUS_EVERY`], so that API
/// nodes show them (`/api/v1/connectors`), until `stop`.
pub async fn publish_status(bus: Bus, connectors: Arc<ConnectorRegistry>, stop: CancellationToken) {
    let node = node_name();
    let mut tick = tokio::time::interval(STATUS_EVERY);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        for connector in connectors.local() {
            let exchange = connector.exchange;
            let report = StatusReport {
                node: node.clone(),
                connector,
            };
            let Ok(body) = serde_json::to_vec(&report) else {
                continue;
            };
            bus.note("status", exchange.as_str(), body).await;
        }
    }
}

/// API side: records the connector states collectors report, until `stop`.
///
/// # Errors
/// When the subscription cannot be made.
pub async fn follow_status(
    bus: Bus,
    connectors: Arc<ConnectorRegistry>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    bus.follow("status", stop, |report: StatusReport| {
        connectors.report(&report.node, report.connector);
    })
    .await
}
