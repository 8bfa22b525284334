//! Both pipelines through a real Ballista cluster (a `sluice-scheduler` and
//! two `sluice-executor` processes on 127.0.0.1) against the embedded engine
//! on the same lake:
//!
//! * inference with the same deployed model: the same predictions, bit for
//!   bit (the join, the windows, the haversine UDF and `sluice_predict` are
//!   deterministic per row, wherever they run);
//! * training: every step runs on the cluster; models without a grid train
//!   on the executors (one aggregate pass per tree level). The evaluation
//!   metrics agree with the embedded run within 0.01 (accuracy) and 0.005
//!   (AUC): histogram sums are merged across partitions in a different
//!   order than on one machine, so a near-tie split can flip (see
//!   docs/DISTRIBUTED.md).
//!
//! * the chaos suite of issue 14 (`chaos_suite_runs_complete_identically`):
//!   SIGKILL of executors and of the scheduler while steps run; every run
//!   completes with the undisturbed output, or (every executor lost) fails
//!   within the bound (docs/DISTRIBUTED.md, "Fault tolerance").
//!
//! Needs the binaries: `cargo build --release -p sluice-scheduler -p
//! sluice-executor` (or `SLUICE_BIN_DIR`).

use sluice_testkit as common;
use sluice_testkit::committed_rows;

use std::time::{Duration, Instant};

use sluice_cluster::local::{ClusterOptions, LocalCluster};
use sluice_engine::commit::{self, Verify};
use sluice_engine::config::StepName;
use sluice_engine::lake::Lake;
use sluice_engine::outputs::{EvaluateOutput, StepStatus};
use sluice_engine::pipeline::{self, RunOptions};
use sluice_engine::session::{EngineMode, EngineSettings, RetrySettings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn training_and_inference_on_a_cluster_match_embedded() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake");
    let lake_url = root.to_str().unwrap().to_string();
    let lake = Lake::open(&lake_url).unwrap();
    common::generate(&lake, 30_000).await;

    let cluster = LocalCluster::start(
        2,
        ClusterOptions {
            base_port: 21750,
            dir: dir.path().join("cluster"),
            ..ClusterOptions::default()
        },
    )
    .await
    .unwrap();
    let on_cluster = RunOptions {
        engine: Some(EngineSettings {
            mode: EngineMode::Ballista,
            scheduler: Some(cluster.scheduler_url()),
            target_partitions: Some(2),
            ..EngineSettings::default()
        }),
        ..RunOptions::default()
    };

    // Training: embedded, then on the cluster (deploys v0001, then v0002).
    let training = common::cfg(common::TRAINING, &lake_url);
    let emb = pipeline::run(&training, &RunOptions::default())
        .await
        .unwrap();
    let dist = pipeline::run(&training, &on_cluster).await.unwrap();
    assert!(
        dist.steps.iter().all(|s| s.status == StepStatus::Ran),
        "{:?}",
        dist.steps
    );
    for m in ["gbt", "rf"] {
        let e = &emb.summary.evaluation.as_ref().unwrap().models[m].metrics;
        let d = &dist.summary.evaluation.as_ref().unwrap().models[m].metrics;
        let (ea, da) = (e.accuracy, d.accuracy);
        let (eu, du) = (e.auc, d.auc);
        assert!(
            (ea - da).abs() <= 0.01 && (eu - du).abs() <= 0.005,
            "{m}: embedded accuracy {ea} auc {eu}, cluster accuracy {da} auc {du}"
        );
        assert!(da > 0.85 && du > 0.9, "{m} on the cluster: {d:?}");
    }

    // Inference with one pinned model version, embedded and on the cluster.
    let inference = common::cfg(
        &common::INFERENCE.replace("model_name: io", "model_name: io\n    version: v0001"),
        &lake_url,
    );
    let e = pipeline::run(&inference, &RunOptions::default())
        .await
        .unwrap();
    let d = pipeline::run(&inference, &on_cluster).await.unwrap();
    let pe = common::predictions(&lake, &e.run_id).await;
    let pd = common::predictions(&lake, &d.run_id).await;
    assert!(!pe.is_empty());
    assert_eq!(pe, pd, "cluster predictions differ from embedded ones");
    drop(cluster);
}

