//! Integration tests of the transform set against hand-computed values.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int32Array, Int64Array, RecordBatch,
    StringArray, TimestampMicrosecondArray,
};
use arrow::compute::{concat_batches, sort_to_indices, take_record_batch};
use arrow::datatypes::{DataType, Float64Type, Int32Type};
use chrono::{NaiveDate, TimeZone, Utc};
use datafusion::prelude::{DataFrame, SessionContext};
use proptest::prelude::*;
use sluice_transforms::functions::haversine::haversine_m_scalar;
use sluice_transforms::spec::*;
use sluice_transforms::{
    FeaturePipeline, FittedPipeline, FittedState, TransformError, TransformSpec,
    DEFAULT_CONTRACT_YAML,
};

/// The feature columns of a transformed batch, in `names` order.
fn features(batch: &RecordBatch, names: &[String]) -> Vec<ArrayRef> {
    names
        .iter()
        .map(|n| {
            ArrayRef::clone(
                batch
                    .column_by_name(n)
                    .unwrap_or_else(|| panic!("feature column {n} missing")),
            )
        })
        .collect()
}

fn us(y: i32, m: u32, d: u32, h: u32, mi: u32, s: u32) -> i64 {
    Utc.from_utc_datetime(
        &NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_opt(h, mi, s)
            .unwrap(),
    )
    .timestamp_micros()
}

fn ts_array(v: Vec<Option<i64>>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC"))
}

fn df_of(columns: Vec<(&str, ArrayRef)>) -> DataFrame {
    let ctx = SessionContext::new();
    ctx.read_batch(RecordBatch::try_from_iter(columns).unwrap())
        .unwrap()
}

/// Runs `df` and returns one batch sorted by `sample_id`.
async fn run_sorted(df: DataFrame) -> RecordBatch {
    let schema = Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await.unwrap();
    let batch = concat_batches(&schema, &batches).unwrap();
    if batch.num_rows() == 0 {
        return batch;
    }
    let idx = sort_to_indices(batch.column_by_name("sample_id").unwrap(), None, None).unwrap();
    take_record_batch(&batch, &idx).unwrap()
}

fn f64s(b: &RecordBatch, name: &str) -> Vec<Option<f64>> {
    b.column_by_name(name)
        .unwrap_or_else(|| panic!("missing {name}"))
        .as_primitive::<Float64Type>()
        .iter()
        .collect()
}

fn i32s(b: &RecordBatch, name: &str) -> Vec<Option<i32>> {
    b.column_by_name(name)
        .unwrap_or_else(|| panic!("missing {name}"))
        .as_primitive::<Int32Type>()
        .iter()
        .collect()
}

fn strs(b: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let c = arrow::compute::cast(b.column_by_name(name).unwrap(), &DataType::Utf8).unwrap();
    c.as_string::<i32>()
        .iter()
        .map(|s| s.map(str::to_string))
        .collect()
}

fn pipeline(steps: Vec<TransformSpec>) -> FeaturePipeline {
    FeaturePipeline { steps }
}

fn shift(columns: &[&str]) -> ShiftParams {
    ShiftParams {
        columns: columns.iter().map(|s| s.to_string()).collect(),
        offset: 1,
        partition_by: "device_id".into(),
        order_by: "ts".into(),
        tie_breaker: Some("sample_id".into()),
    }
}

/// Device 1: samples 3, 1, 2 (out of order), 2 and 4 share a timestamp;
/// device 2: a single sample 5.
fn track() -> DataFrame {
    let t0 = us(2026, 3, 2, 8, 0, 0);
    df_of(vec![
        (
            "sample_id",
            Arc::new(Int64Array::from(vec![3, 1, 5, 4, 2])) as ArrayRef,
        ),
        ("device_id", Arc::new(Int64Array::from(vec![1, 1, 2, 1, 1]))),
        (
            "ts",
            ts_array(vec![
                Some(t0 + 20_000_000),
                Some(t0),
                Some(t0),
                Some(t0 + 10_000_000),
                Some(t0 + 10_000_000),
            ]),
        ),
        (
            "latitude",
            Arc::new(Float64Array::from(vec![
                Some(52.02),
                Some(52.0),
                Some(48.0),
                None,
                Some(52.01),
            ])),
        ),
        (
            "longitude",
            Arc::new(Float64Array::from(vec![13.0, 13.0, 11.0, 13.0, 13.0])),
        ),
        (
            "activity",
            Arc::new(StringArray::from(vec![
                Some("STILL"),
                Some("WALKING"),
                Some("STILL"),
                None,
                Some("ON_FOOT"),
            ])),
        ),
    ])
}

#[tokio::test]
async fn lag_lead_per_device_with_tie_breaker_and_edges() {
    let p = pipeline(vec![
        TransformSpec::LagCalculator(shift(&["latitude", "activity"])),
        TransformSpec::LeadCalculator(shift(&["latitude"])),
    ]);
    let fitted = p.fit(track()).await.unwrap();
    let out = run_sorted(fitted.transform(track()).unwrap()).await;
    // device 1 order: 1 (t0), 2 (t0+10, sid 2), 4 (t0+10, sid 4), 3 (t0+20)
    // sample ids sorted: 1, 2, 3, 4, 5
    assert_eq!(
        f64s(&out, "latitude_lag1"),
        vec![
            None,
            Some(52.0),
            None, /* lag of 4, whose lat is null */
            Some(52.01),
            None
        ]
    );
    assert_eq!(
        f64s(&out, "latitude_lead1"),
        vec![
            Some(52.01),
            None, /* lead is sample 4 (null) */
            None,
            Some(52.02),
            None
        ]
    );
    assert_eq!(
        strs(&out, "activity_lag1"),
        vec![
            None,
            Some("WALKING".into()),
            None,
            Some("ON_FOOT".into()),
            None
        ]
    );
}

