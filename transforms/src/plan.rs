//! Plan building: each transform as DataFusion expressions over a `DataFrame`.
//!
//! Nothing here reads data. Column and type checks run against the input
//! schema before any expression is built, so configuration mistakes surface at
//! plan time with the transform, the column and the existing columns named.

use std::collections::{BTreeMap, HashSet};

use arrow::datatypes::DataType;
use datafusion::common::{Column, DFSchema};
use datafusion::logical_expr::{case, cast, Expr, ExprFunctionExt};
use datafusion::prelude::{ident, lit, DataFrame};

use crate::error::TransformError;
use crate::fitted::{FittedState, FittedStep, OneHotGroup};
use crate::functions::fill_null::fill_null_f64;
use crate::functions::haversine::haversine_m;
use crate::functions::indicator::indicator_f64;
use crate::functions::local_time::{local_time_part, utc_micros_type, LocalTimePart};
use crate::functions::signal_level::signal_level;
use crate::spec::*;

/// Kinds of column types a transform accepts.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    Any,
    Numeric,
    NumericOrBool,
    Integer,
    Text,
    Timestamp,
}

impl Kind {
    fn accepts(self, dt: &DataType) -> bool {
        match self {
            Kind::Any => true,
            Kind::Numeric => dt.is_numeric(),
            Kind::NumericOrBool => dt.is_numeric() || *dt == DataType::Boolean,
            Kind::Integer => dt.is_integer(),
            Kind::Text => match dt {
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
                DataType::Dictionary(_, v) => matches!(
                    v.as_ref(),
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                ),
                _ => false,
            },
            Kind::Timestamp => matches!(dt, DataType::Timestamp(_, _)),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Kind::Any => "any type",
            Kind::Numeric => "a numeric type (integer, float or decimal)",
            Kind::NumericOrBool => "a numeric or boolean type",
            Kind::Integer => "an integer type",
            Kind::Text => "a string type (Utf8, LargeUtf8, Utf8View)",
            Kind::Timestamp => "a Timestamp type",
        }
    }
}

