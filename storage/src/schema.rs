//! The reference schema of the data contract, loaded from the versioned file
//! `storage/schema/unified_v1.json` (compiled in), and the one schema check
//! every input goes through.
//!
//! The file lists the seven raw tables (with their key and join kind), the
//! unified table they join into, the two extra columns of the labelled
//! training CSVs and the truth-label table. To evolve the contract, add a
//! nullable column at the end of a table (and of `unified`) in a new
//! `unified_v<N>.json` and point [`SCHEMA_JSON`] at it.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::Deserialize;

use sluice_common::error::{EngineError, Result};

/// The versioned reference schema file, as compiled into the binary.
pub const SCHEMA_JSON: &str = include_str!("../schema/unified_v1.json");

/// The time zone of every timestamp in the contract.
pub const TIMESTAMP_TZ: &str = "UTC";

/// How a raw table joins onto `samples`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinKind {
    /// The base table (`samples`).
    Base,
    /// Inner join (`devices`).
    Inner,
    /// Left join (every other table).
    Left,
}

/// One raw table of the contract.
#[derive(Debug, Clone)]
pub struct RawTable {
    /// Table name, also its directory under `raw/`.
    pub name: String,
    /// The key column the table is joined on.
    pub key: String,
    /// How it joins onto `samples`.
    pub join: JoinKind,
    /// Its schema (names, types, nullability).
    pub schema: SchemaRef,
    /// The value checks of its columns (physical bounds, timestamps not in
    /// the future), in column order.
    pub checks: Vec<ValueCheck>,
}

/// A declared bound on the values of one raw column.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueCheck {
    /// Inclusive bounds of a numeric column; NaN and infinities are outside.
    Range {
        /// The column.
        column: String,
        /// Smallest allowed value.
        min: f64,
        /// Largest allowed value.
        max: f64,
    },
    /// A timestamp column whose values may lie at most
    /// [`future_tolerance_seconds`] after the run's start.
    NotInFuture {
        /// The column.
        column: String,
    },
}

impl ValueCheck {
    /// The column checked.
    pub fn column(&self) -> &str {
        match self {
            ValueCheck::Range { column, .. } | ValueCheck::NotInFuture { column } => column,
        }
    }
}

impl RawTable {
    /// Whether the table holds at most one row per `sample_id`.
    pub fn is_per_sample(&self) -> bool {
        self.join == JoinKind::Left && self.key == "sample_id"
    }
}

#[derive(Deserialize)]
struct ColumnSpec {
    name: String,
    #[serde(rename = "type")]
    ty: String,
    nullable: bool,
    #[serde(default)]
    min: Option<f64>,
    #[serde(default)]
    max: Option<f64>,
}

#[derive(Deserialize)]
struct TableSpec {
    name: String,
    key: String,
    join: JoinKind,
    columns: Vec<ColumnSpec>,
}

#[derive(Deserialize)]
struct SchemaFile {
    version: u32,
    future_tolerance_seconds: u64,
    tables: Vec<TableSpec>,
    unified: Vec<ColumnSpec>,
    training_extra: Vec<ColumnSpec>,
    truth_labels: Vec<ColumnSpec>,
}

struct Loaded {
    version: u32,
    future_tolerance_seconds: u64,
    tables: Vec<RawTable>,
    unified: SchemaRef,
    training: SchemaRef,
    truth: SchemaRef,
}

fn data_type(name: &str, column: &str) -> DataType {
    match name {
        "Int32" => DataType::Int32,
        "Int64" => DataType::Int64,
        "Float64" => DataType::Float64,
        "Utf8" => DataType::Utf8,
        "Boolean" => DataType::Boolean,
        "Timestamp" => timestamp_type(),
        // The file is compiled in and covered by unit tests, so an unknown
        // type is a build-time bug, not a user error.
        other => panic!("schema file: column `{column}` has unknown type `{other}`"),
    }
}

fn to_schema(columns: &[ColumnSpec]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(&c.name, data_type(&c.ty, &c.name), c.nullable))
            .collect::<Vec<_>>(),
    ))
}

fn value_check(c: &ColumnSpec) -> Option<ValueCheck> {
    if c.ty == "Timestamp" {
        return Some(ValueCheck::NotInFuture {
            column: c.name.clone(),
        });
    }
    if c.min.is_none() && c.max.is_none() {
        return None;
    }
    Some(ValueCheck::Range {
        column: c.name.clone(),
        min: c.min.unwrap_or(f64::MIN),
        max: c.max.unwrap_or(f64::MAX),
    })
}

