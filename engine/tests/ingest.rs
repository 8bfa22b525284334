//! Ingestion: datagen → ingest for both inputs on a small lake, and one test
//! per bad-input case (each names the table or file, column and what was
//! expected vs found).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use bytes::Bytes;
use datafusion::prelude::{col, ParquetReadOptions, SessionContext};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use sluice_datagen::{generate, DatagenConfig};
use sluice_engine::ingest::{
    inference_input, inference_input_sliced, keys_proven_unique, training_input, write_parquet,
    IngestOptions,
};
use sluice_engine::lake::Lake;
use sluice_engine::schema::{training_schema, unified_schema};
use sluice_engine::session::{connect, EngineSettings};

const SAMPLES: u64 = 20_000;
const TRAIN_ROWS: u64 = 4_000;

async fn small_lake() -> (tempfile::TempDir, Lake, SessionContext) {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path().to_str().unwrap()).unwrap();
    let mut cfg = DatagenConfig::new(SAMPLES);
    // 100 samples per device, so the 4,000 training rows come from 40
    // devices spread over all four campaign files.
    cfg.devices = 200;
    cfg.train_rows = TRAIN_ROWS;
    cfg.chunk_samples = 8_000;
    generate(&lake, &cfg).await.unwrap();
    let ctx = connect(&EngineSettings::default(), Some(&lake))
        .await
        .unwrap();
    (dir, lake, ctx)
}

async fn read_part(lake: &Lake, rel: &str) -> RecordBatch {
    let bytes = lake.get(rel).await.unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
    arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap()
}

async fn write_part(lake: &Lake, rel: &str, batch: &RecordBatch) {
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), None).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
    lake.put(rel, Bytes::from(buf)).await.unwrap();
}

/// Rewrites every part file of a raw table with `f` applied.
async fn rewrite_table(lake: &Lake, table: &str, f: impl Fn(RecordBatch) -> RecordBatch) {
    for m in lake.list(&format!("raw/{table}/")).await.unwrap() {
        let rel = lake.relative(&m.location);
        let batch = read_part(lake, &rel).await;
        write_part(lake, &rel, &f(batch)).await;
    }
}

async fn csv_lines(lake: &Lake, rel: &str) -> Vec<String> {
    let text = String::from_utf8(lake.get(rel).await.unwrap().to_vec()).unwrap();
    text.lines().map(str::to_string).collect()
}

async fn put_lines(lake: &Lake, rel: &str, lines: &[String]) {
    lake.put(rel, Bytes::from(format!("{}\n", lines.join("\n"))))
        .await
        .unwrap();
}

fn column_index(name: &str) -> usize {
    training_schema().index_of(name).unwrap()
}

