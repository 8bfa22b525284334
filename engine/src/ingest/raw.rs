//! Raw tables as ordinary writers leave them, checked by meaning.
//!
//! A raw table is every `*.parquet` file under `raw/<table>/`, at any depth
//! (Hive partitions `date=2026-11-28/`). Names starting with `_` or `.`
//! (Spark's `_SUCCESS`, `_committed_*`, `_started_*`, `_temporary/`, `.crc`
//! checksums) are writer bookkeeping and never read; other non-Parquet files
//! are skipped with a warning. Partition filters prune the listing before
//! any file is opened.
//!
//! Every kept file's footer is read once (concurrently) and checked against
//! the contract:
//! * the file itself: zero bytes, too short, not Parquet, truncated or a
//!   corrupt footer are data errors naming the file and what is wrong;
//! * columns by name (order is free): missing and extra ones are named;
//! * types by meaning ([`fit`]): integers narrower than the contract's,
//!   `Float32`, any string encoding, timestamps in any unit with any or no
//!   zone are coerced by the scan (DataFusion casts each file's columns to
//!   the table schema given to it), and where a value could change
//!   (`Int64` into `Int32`, seconds or milliseconds that could overflow
//!   microseconds, nanoseconds with a sub-microsecond part) the values are
//!   checked: from the footer's statistics where they decide it, otherwise
//!   by a query; a float column where integers are expected is refused;
//! * not-null columns: a file may declare any column nullable; the footer's
//!   null counts prove it holds none (a count query only for files without
//!   statistics), and a column with nulls is named with the file and count.
//!
//! The table is then scanned with the contract's schema (types and
//! nullability), so the plan after the scan is the same for every writer
//! and costs nothing extra for files already in the contract's types.

use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit};
use datafusion::common::Column;
use datafusion::functions_aggregate::expr_fn::{count, max, min};
use datafusion::logical_expr::{cast, lit, try_cast, Expr};
use datafusion::prelude::{DataFrame, ParquetReadOptions, SessionContext};
use futures::StreamExt;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::statistics::Statistics;

use super::partition::{partition_values, PartitionFilter};
use crate::error::{EngineError, Result};
use crate::lake::Lake;
use crate::schema::RawTable;

/// Footers read at once.
const FOOTER_CONCURRENCY: usize = 16;
/// Bytes fetched from a file's end, enough for most footers in one request.
const FOOTER_PROBE: u64 = 64 * 1024;
/// Bytes fetched from a file's start (magic, and a hint of what it is).
const HEAD_PROBE: u64 = 64;
/// Column name pandas gives a non-default index it writes as a column.
const PANDAS_INDEX_PREFIX: &str = "__index_level_";

/// One data file of a raw table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFile {
    /// Path relative to the lake root.
    pub rel: String,
    /// Size in bytes.
    pub size: u64,
    /// Hive partition values from its directories (`date` → `2026-11-28`).
    pub partition: Vec<(String, String)>,
}

/// The files of one raw table after bookkeeping files are dropped and the
/// partition filters applied.
#[derive(Debug, Clone, Default)]
pub struct TableFiles {
    /// The data files to read, sorted by path.
    pub files: Vec<RawFile>,
    /// Data files excluded by the partition filters (never opened).
    pub pruned: usize,
    /// Other files found (not `.parquet`), skipped.
    pub skipped: Vec<String>,
    /// Every `*.parquet` object under the table directory, bookkeeping
    /// ones included (what a directory scan would read).
    pub all_parquet: usize,
}

/// Whether a path segment is writer bookkeeping (`_SUCCESS`, `.crc`, ...).
fn is_bookkeeping(segment: &str) -> bool {
    segment.starts_with('_') || segment.starts_with('.') || segment.ends_with(".crc")
}

