//! Drift monitoring: profiles of the model's input features and predicted
//! probabilities, and their comparison.
//!
//! At training, [`reference_profile`] profiles the labelled rows: for each
//! feature, the counts over the model's own bin edges (the binned
//! distribution the trainer uses) are coarsened into at most
//! [`DRIFT_BINS`] bins of about equal reference mass (edges are a subset of
//! the model's), plus the missing bin, the null rate and min/max; the
//! predicted probability gets ten equal-width bins. The profile travels in
//! the model artefact.
//!
//! At inference, the `sluice_drift_profile(spec, v_1, ..., v_n)` aggregate
//! ([`ProfileFunc`]) counts the same bins (`spec` = [`ProfileSpec`], a JSON
//! literal of the reference edges) as a dense `List(Float64)` state merged by
//! addition (counts) and min/max, so it runs on Ballista executors like any
//! aggregate. [`compare`] then gives per column the population stability
//! index (PSI) over the bins (missing bin included) and the two-sample
//! Kolmogorov–Smirnov distance on the binned distributions of the present
//! values with its asymptotic p-value, and marks the run as drifted when a
//! PSI reaches [`DriftThresholds::psi_fail`].

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, FieldRef, Float64Type};
use datafusion::common::{exec_err, Result as DfResult, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDF, AggregateUDFImpl, Signature};
use datafusion::physical_expr::expressions::Literal;
use serde::{Deserialize, Serialize};

use crate::distributed::common::{
    f64_list, f64_list_state, f64_list_type, for_each_f64_list, function_struct,
};
use crate::error::{MlError, Result};
use crate::model::TrainedModel;

/// Most value bins of a feature in a drift profile.
pub const DRIFT_BINS: usize = 10;
/// Floor of a bin share in the PSI (an empty bin on one side would make it infinite).
pub const PSI_EPSILON: f64 = 1e-4;
/// Name of the profile aggregate.
pub const PROFILE_UDAF: &str = "sluice_drift_profile";
/// Name of the predicted-probability column in profiles and reports.
pub const PREDICTION_COLUMN: &str = "indoor_probability";

/// The distribution of one column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ColumnProfile {
    /// Column name.
    pub name: String,
    /// Ascending upper bounds of value bins `1..n-1` (the last is unbounded).
    pub upper_bounds: Vec<f64>,
    /// Row counts: `[missing, bin 1, ..., bin n]`.
    pub counts: Vec<f64>,
    /// Smallest present value (`None` when every value is missing).
    pub min: Option<f64>,
    /// Largest present value.
    pub max: Option<f64>,
}

impl ColumnProfile {
    /// Rows counted.
    pub fn rows(&self) -> f64 {
        self.counts.iter().sum()
    }

    /// Share of missing values (0 for no row).
    pub fn null_rate(&self) -> f64 {
        let n = self.rows();
        if n > 0.0 {
            self.counts[0] / n
        } else {
            0.0
        }
    }
}

/// Profiles of every model feature and of the predicted probability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DriftProfile {
    /// Rows profiled.
    pub rows: f64,
    /// One profile per model feature, in model order.
    pub features: Vec<ColumnProfile>,
    /// The predicted P(class 1).
    pub prediction: ColumnProfile,
}

impl DriftProfile {
    /// The bin edges of every column (features, then the prediction): the
    /// literal the inference-side aggregate counts with.
    pub fn spec(&self) -> ProfileSpec {
        ProfileSpec {
            columns: self
                .features
                .iter()
                .chain(std::iter::once(&self.prediction))
                .map(|c| c.upper_bounds.clone())
                .collect(),
        }
    }

