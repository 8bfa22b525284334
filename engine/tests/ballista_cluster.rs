//! Distributed execution with real processes: a `sluice-scheduler` and
//! `sluice-executor`s on 127.0.0.1 (started by [`LocalCluster`]) run plans
//! that use Sluice UDFs and read and write Parquet in a local lake; results
//! are compared with the embedded engine. Also: an executor killed with
//! SIGKILL during a job (the job completes identically), a job the cluster
//! cannot run (the watchdog ends it), a killed scheduler, and a URL that
//! answers but is not a scheduler.
//!
//! Needs the two binaries: `cargo build --release -p sluice-scheduler -p
//! sluice-executor` (or `SLUICE_BIN_DIR`). Each test uses its own ports.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use arrow::array::{Array, Float64Array, Int64Array, StringArray};
use arrow::record_batch::RecordBatch;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use sluice_cluster::local::{ClusterOptions, LocalCluster};
use sluice_engine::lake::Lake;
use sluice_engine::session::{connect, EngineMode, EngineSettings, RetrySettings};
use sluice_engine::watchdog::retry_lost;

/// Rows of the generated `points` table.
const POINTS: i64 = 200_000;
/// Devices (window partitions, join keys).
const DEVICES: i64 = 500;

fn opts(base_port: u16, dir: &std::path::Path) -> ClusterOptions {
    ClusterOptions {
        base_port,
        dir: dir.join("cluster"),
        concurrent_tasks: 1,
        heartbeat_interval_seconds: 1,
        executor_timeout_seconds: 6,
        ..ClusterOptions::default()
    }
}

fn embedded() -> EngineSettings {
    EngineSettings {
        target_partitions: Some(4),
        ..EngineSettings::default()
    }
}

/// Ballista settings with the job watchdog at `watchdog` seconds.
fn watched(url: &str, watchdog: u64) -> EngineSettings {
    EngineSettings {
        watchdog_seconds: Some(watchdog),
        ..ballista(url)
    }
}

fn ballista(url: &str) -> EngineSettings {
    EngineSettings {
        mode: EngineMode::Ballista,
        scheduler: Some(url.to_string()),
        target_partitions: Some(4),
        ..EngineSettings::default()
    }
}

