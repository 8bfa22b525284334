//! Issue 18, item 4: training no longer needs the data to fit the driver.
//!
//! A lake whose training table, as the local trainer's in-memory matrix
//! (`rows × features × 8` bytes), is larger than a memory limit set on the
//! `sluice` process (`RLIMIT_DATA` through `prlimit --data`, which bounds the
//! process's private writable memory: heap and anonymous maps). On a real
//! local Ballista cluster (a `sluice-scheduler` and two `sluice-executor`
//! processes, unlimited):
//!
//! * the training pipeline (ingest, features, one GBT without grid or CV
//!   trained on the executors, evaluate, deploy) succeeds under the limit,
//!   and the driver's peak RSS (`peak_rss_mib` of the JSON `run finished`
//!   log line, `VmHWM`) is below it;
//! * the control: the same train step with `distributed: false` (the model
//!   trained on the driver from the whole matrix) under the same limit
//!   fails, so the limit is real.
//!
//! Needs the binaries (`cargo build --release --workspace --all-targets`, or
//! `SLUICE_BIN_DIR`) and `prlimit` (util-linux); Linux only. The numbers it
//! prints are in docs/PERFORMANCE.md ("Distributed training that scales").

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use sluice_testkit::Finished;

use sluice_cluster::local::{ClusterOptions, LocalCluster};
use sluice_engine::commit::{self, Verify};
use sluice_engine::lake::Lake;
use sluice_engine::outputs::{FeaturesOutput, ManifestOutput};

/// The driver's memory limit (`RLIMIT_DATA`), MiB.
const LIMIT_MIB: u64 = 320;
/// Labelled training rows: 1.5M × 77 features × 8 bytes ≈ 881 MiB of matrix.
const TRAIN_ROWS: u64 = 1_500_000;
/// Longest a `sluice` process may take.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(240);

const CONFIG: &str = r#"
name: driver-memory
kind: training
lake: LAKE
engine:
  target_partitions: 4
steps:
  - step: ingest
  - step: features
  - step: train
    test_fraction: 0.25
    seed: 7
    distributed: DISTRIBUTED
    models:
      - name: gbt
        type: gbt
        params: {maxIter: 5, maxDepth: 3, stepSize: 0.3}
  - step: evaluate
    metric: auc
  - step: deploy
    model_name: io
"#;

/// A finished process and the highest `VmHWM` seen while it ran (polled
/// every 20 ms; MiB).
struct Polled {
    finished: Finished,
    polled_peak_mib: Option<u64>,
}

impl std::ops::Deref for Polled {
    type Target = Finished;
    fn deref(&self) -> &Finished {
        &self.finished
    }
}

/// Runs `cmd` to completion (killed and failed after [`PROCESS_TIMEOUT`]),
/// polling its peak RSS.
fn run_polled(cmd: &mut Command) -> Polled {
    let mut peak = None;
    let finished = sluice_testkit::run_watched(cmd, PROCESS_TIMEOUT, |pid| {
        // prlimit execs the command, so the pid is sluice's.
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            if let Some(kib) = sluice_core::memory::status_kib(&s, "VmHWM:") {
                peak = Some(peak.unwrap_or(0).max(kib.div_ceil(1024)));
            }
        }
    });
    Polled {
        finished,
        polled_peak_mib: peak,
    }
}

/// `sluice --log-format json run <config> --lake <lake> --scheduler <url>
/// <args>` with the driver's data segment limited to [`LIMIT_MIB`].
fn run_limited(config: &Path, lake: &Path, scheduler: &str, args: &[&str]) -> Polled {
    let limit = LIMIT_MIB << 20;
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--data={limit}:{limit}"))
        .arg(env!("CARGO_BIN_EXE_sluice"))
        .args(["--log-format", "json", "run"])
        .arg(config)
        .arg("--lake")
        .arg(lake)
        .args(["--scheduler", scheduler])
        .args(args)
        .env("RUST_LOG", "info");
    run_polled(&mut cmd)
}

