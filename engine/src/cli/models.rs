//! `sluice models list|show`.

use crate::lake::Lake;
use crate::registry;

/// Arguments of `sluice models`.
#[derive(Debug, clap::Args)]
pub struct ModelsArgs {
    /// Lake location.
    #[arg(long, env = "SLUICE_LAKE", default_value = "./lake")]
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
    }
    Ok(0)
}