/// Lists `raw/<table>/` and applies `filters` (see the module docs).
pub async fn list_table_files(
    lake: &Lake,
    table: &str,
    filters: &[PartitionFilter],
) -> Result<TableFiles> {
    let dir = format!("raw/{table}/");
    let mut out = TableFiles::default();
    let mut candidates = Vec::new();
    for meta in lake.list(&dir).await? {
        let rel = lake.relative(&meta.location);
        let Some(inner) = rel.strip_prefix(&dir) else {
            continue;
        };
        if inner.ends_with(".parquet") {
            out.all_parquet += 1;
        }
        if inner.split('/').any(is_bookkeeping) {
            continue;
        }
        if !inner.ends_with(".parquet") {
            out.skipped.push(rel);
            continue;
        }
        candidates.push(RawFile {
            partition: partition_values(inner),
            rel,
            size: meta.size,
        });
    }
    for f in filters {
        // A filter applies to tables partitioned by its key only.
        if !candidates
            .iter()
            .any(|c| c.partition.iter().any(|(k, _)| k == &f.key))
        {
            continue;
        }
        let before = candidates.len();
        candidates.retain(|c| c.partition.iter().any(|(k, v)| k == &f.key && f.keeps(v)));
        out.pruned += before - candidates.len();
    }
    if !out.skipped.is_empty() {
        tracing::warn!(table, files = ?out.skipped, "files that are not .parquet were skipped");
    }
    out.files = candidates;
    Ok(out)
}

/// The distinct values of partition `key` among a table's data files (for
/// messages about filters that match nothing).
pub async fn partition_values_of(lake: &Lake, table: &str, key: &str) -> Result<Vec<String>> {
    let all = list_table_files(lake, table, &[]).await?;
    let mut v: Vec<String> = all
        .files
        .iter()
        .flat_map(|f| f.partition.iter())
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .collect();
    v.sort();
    v.dedup();
    Ok(v)
}

/// A file's footer, read and decoded, with the file named in every error.
pub async fn read_footer(lake: &Lake, f: &RawFile) -> Result<ParquetMetaData> {
    let bad = |what: String| EngineError::data(f.rel.clone(), what);
    if f.size == 0 {
        return Err(bad(
            "empty file (0 bytes): expected a Parquet file; remove it or write it again".into(),
        ));
    }
    if f.size < 12 {
        return Err(bad(format!(
            "not a Parquet file: only {} bytes (a Parquet file has at least 12: PAR1, footer length, PAR1)",
            f.size
        )));
    }
    let tail_start = f.size.saturating_sub(FOOTER_PROBE);
    let got = lake
        .get_ranges(&f.rel, &[0..f.size.min(HEAD_PROBE), tail_start..f.size])
        .await?;
    let (head, tail) = (&got[0], &got[1]);
    let n = tail.len();
    let starts = head.starts_with(b"PAR1");
    if &tail[n - 4..] != b"PAR1" {
        let what = if &tail[n - 4..] == b"PARE" {
            "an encrypted Parquet file: Sluice reads plaintext footers only".to_string()
        } else if starts {
            format!(
                "truncated Parquet file ({} bytes): it starts with PAR1 but does not end with the footer; the write was probably cut off, write it again",
                f.size
            )
        } else {
            format!(
                "not a Parquet file ({} bytes): expected the PAR1 magic at its start and end, found {}",
                f.size,
                describe_head(head)
            )
        };
        return Err(bad(what));
    }
    if !starts {
        return Err(bad(format!(
            "corrupt Parquet file: it ends with a Parquet footer but does not start with PAR1 (found {})",
            describe_head(head)
        )));
    }
    let meta_len = u32::from_le_bytes([tail[n - 8], tail[n - 7], tail[n - 6], tail[n - 5]]) as u64;
    if meta_len + 12 > f.size {
        return Err(bad(format!(
            "corrupt Parquet footer: it declares {meta_len} bytes of metadata but the file has {} bytes (truncated?)",
            f.size
        )));
    }
    let meta_bytes = if meta_len + 8 <= n as u64 {
        tail.slice(n - 8 - meta_len as usize..n - 8)
    } else {
        let metadata = f.size - 8 - meta_len..f.size - 8;
        lake.get_ranges(&f.rel, std::slice::from_ref(&metadata))
            .await?
            .remove(0)
    };
    ParquetMetaDataReader::decode_metadata(&meta_bytes)
        .map_err(|e| bad(format!("corrupt Parquet footer: {e}")))
}

/// A printable hint of what a file starts with.
fn describe_head(head: &[u8]) -> String {
    let text: String = head
        .iter()
        .take(24)
        .map(|&b| b as char)
        .take_while(|c| *c != '\n' && *c != '\r')
        .collect();
    if !head.is_empty()
        && head.iter().take(24).all(|b| {
            b.is_ascii_graphic() || *b == b' ' || *b == b'\n' || *b == b'\r' || *b == b'\t'
        })
    {
        format!("text starting `{text}` (CSV or JSON?)")
    } else {
        format!(
            "bytes {}",
            head.iter()
                .take(4)
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        )
    }
}