fn set_field(line: &str, column: usize, value: &str) -> String {
    let mut fields: Vec<&str> = line.split(',').collect();
    fields[column] = value;
    fields.join(",")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn training_csvs_ingest_into_the_training_schema() {
    let (_dir, lake, ctx) = small_lake().await;
    let out = training_input(&ctx, &lake, &IngestOptions::default())
        .await
        .unwrap();
    assert_eq!(out.df.schema().as_arrow(), training_schema().as_ref());
    assert!(out.rejected.is_none());
    assert_eq!(out.diagnostics.sources.len(), 4);
    assert_eq!(out.diagnostics.rejected_rows, 0);

    // Every CSV row arrives once, with typed values equal to the text.
    let batches = out.df.clone().collect().await.unwrap();
    let total: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(total as u64, TRAIN_ROWS);
    let manual = csv_lines(&lake, "training/manual.csv").await;
    let first: Vec<&str> = manual[1].split(',').collect();
    let id: i64 = first[0].parse().unwrap();
    let row = out
        .df
        .clone()
        .filter(col("sample_id").eq(datafusion::prelude::lit(id)))
        .unwrap()
        .collect()
        .await
        .unwrap();
    let row = &row.iter().find(|b| b.num_rows() == 1).unwrap();
    let ts = row
        .column(2)
        .as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
        .value(0);
    assert_eq!(sluice_datagen::rfc3339_micros(ts), first[2]);
    assert_eq!(
        row.column_by_name("label_source")
            .unwrap()
            .as_string::<i32>()
            .value(0),
        "manual"
    );

    // Written as Parquet through the lake and read back unchanged.
    write_parquet(out.df, &lake, "ingested/training")
        .await
        .unwrap();
    let back = ctx
        .read_parquet(
            lake.table_url("ingested/training/"),
            ParquetReadOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(back.count().await.unwrap() as u64, TRAIN_ROWS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_tables_join_into_one_row_per_sample() {
    let (_dir, lake, ctx) = small_lake().await;
    let out = inference_input(&ctx, &lake).await.unwrap();
    assert_eq!(out.df.schema().as_arrow(), unified_schema().as_ref());
    assert_eq!(out.diagnostics.sources.len(), 7);
    let plan = format!("{}", out.df.logical_plan().display_indent());
    assert_eq!(plan.matches("Join").count(), 6, "{plan}");

    write_parquet(out.df, &lake, "ingested/inference")
        .await
        .unwrap();
    let back = ctx
        .read_parquet(
            lake.table_url("ingested/inference/"),
            ParquetReadOptions::default(),
        )
        .await
        .unwrap();
    let batches = back.clone().collect().await.unwrap();
    let mut ids: Vec<i64> = batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    assert_eq!(ids.len() as u64, SAMPLES);
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids.len() as u64,
        SAMPLES,
        "sample ids are not unique after the join"
    );

    // Left joins keep samples without a cell or a location as nulls.
    let no_cell = back.clone().filter(col("cell_key").is_null()).unwrap();
    let no_cell_mcc = no_cell
        .filter(col("mcc").is_not_null())
        .unwrap()
        .count()
        .await
        .unwrap();
    assert_eq!(no_cell_mcc, 0);
    let located = ctx
        .read_parquet(
            lake.table_url("raw/locations/"),
            ParquetReadOptions::default(),
        )
        .await
        .unwrap()
        .count()
        .await
        .unwrap();
    let with_lat = back
        .filter(col("latitude").is_not_null())
        .unwrap()
        .count()
        .await
        .unwrap();
    assert_eq!(with_lat, located);
}

/// Every row of a table as text, sorted (an order-free comparison).
async fn sorted_rows(parts: Vec<datafusion::prelude::DataFrame>) -> Vec<String> {
    let mut rows = Vec::new();
    for df in parts {
        for b in df.collect().await.unwrap() {
            let text: Vec<ArrayRef> = b
                .columns()
                .iter()
                .map(|c| arrow::compute::cast(c, &DataType::Utf8).unwrap())
                .collect();
            for r in 0..b.num_rows() {
                let row: Vec<&str> = text
                    .iter()
                    .map(|c| {
                        let c = c.as_string::<i32>();
                        if c.is_null(r) {
                            "∅"
                        } else {
                            c.value(r)
                        }
                    })
                    .collect();
                rows.push(row.join("|"));
            }
        }
    }
    rows.sort_unstable();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sliced_join_equals_the_single_join() {
    let (_dir, lake, ctx) = small_lake().await;
    let whole = inference_input(&ctx, &lake).await.unwrap();
    assert!(whole.slices.is_empty(), "no memory limit: one slice");
    let sliced = inference_input_sliced(&ctx, &lake, Some(3)).await.unwrap();
    assert_eq!(sliced.slices.len(), 3);
    let mut counts = Vec::new();
    for s in &sliced.slices {
        counts.push(s.clone().count().await.unwrap());
    }
    assert!(counts.iter().all(|&n| n > 0), "empty slice: {counts:?}");
    assert_eq!(
        sorted_rows(sliced.parts()).await,
        sorted_rows(whole.parts()).await
    );

    // A memory limit derives the slice count from the tables' sizes.
    let limited = EngineSettings {
        memory_limit: Some("4MiB".into()),
        ..Default::default()
    };
    let small = connect(&limited, Some(&lake)).await.unwrap();
    let auto = inference_input(&small, &lake).await.unwrap();
    assert!(auto.slices.len() > 1, "{} slices", auto.slices.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_column_in_a_raw_table_is_named() {
    let (_dir, lake, ctx) = small_lake().await;
    rewrite_table(&lake, "radio", |b| {
        let keep: Vec<usize> = (0..b.num_columns())
            .filter(|&i| b.schema().field(i).name() != "rsrq_db")
            .collect();
        b.project(&keep).unwrap()
    })
    .await;
    let e = inference_input(&ctx, &lake).await.unwrap_err().to_string();
    assert!(
        e.contains("raw/radio") && e.contains("missing column `rsrq_db`") && e.contains("Float64"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mistyped_column_in_a_raw_table_is_named() {
    let (_dir, lake, ctx) = small_lake().await;
    rewrite_table(&lake, "radio", |b| {
        let i = b.schema().index_of("rsrp_dbm").unwrap();
        let mut fields: Vec<Field> = b
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields[i] = Field::new("rsrp_dbm", DataType::Utf8, true);
        let mut cols: Vec<ArrayRef> = b.columns().to_vec();
        cols[i] = arrow::compute::cast(&cols[i], &DataType::Utf8).unwrap();
        RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap()
    })
    .await;
    let e = inference_input(&ctx, &lake).await.unwrap_err().to_string();
    assert!(
        e.contains("raw/radio")
            && e.contains("`rsrp_dbm`")
            && e.contains("expected Float64, found Utf8"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_column_in_a_raw_table_is_named() {
    let (_dir, lake, ctx) = small_lake().await;
    rewrite_table(&lake, "devices", |b| {
        let mut fields: Vec<Field> = b
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new("imei", DataType::Utf8, true));
        let mut cols: Vec<ArrayRef> = b.columns().to_vec();
        cols.push(Arc::new(StringArray::from(vec!["x"; b.num_rows()])));
        RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap()
    })
    .await;
    let e = inference_input(&ctx, &lake).await.unwrap_err().to_string();
    assert!(
        e.contains("raw/devices") && e.contains("extra column `imei`"),
        "{e}"
    );
}

/// Rewrites every part of a raw table with each column mapped by `f`
/// (field and values), as another writer would have stored it.
async fn map_columns(lake: &Lake, table: &str, f: impl Fn(&Field, ArrayRef) -> (Field, ArrayRef)) {
    rewrite_table(lake, table, |b| {
        let (fields, cols): (Vec<Field>, Vec<ArrayRef>) = b
            .schema()
            .fields()
            .iter()
            .zip(b.columns())
            .map(|(field, c)| f(field, Arc::clone(c)))
            .unzip();
        RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap()
    })
    .await;
}

/// The first part file of a raw table.
async fn first_part(lake: &Lake, table: &str) -> String {
    let m = lake.list(&format!("raw/{table}/")).await.unwrap();
    lake.relative(&m[0].location)
}

/// Issue 16: a lake as pyarrow/Spark write it (every column declared
/// nullable, timestamps in nanoseconds naive or zoned, narrower or wider
/// integers, other string encodings) joins into exactly the same unified
/// table as the generator's lake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_nullable_lake_in_other_physical_types_joins_the_same() {
    use arrow::datatypes::TimeUnit;
    let (_dir, lake, ctx) = small_lake().await;
    let before = sorted_rows(inference_input(&ctx, &lake).await.unwrap().parts()).await;
    for t in sluice_engine::schema::raw_tables() {
        map_columns(&lake, &t.name, |f, c| {
            let (ty, nullable) = match (f.name().as_str(), f.data_type()) {
                ("ts", _) => (DataType::Timestamp(TimeUnit::Nanosecond, None), true),
                ("fix_ts", _) => (
                    DataType::Timestamp(TimeUnit::Nanosecond, Some("Europe/Berlin".into())),
                    true,
                ),
                ("confidence", _) => (DataType::Int8, true),
                ("mcc" | "mnc", _) => (DataType::Int64, true),
                ("cell_id", _) => (DataType::Float64, true),
                ("manufacturer", _) => (
                    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                    true,
                ),
                (_, DataType::Utf8) => (DataType::LargeUtf8, true),
                (_, t) => (t.clone(), true),
            };
            let c = arrow::compute::cast(&c, &ty).unwrap();
            (Field::new(f.name(), ty, nullable), c)
        })
        .await;
    }
    // A fresh session: DataFusion caches the listing (file sizes) of a
    // table it has read, and the files were rewritten in place.
    let ctx = connect(&EngineSettings::default(), Some(&lake))
        .await
        .unwrap();
    let out = inference_input(&ctx, &lake).await.unwrap();
    assert_eq!(out.df.schema().as_arrow(), unified_schema().as_ref());
    assert_eq!(out.diagnostics.expected_rows, Some(SAMPLES));
    let after = sorted_rows(out.parts()).await;
    assert_eq!(before.len() as u64, SAMPLES);
    assert!(before == after, "the rewritten lake joins differently");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_nulls_in_a_not_null_column_name_the_file_column_and_count() {
    let (_dir, lake, ctx) = small_lake().await;
    map_columns(&lake, "devices", |f, c| {
        if f.name() != "model" {
            return (f.clone().with_nullable(true), c);
        }
        let s = c.as_string::<i32>();
        let v: StringArray = (0..s.len()).map(|i| (i >= 3).then(|| s.value(i))).collect();
        (f.clone().with_nullable(true), Arc::new(v) as ArrayRef)
    })
    .await;
    let file = first_part(&lake, "devices").await;
    let e = inference_input(&ctx, &lake).await.unwrap_err().to_string();
    assert!(
        e.contains(&file) && e.contains("`model`") && e.contains("holds 3 null value(s)"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lossy_coercions_name_file_column_and_first_value() {
    use arrow::datatypes::TimeUnit;
    let (_dir, lake, ctx) = small_lake().await;
    // Nanoseconds with a sub-microsecond part.
    map_columns(&lake, "samples", |f, c| {
        if f.name() != "ts" {
            return (f.clone(), c);
        }
        let ty = DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()));
        let c = arrow::compute::cast(&c, &ty).unwrap();
        let ns = c.as_primitive::<arrow::datatypes::TimestampNanosecondType>();
        let v: arrow::array::TimestampNanosecondArray = ns
            .iter()
            .enumerate()
            .map(|(i, x)| x.map(|x| if i == 5 { x + 123 } else { x }))
            .collect();
        (
            Field::new("ts", ty.clone(), false),
            Arc::new(v.with_timezone("UTC")) as ArrayRef,
        )
    })
    .await;
    let file = first_part(&lake, "samples").await;
    let e = inference_input(&ctx, &lake).await.unwrap_err().to_string();
    assert!(
        e.contains(&file)
            && e.contains("`ts`")
            && e.contains("sub-microsecond")
            && e.contains("123 ns)"),
        "{e}"
    );

    let (_dir2, lake, ctx) = small_lake().await;
    // A fraction in a float column where the contract has Int64, and a
    // value too large for Int32.
    map_columns(&lake, "cells", |f, c| match f.name().as_str() {
        "cell_id" => {
            let c = arrow::compute::cast(&c, &DataType::Float64).unwrap();
            let v: arrow::array::Float64Array = c
                .as_primitive::<arrow::datatypes::Float64Type>()
                .iter()
                .enumerate()
                .map(|(i, x)| x.map(|x| if i == 2 { 1.5 } else { x }))
                .collect();
            (
                Field::new("cell_id", DataType::Float64, true),
                Arc::new(v) as ArrayRef,
            )
        }
        _ => (f.clone(), c),
    })
    .await;
    let file = first_part(&lake, "cells").await;
    let e = inference_input(&ctx, &lake).await.unwrap_err().to_string();
    assert!(
        e.contains(&file)
            && e.contains("`cell_id`")
            && e.contains("value 1.5 is not a whole number"),
        "{e}"
    );
    map_columns(&lake, "cells", |f, c| match f.name().as_str() {
        "cell_id" => (
            Field::new("cell_id", DataType::Int64, false),
            arrow::compute::cast(&c, &DataType::Int64).unwrap(),
        ),
        "mcc" => {
            let v: arrow::array::Int64Array = c
                .as_primitive::<arrow::datatypes::Int32Type>()
                .iter()
                .enumerate()
                .map(|(i, x)| x.map(|x| if i == 0 { 5_000_000_000 } else { x as i64 }))
                .collect();
            (
                Field::new("mcc", DataType::Int64, false),
                Arc::new(v) as ArrayRef,
            )
        }
        _ => (f.clone(), c),
    })
    .await;
    let e = inference_input(&ctx, &lake).await.unwrap_err().to_string();
    assert!(
        e.contains(&file) && e.contains("`mcc`") && e.contains("value 5000000000"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_files_name_the_file_and_what_is_wrong() {
    let (_dir, lake, ctx) = small_lake().await;
    let good = lake.get(&first_part(&lake, "radio").await).await.unwrap();
    let mut garbage_head = good.to_vec();
    garbage_head[..4].copy_from_slice(b"XXXX");
    let cases: Vec<(&str, Bytes, &str)> = vec![
        (
            "raw/radio/part-zero.parquet",
            Bytes::new(),
            "empty file (0 bytes)",
        ),
        (
            "raw/radio/part-cut.parquet",
            good.slice(..good.len() / 2),
            "truncated Parquet file",
        ),
        (
            "raw/radio/part-csv.parquet",
            Bytes::from_static(b"sample_id,rsrp_dbm\n1,-80\n"),
            "not a Parquet file",
        ),
        (
            "raw/radio/part-head.parquet",
            Bytes::from(garbage_head),
            "does not start with PAR1",
        ),
        (
            "raw/radio/part-footer.parquet",
            {
                let mut b = good.to_vec();
                let n = b.len();
                for x in &mut b[n - 200..n - 8] {
                    *x = 0xAB;
                }
                Bytes::from(b)
            },
            "corrupt Parquet footer",
        ),
    ];
    for (rel, bytes, words) in cases {
        lake.put(rel, bytes).await.unwrap();
        let e = inference_input(&ctx, &lake).await.unwrap_err().to_string();
        assert!(e.contains(rel) && e.contains(words), "{rel}: {e}");
        lake.delete(rel).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spark_bookkeeping_files_are_ignored() {
    let (_dir, lake, ctx) = small_lake().await;
    for t in ["samples", "radio"] {
        for name in [
            "_SUCCESS",
            "_committed_4471",
            "_started_4471",
            ".part-00000.parquet.crc",
        ] {
            lake.put(&format!("raw/{t}/{name}"), Bytes::from_static(b"x"))
                .await
                .unwrap();
        }
        lake.put(
            &format!("raw/{t}/_temporary/0/part-00009.snappy.parquet"),
            Bytes::from_static(b"half-written"),
        )
        .await
        .unwrap();
    }
    let out = inference_input(&ctx, &lake).await.unwrap();
    assert_eq!(out.df.count().await.unwrap() as u64, SAMPLES);
}

/// Moves each part of the per-sample tables into `date=2026-11-<20+k>/`
/// (the generator's parts of all tables hold the same devices' samples).
async fn partition_by_day(lake: &Lake) -> usize {
    let mut days = 0;
    for t in ["samples", "locations", "radio", "activity", "environment"] {
        let parts = lake.list(&format!("raw/{t}/")).await.unwrap();
        days = parts.len();
        for (k, m) in parts.iter().enumerate() {
            let rel = lake.relative(&m.location);
            let name = rel.rsplit('/').next().unwrap().to_string();
            let bytes = lake.get(&rel).await.unwrap();
            lake.put(&format!("raw/{t}/date=2026-11-{}/{name}", 20 + k), bytes)
                .await
                .unwrap();
            lake.delete(&rel).await.unwrap();
        }
    }
    days
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_filter_reads_only_that_days_files() {
    use sluice_engine::ingest::{inference_input_with, InferenceOptions, PartitionFilter};
    let (_dir, lake, ctx) = small_lake().await;
    let days = partition_by_day(&lake).await;
    assert!(days >= 3, "{days} parts");
    let whole = inference_input(&ctx, &lake).await.unwrap();
    assert_eq!(whole.diagnostics.expected_rows, Some(SAMPLES));
    let opts = |p: &str| InferenceOptions {
        partitions: vec![PartitionFilter::parse(p).unwrap()],
        ..Default::default()
    };
    let day = inference_input_with(&ctx, &lake, &opts("date=2026-11-21"))
        .await
        .unwrap();
    // devices and cells are not partitioned: read whole; five tables read
    // one day's file each, the other days' files are never opened.
    let devices_cells = whole.diagnostics.files_read - 5 * days;
    assert_eq!(day.diagnostics.files_read, devices_cells + 5);
    assert_eq!(day.diagnostics.files_pruned, 5 * (days - 1));
    let rows = day.df.count().await.unwrap() as u64;
    assert!(rows > 0 && rows < SAMPLES, "{rows}");
    assert_eq!(day.diagnostics.expected_rows, Some(rows));
    let range = inference_input_with(&ctx, &lake, &opts("date=2026-11-20..2026-11-21"))
        .await
        .unwrap();
    assert_eq!(range.diagnostics.files_pruned, 5 * (days - 2));

    let e = inference_input_with(&ctx, &lake, &opts("date=2026-12-01"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("raw/samples")
            && e.contains("date=2026-12-01 matches none")
            && e.contains("2026-11-20, 2026-11-21"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_device_ids_and_empty_samples_are_data_errors() {
    use sluice_engine::ingest::{check_joined_rows, InferenceOptions};
    let (_dir, lake, ctx) = small_lake().await;
    // Remove the device of the first sample from devices: its samples
    // have no device.
    let first = read_part(&lake, &first_part(&lake, "samples").await).await;
    let gone = first
        .column_by_name("device_id")
        .unwrap()
        .as_primitive::<Int64Type>()
        .value(0);
    rewrite_table(&lake, "devices", |b| {
        let ids = b.column(0).as_primitive::<Int64Type>();
        let keep: arrow::array::BooleanArray = ids.iter().map(|v| Some(v != Some(gone))).collect();
        arrow::compute::filter_record_batch(&b, &keep).unwrap()
    })
    .await;
    let out = inference_input(&ctx, &lake).await.unwrap();
    let expected = out.diagnostics.expected_rows.unwrap();
    let rows = out.df.count().await.unwrap() as u64;
    assert!(rows < expected);
    let e = check_joined_rows(&ctx, &lake, &InferenceOptions::default(), expected, rows)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("raw/samples")
            && e.contains(&format!("{} of {expected} samples", expected - rows))
            && e.contains(&format!("`device_id` that is not in raw/devices: {gone} (")),
        "{e}"
    );

    rewrite_table(&lake, "samples", |b| b.slice(0, 0)).await;
    let ctx = connect(&EngineSettings::default(), Some(&lake))
        .await
        .unwrap();
    let e = inference_input(&ctx, &lake).await.unwrap_err().to_string();
    assert!(
        e.contains("raw/samples") && e.contains("has no rows"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_table_directory_is_named() {
    let (_dir, lake, ctx) = small_lake().await;
    lake.delete_prefix("raw/environment").await.unwrap();
    let e = inference_input(&ctx, &lake).await.unwrap_err().to_string();
    assert!(
        e.contains("raw/environment") && e.contains("missing"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_sample_id_in_a_per_sample_table_is_reported() {
    let (_dir, lake, ctx) = small_lake().await;
    // A second delivery of a few radio rows: sample ids 7 and 8 appear twice.
    let part = read_part(&lake, "raw/radio/part-00000.parquet").await;
    let ids = part.column(0).as_primitive::<Int64Type>();
    let rows: Vec<u32> = (0..part.num_rows() as u32)
        .filter(|&r| matches!(ids.value(r as usize), 7 | 8))
        .collect();
    assert_eq!(
        rows.len(),
        2,
        "the generator should have radio rows for samples 7 and 8"
    );
    let take = arrow::array::UInt32Array::from(rows);
    let dup = RecordBatch::try_new(
        part.schema(),
        part.columns()
            .iter()
            .map(|c| arrow::compute::take(c, &take, None).unwrap())
            .collect(),
    )
    .unwrap();
    write_part(&lake, "raw/radio/part-99999.parquet", &dup).await;
    let e = inference_input(&ctx, &lake).await.unwrap_err().to_string();
    assert!(
        e.contains("raw/radio")
            && e.contains("duplicate sample_id")
            && e.contains("7 (2 rows)")
            && e.contains("8 (2 rows)"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_csv_column_names_the_file() {
    let (_dir, lake, ctx) = small_lake().await;
    let lines: Vec<String> = csv_lines(&lake, "training/geofence.csv")
        .await
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                format!("{l},comment")
            } else {
                format!("{l},")
            }
        })
        .collect();
    put_lines(&lake, "training/geofence.csv", &lines).await;
    let e = training_input(&ctx, &lake, &IngestOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("training/geofence.csv") && e.contains("extra column `comment`"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_csv_column_names_the_file() {
    let (_dir, lake, ctx) = small_lake().await;
    let drop = column_index("wifi_rssi_dbm");
    let lines: Vec<String> = csv_lines(&lake, "training/campaign.csv")
        .await
        .into_iter()
        .map(|l| {
            let mut f: Vec<&str> = l.split(',').collect();
            f.remove(drop);
            f.join(",")
        })
        .collect();
    put_lines(&lake, "training/campaign.csv", &lines).await;
    let e = training_input(&ctx, &lake, &IngestOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("training/campaign.csv")
            && e.contains("missing column `wifi_rssi_dbm`")
            && e.contains("Float64"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unparsable_csv_value_names_file_line_and_column() {
    let (_dir, lake, ctx) = small_lake().await;
    let mut lines = csv_lines(&lake, "training/manual.csv").await;
    assert!(lines.len() > 40);
    let c = column_index("visible_wifi_count");
    lines[37] = set_field(&lines[37], c, "many");
    put_lines(&lake, "training/manual.csv", &lines).await;
    let e = training_input(&ctx, &lake, &IngestOptions::default())
        .await
        .unwrap_err()
        .to_string();
    // lines[37] is line 38 of the file (line 1 is the header).
    assert!(
        e.contains("training/manual.csv: line 38, column `visible_wifi_count`")
            && e.contains("expected Int32")
            && e.contains("found `many`"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_label_and_null_key_are_bad_values() {
    let (_dir, lake, ctx) = small_lake().await;
    let mut lines = csv_lines(&lake, "training/wifi_home.csv").await;
    lines[5] = set_field(&lines[5], column_index("indoor"), "2");
    put_lines(&lake, "training/wifi_home.csv", &lines).await;
    let e = training_input(&ctx, &lake, &IngestOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("line 6, column `indoor`")
            && e.contains("expected 0 or 1")
            && e.contains("found `2`"),
        "{e}"
    );

    lines[5] = set_field(&lines[5], column_index("indoor"), "1");
    lines[9] = set_field(&lines[9], column_index("sample_id"), "");
    put_lines(&lake, "training/wifi_home.csv", &lines).await;
    let e = training_input(&ctx, &lake, &IngestOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("line 10, column `sample_id`")
            && e.contains("not null")
            && e.contains("empty value"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rows_go_to_rejected_when_configured() {
    let (_dir, lake, ctx) = small_lake().await;
    let mut lines = csv_lines(&lake, "training/geofence.csv").await;
    lines[3] = set_field(&lines[3], column_index("ts"), "yesterday");
    lines[4] = set_field(&lines[4], column_index("rsrp_dbm"), "-9x");
    put_lines(&lake, "training/geofence.csv", &lines).await;
    let opts = IngestOptions {
        reject_bad_rows: true,
        ..Default::default()
    };
    let out = training_input(&ctx, &lake, &opts).await.unwrap();
    assert_eq!(out.diagnostics.rejected_rows, 2);
    assert_eq!(out.diagnostics.rejected_files.len(), 1);
    assert_eq!(
        out.diagnostics.rejected_files[0].file,
        "training/geofence.csv"
    );
    assert_eq!(out.df.clone().count().await.unwrap() as u64, TRAIN_ROWS - 2);
    let rejected = out.rejected.unwrap().collect().await.unwrap();
    let mut reasons: Vec<String> = rejected
        .iter()
        .flat_map(|b| {
            b.column_by_name("_bad_columns")
                .unwrap()
                .as_string::<i32>()
                .iter()
                .map(|v| v.unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    reasons.sort();
    assert_eq!(reasons, ["rsrp_dbm", "ts"]);
    let files = rejected[0]
        .column_by_name("_source_file")
        .unwrap()
        .as_string::<i32>()
        .value(0)
        .to_string();
    assert_eq!(files, "training/geofence.csv");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glob_without_files_is_named() {
    let (_dir, lake, ctx) = small_lake().await;
    let opts = IngestOptions {
        csv_glob: "labels/*.csv".into(),
        ..Default::default()
    };
    let e = training_input(&ctx, &lake, &opts)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("labels/*.csv") && e.contains("no training CSV"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_tables_are_proven_unique_by_order() {
    let (_dir, lake, ctx) = small_lake().await;
    for (table, key) in [
        ("samples", "sample_id"),
        ("radio", "sample_id"),
        ("devices", "device_id"),
    ] {
        let df = ctx
            .read_parquet(
                lake.table_url(&format!("raw/{table}/")),
                ParquetReadOptions::default(),
            )
            .await
            .unwrap();
        let plan = df
            .clone()
            .aggregate(
                vec![],
                vec![sluice_engine::ingest::keys_ordered_udaf().call(vec![col(key)])],
            )
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let shown = datafusion::physical_plan::displayable(plan.as_ref())
            .indent(true)
            .to_string();
        assert!(
            keys_proven_unique(&df, key).await.unwrap(),
            "{table}:\n{shown}"
        );
    }
}

/// Issue 16: the value checks run per raw table inside the key pass,
/// before the join. `fail` (the default) names the file, column and value
/// before anything is joined; `reject` counts the violating raw rows,
/// leaves their samples out of the join (whichever table the row is in)
/// and lowers the row count the join must keep accordingly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn value_checks_run_per_table_before_the_join() {
    use arrow::array::Float64Array;
    use sluice_engine::ingest::{inference_input_with, InferenceOptions, ValueChecks};
    let (_dir, lake, ctx) = small_lake().await;
    // latitude 123 in the first locations row, rsrq 99 in the first two
    // radio rows (the first sample is bad in both tables).
    let set = |name: &'static str, rows: usize, v: f64| {
        move |b: RecordBatch| {
            let i = b.schema().index_of(name).unwrap();
            let old = b.column(i).as_primitive::<arrow::datatypes::Float64Type>();
            let new: Float64Array = (0..old.len())
                .map(|r| {
                    if r < rows {
                        Some(v)
                    } else {
                        old.is_valid(r).then(|| old.value(r))
                    }
                })
                .collect();
            let mut cols = b.columns().to_vec();
            cols[i] = Arc::new(new);
            RecordBatch::try_new(b.schema(), cols).unwrap()
        }
    };
    let ids = |b: &RecordBatch, n: usize| -> Vec<i64> {
        let c = b.column(b.schema().index_of("sample_id").unwrap());
        c.as_primitive::<Int64Type>().values()[..n].to_vec()
    };
    let first = first_part(&lake, "locations").await;
    let b = read_part(&lake, &first).await;
    let mut bad: std::collections::BTreeSet<i64> = ids(&b, 1).into_iter().collect();
    write_part(&lake, &first, &set("latitude", 1, 123.0)(b)).await;
    let first_radio = first_part(&lake, "radio").await;
    let b = read_part(&lake, &first_radio).await;
    bad.extend(ids(&b, 2));
    write_part(&lake, &first_radio, &set("rsrq_db", 2, 99.0)(b)).await;
    let dropped = bad.len() as u64;

    // `fail` (the default): the join's own pass stops at the first bad
    // value; `name_bounds_error` then names the file.
    let fail = InferenceOptions {
        now: Some(chrono::Utc::now()),
        ..Default::default()
    };
    assert_eq!(fail.value_checks, ValueChecks::Fail);
    let out = inference_input_with(&ctx, &lake, &fail).await.unwrap();
    let e = sluice_engine::error::EngineError::from(out.df.collect().await.unwrap_err());
    assert!(
        e.to_string()
            .contains(sluice_engine::ingest::bounds::BOUNDS_MARKER),
        "{e}"
    );
    let e = sluice_engine::ingest::name_bounds_error(&ctx, &lake, &fail, e)
        .await
        .to_string();
    assert!(
        e.contains(&first) && e.contains("latitude=123") && e.contains("1 row(s) of raw/locations"),
        "{e}"
    );

    let opts = InferenceOptions {
        value_checks: ValueChecks::Reject,
        ..Default::default()
    };
    let out = inference_input_with(&ctx, &lake, &opts).await.unwrap();
    assert_eq!(out.diagnostics.rejected_rows, 3);
    // The distinct samples of the three rows are left out.
    assert_eq!(out.diagnostics.expected_rows, Some(SAMPLES - dropped));
    assert_eq!(
        out.df.clone().count().await.unwrap() as u64,
        SAMPLES - dropped
    );
    let rejected = out.rejected.unwrap().collect().await.unwrap();
    assert_eq!(rejected.iter().map(|b| b.num_rows()).sum::<usize>(), 3);

    let off = InferenceOptions {
        value_checks: ValueChecks::Off,
        ..Default::default()
    };
    let out = inference_input_with(&ctx, &lake, &off).await.unwrap();
    assert_eq!(out.df.count().await.unwrap() as u64, SAMPLES);
}

/// The tables whose keys are not stored in key order are reported (the
/// pipeline then writes the join instead of slicing it by `sample_id`
/// span, docs/DATA.md): none for the generated lake; `radio` once each of
/// its files is stored in reverse key order (more strictly increasing runs
/// than the ordered-key proof keeps, so its duplicates are looked for by a
/// `GROUP BY`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_out_of_key_order_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path().to_str().unwrap()).unwrap();
    let mut cfg = DatagenConfig::new(110_000);
    cfg.train_rows = 1_000;
    generate(&lake, &cfg).await.unwrap();
    let ctx = connect(&EngineSettings::default(), Some(&lake))
        .await
        .unwrap();
    let ordered = inference_input(&ctx, &lake).await.unwrap();
    assert!(
        ordered.diagnostics.unordered_tables.is_empty(),
        "{:?}",
        ordered.diagnostics.unordered_tables
    );
    let rows = sorted_rows(ordered.parts()).await;
    rewrite_table(&lake, "radio", |b| {
        let n = b.num_rows() as u32;
        let reversed = arrow::array::UInt32Array::from_iter_values((0..n).rev());
        arrow::compute::take_record_batch(&b, &reversed).unwrap()
    })
    .await;
    let ctx = connect(&EngineSettings::default(), Some(&lake))
        .await
        .unwrap();
    let reversed = inference_input(&ctx, &lake).await.unwrap();
    assert_eq!(reversed.diagnostics.unordered_tables, ["radio"]);
    assert_eq!(sorted_rows(reversed.parts()).await, rows);
}
