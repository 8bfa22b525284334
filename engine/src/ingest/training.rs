//! Training input: the labelled CSV files, read as text and cast with
//! validation so a bad value is found with its file, line and column.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, StringArray};
use arrow::compute::kernels::cast::{cast_with_options, CastOptions};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::{Column, ScalarValue};
use datafusion::functions::string::expr_fn::concat_ws;
use datafusion::logical_expr::{case, lit, try_cast, Expr};
use datafusion::prelude::{coalesce, CsvReadOptions, DataFrame, SessionContext};
use object_store::ObjectStore;

use super::{IngestDiagnostics, IngestOptions, IngestOutput, RejectedFile};
use crate::error::{EngineError, Result};
use crate::lake::Lake;
use crate::schema::{training_schema, validate_schema};

/// Name of the column carrying a rejected row's file.
pub const SOURCE_FILE_COLUMN: &str = "_source_file";
/// Name of the column listing a rejected row's bad columns.
pub const BAD_COLUMNS_COLUMN: &str = "_bad_columns";

/// Bytes read to find a CSV header line.
const HEADER_PROBE: u64 = 64 * 1024;

/// Reads the training CSVs matching `opts.csv_glob` into the training schema
/// (unified + `indoor` + `label_source`).
///
/// Each file's header is checked against the schema first (missing, extra
/// and misplaced columns name the file). Values are read as text and cast
/// with validation: a value that does not parse, a null in a non-nullable
/// column or an `indoor` outside {0, 1} makes the row bad. With
/// `reject_bad_rows = false` the first bad value fails ingestion with its
/// file, line and column; otherwise bad rows go to [`IngestOutput::rejected`]
/// and are counted (logged per file), so nothing is dropped silently.
pub async fn training_input(
    ctx: &SessionContext,
    lake: &Lake,
    opts: &IngestOptions,
) -> Result<IngestOutput> {
    lake.register(ctx);
    let files = matching_files(lake, &opts.csv_glob).await?;
    let expected = training_schema();
    let text_schema = Arc::new(Schema::new(
        expected
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));

    let mut typed_frames = Vec::new();
    let mut rejected_frames = Vec::new();
    let mut diagnostics = IngestDiagnostics::default();
    for (rel, size) in &files {
        check_header(lake, rel, *size, &expected).await?;
        let text = ctx
            .read_csv(
                lake.table_url(rel),
                CsvReadOptions::new()
                    .has_header(true)
                    .schema(&text_schema)
                    .file_extension(extension(rel)),
            )
            .await?;
        let bad = bad_row_predicate(&expected);
        let bad_rows = text.clone().filter(bad.clone())?.count().await? as u64;
        if bad_rows > 0 {
            if !opts.reject_bad_rows {
                return Err(first_bad_value(lake, rel, &text_schema, &expected, bad_rows).await?);
            }
            tracing::warn!(file = %rel, rows = bad_rows, "rejected rows that do not match the training schema");
            diagnostics.rejected_rows += bad_rows;
            diagnostics.rejected_files.push(RejectedFile {
                file: rel.clone(),
                rows: bad_rows,
            });
            let mut reasons = Vec::new();
            for f in expected.fields() {
                reasons.push(
                    case(column_bad(f))
                        .when(lit(true), lit(f.name().as_str()))
                        .end()?,
                );
            }
            rejected_frames.push(
                text.clone()
                    .filter(bad.clone())?
                    .with_column(SOURCE_FILE_COLUMN, lit(rel.as_str()))?
                    .with_column(BAD_COLUMNS_COLUMN, concat_ws(lit(","), reasons))?,
            );
        }
        let kept = if bad_rows > 0 {
            text.filter(!bad)?
        } else {
            text
        };
        typed_frames.push(kept.select(typed_columns(&expected)?)?);
        diagnostics.sources.push(rel.clone());
    }
    if diagnostics.rejected_rows > 0 {
        tracing::warn!(
            rows = diagnostics.rejected_rows,
            files = diagnostics.rejected_files.len(),
            "training ingestion rejected rows (see the rejected output)"
        );
    }

    let df = union_all(typed_frames)?.ok_or_else(|| no_files(&opts.csv_glob))?;
    validate_schema(df.schema().as_arrow(), &expected, &opts.csv_glob)?;
    let rejected = if opts.reject_bad_rows {
        Some(match union_all(rejected_frames)? {
            Some(r) => r,
            None => empty_rejected(ctx, &text_schema)?,
        })
    } else {
        None
    };
    Ok(IngestOutput {
        df,
        slices: Vec::new(),
        rejected,
        diagnostics,
    })
}