    /// A profile with the same columns and edges from an aggregate's dense state.
    pub fn with_state(&self, state: &[f64]) -> Result<DriftProfile> {
        let spec = self.spec();
        if state.len() != spec.state_len() {
            return Err(MlError::Data(format!(
                "drift profile state has {} values, the reference needs {}",
                state.len(),
                spec.state_len()
            )));
        }
        let mut cols = Vec::with_capacity(spec.columns.len());
        let mut at = 0;
        for (c, ub) in self
            .features
            .iter()
            .chain(std::iter::once(&self.prediction))
            .zip(&spec.columns)
        {
            let n = ub.len() + 2;
            let counts = state[at..at + n].to_vec();
            let (mn, mx) = (state[at + n], state[at + n + 1]);
            at += n + 2;
            cols.push(ColumnProfile {
                name: c.name.clone(),
                upper_bounds: ub.clone(),
                counts,
                min: mn.is_finite().then_some(mn),
                max: mx.is_finite().then_some(mx),
            });
        }
        let prediction = cols
            .pop()
            .ok_or_else(|| MlError::Internal("no column".into()))?;
        Ok(DriftProfile {
            rows: cols.first().unwrap_or(&prediction).rows(),
            features: cols,
            prediction,
        })
    }
}

/// The bin edges of the columns a profile counts (features, then the
/// prediction), as the JSON literal of `sluice_drift_profile`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileSpec {
    /// Upper bounds per column.
    pub columns: Vec<Vec<f64>>,
}

impl ProfileSpec {
    /// Length of the dense state: per column, `n_value_bins + 1` counts, min and max.
    pub fn state_len(&self) -> usize {
        self.columns.iter().map(|c| c.len() + 4).sum()
    }

    /// The spec as a JSON string.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The spec as the literal first argument of `sluice_drift_profile`:
    /// a one-value dictionary of the JSON. An aggregate's literal argument
    /// is expanded to one value per row of every input batch; as a plain
    /// string that copies the JSON into each row, which overflows Arrow's
    /// 32-bit string offsets (and memory) on the large batches of a 38M-row
    /// inference, while a dictionary repeats only a 4-byte key.
    pub fn literal(&self) -> ScalarValue {
        ScalarValue::Dictionary(
            Box::new(DataType::Int32),
            Box::new(ScalarValue::Utf8(Some(self.to_json()))),
        )
    }

    /// Parses the JSON literal.
    pub fn parse(s: &str) -> Result<Self> {
        serde_json::from_str(s)
            .map_err(|e| MlError::Data(format!("drift profile spec does not parse: {e}")))
    }

    /// An empty dense state (zero counts, min `+inf`, max `-inf`).
    pub fn empty_state(&self) -> Vec<f64> {
        let mut s = Vec::with_capacity(self.state_len());
        for c in &self.columns {
            s.extend(std::iter::repeat_n(0.0, c.len() + 2));
            s.push(f64::INFINITY);
            s.push(f64::NEG_INFINITY);
        }
        s
    }

    /// Adds rows (one slice per column, `NaN` = missing) to a dense state.
    pub fn accumulate(&self, state: &mut [f64], cols: &[&[f64]]) {
        let mut at = 0;
        for (ub, col) in self.columns.iter().zip(cols) {
            let n = ub.len() + 2;
            let (counts, rest) = state[at..at + n + 2].split_at_mut(n);
            let (mut mn, mut mx) = (rest[0], rest[1]);
            for &v in col.iter() {
                if v.is_nan() {
                    counts[0] += 1.0;
                } else {
                    counts[1 + ub.partition_point(|&u| u < v)] += 1.0;
                    mn = mn.min(v);
                    mx = mx.max(v);
                }
            }
            rest[0] = mn;
            rest[1] = mx;
            at += n + 2;
        }
    }

    /// Merges a partial dense state into `state`.
    pub fn merge(&self, state: &mut [f64], part: &[f64]) {
        let mut at = 0;
        for ub in &self.columns {
            let n = ub.len() + 2;
            for (s, p) in state[at..at + n].iter_mut().zip(&part[at..at + n]) {
                *s += p;
            }
            state[at + n] = state[at + n].min(part[at + n]);
            state[at + n + 1] = state[at + n + 1].max(part[at + n + 1]);
            at += n + 2;
        }
    }
}

/// Upper bounds of the ten equal-width probability bins.
pub fn probability_bounds() -> Vec<f64> {
    (1..10).map(|k| k as f64 / 10.0).collect()
}

