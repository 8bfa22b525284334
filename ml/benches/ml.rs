//! Criterion benches of the hot loops, each against a baseline measured in the same run.
//!
//! `cargo bench --workspace --bench ml` (set `ML_BENCH_ROWS` to change the row count).
//!
//! `cargo bench --workspace --bench ml -- shap` runs only the TreeSHAP cases
//! (`SHAP_BENCH_ROWS` explained rows, default 20000; `SHAP_BENCH_TRAIN` training rows, default
//! 100000) and prints a summary of predict vs explain rows/s with their ratios.

// `criterion_group!` defines an undocumented `pub fn benches`.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sluice_ml::shap::TreeExplainer;
use sluice_ml::*;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rows() -> usize {
    env_or("ML_BENCH_ROWS", 544_500)
}

/// Whether a bench id passes the command-line filters (plain substrings).
fn selected(id: &str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    filters.is_empty() || filters.iter().any(|f| id.contains(f.as_str()))
}

/// Baseline: row-major scatter into one flat histogram (no ordered gradients, no per-feature blocking).
fn naive_histogram(b: &BinnedMatrix, rows: &[u32], grad: &[f32], hess: &[f32]) -> Vec<BinStats> {
    let mut offs = vec![0usize];
    for &nb in b.n_bins() {
        offs.push(offs.last().copied().unwrap_or(0) + nb as usize);
    }
    let mut h = vec![BinStats::default(); *offs.last().unwrap_or(&0)];
    for &r in rows {
        for j in 0..b.n_features() {
            let s = &mut h[offs[j] + b.column(j)[r as usize] as usize];
            s.grad += grad[r as usize] as f64;
            s.hess += hess[r as usize] as f64;
            s.count += 1.0;
        }
    }
    h
}

fn bench(c: &mut Criterion) {
    if only_shap() {
        return;
    }
    let n = rows();
    let (x, y) = synthetic::generate(n, 1);
    let edges = BinEdges::fit(&x, 255, 200_000).unwrap();
    let binned = edges.transform(&x).unwrap();
    let grad: Vec<f32> = y.iter().map(|&v| 0.4 - v as f32).collect();
    let hess = vec![0.24f32; n];
    let all: Vec<u32> = (0..n as u32).collect();
    let half: Vec<u32> = (0..n as u32).filter(|r| r % 2 == 0).collect();
    let feats: Vec<usize> = (0..x.n_features()).collect();
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();

    let mut g = c.benchmark_group(format!("hist-40feats-{n}-1thread"));
    g.throughput(Throughput::Elements(n as u64 * x.n_features() as u64));
    g.sample_size(10);
    let src = LocalHistogramSource::new(&binned);
    for (name, rows) in [("all-rows", &all), ("half-rows", &half)] {
        g.bench_with_input(BenchmarkId::new("sluice", name), rows, |bch, rows| {
            bch.iter(|| {
                one.install(|| {
                    src.build(&[NodeRequest {
                        rows,
                        features: &feats,
                        targets: Targets::GradHess {
                            grad: &grad,
                            hess: &hess,
                        },
                    }])
                    .unwrap()
                })
            })
        });
        g.bench_with_input(
            BenchmarkId::new("naive-row-major", name),
            rows,
            |bch, rows| bch.iter(|| naive_histogram(&binned, rows, &grad, &hess)),
        );
    }
    g.finish();

    let model = train(&ModelSpec::Gbt(GbtParams::default()), &x, &y).unwrap();
    let cols = x.column_slices();
    let mut g = c.benchmark_group(format!("predict-20trees-depth5-{n}-1thread"));
    g.throughput(Throughput::Elements(n as u64));
    g.sample_size(10);
    g.bench_function("sluice-blocked", |bch| {
        bch.iter(|| one.install(|| model.predict_columns(&cols, n).unwrap()))
    });
    g.bench_function("row-at-a-time", |bch| {
        bch.iter(|| {
            (0..n)
                .map(|r| {
                    model
                        .trees()
                        .iter()
                        .map(|t| t.predict_row(&cols, r))
                        .sum::<f64>()
                })
                .collect::<Vec<f64>>()
        })
    });
    g.finish();
}

/// Whether the filters select only the TreeSHAP cases (skips the other setup).
fn only_shap() -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    !filters.is_empty() && filters.iter().all(|f| f.contains("shap"))
}

/// The synthetic dataset plus 10 derived columns: 50 features.
fn fifty_features(n: usize) -> (FeatureMatrix, Vec<u8>) {
    let (x, y) = synthetic::generate(n, 7);
    let mut names = x.names().to_vec();
    let mut cols: Vec<Vec<f64>> = (0..x.n_features()).map(|j| x.column(j).to_vec()).collect();
    for i in 0..10 {
        names.push(format!("derived_{i}"));
        let (a, b) = (x.column(i), x.column(12 + i));
        cols.push(a.iter().zip(b).map(|(a, b)| a * (1.0 + b.abs())).collect());
    }
    (FeatureMatrix::new(names, cols).unwrap(), y)
}

