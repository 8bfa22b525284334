//! The transform set as serializable specifications (the YAML list entries).
//!
//! Each entry is `{name: <Transform>, params: {...}}`; unknown names and
//! unknown parameter keys are rejected when the config is parsed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

fn default_partition() -> String {
    "device_id".into()
}
fn default_order() -> String {
    "ts".into()
}
fn default_tie_breaker() -> Option<String> {
    Some("sample_id".into())
}
fn default_offset() -> u32 {
    1
}
fn default_ts() -> String {
    "ts".into()
}
fn default_fix_ts() -> String {
    "fix_ts".into()
}
fn default_gps_delay_output() -> String {
    "gps_delay_s".into()
}
fn default_timezone() -> String {
    "Europe/Berlin".into()
}
fn default_weekend_output() -> String {
    "is_weekend".into()
}
fn default_hour_output() -> String {
    "hour".into()
}
fn default_minute_output() -> String {
    "minute_of_day".into()
}
fn default_rsrp() -> String {
    "rsrp_dbm".into()
}
fn default_level_output() -> String {
    "level".into()
}
fn default_network_type() -> String {
    "network_type".into()
}
fn default_thresholds() -> [f64; 4] {
    DEFAULT_LEVEL_THRESHOLDS
}
fn default_other() -> String {
    "OTHER".into()
}
fn default_idx_suffix() -> String {
    "_idx".into()
}
fn default_vec_suffix() -> String {
    "_vec".into()
}
fn default_passthrough() -> Vec<String> {
    vec!["sample_id".into(), "device_id".into(), "ts".into()]
}
fn default_label() -> Option<String> {
    Some("indoor".into())
}

/// The data contract's signal level thresholds on `rsrp_dbm`, for levels
/// 4, 3, 2 and 1 (a value `>=` the threshold gets that level; below the last is 0).
pub const DEFAULT_LEVEL_THRESHOLDS: [f64; 4] = [-85.0, -95.0, -105.0, -115.0];

/// Parameters of `LagCalculator` and `LeadCalculator`: previous / next value of
/// `columns` within each `partition_by` group ordered by `order_by`, then
/// `tie_breaker` (for determinism when timestamps repeat).
///
/// Outputs are named `<column>_lag<offset>` / `<column>_lead<offset>`.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ShiftParams {
    /// Columns to shift.
    pub columns: Vec<String>,
    /// How many rows to look back / ahead (at least 1).
    #[serde(default = "default_offset")]
    pub offset: u32,
    /// Partition column (default `device_id`).
    #[serde(default = "default_partition")]
    pub partition_by: String,
    /// Order column (default `ts`).
    #[serde(default = "default_order")]
    pub order_by: String,
    /// Secondary order column (default `sample_id`); `null` to disable.
    #[serde(default = "default_tie_breaker")]
    pub tie_breaker: Option<String>,
}

/// Parameters of `DistanceCalculator`: `haversine_m(lat1, lon1, lat2, lon2)`.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DistanceParams {
    /// Latitude of the first point (degrees).
    pub lat1: String,
    /// Longitude of the first point (degrees).
    pub lon1: String,
    /// Latitude of the second point (degrees).
    pub lat2: String,
    /// Longitude of the second point (degrees).
    pub lon2: String,
    /// Output column (Float64 metres, null when any input is null).
    pub output: String,
}

/// Parameters of `GpsDelayCalculator`: `ts - fix_ts` in seconds (Float64).
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GpsDelayParams {
    /// Sample timestamp column (default `ts`).
    #[serde(default = "default_ts")]
    pub ts: String,
    /// Location fix timestamp column (default `fix_ts`).
    #[serde(default = "default_fix_ts")]
    pub fix_ts: String,
    /// Output column (default `gps_delay_s`).
    #[serde(default = "default_gps_delay_output")]
    pub output: String,
}

/// Parameters of `WeekendExtractor`: 1 on local Saturday/Sunday, else 0 (Int32).
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WeekendParams {
    /// Timestamp column (default `ts`).
    #[serde(default = "default_ts")]
    pub column: String,
    /// IANA time zone (default `Europe/Berlin`).
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// Output column (default `is_weekend`).
    #[serde(default = "default_weekend_output")]
    pub output: String,
}

/// Parameters of `TimeExtractor`: local hour of day (0..23) and minute of day
/// (0..1439), Int32, DST-correct.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TimeParams {
    /// Timestamp column (default `ts`).
    #[serde(default = "default_ts")]
    pub column: String,
    /// IANA time zone (default `Europe/Berlin`).
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// Hour output column (default `hour`).
    #[serde(default = "default_hour_output")]
    pub hour_output: String,
    /// Minute-of-day output column (default `minute_of_day`).
    #[serde(default = "default_minute_output")]
    pub minute_output: String,
}

/// Parameters of `LevelCalculator`: signal level 0..4 (Int32) from a dBm column.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LevelParams {
    /// Signal column (default `rsrp_dbm`); null stays null.
    #[serde(default = "default_rsrp")]
    pub column: String,
    /// Output column (default `level`).
    #[serde(default = "default_level_output")]
    pub output: String,
    /// Thresholds for levels 4, 3, 2, 1 in descending order
    /// (default the contract's `[-85, -95, -105, -115]`).
    #[serde(default = "default_thresholds")]
    pub thresholds: [f64; 4],
    /// Network type column consulted when `per_network_type` is not empty
    /// (default `network_type`).
    #[serde(default = "default_network_type")]
    pub network_type_column: String,
    /// Thresholds overriding `thresholds` for the given network types.
    #[serde(default)]
    pub per_network_type: BTreeMap<String, [f64; 4]>,
}