/// At most `max_bins` bins of about equal mass from fine `counts` (value
/// bins `1..=n` of `upper_bounds`; `counts[0]` is the missing bin): the
/// returned edges are a subset of `upper_bounds`.
pub fn coarsen(upper_bounds: &[f64], counts: &[f64], max_bins: usize) -> Vec<f64> {
    let values = &counts[1..];
    let total: f64 = values.iter().sum();
    if total <= 0.0 || upper_bounds.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut cum = 0.0;
    let mut next = 1;
    // The last value bin has no upper bound: edges come from bins 1..n-1.
    for (k, &c) in values[..values.len() - 1].iter().enumerate() {
        cum += c;
        if cum >= next as f64 * total / max_bins as f64 - 1e-9 && cum < total {
            out.push(upper_bounds[k]);
            while next as f64 * total / max_bins as f64 <= cum {
                next += 1;
            }
        }
    }
    out
}

/// The reference profile of `model` over `cols` (features in model order,
/// `NaN` = missing) and predicted probabilities `proba` (which may come
/// from other rows, e.g. only the held-out ones).
pub fn reference_profile(
    model: &TrainedModel,
    cols: &[&[f64]],
    proba: &[f64],
) -> Result<DriftProfile> {
    let names = model.feature_names();
    if cols.len() != names.len() {
        return Err(MlError::Data(format!(
            "{} columns for a model of {} features",
            cols.len(),
            names.len()
        )));
    }
    let fine = fine_spec(model);
    let mut fine_state = fine.empty_state();
    fine.accumulate(&mut fine_state, cols);
    let spec = reference_spec(&fine, &fine_state);
    let mut state = spec.empty_state();
    let mut all: Vec<&[f64]> = cols.to_vec();
    all.push(proba);
    spec.accumulate(&mut state, &all);
    reference_of_state(model, &spec, &state)
}

/// The first pass of a reference profile: fine counts of every feature
/// (model order) over the model's own bin edges. Its state (from
/// [`ProfileSpec::accumulate`] or the `sluice_drift_profile` aggregate,
/// which count alike) gives the bins of [`reference_spec`].
pub fn fine_spec(model: &TrainedModel) -> ProfileSpec {
    ProfileSpec {
        columns: model
            .bin_edges()
            .features
            .iter()
            .map(|f| f.upper_bounds.clone())
            .collect(),
    }
}

/// The bins of a reference profile from the fine counts of [`fine_spec`]:
/// each feature's coarsened to [`DRIFT_BINS`] of about equal mass, then the
/// probability's ten equal-width bins (the last column).
pub fn reference_spec(fine: &ProfileSpec, fine_state: &[f64]) -> ProfileSpec {
    let mut columns = Vec::with_capacity(fine.columns.len() + 1);
    let mut at = 0;
    for ub in &fine.columns {
        let n = ub.len() + 2;
        columns.push(coarsen(ub, &fine_state[at..at + n], DRIFT_BINS));
        at += n + 2;
    }
    columns.push(probability_bounds());
    ProfileSpec { columns }
}

/// The reference profile of `model` from the dense `state` of `spec` (a
/// [`reference_spec`]): the feature columns counted over the labelled rows,
/// the last over the predicted probabilities.
pub fn reference_of_state(
    model: &TrainedModel,
    spec: &ProfileSpec,
    state: &[f64],
) -> Result<DriftProfile> {
    let names = model.feature_names();
    if spec.columns.len() != names.len() + 1 {
        return Err(MlError::Data(format!(
            "a reference spec of {} columns for a model of {} features",
            spec.columns.len(),
            names.len()
        )));
    }
    let template = DriftProfile {
        rows: 0.0,
        features: names
            .iter()
            .zip(&spec.columns)
            .map(|(n, ub)| ColumnProfile {
                name: n.clone(),
                upper_bounds: ub.clone(),
                counts: Vec::new(),
                min: None,
                max: None,
            })
            .collect(),
        prediction: ColumnProfile {
            name: PREDICTION_COLUMN.into(),
            upper_bounds: probability_bounds(),
            counts: Vec::new(),
            min: None,
            max: None,
        },
    };
    template.with_state(state)
}

