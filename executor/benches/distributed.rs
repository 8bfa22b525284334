//! Distributed execution benchmark (`bench/distributed/run.sh`): the same
//! plans on the embedded engine (1 and 2 partitions) and on local Ballista
//! clusters of 1 and 2 executors (one task slot each), in the same run.
//!
//! * `features-<rows>`: window (lag/lead per device), join, `haversine_m`,
//!   Parquet in → Parquet out (the shape of the feature/inference plans);
//! * `hist-level-<rows>-<feats>f`: one tree level of distributed histogram
//!   training (`sluice_histogram ... GROUP BY node` over a binned table).
//!
//! Env: `SLUICE_BENCH_ROWS` (default 2,000,000), `SLUICE_BENCH_REPS` (3),
//! `SLUICE_BENCH_BASE_PORT` (22050), `SLUICE_BENCH_PARTITIONS` (4: the
//! Ballista runs' `target_partitions`, i.e. shuffle partitions per stage).
//! Prints a Markdown table (median seconds).

use std::time::Instant;

use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use sluice_cluster::local::{ClusterOptions, LocalCluster};
use sluice_core::session::{connect, EngineMode, EngineSettings};
use sluice_lake::lake::Lake;

const FEATURES: usize = 16;

fn env_usize(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

async fn write_lake(lake: &Lake, rows: usize) {
    let ctx = connect(&EngineSettings::default(), Some(lake))
        .await
        .unwrap();
    let devices = (rows / 2000).max(1);
    let mut feats = String::new();
    for j in 0..FEATURES {
        feats.push_str(&format!(
            ", CAST((value * {}) % 251 AS TINYINT UNSIGNED) AS b{j}",
            7 + 2 * j
        ));
    }
    let df = ctx
        .sql(&format!(
            "SELECT value AS id, value % {devices} AS dev, \
                    52.0 + (value % 1000) * 0.0001 AS lat, 13.0 + ((value * 7) % 1000) * 0.0001 AS lon, \
                    value * 1000 AS ts, \
                    CAST(value % 2 AS DOUBLE) - 0.5 AS grad, 0.25 AS hess, \
                    CAST(value % 8 AS INT) AS node {feats} \
             FROM generate_series(1, {rows})"
        ))
        .await
        .unwrap()
        .repartition(datafusion::logical_expr::Partitioning::RoundRobinBatch(8))
        .unwrap();
    df.write_parquet(
        &lake.table_url("raw/points/"),
        DataFrameWriteOptions::new(),
        None,
    )
    .await
    .unwrap();
    let df = ctx
        .sql(&format!(
            "SELECT value AS dev, concat('model-', CAST(value % 17 AS VARCHAR)) AS model FROM generate_series(0, {})",
            devices - 1
        ))
        .await
        .unwrap();
    df.write_parquet(
        &lake.table_url("raw/devices/"),
        DataFrameWriteOptions::new(),
        None,
    )
    .await
    .unwrap();
}

const FEATURES_SQL: &str = "\
    WITH p AS ( \
      SELECT id, dev, lat, lon, \
             lag(lat) OVER (PARTITION BY dev ORDER BY ts) AS plat, lag(lon) OVER (PARTITION BY dev ORDER BY ts) AS plon, \
             lead(lat) OVER (PARTITION BY dev ORDER BY ts) AS nlat, lead(lon) OVER (PARTITION BY dev ORDER BY ts) AS nlon \
      FROM points) \
    SELECT p.id, p.dev, d.model, haversine_m(p.plat, p.plon, p.lat, p.lon) AS dist_prev, \
           haversine_m(p.lat, p.lon, p.nlat, p.nlon) AS dist_next \
    FROM p JOIN devices d ON p.dev = d.dev";

fn hist_sql() -> String {
    let bins: Vec<String> = (0..FEATURES).map(|j| format!("b{j}")).collect();
    format!(
        "SELECT node, sluice_histogram(grad, hess, {}) AS h FROM points GROUP BY node",
        bins.join(", ")
    )
}

async fn time_it(
    ctx: &SessionContext,
    lake: &Lake,
    sql: &str,
    out: Option<&str>,
    reps: usize,
) -> f64 {
    let mut t = Vec::new();
    for r in 0..reps {
        let start = Instant::now();
        let df = ctx.sql(sql).await.unwrap();
        match out {
            Some(o) => {
                let dir = format!("{o}{r}/");
                df.write_parquet(&lake.table_url(&dir), DataFrameWriteOptions::new(), None)
                    .await
                    .unwrap();
            }
            None => {
                df.collect().await.unwrap();
            }
        }
        t.push(start.elapsed().as_secs_f64());
    }
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

async fn measure(ctx: &SessionContext, lake: &Lake, tag: &str, reps: usize) -> (f64, f64) {
    for (name, path) in [("points", "raw/points/"), ("devices", "raw/devices/")] {
        ctx.register_parquet(name, &lake.table_url(path), ParquetReadOptions::default())
            .await
            .unwrap();
    }
    let f = time_it(
        ctx,
        lake,
        FEATURES_SQL,
        Some(&format!("out/{tag}/features-")),
        reps,
    )
    .await;
    let h = time_it(ctx, lake, &hist_sql(), None, reps).await;
    (f, h)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let rows = env_usize("SLUICE_BENCH_ROWS", 2_000_000);
        let reps = env_usize("SLUICE_BENCH_REPS", 3);
        let base = env_usize("SLUICE_BENCH_BASE_PORT", 22050) as u16;
        let ballista_partitions = env_usize("SLUICE_BENCH_PARTITIONS", 4);
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().join("lake").to_str().unwrap()).unwrap();
        eprintln!("writing {rows} rows ...");
        write_lake(&lake, rows).await;

        let mut results = Vec::new();
        for parts in [1usize, 2] {
            let s = EngineSettings { target_partitions: Some(parts), ..EngineSettings::default() };
            let ctx = connect(&s, Some(&lake)).await.unwrap();
            eprintln!("embedded, {parts} partition(s) ...");
            results.push((format!("embedded, target_partitions={parts}"), measure(&ctx, &lake, &format!("emb{parts}"), reps).await));
        }
        for n in [1usize, 2] {
            let opts = ClusterOptions {
                base_port: base + 100 * n as u16,
                dir: dir.path().join(format!("cluster{n}")),
                concurrent_tasks: 1,
                ..ClusterOptions::default()
            };
            let cluster = LocalCluster::start(n, opts).await.unwrap();
            let s = EngineSettings {
                mode: EngineMode::Ballista,
                scheduler: Some(cluster.scheduler_url()),
                target_partitions: Some(ballista_partitions),
                ..EngineSettings::default()
            };
            let ctx = connect(&s, Some(&lake)).await.unwrap();
            eprintln!("ballista, {n} executor(s), {ballista_partitions} partitions ...");
            results.push((format!("ballista, {n} executor(s) x 1 slot"), measure(&ctx, &lake, &format!("bal{n}"), reps).await));
        }
        println!("\n| setup | features-{rows} (s) | hist-level-{rows}-{FEATURES}f-8nodes (s) |");
        println!("|---|---|---|");
        for (name, (f, h)) in &results {
            println!("| {name} | {f:.2} | {h:.2} |");
        }
        let f1 = results[2].1 .0;
        let f2 = results[3].1 .0;
        let h1 = results[2].1 .1;
        let h2 = results[3].1 .1;
        println!("\nspeedup 2 vs 1 executor: features {:.2}x, histogram level {:.2}x", f1 / f2, h1 / h2);
        println!(
            "Ballista overhead vs embedded on the same slots: 1 slot {:.2}x, 2 slots {:.2}x (features)",
            f1 / results[0].1 .0,
            f2 / results[1].1 .0
        );
    });
}
