//! Sluice's scalar and window functions (one function per file) and their
//! single lists.

pub mod fill_null;
pub mod haversine;
pub mod indicator;
pub mod local_time;
pub mod shift;
pub mod signal_level;

use std::sync::Arc;

use datafusion::logical_expr::{ScalarUDF, WindowUDF};

/// Every Sluice scalar UDF, as shared instances.
pub fn all_udfs() -> Vec<Arc<ScalarUDF>> {
    vec![
        haversine::haversine_m_udf(),
        local_time::local_hour_udf(),
        local_time::local_minute_of_day_udf(),
        local_time::local_is_weekend_udf(),
        fill_null::fill_null_f64_udf(),
        indicator::indicator_f64_udf(),
        signal_level::signal_level_udf(),
    ]
}

/// Every Sluice window UDF, as shared instances.
pub fn all_udwfs() -> Vec<Arc<WindowUDF>> {
    vec![shift::shift_udwf()]
}
