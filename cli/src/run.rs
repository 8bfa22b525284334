//! `sluice run` and `sluice validate`.

use std::path::PathBuf;

use sluice_core::session::{EngineMode, EngineSettings};
use sluice_engine::config::{self, StepName};
use sluice_engine::pipeline::{self, RunOptions, RunOutcome, RunPlan};

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
    /// Inference: read only these Hive partitions of the raw tables
    /// (`date=2026-11-28`, or a range `date=2026-11-01..2026-11-07`;
    /// repeatable), replacing the ingest step's `partitions`. A range runs
    /// once per partition value found, so each day's predictions go to
    /// `predictions/date=<day>/`, as a single day's do.
    #[arg(long = "partition", value_name = "KEY=VALUE")]
    pub partition: Vec<String>,
    /// Check everything and print what would run (lake, engine, steps,
    /// model fits) without reading or writing data.
    #[arg(long)]
    pub dry_run: bool,
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
        .map(|p| sluice_engine::ingest::PartitionFilter::parse(p))
        .collect::<Result<Vec<_>, _>>()?;
    if cfg.config.kind != config::PipelineKind::Inference {
        anyhow::bail!(sluice_common::error::EngineError::config(
            "--partition",
            format!(
                "partition filters apply to inference pipelines; `{}` is a training pipeline",
                cfg.path
            ),
        ));
    }
    match cfg.config.ingest_mut() {
        Some(i) => i.partitions = filters,
        None => anyhow::bail!(sluice_common::error::EngineError::config(
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
pub fn options(
    args: &RunArgs,
    lake: Option<String>,
    cfg: &config::LoadedConfig,
) -> anyhow::Result<RunOptions> {
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
        lake,
    })
}

/// Exit code of `sluice run` when the inference input drifted from the
/// model's reference (`drift.json` has `"drifted": true`) and the predict
/// step sets `drift.exit_on_drift`; every output is committed all the same.
pub const DRIFTED_EXIT_CODE: i32 = 3;

/// Prints the outcome of a run for people.
pub fn print_outcome(o: &RunOutcome) {
    use sluice_common::logfmt::num;
    println!("pipeline {}  run {}", o.pipeline, o.run_id);
    for s in &o.steps {
        println!(
            "  {:<9} {:<12} {:>8.2}s  {}",
            s.step.as_str(),
            s.status.as_str(),
            s.seconds,
            s.output
        );
    }
    if !o.report_html.is_empty() {
        println!("  report: {}", join_url(&o.lake, &o.report_html));
    }
    let s = &o.summary;
    if let Some(e) = &s.evaluation {
        println!("  best model: {}", e.best);
        for (name, m) in &e.models {
            let m = &m.metrics;
            println!(
                "    {name:<8} accuracy {}  auc {}  f1 {}",
                num(m.accuracy),
                num(m.auc),
                num(m.f1)
            );
        }
    }
    if let Some(d) = &s.deployed {
        println!("  deployed: {} {}", d.name, d.version);
    }
    if let (Some(p), Some(url)) = (&s.predictions, &s.predictions_url) {
        println!("  predictions: {url} ({} rows)", p.rows);
        if let Some(sc) = &p.scoring {
            println!(
                "  vs truth labels: accuracy {}  auc {}",
                num(sc.metrics.accuracy),
                num(sc.metrics.auc)
            );
        }
        if let Some(d) = &p.drift {
            let top: Vec<String> = d
                .features
                .iter()
                .take(3)
                .map(|f| format!("{} {}", f.name, num(f.psi)))
                .collect();
            println!(
                "  drift: {} (PSI top: {}; prediction {})",
                if d.drifted { "DRIFTED" } else { "none" },
                top.join(", "),
                num(d.prediction.psi)
            );
        }
    }
}

/// `base` and a lake-relative `path` joined by exactly one `/`.
fn join_url(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

/// Prints what a run would do.
pub fn print_plan(p: &RunPlan) {
    println!("pipeline {}  ({})", p.pipeline, p.config);
    println!("  lake:    {}", p.lake);
    println!(
        "  engine:  {}{}",
        p.engine,
        p.memory_limit
            .as_ref()
            .map_or_else(String::new, |m| format!(", memory limit {m}"))
    );
    if let Some(r) = &p.run_id {
        println!("  run:     {r} (steps whose output matches are skipped)");
    }
    let steps: Vec<String> = p
        .steps
        .iter()
        .map(|(s, on)| {
            if *on {
                s.to_string()
            } else {
                format!("({s}: not selected)")
            }
        })
        .collect();
    println!("  steps:   {}", steps.join(" → "));
    for m in &p.models {
        if m.folds == 0 {
            println!("  model {:<8} 1 fit", m.model);
        } else {
            println!(
                "  model {:<8} {} grid points × {} folds + 1 refit = {} fits",
                m.model, m.grid_points, m.folds, m.fits
            );
        }
    }
    if !p.models.is_empty() {
        println!("  model fits in total: {}", p.total_fits());
    }
    if let Some(v) = &p.model_version {
        println!("  predicts with: {v}");
    }
}

/// Runs `sluice run`. A ranged partition filter runs once per partition
/// value found in the lake (`pipeline::days`), in order; the exit code is
/// the highest of the runs'.
pub async fn run(args: RunArgs, lake: Option<String>) -> anyhow::Result<i32> {
    let mut cfg = config::load(&args.config)?;
    apply_partitions(&mut cfg, &args.partition)?;
    let opts = options(&args, lake, &cfg)?;
    let days = pipeline::days::split(&cfg, &opts).await?;
    if args.dry_run {
        let plan = pipeline::check(&cfg, &opts).await?;
        print_plan(&plan);
        if let Some(days) = &days {
            let names: Vec<&str> = days.iter().map(|d| d.partition.as_str()).collect();
            println!("  one run per partition: {}", names.join(", "));
        }
        println!("dry run: nothing was read or written");
        return Ok(0);
    }
    let Some(days) = days else {
        let outcome = pipeline::run(&cfg, &opts).await?;
        print_outcome(&outcome);
        return Ok(exit_code(&outcome));
    };
    let mut code = 0;
    let total = days.len();
    for (i, day) in days.into_iter().enumerate() {
        tracing::info!(partition = %day.partition, run = i + 1, of = total, "running one partition of the range");
        let outcome = pipeline::run(&day.cfg, &day.opts).await.map_err(|e| {
            anyhow::Error::new(e).context(format!(
                "partition {} ({} of {total}; the partitions before it are committed)",
                day.partition,
                i + 1
            ))
        })?;
        print_outcome(&outcome);
        code = code.max(exit_code(&outcome));
    }
    Ok(code)
}

/// The exit code of a finished run: [`DRIFTED_EXIT_CODE`] when its input
/// drifted and the predict step asks to exit on drift, else 0.
fn exit_code(outcome: &RunOutcome) -> i32 {
    let drift = outcome
        .summary
        .predictions
        .as_ref()
        .and_then(|p| p.drift.as_ref());
    match drift {
        Some(d) if d.drifted && d.thresholds.exit_on_drift => DRIFTED_EXIT_CODE,
        _ => 0,
    }
}

/// Runs `sluice validate`: the checks `sluice run` makes before reading
/// data ([`pipeline::check`]), for each config.
pub async fn validate(args: ValidateArgs, lake: Option<String>) -> anyhow::Result<i32> {
    let mut bad = 0;
    for p in &args.configs {
        let checked = match config::load(p) {
            Ok(c) => {
                let opts = RunOptions {
                    lake: lake.clone(),
                    ..RunOptions::default()
                };
                // A local lake is checked like a run checks it; a remote
                // one (maybe unreachable from here) by `run --dry-run`.
                let location = pipeline::plan::lake_of(&c, &opts);
                let local = !location.contains("://") || location.starts_with("file://");
                if local {
                    pipeline::check(&c, &opts).await.map(|plan| (c, plan))
                } else {
                    pipeline::plan::check_offline(&c, &opts).map(|plan| (c, plan))
                }
            }
            Err(e) => Err(e),
        };
        match checked {
            Ok((c, plan)) => println!(
                "{}: ok ({} pipeline `{}`, {} steps, lake {}{})",
                p.display(),
                format!("{:?}", c.config.kind).to_lowercase(),
                c.config.name,
                c.config.steps.len(),
                plan.lake,
                if plan.models.is_empty() {
                    String::new()
                } else {
                    format!(", {} model fits", plan.total_fits())
                }
            ),
            Err(e) => {
                bad += 1;
                let msg = e.to_string();
                if msg.contains(&p.display().to_string()) {
                    eprintln!("{msg}");
                } else {
                    eprintln!("{}: {msg}", p.display());
                }
            }
        }
    }
    Ok(if bad == 0 { 0 } else { 2 })
}
