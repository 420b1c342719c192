//! Stopping on a signal. SIGINT (Ctrl-C) and SIGTERM (what systemd, Docker
//! and Kubernetes send) both ask for a clean stop: sources stop and queued
//! work is committed. A second signal stops the process at once; what was
//! committed stays committed.

use tokio_util::sync::CancellationToken;

/// The stop signals, listened for from when this is made.
pub(crate) struct StopSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Starts listening (inside the runtime). From here on, neither signal
    /// ends the process by itself.
    pub(crate) fn listen() -> std::io::Result<StopSignals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(StopSignals {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(StopSignals {})
    }

    /// Waits for the next stop signal; its name.
    pub(crate) async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => "SIGINT",
                _ = self.terminate.recv() => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            match tokio::signal::ctrl_c().await {
                Ok(()) => "Ctrl-C",
                Err(_) => std::future::pending().await,
            }
        }
    }
}

/// Cancels `token` on the first stop signal, logging `stopping`; exits at
/// once with status 130 on a second.
pub(crate) fn cancel_on_signal(
    token: CancellationToken,
    stopping: &'static str,
) -> std::io::Result<()> {
    let mut signals = StopSignals::listen()?;
    tokio::spawn(async move {
        let first = signals.next().await;
        tracing::info!(signal = first, "{stopping}; a second signal stops at once");
        token.cancel();
        let second = signals.next().await;
        eprintln!("{second} again: stopping now, without finishing queued work");
        std::process::exit(130);
    });
    Ok(())
}