#[tokio::test]
async fn distance_to_previous_fix_is_null_safe() {
    let p = pipeline(vec![
        TransformSpec::LagCalculator(shift(&["latitude", "longitude"])),
        TransformSpec::DistanceCalculator(DistanceParams {
            lat1: "latitude_lag1".into(),
            lon1: "longitude_lag1".into(),
            lat2: "latitude".into(),
            lon2: "longitude".into(),
            output: "distance_prev_m".into(),
        }),
    ]);
    let out = run_sorted(p.fit(track()).await.unwrap().transform(track()).unwrap()).await;
    let d = f64s(&out, "distance_prev_m");
    assert_eq!(d[0], None); // first fix of device 1
    let expected = haversine_m_scalar(52.0, 13.0, 52.01, 13.0);
    assert!((d[1].unwrap() - expected).abs() < 1e-9);
    assert!((expected - 1111.949).abs() < 0.01); // 0.01 degree of latitude
    assert_eq!(d[2], None); // previous (sample 4) has a null latitude
    assert_eq!(d[3], None); // own latitude null
    assert_eq!(d[4], None); // only sample of device 2
}

#[tokio::test]
async fn gps_delay_in_seconds() {
    let t = us(2026, 5, 1, 12, 0, 0);
    let df = || {
        df_of(vec![
            (
                "sample_id",
                Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef,
            ),
            ("ts", ts_array(vec![Some(t), Some(t), Some(t)])),
            (
                "fix_ts",
                ts_array(vec![Some(t - 2_500_000), None, Some(t + 1_000_000)]),
            ),
        ])
    };
    let p = pipeline(vec![TransformSpec::GpsDelayCalculator(GpsDelayParams {
        ts: "ts".into(),
        fix_ts: "fix_ts".into(),
        output: "gps_delay_s".into(),
    })]);
    let out = run_sorted(p.fit(df()).await.unwrap().transform(df()).unwrap()).await;
    assert_eq!(f64s(&out, "gps_delay_s"), vec![Some(2.5), None, Some(-1.0)]);
}

#[tokio::test]
async fn time_and_weekend_across_both_dst_changes() {
    let rows = vec![
        Some(us(2026, 3, 29, 0, 59, 0)),   // Sun 01:59 CET
        Some(us(2026, 3, 29, 1, 0, 0)),    // Sun 03:00 CEST
        Some(us(2026, 10, 25, 0, 30, 0)),  // Sun 02:30 CEST
        Some(us(2026, 10, 25, 1, 30, 0)),  // Sun 02:30 CET (second time)
        Some(us(2026, 10, 25, 23, 30, 0)), // Mon 00:30 CET
        Some(us(2026, 3, 27, 23, 30, 0)),  // Sat 00:30 CET
    ];
    let df = || {
        df_of(vec![
            (
                "sample_id",
                Arc::new(Int64Array::from((1..=6).collect::<Vec<i64>>())) as ArrayRef,
            ),
            ("ts", ts_array(rows.clone())),
        ])
    };
    let p = pipeline(vec![
        TransformSpec::WeekendExtractor(serde_yaml::from_str("{}").unwrap()),
        TransformSpec::TimeExtractor(serde_yaml::from_str("{}").unwrap()),
    ]);
    let out = run_sorted(p.fit(df()).await.unwrap().transform(df()).unwrap()).await;
    let s = |v: &[i32]| v.iter().map(|x| Some(*x)).collect::<Vec<_>>();
    assert_eq!(i32s(&out, "hour"), s(&[1, 3, 2, 2, 0, 0]));
    assert_eq!(
        i32s(&out, "minute_of_day"),
        s(&[119, 180, 150, 150, 30, 30])
    );
    assert_eq!(i32s(&out, "is_weekend"), s(&[1, 1, 1, 1, 0, 1]));
}

#[tokio::test]
async fn level_thresholds_nulls_and_per_network_type() {
    let df = || {
        df_of(vec![
            (
                "sample_id",
                Arc::new(Int64Array::from((1..=8).collect::<Vec<i64>>())) as ArrayRef,
            ),
            (
                "rsrp_dbm",
                Arc::new(Float64Array::from(vec![
                    Some(-80.0),
                    Some(-85.0),
                    Some(-95.5),
                    Some(-105.0),
                    Some(-115.0),
                    Some(-130.0),
                    None,
                    Some(-90.0),
                ])),
            ),
            (
                "network_type",
                Arc::new(StringArray::from(vec![
                    "LTE", "LTE", "LTE", "NR", "LTE", "LTE", "LTE", "UMTS",
                ])),
            ),
        ])
    };
    let mut params: LevelParams = serde_yaml::from_str("{}").unwrap();
    let out = run_sorted(
        pipeline(vec![TransformSpec::LevelCalculator(params.clone())])
            .fit(df())
            .await
            .unwrap()
            .transform(df())
            .unwrap(),
    )
    .await;
    assert_eq!(
        i32s(&out, "level"),
        vec![
            Some(4),
            Some(4),
            Some(2),
            Some(2),
            Some(1),
            Some(0),
            None,
            Some(3)
        ]
    );
    params.per_network_type = BTreeMap::from([("UMTS".to_string(), [-70.0, -80.0, -90.0, -100.0])]);
    let out = run_sorted(
        pipeline(vec![TransformSpec::LevelCalculator(params)])
            .fit(df())
            .await
            .unwrap()
            .transform(df())
            .unwrap(),
    )
    .await;
    assert_eq!(i32s(&out, "level")[7], Some(2)); // -90 on UMTS with [-70, -80, -90, -100]
    assert_eq!(i32s(&out, "level")[0], Some(4)); // LTE keeps the default thresholds
}

