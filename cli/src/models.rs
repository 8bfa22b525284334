//! `sluice models list|show|compare|export|predict`: the model registry as
//! a table (or JSON with `--json`), and its models in open formats.

use serde::Serialize;

use super::table;
use sluice_common::logfmt::num;
use sluice_lake::lake::Lake;
use sluice_lake::registry::{self, ModelVersion};

/// Arguments of `sluice models`.
#[derive(Debug, clap::Args)]
pub struct ModelsArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: ModelsAction,
}

/// `models` actions.
#[derive(Debug, clap::Subcommand)]
pub enum ModelsAction {
    /// List registered models and their versions.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one version (default: latest): where it came from, its
    /// parameters, features and held-out metrics.
    Show {
        /// Model name.
        name: String,
        /// Version (default `latest`).
        #[arg(default_value = "latest")]
        version: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Compare the held-out metrics of versions of a model (default: all).
    Compare {
        /// Model name.
        name: String,
        /// Versions to compare (default: every version).
        versions: Vec<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Write one version (default: latest) in an open format: LightGBM's
    /// text model or ONNX (`ai.onnx.ml` tree ensemble). The file holds the
    /// trees only; its input is the model's feature vector (docs/EXPORT.md).
    Export {
        /// Model name.
        name: String,
        /// Version (default `latest`).
        #[arg(default_value = "latest")]
        version: String,
        /// `lightgbm` or `onnx`.
        #[arg(long)]
        format: sluice_ml::ExportFormat,
        /// Output file (local path), replaced atomically.
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Score a Parquet file of model features (the columns named by the
    /// model, nulls or NaN = missing) with one version (default: latest);
    /// writes the input columns plus `indoor_probability`.
    Predict {
        /// Model name.
        name: String,
        /// Version (default `latest`).
        #[arg(default_value = "latest")]
        version: String,
        /// Parquet file (or directory of files) with the model's feature columns.
        #[arg(long)]
        input: std::path::PathBuf,
        /// Output Parquet file (local path), replaced atomically.
        #[arg(long)]
        out: std::path::PathBuf,
    },
}

/// One version as listed.
#[derive(Debug, Serialize)]
struct Row {
    name: String,
    version: String,
    latest: bool,
    model: String,
    committed_at: String,
    pipeline: String,
    run_id: String,
    metrics: sluice_ml::Metrics,
}

async fn row(lake: &Lake, v: &ModelVersion) -> anyhow::Result<Row> {
    Ok(Row {
        name: v.name.clone(),
        version: v.version.clone(),
        latest: v.latest,
        model: v.params()?.model,
        committed_at: v.manifest.finished_at.clone(),
        pipeline: v.manifest.pipeline.clone(),
        run_id: v.manifest.run_id.clone(),
        metrics: v.metrics(lake).await?,
    })
}

/// Runs `sluice models`.
pub async fn run(args: ModelsArgs, lake: &str) -> anyhow::Result<i32> {
    let lake = Lake::open_existing(lake)?;
    match args.action {
        ModelsAction::List { json } => {
            let mut rows = Vec::new();
            for name in registry::list_models(&lake).await? {
                for v in registry::list_versions(&lake, &name).await? {
                    rows.push(row(&lake, &v).await?);
                }
            }
            if json {
                table::print_json(&rows)?;
            } else if rows.is_empty() {
                println!(
                    "no models in {}: a training run's deploy step registers one",
                    sluice_lake::lake::redact(lake.url())
                );
            } else {
                let mut t = table::new(
                    &[
                        "name",
                        "version",
                        "latest",
                        "model",
                        "auc",
                        "accuracy",
                        "committed",
                        "run",
                    ],
                    &["auc", "accuracy"],
                );
                for r in &rows {
                    t.add_row(vec![
                        r.name.clone(),
                        r.version.clone(),
                        if r.latest { "*".into() } else { String::new() },
                        r.model.clone(),
                        num(r.metrics.auc),
                        num(r.metrics.accuracy),
                        r.committed_at.clone(),
                        r.run_id.clone(),
                    ]);
                }
                table::print(&t);
            }
        }
        ModelsAction::Show {
            name,
            version,
            json,
        } => {
            let v = registry::resolve(&lake, &name, &version).await?;
            let r = row(&lake, &v).await?;
            let bytes = registry::load_artefact(&lake, &v).await?;
            let art = sluice_ml::ModelArtefact::from_bytes(&bytes)?;
            if json {
                let out = serde_json::json!({
                    "name": r.name,
                    "version": r.version,
                    "latest": r.latest,
                    "model": r.model,
                    "kind": art.model.kind(),
                    "committed_at": r.committed_at,
                    "pipeline": r.pipeline,
                    "from_run": r.run_id,
                    "content_hash": art.content_hash(),
                    "params": art.params,
                    "trees": art.model.trees().len(),
                    "features": art.feature_names,
                    "metrics": r.metrics,
                    "files": v.manifest.files,
                });
                table::print_json(&out)?;
            } else {
                println!(
                    "{} {}{}",
                    r.name,
                    r.version,
                    if r.latest { " (latest)" } else { "" }
                );
                println!(
                    "  model:      {} ({}, {} trees)",
                    r.model,
                    sluice_common::logfmt::kind_name(art.model.kind()),
                    art.model.trees().len()
                );
                println!(
                    "  deployed by pipeline {} run {} at {}",
                    r.pipeline, r.run_id, r.committed_at
                );
                println!("  directory:  {}", lake.table_url(&v.dir()));
                let m = &r.metrics;
                println!(
                    "  held-out:   accuracy {}  weighted precision {}  weighted recall {}  f1 {}",
                    num(m.accuracy),
                    num(m.weighted_precision),
                    num(m.weighted_recall),
                    num(m.f1)
                );
                println!(
                    "              auc {}  pr auc {}  log-loss {}  ({} rows)",
                    num(m.auc),
                    num(m.pr_auc),
                    num(m.log_loss),
                    m.n
                );
                let params = serde_json::to_value(&art.params)?;
                if let Some(p) = params.get("params").and_then(|p| p.as_object()) {
                    println!("  parameters:");
                    for (k, v) in p {
                        println!("    {k:<28} {v}");
                    }
                }
                println!(
                    "  features ({}): {}",
                    art.feature_names.len(),
                    art.feature_names.join(", ")
                );
            }
        }
        ModelsAction::Compare {
            name,
            versions,
            json,
        } => {
            let all = registry::list_versions(&lake, &name).await?;
            if all.is_empty() {
                anyhow::bail!(
                    "no model `{name}` in {}; `sluice models list` shows the registered ones",
                    sluice_lake::lake::redact(lake.url())
                );
            }
            let mut rows = Vec::new();
            if versions.is_empty() {
                for v in &all {
                    rows.push(row(&lake, v).await?);
                }
            } else {
                for want in &versions {
                    let v = registry::resolve(&lake, &name, want).await?;
                    rows.push(row(&lake, &v).await?);
                }
            }
            if json {
                table::print_json(&rows)?;
                return Ok(0);
            }
            let mut t = table::new(
                &[
                    "version",
                    "model",
                    "rows",
                    "accuracy",
                    "w. precision",
                    "w. recall",
                    "f1",
                    "auc",
                    "pr auc",
                    "log-loss",
                ],
                &[
                    "rows",
                    "accuracy",
                    "w. precision",
                    "w. recall",
                    "f1",
                    "auc",
                    "pr auc",
                    "log-loss",
                ],
            );
            for r in &rows {
                let m = &r.metrics;
                t.add_row(vec![
                    format!("{}{}", r.version, if r.latest { " *" } else { "" }),
                    r.model.clone(),
                    m.n.to_string(),
                    num(m.accuracy),
                    num(m.weighted_precision),
                    num(m.weighted_recall),
                    num(m.f1),
                    num(m.auc),
                    num(m.pr_auc),
                    num(m.log_loss),
                ]);
            }
            table::print(&t);
        }
        ModelsAction::Export {
            name,
            version,
            format,
            out,
        } => {
            let v = registry::resolve(&lake, &name, &version).await?;
            let bytes = registry::load_artefact(&lake, &v).await?;
            let art = sluice_ml::ModelArtefact::from_bytes(&bytes)?;
            let data = sluice_ml::export(&art.model, format)?;
            write_atomically(&out, &data)?;
            println!(
                "wrote {}/{} ({}, {} trees, {} features) as {format} to {}",
                v.name,
                v.version,
                sluice_common::logfmt::kind_name(art.model.kind()),
                art.model.trees().len(),
                art.feature_names.len(),
                out.display()
            );
        }
        ModelsAction::Predict {
            name,
            version,
            input,
            out,
        } => {
            let v = registry::resolve(&lake, &name, &version).await?;
            let art =
                sluice_ml::ModelArtefact::from_bytes(&registry::load_artefact(&lake, &v).await?)?;
            let (data, rows) = score_parquet(&art.model, &input).await?;
            write_atomically(&out, &data)?;
            println!(
                "scored {rows} rows of {} with {}/{} into {}",
                input.display(),
                v.name,
                v.version,
                out.display()
            );
        }
    }
    Ok(0)
}

/// The rows of `input` (Parquet) with the model's P(class 1) appended as
/// `indoor_probability`, as Parquet bytes, and the row count.
async fn score_parquet(
    model: &sluice_ml::TrainedModel,
    input: &std::path::Path,
) -> anyhow::Result<(Vec<u8>, usize)> {
    use anyhow::Context;
    use std::sync::Arc;
    let ctx = datafusion::prelude::SessionContext::new();
    let path = input
        .to_str()
        .with_context(|| format!("--input {} is not UTF-8", input.display()))?;
    let batches = ctx
        .read_parquet(path, datafusion::prelude::ParquetReadOptions::default())
        .await
        .with_context(|| format!("cannot read Parquet {path}"))?
        .collect()
        .await
        .with_context(|| format!("cannot read Parquet {path}"))?;
    let mut rows = 0;
    let mut writer: Option<parquet::arrow::ArrowWriter<Vec<u8>>> = None;
    for b in batches.iter().filter(|b| b.num_rows() > 0) {
        let p = model
            .predict_proba_batch(b)
            .with_context(|| format!("scoring {path}"))?;
        let mut fields: Vec<arrow::datatypes::FieldRef> =
            b.schema().fields().iter().cloned().collect();
        fields.push(Arc::new(arrow::datatypes::Field::new(
            "indoor_probability",
            arrow::datatypes::DataType::Float64,
            false,
        )));
        let mut cols = b.columns().to_vec();
        cols.push(Arc::new(p));
        let batch = arrow::record_batch::RecordBatch::try_new(
            Arc::new(arrow::datatypes::Schema::new(fields)),
            cols,
        )?;
        rows += batch.num_rows();
        if writer.is_none() {
            writer = Some(parquet::arrow::ArrowWriter::try_new(
                Vec::new(),
                batch.schema(),
                None,
            )?);
        }
        if let Some(w) = writer.as_mut() {
            w.write(&batch)?;
        }
    }
    match writer {
        Some(w) => Ok((w.into_inner()?, rows)),
        None => anyhow::bail!("{path} has no rows to score"),
    }
}

/// Writes `data` to a temporary file beside `path`, then renames it over `path`.
fn write_atomically(path: &std::path::Path, data: &[u8]) -> anyhow::Result<()> {
    use anyhow::Context;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let file = path
        .file_name()
        .with_context(|| format!("--out {} is not a file path", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        file.to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, data).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot move {} to {}", tmp.display(), path.display())
    })
}
