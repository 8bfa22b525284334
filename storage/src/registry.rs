//! The model registry in the lake.
//!
//! ```text
//! <lake>/models/<name>/<version>/model.sluice          the artefact (ml crate format)
//! <lake>/models/<name>/<version>/transform_state.json  fitted feature state (also inside the artefact)
//! <lake>/models/<name>/<version>/metrics.json          evaluation metrics
//! <lake>/models/<name>/<version>/_manifest.json        commit marker (written last)
//! <lake>/models/<name>/latest                          the current version, replaced only after it is complete
//! ```

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::commit::{self, Commit, InputRef, Manifest, Verify};
use crate::lake::Lake;
use sluice_common::error::{EngineError, Result};

/// Artefact file name inside a version directory.
pub const ARTEFACT_FILE: &str = "model.sluice";

/// One registered model version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelVersion {
    /// Registry name.
    pub name: String,
    /// Version (`v0001`, ...).
    pub version: String,
    /// Whether `latest` points here.
    pub latest: bool,
    /// The version's commit manifest.
    pub manifest: Manifest,
}

impl ModelVersion {
    /// Lake-relative directory of this version.
    pub fn dir(&self) -> String {
        version_dir(&self.name, &self.version)
    }

    /// Lake-relative path of the artefact file.
    pub fn artefact_path(&self) -> String {
        self.manifest
            .files
            .iter()
            .find(|f| f.path.ends_with(ARTEFACT_FILE))
            .map(|f| f.path.clone())
            .unwrap_or_else(|| format!("{}/{ARTEFACT_FILE}", self.dir()))
    }
}

/// The parameters a version's manifest records (`params` in its
/// `_manifest.json`): which trained model of the deploying run it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionParams {
    /// The trained model's name in the training config (`gbt`, `rf`).
    pub model: String,
}

impl ModelVersion {
    /// The recorded [`VersionParams`]; an error naming the version when
    /// its manifest holds something else.
    pub fn params(&self) -> Result<VersionParams> {
        VersionParams::deserialize(&self.manifest.params).map_err(|e| EngineError::Data {
            location: format!("{}/{}", self.dir(), commit::MANIFEST),
            message: format!("not a model version manifest: {e}"),
        })
    }

    /// The held-out metrics stored with the version (`metrics.json`).
    pub async fn metrics(&self, lake: &Lake) -> Result<sluice_ml::Metrics> {
        let path = self
            .manifest
            .files
            .iter()
            .find(|f| f.path.ends_with("metrics.json"))
            .map(|f| f.path.clone())
            .unwrap_or_else(|| format!("{}/metrics.json", self.dir()));
        let bytes = lake.get(&path).await?;
        serde_json::from_slice(&bytes).map_err(|e| EngineError::Data {
            location: lake.table_url(&path),
            message: format!("not the metrics of a model version: {e}"),
        })
    }
}

fn version_dir(name: &str, version: &str) -> String {
    format!("models/{name}/{version}")
}

/// What a publish writes.
#[derive(Debug)]
pub struct Publish<'a> {
    /// Registry name.
    pub name: &'a str,
    /// Serialized artefact.
    pub artefact: Bytes,
    /// Fitted feature state (JSON).
    pub transform_state: &'a serde_json::Value,
    /// Evaluation metrics (JSON).
    pub metrics: &'a serde_json::Value,
    /// Pipeline and run that produced it.
    pub pipeline: &'a str,
    /// Run id that produced it.
    pub run_id: &'a str,
    /// Parameters recorded in the manifest.
    pub params: serde_json::Value,
    /// Input fingerprints recorded in the manifest.
    pub inputs: Vec<InputRef>,
}