// ---------------------------------------------------------------------------
// The chaos suite (issue 14): real processes, SIGKILL while tasks run.
// ---------------------------------------------------------------------------

/// The training pipeline of the chaos suite: [`common::TRAINING`] with
/// small models, so a trial takes seconds; the GBT still runs ≈ 20 passes
/// and the forest 6 on the cluster, and a small grid search with 2-fold
/// cross-validation (2 points: 4 fits and the refit, ≈ 60 passes).
fn chaos_training() -> String {
    let small = common::TRAINING
        .replace(
            "{maxIter: 20, maxDepth: 5, stepSize: 0.2}",
            "{maxIter: 6, maxDepth: 4, stepSize: 0.3}",
        )
        .replace("{numTrees: 10, maxDepth: 8}", "{numTrees: 6, maxDepth: 6}")
        .replace("    seed: 7\n", "    seed: 7\n    search_min_rows: 0\n")
        .replace(
            "  - step: evaluate",
            "      - name: gbt_cv
        type: gbt
        params: {maxIter: 4, maxDepth: 3}
        grid: {stepSize: [0.2, 0.4]}
        cv: {folds: 2, metric: auc}
  - step: evaluate",
        );
    assert!(small.contains("maxIter: 6") && small.contains("numTrees: 6"));
    assert!(small.contains("name: gbt_cv") && small.contains("search_min_rows: 0"));
    small
}

/// The watchdog bound of the chaos runs (seconds).
const WATCHDOG: u64 = 20;

fn chaos_cluster_opts(base_port: u16, dir: &std::path::Path) -> ClusterOptions {
    ClusterOptions {
        base_port,
        dir: dir.to_path_buf(),
        concurrent_tasks: 1,
        heartbeat_interval_seconds: 1,
        executor_timeout_seconds: 6,
        ..ClusterOptions::default()
    }
}

fn on(cluster: &LocalCluster, attempts: u32) -> EngineSettings {
    EngineSettings {
        mode: EngineMode::Ballista,
        scheduler: Some(cluster.scheduler_url()),
        target_partitions: Some(2),
        watchdog_seconds: Some(WATCHDOG),
        retry: RetrySettings {
            attempts,
            backoff_seconds: 1.0,
        },
        ..EngineSettings::default()
    }
}

