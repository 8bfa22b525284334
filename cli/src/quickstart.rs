//! `sluice quickstart`: a small generated lake and both pipelines end to end,
//! with nothing to set up.

use std::path::PathBuf;

use sluice_datagen::{self as datagen, DatagenConfig};
use sluice_engine::config;
use sluice_engine::pipeline::{self, RunOptions};
use sluice_lake::lake::Lake;

/// The training config `quickstart` runs (also under `config/`).
pub const TRAINING_YAML: &str = include_str!("../../config/quickstart-training.yaml");
/// The inference config `quickstart` runs (also under `config/`).
pub const INFERENCE_YAML: &str = include_str!("../../config/quickstart-inference.yaml");

/// Arguments of `sluice quickstart`.
#[derive(Debug, clap::Args)]
pub struct QuickstartArgs {
    /// Working directory: the lake and the configs go here.
    #[arg(long, default_value = "./sluice-quickstart")]
    pub dir: PathBuf,
    /// Raw samples to generate for inference.
    #[arg(long, default_value_t = 500_000)]
    pub samples: u64,
    /// Labelled training rows.
    #[arg(long, default_value_t = 120_000)]
    pub train_rows: u64,
    /// Seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// Runs `sluice quickstart`.
pub async fn run(args: QuickstartArgs) -> anyhow::Result<i32> {
    std::fs::create_dir_all(&args.dir)?;
    let dir = std::fs::canonicalize(&args.dir)?;
    let lake_dir = dir.join("lake");
    let lake_s = lake_dir.display().to_string();
    println!("sluice quickstart in {}", dir.display());
    let lake = Lake::open(&lake_s)?;
    if lake.exists("raw/samples/").await? || !lake.list("raw/samples/").await?.is_empty() {
        println!("1/3 lake already generated at {lake_s}: reusing it");
    } else {
        let mut cfg = DatagenConfig::new(args.samples);
        cfg.train_rows = args.train_rows;
        cfg.seed = args.seed;
        println!(
            "1/3 generating {} raw samples and {} labelled rows into {lake_s}",
            cfg.samples, cfg.train_rows
        );
        let s = datagen::generate(&lake, &cfg).await?;
        println!(
            "    done in {:.1}s ({} devices, indoor share {:.3})",
            s.seconds, s.devices, s.indoor_share
        );
    }
    let cfg_dir = dir.join("config");
    std::fs::create_dir_all(&cfg_dir)?;
    let mut outcomes = Vec::new();
    for (i, (file, yaml)) in [
        ("training.yaml", TRAINING_YAML),
        ("inference.yaml", INFERENCE_YAML),
    ]
    .into_iter()
    .enumerate()
    {
        let path = cfg_dir.join(file);
        std::fs::write(&path, yaml)?;
        let mut loaded = config::load(&path)?;
        loaded.config.lake = lake_s.clone();
        println!(
            "{}/3 running {} ({})",
            i + 2,
            loaded.config.name,
            path.display()
        );
        let o = pipeline::run(&loaded, &RunOptions::default()).await?;
        super::run::print_outcome(&o);
        outcomes.push(o);
    }
    println!("\nEverything is in {}:", dir.display());
    println!("  lake:        {lake_s}");
    println!("  configs:     {}", cfg_dir.display());
    println!("  models:      sluice models list --lake {lake_s}");
    for o in &outcomes {
        println!("  report:      {}", lake_dir.join(&o.report_html).display());
    }
    Ok(0)
}