#[tokio::test]
async fn categorical_filter_maps_outside_and_null_to_other() {
    let df = || {
        df_of(vec![
            (
                "sample_id",
                Arc::new(Int64Array::from(vec![1, 2, 3, 4])) as ArrayRef,
            ),
            (
                "network_type",
                Arc::new(StringArray::from(vec![
                    Some("LTE"),
                    Some("WIMAX"),
                    None,
                    Some("NR"),
                ])),
            ),
        ])
    };
    let p = pipeline(vec![TransformSpec::CategoricalFilter(
        CategoricalFilterParams {
            column: "network_type".into(),
            allowed: vec!["LTE".into(), "NR".into()],
            other: "OTHER".into(),
            output: None,
        },
    )]);
    let out = run_sorted(p.fit(df()).await.unwrap().transform(df()).unwrap()).await;
    assert_eq!(
        strs(&out, "network_type"),
        vec![
            Some("LTE".into()),
            Some("OTHER".into()),
            Some("OTHER".into()),
            Some("NR".into())
        ]
    );
}

#[tokio::test]
async fn median_imputer_fits_on_training_and_applies_to_inference() {
    let train = df_of(vec![
        (
            "sample_id",
            Arc::new(Int64Array::from(vec![1, 2, 3, 4, 5])) as ArrayRef,
        ),
        (
            "speed",
            Arc::new(Float64Array::from(vec![
                Some(4.0),
                None,
                Some(1.0),
                Some(2.0),
                Some(10.0),
            ])),
        ),
        (
            "count",
            Arc::new(Int32Array::from(vec![Some(1), Some(2), None, None, None])),
        ),
    ]);
    let p = pipeline(vec![TransformSpec::MedianImputer(MedianImputerParams {
        columns: vec!["speed".into(), "count".into()],
        fallback: 0.0,
    })]);
    let fitted = p.fit(train).await.unwrap();
    let FittedState::Medians { values } = &fitted.steps[0].state else {
        panic!("expected medians")
    };
    assert_eq!(
        values,
        &vec![("speed".to_string(), 3.0), ("count".to_string(), 1.5)]
    );
    let infer = df_of(vec![
        (
            "sample_id",
            Arc::new(Int64Array::from(vec![7, 8])) as ArrayRef,
        ),
        (
            "speed",
            Arc::new(Float64Array::from(vec![None, Some(-1.0)])),
        ),
        ("count", Arc::new(Int32Array::from(vec![Some(9), None]))),
    ]);
    let out = run_sorted(fitted.transform(infer).unwrap()).await;
    assert_eq!(f64s(&out, "speed"), vec![Some(3.0), Some(-1.0)]);
    assert_eq!(f64s(&out, "count"), vec![Some(9.0), Some(1.5)]);
}

#[tokio::test]
async fn numerical_imputer_fills_constant_and_bools() {
    let df = || {
        df_of(vec![
            (
                "sample_id",
                Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef,
            ),
            (
                "level",
                Arc::new(Int32Array::from(vec![Some(3), None, Some(0)])),
            ),
            (
                "wifi_connected",
                Arc::new(BooleanArray::from(vec![Some(true), None, Some(false)])),
            ),
        ])
    };
    let p = pipeline(vec![TransformSpec::NumericalImputer(
        NumericalImputerParams {
            columns: vec!["level".into(), "wifi_connected".into()],
            value: -1.0,
        },
    )]);
    let out = run_sorted(p.fit(df()).await.unwrap().transform(df()).unwrap()).await;
    assert_eq!(f64s(&out, "level"), vec![Some(3.0), Some(-1.0), Some(0.0)]);
    assert_eq!(
        f64s(&out, "wifi_connected"),
        vec![Some(1.0), Some(-1.0), Some(0.0)]
    );
}

fn categorical_train() -> DataFrame {
    // counts: LTE 3, NR 2, GSM 2, UMTS 1, null 2 -> LTE, GSM, NR (tie alphabetical), UMTS
    df_of(vec![
        (
            "sample_id",
            Arc::new(Int64Array::from((1..=10).collect::<Vec<i64>>())) as ArrayRef,
        ),
        (
            "network_type",
            Arc::new(StringArray::from(vec![
                Some("NR"),
                Some("LTE"),
                Some("GSM"),
                None,
                Some("LTE"),
                Some("UMTS"),
                Some("NR"),
                Some("GSM"),
                Some("LTE"),
                None,
            ])),
        ),
    ])
}