/// Writes `raw/points/` (4 Parquet files) and `raw/devices/` to the lake.
async fn write_lake(lake: &Lake, points: i64) {
    let ctx = connect(&embedded(), Some(lake)).await.unwrap();
    let df = ctx
        .sql(&format!(
            "SELECT value AS id, value % {DEVICES} AS dev, \
                    52.0 + (value % 1000) * 0.0001 AS lat, \
                    13.0 + ((value * 7) % 1000) * 0.0001 AS lon, \
                    value * 1000 AS ts \
             FROM generate_series(1, {points})"
        ))
        .await
        .unwrap()
        .repartition(datafusion::logical_expr::Partitioning::RoundRobinBatch(4))
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
            "SELECT value AS dev, concat('model-', CAST(value % 17 AS VARCHAR)) AS model \
             FROM generate_series(0, {})",
            DEVICES - 1
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

async fn register(ctx: &SessionContext, lake: &Lake) {
    ctx.register_parquet(
        "points",
        &lake.table_url("raw/points/"),
        ParquetReadOptions::default(),
    )
    .await
    .unwrap();
    ctx.register_parquet(
        "devices",
        &lake.table_url("raw/devices/"),
        ParquetReadOptions::default(),
    )
    .await
    .unwrap();
}

/// A feature-like plan: window (lag per device), inner join, Sluice UDF.
const FEATURES_SQL: &str = "\
    WITH p AS ( \
      SELECT id, dev, lat, lon, \
             lag(lat) OVER (PARTITION BY dev ORDER BY ts) AS plat, \
             lag(lon) OVER (PARTITION BY dev ORDER BY ts) AS plon \
      FROM points) \
    SELECT p.id, p.dev, d.model, haversine_m(p.plat, p.plon, p.lat, p.lon) AS dist \
    FROM p JOIN devices d ON p.dev = d.dev";

/// Runs `sql` on `ctx`, writes the result to `out` in the lake, and returns
/// it read back (by the embedded engine) as id → (model, dist).
async fn run_and_write(
    ctx: &SessionContext,
    lake: &Lake,
    sql: &str,
    out: &str,
) -> datafusion::error::Result<BTreeMap<i64, (String, Option<f64>)>> {
    let df = ctx.sql(sql).await?;
    df.write_parquet(&lake.table_url(out), DataFrameWriteOptions::new(), None)
        .await?;
    Ok(read_back(lake, out).await)
}

/// Runs `sql` on `ctx` and commits the result to `dir` through the
/// engine's commit protocol (as a step does); returns the committed rows
/// (the manifest's files, read by the embedded engine) as id → (model, dist).
async fn commit_and_read(
    ctx: &SessionContext,
    lake: &Lake,
    sql: &str,
    dir: &str,
) -> sluice_engine::error::Result<BTreeMap<i64, (String, Option<f64>)>> {
    use sluice_engine::commit::{open_committed, read_parquet, Commit, Verify};
    let df = ctx.sql(sql).await?;
    let mut commit = Commit::begin(lake, dir);
    let rows = commit.write_parquet(df).await?;
    commit
        .finish(
            "step:chaos",
            "chaos",
            "run",
            serde_json::json!({}),
            vec![],
            serde_json::json!({}),
        )
        .await?;
    let m = open_committed(lake, dir, Verify::Full).await?;
    assert_eq!(m.rows, Some(rows));
    let emb = connect(&embedded(), Some(lake)).await?;
    let batches = read_parquet(&emb, lake, &m).await?.collect().await?;
    let got = to_map(&batches);
    assert_eq!(got.len() as u64, rows, "{dir}: the manifest's row count");
    Ok(got)
}

async fn read_back(lake: &Lake, out: &str) -> BTreeMap<i64, (String, Option<f64>)> {
    let ctx = connect(&embedded(), Some(lake)).await.unwrap();
    let batches = ctx
        .read_parquet(&lake.table_url(out), ParquetReadOptions::default())
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    to_map(&batches)
}

fn to_map(batches: &[RecordBatch]) -> BTreeMap<i64, (String, Option<f64>)> {
    let mut m = BTreeMap::new();
    for b in batches {
        let id = b
            .column_by_name("id")
            .unwrap()
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        let model = arrow::compute::cast(
            b.column_by_name("model").unwrap(),
            &arrow::datatypes::DataType::Utf8,
        )
        .unwrap();
        let model = model.as_any().downcast_ref::<StringArray>().unwrap();
        let dist = b
            .column_by_name("dist")
            .unwrap()
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        for i in 0..b.num_rows() {
            let d = if dist.is_null(i) {
                None
            } else {
                Some(dist.value(i))
            };
            assert!(
                m.insert(id.value(i), (model.value(i).to_string(), d))
                    .is_none(),
                "duplicate id {}",
                id.value(i)
            );
        }
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_features_match_embedded() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path().join("lake").to_str().unwrap()).unwrap();
    write_lake(&lake, POINTS).await;

    let cluster = LocalCluster::start(2, opts(21050, dir.path()))
        .await
        .unwrap();

    let emb = connect(&embedded(), Some(&lake)).await.unwrap();
    register(&emb, &lake).await;
    let expected = run_and_write(&emb, &lake, FEATURES_SQL, "out/embedded/")
        .await
        .unwrap();
    assert_eq!(expected.len() as i64, POINTS);

    let dist = connect(&ballista(&cluster.scheduler_url()), Some(&lake))
        .await
        .unwrap();
    register(&dist, &lake).await;
    let got = run_and_write(&dist, &lake, FEATURES_SQL, "out/ballista/")
        .await
        .unwrap();
    // Row-level results are computed by the same kernels on the same inputs:
    // identical, bit for bit.
    assert_eq!(got, expected);

    // Both executors did work.
    for i in 0..2 {
        let log = std::fs::read_to_string(&cluster.state().executors[i].log).unwrap();
        assert!(
            log.contains("Received task") || log.contains("task"),
            "executor {i} ran no task:\n{log}"
        );
    }

    // An aggregate across partitions: sums may differ in the last bits
    // because the merge order differs; counts are exact.
    let agg = "SELECT dev, count(*) AS n, sum(haversine_m(52.0, 13.0, lat, lon)) AS s FROM points GROUP BY dev ORDER BY dev";
    let a = emb.sql(agg).await.unwrap().collect().await.unwrap();
    let b = dist.sql(agg).await.unwrap().collect().await.unwrap();
    let flat = |bs: &[RecordBatch]| -> Vec<(i64, i64, f64)> {
        let mut v = Vec::new();
        for b in bs {
            let d = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
            let n = b.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
            let s = b.column(2).as_any().downcast_ref::<Float64Array>().unwrap();
            for i in 0..b.num_rows() {
                v.push((d.value(i), n.value(i), s.value(i)));
            }
        }
        v
    };
    let (a, b) = (flat(&a), flat(&b));
    assert_eq!(a.len(), DEVICES as usize);
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!((x.0, x.1), (y.0, y.1));
        assert!(
            (x.2 - y.2).abs() <= 1e-9 * x.2.abs().max(1.0),
            "{x:?} vs {y:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_scheduler_is_a_clear_error() {
    let e = connect(&ballista("df://127.0.0.1:1"), None)
        .await
        .err()
        .expect("expected an error")
        .to_string();
    assert!(e.contains("127.0.0.1:1"), "{e}");
    let e = connect(
        &EngineSettings {
            mode: EngineMode::Ballista,
            ..EngineSettings::default()
        },
        None,
    )
    .await
    .err()
    .expect("expected an error")
    .to_string();
    assert!(e.contains("engine.scheduler"), "{e}");
}

/// Waits until `pred` holds on the executor's log, or `timeout` passes.
/// Waits until an executor's log shows it runs a task: Ballista 55 logs
/// "Received task" (pull-staged scheduling) or "Execute task" (push-staged).
async fn wait_for_task(path: &std::path::Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::fs::read_to_string(path)
            .map(|s| s.contains("Received task") || s.contains("Execute task"))
            .unwrap_or(false)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(15).collect();
    eprintln!(
        "executor log {} (last lines, newest first):\n{}",
        path.display(),
        tail.join("\n")
    );
    false
}

/// kill -9 of one executor while a job runs (a window, a join and a
/// Sluice UDF, written to Parquet). The scheduler notices the lost
/// executor, re-runs its tasks and rolls back the stages whose shuffle
/// output it held; when that recovery stalls (seen with Ballista 55's
/// static graph too), the watchdog cancels the job within its bound and the
/// job runs again, as the engine does with a step. Either way the result is
/// the embedded one: every row once, bit for bit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executor_killed_during_a_job_completes_identically() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path().join("lake").to_str().unwrap()).unwrap();
    write_lake(&lake, POINTS * 3).await;
    let emb = connect(&embedded(), Some(&lake)).await.unwrap();
    register(&emb, &lake).await;
    let expected = run_and_write(&emb, &lake, FEATURES_SQL, "out/embedded/")
        .await
        .unwrap();
    assert_eq!(expected.len() as i64, POINTS * 3);

    // The kill lands 150 ms × seed after the victim's first task: seed 1
    // while the first stages run, later seeds while the final stage writes
    // (its rollback used to leak the survivor's task slot, stalling every
    // job after it; and its re-run used to leave a second copy of the
    // output: `sluice_scheduler::slots`, `Commit::write_parquet`).
    let seeds: Vec<u64> = std::env::var("SLUICE_CHAOS_SEEDS")
        .unwrap_or_else(|_| "1,2,3".into())
        .split(',')
        .map(|s| s.trim().parse().unwrap())
        .collect();
    for seed in seeds {
        let mut cluster = LocalCluster::start(
            2,
            opts(
                21150 + 10 * seed as u16,
                &dir.path().join(format!("s{seed}")),
            ),
        )
        .await
        .unwrap();
        let dist = connect(&watched(&cluster.scheduler_url(), 20), Some(&lake))
            .await
            .unwrap();
        register(&dist, &lake).await;
        let victim = (seed % 2) as usize;
        let log = cluster.state().executors[victim].log.clone();
        let job = {
            let (dist, lake) = (dist.clone(), lake.clone());
            tokio::spawn(async move {
                // What the engine does with a step's job: run it again when
                // it was lost with an executor (a fresh output each attempt).
                let retry = RetrySettings {
                    attempts: 3,
                    backoff_seconds: 1.0,
                };
                let mut lost = Vec::new();
                let got = retry_lost(&retry, "features", &mut lost, |_| {
                    let (dist, lake) = (dist.clone(), lake.clone());
                    async move {
                        commit_and_read(&dist, &lake, FEATURES_SQL, &format!("out/ballista-{seed}"))
                            .await
                    }
                })
                .await;
                (got, lost)
            })
        };
        assert!(
            wait_for_task(&log, Duration::from_secs(60)).await,
            "executor {victim} never got a task"
        );
        tokio::time::sleep(Duration::from_millis(150 * seed)).await;
        let pid = cluster.executor_pid(victim).unwrap();
        cluster.kill_executor(victim).unwrap();
        assert!(!sluice_cluster::local::is_alive(pid));
        let killed = Instant::now();
        let (got, lost) = tokio::time::timeout(Duration::from_secs(240), job)
            .await
            .expect("job hung after the executor was killed")
            .unwrap();
        let got = got.unwrap_or_else(|e| {
            panic!("seed {seed}: the job did not survive the lost executor: {e}")
        });
        eprintln!(
            "seed {seed}: job completed {:.1} s after executor {victim} was killed; lost attempts: {lost:?}",
            killed.elapsed().as_secs_f64()
        );
        assert_eq!(
            got.len(),
            expected.len(),
            "seed {seed}: missing or extra rows"
        );
        assert_eq!(got, expected, "seed {seed}");
    }
}

/// A job the cluster cannot run (its only executor is gone, so it stays
/// queued: the scheduler fails running jobs when their last executor is
/// lost, but never a job queued after that) is cancelled by the engine's
/// watchdog after `engine.watchdog_seconds` without progress, with an error
/// naming the job, its state and the executors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_without_executors_is_cancelled_by_the_watchdog() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path().join("lake").to_str().unwrap()).unwrap();
    write_lake(&lake, 10_000).await;
    let mut cluster = LocalCluster::start(1, opts(21450, dir.path()))
        .await
        .unwrap();
    let url = cluster.scheduler_url();
    let dist = connect(&watched(&url, 4), Some(&lake)).await.unwrap();
    register(&dist, &lake).await;
    cluster.kill_executor(0).unwrap();
    // Until the scheduler has noticed (executor timeout), it would still
    // hand the job to the dead executor.
    let hostport = url.trim_start_matches("df://").to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    while sluice_engine::watchdog::executors_registered(&hostport).await != Some(0) {
        assert!(
            Instant::now() < deadline,
            "the scheduler never noticed the lost executor"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let t = Instant::now();
    let err = tokio::time::timeout(
        Duration::from_secs(60),
        run_and_write(&dist, &lake, FEATURES_SQL, "out/never/"),
    )
    .await
    .expect("the watchdog did not end the job")
    .expect_err("a job without executors cannot succeed")
    .to_string();
    let secs = t.elapsed().as_secs_f64();
    eprintln!("watchdog error after {secs:.1} s: {err}");
    assert!((4.0..20.0).contains(&secs), "{secs} s");
    assert!(err.contains("made no progress for 4 s"), "{err}");
    assert!(err.contains("cluster job "), "{err}");
    assert!(err.contains("executors registered: 0"), "{err}");
    assert!(err.contains(&hostport), "{err}");
}

/// A scheduler URL whose port answers, but not as a Ballista scheduler:
/// the error names the address and says what was found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_is_not_a_ballista_scheduler_is_named() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nConnection: close\r\n\r\nhello world")
                    .await;
            });
        }
    });
    let e = connect(&ballista(&format!("df://127.0.0.1:{port}")), None)
        .await
        .err()
        .expect("a web server is not a scheduler")
        .to_string();
    assert!(e.contains(&format!("127.0.0.1:{port}")), "{e}");
    assert!(e.contains("not a Ballista scheduler"), "{e}");
    assert!(e.contains("hello world"), "{e}");
}

