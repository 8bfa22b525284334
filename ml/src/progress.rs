//! Progress events, so callers can drive a progress bar or log lines.

use serde::Serialize;

/// Something observable happened during training or model selection.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum TrainEvent {
    /// A boosting round finished (`done` of `total` trees).
    TreeBuilt {
        /// Trees built so far.
        done: usize,
        /// Trees planned.
        total: usize,
        /// Validation log-loss after this round, when early stopping is on.
        validation_loss: Option<f64>,
    },
    /// A batch of forest trees finished.
    TreesBuilt {
        /// Trees built so far.
        done: usize,
        /// Trees planned.
        total: usize,
    },
    /// Boosting stopped early at `best_iteration` trees.
    EarlyStopped {
        /// Number of trees kept.
        best_iteration: usize,
    },
    /// One (grid point, fold) fit was scored.
    FoldDone {
        /// Jobs finished so far.
        done: usize,
        /// Jobs in total (grid points x folds).
        total: usize,
    },
    /// A grid point's cross-validated score is final.
    GridPointDone {
        /// Index of the grid point.
        index: usize,
        /// Number of grid points.
        total: usize,
        /// Mean score over folds.
        mean_score: f64,
    },
}

/// Optional progress callback accepted by the training entry points.
pub type Progress<'a> = Option<&'a (dyn Fn(TrainEvent) + Sync)>;

pub(crate) fn emit(p: Progress<'_>, e: TrainEvent) {
    tracing::debug!(?e, "sluice-ml progress");
    if let Some(f) = p {
        f(e);
    }
}