fn extension(rel: &str) -> &str {
    rel.rfind('.').map(|i| &rel[i..]).unwrap_or("")
}

fn no_files(glob: &str) -> EngineError {
    EngineError::data(
        glob,
        "no training CSV file matches this glob in the lake; expected the labelled files under training/ (e.g. training/manual.csv)",
    )
}

fn union_all(frames: Vec<DataFrame>) -> Result<Option<DataFrame>> {
    let mut it = frames.into_iter();
    let Some(mut acc) = it.next() else {
        return Ok(None);
    };
    for f in it {
        acc = acc.union(f)?;
    }
    Ok(Some(acc))
}

fn empty_rejected(ctx: &SessionContext, text_schema: &SchemaRef) -> Result<DataFrame> {
    let mut fields: Vec<Field> = text_schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(SOURCE_FILE_COLUMN, DataType::Utf8, true));
    fields.push(Field::new(BAD_COLUMNS_COLUMN, DataType::Utf8, true));
    let batch = arrow::array::RecordBatch::new_empty(Arc::new(Schema::new(fields)));
    Ok(ctx.read_batch(batch)?)
}

/// The CSV files under the glob's literal directory that match the glob,
/// sorted, with their sizes.
async fn matching_files(lake: &Lake, glob: &str) -> Result<Vec<(String, u64)>> {
    let pattern = glob::Pattern::new(glob).map_err(|e| {
        EngineError::config(
            "ingest.csv_glob",
            format!("`{glob}` is not a valid glob: {e}"),
        )
    })?;
    let literal_end = glob.find(['*', '?', '[']).unwrap_or(glob.len());
    let dir = glob[..literal_end]
        .rfind('/')
        .map(|i| &glob[..i])
        .unwrap_or("");
    let options = glob::MatchOptions {
        require_literal_separator: true,
        ..Default::default()
    };
    let mut out = Vec::new();
    for meta in lake.list(dir).await? {
        let rel = lake.relative(&meta.location);
        if pattern.matches_with(&rel, options) {
            out.push((rel, meta.size));
        }
    }
    if out.is_empty() {
        return Err(no_files(glob));
    }
    Ok(out)
}

/// Checks the header line of `rel` against the training schema.
async fn check_header(lake: &Lake, rel: &str, size: u64, expected: &Schema) -> Result<()> {
    let store = lake.store();
    let range = 0..size.min(HEADER_PROBE);
    let head = store
        .get_ranges(&lake.path(rel), std::slice::from_ref(&range))
        .await
        .map_err(|e| {
            EngineError::lake(lake.table_url(rel), format!("cannot read the header: {e}"))
        })?;
    let head = head.into_iter().next().unwrap_or_default();
    let text = String::from_utf8_lossy(&head);
    let Some(line) = text.lines().next().filter(|l| !l.trim().is_empty()) else {
        return Err(EngineError::data(
            format!("{rel}: line 1"),
            format!(
                "expected a header row with the {} training columns, found an empty file",
                expected.fields().len()
            ),
        ));
    };
    // The header has names only; give known columns their contract type so
    // the check reports names and positions, and unknown ones as text.
    let found = Schema::new(
        line.trim_end_matches('\r')
            .split(',')
            .map(|name| {
                let name = name.trim().trim_matches('"');
                match expected.field_with_name(name) {
                    Ok(f) => f.clone(),
                    Err(_) => Field::new(name, DataType::Utf8, true),
                }
            })
            .collect::<Vec<_>>(),
    );
    validate_schema(&found, expected, &format!("{rel} (header)"))
}

/// A column reference by exact name (no identifier parsing).
fn column(name: &str) -> Expr {
    Expr::Column(Column::from_name(name))
}

fn typed(f: &Field) -> Expr {
    try_cast(column(f.name()), f.data_type().clone())
}

