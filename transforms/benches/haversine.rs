//! Criterion bench of the `haversine_m` kernel against a naive scalar
//! baseline (per-row `Option` matching and a builder), on 1M rows with 1% nulls.
//!
//! `cargo bench -p sluice-transforms --bench haversine`

use std::hint::black_box;

use arrow::array::{Array, Float64Array, Float64Builder};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use sluice_transforms::functions::haversine::{haversine_m_kernel, EARTH_RADIUS_M};

const ROWS: usize = 1_000_000;

fn column(rng: &mut rand::rngs::StdRng, base: f64, spread: f64) -> Float64Array {
    (0..ROWS)
        .map(|_| {
            if rng.random_bool(0.01) {
                None
            } else {
                Some(base + rng.random_range(-spread..spread))
            }
        })
        .collect()
}

/// The obvious row-at-a-time implementation: option checks, textbook formula,
/// builder appends.
fn naive(a: &Float64Array, b: &Float64Array, c: &Float64Array, d: &Float64Array) -> Float64Array {
    let mut out = Float64Builder::with_capacity(a.len());
    for i in 0..a.len() {
        if a.is_null(i) || b.is_null(i) || c.is_null(i) || d.is_null(i) {
            out.append_null();
            continue;
        }
        let (lat1, lon1, lat2, lon2) = (a.value(i), b.value(i), c.value(i), d.value(i));
        let dlat = (lat2 - lat1).to_radians();
        let dlon = (lon2 - lon1).to_radians();
        let h = (dlat / 2.0).sin().powi(2)
            + lat1.to_radians().cos() * lat2.to_radians().cos() * (dlon / 2.0).sin().powi(2);
        out.append_value(2.0 * EARTH_RADIUS_M * h.sqrt().atan2((1.0 - h).sqrt()));
    }
    out.finish()
}

fn bench(c: &mut Criterion) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let lat1 = column(&mut rng, 52.5, 0.5);
    let lon1 = column(&mut rng, 13.4, 0.5);
    let lat2 = column(&mut rng, 52.5, 0.5);
    let lon2 = column(&mut rng, 13.4, 0.5);
    let mut group = c.benchmark_group("haversine_m-1M");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.bench_function("kernel", |bch| {
        bch.iter(|| black_box(haversine_m_kernel(&lat1, &lon1, &lat2, &lon2)))
    });
    group.bench_function("naive-baseline", |bch| {
        bch.iter(|| black_box(naive(&lat1, &lon1, &lat2, &lon2)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
