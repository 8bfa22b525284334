//! Benchmark and comparison driver (run by `bench/ml/compare.py`).
//!
//! Generates the synthetic dataset, writes it as Arrow IPC files for the
//! Python side (identical `f64` data), times our GBT fit, forest fit and
//! prediction, optionally the thesis grid with 10-fold CV, and prints one JSON
//! object per measurement on stdout.
//!
//! ```text
//! cargo build --release --workspace --all-targets && $CARGO_TARGET_DIR/release/examples/ml_bench --rows 544500 --threads 2 --out /tmp/mlbench [--grid] [--skip-fit]
//! ```
//!
//! With `--pipeline-features <file.arrow>` (the pipeline's features output in
//! `sample_id` order: the feature columns, `indoor` and `device_id`, written
//! by `bench/ml/compare.py --pipeline-rows`), it instead splits the rows by
//! device as the pipeline's train step does (`--test-fraction`,
//! `--split-seed`), writes `pipeline_train.arrow` / `pipeline_test.arrow`
//! for the Python side and fits the pipeline's random forest (20 trees,
//! depth 5) with each of `--rf-seeds` (default `42,1,2,3,4`; 42 is the
//! pipeline's); `--rf-params '{"maxBins": 64}'` overrides parameters.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, Float64Array, UInt8Array};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use serde_json::json;
use sluice_ml::*;

struct Args {
    rows: usize,
    test_rows: usize,
    threads: usize,
    out: Option<PathBuf>,
    grid: bool,
    skip_fit: bool,
    folds: usize,
    pipeline_features: Option<PathBuf>,
    test_fraction: f64,
    split_seed: u64,
    rf_seeds: Vec<u64>,
    rf_params: serde_json::Value,
}