fn indexer_pipeline() -> FeaturePipeline {
    pipeline(vec![
        TransformSpec::StringIndexer(StringIndexerParams {
            columns: vec!["network_type".into()],
            suffix: "_idx".into(),
        }),
        TransformSpec::OneHotEncoder(OneHotEncoderParams {
            columns: vec!["network_type_idx".into()],
            suffix: "_vec".into(),
        }),
        TransformSpec::VectorAssembler(VectorAssemblerParams {
            columns: vec!["network_type_idx".into(), "network_type_vec".into()],
            passthrough: vec!["sample_id".into()],
            label: Some("indoor".into()),
        }),
    ])
}

#[tokio::test]
async fn string_indexer_frequency_order_unseen_and_one_hot() {
    let fitted = indexer_pipeline().fit(categorical_train()).await.unwrap();
    let FittedState::Labels { columns } = &fitted.steps[0].state else {
        panic!("expected labels")
    };
    assert_eq!(columns[0].labels, vec!["LTE", "GSM", "NR", "UMTS"]);
    let names = fitted.feature_names();
    assert_eq!(
        names,
        vec![
            "network_type_idx",
            "network_type_vec_LTE",
            "network_type_vec_GSM",
            "network_type_vec_NR",
            "network_type_vec_UMTS",
            "network_type_vec__unknown",
        ]
    );
    let infer = df_of(vec![
        (
            "sample_id",
            Arc::new(Int64Array::from(vec![1, 2, 3, 4])) as ArrayRef,
        ),
        (
            "network_type",
            Arc::new(StringArray::from(vec![
                Some("NR"),
                Some("5G-SA"),
                None,
                Some("LTE"),
            ])),
        ),
        ("indoor", Arc::new(Int32Array::from(vec![1, 0, 1, 0]))),
    ]);
    let out = run_sorted(fitted.transform(infer).unwrap()).await;
    let cols: Vec<String> = out
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let mut expected = vec!["sample_id".to_string(), "indoor".to_string()];
    expected.extend(names.iter().cloned());
    assert_eq!(cols, expected);
    assert_eq!(
        out.column_by_name("indoor").unwrap().data_type(),
        &DataType::Int32
    );
    assert_eq!(
        f64s(&out, "network_type_idx"),
        vec![Some(2.0), Some(4.0), Some(4.0), Some(0.0)]
    );
    let rows: Vec<Vec<f64>> = (0..4)
        .map(|r| {
            names[1..]
                .iter()
                .map(|n| f64s(&out, n)[r].unwrap())
                .collect()
        })
        .collect();
    assert_eq!(rows[0], vec![0.0, 0.0, 1.0, 0.0, 0.0]);
    assert_eq!(rows[1], vec![0.0, 0.0, 0.0, 0.0, 1.0]); // unseen -> unknown slot
    assert_eq!(rows[2], vec![0.0, 0.0, 0.0, 0.0, 1.0]); // null -> unknown slot
    assert_eq!(rows[3], vec![1.0, 0.0, 0.0, 0.0, 0.0]);
    // The ML crate takes the same columns as Float64 arrays.
    let arrays = features(&out, &names);
    assert_eq!(arrays.len(), names.len());
    assert!(arrays.iter().all(|a| a.data_type() == &DataType::Float64));
}

#[tokio::test]
async fn one_hot_of_plain_integer_column() {
    let df = || {
        df_of(vec![
            (
                "sample_id",
                Arc::new(Int64Array::from(vec![1, 2, 3, 4])) as ArrayRef,
            ),
            (
                "bucket",
                Arc::new(Int32Array::from(vec![Some(0), Some(2), None, Some(-1)])),
            ),
        ])
    };
    let p = pipeline(vec![TransformSpec::OneHotEncoder(OneHotEncoderParams {
        columns: vec!["bucket".into()],
        suffix: "_vec".into(),
    })]);
    let fitted = p.fit(df()).await.unwrap();
    let out = run_sorted(fitted.transform(df()).unwrap()).await;
    assert_eq!(
        f64s(&out, "bucket_vec_0"),
        vec![Some(1.0), Some(0.0), Some(0.0), Some(0.0)]
    );
    assert_eq!(f64s(&out, "bucket_vec_1"), vec![Some(0.0); 4]);
    assert_eq!(
        f64s(&out, "bucket_vec_2"),
        vec![Some(0.0), Some(1.0), Some(0.0), Some(0.0)]
    );
    assert_eq!(
        f64s(&out, "bucket_vec__unknown"),
        vec![Some(0.0), Some(0.0), Some(1.0), Some(1.0)]
    );
}