/// When a run counts as drifted.
#[derive(schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftThresholds {
    /// PSI from which a column is reported as `warn`.
    #[serde(default = "default_warn")]
    pub psi_warn: f64,
    /// PSI from which a column is `fail` and the run is drifted.
    #[serde(default = "default_fail")]
    pub psi_fail: f64,
    /// Whether a drifted run makes `sluice run` exit with its own code (3)
    /// instead of 0, for schedulers that branch on it (off by default:
    /// `drift.json` and the report say it either way).
    #[serde(default)]
    pub exit_on_drift: bool,
}

fn default_warn() -> f64 {
    0.1
}

fn default_fail() -> f64 {
    0.25
}

impl Default for DriftThresholds {
    fn default() -> Self {
        Self {
            psi_warn: default_warn(),
            psi_fail: default_fail(),
            exit_on_drift: false,
        }
    }
}

impl DriftThresholds {
    /// Checks `0 < psi_warn <= psi_fail`.
    pub fn validate(&self) -> Result<()> {
        if !(self.psi_warn > 0.0 && self.psi_warn.is_finite()) {
            return Err(MlError::Params {
                param: "drift.psi_warn".into(),
                message: format!("must be a positive number, got {}", self.psi_warn),
            });
        }
        if !(self.psi_fail >= self.psi_warn && self.psi_fail.is_finite()) {
            return Err(MlError::Params {
                param: "drift.psi_fail".into(),
                message: format!(
                    "must be a number >= psi_warn ({}), got {}",
                    self.psi_warn, self.psi_fail
                ),
            });
        }
        Ok(())
    }
}

/// Drift level of one column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftStatus {
    /// PSI below `psi_warn`.
    Ok,
    /// PSI in `[psi_warn, psi_fail)`.
    Warn,
    /// PSI at or above `psi_fail`.
    Fail,
}

/// The comparison of one column with its reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnDrift {
    /// Column name.
    pub name: String,
    /// Population stability index over the bins (missing bin included).
    pub psi: f64,
    /// Two-sample Kolmogorov–Smirnov distance between the binned
    /// distributions of present values.
    pub ks: f64,
    /// Asymptotic p-value of `ks` (small = the samples differ).
    pub ks_p_value: f64,
    /// Reference null rate.
    pub null_rate_reference: f64,
    /// Current null rate.
    pub null_rate_current: f64,
    /// Reference (min, max) of present values.
    pub reference_range: Option<(f64, f64)>,
    /// Current (min, max) of present values.
    pub current_range: Option<(f64, f64)>,
    /// Level by the PSI thresholds.
    pub status: DriftStatus,
    /// Bin shares `[missing, bin 1, ...]` of the reference.
    pub reference_shares: Vec<f64>,
    /// Bin shares of the current data.
    pub current_shares: Vec<f64>,
    /// The bins' upper bounds (the last bin is unbounded).
    pub upper_bounds: Vec<f64>,
}

/// The drift check of one inference run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftReport {
    /// True when a feature's or the prediction's PSI reaches `psi_fail`.
    pub drifted: bool,
    /// Thresholds applied.
    pub thresholds: DriftThresholds,
    /// Rows in the reference profile.
    pub reference_rows: f64,
    /// Rows profiled in this run.
    pub current_rows: f64,
    /// Per feature, by decreasing PSI.
    pub features: Vec<ColumnDrift>,
    /// The predicted-probability distribution.
    pub prediction: ColumnDrift,
}

impl DriftReport {
    /// Names of the features at `fail` level, by decreasing PSI.
    pub fn drifted_features(&self) -> Vec<&str> {
        self.features
            .iter()
            .filter(|f| f.status == DriftStatus::Fail)
            .map(|f| f.name.as_str())
            .collect()
    }
}

fn shares(counts: &[f64]) -> Vec<f64> {
    let n: f64 = counts.iter().sum();
    counts
        .iter()
        .map(|c| if n > 0.0 { c / n } else { 0.0 })
        .collect()
}

/// PSI of `current` against `reference` bin shares (each floored at [`PSI_EPSILON`]).
pub fn psi(reference: &[f64], current: &[f64]) -> f64 {
    reference
        .iter()
        .zip(current)
        .filter(|(p, q)| **p > 0.0 || **q > 0.0)
        .map(|(p, q)| {
            let (p, q) = (p.max(PSI_EPSILON), q.max(PSI_EPSILON));
            (q - p) * (q / p).ln()
        })
        .sum()
}