fn listing(schema: &DFSchema, with_types: bool) -> String {
    schema
        .fields()
        .iter()
        .map(|f| {
            if with_types {
                format!("{}: {}", f.name(), f.data_type())
            } else {
                f.name().clone()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Looks `column` up in `schema` and checks it is of `kind`.
pub(crate) fn require(
    schema: &DFSchema,
    transform: &str,
    column: &str,
    kind: Kind,
) -> Result<DataType, TransformError> {
    let Some(field) = schema.fields().iter().find(|f| f.name() == column) else {
        return Err(TransformError::MissingColumn {
            transform: transform.into(),
            column: column.into(),
            available: listing(schema, false),
        });
    };
    if !kind.accepts(field.data_type()) {
        return Err(TransformError::WrongType {
            transform: transform.into(),
            column: column.into(),
            expected: kind.describe().into(),
            found: field.data_type().to_string(),
            available: listing(schema, true),
        });
    }
    Ok(field.data_type().clone())
}

fn has_column(schema: &DFSchema, column: &str) -> bool {
    schema.fields().iter().any(|f| f.name() == column)
}

fn config_err(transform: &str, message: impl Into<String>) -> TransformError {
    TransformError::Config {
        transform: transform.into(),
        message: message.into(),
    }
}

/// Checks a spec's parameters that do not depend on the data.
pub(crate) fn check_params(spec: &TransformSpec) -> Result<(), TransformError> {
    let name = spec.name();
    let non_empty = |cols: &[String]| {
        if cols.is_empty() {
            Err(config_err(name, "`columns` must list at least one column"))
        } else {
            Ok(())
        }
    };
    let tz_ok = |tz: &str| {
        tz.parse::<chrono_tz::Tz>().map(|_| ()).map_err(|_| {
            config_err(
                name,
                format!("unknown IANA time zone `{tz}` (expected e.g. `Europe/Berlin`)"),
            )
        })
    };
    let thresholds_ok = |t: &[f64; 4], what: &str| {
        if t.iter().all(|v| v.is_finite()) && t.windows(2).all(|w| w[0] > w[1]) {
            Ok(())
        } else {
            Err(config_err(
                name,
                format!("{what} {t:?} must be 4 finite values in strictly descending order (levels 4, 3, 2, 1)"),
            ))
        }
    };
    match spec {
        TransformSpec::LagCalculator(p) | TransformSpec::LeadCalculator(p) => {
            non_empty(&p.columns)?;
            if p.offset == 0 {
                return Err(config_err(name, "`offset` must be at least 1"));
            }
        }
        TransformSpec::WeekendExtractor(p) => tz_ok(&p.timezone)?,
        TransformSpec::TimeExtractor(p) => tz_ok(&p.timezone)?,
        TransformSpec::LevelCalculator(p) => {
            thresholds_ok(&p.thresholds, "thresholds")?;
            for (nt, t) in &p.per_network_type {
                thresholds_ok(t, &format!("thresholds for network type `{nt}`"))?;
            }
        }
        TransformSpec::CategoricalFilter(p) => {
            if p.allowed.is_empty() {
                return Err(config_err(
                    name,
                    format!("`allowed` for column `{}` is empty", p.column),
                ));
            }
        }
        TransformSpec::MedianImputer(p) => {
            non_empty(&p.columns)?;
            if !p.fallback.is_finite() {
                return Err(config_err(name, "`fallback` must be finite"));
            }
        }
        TransformSpec::NumericalImputer(p) => {
            non_empty(&p.columns)?;
            if !p.value.is_finite() {
                return Err(config_err(name, "`value` must be finite"));
            }
        }
        TransformSpec::StringIndexer(p) => non_empty(&p.columns)?,
        TransformSpec::OneHotEncoder(p) => non_empty(&p.columns)?,
        TransformSpec::VectorAssembler(p) => {
            non_empty(&p.columns)?;
            let mut seen = HashSet::new();
            for c in &p.columns {
                if !seen.insert(c) {
                    return Err(config_err(
                        name,
                        format!("feature column `{c}` is listed twice"),
                    ));
                }
            }
        }
        TransformSpec::DistanceCalculator(_) | TransformSpec::GpsDelayCalculator(_) => {}
    }
    Ok(())
}

/// Projects `df` keeping every column, replacing those named in `outputs`
/// in place and appending the others in order.
fn project_with(df: DataFrame, outputs: Vec<(String, Expr)>) -> Result<DataFrame, TransformError> {
    let mut outputs: Vec<(String, Option<Expr>)> =
        outputs.into_iter().map(|(n, e)| (n, Some(e))).collect();
    let mut exprs = Vec::with_capacity(df.schema().fields().len() + outputs.len());
    for (qualifier, field) in df.schema().iter() {
        match outputs.iter_mut().find(|(n, _)| n == field.name()) {
            Some((n, e)) => exprs.push(e.take().expect("each output used once").alias(n.clone())),
            None => exprs.push(Expr::Column(Column::new(qualifier.cloned(), field.name()))),
        }
    }
    for (n, e) in outputs {
        if let Some(e) = e {
            exprs.push(e.alias(n));
        }
    }
    Ok(df.select(exprs)?)
}

fn f64_of(column: &str) -> Expr {
    cast(ident(column), DataType::Float64)
}

/// Output column name of a lag/lead.
pub(crate) fn shift_output(column: &str, lead_not_lag: bool, offset: u32) -> String {
    if lead_not_lag {
        format!("{column}_lead{offset}")
    } else {
        format!("{column}_lag{offset}")
    }
}

/// Plan-time state threaded through the steps: one-hot groups seen so far.
#[derive(Default)]
pub(crate) struct PlanCtx {
    pub(crate) groups: BTreeMap<String, Vec<String>>,
    pub(crate) features: Option<Vec<String>>,
}

fn window_key(spec: &TransformSpec) -> Option<(&str, &str, Option<&str>)> {
    match spec {
        TransformSpec::LagCalculator(p) | TransformSpec::LeadCalculator(p) => Some((
            p.partition_by.as_str(),
            p.order_by.as_str(),
            p.tie_breaker.as_deref(),
        )),
        _ => None,
    }
}

/// Applies `steps` to `df`, batching consecutive lag/lead steps over the same
/// window into one projection (one sort).
pub(crate) fn apply_steps(
    mut df: DataFrame,
    steps: &[FittedStep],
    ctx: &mut PlanCtx,
) -> Result<DataFrame, TransformError> {
    let mut i = 0;
    while i < steps.len() {
        if let Some(key) = window_key(&steps[i].spec) {
            let mut j = i + 1;
            let mut produced: HashSet<String> = shift_outputs(&steps[i].spec).into_iter().collect();
            while j < steps.len() && window_key(&steps[j].spec) == Some(key) {
                let inputs = shift_inputs(&steps[j].spec);
                if inputs.iter().any(|c| produced.contains(c)) {
                    break;
                }
                produced.extend(shift_outputs(&steps[j].spec));
                j += 1;
            }
            df = apply_shifts(df, &steps[i..j])?;
            i = j;
        } else {
            df = apply_step(df, &steps[i], ctx)?;
            i += 1;
        }
    }
    Ok(df)
}

fn shift_inputs(spec: &TransformSpec) -> Vec<String> {
    match spec {
        TransformSpec::LagCalculator(p) | TransformSpec::LeadCalculator(p) => {
            let mut v = p.columns.clone();
            v.push(p.partition_by.clone());
            v.push(p.order_by.clone());
            v.extend(p.tie_breaker.clone());
            v
        }
        _ => vec![],
    }
}

fn shift_outputs(spec: &TransformSpec) -> Vec<String> {
    match spec {
        TransformSpec::LagCalculator(p) => p
            .columns
            .iter()
            .map(|c| shift_output(c, false, p.offset))
            .collect(),
        TransformSpec::LeadCalculator(p) => p
            .columns
            .iter()
            .map(|c| shift_output(c, true, p.offset))
            .collect(),
        _ => vec![],
    }
}

fn apply_shifts(df: DataFrame, steps: &[FittedStep]) -> Result<DataFrame, TransformError> {
    let mut outputs = Vec::new();
    for step in steps {
        let (p, is_lead) = match &step.spec {
            TransformSpec::LagCalculator(p) => (p, false),
            TransformSpec::LeadCalculator(p) => (p, true),
            _ => unreachable!("apply_shifts only receives lag/lead steps"),
        };
        let name = step.spec.name();
        let schema = df.schema();
        require(schema, name, &p.partition_by, Kind::Any)?;
        require(schema, name, &p.order_by, Kind::Any)?;
        let mut order = vec![ident(&p.order_by).sort(true, false)];
        if let Some(tb) = &p.tie_breaker {
            require(schema, name, tb, Kind::Any)?;
            order.push(ident(tb).sort(true, false));
        }
        for c in &p.columns {
            require(schema, name, c, Kind::Any)?;
            let k = i64::from(p.offset);
            let f = crate::functions::shift::shift_udwf()
                .call(vec![ident(c), lit(if is_lead { -k } else { k })]);
            let w = f
                .partition_by(vec![ident(&p.partition_by)])
                .order_by(order.clone())
                .build()?;
            outputs.push((shift_output(c, is_lead, p.offset), w));
        }
    }
    project_with(df, outputs)
}

/// Sanitizes a category label for use in a column name.
fn sanitize(label: &str) -> String {
    let s: String = label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if s.is_empty() {
        "_empty".into()
    } else {
        s
    }
}

/// Column names of a one-hot group: one per label plus the unknown slot,
/// made unique.
pub(crate) fn one_hot_names(group: &str, labels: &[String]) -> Vec<String> {
    let mut used = HashSet::new();
    let mut names = Vec::with_capacity(labels.len() + 1);
    let candidates = labels
        .iter()
        .map(|l| format!("{group}_{}", sanitize(l)))
        .chain(std::iter::once(format!("{group}__unknown")));
    for (k, cand) in candidates.enumerate() {
        let mut name = cand.clone();
        if !used.insert(name.clone()) {
            name = format!("{cand}_{k}");
            used.insert(name.clone());
        }
        names.push(name);
    }
    names
}

/// The group name of a one-hot encoded input column.
pub(crate) fn one_hot_group_name(input: &str, suffix: &str) -> String {
    format!("{}{suffix}", input.strip_suffix("_idx").unwrap_or(input))
}

fn state_err(transform: &str, message: impl Into<String>) -> TransformError {
    TransformError::State {
        transform: transform.into(),
        message: message.into(),
    }
}

/// Applies one (non lag/lead) step.
pub(crate) fn apply_step(
    df: DataFrame,
    step: &FittedStep,
    ctx: &mut PlanCtx,
) -> Result<DataFrame, TransformError> {
    let name = step.spec.name();
    check_params(&step.spec)?;
    let schema = df.schema().clone();
    match (&step.spec, &step.state) {
        (TransformSpec::LagCalculator(_) | TransformSpec::LeadCalculator(_), _) => {
            apply_shifts(df, std::slice::from_ref(step))
        }
        (TransformSpec::DistanceCalculator(p), _) => {
            for c in [&p.lat1, &p.lon1, &p.lat2, &p.lon2] {
                require(&schema, name, c, Kind::Numeric)?;
            }
            let e = haversine_m(f64_of(&p.lat1), f64_of(&p.lon1), f64_of(&p.lat2), f64_of(&p.lon2));
            project_with(df, vec![(p.output.clone(), e)])
        }
        (TransformSpec::GpsDelayCalculator(p), _) => {
            require(&schema, name, &p.ts, Kind::Timestamp)?;
            require(&schema, name, &p.fix_ts, Kind::Timestamp)?;
            let micros = |c: &str| cast(cast(ident(c), utc_micros_type()), DataType::Int64);
            let e = cast(micros(&p.ts) - micros(&p.fix_ts), DataType::Float64) / lit(1_000_000.0);
            project_with(df, vec![(p.output.clone(), e)])
        }
        (TransformSpec::WeekendExtractor(p), _) => {
            require(&schema, name, &p.column, Kind::Timestamp)?;
            let ts = cast(ident(&p.column), utc_micros_type());
            let e = local_time_part(LocalTimePart::IsWeekend, ts, &p.timezone);
            project_with(df, vec![(p.output.clone(), e)])
        }
        (TransformSpec::TimeExtractor(p), _) => {
            require(&schema, name, &p.column, Kind::Timestamp)?;
            let ts = cast(ident(&p.column), utc_micros_type());
            project_with(
                df,
                vec![
                    (p.hour_output.clone(), local_time_part(LocalTimePart::Hour, ts.clone(), &p.timezone)),
                    (p.minute_output.clone(), local_time_part(LocalTimePart::MinuteOfDay, ts, &p.timezone)),
                ],
            )
        }
        (TransformSpec::LevelCalculator(p), _) => {
            require(&schema, name, &p.column, Kind::Numeric)?;
            let v = f64_of(&p.column);
            let default = signal_level(v.clone(), &p.thresholds);
            let e = if p.per_network_type.is_empty() {
                default
            } else {
                require(&schema, name, &p.network_type_column, Kind::Text)?;
                let mut b = case(ident(&p.network_type_column));
                for (nt, t) in &p.per_network_type {
                    b = b.when(lit(nt.clone()), signal_level(v.clone(), t));
                }
                b.otherwise(default)?
            };
            project_with(df, vec![(p.output.clone(), e)])
        }
        (TransformSpec::CategoricalFilter(p), _) => {
            require(&schema, name, &p.column, Kind::Text)?;
            // `CASE col WHEN 'a' THEN 'a' ... ELSE other END`: literal branches
            // run as one hash lookup (DataFusion's literal lookup table) on the
            // column as it is (Utf8View from Parquet), and the output is built
            // from the literals, without casting the input to Utf8 first.
            let mut b = case(ident(&p.column));
            for a in &p.allowed {
                b = b.when(lit(a.clone()), lit(a.clone()));
            }
            let e = b.otherwise(lit(p.other.clone()))?;
            let out = p.output.clone().unwrap_or_else(|| p.column.clone());
            project_with(df, vec![(out, e)])
        }
        (TransformSpec::MedianImputer(p), FittedState::Medians { values }) => {
            let mut outputs = Vec::new();
            for c in &p.columns {
                require(&schema, name, c, Kind::Numeric)?;
                let Some((_, m)) = values.iter().find(|(k, _)| k == c) else {
                    return Err(state_err(name, format!("no fitted median for column `{c}`")));
                };
                outputs.push((c.clone(), fill_null_f64(f64_of(c), lit(*m))));
            }
            project_with(df, outputs)
        }
        (TransformSpec::NumericalImputer(p), _) => {
            let mut outputs = Vec::new();
            for c in &p.columns {
                require(&schema, name, c, Kind::NumericOrBool)?;
                outputs.push((c.clone(), fill_null_f64(f64_of(c), lit(p.value))));
            }
            project_with(df, outputs)
        }
        (TransformSpec::StringIndexer(p), FittedState::Labels { columns }) => {
            let mut outputs = Vec::new();
            for c in &p.columns {
                require(&schema, name, c, Kind::Text)?;
                let Some(ic) = columns.iter().find(|ic| &ic.column == c) else {
                    return Err(state_err(name, format!("no fitted labels for column `{c}`")));
                };
                let unknown = lit(ic.labels.len() as i32);
                let e = if ic.labels.is_empty() {
                    unknown
                } else {
                    // No cast to Utf8: the lookup table handles Utf8View and
                    // dictionaries directly.
                    let mut b = case(ident(c));
                    for (k, l) in ic.labels.iter().enumerate() {
                        b = b.when(lit(l.clone()), lit(k as i32));
                    }
                    b.otherwise(unknown)?
                };
                outputs.push((format!("{c}{}", p.suffix), e));
            }
            project_with(df, outputs)
        }
        (TransformSpec::OneHotEncoder(p), FittedState::OneHot { groups }) => {
            let mut outputs = Vec::new();
            for c in &p.columns {
                require(&schema, name, c, Kind::Integer)?;
                let Some(g) = groups.iter().find(|g| &g.input == c) else {
                    return Err(state_err(name, format!("no fitted one-hot group for column `{c}`")));
                };
                if g.columns.is_empty() {
                    return Err(state_err(name, format!("one-hot group `{}` has no columns", g.group)));
                }
                let n = (g.columns.len() - 1) as i64;
                let v = cast(ident(c), DataType::Int64);
                for (k, out) in g.columns[..g.columns.len() - 1].iter().enumerate() {
                    let k = k as i64;
                    outputs.push((out.clone(), indicator_f64(v.clone(), k, k + 1)));
                }
                let unknown = lit(1.0) - indicator_f64(v, 0, n);
                outputs.push((g.columns[g.columns.len() - 1].clone(), unknown));
                ctx.groups.insert(g.group.clone(), g.columns.clone());
            }
            project_with(df, outputs)
        }
        (TransformSpec::VectorAssembler(p), _) => {
            let features = assembler_features(p, &ctx.groups);
            let mut exprs = Vec::new();
            for c in &p.passthrough {
                require(&schema, name, c, Kind::Any)?;
                exprs.push(ident(c));
            }
            if let Some(label) = &p.label {
                if has_column(&schema, label) && !p.passthrough.contains(label) {
                    exprs.push(ident(label));
                }
            }
            let mut seen = HashSet::new();
            for f in &features {
                if !seen.insert(f.clone()) || p.passthrough.contains(f) {
                    return Err(config_err(name, format!("feature column `{f}` would appear twice in the output")));
                }
                require(&schema, name, f, Kind::NumericOrBool)?;
                exprs.push(f64_of(f).alias(f.clone()));
            }
            ctx.features = Some(features);
            Ok(df.select(exprs)?)
        }
        (spec, state) => Err(state_err(
            name,
            format!(
                "step `{}` cannot be applied with fitted state {state:?} (was the pipeline fitted?)",
                spec.name()
            ),
        )),
    }
}

/// The assembler's output feature names, expanding one-hot group names.
pub(crate) fn assembler_features(
    p: &VectorAssemblerParams,
    groups: &BTreeMap<String, Vec<String>>,
) -> Vec<String> {
    let mut out = Vec::new();
    for c in &p.columns {
        match groups.get(c) {
            Some(cols) => out.extend(cols.iter().cloned()),
            None => out.push(c.clone()),
        }
    }
    out
}

/// Placeholder state used for the plan-time dry run before fitting.
pub(crate) fn placeholder_state(spec: &TransformSpec, prior: &[FittedStep]) -> FittedState {
    match spec {
        TransformSpec::MedianImputer(p) => FittedState::Medians {
            values: p.columns.iter().map(|c| (c.clone(), 0.0)).collect(),
        },
        TransformSpec::StringIndexer(p) => FittedState::Labels {
            columns: p
                .columns
                .iter()
                .map(|c| crate::fitted::IndexedColumn {
                    column: c.clone(),
                    labels: vec![],
                })
                .collect(),
        },
        TransformSpec::OneHotEncoder(p) => FittedState::OneHot {
            groups: p
                .columns
                .iter()
                .map(|c| {
                    let group = one_hot_group_name(c, &p.suffix);
                    let labels = crate::fitted::indexer_labels(prior, c).unwrap_or_default();
                    OneHotGroup {
                        input: c.clone(),
                        columns: one_hot_names(&group, &labels),
                        group,
                    }
                })
                .collect(),
        },
        _ => FittedState::Stateless,
    }
}