fn parse() -> Args {
    let mut a = Args {
        rows: 544_500,
        test_rows: 100_000,
        threads: 2,
        out: None,
        grid: false,
        skip_fit: false,
        folds: 10,
        pipeline_features: None,
        test_fraction: 0.2,
        split_seed: 42,
        rf_seeds: vec![42, 1, 2, 3, 4],
        rf_params: json!({}),
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < v.len() {
        let next = |i: usize| {
            v.get(i + 1)
                .cloned()
                .unwrap_or_else(|| panic!("{} needs a value", v[i]))
        };
        match v[i].as_str() {
            "--rows" => {
                a.rows = next(i).parse().expect("--rows");
                i += 1;
            }
            "--test-rows" => {
                a.test_rows = next(i).parse().expect("--test-rows");
                i += 1;
            }
            "--threads" => {
                a.threads = next(i).parse().expect("--threads");
                i += 1;
            }
            "--folds" => {
                a.folds = next(i).parse().expect("--folds");
                i += 1;
            }
            "--out" => {
                a.out = Some(PathBuf::from(next(i)));
                i += 1;
            }
            "--pipeline-features" => {
                a.pipeline_features = Some(PathBuf::from(next(i)));
                i += 1;
            }
            "--test-fraction" => {
                a.test_fraction = next(i).parse().expect("--test-fraction");
                i += 1;
            }
            "--split-seed" => {
                a.split_seed = next(i).parse().expect("--split-seed");
                i += 1;
            }
            "--rf-seeds" => {
                a.rf_seeds = next(i)
                    .split(',')
                    .map(|v| v.trim().parse().expect("--rf-seeds"))
                    .collect();
                i += 1;
            }
            "--rf-params" => {
                a.rf_params = serde_json::from_str(&next(i)).expect("--rf-params: a JSON object");
                i += 1;
            }
            "--grid" => a.grid = true,
            "--skip-fit" => a.skip_fit = true,
            other => panic!("unknown argument {other}"),
        }
        i += 1;
    }
    a
}

fn write_ipc(path: &std::path::Path, x: &FeatureMatrix, y: &[u8]) {
    let mut fields: Vec<Field> = x
        .names()
        .iter()
        .map(|n| Field::new(n, DataType::Float64, true))
        .collect();
    fields.push(Field::new("label", DataType::UInt8, false));
    let schema = Arc::new(Schema::new(fields));
    let mut cols: Vec<ArrayRef> = (0..x.n_features())
        .map(|j| {
            Arc::new(Float64Array::from(
                x.column(j)
                    .iter()
                    .map(|&v| (!v.is_nan()).then_some(v))
                    .collect::<Vec<_>>(),
            )) as ArrayRef
        })
        .collect();
    cols.push(Arc::new(UInt8Array::from(y.to_vec())));
    let batch = RecordBatch::try_new(schema.clone(), cols).expect("batch");
    let f = std::fs::File::create(path).expect("create ipc file");
    let mut w = arrow::ipc::writer::FileWriter::try_new(f, &schema).expect("ipc writer");
    w.write(&batch).expect("write");
    w.finish().expect("finish");
}

fn best_of<T>(n: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut best = f64::INFINITY;
    let mut out = None;
    for _ in 0..n {
        let t = Instant::now();
        let r = f();
        best = best.min(t.elapsed().as_secs_f64());
        out = Some(r);
    }
    (best, out.expect("at least one run"))
}

/// The pipeline comparison: device split, IPC files, one forest per seed.
fn pipeline_forest(a: &Args, path: &std::path::Path, pool: &rayon::ThreadPool) {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Int64Type, UInt8Type};
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reader = arrow::ipc::reader::FileReader::try_new(f, None).expect("ipc reader");
    let schema = reader.schema();
    let batches: Vec<RecordBatch> = reader.map(|b| b.expect("ipc batch")).collect();
    let names: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|n| n != "indoor" && n != "device_id")
        .collect();
    let x = FeatureMatrix::from_batches(&batches, &names).expect("feature columns");
    let mut y = Vec::with_capacity(x.n_rows());
    let mut device = Vec::with_capacity(x.n_rows());
    for b in &batches {
        let label = b.column_by_name("indoor").expect("`indoor` column");
        let label = label
            .as_primitive_opt::<UInt8Type>()
            .expect("`indoor` as uint8");
        assert_eq!(label.null_count(), 0, "null labels");
        y.extend(label.values().iter().copied());
        let d = b.column_by_name("device_id").expect("`device_id` column");
        device.extend(d.as_primitive::<Int64Type>().values().iter().copied());
    }
    let (train_idx, test_idx): (Vec<usize>, Vec<usize>) = (0..x.n_rows())
        .partition(|&i| !sampling::holds_out_key(device[i], a.test_fraction, a.split_seed));
    let pick = |idx: &[usize]| idx.iter().map(|&i| y[i]).collect::<Vec<u8>>();
    let (xtr, ytr) = (x.select_rows(&train_idx), pick(&train_idx));
    let (xte, yte) = (x.select_rows(&test_idx), pick(&test_idx));
    if let Some(dir) = &a.out {
        std::fs::create_dir_all(dir).expect("out dir");
        write_ipc(&dir.join("pipeline_train.arrow"), &xtr, &ytr);
        write_ipc(&dir.join("pipeline_test.arrow"), &xte, &yte);
    }
    println!(
        "{}",
        json!({"event": "pipeline_data", "train_rows": xtr.n_rows(), "test_rows": xte.n_rows(), "features": x.n_features()})
    );
    for &seed in &a.rf_seeds {
        let mut p = json!({"type": "random_forest", "seed": seed});
        if let (Some(o), Some(extra)) = (p.as_object_mut(), a.rf_params.as_object()) {
            o.extend(extra.clone());
        }
        let rf: ModelSpec = serde_json::from_value(p).expect("--rf-params: random forest params");
        let (secs, model) = pool.install(|| best_of(1, || train(&rf, &xtr, &ytr).expect("rf")));
        let m = evaluate(&yte, &model.predict_proba(&xte).expect("predict"), 0.5);
        println!(
            "{}",
            json!({"event": "pipeline_rf", "seed": seed, "params": a.rf_params, "seconds": secs, "accuracy": m.accuracy, "auc": m.auc})
        );
    }
}

