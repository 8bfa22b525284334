//! Generator invariants: the lake matches the data contract, is
//! deterministic per seed, and has the intended null rates, label balance,
//! row counts and out-of-set categories.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Int32Type, Int64Type};
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use sluice_datagen::{generate, DatagenConfig};
use sluice_lake::lake::Lake;
use sluice_lake::schema::{raw_tables, training_schema, truth_schema};

fn small_config(samples: u64, devices: u64, train_rows: u64, seed: u64) -> DatagenConfig {
    let mut cfg = DatagenConfig::new(samples);
    cfg.devices = devices;
    cfg.train_rows = train_rows;
    cfg.seed = seed;
    cfg.chunk_samples = 8_000;
    cfg
}

async fn read_table(
    ctx: &SessionContext,
    lake: &Lake,
    rel: &str,
) -> (arrow::datatypes::SchemaRef, Vec<RecordBatch>) {
    let df = ctx
        .read_parquet(lake.table_url(rel), ParquetReadOptions::default())
        .await
        .unwrap();
    let schema = std::sync::Arc::new(df.schema().as_arrow().clone());
    (schema, df.collect().await.unwrap())
}

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}

fn null_rate(batches: &[RecordBatch], column: &str) -> f64 {
    let nulls: usize = batches
        .iter()
        .map(|b| b.column_by_name(column).unwrap().null_count())
        .sum();
    nulls as f64 / rows(batches) as f64
}