/// Two-sample KS distance of binned counts (missing bin excluded) and its
/// asymptotic p-value.
pub fn binned_ks(reference: &[f64], current: &[f64]) -> (f64, f64) {
    let (r, c) = (&reference[1..], &current[1..]);
    let (n, m): (f64, f64) = (r.iter().sum(), c.iter().sum());
    if n <= 0.0 || m <= 0.0 {
        return (0.0, 1.0);
    }
    let (mut fr, mut fc, mut d) = (0.0, 0.0, 0.0f64);
    for (a, b) in r.iter().zip(c) {
        fr += a / n;
        fc += b / m;
        d = d.max((fr - fc).abs());
    }
    let ne = n * m / (n + m);
    let lambda = (ne.sqrt() + 0.12 + 0.11 / ne.sqrt()) * d;
    (d, kolmogorov_q(lambda))
}

/// `Q_KS(λ) = 2 Σ (-1)^(j-1) exp(-2 j² λ²)`, clamped to `[0, 1]`.
fn kolmogorov_q(lambda: f64) -> f64 {
    if lambda < 1e-3 {
        return 1.0;
    }
    let mut sum = 0.0;
    for j in 1..=100 {
        let j = j as f64;
        let term = (-2.0 * j * j * lambda * lambda).exp();
        sum += if j as u64 % 2 == 1 { term } else { -term };
        if term < 1e-12 {
            break;
        }
    }
    (2.0 * sum).clamp(0.0, 1.0)
}

fn column_drift(r: &ColumnProfile, c: &ColumnProfile, t: &DriftThresholds) -> ColumnDrift {
    let (rs, cs) = (shares(&r.counts), shares(&c.counts));
    let p = psi(&rs, &cs);
    let (ks, ks_p_value) = binned_ks(&r.counts, &c.counts);
    let status = if p >= t.psi_fail {
        DriftStatus::Fail
    } else if p >= t.psi_warn {
        DriftStatus::Warn
    } else {
        DriftStatus::Ok
    };
    ColumnDrift {
        name: r.name.clone(),
        psi: p,
        ks,
        ks_p_value,
        null_rate_reference: r.null_rate(),
        null_rate_current: c.null_rate(),
        reference_range: r.min.zip(r.max),
        current_range: c.min.zip(c.max),
        status,
        reference_shares: rs,
        current_shares: cs,
        upper_bounds: r.upper_bounds.clone(),
    }
}

/// Compares a run's profile with the model's reference profile.
pub fn compare(
    reference: &DriftProfile,
    current: &DriftProfile,
    thresholds: &DriftThresholds,
) -> Result<DriftReport> {
    if reference.spec() != current.spec()
        || reference
            .features
            .iter()
            .zip(&current.features)
            .any(|(a, b)| a.name != b.name)
    {
        return Err(MlError::Data(
            "the current profile's columns or bins differ from the reference's".into(),
        ));
    }
    let mut features: Vec<ColumnDrift> = reference
        .features
        .iter()
        .zip(&current.features)
        .map(|(r, c)| column_drift(r, c, thresholds))
        .collect();
    features.sort_by(|a, b| b.psi.total_cmp(&a.psi));
    let prediction = column_drift(&reference.prediction, &current.prediction, thresholds);
    let drifted = prediction.status == DriftStatus::Fail
        || features.iter().any(|f| f.status == DriftStatus::Fail);
    Ok(DriftReport {
        drifted,
        thresholds: *thresholds,
        reference_rows: reference.rows,
        current_rows: current.rows,
        features,
        prediction,
    })
}

function_struct!(
    /// The `sluice_drift_profile(spec, v_1, ..., v_n)` aggregate: `spec` a
    /// [`ProfileSpec`] JSON literal ([`ProfileSpec::literal`], or a plain
    /// string), values coerced to Float64 (null = missing).
    ProfileFunc
);

