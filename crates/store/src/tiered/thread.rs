//! The one thread an import's direct archive work runs on
//! ([`super::direct`]).
//!
//! Run on tokio's blocking pool, each write landed on whichever pool
//! thread was free, and glibc gives each thread its own arena: the buffers
//! of the days being written (a row group of trades, a day of candles, the
//! column encoders) moved from arena to arena as they grew and were freed,
//! and each arena kept its own high-water mark. Peak memory then grew with
//! the input's length (138 MiB at 2 M trades, up to 216 MiB at 40 M). On
//! one thread they stay in one arena.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;

use crate::Error;

type Job = Box<dyn FnOnce() + Send>;

/// A running thread that runs jobs in order. It stops when the last
/// handle is dropped.
#[derive(Clone)]
pub(super) struct ArchiveThread {
    jobs: mpsc::Sender<Job>,
}

impl ArchiveThread {
    /// Starts the thread.
    pub(super) fn start() -> Result<ArchiveThread, Error> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("ck-archive-import".into())
            .spawn(move || {
                for job in queue {
                    job();
                }
            })
            .map_err(|source| Error::Io {
                path: "a thread for the archive".into(),
                source,
            })?;
        Ok(ArchiveThread { jobs })
    }

    /// Runs `job` on the thread and waits for it. `Err` names why it did
    /// not return: it panicked, or the thread is gone.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, String> {
        let (done, result) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = done.send(std::panic::catch_unwind(AssertUnwindSafe(job)));
            }))
            .map_err(|_| "the archive thread is gone".to_owned())?;
        match result.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(panic)) => {
                let why = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".to_owned());
                Err(format!("the archive worker panicked: {why}"))
            }
            Err(_) => Err("the archive thread is gone".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_on_one_thread_and_a_panic_is_an_error_not_the_end() {
        let thread = ArchiveThread::start().expect("started");
        let first = thread
            .run(|| std::thread::current().id())
            .await
            .expect("ran");
        let failed = thread.run(|| panic!("no disk")).await;
        assert_eq!(
            failed.err().as_deref(),
            Some("the archive worker panicked: no disk")
        );
        let second = thread
            .run(|| std::thread::current().id())
            .await
            .expect("ran after the panic");
        assert_eq!(first, second, "one thread");
        assert_ne!(first, std::thread::current().id());
    }
}