/// Fitting on zero rows gives the fallback medians and empty label lists; the
/// fitted chain then maps every value to the unknown slot.
///
/// Regression (first integrated run, 2026-11-26): the test applied the fitted
/// chain to `categorical_train()`, which has no `speed` column, so the
/// `MedianImputer` step failed at plan time with `MissingColumn`. The frames
/// handed to `transform` now carry every column the chain reads.
#[tokio::test]
async fn empty_input_fits_and_transforms() {
    let empty = || {
        df_of(vec![
            (
                "sample_id",
                Arc::new(Int64Array::from(Vec::<i64>::new())) as ArrayRef,
            ),
            (
                "network_type",
                Arc::new(StringArray::from(Vec::<&str>::new())),
            ),
            ("speed", Arc::new(Float64Array::from(Vec::<f64>::new()))),
        ])
    };
    let mut steps = indexer_pipeline().steps;
    steps.insert(
        0,
        TransformSpec::MedianImputer(MedianImputerParams {
            columns: vec!["speed".into()],
            fallback: 7.0,
        }),
    );
    let fitted = pipeline(steps).fit(empty()).await.unwrap();
    let FittedState::Medians { values } = &fitted.steps[0].state else {
        panic!()
    };
    assert_eq!(values[0].1, 7.0);
    assert_eq!(
        fitted.feature_names(),
        vec!["network_type_idx", "network_type_vec__unknown"]
    );
    let out = run_sorted(fitted.transform(empty()).unwrap()).await;
    assert_eq!(out.num_rows(), 0);
    let cols: Vec<String> = out
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(
        cols,
        vec!["sample_id", "network_type_idx", "network_type_vec__unknown"]
    );
    // Applied to non-empty data (with the `speed` column the chain reads),
    // every label is unknown.
    let rows = df_of(vec![
        (
            "sample_id",
            Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef,
        ),
        (
            "network_type",
            Arc::new(StringArray::from(vec![Some("LTE"), None, Some("NR")])),
        ),
        (
            "speed",
            Arc::new(Float64Array::from(vec![Some(1.0), None, None])),
        ),
    ]);
    let out = run_sorted(fitted.transform(rows).unwrap_or_else(|e| panic!("{e}"))).await;
    assert_eq!(out.num_rows(), 3);
    assert_eq!(f64s(&out, "network_type_idx"), vec![Some(0.0); 3]);
    assert_eq!(f64s(&out, "network_type_vec__unknown"), vec![Some(1.0); 3]);
}

/// The whole default chain (windows included) fits and transforms zero rows of
/// the unified schema, and the state fitted on nothing applies to real rows.
#[tokio::test]
async fn default_contract_on_empty_unified_input() {
    let empty = unified_batch(0, 1, 1);
    assert_eq!(empty.num_rows(), 0);
    let p = FeaturePipeline::default_contract();
    let fitted = p.fit(df_from_batches(vec![empty.clone()])).await.unwrap();
    for step in &fitted.steps {
        match &step.state {
            FittedState::Medians { values } => assert!(values.iter().all(|(_, m)| *m == 0.0)),
            FittedState::Labels { columns } => assert!(columns.iter().all(|c| c.labels.is_empty())),
            _ => {}
        }
    }
    let names = fitted.feature_names();
    assert!(names.iter().any(|n| n == "network_type_vec__unknown"));
    assert!(!names.iter().any(|n| n == "network_type_vec_LTE"));
    let out = run_sorted(fitted.transform(df_from_batches(vec![empty])).unwrap()).await;
    assert_eq!(out.num_rows(), 0);
    assert_eq!(out.num_columns(), 4 + names.len());

    let rows = unified_batch(50, 3, 2);
    let out = run_sorted(fitted.transform(df_from_batches(vec![rows])).unwrap()).await;
    assert_eq!(out.num_rows(), 50);
    for a in features(&out, &names) {
        assert_eq!(a.null_count(), 0);
    }
    assert_eq!(f64s(&out, "activity_vec__unknown"), vec![Some(1.0); 50]);
}

#[tokio::test]
async fn missing_and_mistyped_columns_fail_at_plan_time() {
    let p = pipeline(vec![TransformSpec::LagCalculator(shift(&[
        "latitude",
        "altitude_m",
    ]))]);
    let err = p.fit(track()).await.unwrap_err();
    assert!(matches!(err, TransformError::MissingColumn { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("LagCalculator") && msg.contains("`altitude_m`"),
        "{msg}"
    );
    assert!(
        msg.contains("sample_id, device_id, ts, latitude, longitude, activity"),
        "{msg}"
    );

    let p = pipeline(vec![TransformSpec::DistanceCalculator(DistanceParams {
        lat1: "latitude".into(),
        lon1: "activity".into(),
        lat2: "latitude".into(),
        lon2: "longitude".into(),
        output: "d".into(),
    })]);
    let err = p.fit(track()).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, TransformError::WrongType { .. }), "{msg}");
    assert!(
        msg.contains("DistanceCalculator") && msg.contains("`activity`") && msg.contains("Utf8"),
        "{msg}"
    );

    // A fitted pipeline validated against a schema without the column.
    let fitted = indexer_pipeline().fit(categorical_train()).await.unwrap();
    let schema = track().schema().clone();
    let msg = fitted.validate(&schema).unwrap_err().to_string();
    assert!(
        msg.contains("StringIndexer") && msg.contains("`network_type`"),
        "{msg}"
    );
    fitted.validate(categorical_train().schema()).unwrap();

    // A later step referring to a column no earlier step produced fails too,
    // before any fitting query runs.
    let p = pipeline(vec![
        TransformSpec::MedianImputer(MedianImputerParams {
            columns: vec!["latitude".into()],
            fallback: 0.0,
        }),
        TransformSpec::VectorAssembler(VectorAssemblerParams {
            columns: vec!["latitude_lag1".into()],
            passthrough: vec!["sample_id".into()],
            label: None,
        }),
    ]);
    let msg = p.fit(track()).await.unwrap_err().to_string();
    assert!(
        msg.contains("VectorAssembler") && msg.contains("latitude_lag1"),
        "{msg}"
    );
}

