//! Criterion benches of the hot loops, each against a baseline measured in the same run.
//!
//! `cargo bench -p sluice-ml -p sluice-unify --bench ml` (set `ML_BENCH_ROWS` to change the row count).

// `criterion_group!` defines an undocumented `pub fn benches`.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sluice_ml::*;

fn rows() -> usize {
    std::env::var("ML_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(544_500)
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

criterion_group!(benches, bench);
criterion_main!(benches);
