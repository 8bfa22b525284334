//! `sluice ingest`: validates the training CSVs or joins the raw tables and
//! writes the unified table as Parquet into the lake.

use clap::ValueEnum;

use sluice_core::session::{connect, EngineSettings};
use sluice_engine::ingest::{
    check_joined_rows, inference_input_with, raw_table_input, training_input, write_parquet,
    InferenceOptions, IngestOptions, PartitionFilter,
};
use sluice_lake::lake::Lake;

/// Which input to ingest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InputKind {
    /// The labelled CSV files (`training/*.csv` by default).
    Training,
    /// The seven raw tables under `raw/`, joined.
    Inference,
    /// One raw table (`--table`), validated and rewritten (the benchmark baseline).
    Table,
}

/// Arguments of `sluice ingest`.
#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// `training` or `inference`.
    #[arg(long, value_enum)]
    pub input: InputKind,
    /// Output directory relative to the lake root.
    #[arg(long)]
    pub out: String,
    /// The raw table for `--input table`.
    #[arg(long, default_value = "samples")]
    pub table: String,
    /// Glob of the training CSV files, relative to the lake root.
    #[arg(long, default_value = "training/*.csv")]
    pub csv_glob: String,
    /// Route unparsable training rows to `--rejected-out` instead of failing.
    #[arg(long)]
    pub reject_bad_rows: bool,
    /// Where rejected rows go (default `<out>-rejected`).
    #[arg(long)]
    pub rejected_out: Option<String>,
    /// Inference input: run the join as N `sample_id` range slices, one
    /// after another (bounds the hash tables' memory to one slice's).
    #[arg(long)]
    pub join_slices: Option<usize>,
    /// Inference input: read only these Hive partitions of the raw tables
    /// (`date=2026-11-28` or `date=2026-11-01..2026-11-07`; repeatable).
    #[arg(long = "partition", value_name = "KEY=VALUE")]
    pub partition: Vec<String>,
    /// Inference input: rows outside the contract's value bounds fail
    /// (`fail`, default), go to `--rejected-out` (`reject`), or are not
    /// checked (`off`).
    #[arg(long, value_enum, default_value = "fail")]
    pub value_checks: ValueChecksArg,
}

/// `--value-checks` (see [`sluice_engine::ingest::ValueChecks`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ValueChecksArg {
    /// Fail naming file, column, row and value.
    Fail,
    /// Route the rows to the rejected output.
    Reject,
    /// No value checks.
    Off,
}

impl From<ValueChecksArg> for sluice_engine::ingest::ValueChecks {
    fn from(v: ValueChecksArg) -> Self {
        match v {
            ValueChecksArg::Fail => Self::Fail,
            ValueChecksArg::Reject => Self::Reject,
            ValueChecksArg::Off => Self::Off,
        }
    }
}

/// Runs `sluice ingest`.
pub async fn run(args: IngestArgs, lake: Option<String>) -> anyhow::Result<i32> {
    let lake = lake.ok_or_else(|| {
        anyhow::anyhow!(
            "`sluice ingest` needs the lake: pass --lake <path or URL> (or set SLUICE_LAKE)"
        )
    })?;
    let lake = Lake::open_existing(&lake)?;
    let ctx = connect(&EngineSettings::default(), Some(&lake)).await?;
    let started = std::time::Instant::now();
    let mut checked = None;
    let out = match args.input {
        InputKind::Training => {
            let opts = IngestOptions {
                csv_glob: args.csv_glob.clone(),
                reject_bad_rows: args.reject_bad_rows,
            };
            training_input(&ctx, &lake, &opts).await?
        }
        InputKind::Inference => {
            let opts = InferenceOptions {
                join_slices: args.join_slices,
                value_checks: args.value_checks.into(),
                now: Some(chrono::Utc::now()),
                partitions: args
                    .partition
                    .iter()
                    .map(|p| PartitionFilter::parse(p))
                    .collect::<Result<Vec<_>, _>>()?,
                deferred: false,
            };
            checked = Some(opts.clone());
            inference_input_with(&ctx, &lake, &opts).await?
        }
        InputKind::Table => raw_table_input(&ctx, &lake, &args.table).await?,
    };
    let out_dir = args.out.trim_end_matches('/').to_string();
    lake.delete_prefix(&out_dir).await?;
    for part in out.parts() {
        if let Err(e) = write_parquet(part, &lake, &out_dir).await {
            let e = match &checked {
                Some(opts) => sluice_engine::ingest::name_bounds_error(&ctx, &lake, opts, e).await,
                None => e,
            };
            lake.delete_prefix(&out_dir).await?;
            return Err(e.into());
        }
    }
    if let (Some(opts), Some(expected)) = (checked, out.diagnostics.expected_rows) {
        // Rows written, from the output files' footers.
        let mut rows = 0u64;
        for meta in lake.list(&out_dir).await? {
            let file = sluice_engine::ingest::raw::RawFile {
                rel: lake.relative(&meta.location),
                size: meta.size,
                partition: Vec::new(),
            };
            rows += sluice_engine::ingest::raw::read_footer(&lake, &file)
                .await?
                .file_metadata()
                .num_rows() as u64;
        }
        if let Err(e) = check_joined_rows(&ctx, &lake, &opts, expected, rows).await {
            lake.delete_prefix(&out_dir).await?;
            return Err(e.into());
        }
    }
    if let Some(rejected) = out.rejected {
        let dir = args
            .rejected_out
            .unwrap_or_else(|| format!("{out_dir}-rejected"));
        lake.delete_prefix(&dir).await?;
        if out.diagnostics.rejected_rows > 0 {
            write_parquet(rejected, &lake, &dir).await?;
            println!(
                "rejected {} row(s) into {}",
                out.diagnostics.rejected_rows,
                lake.table_url(&dir)
            );
        }
    }
    println!(
        "ingested {} source(s) into {} in {:.1}s",
        out.diagnostics.sources.len(),
        lake.table_url(&out_dir),
        started.elapsed().as_secs_f64()
    );
    Ok(0)
}