/// What the explain UDF does per batch: the top 3 contributions of each row.
fn explain_top3(e: &TreeExplainer, cols: &[&[f64]], n: usize) -> usize {
    e.top_k(cols, n, 3).unwrap().entries.len()
}

/// What the explain UDF did before leaf tables: all contributions (here with
/// the path algorithm), then the top 3 of each row.
fn explain_top3_all(e: &TreeExplainer, cols: &[&[f64]], n: usize) -> usize {
    let ex = e.shap_values(cols, n).unwrap();
    (0..n).map(|r| ex.top_k(r, 3).len()).sum()
}

/// Rows per second of `f` over `n` rows: the best of runs filling about a second.
fn rows_per_sec(n: usize, mut f: impl FnMut()) -> f64 {
    let mut best = Duration::MAX;
    let started = Instant::now();
    let mut runs = 0;
    while runs < 3 || (started.elapsed() < Duration::from_secs(1) && runs < 50) {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed());
        runs += 1;
    }
    n as f64 / best.as_secs_f64()
}

/// TreeSHAP with the default [`TreeExplainer`] (tables within the budget)
/// and with path extension only (the algorithm before tables) against
/// prediction, one thread, the same rows (fewer for the slow explainers).
fn shap(c: &mut Criterion) {
    if !selected("shap-") {
        return;
    }
    let n = env_or("SHAP_BENCH_ROWS", 20_000);
    let n_train = env_or("SHAP_BENCH_TRAIN", 100_000).max(n);
    let (x, y) = fifty_features(n_train);
    let cols: Vec<&[f64]> = x.column_slices().into_iter().map(|c| &c[..n]).collect();
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let cases = [
        (
            "gbt-25trees-depth5",
            ModelSpec::Gbt(GbtParams {
                max_iter: 25,
                max_depth: 5,
                ..GbtParams::default()
            }),
            // Rows explained per iteration: with tables, with the path algorithm.
            (n, n / 10),
        ),
        (
            "forest-30trees-depth10",
            ModelSpec::RandomForest(RfParams {
                num_trees: 30,
                max_depth: 10,
                ..RfParams::default()
            }),
            // Beyond the table budget, most of the forest uses the path algorithm.
            (n / 100, n / 100),
        ),
    ];
    let mut summary = Vec::new();
    for (name, spec, (n_tables, n_path)) in cases {
        let id = format!("shap-{name}-50feats-{n}-1thread");
        if !selected(&id) {
            continue;
        }
        let model = train(&spec, &x, &y).unwrap();
        let t = Instant::now();
        let tables = TreeExplainer::new(&model).unwrap();
        let build = t.elapsed();
        let path = TreeExplainer::with_budget(&model, 0).unwrap();
        let (n_tables, n_path) = (n_tables.clamp(1, n), n_path.clamp(1, n));
        let cols_tables: Vec<&[f64]> = cols.iter().map(|c| &c[..n_tables]).collect();
        let cols_path: Vec<&[f64]> = cols.iter().map(|c| &c[..n_path]).collect();
        let mut g = c.benchmark_group(&id);
        g.sample_size(10);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function("predict", |b| {
            b.iter(|| one.install(|| model.predict_columns(&cols, n).unwrap()))
        });
        g.throughput(Throughput::Elements(n_tables as u64));
        g.bench_function("explain-top3-tables", |b| {
            b.iter(|| one.install(|| explain_top3(&tables, &cols_tables, n_tables)))
        });
        g.throughput(Throughput::Elements(n_path as u64));
        g.bench_function("explain-top3-path", |b| {
            b.iter(|| one.install(|| explain_top3_all(&path, &cols_path, n_path)))
        });
        g.finish();
        let predict = rows_per_sec(n, || {
            one.install(|| model.predict_columns(&cols, n).unwrap());
        });
        let fast = rows_per_sec(n_tables, || {
            one.install(|| explain_top3(&tables, &cols_tables, n_tables));
        });
        let slow = rows_per_sec(n_path, || {
            one.install(|| explain_top3_all(&path, &cols_path, n_path));
        });
        summary.push(format!(
            "{name}: of {} trees, {} on group tables, {} on leaf tables, {} on the path \
             algorithm ({} table entries, built in {:.1} ms)\n  \
             predict {predict:.0} rows/s | explain top-3: tables {fast:.0} rows/s, \
             path {slow:.0} rows/s\n  \
             explain/predict time: tables {:.1}x, path {:.1}x | tables speed-up over path {:.1}x",
            model.trees().len(),
            tables.table_trees().1,
            tables.table_trees().0,
            tables.path_trees(),
            tables.table_entries(),
            build.as_secs_f64() * 1e3,
            predict / fast,
            predict / slow,
            fast / slow,
        ));
    }
    if !summary.is_empty() {
        println!("\nTreeSHAP summary (1 thread; rows/s over up to {n} rows):");
        for s in summary {
            println!("{s}");
        }
    }
}

criterion_group!(benches, shap, bench);
criterion_main!(benches);