/// A client that uses a function the cluster lacks (the scheduler and
/// executors run an older Sluice version): a clear error naming the
/// scheduler and the function, not a decoding error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_the_cluster_lacks_names_the_scheduler() {
    use datafusion::logical_expr::{create_udf, ColumnarValue, Volatility};
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path().join("lake").to_str().unwrap()).unwrap();
    write_lake(&lake, 1_000).await;
    let cluster = LocalCluster::start(1, opts(21550, dir.path()))
        .await
        .unwrap();
    let url = cluster.scheduler_url();
    let dist = connect(&watched(&url, 30), Some(&lake)).await.unwrap();
    register(&dist, &lake).await;
    // A function only this (newer) client has.
    dist.register_udf(create_udf(
        "sluice_from_a_newer_version",
        vec![arrow::datatypes::DataType::Int64],
        arrow::datatypes::DataType::Int64,
        Volatility::Immutable,
        std::sync::Arc::new(|args: &[ColumnarValue]| Ok(args[0].clone())),
    ));
    let err = tokio::time::timeout(
        Duration::from_secs(60),
        run_and_write(
            &dist,
            &lake,
            "SELECT sluice_from_a_newer_version(id) AS id, 'm' AS model, 1.0 AS dist FROM points",
            "out/never/",
        ),
    )
    .await
    .expect("the query hung")
    .expect_err("the cluster cannot run a function it lacks")
    .to_string();
    eprintln!("{err}");
    let hostport = url.trim_start_matches("df://");
    assert!(err.contains(hostport), "{err}");
    assert!(
        err.contains("does not know the function `sluice_from_a_newer_version`"),
        "{err}"
    );
    assert!(err.contains("another Sluice version"), "{err}");
}