/// The aggregate, for registration in the one function list.
pub fn profile_udaf() -> AggregateUDF {
    AggregateUDF::from(ProfileFunc::new())
}

fn spec_of(args: &AccumulatorArgs) -> DfResult<ProfileSpec> {
    let Some(lit) = args.exprs.first().and_then(|e| e.downcast_ref::<Literal>()) else {
        return exec_err!("{PROFILE_UDAF}: the spec (argument 1) must be a literal");
    };
    let Some(Some(json)) = lit.value().try_as_str() else {
        return exec_err!("{PROFILE_UDAF}: the spec (argument 1) must be a non-null string");
    };
    ProfileSpec::parse(json).map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))
}

impl AggregateUDFImpl for ProfileFunc {
    fn name(&self) -> &str {
        PROFILE_UDAF
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        if arg_types.len() < 2 {
            return exec_err!(
                "{PROFILE_UDAF} expects (spec, value, ...), got {} arguments",
                arg_types.len()
            );
        }
        let spec_type = match &arg_types[0] {
            DataType::Dictionary(_, v) if v.as_ref() == &DataType::Utf8 => arg_types[0].clone(),
            _ => DataType::Utf8,
        };
        let mut t = vec![spec_type];
        t.extend(std::iter::repeat_n(DataType::Float64, arg_types.len() - 1));
        Ok(t)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(f64_list_type())
    }

    fn state_fields(&self, args: StateFieldsArgs) -> DfResult<Vec<FieldRef>> {
        Ok(f64_list_state(args.name, "profile"))
    }

    fn accumulator(&self, acc_args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        let spec = spec_of(&acc_args)?;
        let n = acc_args.exprs.len() - 1;
        if n != spec.columns.len() {
            return exec_err!(
                "{PROFILE_UDAF}: {n} value columns, the spec has {}",
                spec.columns.len()
            );
        }
        let state = spec.empty_state();
        Ok(Box::new(ProfileAccumulator { spec, state }))
    }
}

/// The dense state of one group.
#[derive(Debug)]
struct ProfileAccumulator {
    spec: ProfileSpec,
    state: Vec<f64>,
}

impl Accumulator for ProfileAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        accumulate_arrays(&self.spec, &mut self.state, &values[1..]);
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        let Some(col) = states.first() else {
            return exec_err!("{PROFILE_UDAF}: no state column to merge");
        };
        let (spec, state) = (&self.spec, &mut self.state);
        for_each_f64_list(col, |part| {
            if part.len() != state.len() {
                return exec_err!(
                    "{PROFILE_UDAF}: partial state of {} values, expected {}",
                    part.len(),
                    state.len()
                );
            }
            spec.merge(state, part.values());
            Ok(())
        })
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        Ok(vec![f64_list(&self.state)])
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        Ok(f64_list(&self.state))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.state.capacity() * 8
    }
}