fn loaded() -> &'static Loaded {
    static LOADED: OnceLock<Loaded> = OnceLock::new();
    LOADED.get_or_init(|| {
        let file: SchemaFile = serde_json::from_str(SCHEMA_JSON)
            .unwrap_or_else(|e| panic!("storage/schema/unified_v1.json is not valid: {e}"));
        let unified = to_schema(&file.unified);
        let mut training_fields: Vec<Field> = unified
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        training_fields.extend(
            to_schema(&file.training_extra)
                .fields()
                .iter()
                .map(|f| f.as_ref().clone()),
        );
        Loaded {
            version: file.version,
            future_tolerance_seconds: file.future_tolerance_seconds,
            tables: file
                .tables
                .iter()
                .map(|t| RawTable {
                    name: t.name.clone(),
                    key: t.key.clone(),
                    join: t.join,
                    schema: to_schema(&t.columns),
                    checks: t.columns.iter().filter_map(value_check).collect(),
                })
                .collect(),
            unified,
            training: Arc::new(Schema::new(training_fields)),
            truth: to_schema(&file.truth_labels),
        }
    })
}

/// The contract's timestamp type: `Timestamp(Microsecond, "UTC")`.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some(TIMESTAMP_TZ.into()))
}

/// How far after the run's start a raw timestamp may lie (clock skew of
/// the devices) before it counts as a value in the future.
pub fn future_tolerance_seconds() -> u64 {
    loaded().future_tolerance_seconds
}

/// The version of the compiled-in reference schema file.
pub fn schema_version() -> u32 {
    loaded().version
}

/// The unified schema: one row per sample, `samples` columns first, then the
/// other tables' non-key columns in table order.
pub fn unified_schema() -> SchemaRef {
    Arc::clone(&loaded().unified)
}

/// The training schema: [`unified_schema`] plus `indoor` (Int32) and
/// `label_source` (Utf8).
pub fn training_schema() -> SchemaRef {
    Arc::clone(&loaded().training)
}

/// The truth-label schema written by the generator (`sample_id`, `indoor`).
pub fn truth_schema() -> SchemaRef {
    Arc::clone(&loaded().truth)
}

/// The seven raw tables in contract order (`samples` first).
pub fn raw_tables() -> &'static [RawTable] {
    &loaded().tables
}