#[tokio::test]
async fn bad_parameters_are_config_errors() {
    let mut tp: TimeParams = serde_yaml::from_str("{}").unwrap();
    tp.timezone = "Mars/Olympus".into();
    let err = pipeline(vec![TransformSpec::TimeExtractor(tp)])
        .fit(track())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Mars/Olympus"), "{err}");
    let mut lp: LevelParams = serde_yaml::from_str("{}").unwrap();
    lp.thresholds = [-95.0, -85.0, -105.0, -115.0];
    let err = pipeline(vec![TransformSpec::LevelCalculator(lp)])
        .check()
        .unwrap_err();
    assert!(matches!(err, TransformError::Config { .. }), "{err}");
}

/// Regression (first integrated run, 2026-11-26): an unknown key in a bare
/// list was reported as "invalid type: sequence, expected struct
/// FeaturePipeline" (the error of the `{steps: ...}` form) instead of naming
/// the key; `from_yaml` now picks the form from the document's shape.
#[test]
fn yaml_rejects_unknown_keys_and_names() {
    let ok = "- name: LagCalculator\n  params: {columns: [latitude]}\n";
    let p = FeaturePipeline::from_yaml(ok).unwrap();
    assert_eq!(p.steps.len(), 1);
    let bad_key = "- name: LagCalculator\n  params: {columns: [latitude], colums: [x]}\n";
    let err = FeaturePipeline::from_yaml(bad_key).unwrap_err().to_string();
    assert!(err.contains("colums"), "{err}");
    let bad_name = "steps:\n- name: LagCalc\n  params: {columns: [latitude]}\n";
    let err = FeaturePipeline::from_yaml(bad_name)
        .unwrap_err()
        .to_string();
    assert!(err.contains("LagCalc"), "{err}");
    let extra = "steps:\n- name: LagCalculator\n  params: {columns: [a]}\n  extra: 1\n";
    assert!(FeaturePipeline::from_yaml(extra).is_err());
}

#[test]
fn default_contract_yaml_round_trips() {
    let p = FeaturePipeline::default_contract();
    assert!(p.steps.len() >= 13);
    p.check().unwrap();
    let yaml = serde_yaml::to_string(&p).unwrap();
    assert_eq!(FeaturePipeline::from_yaml(&yaml).unwrap(), p);
    assert!(DEFAULT_CONTRACT_YAML.contains("LagCalculator"));
}

// ---------------------------------------------------------------------------
// Unified-schema data for the default contract and the property tests.

