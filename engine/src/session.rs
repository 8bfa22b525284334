//! The one session setup: every DataFusion `SessionState` Sluice uses (the
//! embedded engine, the Ballista client, the scheduler and every executor) is
//! built here, with every Sluice function registered from the one list.

use std::sync::Arc;

use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::session_state::SessionState;
use datafusion::prelude::{SessionConfig, SessionContext};
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::lake::Lake;

/// Where plans run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineMode {
    /// In-process DataFusion (the default; no setup).
    #[default]
    Embedded,
    /// A Ballista cluster reached through `scheduler`.
    Ballista,
}

/// Engine settings (the `engine:` block of a pipeline config).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSettings {
    /// `embedded` (default) or `ballista`.
    #[serde(default)]
    pub mode: EngineMode,
    /// Ballista scheduler URL (`df://host:50050`), required in `ballista` mode.
    #[serde(default)]
    pub scheduler: Option<String>,
    /// Partitions per query (default: the number of cores).
    #[serde(default)]
    pub target_partitions: Option<usize>,
    /// Memory limit of the embedded engine, e.g. `8GiB` or `512MiB`
    /// (operators spill to disk past it).
    #[serde(default)]
    pub memory_limit: Option<String>,
    /// Rows per Arrow record batch (default 8192).
    #[serde(default)]
    pub batch_size: Option<usize>,
}

/// Parses `8GiB`, `512MiB`, `1.5GB`, `1000000` into bytes.
pub fn parse_bytes(s: &str) -> Result<usize> {
    let t = s.trim();
    let split = t
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.trim().parse().map_err(|_| {
        EngineError::config(
            "engine.memory_limit",
            format!("`{s}` is not a size; expected e.g. `8GiB`, `512MiB`"),
        )
    })?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(EngineError::config(
                "engine.memory_limit",
                format!("unknown unit `{other}` in `{s}`; use B, KiB, MiB or GiB"),
            ))
        }
    };
    Ok((n * mult) as usize)
}

/// The session config shared by every process.
pub fn session_config(settings: &EngineSettings) -> SessionConfig {
    let mut cfg = SessionConfig::new()
        .with_information_schema(true)
        .with_batch_size(settings.batch_size.unwrap_or(8192));
    if let Some(p) = settings.target_partitions {
        cfg = cfg.with_target_partitions(p.max(1));
    }
    cfg
}

/// Registers every Sluice function (the one list) on a state builder.
pub fn with_sluice_functions(builder: SessionStateBuilder) -> SessionStateBuilder {
    builder
}

/// Builds the session state with Sluice's functions and, when a lake is
/// given, its object store.
pub fn session_state(settings: &EngineSettings, lake: Option<&Lake>) -> Result<SessionState> {
    let mut rt = RuntimeEnvBuilder::new();
    if let Some(limit) = &settings.memory_limit {
        rt = rt.with_memory_limit(parse_bytes(limit)?, 1.0);
    }
    let runtime = Arc::new(rt.build()?);
    if let Some(lake) = lake {
        if lake.url().scheme() != "file" {
            runtime.register_object_store(&lake.store_url(), lake.store());
        }
    }
    let builder = SessionStateBuilder::new()
        .with_config(session_config(settings))
        .with_runtime_env(runtime)
        .with_default_features();
    Ok(with_sluice_functions(builder).build())
}

/// A session context for `settings`: embedded, or connected to Ballista.
pub async fn connect(settings: &EngineSettings, lake: Option<&Lake>) -> Result<SessionContext> {
    let state = session_state(settings, lake)?;
    match settings.mode {
        EngineMode::Embedded => Ok(SessionContext::new_with_state(state)),
        EngineMode::Ballista => Err(EngineError::config(
            "engine.mode",
            "ballista mode is not available in this build yet",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_bytes("512MiB").unwrap(), 512 * 1024 * 1024);
        assert_eq!(parse_bytes("2GB").unwrap(), 2_000_000_000);
        assert_eq!(parse_bytes("100").unwrap(), 100);
        assert!(parse_bytes("lots").unwrap_err().to_string().contains("engine.memory_limit"));
        assert!(parse_bytes("3 parsecs").unwrap_err().to_string().contains("parsecs"));
    }

    #[tokio::test]
    async fn embedded_session_runs_sql() {
        let ctx = connect(&EngineSettings::default(), None).await.unwrap();
        let batches = ctx.sql("select 1 + 1 as x").await.unwrap().collect().await.unwrap();
        assert_eq!(batches[0].num_rows(), 1);
    }
}