/// The scheduler killed: the running job and the next query fail with an
/// error naming the scheduler, instead of hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_killed_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path().join("lake").to_str().unwrap()).unwrap();
    write_lake(&lake, POINTS * 3).await;
    let mut cluster = LocalCluster::start(1, opts(21250, dir.path()))
        .await
        .unwrap();
    let url = cluster.scheduler_url();
    let dist = connect(&ballista(&url), Some(&lake)).await.unwrap();
    register(&dist, &lake).await;
    let log0 = cluster.state().executors[0].log.clone();
    let job = {
        let dist = dist.clone();
        let lake = lake.clone();
        tokio::spawn(
            async move { run_and_write(&dist, &lake, FEATURES_SQL, "out/ballista/").await },
        )
    };
    assert!(wait_for_task(&log0, Duration::from_secs(60)).await);
    cluster.kill_scheduler().unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(120), job)
        .await
        .expect("job hung after the scheduler was killed")
        .unwrap();
    let msg = outcome
        .expect_err("a job cannot finish without its scheduler")
        .to_string();
    eprintln!("running job after scheduler kill: {msg}");
    // A new connection names the scheduler's address.
    let e = connect(&ballista(&url), Some(&lake))
        .await
        .err()
        .expect("expected an error")
        .to_string();
    assert!(
        e.contains(&url.trim_start_matches("df://").to_string()),
        "{e}"
    );
}