/// Parameters of `CategoricalFilter`: values outside `allowed` (and nulls)
/// become `other`.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CategoricalFilterParams {
    /// String column to filter.
    pub column: String,
    /// The allowed values.
    pub allowed: Vec<String>,
    /// Replacement value (default `OTHER`).
    #[serde(default = "default_other")]
    pub other: String,
    /// Output column; default replaces `column` in place.
    #[serde(default)]
    pub output: Option<String>,
}

/// Parameters of `MedianImputer`: nulls in `columns` become the column's
/// median on the training data; the columns become Float64.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MedianImputerParams {
    /// Numeric columns to impute in place.
    pub columns: Vec<String>,
    /// Value used when the training data has no non-null value (default 0).
    #[serde(default)]
    pub fallback: f64,
}

/// Parameters of `NumericalImputer`: nulls in `columns` become `value`; the
/// columns become Float64 (booleans become 0/1).
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NumericalImputerParams {
    /// Numeric or boolean columns to impute in place.
    pub columns: Vec<String>,
    /// Constant replacing nulls.
    pub value: f64,
}

/// Parameters of `StringIndexer`: each column gets an Int32 index column
/// `<column><suffix>`; labels are ordered by descending training frequency,
/// ties alphabetically (as Spark's `frequencyDesc`); nulls and values unseen
/// in training get the unknown index (= number of labels).
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StringIndexerParams {
    /// String columns to index.
    pub columns: Vec<String>,
    /// Output suffix (default `_idx`).
    #[serde(default = "default_idx_suffix")]
    pub suffix: String,
}

/// Parameters of `OneHotEncoder`: each integer index column becomes a group of
/// Float64 0/1 columns, one per category plus a final unknown slot (nulls,
/// negative and out-of-range indices).
///
/// The group is named after the input with a trailing `_idx` removed plus
/// `suffix` (`network_type_idx` → `network_type_vec`); its columns are
/// `<group>_<label>` (labels from the fitted `StringIndexer` when the input was
/// produced by one, else the index) and `<group>__unknown`. A
/// `VectorAssembler` listing the group name gets all its columns.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OneHotEncoderParams {
    /// Integer index columns to encode.
    pub columns: Vec<String>,
    /// Group suffix (default `_vec`).
    #[serde(default = "default_vec_suffix")]
    pub suffix: String,
}

/// Parameters of `VectorAssembler`: the final projection. Output is
/// `passthrough` columns, the label if present, then every feature column cast
/// to Float64 under a stable name.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VectorAssemblerParams {
    /// Feature columns (numeric or boolean) or one-hot group names.
    pub columns: Vec<String>,
    /// Columns kept as they are (default `sample_id`, `device_id`, `ts`).
    #[serde(default = "default_passthrough")]
    pub passthrough: Vec<String>,
    /// Label column kept when present in the input (default `indoor`).
    #[serde(default = "default_label")]
    pub label: Option<String>,
}

/// One transform of a feature pipeline, named as in the thesis (Table 7).
///
/// YAML: `- name: LagCalculator` / `  params: {columns: [latitude]}`.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "name", content = "params", deny_unknown_fields)]
pub enum TransformSpec {
    /// Previous values per device (window `lag`).
    LagCalculator(ShiftParams),
    /// Next values per device (window `lead`).
    LeadCalculator(ShiftParams),
    /// Haversine distance between two coordinate pairs.
    DistanceCalculator(DistanceParams),
    /// `ts - fix_ts` in seconds.
    GpsDelayCalculator(GpsDelayParams),
    /// Local weekend flag.
    WeekendExtractor(WeekendParams),
    /// Local hour and minute of day.
    TimeExtractor(TimeParams),
    /// Signal level 0..4.
    LevelCalculator(LevelParams),
    /// Map values outside an allowed set to `OTHER`.
    CategoricalFilter(CategoricalFilterParams),
    /// Fill nulls with training medians (fitted).
    MedianImputer(MedianImputerParams),
    /// Fill nulls with a constant.
    NumericalImputer(NumericalImputerParams),
    /// Frequency-ordered string indexing (fitted).
    StringIndexer(StringIndexerParams),
    /// One-hot encoding with an unknown slot (fitted).
    OneHotEncoder(OneHotEncoderParams),
    /// Final Float64 feature projection.
    VectorAssembler(VectorAssemblerParams),
}

impl TransformSpec {
    /// The transform's name as written in YAML.
    pub fn name(&self) -> &'static str {
        match self {
            TransformSpec::LagCalculator(_) => "LagCalculator",
            TransformSpec::LeadCalculator(_) => "LeadCalculator",
            TransformSpec::DistanceCalculator(_) => "DistanceCalculator",
            TransformSpec::GpsDelayCalculator(_) => "GpsDelayCalculator",
            TransformSpec::WeekendExtractor(_) => "WeekendExtractor",
            TransformSpec::TimeExtractor(_) => "TimeExtractor",
            TransformSpec::LevelCalculator(_) => "LevelCalculator",
            TransformSpec::CategoricalFilter(_) => "CategoricalFilter",
            TransformSpec::MedianImputer(_) => "MedianImputer",
            TransformSpec::NumericalImputer(_) => "NumericalImputer",
            TransformSpec::StringIndexer(_) => "StringIndexer",
            TransformSpec::OneHotEncoder(_) => "OneHotEncoder",
            TransformSpec::VectorAssembler(_) => "VectorAssembler",
        }
    }

    /// Whether the transform learns state from training data in `fit`.
    pub fn is_fitted(&self) -> bool {
        matches!(
            self,
            TransformSpec::MedianImputer(_)
                | TransformSpec::StringIndexer(_)
                | TransformSpec::OneHotEncoder(_)
        )
    }
}