/// A deterministic unified-schema batch (the data contract's columns plus
/// `indoor`), `n` rows over `devices` devices, from a tiny LCG.
fn unified_batch(n: usize, devices: i64, seed: u64) -> RecordBatch {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 33) as f64 / (1u64 << 31) as f64
    };
    let t0 = us(2026, 3, 28, 22, 0, 0);
    let mut cols: Vec<(&str, ArrayRef)> = Vec::new();
    let sample: Vec<i64> = (0..n as i64).map(|i| i * 7 + 3).collect();
    let device: Vec<i64> = (0..n).map(|_| (next() * devices as f64) as i64).collect();
    let ts: Vec<Option<i64>> = (0..n)
        .map(|_| Some(t0 + (next() * 8.0 * 3.6e9) as i64))
        .collect();
    let pick = |v: f64, opts: &[&'static str]| {
        opts[((v * opts.len() as f64) as usize).min(opts.len() - 1)]
    };
    let mut f = |lo: f64, hi: f64, null_p: f64| -> Vec<Option<f64>> {
        (0..n)
            .map(|_| {
                let x = next();
                (next() >= null_p).then_some(lo + x * (hi - lo))
            })
            .collect()
    };
    let lat = f(52.3, 52.7, 0.05);
    let lon = f(13.1, 13.7, 0.0);
    let alt = f(30.0, 80.0, 0.2);
    let acc = f(3.0, 60.0, 0.1);
    let speed = f(0.0, 20.0, 0.3);
    let rsrp = f(-130.0, -70.0, 0.1);
    let rsrq = f(-20.0, -3.0, 0.1);
    let sinr = f(-5.0, 30.0, 0.1);
    let rssi = f(-110.0, -50.0, 0.2);
    let wifi_rssi = f(-90.0, -30.0, 0.5);
    let u = f(0.0, 1.0, 0.0);
    let u2 = f(0.0, 1.0, 0.0);
    let u3 = f(0.0, 1.0, 0.0);
    let uu = |v: &Vec<Option<f64>>, i: usize| v[i].unwrap();
    cols.push(("sample_id", Arc::new(Int64Array::from(sample))));
    cols.push(("device_id", Arc::new(Int64Array::from(device.clone()))));
    cols.push(("ts", ts_array(ts.clone())));
    cols.push((
        "cell_key",
        Arc::new(Int64Array::from(
            (0..n)
                .map(|i| (i % 5 != 0).then_some(i as i64 % 97))
                .collect::<Vec<_>>(),
        )),
    ));
    cols.push((
        "network_type",
        Arc::new(StringArray::from(
            (0..n)
                .map(|i| pick(uu(&u, i), &["LTE", "LTE", "NR", "UMTS", "GSM", "UNKNOWN"]))
                .collect::<Vec<_>>(),
        )),
    ));
    cols.push((
        "manufacturer",
        Arc::new(StringArray::from(
            device
                .iter()
                .map(|d| ["Samsung", "Apple", "Xiaomi", "Fairphone"][*d as usize % 4])
                .collect::<Vec<_>>(),
        )),
    ));
    cols.push((
        "model",
        Arc::new(StringArray::from(
            device
                .iter()
                .map(|d| format!("M{}", d % 7))
                .collect::<Vec<_>>(),
        )),
    ));
    cols.push((
        "os_version",
        Arc::new(StringArray::from(
            device
                .iter()
                .map(|d| format!("{}", 10 + d % 5))
                .collect::<Vec<_>>(),
        )),
    ));
    for name in ["mcc", "mnc", "tac"] {
        cols.push((
            name,
            Arc::new(Int32Array::from(
                (0..n)
                    .map(|i| Some(200 + i as i32 % 50))
                    .collect::<Vec<_>>(),
            )),
        ));
    }
    cols.push((
        "cell_id",
        Arc::new(Int64Array::from(
            (0..n).map(|i| Some(i as i64 % 1000)).collect::<Vec<_>>(),
        )),
    ));
    cols.push((
        "pci",
        Arc::new(Int32Array::from(
            (0..n).map(|i| Some(i as i32 % 504)).collect::<Vec<_>>(),
        )),
    ));
    cols.push((
        "earfcn",
        Arc::new(Int32Array::from(
            (0..n)
                .map(|i| Some(1300 + i as i32 % 3))
                .collect::<Vec<_>>(),
        )),
    ));
    cols.push(("latitude", Arc::new(Float64Array::from(lat))));
    cols.push(("longitude", Arc::new(Float64Array::from(lon))));
    cols.push(("altitude_m", Arc::new(Float64Array::from(alt))));
    cols.push(("accuracy_m", Arc::new(Float64Array::from(acc))));
    cols.push(("speed_mps", Arc::new(Float64Array::from(speed))));
    cols.push((
        "provider",
        Arc::new(StringArray::from(
            (0..n)
                .map(|i| {
                    (uu(&u2, i) < 0.95).then(|| pick(uu(&u2, i), &["gps", "network", "fused"]))
                })
                .collect::<Vec<_>>(),
        )),
    ));
    cols.push((
        "fix_ts",
        ts_array(
            ts.iter()
                .zip(&u3)
                .map(|(t, x)| t.map(|t| t - (x.unwrap() * 30e6) as i64))
                .collect(),
        ),
    ));
    cols.push(("rsrp_dbm", Arc::new(Float64Array::from(rsrp))));
    cols.push(("rsrq_db", Arc::new(Float64Array::from(rsrq))));
    cols.push(("sinr_db", Arc::new(Float64Array::from(sinr))));
    cols.push(("rssi_dbm", Arc::new(Float64Array::from(rssi))));
    cols.push((
        "activity",
        Arc::new(StringArray::from(
            (0..n)
                .map(|i| {
                    (uu(&u3, i) < 0.9).then(|| {
                        pick(
                            uu(&u3, i),
                            &[
                                "STILL",
                                "STILL",
                                "WALKING",
                                "IN_VEHICLE",
                                "ON_FOOT",
                                "RUNNING",
                            ],
                        )
                    })
                })
                .collect::<Vec<_>>(),
        )),
    ));
    cols.push((
        "confidence",
        Arc::new(Int32Array::from(
            (0..n)
                .map(|i| Some((uu(&u, i) * 100.0) as i32))
                .collect::<Vec<_>>(),
        )),
    ));
    cols.push((
        "wifi_connected",
        Arc::new(BooleanArray::from(
            (0..n)
                .map(|i| (i % 11 != 0).then_some(uu(&u2, i) < 0.4))
                .collect::<Vec<_>>(),
        )),
    ));
    cols.push(("wifi_rssi_dbm", Arc::new(Float64Array::from(wifi_rssi))));
    cols.push((
        "visible_wifi_count",
        Arc::new(Int32Array::from(
            (0..n)
                .map(|i| (i % 13 != 0).then_some((uu(&u3, i) * 25.0) as i32))
                .collect::<Vec<_>>(),
        )),
    ));
    cols.push((
        "battery_charging",
        Arc::new(BooleanArray::from(
            (0..n).map(|i| Some(i % 3 == 0)).collect::<Vec<_>>(),
        )),
    ));
    cols.push((
        "screen_on",
        Arc::new(BooleanArray::from(
            (0..n).map(|i| Some(uu(&u, i) > 0.5)).collect::<Vec<_>>(),
        )),
    ));
    cols.push((
        "indoor",
        Arc::new(Int32Array::from(
            (0..n)
                .map(|i| i32::from(uu(&u2, i) < 0.4))
                .collect::<Vec<_>>(),
        )),
    ));
    RecordBatch::try_from_iter(cols).unwrap()
}

fn df_from_batches(batches: Vec<RecordBatch>) -> DataFrame {
    let ctx = SessionContext::new();
    let schema = batches[0].schema();
    let table = datafusion::datasource::MemTable::try_new(schema, vec![batches]).unwrap();
    ctx.read_table(Arc::new(table)).unwrap()
}