/// Distributed histogram training pieces on a 2-executor cluster against
/// the ML core's local implementation: bin edges from the distributed sample
/// are identical; the binned table written by the executors equals the local
/// `BinnedMatrix`; root and first-level histograms agree (counts exactly,
/// gradient/hessian sums to 1e-5 relative: the local learner sums `f32`
/// targets, the UDAF `f64`, and the merge order differs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_histograms_match_local() {
    use sluice_ml::distributed::{bin::bounds_literal, bin_sample, histogram::to_histogram};
    use sluice_ml::{
        BinEdges, FeatureMatrix, HistogramSource, LocalHistogramSource, NodeRequest, Targets,
    };

    const N: usize = 60_000;
    const F: usize = 4;
    const SAMPLE: usize = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path().join("lake").to_str().unwrap()).unwrap();

    // Training table: row_id, y, f0..f3 (f2 has nulls = missing).
    let emb = connect(&embedded(), Some(&lake)).await.unwrap();
    emb.sql(&format!(
        "SELECT value - 1 AS row_id, CAST(value % 3 = 0 AS INT) AS y, \
                sin(CAST(value AS DOUBLE)) * 10 AS f0, CAST(value % 97 AS DOUBLE) AS f1, \
                CASE WHEN value % 11 = 0 THEN NULL ELSE cos(CAST(value AS DOUBLE) * 0.37) END AS f2, \
                CAST((value * 31) % 7 AS DOUBLE) AS f3 \
         FROM generate_series(1, {N})"
    ))
    .await
    .unwrap()
    .repartition(datafusion::logical_expr::Partitioning::RoundRobinBatch(4))
    .unwrap()
    .write_parquet(&lake.table_url("train/"), DataFrameWriteOptions::new(), None)
    .await
    .unwrap();
    let all = emb
        .read_parquet(&lake.table_url("train/"), ParquetReadOptions::default())
        .await
        .unwrap()
        .sort(vec![datafusion::prelude::col("row_id").sort(true, false)])
        .unwrap()
        .collect()
        .await
        .unwrap();
    let mut cols: Vec<Vec<f64>> = (0..F).map(|_| Vec::with_capacity(N)).collect();
    let mut y = Vec::with_capacity(N);
    for b in &all {
        for (j, c) in cols.iter_mut().enumerate() {
            let a = b
                .column_by_name(&format!("f{j}"))
                .unwrap()
                .as_any()
                .downcast_ref::<Float64Array>()
                .unwrap();
            c.extend((0..a.len()).map(|i| if a.is_null(i) { f64::NAN } else { a.value(i) }));
        }
        let a = b
            .column_by_name("y")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow::array::Int32Array>()
            .unwrap();
        y.extend(a.values().iter().map(|&v| v as u8));
    }
    let names: Vec<String> = (0..F).map(|j| format!("f{j}")).collect();
    let m = FeatureMatrix::new(names, cols).unwrap();
    let local_edges = BinEdges::fit(&m, 32, SAMPLE).unwrap();
    let local_binned = local_edges.transform(&m).unwrap();

    let cluster = LocalCluster::start(2, opts(21350, dir.path()))
        .await
        .unwrap();
    let dist = connect(&ballista(&cluster.scheduler_url()), Some(&lake))
        .await
        .unwrap();
    dist.register_parquet(
        "train",
        &lake.table_url("train/"),
        ParquetReadOptions::default(),
    )
    .await
    .unwrap();

    // 1. Bin edges from the distributed sample.
    let rate = bin_sample::sample_rate(N, SAMPLE);
    let sel: Vec<String> = (0..F)
        .map(|j| format!("sluice_bin_sample(f{j}, row_id, {rate:?}) AS s{j}"))
        .collect();
    let res = dist
        .sql(&format!("SELECT {} FROM train", sel.join(", ")))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    for j in 0..F {
        let list = res[0]
            .column(j)
            .as_any()
            .downcast_ref::<arrow::array::ListArray>()
            .unwrap()
            .value(0);
        let vals: Vec<f64> = list
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap()
            .values()
            .to_vec();
        let fb = bin_sample::feature_bins(vals, 32);
        assert_eq!(
            fb, local_edges.features[j],
            "feature {j}: distributed edges differ"
        );
    }

    // 2. The binned table, written by the executors.
    let df = dist.table("train").await.unwrap();
    let mut exprs = vec![
        datafusion::prelude::col("row_id"),
        datafusion::prelude::col("y"),
    ];
    for j in 0..F {
        let udf = sluice_engine::session::sluice_scalar_udfs()
            .into_iter()
            .find(|f| f.name() == "sluice_bin")
            .unwrap();
        exprs.push(
            udf.call(vec![
                datafusion::prelude::col(format!("f{j}")),
                datafusion::prelude::lit(bounds_literal(&local_edges.features[j])),
            ])
            .alias(format!("b{j}")),
        );
    }
    df.select(exprs)
        .unwrap()
        .write_parquet(
            &lake.table_url("binned/"),
            DataFrameWriteOptions::new(),
            None,
        )
        .await
        .unwrap();
    let binned = emb
        .read_parquet(&lake.table_url("binned/"), ParquetReadOptions::default())
        .await
        .unwrap()
        .sort(vec![datafusion::prelude::col("row_id").sort(true, false)])
        .unwrap()
        .collect()
        .await
        .unwrap();
    for j in 0..F {
        let mut got = Vec::with_capacity(N);
        for b in &binned {
            let a = b
                .column_by_name(&format!("b{j}"))
                .unwrap()
                .as_any()
                .downcast_ref::<arrow::array::UInt8Array>()
                .unwrap();
            got.extend_from_slice(a.values());
        }
        assert_eq!(
            got,
            local_binned.column(j),
            "feature {j}: binned column differs"
        );
    }

    // 3. Root and level-1 histograms (GBT first iteration: p0 = 0.3).
    dist.register_parquet(
        "binned",
        &lake.table_url("binned/"),
        ParquetReadOptions::default(),
    )
    .await
    .unwrap();
    let p0 = 0.3f64;
    let grad: Vec<f32> = y.iter().map(|&v| (p0 - v as f64) as f32).collect();
    let hess: Vec<f32> = vec![(p0 * (1.0 - p0)) as f32; N];
    let targets = Targets::GradHess {
        grad: &grad,
        hess: &hess,
    };
    let features: Vec<usize> = (0..F).collect();
    let t = 7u8; // level-1 split: b0 <= 7 left (node 1), else right (node 2)
    let left: Vec<u32> = (0..N as u32)
        .filter(|&r| local_binned.column(0)[r as usize] <= t)
        .collect();
    let right: Vec<u32> = (0..N as u32)
        .filter(|&r| local_binned.column(0)[r as usize] > t)
        .collect();
    let root: Vec<u32> = (0..N as u32).collect();
    let src = LocalHistogramSource::new(&local_binned);
    let local = src
        .build(&[
            NodeRequest {
                rows: &root,
                features: &features,
                targets,
            },
            NodeRequest {
                rows: &left,
                features: &features,
                targets,
            },
            NodeRequest {
                rows: &right,
                features: &features,
                targets,
            },
        ])
        .unwrap();
    let bins: Vec<String> = (0..F).map(|j| format!("b{j}")).collect();
    let g = format!("({p0:?} - y)");
    let h = format!("{:?}", p0 * (1.0 - p0));
    let sqls = [
        format!("SELECT 0 AS node, sluice_histogram({g}, {h}, {}) AS h FROM binned", bins.join(", ")),
        format!(
            "SELECT CASE WHEN b0 <= {t} THEN 1 ELSE 2 END AS node, sluice_histogram({g}, {h}, {}) AS h \
             FROM binned GROUP BY 1 ORDER BY 1",
            bins.join(", ")
        ),
    ];
    let mut dist_hists = Vec::new();
    for sql in &sqls {
        for b in dist.sql(sql).await.unwrap().collect().await.unwrap() {
            let l = b
                .column(1)
                .as_any()
                .downcast_ref::<arrow::array::ListArray>()
                .unwrap();
            for i in 0..b.num_rows() {
                let v = l.value(i);
                let sums = v
                    .as_any()
                    .downcast_ref::<Float64Array>()
                    .unwrap()
                    .values()
                    .to_vec();
                dist_hists.push(to_histogram(&sums, local_binned.n_bins()).unwrap());
            }
        }
    }
    assert_eq!(dist_hists.len(), 3);
    for (node, (d, l)) in dist_hists.iter().zip(&local).enumerate() {
        for j in 0..F {
            for (b, (x, z)) in d.feature(j).iter().zip(l.feature(j)).enumerate() {
                assert_eq!(x.count, z.count, "node {node} feature {j} bin {b}");
                let tol = |a: f64, c: f64| (a - c).abs() <= 1e-5 * a.abs().max(c.abs()).max(1.0);
                assert!(
                    tol(x.grad, z.grad) && tol(x.hess, z.hess),
                    "node {node} feature {j} bin {b}: {x:?} vs {z:?}"
                );
            }
        }
    }
}