/// [`ProfileSpec::accumulate`] over Float64 arrays (null = missing).
fn accumulate_arrays(spec: &ProfileSpec, state: &mut [f64], values: &[ArrayRef]) {
    let owned: Vec<std::borrow::Cow<'_, [f64]>> = values
        .iter()
        .map(|a| {
            let a = a.as_primitive::<Float64Type>();
            if a.null_count() == 0 {
                std::borrow::Cow::Borrowed(&a.values()[..])
            } else {
                std::borrow::Cow::Owned(a.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
            }
        })
        .collect();
    let cols: Vec<&[f64]> = owned.iter().map(|c| c.as_ref()).collect();
    spec.accumulate(state, &cols);
}

/// Name of the profile tap ([`ProfileTap`]).
pub const PROFILE_TAP_UDF: &str = "sluice_drift_tap";

/// A drift profile taken on the way: the scalar function
/// `sluice_drift_tap(v_1, ..., v_n) -> v_n` returns its last argument
/// unchanged (the predicted probability) and adds every row of its
/// arguments to this tap's dense state, so the plan that writes the
/// predictions also profiles them, instead of a second pass that computes
/// the features and the predictions again only to aggregate them.
///
/// The state lives in this process: the function is for in-process plans
/// only (it is not in the function list Ballista executors register), and
/// [`ProfileTap::state`] gives the state only when the tap saw exactly the
/// rows the caller wrote, so a plan that evaluated it more or less often
/// than once per row is detected, never silently counted.
#[derive(Debug)]
pub struct ProfileTap {
    spec: ProfileSpec,
    state: std::sync::Mutex<Vec<f64>>,
    rows: std::sync::atomic::AtomicU64,
}

impl ProfileTap {
    /// An empty tap for `spec`.
    pub fn new(spec: ProfileSpec) -> std::sync::Arc<Self> {
        let state = std::sync::Mutex::new(spec.empty_state());
        std::sync::Arc::new(Self {
            spec,
            state,
            rows: Default::default(),
        })
    }

    /// The function that feeds this tap.
    pub fn udf(self: &std::sync::Arc<Self>) -> datafusion::logical_expr::ScalarUDF {
        datafusion::logical_expr::ScalarUDF::new_from_impl(TapFunc {
            signature: Signature::user_defined(datafusion::logical_expr::Volatility::Volatile),
            tap: std::sync::Arc::clone(self),
        })
    }

    /// Rows seen so far.
    pub fn rows(&self) -> u64 {
        self.rows.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The merged state, if the tap saw exactly `rows` rows.
    pub fn state(&self, rows: u64) -> Option<Vec<f64>> {
        if self.rows() != rows {
            return None;
        }
        self.state.lock().ok().map(|s| s.clone())
    }
}

/// The scalar function of a [`ProfileTap`] (equal only to itself).
#[derive(Debug)]
struct TapFunc {
    signature: Signature,
    tap: std::sync::Arc<ProfileTap>,
}

impl PartialEq for TapFunc {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.tap, &other.tap)
    }
}

impl Eq for TapFunc {}

