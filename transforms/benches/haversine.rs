//! `haversine_m` throughput on one core, against baselines measured in the same
//! run, on 1M rows with 1% nulls per input column.
//!
//! ```text
//! cargo bench --workspace --bench haversine
//! ```
//!
//! Two criterion groups:
//! * `haversine_m-kernel-1M`: the array kernel, against a naive row-at-a-time
//!   loop (per-row `Option` checks, textbook formula, builder appends) and a
//!   plain Rust loop that only adds the four inputs (the memory-bound floor);
//! * `haversine_m-datafusion-1M-1part`: the registered UDF in a DataFusion
//!   projection over an in-memory table (one partition, 8192-row batches),
//!   against the plain arithmetic expression `lat1 + lon1 + lat2 + lon2` and a
//!   bare projection of one column over the same table.
//!
//! After criterion, a summary times every variant again (median of
//! `SLUICE_BENCH_REPS`, default 11, runs) and prints M rows/s and the ratio
//! against its group's first baseline, so one run gives the numbers recorded
//! in `docs/PERFORMANCE.md`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, Float64Array, Float64Builder, RecordBatch};
use arrow::buffer::NullBuffer;
use criterion::{Criterion, Throughput};
use datafusion::datasource::MemTable;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::{execute_stream, ExecutionPlan};
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::StreamExt;
use rand::{Rng, SeedableRng};
use sluice_transforms::functions::haversine::{haversine_m_kernel, EARTH_RADIUS_M};
use sluice_transforms::register_all;

const ROWS: usize = 1_000_000;
const BATCH: usize = 8192;

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

/// The memory-bound floor: the same four inputs and null union, one addition
/// per row.
fn add4(a: &Float64Array, b: &Float64Array, c: &Float64Array, d: &Float64Array) -> Float64Array {
    let values: Vec<f64> = a
        .values()
        .iter()
        .zip(b.values().iter())
        .zip(c.values().iter())
        .zip(d.values().iter())
        .map(|(((w, x), y), z)| w + x + y + z)
        .collect();
    let nulls = NullBuffer::union(
        NullBuffer::union(a.nulls(), b.nulls()).as_ref(),
        NullBuffer::union(c.nulls(), d.nulls()).as_ref(),
    );
    Float64Array::new(values.into(), nulls)
}

/// An array kernel over `(lat1, lon1, lat2, lon2)`.
type Kernel = fn(&Float64Array, &Float64Array, &Float64Array, &Float64Array) -> Float64Array;

/// A benchmarked query: its name and physical plan.
type NamedPlan = (&'static str, Arc<dyn ExecutionPlan>);

struct Inputs {
    lat1: Float64Array,
    lon1: Float64Array,
    lat2: Float64Array,
    lon2: Float64Array,
}

fn inputs() -> Inputs {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    Inputs {
        lat1: column(&mut rng, 52.5, 0.5),
        lon1: column(&mut rng, 13.4, 0.5),
        lat2: column(&mut rng, 52.5, 0.5),
        lon2: column(&mut rng, 13.4, 0.5),
    }
}

/// One-partition DataFusion plans over the inputs as an in-memory table:
/// `(name, physical plan)`, the UDF first.
fn datafusion_plans(
    rt: &tokio::runtime::Runtime,
    inp: &Inputs,
) -> (Arc<TaskContext>, Vec<NamedPlan>) {
    let batch = RecordBatch::try_from_iter(vec![
        ("lat1", Arc::new(inp.lat1.clone()) as _),
        ("lon1", Arc::new(inp.lon1.clone()) as _),
        ("lat2", Arc::new(inp.lat2.clone()) as _),
        ("lon2", Arc::new(inp.lon2.clone()) as _),
    ])
    .expect("equal-length columns");
    let batches: Vec<RecordBatch> = (0..ROWS)
        .step_by(BATCH)
        .map(|o| batch.slice(o, BATCH.min(ROWS - o)))
        .collect();
    let table = MemTable::try_new(batch.schema(), vec![batches]).expect("memtable");
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1));
    register_all(&ctx);
    ctx.register_table("t", Arc::new(table)).expect("register");
    let queries = [
        (
            "udf haversine_m",
            "SELECT haversine_m(lat1, lon1, lat2, lon2) AS d FROM t",
        ),
        (
            "expr lat1+lon1+lat2+lon2 (baseline)",
            "SELECT lat1 + lon1 + lat2 + lon2 AS d FROM t",
        ),
        ("projection lat1", "SELECT lat1 AS d FROM t"),
    ];
    let plans = queries
        .iter()
        .map(|(name, sql)| {
            let plan = rt.block_on(async {
                ctx.sql(sql)
                    .await
                    .expect("valid SQL")
                    .create_physical_plan()
                    .await
                    .expect("physical plan")
            });
            (*name, plan)
        })
        .collect();
    (ctx.task_ctx(), plans)
}

fn run_plan(
    rt: &tokio::runtime::Runtime,
    plan: &Arc<dyn ExecutionPlan>,
    task: &Arc<TaskContext>,
) -> usize {
    rt.block_on(async {
        let mut stream = execute_stream(Arc::clone(plan), Arc::clone(task)).expect("execute");
        let mut rows = 0;
        while let Some(b) = stream.next().await {
            rows += black_box(b.expect("batch")).num_rows();
        }
        rows
    })
}

fn median_secs(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[reps / 2]
}

fn main() {
    let inp = inputs();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (task, plans) = datafusion_plans(&rt, &inp);
    let Inputs {
        lat1,
        lon1,
        lat2,
        lon2,
    } = &inp;
    let kernels: [(&str, Kernel); 3] = [
        ("kernel haversine_m", haversine_m_kernel),
        ("naive row loop", naive),
        ("loop lat1+lon1+lat2+lon2 (baseline)", add4),
    ];

    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group("haversine_m-kernel-1M");
    group.throughput(Throughput::Elements(ROWS as u64));
    for (name, f) in kernels {
        group.bench_function(name, |b| b.iter(|| black_box(f(lat1, lon1, lat2, lon2))));
    }
    group.finish();
    let mut group = c.benchmark_group("haversine_m-datafusion-1M-1part");
    group.throughput(Throughput::Elements(ROWS as u64));
    for (name, plan) in &plans {
        group.bench_function(*name, |b| b.iter(|| run_plan(&rt, plan, &task)));
    }
    group.finish();
    c.final_summary();

    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let reps: usize = std::env::var("SLUICE_BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(11)
        .max(1);
    println!("\nhaversine_m-1M summary (one core, median of {reps} runs)");
    let report = |name: &str, secs: f64, base: f64| {
        println!(
            "  {name:40} {:8.2} ms  {:8.1} M rows/s  ratio vs baseline {:6.3}",
            secs * 1e3,
            ROWS as f64 / secs / 1e6,
            base / secs
        );
    };
    let kernel_times: Vec<f64> = kernels
        .iter()
        .map(|(_, f)| {
            median_secs(reps, || {
                black_box(f(lat1, lon1, lat2, lon2));
            })
        })
        .collect();
    for ((name, _), s) in kernels.iter().zip(&kernel_times) {
        report(name, *s, kernel_times[2]);
    }
    let df_times: Vec<f64> = plans
        .iter()
        .map(|(_, plan)| {
            median_secs(reps, || {
                assert_eq!(run_plan(&rt, plan, &task), ROWS);
            })
        })
        .collect();
    for ((name, _), s) in plans.iter().zip(&df_times) {
        report(name, *s, df_times[1]);
    }
    println!(
        "  udf / kernel time: {:.3} (DataFusion overhead around the kernel)",
        df_times[0] / kernel_times[0]
    );
}