/// Between `LocalCluster::start`'s port check and an executor's bind,
/// another socket can take the executor's port (an outgoing connection's
/// ephemeral port can: Linux hands out 32768-60999). The executor then
/// exits with "Address already in use"; the cluster starts it again instead
/// of failing. Here a listener takes executor 0's Flight port as soon as
/// the scheduler is spawned and holds it for a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_whose_port_is_taken_at_start_up_starts_again() {
    taken_port_at_start_up(21950, 1, "executor-0.log").await;
}

/// The same for the scheduler's port (`sluice cluster up`'s 50050 is in the
/// ephemeral range too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_whose_port_is_taken_at_start_up_starts_again() {
    taken_port_at_start_up(21850, 0, "scheduler.log").await;
}

/// Starts a 1-executor cluster at `first_base` (then +10, +20) while a
/// listener takes port `base + offset` as soon as the scheduler is spawned
/// and holds it for a second; the process whose log is `log_name` must
/// have failed on it and been started again.
async fn taken_port_at_start_up(first_base: u16, offset: u16, log_name: &str) {
    for attempt in 0..3u16 {
        let dir = tempfile::tempdir().unwrap();
        let base = first_base + 10 * attempt;
        let o = opts(base, dir.path());
        let (sched_log, exec_log) = (o.dir.join("scheduler.log"), o.dir.join(log_name));
        let taker = std::thread::spawn(move || {
            let t0 = std::time::Instant::now();
            while !sched_log.exists() {
                if t0.elapsed() > Duration::from_secs(30) {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            let Ok(held) = std::net::TcpListener::bind(("127.0.0.1", base + offset)) else {
                return false;
            };
            std::thread::sleep(Duration::from_secs(1));
            drop(held);
            true
        });
        let started = LocalCluster::start(1, o).await;
        let took = taker.join().unwrap();
        let log = std::fs::read_to_string(&exec_log).unwrap_or_default();
        if !took || !log.contains("Address already in use") {
            // The process bound its port first: nothing was taken.
            assert!(started.is_ok(), "{:?}", started.err());
            continue;
        }
        let cluster = started.expect("the process whose port was taken was not started again");
        let e = &cluster.state().executors[0];
        assert_eq!(
            sluice_cluster::local::http_status(e.health_port, "/readyz"),
            Some(200)
        );
        return;
    }
    panic!("in 3 attempts the listener never took the port before its process bound it");
}