/// Publishes a new version and then moves `latest` to it.
///
/// Idempotent per run: when a version published by the same pipeline run
/// from the same inputs with the same artefact bytes already exists (a resumed run killed after
/// publishing but before its deploy step committed), that version is
/// returned and `latest` set to it, instead of publishing a duplicate.
pub async fn publish(lake: &Lake, p: Publish<'_>) -> Result<ModelVersion> {
    validate_name(p.name)?;
    let versions = list_versions(lake, p.name).await?;
    let params_fp = commit::fingerprint_json(&p.params);
    let artefact_hash = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&p.artefact));
    if let Some(v) = versions.iter().rev().find(|v| {
        v.manifest.pipeline == p.pipeline
            && v.manifest.run_id == p.run_id
            && v.manifest.matches(&params_fp, &p.inputs)
            && v.manifest
                .files
                .iter()
                .any(|f| f.path.ends_with(ARTEFACT_FILE) && f.xxh3 == artefact_hash)
    }) {
        lake.put(
            &format!("models/{}/latest", p.name),
            Bytes::from(v.version.clone()),
        )
        .await?;
        return Ok(ModelVersion {
            latest: true,
            ..v.clone()
        });
    }
    let next = versions
        .iter()
        .filter_map(|v| v.version.trim_start_matches('v').parse::<u32>().ok())
        .max()
        .unwrap_or(0)
        + 1;
    let version = format!("v{next:04}");
    let dir = version_dir(p.name, &version);
    let mut c = Commit::begin(lake, &dir);
    c.put(ARTEFACT_FILE, p.artefact).await?;
    c.put(
        "transform_state.json",
        Bytes::from(serde_json::to_vec_pretty(p.transform_state).unwrap_or_default()),
    )
    .await?;
    c.put(
        "metrics.json",
        Bytes::from(serde_json::to_vec_pretty(p.metrics).unwrap_or_default()),
    )
    .await?;
    c.promote_files_keep_names().await?;
    let manifest = c
        .finish(
            "model",
            p.pipeline,
            p.run_id,
            p.params,
            p.inputs,
            serde_json::json!({"name": p.name, "version": version}),
        )
        .await?;
    // The pointer moves only now that the version is complete.
    lake.put(
        &format!("models/{}/latest", p.name),
        Bytes::from(version.clone()),
    )
    .await?;
    Ok(ModelVersion {
        name: p.name.to_string(),
        version,
        latest: true,
        manifest,
    })
}

fn validate_name(name: &str) -> Result<()> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        return Err(EngineError::config(
            "model_name",
            format!("`{name}` is not a valid model name; use letters, digits, `-`, `_`, `.`"),
        ));
    }
    Ok(())
}

/// The version `latest` points to, if any.
pub async fn latest_version(lake: &Lake, name: &str) -> Result<Option<String>> {
    let rel = format!("models/{name}/latest");
    if !lake.exists(&rel).await? {
        return Ok(None);
    }
    let b = lake.get(&rel).await?;
    Ok(Some(String::from_utf8_lossy(&b).trim().to_string()))
}

/// Resolves `latest` or a pinned version to a committed, verified version.
pub async fn resolve(lake: &Lake, name: &str, version: &str) -> Result<ModelVersion> {
    validate_name(name)?;
    let latest = latest_version(lake, name).await?;
    if latest.is_none() {
        // A HEAD of a missing object looks the same in a missing container;
        // listing the model's directory names the container (or bucket)
        // when that is what is missing.
        lake.list_dirs(&format!("models/{name}/")).await?;
    }
    let v = if version == "latest" {
        latest.clone().ok_or_else(|| {
            EngineError::lake(
                lake.table_url(&format!("models/{name}/")),
                format!("model `{name}` has no deployed version: run a training pipeline with a deploy step first"),
            )
        })?
    } else {
        version.to_string()
    };
    let dir = version_dir(name, &v);
    let manifest = commit::open_committed(lake, &dir, Verify::Full)
        .await
        .map_err(|e| match e {
            EngineError::Lake { url, message } if message.contains("no committed output") => {
                EngineError::lake(
                    url,
                    format!("model `{name}` has no committed version `{v}`"),
                )
            }
            other => other,
        })?;
    Ok(ModelVersion {
        name: name.to_string(),
        latest: latest.as_deref() == Some(v.as_str()),
        version: v,
        manifest,
    })
}

