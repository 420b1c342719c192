//! Stages that cannot do their work right now, for readiness (`/health`).
//!
//! A stage reports a problem while it lasts (the store writer while its
//! commits fail and it holds the batch) and clears it when it is over. The
//! API's readiness lists every problem on the process's [`Board`]; the
//! process stays up meanwhile and nothing queued is dropped.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Problems by stage.
#[derive(Debug, Default)]
pub struct Board {
    problems: Mutex<BTreeMap<&'static str, String>>,
}

impl Board {
    /// The process's board, which the pipeline's stages report to.
    #[must_use]
    pub fn process() -> Arc<Board> {
        static BOARD: OnceLock<Arc<Board>> = OnceLock::new();
        BOARD.get_or_init(Arc::default).clone()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, String>> {
        self.problems
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records that `stage` cannot do its work, and why (replacing what it
    /// reported before).
    pub fn report(&self, stage: &'static str, problem: String) {
        self.map().insert(stage, problem);
    }

    /// Records that `stage` works again.
    pub fn clear(&self, stage: &'static str) {
        self.map().remove(stage);
    }

    /// Every problem reported and not cleared, as `stage: problem`.
    #[must_use]
    pub fn problems(&self) -> Vec<String> {
        self.map()
            .iter()
            .map(|(stage, problem)| format!("{stage}: {problem}"))
            .collect()
    }
}

/// [`Board::report`] on the process's board.
pub fn report(stage: &'static str, problem: String) {
    Board::process().report(stage, problem);
}

/// [`Board::clear`] on the process's board.
pub fn clear(stage: &'static str) {
    Board::process().clear(stage);
}

/// [`Board::problems`] of the process's board.
#[must_use]
pub fn problems() -> Vec<String> {
    Board::process().problems()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_last_until_cleared() {
        let board = Board::default();
        board.report("writer", "the disk is full".into());
        assert_eq!(
            board.problems(),
            vec!["writer: the disk is full".to_owned()]
        );
        board.clear("writer");
        assert!(board.problems().is_empty());
    }
}