/// Field `field` of the first JSON log line whose message is `message`.
fn logged(stderr: &str, message: &str, field: &str) -> Option<serde_json::Value> {
    stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == message)
        .map(|v| v[field].clone())
        .filter(|v| !v.is_null())
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn training_on_two_executors_needs_no_driver_memory_for_the_rows() {
    if !cfg!(target_os = "linux") || Command::new("prlimit").arg("--version").output().is_err() {
        eprintln!("skipped: needs Linux and prlimit");
        return;
    }
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("lake");
    let gen = run_polled(
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["--quiet", "datagen", "--out"])
            .arg(&root)
            .args([
                "--samples",
                "20000",
                "--train-rows",
                &TRAIN_ROWS.to_string(),
            ]),
    );
    assert!(gen.success, "datagen failed:\n{}", tail(&gen.stderr));
    let datagen_secs = gen.seconds;

    let cluster = LocalCluster::start(
        2,
        ClusterOptions {
            base_port: 23150,
            dir: tmp.path().join("cluster"),
            ..ClusterOptions::default()
        },
    )
    .await
    .unwrap();
    let url = cluster.scheduler_url();
    let lake_url = root.to_str().unwrap();
    let write = |name: &str, distributed: bool| {
        let p = tmp.path().join(name);
        let text = CONFIG
            .replace("LAKE", lake_url)
            .replace("DISTRIBUTED", &distributed.to_string());
        std::fs::write(&p, text).unwrap();
        p
    };

    // Training on the executors: the whole pipeline under the limit.
    let dist = run_limited(&write("distributed.yaml", true), &root, &url, &[]);
    assert!(
        dist.success,
        "the distributed run failed under a {LIMIT_MIB} MiB driver limit:\n{}",
        tail(&dist.stderr)
    );
    assert!(
        dist.stderr.contains("training on the executors"),
        "the model did not train on the executors:\n{}",
        tail(&dist.stderr)
    );
    let peak = logged(&dist.stderr, "run finished", "peak_rss_mib")
        .and_then(|v| v.as_u64())
        .expect("no peak_rss_mib on `run finished`");

    // The matrix the local trainer would hold, from the committed features.
    let lake = Lake::open(lake_url).unwrap();
    let run_id = logged(&dist.stderr, "run finished", "run_id").expect("no run id logged");
    let run_id = run_id.as_str().unwrap();
    let man = commit::open_committed(
        &lake,
        &format!("runs/driver-memory/{run_id}/features"),
        Verify::Size,
    )
    .await
    .unwrap();
    let rows = man.rows.unwrap();
    let features = man.output::<FeaturesOutput>().unwrap().feature_names.len() as u64;
    let matrix = rows * features * 8;
    assert!(
        matrix > (LIMIT_MIB << 20) * 5 / 4,
        "the matrix ({rows} × {features} × 8 = {matrix} bytes) must clearly exceed the limit"
    );
    assert!(
        peak < LIMIT_MIB,
        "driver peak RSS {peak} MiB, limit {LIMIT_MIB} MiB"
    );

    // The control: the same train step on the driver, same limit, must fail.
    let local = run_limited(
        &write("local.yaml", false),
        &root,
        &url,
        &["--steps", "train"],
    );
    assert!(
        !local.success,
        "training on the driver passed under a {LIMIT_MIB} MiB limit: the limit does not bite"
    );
    assert!(
        !local.stderr.contains("training on the executors"),
        "the control trained on the executors"
    );
    let memory_failure = local
        .stderr
        .lines()
        .find(|l| {
            [
                "memory allocation of",
                "Resources exhausted",
                "out of memory",
            ]
            .iter()
            .any(|m| l.contains(m))
        })
        .unwrap_or_else(|| {
            panic!(
                "the control failed for another reason than memory:\n{}",
                tail(&local.stderr)
            )
        });
    println!("control failure: {memory_failure}");
    drop(cluster);
    println!(
        "driver memory (issue 18): {rows} training rows × {features} features = matrix {matrix} bytes ({} MiB); \
         driver limit RLIMIT_DATA {LIMIT_MIB} MiB; distributed run: ok in {:.1} s, driver peak RSS {peak} MiB \
         (polled {:?} MiB); local-training control: failed in {:.1} s, driver peak RSS polled {:?} MiB; \
         datagen {datagen_secs:.1} s; test {:.1} s\n{}",
        matrix >> 20,
        dist.seconds,
        dist.polled_peak_mib,
        local.seconds,
        local.polled_peak_mib,
        started.elapsed().as_secs_f64(),
        dist.stdout.trim_end()
    );
}