/// Loads the artefact bytes of a version.
pub async fn load_artefact(lake: &Lake, v: &ModelVersion) -> Result<Bytes> {
    lake.get(&v.artefact_path()).await
}

/// All committed versions of one model, oldest first.
pub async fn list_versions(lake: &Lake, name: &str) -> Result<Vec<ModelVersion>> {
    let latest = latest_version(lake, name).await?;
    let mut out = Vec::new();
    for meta in lake.list(&format!("models/{name}/")).await? {
        let rel = lake.relative(&meta.location);
        let Some(dir) = rel.strip_suffix(&format!("/{}", commit::MANIFEST)) else {
            continue;
        };
        let Some(version) = dir.rsplit('/').next() else {
            continue;
        };
        if let Some(manifest) = commit::read_manifest(lake, dir).await? {
            out.push(ModelVersion {
                name: name.to_string(),
                version: version.to_string(),
                latest: latest.as_deref() == Some(version),
                manifest,
            });
        }
    }
    out.sort_by(|a, b| a.version.cmp(&b.version));
    Ok(out)
}

/// Names of all registered models.
pub async fn list_models(lake: &Lake) -> Result<Vec<String>> {
    let mut names = std::collections::BTreeSet::new();
    for meta in lake.list("models/").await? {
        let rel = lake.relative(&meta.location);
        if let Some(rest) = rel.strip_prefix("models/") {
            if let Some((name, _)) = rest.split_once('/') {
                names.insert(name.to_string());
            }
        }
    }
    Ok(names.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn publish_one(lake: &Lake, body: &'static [u8]) -> ModelVersion {
        publish(
            lake,
            Publish {
                name: "m",
                artefact: Bytes::from_static(body),
                transform_state: &serde_json::json!({"s": 1}),
                metrics: &serde_json::json!({"auc": 0.9}),
                pipeline: "p",
                run_id: "r",
                params: serde_json::json!({}),
                inputs: vec![],
            },
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn publish_resolve_list() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap()).unwrap();
        assert!(resolve(&lake, "m", "latest")
            .await
            .unwrap_err()
            .to_string()
            .contains("no deployed version"));
        let v1 = publish_one(&lake, b"one").await;
        let v2 = publish_one(&lake, b"two").await;
        assert_eq!(
            (v1.version.as_str(), v2.version.as_str()),
            ("v0001", "v0002")
        );
        // The same run publishing the same artefact again (a resumed deploy)
        // gets its version back instead of a duplicate.
        let again = publish_one(&lake, b"two").await;
        assert_eq!(again.version, "v0002");
        assert_eq!(list_versions(&lake, "m").await.unwrap().len(), 2);
        let r = resolve(&lake, "m", "latest").await.unwrap();
        assert_eq!(r.version, "v0002");
        assert_eq!(load_artefact(&lake, &r).await.unwrap().as_ref(), b"two");
        let pinned = resolve(&lake, "m", "v0001").await.unwrap();
        assert_eq!(
            load_artefact(&lake, &pinned).await.unwrap().as_ref(),
            b"one"
        );
        assert!(!pinned.latest);
        let all = list_versions(&lake, "m").await.unwrap();
        assert_eq!(all.len(), 2);
        assert!(all[1].latest);
        assert_eq!(list_models(&lake).await.unwrap(), vec!["m".to_string()]);
        assert!(resolve(&lake, "m", "v0009")
            .await
            .unwrap_err()
            .to_string()
            .contains("v0009"));
    }

    #[tokio::test]
    async fn a_version_without_manifest_is_invisible() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap()).unwrap();
        publish_one(&lake, b"one").await;
        // A killed publish: files but no manifest.
        lake.put(
            "models/m/v0002/data-x/model.sluice",
            Bytes::from_static(b"half"),
        )
        .await
        .unwrap();
        assert_eq!(list_versions(&lake, "m").await.unwrap().len(), 1);
        assert_eq!(
            resolve(&lake, "m", "latest").await.unwrap().version,
            "v0001"
        );
    }
}