/// The raw table called `name`.
pub fn raw_table(name: &str) -> Result<&'static RawTable> {
    raw_tables().iter().find(|t| t.name == name).ok_or_else(|| {
        EngineError::data(
            format!("raw/{name}"),
            format!(
                "not a table of the contract; expected one of {}",
                raw_tables()
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })
}

/// The problem text of a column the contract expects and a schema or file
/// lacks: "missing column `x`: expected Float64 (nullable), found no such
/// column" (one wording for [`validate_schema`] and the raw-file checks).
pub fn missing_column(want: &Field) -> String {
    format!(
        "missing column `{}`: expected {}{}, found no such column",
        want.name(),
        want.data_type(),
        if want.is_nullable() {
            " (nullable)"
        } else {
            " (not null)"
        }
    )
}

/// Checks `found` against `expected`: same column names in the same order,
/// same types, and no nullable column where the contract requires values (a
/// column that is declared non-nullable where the contract allows nulls is
/// accepted). Every problem is listed in one [`EngineError::Data`] naming
/// `location` (table or file), the column, what was expected and what was
/// found.
pub fn validate_schema(found: &Schema, expected: &Schema, location: &str) -> Result<()> {
    let mut problems = Vec::new();
    let found_by_name: HashMap<&str, (usize, &Field)> = found
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| (f.name().as_str(), (i, f.as_ref())))
        .collect();
    let expected_names: HashMap<&str, usize> = expected
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| (f.name().as_str(), i))
        .collect();
    for (i, want) in expected.fields().iter().enumerate() {
        match found_by_name.get(want.name().as_str()) {
            None => problems.push(missing_column(want)),
            Some((j, got)) => {
                if !same_type(got.data_type(), want.data_type()) {
                    problems.push(format!(
                        "column `{}` has the wrong type: expected {}, found {}",
                        want.name(),
                        want.data_type(),
                        got.data_type()
                    ));
                }
                if got.is_nullable() && !want.is_nullable() {
                    problems.push(format!(
                        "column `{}` has the wrong nullability: expected not null, found nullable",
                        want.name()
                    ));
                }
                if *j != i {
                    problems.push(format!(
                        "column `{}` is out of order: expected position {}, found position {}",
                        want.name(),
                        i + 1,
                        j + 1
                    ));
                }
            }
        }
    }
    for got in found.fields() {
        if !expected_names.contains_key(got.name().as_str()) {
            problems.push(format!(
                "extra column `{}` ({}): expected no such column (contract columns: {})",
                got.name(),
                got.data_type(),
                expected
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    // Position mismatches are a consequence of a missing or extra column;
    // report them only when nothing else explains them.
    let only_order = problems.iter().all(|p| p.contains("out of order"));
    if !only_order {
        problems.retain(|p| !p.contains("out of order"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(EngineError::data(location, problems.join("; ")))
    }
}

/// Whether `found` holds the contract type `expected`. Strings may arrive
/// as `Utf8View` or `LargeUtf8` (DataFusion reads Parquet strings as views):
/// the same logical type, normalised by ingestion's final projection.
pub fn same_type(found: &DataType, expected: &DataType) -> bool {
    match expected {
        DataType::Utf8 => matches!(
            found,
            DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
        ),
        other => found == other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unified_is_the_join_of_the_raw_tables() {
        // Rebuild the unified schema from the tables by the contract's rule
        // and compare it with the file's explicit list.
        let mut fields: Vec<Field> = Vec::new();
        for t in raw_tables() {
            for f in t.schema.fields() {
                let is_key = t.join != JoinKind::Base && f.name() == &t.key;
                if is_key {
                    continue;
                }
                let nullable = f.is_nullable() || t.join == JoinKind::Left;
                fields.push(Field::new(f.name(), f.data_type().clone(), nullable));
            }
        }
        assert_eq!(Schema::new(fields), *unified_schema());
        assert_eq!(raw_tables().len(), 7);
        assert_eq!(unified_schema().fields().len(), 32);
    }

    #[test]
    fn training_schema_appends_label_columns() {
        let t = training_schema();
        let n = t.fields().len();
        assert_eq!(n, unified_schema().fields().len() + 2);
        assert_eq!(t.field(n - 2).name(), "indoor");
        assert_eq!(t.field(n - 2).data_type(), &DataType::Int32);
        assert_eq!(t.field(n - 1).name(), "label_source");
        assert_eq!(schema_version(), 1);
    }

    #[test]
    fn value_checks_come_from_the_schema_file() {
        let loc = raw_table("locations").unwrap();
        assert!(loc.checks.contains(&ValueCheck::Range {
            column: "latitude".into(),
            min: -90.0,
            max: 90.0
        }));
        assert!(loc.checks.contains(&ValueCheck::NotInFuture {
            column: "fix_ts".into()
        }));
        assert!(raw_table("devices").unwrap().checks.is_empty());
        assert_eq!(future_tolerance_seconds(), 86_400);
    }

    #[test]
    fn per_sample_tables_are_the_four_left_sample_tables() {
        let names: Vec<&str> = raw_tables()
            .iter()
            .filter(|t| t.is_per_sample())
            .map(|t| t.name.as_str())
            .collect();
        assert_eq!(names, ["locations", "radio", "activity", "environment"]);
        assert!(raw_table("nope")
            .unwrap_err()
            .to_string()
            .contains("raw/nope"));
    }

    #[test]
    fn validate_names_missing_extra_mistyped_and_nullability() {
        let expected = Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Float64, true),
        ]);
        assert!(validate_schema(&expected, &expected, "t").is_ok());
        // Narrower nullability is accepted.
        let narrower = Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Float64, false),
        ]);
        assert!(validate_schema(&narrower, &expected, "t").is_ok());

        let missing = Schema::new(vec![Field::new("a", DataType::Int64, false)]);
        let e = validate_schema(&missing, &expected, "raw/radio")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("raw/radio") && e.contains("missing column `b`") && e.contains("Float64"),
            "{e}"
        );

        let extra = Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Float64, true),
            Field::new("c", DataType::Utf8, true),
        ]);
        let e = validate_schema(&extra, &expected, "f.csv")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("extra column `c`") && !e.contains("out of order"),
            "{e}"
        );

        let mistyped = Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Utf8, true),
        ]);
        let e = validate_schema(&mistyped, &expected, "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected Float64, found Utf8"), "{e}");

        let nullable = Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Float64, true),
        ]);
        let e = validate_schema(&nullable, &expected, "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected not null, found nullable"), "{e}");

        let swapped = Schema::new(vec![
            Field::new("b", DataType::Float64, true),
            Field::new("a", DataType::Int64, false),
        ]);
        let e = validate_schema(&swapped, &expected, "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("out of order"), "{e}");
    }
}