/// The Arrow schema DataFusion sees in a file (embedded Arrow metadata
/// skipped, as DataFusion's Parquet reader does by default).
fn file_schema(f: &RawFile, meta: &ParquetMetaData) -> Result<Schema> {
    parquet::arrow::parquet_to_arrow_schema(meta.file_metadata().schema_descr(), None).map_err(
        |e| {
            EngineError::data(
                f.rel.clone(),
                format!("cannot read the column types from the footer: {e}"),
            )
        },
    )
}

/// How a file's column type meets the contract's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// The contract's type already (or a string encoding DataFusion reads
    /// the same way).
    Exact,
    /// A cast that never changes a value.
    Cast,
    /// A cast that changes values outside `[lo, hi]` (in the file's own
    /// units): checked on the values.
    Range(i64, i64),
    /// Nanosecond timestamps: values with a sub-microsecond part would
    /// change; checked on the values.
    SubMicro,
    /// Floats where the contract has integers (pandas writes integer
    /// columns holding nulls as float64): every value must be a whole
    /// number within `[lo, hi]`; checked on the values.
    Integral(i64, i64),
}

fn is_string(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// How the file type `found` fits the contract type `want`, or why it
/// cannot.
pub fn fit(found: &DataType, want: &DataType) -> std::result::Result<Fit, String> {
    use DataType::*;
    // Whole floats are integers exactly up to 2^53.
    const EXACT: i64 = 1 << 53;
    let refused = || {
        Err(format!(
            "{found} cannot be read as {want} without changing values"
        ))
    };
    match want {
        Int64 => match found {
            Int64 => Ok(Fit::Exact),
            Int8 | Int16 | Int32 | UInt8 | UInt16 | UInt32 => Ok(Fit::Cast),
            Float16 | Float32 | Float64 => Ok(Fit::Integral(-EXACT, EXACT)),
            _ => refused(),
        },
        Int32 => match found {
            Int32 => Ok(Fit::Exact),
            Int8 | Int16 | UInt8 | UInt16 => Ok(Fit::Cast),
            Int64 => Ok(Fit::Range(i32::MIN as i64, i32::MAX as i64)),
            Float16 | Float32 | Float64 => Ok(Fit::Integral(i32::MIN as i64, i32::MAX as i64)),
            _ => refused(),
        },
        Float64 => match found {
            Float64 => Ok(Fit::Exact),
            Float16 | Float32 | Int8 | Int16 | Int32 | UInt8 | UInt16 | UInt32 => Ok(Fit::Cast),
            _ => refused(),
        },
        Boolean => match found {
            Boolean => Ok(Fit::Exact),
            _ => refused(),
        },
        Utf8 => match found {
            t if is_string(t) => Ok(Fit::Exact),
            Dictionary(_, v) if is_string(v) => Ok(Fit::Cast),
            _ => refused(),
        },
        Timestamp(TimeUnit::Microsecond, want_tz) => match found {
            Timestamp(unit, tz) => {
                // Parquet stores instants (UTC-adjusted) or naive values
                // taken as UTC; a zone is only a label, so converting to
                // UTC never changes the instant.
                Ok(match unit {
                    TimeUnit::Microsecond if tz == want_tz => Fit::Exact,
                    TimeUnit::Microsecond => Fit::Cast,
                    TimeUnit::Nanosecond => Fit::SubMicro,
                    TimeUnit::Millisecond => Fit::Range(i64::MIN / 1_000, i64::MAX / 1_000),
                    TimeUnit::Second => Fit::Range(i64::MIN / 1_000_000, i64::MAX / 1_000_000),
                })
            }
            _ => refused(),
        },
        _ => refused(),
    }
}

/// What the footer says about one column of one file, over all row groups:
/// `None` where a row group has no statistics.
#[derive(Debug, Clone, Default)]
struct ColumnStats {
    nulls: Option<u64>,
    min: Option<i64>,
    max: Option<i64>,
    example: Option<String>,
}

fn column_stats(meta: &ParquetMetaData, name: &str) -> ColumnStats {
    let descr = meta.file_metadata().schema_descr();
    let Some(idx) = descr
        .columns()
        .iter()
        .position(|c| c.path().parts() == [name.to_string()])
    else {
        return ColumnStats::default();
    };
    let mut s = ColumnStats {
        nulls: Some(0),
        min: None,
        max: None,
        example: None,
    };
    let mut have_range = true;
    for rg in meta.row_groups() {
        let stats = rg.column(idx).statistics();
        s.nulls = match (s.nulls, stats.and_then(|st| st.null_count_opt())) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
        let range = match stats {
            Some(Statistics::Int32(v)) => v
                .min_opt()
                .zip(v.max_opt())
                .map(|(a, b)| (*a as i64, *b as i64)),
            Some(Statistics::Int64(v)) => v.min_opt().zip(v.max_opt()).map(|(a, b)| (*a, *b)),
            _ => None,
        };
        if rg.num_rows() == 0 {
            continue;
        }
        match range {
            Some((a, b)) if have_range => {
                s.min = Some(s.min.map_or(a, |m| m.min(a)));
                s.max = Some(s.max.map_or(b, |m| m.max(b)));
            }
            _ => have_range = false,
        }
        if s.example.is_none() {
            s.example = match stats {
                Some(Statistics::Float(v)) => v.min_opt().map(|x| x.to_string()),
                Some(Statistics::Double(v)) => v.min_opt().map(|x| x.to_string()),
                Some(Statistics::Int32(v)) => v.min_opt().map(|x| x.to_string()),
                Some(Statistics::Int64(v)) => v.min_opt().map(|x| x.to_string()),
                _ => None,
            };
        }
    }
    if !have_range {
        s.min = None;
        s.max = None;
    }
    s
}

/// One file's facts for the table-level checks.
#[derive(Debug)]
struct CheckedFile {
    file: RawFile,
    rows: u64,
    /// Not-null columns the statistics do not prove null-free.
    count_nulls: Vec<String>,
    /// Columns whose range the statistics do not prove: `(name, lo, hi)`.
    count_range: Vec<(String, i64, i64)>,
    /// Columns whose values a query checks ([`Fit::SubMicro`],
    /// [`Fit::Integral`]).
    by_value: Vec<(String, Fit)>,
}

/// Checks one file's footer against the table's contract schema; problems
/// are listed in one error naming the file.
fn check_file(f: &RawFile, meta: &ParquetMetaData, table: &RawTable) -> Result<CheckedFile> {
    let found = file_schema(f, meta)?;
    let mut problems = Vec::new();
    let mut out = CheckedFile {
        file: f.clone(),
        rows: meta.file_metadata().num_rows().max(0) as u64,
        count_nulls: Vec::new(),
        count_range: Vec::new(),
        by_value: Vec::new(),
    };
    for want in table.schema.fields() {
        let Ok(got) = found.field_with_name(want.name()) else {
            problems.push(crate::schema::missing_column(want));
            continue;
        };
        let stats = || column_stats(meta, want.name());
        match fit(got.data_type(), want.data_type()) {
            Err(why) => {
                let example = stats()
                    .example
                    .map(|v| format!(" (e.g. {v})"))
                    .unwrap_or_default();
                problems.push(format!(
                    "column `{}` has the wrong type: expected {}, found {}{example}: {why}",
                    want.name(),
                    want.data_type(),
                    got.data_type()
                ));
                continue;
            }
            Ok(Fit::Range(lo, hi)) => {
                let s = stats();
                match (s.min, s.max) {
                    (Some(a), Some(b)) => {
                        if let Some(v) = [a, b].into_iter().find(|v| *v < lo || *v > hi) {
                            problems.push(out_of_range(want, got.data_type(), v));
                        }
                    }
                    _ if out.rows > 0 => {
                        out.count_range.push((want.name().clone(), lo, hi));
                    }
                    _ => {}
                }
            }
            Ok(fit @ (Fit::SubMicro | Fit::Integral(..))) => {
                if out.rows > 0 {
                    out.by_value.push((want.name().clone(), fit));
                }
            }
            Ok(Fit::Exact | Fit::Cast) => {}
        }
        if !want.is_nullable() && got.is_nullable() && out.rows > 0 {
            match stats().nulls {
                Some(0) => {}
                Some(n) => problems.push(null_values(want.name(), n, out.rows)),
                None => out.count_nulls.push(want.name().clone()),
            }
        }
    }
    let extra: Vec<String> = found
        .fields()
        .iter()
        .filter(|f| table.schema.field_with_name(f.name()).is_err())
        .filter(|f| !f.name().starts_with(PANDAS_INDEX_PREFIX))
        .map(|f| format!("`{}` ({})", f.name(), f.data_type()))
        .collect();
    if !extra.is_empty() {
        problems.push(format!(
            "extra column{} {}: expected only the contract's columns ({})",
            if extra.len() > 1 { "s" } else { "" },
            extra.join(", "),
            table
                .schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(EngineError::data(
            f.rel.clone(),
            format!("table `{}`: {}", table.name, problems.join("; ")),
        ))
    }
}

fn out_of_range(want: &Field, found: &DataType, v: i64) -> String {
    format!(
        "column `{}`: value {v} ({found}) does not fit {}; it would change if read as the contract's type",
        want.name(),
        want.data_type()
    )
}

fn null_values(column: &str, n: u64, rows: u64) -> String {
    format!(
        "column `{column}` holds {n} null value(s) in {rows} rows: the contract requires a value in every row"
    )
}

/// The table schema the scan produces: the contract's types and
/// nullability, with strings in the encoding the session reads them in.
pub(crate) fn scan_schema(ctx: &SessionContext, table: &RawTable) -> SchemaRef {
    let views = ctx
        .copied_config()
        .options()
        .execution
        .parquet
        .schema_force_view_types;
    Arc::new(Schema::new(
        table
            .schema
            .fields()
            .iter()
            .map(|f| {
                let ty = match f.data_type() {
                    DataType::Utf8 if views => DataType::Utf8View,
                    t => t.clone(),
                };
                Field::new(f.name(), ty, f.is_nullable())
            })
            .collect::<Vec<_>>(),
    ))
}

fn qcol(name: &str) -> Expr {
    Expr::Column(Column::from_name(name))
}

/// One file read as it is (its own types), for the value checks.
async fn read_as_is(ctx: &SessionContext, lake: &Lake, f: &RawFile) -> Result<DataFrame> {
    Ok(ctx
        .read_parquet(lake.table_url(&f.rel), ParquetReadOptions::default())
        .await?)
}

/// Null counts and ranges the statistics did not decide, by one aggregate
/// query over the file.
async fn check_by_query(ctx: &SessionContext, lake: &Lake, c: &CheckedFile) -> Result<()> {
    if c.count_nulls.is_empty() && c.count_range.is_empty() {
        return Ok(());
    }
    let mut aggs = vec![count(lit(1)).alias("rows")];
    for name in &c.count_nulls {
        aggs.push(count(qcol(name)).alias(format!("nn_{name}")));
    }
    for (name, _, _) in &c.count_range {
        let v = cast(qcol(name), DataType::Int64);
        aggs.push(min(v.clone()).alias(format!("min_{name}")));
        aggs.push(max(v).alias(format!("max_{name}")));
    }
    let batches = read_as_is(ctx, lake, &c.file)
        .await?
        .aggregate(vec![], aggs)?
        .collect()
        .await?;
    let Some(b) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Ok(());
    };
    let int = |name: &str| -> Option<i64> {
        let col = b.column_by_name(name)?;
        let col = arrow::compute::cast(col, &DataType::Int64).ok()?;
        let a = col.as_primitive::<Int64Type>();
        a.is_valid(0).then(|| a.value(0))
    };
    let rows = int("rows").unwrap_or(0);
    let mut problems = Vec::new();
    for name in &c.count_nulls {
        let non_null = int(&format!("nn_{name}")).unwrap_or(0);
        if non_null < rows {
            problems.push(null_values(name, (rows - non_null) as u64, rows as u64));
        }
    }
    for (name, lo, hi) in &c.count_range {
        for v in [int(&format!("min_{name}")), int(&format!("max_{name}"))]
            .into_iter()
            .flatten()
        {
            if v < *lo || v > *hi {
                problems.push(format!(
                    "column `{name}`: value {v} does not fit the contract's type; it would change if read as it"
                ));
                break;
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(EngineError::data(c.file.rel.clone(), problems.join("; ")))
    }
}

/// The value checks of [`Fit::SubMicro`] and [`Fit::Integral`] columns:
/// one query per column over every file that needs it, and only when it
/// finds a value that would change, one per file to name the file.
async fn check_values(ctx: &SessionContext, lake: &Lake, checked: &[CheckedFile]) -> Result<()> {
    let mut columns: Vec<(&String, Fit)> = checked
        .iter()
        .flat_map(|c| c.by_value.iter().map(|(n, f)| (n, *f)))
        .collect();
    columns.sort_by(|a, b| a.0.cmp(b.0));
    columns.dedup();
    for (name, fit) in columns {
        let files: Vec<&RawFile> = checked
            .iter()
            .filter(|c| c.by_value.iter().any(|(n, f)| n == name && *f == fit))
            .map(|c| &c.file)
            .collect();
        let first_bad = |urls: Vec<String>| async move {
            let c = qcol(name);
            let (ty, bad) = match fit {
                Fit::Integral(lo, hi) => (
                    DataType::Float64,
                    c.clone().is_not_null().and(
                        {
                            let whole =
                                cast(try_cast(c.clone(), DataType::Int64), DataType::Float64);
                            whole.clone().is_null().or(whole.not_eq(c.clone()))
                        }
                        .or(c.clone().lt(lit(lo as f64)))
                        .or(c.gt(lit(hi as f64))),
                    ),
                ),
                _ => (DataType::Int64, (c % lit(1_000i64)).not_eq(lit(0i64))),
            };
            let schema = Schema::new(vec![Field::new(name.as_str(), ty, true)]);
            let b = ctx
                .read_parquet(urls, ParquetReadOptions::default().schema(&schema))
                .await?
                .filter(bad)?
                .limit(0, Some(1))?
                .collect()
                .await?;
            let shown = b.iter().find(|b| b.num_rows() > 0).map(|b| {
                let col = b.column(0);
                match fit {
                    Fit::Integral(..) => {
                        let v = col.as_primitive::<arrow::datatypes::Float64Type>().value(0);
                        format!(
                            "value {v} is not a whole number in the contract's integer range, so it would change"
                        )
                    }
                    _ => {
                        let v = col.as_primitive::<Int64Type>().value(0);
                        let t = chrono::DateTime::from_timestamp_nanos(v)
                            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
                        format!(
                            "value {t} ({v} ns) has a sub-microsecond part; the contract stores microseconds, so it would change (round the timestamps to microseconds before writing)"
                        )
                    }
                }
            });
            Ok::<_, EngineError>(shown)
        };
        let urls = files.iter().map(|f| lake.table_url(&f.rel)).collect();
        if first_bad(urls).await?.is_none() {
            continue;
        }
        for f in files {
            if let Some(what) = first_bad(vec![lake.table_url(&f.rel)]).await? {
                return Err(EngineError::data(
                    f.rel.clone(),
                    format!("column `{name}`: {what}"),
                ));
            }
        }
    }
    Ok(())
}

/// A raw table after every check: the scan with the contract's schema,
/// its files and row count.
#[derive(Debug)]
pub struct RawTableScan {
    /// The table, scanned with the contract's types and nullability.
    pub df: DataFrame,
    /// The files read.
    pub files: Vec<RawFile>,
    /// Files pruned by the partition filters.
    pub pruned: usize,
    /// Rows in the files read (from their footers).
    pub rows: u64,
}

/// Lists, checks and scans one raw table (see the module docs).
pub async fn scan_raw_table(
    ctx: &SessionContext,
    lake: &Lake,
    table: &RawTable,
    filters: &[PartitionFilter],
) -> Result<RawTableScan> {
    let listed = list_table_files(lake, &table.name, filters).await?;
    if listed.files.is_empty() {
        return Err(no_files(lake, table, filters, &listed).await);
    }
    let footers: Vec<Result<ParquetMetaData>> = futures::stream::iter(listed.files.iter())
        .map(|f| read_footer(lake, f))
        .buffered(FOOTER_CONCURRENCY)
        .collect()
        .await;
    let mut checked = Vec::with_capacity(footers.len());
    for (f, meta) in listed.files.iter().zip(footers) {
        checked.push(check_file(f, &meta?, table)?);
    }
    for c in &checked {
        check_by_query(ctx, lake, c).await?;
    }
    check_values(ctx, lake, &checked).await?;
    let rows = checked.iter().map(|c| c.rows).sum();
    let schema = scan_schema(ctx, table);
    // The directory when it holds exactly the files to read (one listing
    // per query, as before); otherwise the files one by one.
    let urls: Vec<String> = if listed.all_parquet == listed.files.len() {
        vec![lake.table_url(&format!("raw/{}/", table.name))]
    } else {
        listed
            .files
            .iter()
            .map(|f| lake.table_url(&f.rel))
            .collect()
    };
    let df = ctx
        .read_parquet(urls, ParquetReadOptions::default().schema(&schema))
        .await?;
    Ok(RawTableScan {
        df,
        files: listed.files,
        pruned: listed.pruned,
        rows,
    })
}

async fn no_files(
    lake: &Lake,
    table: &RawTable,
    filters: &[PartitionFilter],
    listed: &TableFiles,
) -> EngineError {
    let location = format!("raw/{}", table.name);
    if listed.pruned > 0 {
        let mut known = Vec::new();
        for f in filters {
            if let Ok(values) = partition_values_of(lake, &table.name, &f.key).await {
                let shown: Vec<&str> = values.iter().take(10).map(String::as_str).collect();
                known.push(format!(
                    "{}: {}{}",
                    f.key,
                    shown.join(", "),
                    if values.len() > 10 { ", ..." } else { "" }
                ));
            }
        }
        return EngineError::data(
            location,
            format!(
                "the partition filter {} matches none of the table's {} file(s); partitions present: {}",
                filters
                    .iter()
                    .map(|f| f.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                listed.pruned,
                known.join("; ")
            ),
        );
    }
    let others = if listed.skipped.is_empty() {
        String::new()
    } else {
        format!(
            " (found only other files: {})",
            listed
                .skipped
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    EngineError::data(
        location,
        format!(
            "table directory {} is missing or holds no .parquet file{others}; expected the `{}` table of the data contract there",
            lake.table_url(&format!("raw/{}/", table.name)),
            table.name
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_types_fit_and_lossy_ones_do_not() {
        let us = crate::schema::timestamp_type();
        let ts = |u: TimeUnit, tz: Option<&str>| DataType::Timestamp(u, tz.map(Into::into));
        assert_eq!(fit(&us, &us), Ok(Fit::Exact));
        assert_eq!(fit(&ts(TimeUnit::Microsecond, None), &us), Ok(Fit::Cast));
        assert_eq!(
            fit(&ts(TimeUnit::Microsecond, Some("Europe/Berlin")), &us),
            Ok(Fit::Cast)
        );
        assert_eq!(fit(&ts(TimeUnit::Nanosecond, None), &us), Ok(Fit::SubMicro));
        assert!(matches!(
            fit(&ts(TimeUnit::Second, Some("+00:00")), &us),
            Ok(Fit::Range(..))
        ));
        assert!(matches!(
            fit(&ts(TimeUnit::Millisecond, None), &us),
            Ok(Fit::Range(..))
        ));
        assert_eq!(fit(&DataType::Int32, &DataType::Int64), Ok(Fit::Cast));
        assert_eq!(fit(&DataType::Int8, &DataType::Int64), Ok(Fit::Cast));
        assert!(matches!(
            fit(&DataType::Int64, &DataType::Int32),
            Ok(Fit::Range(..))
        ));
        assert_eq!(fit(&DataType::Float32, &DataType::Float64), Ok(Fit::Cast));
        assert_eq!(fit(&DataType::LargeUtf8, &DataType::Utf8), Ok(Fit::Exact));
        assert_eq!(
            fit(
                &DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                &DataType::Utf8
            ),
            Ok(Fit::Cast)
        );
        assert_eq!(
            fit(&DataType::Float64, &DataType::Int64),
            Ok(Fit::Integral(-(1 << 53), 1 << 53))
        );
        assert!(fit(&DataType::Utf8, &DataType::Int64).is_err());
        assert!(fit(&DataType::Int64, &us).is_err());
        assert!(fit(&DataType::Int64, &DataType::Boolean).is_err());
    }

    #[test]
    fn bookkeeping_names_are_recognised() {
        for n in [
            "_SUCCESS",
            "_committed_123",
            "_temporary",
            ".part-0.parquet.crc",
            "x.crc",
        ] {
            assert!(is_bookkeeping(n), "{n}");
        }
        assert!(!is_bookkeeping("part-00000-1b2c.c000.snappy.parquet"));
        assert!(!is_bookkeeping("date=2026-11-28"));
    }

    #[test]
    fn heads_are_described() {
        assert!(describe_head(b"sample_id,device_id\n1,2").contains("`sample_id,device_id`"));
        assert_eq!(describe_head(&[0, 1, 2, 3, 4]), "bytes 00 01 02 03");
    }
}