fn main() {
    let a = parse();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(a.threads)
        .build()
        .expect("pool");
    if let Some(path) = &a.pipeline_features {
        pipeline_forest(&a, path, &pool);
        return;
    }
    let t = Instant::now();
    let (x, y) = synthetic::generate(a.rows, 1);
    let (xt, yt) = synthetic::generate(a.test_rows, 2);
    eprintln!(
        "generated {} + {} rows in {:.1}s",
        a.rows,
        a.test_rows,
        t.elapsed().as_secs_f64()
    );
    if let Some(dir) = &a.out {
        std::fs::create_dir_all(dir).expect("out dir");
        write_ipc(&dir.join("train.arrow"), &x, &y);
        write_ipc(&dir.join("test.arrow"), &xt, &yt);
        println!(
            "{}",
            json!({"event": "data", "train": dir.join("train.arrow"), "test": dir.join("test.arrow"), "rows": a.rows, "features": x.n_features()})
        );
    }
    if !a.skip_fit {
        let gbt = ModelSpec::Gbt(GbtParams::default());
        let (secs, model) = pool.install(|| best_of(3, || train(&gbt, &x, &y).expect("gbt")));
        let m = evaluate(&yt, &model.predict_proba(&xt).expect("predict"), 0.5);
        println!(
            "{}",
            json!({"event": "gbt_fit", "rows": a.rows, "threads": a.threads, "trees": 20, "depth": 5, "seconds": secs, "auc": m.auc, "accuracy": m.accuracy, "log_loss": m.log_loss})
        );

        // Prediction throughput on one core (20 trees, depth 5).
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("pool");
        let (psecs, _) = one.install(|| best_of(5, || model.predict_proba(&x).expect("predict")));
        // Baseline in the same run: row-at-a-time traversal without blocking/vectorization.
        let cols = x.column_slices();
        let (bsecs, _) = best_of(3, || {
            (0..x.n_rows())
                .map(|r| {
                    model
                        .trees()
                        .iter()
                        .map(|t| t.predict_row(&cols, r))
                        .sum::<f64>()
                })
                .sum::<f64>()
        });
        println!(
            "{}",
            json!({"event": "predict", "rows": a.rows, "threads": 1, "seconds": psecs, "rows_per_sec": a.rows as f64 / psecs, "baseline_row_at_a_time_rows_per_sec": a.rows as f64 / bsecs})
        );

        let rf = ModelSpec::RandomForest(RfParams {
            num_trees: 50,
            max_depth: 10,
            ..Default::default()
        });
        let (rsecs, rmodel) = pool.install(|| best_of(1, || train(&rf, &x, &y).expect("rf")));
        let m = evaluate(&yt, &rmodel.predict_proba(&xt).expect("predict"), 0.5);
        println!(
            "{}",
            json!({"event": "rf_fit", "rows": a.rows, "threads": a.threads, "trees": 50, "depth": 10, "seconds": rsecs, "auc": m.auc, "accuracy": m.accuracy})
        );
    }
    if a.grid {
        let g = |pairs: Vec<(&str, Vec<serde_json::Value>)>| {
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect::<BTreeMap<_, _>>()
        };
        let gbt_grid = g(vec![
            ("maxDepth", vec![json!(1), json!(3), json!(5)]),
            ("stepSize", vec![json!(0.05), json!(0.1), json!(0.2)]),
            ("minInstancesPerNode", vec![json!(1), json!(2), json!(3)]),
        ]);
        let rf_grid = g(vec![
            ("maxDepth", vec![json!(1), json!(3), json!(5)]),
            ("numTrees", vec![json!(15), json!(20), json!(25)]),
            ("minInstancesPerNode", vec![json!(1), json!(2), json!(3)]),
            ("bootstrap", vec![json!(true), json!(false)]),
            ("impurity", vec![json!("gini"), json!("entropy")]),
        ]);
        let mut total = 0.0;
        for (name, base, grid) in [
            ("gbt", ModelSpec::Gbt(GbtParams::default()), gbt_grid),
            (
                "random_forest",
                ModelSpec::RandomForest(RfParams::default()),
                rf_grid,
            ),
        ] {
            let cfg = GridSearchConfig {
                folds: a.folds,
                metric: Metric::Auc,
                seed: 7,
                grid,
                parallelism: Some(a.threads),
            };
            let t = Instant::now();
            let r = grid_search(&base, &cfg, &x, &y).expect("grid");
            let secs = t.elapsed().as_secs_f64();
            total += secs;
            let best = &r.points[r.best_index];
            println!(
                "{}",
                json!({"event": "grid", "model": name, "rows": a.rows, "folds": a.folds, "threads": a.threads, "points": r.points.len(), "seconds": secs, "best": best.params, "best_cv_auc": best.mean_score})
            );
        }
        println!("{}", json!({"event": "grid_total", "seconds": total}));
    }
}
