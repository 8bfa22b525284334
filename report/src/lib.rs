//! # sluice-report
//!
//! The run report: `report.html` and `report.json` for one pipeline run.
//! It depends on no engine, DataFusion or command-line crate: the engine
//! fills a [`RunReport`] from its typed step outputs (`report_build.rs`,
//! whose shared facts are in [`facts`]) and renders it with [`render_html`]
//! and [`render_json`]:
//!
//! * `report.html`: one self-contained page (inline CSS and SVG charts drawn
//!   with `plotters`, no scripts, no external assets): run metadata, the
//!   failing step of a failed run, warnings, train/test sizes and class
//!   balance, every model's parameters and metrics, ROC curves (linear and
//!   log-scaled false positive rate), precision-recall and calibration
//!   curves, score histograms by true class, confusion matrices, the grid
//!   search as a table (per-fold scores) and a heat map, learning curves,
//!   feature importance by gain and by split count, the deployed model; for
//!   inference the model used and its provenance, where the predictions
//!   went, their probability distribution and the scoring against truth;
//!   step timings and row counts. Every chart sits in a
//!   `<figure data-chart=.. data-series=..>` naming its series (the browser
//!   test in `tests/ux/` checks each is drawn);
//! * `report.json`: the same [`RunReport`] as JSON, every number included,
//!   readable back with [`parse_json`].
//!
//! Credentials in the lake URL and step outputs are redacted in both files
//! ([`redact_url`]); every string is HTML-escaped.
//!
//! To add a section: add the data to [`RunReport`] (with `#[serde(default)]`
//! semantics so older `report.json` files still read), render it in
//! `html.rs` and, for a chart, add a function to `plots.rs` that returns one
//! `<svg>` document.

mod drift;
pub mod facts;
mod format;
mod html;
mod model;
mod plots;
mod redact;

use std::path::{Path, PathBuf};

pub use drift::{DriftRow, DriftSection, DRIFT_PLOTS};
pub use format::escape_html;
pub use html::TOP_FEATURES;
pub use model::{
    Confusion, DataReport, DeployedModel, Failure, GridPoint, Importance, InferenceReport,
    MetricSet, ModelReport, RunReport, StepReport, StepStatus, TruthReport,
};
pub use plots::confusion_chart;
pub use redact::{redact_url, REDACTED};

use sluice_common::error::{EngineError, Result};

/// File name of the HTML report inside a run directory.
pub const HTML_FILE: &str = "report.html";
/// File name of the JSON report inside a run directory.
pub const JSON_FILE: &str = "report.json";

/// Renders the self-contained HTML page for `report`.
pub fn render_html(report: &RunReport) -> Result<String> {
    html::render(report)
}

/// Renders `report` as pretty-printed JSON with credentials redacted.
/// Non-finite numbers are written as `null`.
pub fn render_json(report: &RunReport) -> Result<String> {
    serde_json::to_string_pretty(&redacted(report))
        .map_err(|e| EngineError::Internal(format!("serializing the run report: {e}")))
}

/// Reads a `report.json` back into a [`RunReport`].
pub fn parse_json(json: &str) -> Result<RunReport> {
    serde_json::from_str(json).map_err(|e| {
        EngineError::data(
            format!("{JSON_FILE} line {} column {}", e.line(), e.column()),
            format!("not a Sluice run report: {e}"),
        )
    })
}

/// A copy of `report` with credentials removed from every URL it carries.
pub fn redacted(report: &RunReport) -> RunReport {
    let mut r = report.clone();
    r.lake_url = redact_url(&r.lake_url);
    for s in &mut r.steps {
        if let Some(o) = &s.output {
            s.output = Some(redact_url(o));
        }
    }
    if let Some(i) = &mut r.inference {
        i.predictions = redact_url(&i.predictions);
    }
    r
}

/// Paths of the files written by [`write_report`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportFiles {
    /// The HTML page.
    pub html: PathBuf,
    /// The JSON document.
    pub json: PathBuf,
}

/// Renders both files and writes them into `dir` (created if missing). Each
/// file is written to a temporary name first and renamed, so a reader never
/// sees a half-written report.
pub fn write_report(report: &RunReport, dir: &Path) -> Result<ReportFiles> {
    let html = render_html(report)?;
    let json = render_json(report)?;
    std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
    let files = ReportFiles {
        html: dir.join(HTML_FILE),
        json: dir.join(JSON_FILE),
    };
    write_atomic(&files.html, html.as_bytes())?;
    write_atomic(&files.json, json.as_bytes())?;
    Ok(files)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).map_err(|e| EngineError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| EngineError::io(path, e))
}
