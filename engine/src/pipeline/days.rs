//! Runs over a range of Hive partitions (`--partition date=2026-11-01..2026-11-07`)
//! become one run per partition value present in the lake, each with a
//! single-value filter, so every day's predictions are committed to that
//! day's directory (`predictions/date=<day>/`), exactly as a daily run
//! writes them, and a rerun of a range replaces each day atomically.

use crate::config::{LoadedConfig, PipelineKind, StepConfig};
use crate::error::{EngineError, Result};
use crate::ingest::raw::list_table_files;
use crate::ingest::PartitionFilter;
use crate::lake::Lake;

use super::{plan, RunOptions};

/// The table whose partitions decide the runs: the one every inference row
/// starts from.
const BASE_TABLE: &str = "samples";

/// One run of a range: the config restricted to one partition value (of
/// every ranged key) and the options with its run id.
#[derive(Debug, Clone)]
pub struct PartitionRun {
    /// The partition values of this run, `date=2026-11-28` (`/`-joined
    /// when several keys are ranged).
    pub partition: String,
    /// The config with single-value filters.
    pub cfg: LoadedConfig,
    /// The options, with `run_id`/`resume` suffixed by the partition.
    pub opts: RunOptions,
}

/// The ingest step's partition filters of an inference config.
fn filters(cfg: &LoadedConfig) -> Option<&[PartitionFilter]> {
    if cfg.config.kind != PipelineKind::Inference {
        return None;
    }
    cfg.config.steps.iter().find_map(|s| match s {
        StepConfig::Ingest(i) if !i.partitions.is_empty() => Some(i.partitions.as_slice()),
        _ => None,
    })
}

/// `None` when the config has no ranged partition filter (one run, as
/// configured); otherwise one [`PartitionRun`] per combination of the
/// ranged keys' values found in `raw/samples/` within the filters, in
/// partition order. A range matching no partition of a `samples` table
/// partitioned by its key is an error naming the filter.
pub async fn split(cfg: &LoadedConfig, opts: &RunOptions) -> Result<Option<Vec<PartitionRun>>> {
    let Some(all) = filters(cfg) else {
        return Ok(None);
    };
    let ranged: Vec<&PartitionFilter> = all.iter().filter(|f| !f.is_single()).collect();
    if ranged.is_empty() {
        return Ok(None);
    }
    let lake = Lake::open_existing(&plan::lake_of(cfg, opts))?;
    let listing = list_table_files(&lake, BASE_TABLE, all).await?;
    let mut combos: Vec<Vec<(String, String)>> = listing
        .files
        .iter()
        .filter_map(|f| {
            ranged
                .iter()
                .map(|r| {
                    f.partition
                        .iter()
                        .find(|(k, _)| *k == r.key)
                        .map(|(k, v)| (k.clone(), v.clone()))
                })
                .collect::<Option<Vec<_>>>()
        })
        .collect();
    combos.sort_by(|a, b| {
        a.iter()
            .zip(b)
            .map(|((_, x), (_, y))| PartitionFilter::compare_values(x, y))
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    combos.dedup();
    if combos.is_empty() && listing.pruned == 0 {
        // `samples` is not partitioned by the ranged keys: one run, whose
        // ingest applies the filters to the tables that are (or names the
        // filter no table is partitioned by).
        return Ok(None);
    }
    if combos.is_empty() {
        let names: Vec<String> = ranged.iter().map(|r| r.to_string()).collect();
        return Err(EngineError::data(
            format!("raw/{BASE_TABLE}/"),
            format!(
                "the partition filter {} matches no partition of the table ({} data file(s) listed); \
                 check the range and the table's `<key>=<value>` directories",
                names.join(", "),
                listing.files.len() + listing.pruned
            ),
        ));
    }
    Ok(Some(
        combos
            .into_iter()
            .map(|combo| {
                let partition = combo
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("/");
                let mut cfg = cfg.clone();
                for step in &mut cfg.config.steps {
                    if let StepConfig::Ingest(i) = step {
                        for f in &mut i.partitions {
                            if let Some((_, v)) = combo.iter().find(|(k, _)| *k == f.key) {
                                f.first.clone_from(v);
                                f.last.clone_from(v);
                            }
                        }
                    }
                }
                let suffix = |id: &String| format!("{id}.{}", partition.replace('/', "."));
                let mut opts = opts.clone();
                opts.run_id = opts.run_id.as_ref().map(suffix);
                opts.resume = opts.resume.as_ref().map(suffix);
                PartitionRun {
                    partition,
                    cfg,
                    opts,
                }
            })
            .collect(),
    ))
}