fn string_counts(batches: &[RecordBatch], column: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for b in batches {
        let a = arrow::compute::cast(
            b.column_by_name(column).unwrap(),
            &arrow::datatypes::DataType::Utf8,
        )
        .unwrap();
        let a = a.as_string::<i32>();
        for v in a.iter().flatten() {
            *out.entry(v.to_string()).or_default() += 1;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_lake_matches_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path().to_str().unwrap()).unwrap();
    let summary = generate(&lake, &small_config(20_000, 10, 6_000, 42))
        .await
        .unwrap();
    assert_eq!(summary.samples, 20_000);
    let ctx = SessionContext::new();

    // Every raw table exists as part files and has exactly the contract schema.
    let mut tables = BTreeMap::new();
    for t in raw_tables() {
        let listed = lake.list(&format!("raw/{}/", t.name)).await.unwrap();
        assert!(!listed.is_empty(), "raw/{} is empty", t.name);
        for m in &listed {
            let rel = lake.relative(&m.location);
            let file = rel.rsplit('/').next().unwrap();
            assert!(
                file.starts_with("part-") && file.ends_with(".parquet"),
                "{rel}"
            );
        }
        let (schema, batches) = read_table(&ctx, &lake, &format!("raw/{}/", t.name)).await;
        // DataFusion reads Parquet strings as Utf8View; the file itself must
        // carry exactly the contract's types and nullability.
        sluice_lake::schema::validate_schema(&schema, &t.schema, &t.name).unwrap();
        let first = lake.list(&format!("raw/{}/", t.name)).await.unwrap()[0]
            .location
            .clone();
        let bytes = lake.get(&lake.relative(&first)).await.unwrap();
        let file_schema =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
                .unwrap()
                .schema()
                .clone();
        assert_eq!(
            file_schema.as_ref(),
            t.schema.as_ref(),
            "schema of raw/{}",
            t.name
        );
        tables.insert(t.name.clone(), batches);
    }
    // 20k samples in chunks of 8k samples: three part files per sample table.
    assert_eq!(lake.list("raw/samples/").await.unwrap().len(), 3);

    // Row counts: every sample once; per-sample tables miss a few percent.
    let n = rows(&tables["samples"]);
    assert_eq!(n, 20_000);
    let mut ids: Vec<i64> = tables["samples"]
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 20_000);
    assert_eq!((ids[0], ids[19_999]), (1, 20_000));
    for (table, lo, hi) in [
        ("locations", 0.94, 0.995),
        ("radio", 0.96, 0.995),
        ("activity", 0.96, 0.995),
        ("environment", 0.98, 0.999),
    ] {
        let share = rows(&tables[table]) as f64 / n as f64;
        assert!(
            (lo..hi).contains(&share),
            "{table} covers {share:.4} of samples"
        );
    }
    assert_eq!(rows(&tables["devices"]), 10);
    assert!(rows(&tables["cells"]) >= 1_000);

    // Null rates: cell_key sometimes null, RSRP nulls follow, GPS-only columns.
    let cell_null = null_rate(&tables["samples"], "cell_key");
    assert!(
        (0.005..0.06).contains(&cell_null),
        "cell_key null rate {cell_null}"
    );
    let rsrp_null = null_rate(&tables["radio"], "rsrp_dbm");
    assert!(
        rsrp_null >= cell_null * 0.5 && rsrp_null < 0.08,
        "rsrp null rate {rsrp_null}"
    );
    let speed_null = null_rate(&tables["locations"], "speed_mps");
    assert!(
        (0.05..0.4).contains(&speed_null),
        "speed null rate {speed_null}"
    );
    let wifi_rssi_null = null_rate(&tables["environment"], "wifi_rssi_dbm");
    assert!(
        (0.3..0.9).contains(&wifi_rssi_null),
        "wifi rssi null rate {wifi_rssi_null}"
    );

    // Categories: mostly the contract's values, a few outside the usual set.
    let nets = string_counts(&tables["samples"], "network_type");
    let usual = ["LTE", "NR", "UMTS", "GSM", "UNKNOWN"];
    let outside: usize = nets
        .iter()
        .filter(|(k, _)| !usual.contains(&k.as_str()))
        .map(|(_, v)| v)
        .sum();
    assert!(
        outside > 0 && (outside as f64) < 0.02 * n as f64,
        "{nets:?}"
    );
    assert!(nets["LTE"] > nets["NR"] && nets["NR"] > 0, "{nets:?}");
    let acts = string_counts(&tables["activity"], "activity");
    assert!(
        acts["STILL"] > acts.get("IN_VEHICLE").copied().unwrap_or(0),
        "{acts:?}"
    );
    let providers = string_counts(&tables["locations"], "provider");
    assert_eq!(
        providers.keys().cloned().collect::<Vec<_>>(),
        ["fused", "gps", "network"]
    );

    // Timestamps are irregular, ordered per device, and fixes precede samples.
    let first = &tables["samples"][0];
    let ts = first
        .column(2)
        .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
    let gaps: Vec<i64> = ts
        .values()
        .windows(2)
        .take(500)
        .map(|w| w[1] - w[0])
        .collect();
    assert!(gaps.iter().all(|g| *g > 0));
    let (min, max) = (gaps.iter().min().unwrap(), gaps.iter().max().unwrap());
    assert!(
        *max > 20 * *min,
        "sampling intervals look regular: {min}..{max}"
    );

    // Truth labels: one per sample, balanced but not trivially.
    let (schema, truth) = read_table(&ctx, &lake, "truth/labels/").await;
    let schema = std::sync::Arc::new(schema.as_ref().clone());
    assert_eq!(schema.as_ref(), truth_schema().as_ref());
    assert_eq!(rows(&truth), 20_000);
    let indoor: i64 = truth
        .iter()
        .map(|b| {
            b.column(1)
                .as_primitive::<Int32Type>()
                .values()
                .iter()
                .map(|v| *v as i64)
                .sum::<i64>()
        })
        .sum();
    let share = indoor as f64 / 20_000.0;
    assert!((0.45..0.8).contains(&share), "indoor share {share}");
    assert!((summary.indoor_share - share).abs() < 1e-12);

    // Training CSVs: four files named by label source, header = training schema.
    let files = lake.list("training/").await.unwrap();
    let names: Vec<String> = files.iter().map(|m| lake.relative(&m.location)).collect();
    assert_eq!(
        names,
        [
            "training/campaign.csv",
            "training/geofence.csv",
            "training/manual.csv",
            "training/wifi_home.csv"
        ]
    );
    let header: Vec<String> = training_schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let mut total = 0;
    for name in &names {
        let text = String::from_utf8(lake.get(name).await.unwrap().to_vec()).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next().unwrap(), header.join(","));
        let source = name
            .trim_start_matches("training/")
            .trim_end_matches(".csv");
        for line in lines {
            let fields: Vec<&str> = line.split(',').collect();
            assert_eq!(fields.len(), header.len(), "{name}: {line}");
            assert_eq!(fields[fields.len() - 1], source);
            assert!(
                fields[2].ends_with('Z') && fields[2].len() == 27,
                "{}",
                fields[2]
            );
            total += 1;
        }
    }
    assert_eq!(total, 6_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generation_is_deterministic_per_seed() {
    async fn snapshot(seed: u64) -> BTreeMap<String, bytes::Bytes> {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap()).unwrap();
        generate(&lake, &small_config(9_000, 6, 2_500, seed))
            .await
            .unwrap();
        let mut out = BTreeMap::new();
        for m in lake.list("").await.unwrap() {
            let rel = lake.relative(&m.location);
            out.insert(rel.clone(), lake.get(&rel).await.unwrap());
        }
        out
    }
    let a = snapshot(7).await;
    let b = snapshot(7).await;
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (k, v) in &a {
        assert!(
            v == &b[k],
            "{k} differs between two runs with the same seed"
        );
    }
    let c = snapshot(8).await;
    assert!(a["raw/radio/part-00000.parquet"] != c["raw/radio/part-00000.parquet"]);
    assert!(
        a["training/geofence.csv"] != c["training/geofence.csv"]
            || a["training/manual.csv"] != c["training/manual.csv"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regenerating_replaces_the_previous_lake() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path().to_str().unwrap()).unwrap();
    generate(&lake, &small_config(20_000, 10, 100, 1))
        .await
        .unwrap();
    assert_eq!(lake.list("raw/samples/").await.unwrap().len(), 3);
    generate(&lake, &small_config(5_000, 5, 100, 1))
        .await
        .unwrap();
    assert_eq!(lake.list("raw/samples/").await.unwrap().len(), 1);
    let ctx = SessionContext::new();
    let (_, batches) = read_table(&ctx, &lake, "raw/samples/").await;
    assert_eq!(rows(&batches), 5_000);
}

#[tokio::test]
async fn bad_settings_are_rejected_with_the_flag_name() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path().to_str().unwrap()).unwrap();
    let mut cfg = DatagenConfig::new(100);
    cfg.devices = 101;
    let e = generate(&lake, &cfg).await.unwrap_err().to_string();
    assert!(e.contains("--devices") && e.contains("101"), "{e}");
}
