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
use sluice_engine::datagen::{generate, DatagenConfig};
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
    assert_eq!(sluice_engine::datagen::rfc3339_micros(ts), first[2]);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nullable_key_column_in_a_raw_table_is_named() {
    let (_dir, lake, ctx) = small_lake().await;
    rewrite_table(&lake, "activity", |b| {
        let fields: Vec<Field> = b
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        RecordBatch::try_new(Arc::new(Schema::new(fields)), b.columns().to_vec()).unwrap()
    })
    .await;
    let e = inference_input(&ctx, &lake).await.unwrap_err().to_string();
    assert!(
        e.contains("raw/activity")
            && e.contains("`sample_id`")
            && e.contains("expected not null, found nullable"),
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