#[tokio::test]
async fn default_contract_runs_on_unified_rows_and_round_trips_through_json() {
    let batch = unified_batch(2000, 40, 1);
    let p = FeaturePipeline::default_contract();
    let fitted = p.fit(df_from_batches(vec![batch.clone()])).await.unwrap();
    let names = fitted.feature_names();
    assert!(names.len() > 40, "{names:?}");
    let out = run_sorted(
        fitted
            .transform(df_from_batches(vec![batch.clone()]))
            .unwrap(),
    )
    .await;
    assert_eq!(out.num_rows(), 2000);
    let cols: Vec<String> = out
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(&cols[..4], &["sample_id", "device_id", "ts", "indoor"]);
    assert_eq!(&cols[4..], names.as_slice());
    // Every feature is Float64 and, after imputation, non-null.
    for a in features(&out, &names) {
        assert_eq!(a.data_type(), &DataType::Float64);
        assert_eq!(a.null_count(), 0);
    }
    // Without the label column (inference data) the output has no `indoor`.
    let no_label = batch
        .project(&(0..batch.num_columns() - 1).collect::<Vec<_>>())
        .unwrap();
    let inf = run_sorted(fitted.transform(df_from_batches(vec![no_label])).unwrap()).await;
    assert!(inf.column_by_name("indoor").is_none());
    assert_eq!(inf.num_columns(), 3 + names.len());

    // JSON round trip gives identical state and identical output.
    let json = fitted.to_json().unwrap();
    let back = FittedPipeline::from_json(&json).unwrap();
    assert_eq!(back, fitted);
    let out2 = run_sorted(back.transform(df_from_batches(vec![batch])).unwrap()).await;
    assert_eq!(out, out2);
}

fn shuffled_split(batch: &RecordBatch, seed: u64, parts: usize) -> Vec<RecordBatch> {
    let n = batch.num_rows();
    let mut idx: Vec<u32> = (0..n as u32).collect();
    let mut s = seed | 1;
    for i in (1..n).rev() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        idx.swap(i, (s % (i as u64 + 1)) as usize);
    }
    let shuffled = take_record_batch(batch, &arrow::array::UInt32Array::from(idx)).unwrap();
    let step = n.div_ceil(parts).max(1);
    (0..n)
        .step_by(step)
        .map(|o| shuffled.slice(o, step.min(n - o)))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    /// Fit then transform is deterministic and independent of row order and
    /// partitioning of the input.
    #[test]
    fn fit_transform_is_deterministic(n in 1usize..300, devices in 1i64..12, seed in 0u64..1000, parts in 1usize..4) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let batch = unified_batch(n, devices, seed);
            let p = FeaturePipeline::default_contract();
            let a = p.fit(df_from_batches(vec![batch.clone()])).await.unwrap();
            let b = p.fit(df_from_batches(shuffled_split(&batch, seed + 1, parts))).await.unwrap();
            prop_assert_eq!(&a, &b);
            let out_a = run_sorted(a.transform(df_from_batches(vec![batch.clone()])).unwrap()).await;
            let out_b = run_sorted(b.transform(df_from_batches(shuffled_split(&batch, seed + 2, parts))).unwrap()).await;
            prop_assert_eq!(out_a, out_b);
            Ok(())
        })?;
    }
}

/// Parquet gives strings as Utf8View (and may give dictionaries): the string
/// transforms, which match on the column as it is, give the same output as on
/// Utf8.
#[tokio::test]
async fn string_view_and_dictionary_inputs_match_utf8() {
    use arrow::array::{DictionaryArray, StringViewArray};
    use arrow::datatypes::Int32Type as I32;
    let values = vec![
        Some("NR"),
        Some("LTE"),
        None,
        Some("WIMAX"),
        Some("LTE"),
        Some("GSM"),
    ];
    let frame = |strings: ArrayRef| {
        df_of(vec![
            (
                "sample_id",
                Arc::new(Int64Array::from((1..=6).collect::<Vec<i64>>())) as ArrayRef,
            ),
            ("network_type", strings),
            ("indoor", Arc::new(Int32Array::from(vec![1, 0, 1, 0, 1, 0]))),
        ])
    };
    let filter = pipeline(vec![TransformSpec::CategoricalFilter(
        CategoricalFilterParams {
            column: "network_type".into(),
            allowed: vec!["LTE".into(), "NR".into(), "GSM".into()],
            other: "OTHER".into(),
            output: Some("nt".into()),
        },
    )]);
    let utf8 = || frame(Arc::new(StringArray::from(values.clone())));
    let view: ArrayRef = Arc::new(StringViewArray::from(values.clone()));
    let dict: ArrayRef = Arc::new(values.iter().copied().collect::<DictionaryArray<I32>>());
    let filter = filter.fit(utf8()).await.unwrap();
    let indexer = indexer_pipeline().fit(utf8()).await.unwrap();
    let FittedState::Labels { columns } = &indexer.steps[0].state else {
        panic!("expected labels")
    };
    assert_eq!(columns[0].labels, vec!["LTE", "GSM", "NR", "WIMAX"]);
    let expected = run_sorted(indexer.transform(utf8()).unwrap()).await;
    assert_eq!(
        f64s(&expected, "network_type_idx"),
        vec![
            Some(2.0),
            Some(0.0),
            Some(4.0),
            Some(3.0),
            Some(0.0),
            Some(1.0)
        ]
    );
    for strings in [view, dict] {
        let df = || frame(Arc::clone(&strings));
        let out = run_sorted(filter.transform(df()).unwrap()).await;
        assert_eq!(
            out.column_by_name("nt").unwrap().data_type(),
            &DataType::Utf8
        );
        assert_eq!(
            strs(&out, "nt"),
            ["NR", "LTE", "OTHER", "OTHER", "LTE", "GSM"]
                .map(|v| Some(v.to_string()))
                .to_vec()
        );
        assert_eq!(run_sorted(indexer.transform(df()).unwrap()).await, expected);
    }
}