impl std::hash::Hash for TapFunc {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        std::ptr::hash(std::sync::Arc::as_ptr(&self.tap), h)
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for TapFunc {
    fn name(&self) -> &str {
        PROFILE_TAP_UDF
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        if arg_types.len() != self.tap.spec.columns.len() {
            return exec_err!(
                "{PROFILE_TAP_UDF}: {} value columns, the spec has {}",
                arg_types.len(),
                self.tap.spec.columns.len()
            );
        }
        Ok(vec![DataType::Float64; arg_types.len()])
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> DfResult<datafusion::logical_expr::ColumnarValue> {
        let n = args.number_rows;
        let arrays = args
            .args
            .into_iter()
            .map(|a| a.into_array(n))
            .collect::<DfResult<Vec<_>>>()?;
        let spec = &self.tap.spec;
        let mut part = spec.empty_state();
        accumulate_arrays(spec, &mut part, &arrays);
        {
            let Ok(mut state) = self.tap.state.lock() else {
                return exec_err!("{PROFILE_TAP_UDF}: state lock poisoned");
            };
            spec.merge(&mut state, &part);
        }
        self.tap
            .rows
            .fetch_add(n as u64, std::sync::atomic::Ordering::SeqCst);
        match arrays.last() {
            Some(last) => Ok(datafusion::logical_expr::ColumnarValue::Array(
                std::sync::Arc::clone(last),
            )),
            None => exec_err!("{PROFILE_TAP_UDF}: no arguments"),
        }
    }
}

/// The values of a `sluice_drift_profile` result (a one-row `List(Float64)` column).
pub fn state_of_result(col: &ArrayRef) -> Result<Vec<f64>> {
    let mut out = None;
    for_each_f64_list(col, |p| {
        out = Some(p.values().to_vec());
        Ok(())
    })
    .map_err(|e| MlError::Internal(e.to_string()))?;
    out.ok_or_else(|| MlError::Internal(format!("{PROFILE_UDAF} returned no state")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coarsened_edges_split_mass_evenly() {
        let ub: Vec<f64> = (1..100).map(f64::from).collect();
        let mut counts = vec![5.0];
        counts.extend(std::iter::repeat_n(1.0, 100));
        let e = coarsen(&ub, &counts, 10);
        assert_eq!(
            e,
            vec![10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0]
        );
        // Two values: one edge.
        assert_eq!(coarsen(&[0.5], &[0.0, 30.0, 70.0], 10), vec![0.5]);
        // A constant column: no edge.
        assert!(coarsen(&[], &[1.0, 9.0], 10).is_empty());
    }

    #[test]
    fn psi_and_ks_by_hand() {
        let p = [0.0, 0.5, 0.5];
        assert_eq!(psi(&p, &p), 0.0);
        let q = [0.0, 0.25, 0.75];
        let want = (0.25 - 0.5) * (0.25f64 / 0.5).ln() + (0.75 - 0.5) * (0.75f64 / 0.5).ln();
        assert!((psi(&p, &q) - want).abs() < 1e-15);
        let (d, pv) = binned_ks(&[0.0, 500.0, 500.0], &[0.0, 250.0, 750.0]);
        assert!((d - 0.25).abs() < 1e-12);
        assert!(pv < 1e-10, "{pv}");
        let (d, pv) = binned_ks(&[3.0, 500.0, 500.0], &[0.0, 50.0, 50.0]);
        assert_eq!(d, 0.0);
        assert_eq!(pv, 1.0);
    }

    #[test]
    fn merged_partial_states_equal_one_pass() {
        let spec = ProfileSpec {
            columns: vec![vec![0.0, 1.0], probability_bounds()],
        };
        let a: Vec<f64> = vec![-1.0, 0.5, f64::NAN, 3.0, 1.0];
        let b: Vec<f64> = vec![0.05, 0.15, 0.95, f64::NAN, 0.5];
        let mut whole = spec.empty_state();
        spec.accumulate(&mut whole, &[&a, &b]);
        let mut p1 = spec.empty_state();
        spec.accumulate(&mut p1, &[&a[..2], &b[..2]]);
        let mut p2 = spec.empty_state();
        spec.accumulate(&mut p2, &[&a[2..], &b[2..]]);
        let mut merged = spec.empty_state();
        spec.merge(&mut merged, &p1);
        spec.merge(&mut merged, &p2);
        assert_eq!(merged, whole);
        // Column 0: missing 1; bins (<=0, <=1, >1) = 1, 2, 1; min -1, max 3.
        assert_eq!(&whole[..6], &[1.0, 1.0, 2.0, 1.0, -1.0, 3.0]);
    }

    /// The counts, minima and maxima equal a row-by-row count (runs of one
    /// bin, NaNs, several columns of few and many edges, batch lengths).
    #[test]
    fn accumulate_counts_like_row_by_row() {
        let spec = ProfileSpec {
            columns: vec![
                vec![0.5],
                vec![-2.0, 0.0, 1.0, 7.5],
                (0..40).map(|k| f64::from(k) * 0.5 - 4.0).collect(),
            ],
        };
        for len in [0usize, 1, 3, 4, 5, 1001, 5000] {
            let a: Vec<f64> = (0..len)
                .map(|i| if i % 50 < 40 { 0.0 } else { 1.0 })
                .collect();
            let b: Vec<f64> = (0..len)
                .map(|i| {
                    if i % 11 == 3 {
                        f64::NAN
                    } else {
                        (i % 23) as f64 - 5.0
                    }
                })
                .collect();
            let mut got = spec.empty_state();
            spec.accumulate(&mut got, &[&a, &b, &b]);
            let mut want = spec.empty_state();
            let mut at = 0;
            for (ub, col) in spec.columns.iter().zip([&a, &b, &b]) {
                let n = ub.len() + 2;
                for &v in col.iter() {
                    if v.is_nan() {
                        want[at] += 1.0;
                    } else {
                        want[at + 1 + ub.partition_point(|&u| u < v)] += 1.0;
                        want[at + n] = want[at + n].min(v);
                        want[at + n + 1] = want[at + n + 1].max(v);
                    }
                }
                at += n + 2;
            }
            assert_eq!(got, want, "{len} rows");
        }
    }

    #[test]
    fn thresholds_are_checked() {
        assert!(DriftThresholds::default().validate().is_ok());
        let e = DriftThresholds {
            psi_warn: 0.3,
            psi_fail: 0.2,
            exit_on_drift: false,
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(e.contains("drift.psi_fail"), "{e}");
    }
}
