//! `sluice models list|show|export|predict`.

use crate::lake::Lake;
use crate::registry;

/// Arguments of `sluice models`.
#[derive(Debug, clap::Args)]
pub struct ModelsArgs {
    /// Lake location (also accepted after the action: `models export ... --lake L`).
    #[arg(long, global = true, env = "SLUICE_LAKE", default_value = "./lake")]
    pub lake: String,
    /// What to do.
    #[command(subcommand)]
    pub action: ModelsAction,
}

/// `models` actions.
#[derive(Debug, clap::Subcommand)]
pub enum ModelsAction {
    /// List registered models and their versions.
    List,
    /// Show one version (default: latest) with its metrics and parameters.
    Show {
        /// Model name.
        name: String,
        /// Version (default `latest`).
        #[arg(default_value = "latest")]
        version: String,
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

/// Runs `sluice models`.
pub async fn run(args: ModelsArgs) -> anyhow::Result<i32> {
    let lake = Lake::open(&args.lake)?;
    match args.action {
        ModelsAction::List => {
            let names = registry::list_models(&lake).await?;
            if names.is_empty() {
                println!("no models in {}", crate::lake::redact(lake.url()));
            }
            for name in names {
                for v in registry::list_versions(&lake, &name).await? {
                    println!(
                        "{:<24} {:<6} {}  {}{}",
                        name,
                        v.version,
                        v.manifest.finished_at,
                        v.manifest.extra.get("name").map(|_| "").unwrap_or(""),
                        if v.latest { "(latest)" } else { "" }
                    );
                }
            }
        }
        ModelsAction::Show { name, version } => {
            let v = registry::resolve(&lake, &name, &version).await?;
            let bytes = registry::load_artefact(&lake, &v).await?;
            let art = sluice_ml::ModelArtefact::from_bytes(&bytes)?;
            let out = serde_json::json!({
                "name": v.name,
                "version": v.version,
                "latest": v.latest,
                "committed_at": v.manifest.finished_at,
                "from_run": v.manifest.run_id,
                "content_hash": art.content_hash(),
                "params": art.params,
                "features": art.feature_names,
                "metrics": art.metrics,
                "files": v.manifest.files,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
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
                "wrote {}/{} ({:?}, {} trees, {} features) as {format} to {}",
                v.name,
                v.version,
                art.model.kind(),
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
