//! The facts a step output shares with the report: a step's status, class
//! counts, evaluation curves and a model's provenance. The engine's typed
//! step outputs (`sluice_engine::outputs`) hold them and re-export them;
//! the report reads them without depending on the engine.

use serde::{Deserialize, Serialize};
use sluice_ml::curves::CalibrationBin;
use sluice_ml::{Metrics, ModelKind};

/// What happened to one step in one `sluice run` invocation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// The step ran and committed its output.
    #[default]
    Ran,
    /// The step's committed output matched its parameters and inputs: reused.
    Skipped,
    /// Outside `--steps`/`--from`: not run by this invocation.
    NotSelected,
    /// The step failed; the run stopped there.
    Failed,
}

impl StepStatus {
    /// The name as printed and written to reports (`ran`, `not_selected`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Ran => "ran",
            StepStatus::Skipped => "skipped",
            StepStatus::NotSelected => "not_selected",
            StepStatus::Failed => "failed",
        }
    }
}

impl std::fmt::Display for StepStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Rows per class of a labelled table (`indoor` 1 = indoor, 0 = outdoor).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassCounts {
    /// Rows labelled indoor (1).
    pub indoor: u64,
    /// Rows labelled outdoor (0).
    pub outdoor: u64,
}

impl ClassCounts {
    /// Counts the 0/1 labels.
    pub fn of(labels: &[u8]) -> Self {
        let indoor = labels.iter().filter(|&&v| v == 1).count() as u64;
        Self {
            indoor,
            outdoor: labels.len() as u64 - indoor,
        }
    }

    /// All rows.
    pub fn total(&self) -> u64 {
        self.indoor + self.outdoor
    }

    /// Share of indoor rows (`None` for an empty table).
    pub fn indoor_share(&self) -> Option<f64> {
        (self.total() > 0).then(|| self.indoor as f64 / self.total() as f64)
    }
}

/// Predicted probabilities in equal-width bins over `[0, 1]`, per true class.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScoreHistogram {
    /// Rows per bin whose truth is indoor (1); empty without labels.
    #[serde(default)]
    pub indoor: Vec<u64>,
    /// Rows per bin whose truth is outdoor (0); empty without labels.
    #[serde(default)]
    pub outdoor: Vec<u64>,
    /// All rows per bin (labelled or not).
    pub all: Vec<u64>,
}

/// Curves of one model on a labelled set, for the report's plots.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalCurves {
    /// Precision-recall curve as `(recall, precision)` points.
    #[serde(default)]
    pub pr: Vec<(f64, f64)>,
    /// Reliability diagram (10 bins, empty ones left out).
    #[serde(default)]
    pub calibration: Vec<CalibrationBin>,
    /// Score histogram (20 bins).
    #[serde(default)]
    pub histogram: ScoreHistogram,
    /// Held-out log-loss after `n` trees, as `(n, log-loss)`.
    #[serde(default)]
    pub learning_curve: Vec<(usize, f64)>,
}

/// Where a registered model came from, as an inference run shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelProvenance {
    /// Registry name.
    pub name: String,
    /// Registry version.
    pub version: String,
    /// The trained model's config name (`gbt`, `rf`).
    pub model: String,
    /// Model family.
    #[serde(default)]
    pub kind: Option<ModelKind>,
    /// Training pipeline that deployed it.
    #[serde(default)]
    pub pipeline: Option<String>,
    /// Training run that deployed it.
    #[serde(default)]
    pub run_id: Option<String>,
    /// When the version was committed (RFC 3339).
    pub committed_at: String,
    /// Held-out metrics recorded with the model.
    #[serde(default)]
    pub metrics: Option<Metrics>,
}