/// True when the value of column `f` in a row is bad: text that does not
/// cast, a null where the contract requires a value, or an `indoor` label
/// outside {0, 1}.
fn column_bad(f: &Field) -> Expr {
    let raw = column(f.name());
    let unparsable = raw.clone().is_not_null().and(typed(f).is_null());
    let mut bad = if f.is_nullable() {
        unparsable
    } else {
        raw.is_null().or(unparsable)
    };
    if f.name() == "indoor" {
        bad = bad.or(typed(f).in_list(vec![lit(0i32), lit(1i32)], true).is_true());
    }
    bad
}

fn bad_row_predicate(expected: &Schema) -> Expr {
    expected
        .fields()
        .iter()
        .map(|f| column_bad(f))
        .reduce(Expr::or)
        .unwrap_or(lit(false))
}

/// The typed projection. Non-nullable columns are wrapped in
/// `coalesce(value, <zero>)` only so the plan's schema carries the
/// contract's nullability: rows with a null there were rejected or reported
/// above, so the fallback is never used.
fn typed_columns(expected: &Schema) -> Result<Vec<Expr>> {
    expected
        .fields()
        .iter()
        .map(|f| {
            let e = typed(f);
            let e = if f.is_nullable() {
                e
            } else {
                coalesce(vec![e, lit(zero_of(f)?)])
            };
            Ok(e.alias(f.name()))
        })
        .collect()
}

fn zero_of(f: &Field) -> Result<ScalarValue> {
    Ok(match f.data_type() {
        DataType::Timestamp(unit, tz) => {
            ScalarValue::new_zero(&DataType::Timestamp(*unit, tz.clone()))?
        }
        DataType::Utf8 => ScalarValue::Utf8(Some(String::new())),
        DataType::Boolean => ScalarValue::Boolean(Some(false)),
        other => ScalarValue::new_zero(other)?,
    })
}

/// Finds the first bad value of `rel` by reading it sequentially, and builds
/// the error naming file, line, column, expected type and found text.
async fn first_bad_value(
    lake: &Lake,
    rel: &str,
    text_schema: &SchemaRef,
    expected: &Schema,
    bad_rows: u64,
) -> Result<EngineError> {
    let bytes = lake.get(rel).await?;
    let reader = arrow::csv::ReaderBuilder::new(Arc::clone(text_schema))
        .with_header(true)
        .with_batch_size(8192)
        .build(std::io::Cursor::new(bytes))?;
    let options = CastOptions {
        safe: true,
        ..Default::default()
    };
    let mut row0 = 0usize;
    for batch in reader {
        let batch = batch?;
        let mut first: Option<(usize, usize, String)> = None;
        for (c, f) in expected.fields().iter().enumerate() {
            let raw = batch.column(c);
            let cast: ArrayRef = cast_with_options(raw, f.data_type(), &options)?;
            let text = raw
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(|| EngineError::Internal("CSV column not read as text".into()))?;
            for r in 0..batch.num_rows() {
                if first.as_ref().is_some_and(|(fr, _, _)| *fr <= r) {
                    break;
                }
                let null_raw = text.is_null(r);
                let bad_label = f.name() == "indoor"
                    && !null_raw
                    && !cast.is_null(r)
                    && !matches!(text.value(r).trim(), "0" | "1");
                let bad =
                    (!null_raw && cast.is_null(r)) || (null_raw && !f.is_nullable()) || bad_label;
                if bad {
                    let found = if null_raw {
                        "an empty value".to_string()
                    } else {
                        format!("`{}`", text.value(r))
                    };
                    first = Some((r, c, found));
                    break;
                }
            }
        }
        if let Some((r, c, found)) = first {
            let f = expected.field(c);
            // Line 1 is the header; data row k (0-based) is line k + 2.
            let line = row0 + r + 2;
            let want = if f.name() == "indoor" {
                "0 or 1 (Int32, not null)".to_string()
            } else {
                format!(
                    "{}{}",
                    f.data_type(),
                    if f.is_nullable() {
                        " or empty"
                    } else {
                        ", not null"
                    }
                )
            };
            return Ok(EngineError::data(
                format!("{rel}: line {line}, column `{}`", f.name()),
                format!(
                    "expected {want}, found {found} ({bad_rows} bad row(s) in this file; set reject_bad_rows to route them to the rejected output)"
                ),
            ));
        }
        row0 += batch.num_rows();
    }
    Err(EngineError::Internal(format!(
        "{rel}: the query found {bad_rows} bad row(s) but a sequential read found none"
    )))
}
