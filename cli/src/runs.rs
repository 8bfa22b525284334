//! `sluice runs list|show`: the runs recorded in the lake, from their run
//! markers and reports.

use serde::Serialize;

use super::table;
use sluice_common::logfmt::num;
use sluice_engine::pipeline::{RunMarker, RUN_MARKER};
use sluice_engine::report::{self, RunReport, StepStatus};
use sluice_lake::lake::Lake;

/// Arguments of `sluice runs`.
#[derive(Debug, clap::Args)]
pub struct RunsArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: RunsAction,
}

/// `runs` actions.
#[derive(Debug, clap::Subcommand)]
pub enum RunsAction {
    /// List runs, oldest first.
    List {
        /// Only runs of this pipeline.
        #[arg(long)]
        pipeline: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one run: steps, models, deployed version, predictions, failure.
    Show {
        /// The run id (as `runs list` prints it).
        run_id: String,
        /// Print the run's report.json instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// How a run ended, from its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Every selected step ran or was reused.
    Succeeded,
    /// A step failed (the report names it).
    Failed,
    /// No report yet: still running, or killed (`--resume` finishes it).
    Incomplete,
}

/// One run as listed.
#[derive(Debug, Clone, Serialize)]
pub struct RunEntry {
    /// Pipeline name.
    pub pipeline: String,
    /// Run id.
    pub run_id: String,
    /// When it was (last) started.
    pub started_at: String,
    /// How it ended.
    pub state: RunState,
    /// The failing step, for a failed run.
    pub failed_step: Option<String>,
    /// Lake-relative directory of the run.
    pub dir: String,
}

fn state_of(report: Option<&RunReport>) -> (RunState, Option<String>) {
    match report {
        None => (RunState::Incomplete, None),
        Some(r) => match (
            &r.failure,
            r.steps.iter().find(|s| s.status == StepStatus::Failed),
        ) {
            (Some(f), _) => (RunState::Failed, Some(f.step.clone())),
            (None, Some(s)) => (RunState::Failed, Some(s.name.clone())),
            (None, None) => (RunState::Succeeded, None),
        },
    }
}

async fn read_report(lake: &Lake, dir: &str) -> anyhow::Result<Option<RunReport>> {
    let path = format!("{dir}/{}", report::JSON_FILE);
    if !lake.exists(&path).await? {
        return Ok(None);
    }
    let bytes = lake.get(&path).await?;
    let text = String::from_utf8_lossy(&bytes);
    Ok(Some(report::parse_json(&text).map_err(|e| {
        anyhow::anyhow!("{}: {e}", lake.table_url(&path))
    })?))
}

/// Every run in the lake (of `pipeline`, if given), oldest first.
pub async fn list(lake: &Lake, pipeline: Option<&str>) -> anyhow::Result<Vec<RunEntry>> {
    let mut out = Vec::new();
    for p in lake.list_dirs("runs/").await? {
        if pipeline.is_some_and(|want| want != p) {
            continue;
        }
        for id in lake.list_dirs(&format!("runs/{p}/")).await? {
            let dir = format!("runs/{p}/{id}");
            let marker_path = format!("{dir}/{RUN_MARKER}");
            let started_at = if lake.exists(&marker_path).await? {
                let m: RunMarker =
                    serde_json::from_slice(&lake.get(&marker_path).await?).map_err(|e| {
                        anyhow::anyhow!("{}: not a run marker: {e}", lake.table_url(&marker_path))
                    })?;
                m.last_started_at
            } else {
                String::new()
            };
            let rep = read_report(lake, &dir).await?;
            let (state, failed_step) = state_of(rep.as_ref());
            out.push(RunEntry {
                pipeline: p.clone(),
                run_id: id,
                started_at,
                state,
                failed_step,
                dir,
            });
        }
    }
    out.sort_by(|a, b| a.run_id.cmp(&b.run_id));
    Ok(out)
}

/// The directory of run `run_id` (whatever its pipeline).
pub async fn find(lake: &Lake, run_id: &str) -> anyhow::Result<RunEntry> {
    let all = list(lake, None).await?;
    let known: Vec<String> = all.iter().rev().take(5).map(|r| r.run_id.clone()).collect();
    all.into_iter().find(|r| r.run_id == run_id).ok_or_else(|| {
        anyhow::anyhow!(
            "no run `{run_id}` in {}; latest runs: {} (see `sluice runs list`)",
            sluice_lake::lake::redact(lake.url()),
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        )
    })
}

/// Runs `sluice runs`.
pub async fn run(args: RunsArgs, lake: &str) -> anyhow::Result<i32> {
    let lake = Lake::open_existing(lake)?;
    match args.action {
        RunsAction::List { pipeline, json } => {
            let runs = list(&lake, pipeline.as_deref()).await?;
            if json {
                table::print_json(&runs)?;
            } else if runs.is_empty() {
                println!("no runs in {}", sluice_lake::lake::redact(lake.url()));
            } else {
                let mut t = table::new(&["run", "pipeline", "started", "state"], &[]);
                for r in &runs {
                    let state = match (&r.state, &r.failed_step) {
                        (RunState::Failed, Some(s)) => format!("failed at {s}"),
                        (RunState::Failed, None) => "failed".into(),
                        (RunState::Succeeded, _) => "succeeded".into(),
                        (RunState::Incomplete, _) => "incomplete".into(),
                    };
                    t.add_row(vec![
                        r.run_id.clone(),
                        r.pipeline.clone(),
                        r.started_at.clone(),
                        state,
                    ]);
                }
                table::print(&t);
            }
        }
        RunsAction::Show { run_id, json } => {
            let entry = find(&lake, &run_id).await?;
            let rep = read_report(&lake, &entry.dir).await?;
            if json {
                match &rep {
                    Some(r) => table::print_json(r)?,
                    None => table::print_json(&entry)?,
                }
                return Ok(0);
            }
            show(&lake, &entry, rep.as_ref());
        }
    }
    Ok(0)
}

fn show(lake: &Lake, e: &RunEntry, rep: Option<&RunReport>) {
    println!("run {}  pipeline {}", e.run_id, e.pipeline);
    println!("  started:  {}", e.started_at);
    println!("  directory: {}", lake.table_url(&e.dir));
    let Some(r) = rep else {
        println!("  state:    incomplete (no report yet: still running or killed; finish it with `sluice run <config> --resume {}`)", e.run_id);
        return;
    };
    println!(
        "  state:    {}",
        match state_of(Some(r)) {
            (RunState::Failed, Some(s)) => format!("failed at step {s}"),
            (RunState::Failed, None) => "failed".into(),
            _ => "succeeded".into(),
        }
    );
    if let Some(f) = &r.failure {
        println!("  error:    {}", f.error);
    }
    let mut t = table::new(
        &["step", "status", "seconds", "rows", "output"],
        &["seconds", "rows"],
    );
    for s in &r.steps {
        t.add_row(vec![
            s.name.clone(),
            s.status.as_str().to_string(),
            format!("{:.1}", s.seconds),
            s.rows_out.map_or_else(String::new, |n| n.to_string()),
            s.output.clone().unwrap_or_default(),
        ]);
    }
    table::print(&t);
    for m in &r.models {
        println!(
            "  model {:<6} accuracy {}  auc {}  f1 {}  log-loss {}",
            m.name,
            num(m.metrics.accuracy.unwrap_or(f64::NAN)),
            num(m.metrics.auc.unwrap_or(f64::NAN)),
            num(m.metrics.f1.unwrap_or(f64::NAN)),
            num(m.metrics.log_loss.unwrap_or(f64::NAN))
        );
    }
    if let Some(d) = &r.deployed {
        println!(
            "  deployed: {} {} (model {}, {} {})",
            d.name,
            d.version,
            d.model,
            d.metric,
            num(d.value)
        );
    }
    if let Some(i) = &r.inference {
        println!(
            "  predictions: {} ({} rows) with {} {}",
            i.predictions, i.rows, i.model.name, i.model.version
        );
    }
    println!(
        "  report:   {}",
        lake.table_url(&format!("{}/{}", e.dir, report::HTML_FILE))
    );
}
