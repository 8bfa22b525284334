//! `sluice run` and `sluice validate`.

use std::path::PathBuf;

use crate::config::{self, StepName};
use crate::pipeline::{self, RunOptions, RunOutcome};
use crate::session::{EngineMode, EngineSettings};

/// Arguments of `sluice run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Pipeline config (YAML).
    pub config: PathBuf,
    /// Run only these steps, comma-separated (e.g. `features,train`).
    #[arg(long, value_delimiter = ',')]
    pub steps: Option<Vec<String>>,
    /// Run from this step to the end.
    #[arg(long)]
    pub from: Option<String>,
    /// Resume a run: skip steps whose committed output matches.
    #[arg(long, conflicts_with = "run_id")]
    pub resume: Option<String>,
    /// Use this run id (e.g. Airflow's `{{ run_id }}`), continuing it if it exists.
    #[arg(long)]
    pub run_id: Option<String>,
    /// Train only these models (comma-separated names from the config).
    #[arg(long, value_delimiter = ',')]
    pub model: Option<Vec<String>>,
    /// Run on a Ballista scheduler (`df://host:50050`) instead of the config's engine.
    #[arg(long, env = "SLUICE_SCHEDULER")]
    pub scheduler: Option<String>,
    /// Override the config's lake location.
    #[arg(long, env = "SLUICE_LAKE")]
    pub lake: Option<String>,
    /// Inference: read only these Hive partitions of the raw tables
    /// (`date=2026-11-28`, or a range `date=2026-11-01..2026-11-07`;
    /// repeatable), replacing the ingest step's `partitions`. Predictions of
    /// a single day go to `predictions/date=<day>/`.
    #[arg(long = "partition", value_name = "KEY=VALUE")]
    pub partition: Vec<String>,
}

/// Sets the ingest step's partition filters from `--partition`.
pub fn apply_partitions(
    cfg: &mut config::LoadedConfig,
    partition: &[String],
) -> anyhow::Result<()> {
    if partition.is_empty() {
        return Ok(());
    }
    let filters = partition
        .iter()
        .map(|p| crate::ingest::PartitionFilter::parse(p))
        .collect::<Result<Vec<_>, _>>()?;
    if cfg.config.kind != config::PipelineKind::Inference {
        anyhow::bail!(crate::error::EngineError::config(
            "--partition",
            format!(
                "partition filters apply to inference pipelines; `{}` is a training pipeline",
                cfg.path
            ),
        ));
    }
    let ingest = cfg.config.steps.iter_mut().find_map(|s| match s {
        config::StepConfig::Ingest(i) => Some(i),
        _ => None,
    });
    match ingest {
        Some(i) => i.partitions = filters,
        None => anyhow::bail!(crate::error::EngineError::config(
            "--partition",
            format!("`{}` has no ingest step to filter", cfg.path),
        )),
    }
    Ok(())
}

/// Arguments of `sluice validate`.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Config files to check.
    #[arg(required = true)]
    pub configs: Vec<PathBuf>,
}

/// Converts CLI arguments into run options.
pub fn options(args: &RunArgs, cfg: &config::LoadedConfig) -> anyhow::Result<RunOptions> {
    let steps = args
        .steps
        .as_ref()
        .map(|v| {
            v.iter()
                .map(|s| StepName::parse(s))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let from = args.from.as_deref().map(StepName::parse).transpose()?;
    let engine = args.scheduler.as_ref().map(|s| EngineSettings {
        mode: EngineMode::Ballista,
        scheduler: Some(s.clone()),
        ..cfg.config.engine.clone()
    });
    Ok(RunOptions {
        steps,
        from,
        resume: args.resume.clone(),
        run_id: args.run_id.clone(),
        models: args.model.clone(),
        engine,
        lake: args.lake.clone(),
    })
}

/// Exit code of `sluice run` when the inference input drifted from the
/// model's reference (`drift.json` has `"drifted": true`) and the predict
/// step sets `drift.exit_on_drift`; every output is committed all the same.
pub const DRIFTED_EXIT_CODE: i32 = 3;

/// Prints the outcome of a run for people.
pub fn print_outcome(o: &RunOutcome) {
    println!("pipeline {}  run {}", o.pipeline, o.run_id);
    for s in &o.steps {
        println!(
            "  {:<9} {:<12} {:>8.2}s  {}",
            s.step.as_str(),
            s.status,
            s.seconds,
            s.output
        );
    }
    if !o.report_html.is_empty() {
        println!("  report: {}{}", o.lake, o.report_html);
    }
    let s = &o.summary;
    if let Some(best) = s.get("best_model").and_then(|b| b.as_str()) {
        println!("  best model: {best}");
        if let Some(models) = s.get("evaluation").and_then(|e| e.as_object()) {
            for (name, m) in models {
                println!(
                    "    {name:<8} accuracy {:.4}  auc {:.4}  f1 {:.4}",
                    m["accuracy"].as_f64().unwrap_or(f64::NAN),
                    m["auc"].as_f64().unwrap_or(f64::NAN),
                    m["f1"].as_f64().unwrap_or(f64::NAN)
                );
            }
        }
    }
    if let Some(d) = s.get("deployed").filter(|d| !d.is_null()) {
        println!(
            "  deployed: {} {}",
            d["name"].as_str().unwrap_or("?"),
            d["version"].as_str().unwrap_or("?")
        );
    }
    if let Some(p) = s.get("predictions").and_then(|p| p.as_str()) {
        println!("  predictions: {p} ({} rows)", s["predicted_rows"]);
    }
    if let Some(d) = &o.drift {
        let top: Vec<String> = d
            .features
            .iter()
            .take(3)
            .map(|f| format!("{} {:.3}", f.name, f.psi))
            .collect();
        println!(
            "  drift: {} (PSI top: {}; prediction {:.3})",
            if d.drifted { "DRIFTED" } else { "none" },
            top.join(", "),
            d.prediction.psi
        );
    }
    if let Some(sc) = s.get("scoring").filter(|d| !d.is_null()) {
        println!(
            "  vs truth labels: accuracy {:.4}  auc {:.4}",
            sc["accuracy"].as_f64().unwrap_or(f64::NAN),
            sc["auc"].as_f64().unwrap_or(f64::NAN)
        );
    }
}

/// Runs `sluice run`.
pub async fn run(args: RunArgs) -> anyhow::Result<i32> {
    let mut cfg = config::load(&args.config)?;
    apply_partitions(&mut cfg, &args.partition)?;
    let opts = options(&args, &cfg)?;
    let outcome = pipeline::run(&cfg, &opts).await?;
    print_outcome(&outcome);
    Ok(match &outcome.drift {
        Some(d) if d.drifted && d.thresholds.exit_on_drift => DRIFTED_EXIT_CODE,
        _ => 0,
    })
}

/// Runs `sluice validate`.
pub fn validate(args: ValidateArgs) -> anyhow::Result<i32> {
    let mut bad = 0;
    for p in &args.configs {
        match config::load(p) {
            Ok(c) => println!(
                "{}: ok ({:?} pipeline `{}`, {} steps)",
                p.display(),
                c.config.kind,
                c.config.name,
                c.config.steps.len()
            ),
            Err(e) => {
                bad += 1;
                eprintln!("{e}");
            }
        }
    }
    Ok(if bad == 0 { 0 } else { 2 })
}
