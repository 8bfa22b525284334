//! The model artefact: a versioned, self-describing, integrity-checked file.
//!
//! Layout (all integers little-endian):
//!
//! | offset | size | content |
//! |---|---|---|
//! | 0 | 8 | magic `SLUICEML` |
//! | 8 | 4 | format version (`u32`, currently [`FORMAT_VERSION`]) |
//! | 12 | 8 | payload length in bytes (`u64`) |
//! | 20 | 32 | SHA-256 of the payload |
//! | 52 | n | payload: UTF-8 JSON of [`ModelArtefact`] (camelCase keys) |
//!
//! The JSON payload is readable with any JSON tool (`tail -c +53 model.sluice | jq`).
//! The content hash is the hex SHA-256 of the payload.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::drift::DriftProfile;
use crate::error::{ArtefactError, MlError, Result};
use crate::metrics::Metrics;
use crate::model::TrainedModel;
use crate::params::ModelSpec;

/// Magic bytes at offset 0 of every artefact.
pub const MAGIC: &[u8; 8] = b"SLUICEML";
/// Format version written and read by this build.
pub const FORMAT_VERSION: u32 = 1;
/// Header size in bytes (magic, version, length, SHA-256).
pub const HEADER_LEN: usize = 8 + 4 + 8 + 32;

/// Everything needed to use a trained model later: the trees, the feature
/// names, the fitted feature-transform state (opaque JSON owned by the
/// transforms crate), the training parameters and metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelArtefact {
    /// Format version of the payload (= [`FORMAT_VERSION`]).
    pub format_version: u32,
    /// Model name.
    pub name: String,
    /// The trained model (trees, bin edges, feature names).
    pub model: TrainedModel,
    /// Feature names in model order (equal to `model.feature_names()`).
    pub feature_names: Vec<String>,
    /// Fitted feature pipeline state, opaque to `sluice-ml`.
    pub transform_state: serde_json::Value,
    /// Training parameters.
    pub params: ModelSpec,
    /// Evaluation metrics, if computed.
    pub metrics: Option<Metrics>,
    /// Creation time (RFC 3339), set by the caller.
    pub created_at: String,
    /// Free-form extra fields (run id, grid-search summary, ...).
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// Reference profile of the features and predictions on held-out rows,
    /// which inference runs compare their input with ([`crate::drift`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_reference: Option<DriftProfile>,
}

impl ModelArtefact {
    /// A new artefact at the current format version.
    pub fn new(
        name: impl Into<String>,
        model: TrainedModel,
        params: ModelSpec,
        created_at: impl Into<String>,
    ) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            name: name.into(),
            feature_names: model.feature_names().to_vec(),
            model,
            transform_state: serde_json::Value::Null,
            params,
            metrics: None,
            created_at: created_at.into(),
            extra: serde_json::Map::new(),
            drift_reference: None,
        }
    }

    fn payload(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(|e| ArtefactError::Serialize(e.to_string()).into())
    }

    /// Serializes to the binary artefact format described in the module docs.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        if self.format_version != FORMAT_VERSION {
            return Err(ArtefactError::WrongVersion {
                found: self.format_version,
                supported: FORMAT_VERSION,
            }
            .into());
        }
        let payload = self.payload()?;
        let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        out.extend_from_slice(&Sha256::digest(&payload));
        out.extend_from_slice(&payload);
        Ok(out)
    }

    /// Parses and verifies an artefact; fails with [`ArtefactError`] on
    /// foreign, wrong-version, truncated or corrupt input.
    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        if b.len() < MAGIC.len() || &b[..MAGIC.len()] != MAGIC {
            return Err(ArtefactError::Foreign {
                expected: String::from_utf8_lossy(MAGIC).into_owned(),
                found: String::from_utf8_lossy(&b[..b.len().min(8)]).into_owned(),
            }
            .into());
        }
        if b.len() < HEADER_LEN {
            return Err(ArtefactError::Truncated {
                expected: HEADER_LEN as u64,
                found: b.len() as u64,
            }
            .into());
        }
        let version = u32::from_le_bytes(
            b[8..12]
                .try_into()
                .map_err(|_| MlError::Internal("header slice".into()))?,
        );
        if version != FORMAT_VERSION {
            return Err(ArtefactError::WrongVersion {
                found: version,
                supported: FORMAT_VERSION,
            }
            .into());
        }
        let len = u64::from_le_bytes(
            b[12..20]
                .try_into()
                .map_err(|_| MlError::Internal("header slice".into()))?,
        );
        let expected = HEADER_LEN as u64 + len;
        if (b.len() as u64) < expected {
            return Err(ArtefactError::Truncated {
                expected,
                found: b.len() as u64,
            }
            .into());
        }
        if (b.len() as u64) > expected {
            return Err(ArtefactError::Corrupt(format!(
                "{} trailing bytes after the {len}-byte payload",
                b.len() as u64 - expected
            ))
            .into());
        }
        let payload = &b[HEADER_LEN..];
        let digest = Sha256::digest(payload);
        if digest.as_slice() != &b[20..52] {
            return Err(ArtefactError::Corrupt(format!(
                "payload SHA-256 is {}, header records {}",
                hex::encode(digest),
                hex::encode(&b[20..52])
            ))
            .into());
        }
        let art: ModelArtefact = serde_json::from_slice(payload).map_err(|e| {
            ArtefactError::Corrupt(format!(
                "payload JSON does not parse as a model artefact: {e}"
            ))
        })?;
        if art.format_version != version {
            return Err(ArtefactError::Corrupt(format!(
                "payload formatVersion {} differs from header version {version}",
                art.format_version
            ))
            .into());
        }
        if art.feature_names != art.model.feature_names() {
            return Err(ArtefactError::Corrupt(
                "featureNames differ from the model's feature names".into(),
            )
            .into());
        }
        Ok(art)
    }

    /// Hex SHA-256 of the payload (identical to the hash in the header of `to_bytes`).
    pub fn content_hash(&self) -> String {
        match self.payload() {
            Ok(p) => hex::encode(Sha256::digest(&p)),
            Err(_) => String::new(),
        }
    }
}
