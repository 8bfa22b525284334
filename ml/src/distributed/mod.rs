//! DataFusion functions for distributed training: the parts of fitting that
//! run on Ballista executors as aggregates over the partitions where the
//! data lives, with partial states that merge by concatenation (samples) or
//! addition (histograms). The driver only turns their results into
//! [`crate::BinEdges`] and [`crate::Histogram`]s and picks splits.
//!
//! | function | kind | what |
//! |---|---|---|
//! | `sluice_bin_sample(value, row_id, rate)` | UDAF | the deterministic row sample [`crate::BinEdges::fit`] uses, as a mergeable sketch → [`bin_sample::feature_bins`] |
//! | `sluice_bin(value, upper_bounds)` | UDF | a raw value's bin (`u8`, 0 = missing), to write the binned table once |
//! | `sluice_histogram(grad, hess, bin_0, ..., bin_{F-1})` | UDAF | per-group (e.g. `GROUP BY node`) gradient/hessian/count sums per (feature, bin) → [`histogram::to_histogram`] |
//! | `sluice_level_histograms(plan, label, row_id, bin_0, ...)` | UDAF | every histogram of one tree level: rows routed through the trees being grown, targets computed from the plan ([`level::LevelPlan`], a literal) → [`trainer::DistributedTrainer::absorb`] |
//! | `sluice_row_hash(seed, stream, row_id)` | UDF | the trainer's per-row hash (holdout thresholds, fold bounds) |
//! | `sluice_score_binned(model, bin_0, ...)` | UDF | P(class 1) of binned rows under a model ([`score::ScoredModel`], a literal): the cross-validation scores of a fold |
//!
//! The trainer itself runs [`trainer::DistributedTrainer`]: one
//! `sluice_level_histograms` pass per tree level (all trees of a forest
//! level in the same pass); the engine (`sluice_engine::dtrain`) runs the
//! queries.
//!
//! A level of a tree is one query:
//! `SELECT node, sluice_histogram(grad, hess, b0, b1, ...) FROM binned WHERE node IN (...) GROUP BY node`;
//! a random forest groups by `(tree, node)` to grow every tree's level in
//! the same pass.
//!
//! To add a function: one file here with its `XxxFunc` (declared with
//! `common::function_struct!`; `common` also has the `List(Float64)` state
//! helpers) and kernel, and one line in [`aggregate_udfs`] or
//! [`scalar_udfs`] (the engine's one list reads both).

pub mod bin;
pub mod bin_sample;
pub(crate) mod common;
pub mod histogram;
pub mod level;
pub mod resident;
pub mod row_hash;
pub mod score;
pub mod trainer;

use std::sync::Arc;

use datafusion::logical_expr::{AggregateUDF, ScalarUDF};

/// Every distributed-training aggregate function.
pub fn aggregate_udfs() -> Vec<Arc<AggregateUDF>> {
    vec![
        Arc::new(AggregateUDF::from(bin_sample::BinSampleFunc::new())),
        Arc::new(AggregateUDF::from(histogram::HistogramFunc::new())),
        Arc::new(AggregateUDF::from(level::LevelHistogramsFunc::new())),
    ]
}

/// Every distributed-training scalar function.
pub fn scalar_udfs() -> Vec<Arc<ScalarUDF>> {
    vec![
        Arc::new(ScalarUDF::from(bin::BinFunc::new())),
        Arc::new(ScalarUDF::from(row_hash::RowHashFunc::new())),
        Arc::new(ScalarUDF::from(score::ScoreBinnedFunc::new())),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        let mut names: Vec<String> = aggregate_udfs()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        names.extend(scalar_udfs().iter().map(|f| f.name().to_string()));
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(n, names.len());
    }
}
