//! Runs over a range of Hive partitions (`--partition date=2026-11-01..2026-11-07`)
//! become one run per partition value present in the lake, each with a
//! single-value filter, so every day's predictions are committed to that
//! day's directory (`predictions/date=<day>/`), exactly as a daily run
//! writes them, and a rerun of a range replaces each day atomically.

use crate::config::{LoadedConfig, PipelineKind};
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
    let filters = cfg.config.partition_filters();
    (!filters.is_empty()).then_some(filters)
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
    // Only a `samples` table partitioned by every ranged key splits the
    // run; otherwise one run applies the filters to the tables that are
    // (or names the filter no table is partitioned by).
    let whole = list_table_files(&lake, BASE_TABLE, &[]).await?;
    let partitioned = whole.files.iter().any(|f| {
        ranged
            .iter()
            .all(|r| f.partition.iter().any(|(k, _)| *k == r.key))
    });
    if !partitioned {
        return Ok(None);
    }
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
    if combos.is_empty() {
        let names: Vec<String> = ranged.iter().map(|r| r.to_string()).collect();
        return Err(EngineError::data(
            format!("raw/{BASE_TABLE}/"),
            format!(
                "the partition filter {} matches no partition of the table ({} data file(s) listed); \
                 check the range and the table's `<key>=<value>` directories",
                names.join(", "),
                whole.files.len()
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
                if let Some(i) = cfg.config.ingest_mut() {
                    for f in &mut i.partitions {
                        if let Some((_, v)) = combo.iter().find(|(k, _)| *k == f.key) {
                            f.first.clone_from(v);
                            f.last.clone_from(v);
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

#[cfg(test)]
mod tests {
    use super::*;

    const INFERENCE: &str = "name: daily\nkind: inference\nlake: LAKE\nsteps:\n  - step: ingest\n    partitions: [PARTS]\n  - step: features\n  - step: predict\n    model_name: io\n";

    async fn lake_with(files: &[&str]) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("lake").to_str().unwrap().to_string();
        let lake = Lake::open(&root).unwrap();
        for f in files {
            lake.put(f, bytes::Bytes::from_static(b"PAR1"))
                .await
                .unwrap();
        }
        (dir, root)
    }

    fn config(root: &str, parts: &str) -> LoadedConfig {
        let text = INFERENCE.replace("LAKE", root).replace("PARTS", parts);
        crate::config::parse(&text, "daily.yaml").unwrap()
    }

    #[tokio::test]
    async fn a_range_is_one_run_per_partition_present_in_order() {
        let (_d, root) = lake_with(&[
            "raw/samples/day=10/part-0.parquet",
            "raw/samples/day=9/part-0.parquet",
            "raw/samples/day=9/part-1.parquet",
            "raw/samples/day=12/part-0.parquet",
            "raw/samples/day=2/part-0.parquet",
            "raw/samples/_SUCCESS",
            "raw/radio/day=11/part-0.parquet",
        ])
        .await;
        let opts = RunOptions {
            run_id: Some("airflow-1".into()),
            ..RunOptions::default()
        };
        let runs = split(&config(&root, "day=9..12"), &opts)
            .await
            .unwrap()
            .unwrap();
        // Integers in numeric order; day 11 has no samples; day 2 is outside.
        let names: Vec<&str> = runs.iter().map(|r| r.partition.as_str()).collect();
        assert_eq!(names, ["day=9", "day=10", "day=12"]);
        let first = &runs[0];
        assert_eq!(first.opts.run_id.as_deref(), Some("airflow-1.day=9"));
        let filters = filters(&first.cfg).unwrap();
        assert_eq!(filters.len(), 1);
        assert!(filters[0].is_single() && filters[0].to_string() == "day=9");
    }

    #[tokio::test]
    async fn single_values_and_unpartitioned_samples_run_as_configured() {
        let (_d, root) = lake_with(&[
            "raw/samples/part-0.parquet",
            "raw/radio/day=1/part-0.parquet",
        ])
        .await;
        let opts = RunOptions::default();
        assert!(split(&config(&root, "day=1..3"), &opts)
            .await
            .unwrap()
            .is_none());
        assert!(split(&config(&root, "day=1"), &opts)
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn a_range_matching_no_partition_names_the_filter() {
        let (_d, root) = lake_with(&["raw/samples/date=2026-11-28/part-0.parquet"]).await;
        let e = split(
            &config(&root, "date=2026-12-01..2026-12-07"),
            &RunOptions::default(),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("date=2026-12-01..2026-12-07")
                && e.contains("raw/samples/")
                && e.contains("matches no partition"),
            "{e}"
        );
    }
}
