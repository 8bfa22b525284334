//! # sluice-transforms
//!
//! Sluice's feature engineering: the thesis' transform set (Table 7) as
//! DataFusion plan-to-plan transforms with fitted, serializable state.
//!
//! This crate owns
//! * the scalar UDFs (`haversine_m`, `local_hour`, `local_minute_of_day`,
//!   `local_is_weekend`, and the vectorized helpers `fill_null_f64`,
//!   `indicator_f64`, `signal_level` the imputers, the one-hot encoder and the
//!   level calculator compile to), listed by [`scalar_udfs`] and
//!   [`window_udfs`] (the session setup in `sluice-core` registers them with
//!   every other Sluice function; [`register_all`] is for a bare context);
//! * the transform specs ([`TransformSpec`], the YAML list entries);
//! * the estimator/model pair [`FeaturePipeline`] → [`FittedPipeline`]
//!   (the ML crate's `FeatureMatrix::from_batches` takes its Float64
//!   feature columns).
//!
//! It knows nothing about steps, files or Ballista: every transform is a set
//! of DataFusion expressions (window functions, `CASE`, casts and the UDFs
//! above), so a plan built here runs in-process and on Ballista executors that
//! have the same functions registered.
//!
//! ## Adding a transform
//! 1. Add a `XxxParams` struct with `#[serde(deny_unknown_fields)]` and
//!    documented defaults in `spec.rs`, and a variant to [`TransformSpec`].
//! 2. Check its parameters in `plan::check_params` and build its expressions in
//!    `plan::apply_step` (call `plan::require` for every input column first).
//! 3. If it learns state, add a [`FittedState`] variant, a `fit_*` function
//!    running an aggregate query in `fitted.rs`, and a placeholder in
//!    `plan::placeholder_state`.
//! 4. Test it against hand-computed values in `tests/transforms.rs`.
//!
//! A new UDF goes in its own file under `functions/` and into
//! `functions::all_udfs`.

pub mod error;
pub mod fitted;
pub mod functions;
mod plan;
pub mod spec;

use datafusion::logical_expr::{ScalarUDF, WindowUDF};
use datafusion::prelude::SessionContext;

pub use error::TransformError;
pub use fitted::{
    FeaturePipeline, FittedPipeline, FittedState, FittedStep, IndexedColumn, OneHotGroup,
    DEFAULT_CONTRACT_YAML, FITTED_FORMAT_VERSION,
};
pub use functions::haversine::{haversine_m, haversine_m_kernel, EARTH_RADIUS_M};
pub use spec::TransformSpec;

/// Every Sluice scalar UDF (the one list; names are unique).
pub fn scalar_udfs() -> Vec<ScalarUDF> {
    functions::all_udfs()
        .into_iter()
        .map(|u| ScalarUDF::clone(&u))
        .collect()
}

/// Every Sluice window UDF (`sluice_shift`, the lag/lead transforms).
pub fn window_udfs() -> Vec<WindowUDF> {
    functions::all_udwfs()
        .into_iter()
        .map(|u| WindowUDF::clone(&u))
        .collect()
}

/// Registers every Sluice UDF on a session context.
pub fn register_all(ctx: &SessionContext) {
    for udf in scalar_udfs() {
        ctx.register_udf(udf);
    }
    for udwf in window_udfs() {
        ctx.register_udwf(udwf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn udf_names_are_unique() {
        let udfs = scalar_udfs();
        let names: HashSet<String> = udfs.iter().map(|u| u.name().to_string()).collect();
        assert_eq!(names.len(), udfs.len());
        assert!(names.contains("haversine_m"));
    }

    #[tokio::test]
    async fn registered_udfs_run_in_sql() {
        let ctx = SessionContext::new();
        register_all(&ctx);
        let batches = ctx
            .sql(
                "SELECT haversine_m(0.0, 0.0, 1.0, 0.0) AS d, \
                 local_hour(arrow_cast('2026-03-29T01:00:00Z', 'Timestamp(Microsecond, Some(\"UTC\"))'), 'Europe/Berlin') AS h",
            )
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let s = arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        assert!(s.contains("111194.92664455"), "{s}");
        assert!(s.contains("| 3 "), "{s}");
    }
}