/// Waits until an executor's log shows a task started after byte `from`
/// (Ballista 55 logs "Execute task" when pushed one, "Received task" when it
/// pulls).
async fn wait_for_task_after(path: &std::path::Path, from: usize, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(s) = std::fs::read_to_string(path) {
            let new = s.get(from..).unwrap_or("");
            if new.contains("Execute task") || new.contains("Received task") {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

fn log_len(path: &std::path::Path) -> usize {
    std::fs::metadata(path)
        .map(|m| m.len() as usize)
        .unwrap_or(0)
}

/// The bytes of the committed file of `dir` whose path ends with `name`.
async fn committed_file(lake: &Lake, dir: &str, name: &str) -> Vec<u8> {
    let m = commit::open_committed(lake, dir, Verify::Full)
        .await
        .unwrap_or_else(|e| panic!("{dir}: {e}"));
    let f = m.files.iter().find(|f| f.path.ends_with(name)).unwrap();
    lake.get(&f.path).await.unwrap().to_vec()
}

/// The evaluation metrics of `run_id` (`evaluate/metrics.json`): model →
/// (accuracy, AUC).
async fn metrics(lake: &Lake, run_id: &str) -> std::collections::BTreeMap<String, (f64, f64)> {
    let dir = format!("runs/lt-train/{run_id}/evaluate");
    let v: EvaluateOutput =
        serde_json::from_slice(&committed_file(lake, &dir, "metrics.json").await).unwrap();
    v.models
        .into_iter()
        .map(|(k, m)| (k, (m.metrics.accuracy, m.metrics.auc)))
        .collect()
}

/// The model file of `model` trained by `run_id`.
async fn model_bytes(lake: &Lake, run_id: &str, model: &str) -> Vec<u8> {
    let dir = format!("runs/lt-train/{run_id}/train/{model}");
    committed_file(lake, &dir, sluice_engine::registry::ARTEFACT_FILE).await
}

/// What one chaos trial runs.
#[derive(Debug, Clone, Copy)]
enum Stage {
    Ingest,
    FeaturesPredict,
    Gbt,
    Forest,
    GridSearch,
}

/// Runs `stage` on a fresh 2-executor cluster and SIGKILLs one executor
/// `seed × 120 ms` after it started a task of the stage; returns the run id
/// and the seconds from the kill to the run's end.
async fn kill_one_executor_during(
    stage: Stage,
    seed: u64,
    base_port: u16,
    dir: &std::path::Path,
    lake_url: &str,
) -> (String, f64) {
    let mut cluster = LocalCluster::start(2, chaos_cluster_opts(base_port, dir))
        .await
        .unwrap();
    let victim = (seed % 2) as usize;
    let log = cluster.state().executors[victim].log.clone();
    let from = log_len(&log);
    let (text, steps, models) = match stage {
        Stage::Ingest => (chaos_training(), vec![StepName::Ingest], None),
        Stage::FeaturesPredict => (
            common::INFERENCE.to_string(),
            vec![StepName::Features, StepName::Predict],
            None,
        ),
        Stage::Gbt => (
            chaos_training(),
            vec![StepName::Train, StepName::Evaluate],
            Some(vec!["gbt".to_string()]),
        ),
        Stage::Forest => (
            chaos_training(),
            vec![StepName::Train, StepName::Evaluate],
            Some(vec!["rf".to_string()]),
        ),
        Stage::GridSearch => (
            chaos_training(),
            vec![StepName::Train, StepName::Evaluate],
            Some(vec!["gbt_cv".to_string()]),
        ),
    };
    let cfg = common::cfg(&text, lake_url);
    let opts = RunOptions {
        steps: Some(steps),
        models,
        engine: Some(on(&cluster, 3)),
        ..RunOptions::default()
    };
    // The run and the killer share this task (the run's future is not
    // `Send`).
    let killer = async {
        assert!(
            wait_for_task_after(&log, from, Duration::from_secs(120)).await,
            "{stage:?} seed {seed}: executor {victim} never got a task"
        );
        tokio::time::sleep(Duration::from_millis(120 * seed)).await;
        cluster.kill_executor(victim).unwrap();
        Instant::now()
    };
    let (out, killed) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(300), pipeline::run(&cfg, &opts)),
        killer
    );
    let out = out
        .unwrap_or_else(|_| panic!("{stage:?} seed {seed}: the run hung after the kill"))
        .unwrap_or_else(|e| {
            panic!("{stage:?} seed {seed}: the run did not survive the lost executor: {e}")
        });
    let secs = killed.elapsed().as_secs_f64();
    let retries: Vec<u32> = out.steps.iter().map(|s| s.attempts).collect();
    eprintln!(
        "chaos {stage:?} seed {seed}: completed {secs:.1} s after executor {victim} was killed; attempts per step {retries:?}"
    );
    (out.run_id, secs)
}

/// SIGKILL of one of two executors while tasks run, for ingest (the
/// seven-table join), features + predict, distributed GBT and distributed
/// forest training, a grid search with cross-validation on the cluster, two
/// seeds each (the kill lands at a different moment):
/// every run completes, and its output equals the undisturbed run's: the
/// ingest output row for row (no row missing or twice), the predictions
/// (sample ids and probabilities) bit for bit, the models' evaluation
/// metrics exactly. Then the scheduler SIGKILLed and restarted during a run
/// (the run completes; a re-run with the same run id skips every committed
/// step), and every executor SIGKILLed (a clear error within the bound).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_suite_runs_complete_identically() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake");
    let lake_url = root.to_str().unwrap().to_string();
    let lake = Lake::open(&lake_url).unwrap();
    common::generate(&lake, 20_000).await;

    // The undisturbed runs.
    let (reference, ref_infer) = {
        let cluster = LocalCluster::start(2, chaos_cluster_opts(22000, &dir.path().join("c0")))
            .await
            .unwrap();
        let opts = RunOptions {
            engine: Some(on(&cluster, 1)),
            ..RunOptions::default()
        };
        let t = pipeline::run(&common::cfg(&chaos_training(), &lake_url), &opts)
            .await
            .unwrap();
        let i = pipeline::run(&common::cfg(common::INFERENCE, &lake_url), &opts)
            .await
            .unwrap();
        (t.run_id, i.run_id)
    };
    let ref_ingest = committed_rows(&lake, &format!("runs/lt-train/{reference}/ingest")).await;
    assert!(ref_ingest.len() > 1000);
    let ref_preds = common::predictions(&lake, &ref_infer).await;
    let ref_metrics = metrics(&lake, &reference).await;

    let mut port = 22010;
    for stage in [
        Stage::Ingest,
        Stage::FeaturesPredict,
        Stage::Gbt,
        Stage::Forest,
        Stage::GridSearch,
    ] {
        for seed in [1u64, 2] {
            let (run_id, _) = kill_one_executor_during(
                stage,
                seed,
                port,
                &dir.path().join(format!("c{port}")),
                &lake_url,
            )
            .await;
            port += 10;
            match stage {
                Stage::Ingest => {
                    let got =
                        committed_rows(&lake, &format!("runs/lt-train/{run_id}/ingest")).await;
                    assert_eq!(got.len(), ref_ingest.len(), "ingest seed {seed}: row count");
                    assert!(got == ref_ingest, "ingest seed {seed}: rows differ");
                }
                Stage::FeaturesPredict => {
                    let got = common::predictions(&lake, &run_id).await;
                    assert_eq!(got.len(), ref_preds.len(), "predict seed {seed}: row count");
                    assert_eq!(
                        common::checksum(&got),
                        common::checksum(&ref_preds),
                        "predict seed {seed}: predictions differ"
                    );
                }
                Stage::Gbt | Stage::Forest | Stage::GridSearch => {
                    let name = match stage {
                        Stage::Gbt => "gbt",
                        Stage::Forest => "rf",
                        _ => "gbt_cv",
                    };
                    let got = metrics(&lake, &run_id).await;
                    assert_eq!(
                        got[name], ref_metrics[name],
                        "{name} seed {seed}: metrics differ"
                    );
                    let same = model_bytes(&lake, &run_id, name).await
                        == model_bytes(&lake, &reference, name).await;
                    eprintln!("chaos {name} seed {seed}: model byte-identical: {same}");
                }
            }
        }
    }

    // The scheduler SIGKILLed while features run, restarted at once (as
    // Kubernetes restarts its pod): the step's job is lost with it, the step
    // runs again on the restarted scheduler, and the run completes with the
    // undisturbed output; a re-run with the same run id (Airflow's retry)
    // skips every committed step.
    {
        let mut cluster = LocalCluster::start(2, chaos_cluster_opts(port, &dir.path().join("cs")))
            .await
            .unwrap();
        port += 10;
        let log = cluster.state().executors[0].log.clone();
        let cfg = common::cfg(common::INFERENCE, &lake_url);
        // The kill lands when a task has started; on a loaded machine the
        // job may finish before the scheduler dies, which exercises nothing:
        // then the scenario runs again (a new run id), up to 3 times, and at
        // least one trial must have cost a step its job. Every trial's
        // output must equal the undisturbed run's.
        const TRIALS: usize = 3;
        let mut exercised = false;
        for trial in 1..=TRIALS {
            let run_id = format!("chaos-scheduler-{trial}");
            let from = log_len(&log);
            let opts = RunOptions {
                run_id: Some(run_id.clone()),
                engine: Some(on(&cluster, 3)),
                ..RunOptions::default()
            };
            let killer = async {
                assert!(wait_for_task_after(&log, from, Duration::from_secs(120)).await);
                cluster.kill_scheduler().unwrap();
                let killed = Instant::now();
                cluster
                    .restart_scheduler(Duration::from_secs(60))
                    .await
                    .unwrap();
                killed
            };
            let (out, killed) = tokio::join!(
                tokio::time::timeout(Duration::from_secs(300), pipeline::run(&cfg, &opts)),
                killer
            );
            let out = out
                .expect("the run hung after the scheduler was killed")
                .unwrap_or_else(|e| panic!("the run did not survive a scheduler restart: {e}"));
            let attempts: Vec<u32> = out.steps.iter().map(|s| s.attempts).collect();
            eprintln!(
                "chaos scheduler restart, trial {trial}: completed {:.1} s after the kill; attempts per step {attempts:?}",
                killed.elapsed().as_secs_f64(),
            );
            let got = common::predictions(&lake, &run_id).await;
            assert_eq!(common::checksum(&got), common::checksum(&ref_preds));
            let again = pipeline::run(&cfg, &opts).await.unwrap();
            assert!(
                again.steps.iter().all(|s| s.status == StepStatus::Skipped),
                "{:?}",
                again.steps
            );
            if attempts.iter().any(|&a| a > 1) {
                exercised = true;
                break;
            }
        }
        assert!(
            exercised,
            "in {TRIALS} trials the scheduler kill never cost a step its job (it always landed after the job)"
        );
    }

    // Every executor SIGKILLed while a step runs: the run fails within the
    // bound (executor timeout + no-executor grace, then each retry's
    // watchdog and backoff) with an error naming the lost executors and the
    // `--resume` command.
    {
        let mut cluster = LocalCluster::start(2, chaos_cluster_opts(port, &dir.path().join("ca")))
            .await
            .unwrap();
        let log = cluster.state().executors[0].log.clone();
        let from = log_len(&log);
        let cfg = common::cfg(common::INFERENCE, &lake_url);
        let opts = RunOptions {
            engine: Some(on(&cluster, 2)),
            ..RunOptions::default()
        };
        // executor timeout 6 s + grace 6 s + one retry (1 s backoff + 20 s
        // watchdog) + polling slack.
        let bound = Duration::from_secs(6 + 6 + 1 + WATCHDOG + 15);
        let killer = async {
            assert!(wait_for_task_after(&log, from, Duration::from_secs(120)).await);
            cluster.kill_executor(0).unwrap();
            cluster.kill_executor(1).unwrap();
            Instant::now()
        };
        let run = tokio::time::timeout(bound * 3, pipeline::run(&cfg, &opts));
        let (res, killed) = tokio::join!(run, killer);
        let res = res.expect("the run hung after every executor was lost");
        assert!(
            killed.elapsed() < bound,
            "the run outlived the bound after every executor was lost: {:.1} s",
            killed.elapsed().as_secs_f64()
        );
        let err = res
            .expect_err("a run without executors cannot succeed")
            .to_string();
        eprintln!(
            "chaos every executor lost: failed {:.1} s after the kill: {err}",
            killed.elapsed().as_secs_f64()
        );
        assert!(err.contains("--resume"), "{err}");
        // The watchdog's words, or the scheduler's when its no-executor
        // grace ran out first: both name the loss of every executor.
        assert!(
            err.contains("every executor was lost") || err.contains("all executors were lost"),
            "{err}"
        );
    }
}
