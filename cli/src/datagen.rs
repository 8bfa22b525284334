//! `sluice datagen`: argument parsing for the synthetic lake generator.

use sluice_datagen::{generate, DatagenConfig};
use sluice_lake::lake::Lake;

/// Arguments of `sluice datagen`.
#[derive(Debug, clap::Args)]
pub struct DatagenArgs {
    /// Lake to write into (path or URL); `raw/`, `training/` and `truth/` are replaced.
    #[arg(long)]
    pub out: String,
    /// Raw (inference) samples.
    #[arg(long, default_value_t = 1_000_000)]
    pub samples: u64,
    /// Raw devices, each simulated over about a day (default: samples / 2000).
    #[arg(long)]
    pub devices: Option<u64>,
    /// Labelled training rows over the four CSV files.
    #[arg(long, default_value_t = 544_500)]
    pub train_rows: u64,
    /// Seed: the same seed gives the same lake, whatever the thread count.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Label noise of the raw truth labels.
    #[arg(long, default_value_t = 0.015)]
    pub label_noise: f64,
    /// Samples per Parquet part file.
    #[arg(long, default_value_t = 262_144)]
    pub chunk_samples: u64,
    /// Shift the raw (inference) population away from the training one, to
    /// test drift detection: `rsrp` (10 dB weaker signal), `manufacturer`
    /// (half the phones from a new manufacturer), `night` (4x the samples
    /// per hour at night). The training CSVs never shift.
    #[arg(long, value_parser = parse_shift)]
    pub shift: Option<sluice_datagen::sim::Shift>,
}

/// `--shift` by name, with every name listed in `--help` and in the error.
fn parse_shift(s: &str) -> Result<sluice_datagen::sim::Shift, String> {
    s.parse()
}

/// Runs `sluice datagen`.
pub async fn run(args: DatagenArgs) -> anyhow::Result<i32> {
    let mut cfg = DatagenConfig::new(args.samples);
    if let Some(d) = args.devices {
        cfg.devices = d;
    }
    cfg.train_rows = args.train_rows;
    cfg.seed = args.seed;
    cfg.label_noise = args.label_noise;
    cfg.chunk_samples = args.chunk_samples;
    cfg.shift = args.shift;
    let lake = Lake::open(&args.out)?;
    let s = generate(&lake, &cfg).await?;
    println!(
        "wrote {} samples from {} devices, {} cells, {} training rows ({} files, {:.1}% indoor) to {} in {:.1}s ({:.0} rows/s)",
        s.samples,
        s.devices,
        s.cells,
        s.train_rows,
        s.files,
        100.0 * s.indoor_share,
        lake.url(),
        s.seconds,
        (s.samples + s.train_rows) as f64 / s.seconds.max(1e-9)
    );
    Ok(0)
}
