//! Kill -9 the real `sluice` binary at several points of a run, resume it
//! with `--resume`, and show the predictions are identical to those of an
//! uninterrupted run; meanwhile a reader keeps reading every committed
//! output of the run through its manifest and never sees a partial one.
//!
//! A kill point is a condition on the lake (e.g. "the features step has an
//! attempt prefix `data-*` but no manifest"). The runner polls the lake,
//! freezes the process with SIGSTOP as soon as the condition holds, checks
//! the condition again on the frozen lake (so the state at the kill is known
//! exactly), then sends SIGKILL. If the writer raced past the point, the
//! attempt is repeated with a fresh run id.

use sluice_testkit as common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sluice_engine::commit::{self, Verify};
use sluice_engine::lake::Lake;
use sluice_engine::outputs::{EvaluateOutput, ManifestOutput};
use sluice_engine::registry;

const SAMPLES: u64 = 30_000;
const PROCESS_TIMEOUT: Duration = Duration::from_secs(120);

fn sluice() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sluice"));
    c.env("RUST_LOG", "warn");
    c
}

/// A local lake with generated data and the two pipeline configs.
struct TestLake {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    lake: Lake,
    training: PathBuf,
    inference: PathBuf,
    /// The inference config with the join written by the ingest step
    /// (`materialize: true`; by default the join is left to predict's plan).
    inference_written: PathBuf,
}

async fn test_lake() -> TestLake {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("lake");
    let url = root.to_str().unwrap().to_string();
    let lake = Lake::open(&url).unwrap();
    common::generate(&lake, SAMPLES).await;
    let training = common::write_config(tmp.path(), "training.yaml", common::TRAINING, &url);
    let inference = common::write_config(tmp.path(), "inference.yaml", common::INFERENCE, &url);
    let inference_written = common::write_config(
        tmp.path(),
        "inference-written.yaml",
        &common::INFERENCE.replace(
            "  - step: ingest\n",
            "  - step: ingest\n    materialize: true\n",
        ),
        &url,
    );
    TestLake {
        _tmp: tmp,
        root,
        lake,
        training,
        inference,
        inference_written,
    }
}

/// Runs `sluice run <config> <args>` to completion; returns the step
/// statuses it printed (`[("ingest", "skipped"), ...]`).
fn run_to_end(config: &Path, args: &[&str]) -> Vec<(String, String)> {
    let out = common::run_with_timeout(sluice().arg("run").arg(config).args(args), PROCESS_TIMEOUT);
    assert!(
        out.success,
        "sluice run {} {args:?} failed:\n{}",
        config.display(),
        out.stderr
    );
    statuses(&out.stdout)
}

fn statuses(stdout: &str) -> Vec<(String, String)> {
    const STEPS: [&str; 6] = [
        "ingest", "features", "train", "evaluate", "deploy", "predict",
    ];
    stdout
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let (step, status) = (w.next()?, w.next()?);
            (STEPS.contains(&step) && ["ran", "skipped", "not_selected"].contains(&status))
                .then(|| (step.to_string(), status.to_string()))
        })
        .collect()
}

fn expect_statuses(got: &[(String, String)], want: &[(&str, &str)], what: &str) {
    let got: Vec<(&str, &str)> = got.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(got, want, "{what}: step statuses after --resume");
}

/// Whether `dir` (absolute) has an attempt prefix `data-*`.
fn has_attempt(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("data-"))
        })
        .unwrap_or(false)
}

/// Whether `dir` has an attempt prefix holding a complete (visible) file;
/// a local store stages a file as `<name>#<n>` until it is complete.
fn has_attempt_file(dir: &Path) -> bool {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return false;
    };
    rd.flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("data-"))
        .any(|e| {
            std::fs::read_dir(e.path())
                .map(|files| {
                    files
                        .flatten()
                        .any(|f| !f.file_name().to_string_lossy().contains('#'))
                })
                .unwrap_or(false)
        })
}

fn committed(dir: &Path) -> bool {
    dir.join(commit::MANIFEST).exists()
}

/// Sends a signal with `kill(1)`.
fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Starts `sluice run <config> --run-id <id>` and kill -9s it when `point`
/// holds. Returns whether the kill happened with `point` still holding on
/// the frozen process (false: the run raced past it or finished).
fn run_and_kill(config: &Path, run_id: &str, point: &dyn Fn() -> bool) -> bool {
    let mut child = sluice()
        .arg("run")
        .arg(config)
        .args(["--run-id", run_id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sluice");
    let deadline = Instant::now() + PROCESS_TIMEOUT;
    loop {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if point() {
            signal(child.id(), "-STOP");
            let held = point();
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            return held;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("kill point never reached within {PROCESS_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// A reader that keeps opening the committed outputs of a run while it is
/// written, killed and resumed: every manifest it sees must list files that
/// exist with the recorded sizes and checksums and hold the recorded rows.
struct Reader {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<(usize, Vec<String>)>,
}

impl Reader {
    fn start(lake_url: &str, dirs: Vec<String>, model: Option<&'static str>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let url = lake_url.to_string();
        let handle = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let lake = Lake::open(&url).unwrap();
                let ctx = datafusion::prelude::SessionContext::new();
                let (mut seen, mut errors) = (0usize, Vec::new());
                while !flag.load(Ordering::Relaxed) {
                    for dir in &dirs {
                        match check_committed(&ctx, &lake, dir).await {
                            Ok(true) => seen += 1,
                            Ok(false) => {}
                            Err(e) => errors.push(format!("{dir}: {e}")),
                        }
                    }
                    if let Some(name) = model {
                        if registry::latest_version(&lake, name)
                            .await
                            .ok()
                            .flatten()
                            .is_some()
                        {
                            match registry::resolve(&lake, name, "latest").await {
                                Ok(_) => seen += 1,
                                Err(e) => errors.push(format!("models/{name}/latest: {e}")),
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                (seen, errors)
            })
        });
        Self { stop, handle }
    }

    /// Stops the reader; returns how many committed outputs it checked.
    fn finish(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        let (seen, errors) = self.handle.join().unwrap();
        assert!(
            errors.is_empty(),
            "a reader observed a partial or damaged output:\n{}",
            errors.join("\n")
        );
        seen
    }
}

/// `Ok(false)` when `dir` has no manifest yet; `Ok(true)` when it has one
/// and the output is complete and consistent.
async fn check_committed(
    ctx: &datafusion::prelude::SessionContext,
    lake: &Lake,
    dir: &str,
) -> Result<bool, String> {
    if commit::read_manifest(lake, dir)
        .await
        .map_err(|e| e.to_string())?
        .is_none()
    {
        return Ok(false);
    }
    let m = commit::open_committed(lake, dir, Verify::Full)
        .await
        .map_err(|e| e.to_string())?;
    let parquet: Vec<String> = m
        .file_urls(lake)
        .into_iter()
        .filter(|u| u.ends_with(".parquet"))
        .collect();
    if !parquet.is_empty() {
        let rows = ctx
            .read_parquet(parquet, Default::default())
            .await
            .map_err(|e| e.to_string())?
            .count()
            .await
            .map_err(|e| e.to_string())?;
        if Some(rows as u64) != m.rows {
            return Err(format!(
                "{rows} rows in the files, the manifest says {:?}",
                m.rows
            ));
        }
    }
    Ok(true)
}

/// Every file under the run's directories is a manifest, a report, or listed
/// by a manifest: the resumed run left no attempt behind.
fn assert_no_leftovers(root: &Path, dirs: &[String]) {
    for dir in dirs {
        let abs = root.join(dir);
        let Some(m) = std::fs::read(abs.join(commit::MANIFEST))
            .ok()
            .and_then(|b| serde_json::from_slice::<commit::Manifest>(&b).ok())
        else {
            continue;
        };
        let mut stack = vec![abs.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().to_string();
                if p.is_dir() {
                    assert!(
                        !e.file_name().to_string_lossy().starts_with("data-")
                            || m.files
                                .iter()
                                .any(|f| f.path.starts_with(&format!("{rel}/"))),
                        "abandoned attempt left behind: {rel}"
                    );
                    stack.push(p);
                } else if !rel.ends_with(commit::MANIFEST) && !rel.contains("/rejected/") {
                    assert!(
                        m.files.iter().any(|f| f.path == rel),
                        "file no manifest lists: {rel}"
                    );
                }
            }
        }
    }
}

fn infer_dirs(run_id: &str) -> Vec<String> {
    vec![
        format!("runs/lt-infer/{run_id}/ingest"),
        format!("runs/lt-infer/{run_id}/features"),
        format!("predictions/run={run_id}"),
    ]
}

fn train_dirs(run_id: &str) -> Vec<String> {
    [
        "ingest",
        "features",
        "train/gbt",
        "train/rf",
        "evaluate",
        "deploy",
    ]
    .iter()
    .map(|s| format!("runs/lt-train/{run_id}/{s}"))
    .collect()
}

/// One kill-and-resume scenario: kills a run at `point` (retrying with a
/// fresh run id if the writer raced past it), resumes it, and returns the
/// run id and the resumed run's step statuses.
fn kill_and_resume(
    t: &TestLake,
    config: &Path,
    name: &str,
    dirs: fn(&str) -> Vec<String>,
    point: &dyn Fn(&str) -> bool,
    model: Option<&'static str>,
) -> (String, Vec<(String, String)>) {
    for attempt in 1..=5 {
        let run_id = format!("{name}-{attempt}");
        let reader = Reader::start(t.root.to_str().unwrap(), dirs(&run_id), model);
        let started = Instant::now();
        let hit = run_and_kill(config, &run_id, &|| point(&run_id));
        let killed_after = started.elapsed();
        if !hit {
            reader.finish();
            eprintln!("{name}: attempt {attempt} raced past the kill point, retrying");
            continue;
        }
        let st = run_to_end(config, &["--resume", &run_id]);
        let seen = reader.finish();
        eprintln!(
            "{name}: killed after {:.2}s, resumed ({st:?}); the reader checked {seen} committed outputs",
            killed_after.as_secs_f64()
        );
        assert_no_leftovers(&t.root, &dirs(&run_id));
        return (run_id, st);
    }
    panic!("{name}: the kill point was never caught in 5 attempts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inference_killed_at_each_point_resumes_to_identical_predictions() {
    let t = test_lake().await;
    run_to_end(&t.training, &["--run-id", "train"]);
    let base = run_to_end(&t.inference, &["--run-id", "base"]);
    assert!(base.iter().all(|(_, s)| s == "ran"), "{base:?}");
    let expected = common::predictions(&t.lake, "base").await;
    assert_eq!(expected.len() as u64, SAMPLES);
    let sum = common::checksum(&expected);
    let root = t.root.clone();
    let step = move |run: &str, s: &str| root.join(format!("runs/lt-infer/{run}/{s}"));
    let preds = {
        let root = t.root.clone();
        move |run: &str| root.join(format!("predictions/run={run}"))
    };

    // 1. During the ingest write: a written file in an attempt, no manifest
    //    (with nothing visible yet there is no run to resume). The join is
    //    written here; the other points run with the default, where ingest
    //    commits only the checked slices and predict runs the join.
    let st = step.clone();
    let (run, got) = kill_and_resume(
        &t,
        &t.inference_written,
        "during-ingest",
        infer_dirs,
        &move |r: &str| has_attempt_file(&st(r, "ingest")) && !committed(&st(r, "ingest")),
        None,
    );
    expect_statuses(
        &got,
        &[("ingest", "ran"), ("features", "ran"), ("predict", "ran")],
        &run,
    );
    assert_eq!(
        common::checksum(&common::predictions(&t.lake, &run).await),
        sum,
        "{run}"
    );

    // 2. Between steps: right after the ingest manifest appeared, before
    //    the features step wrote anything.
    let st = step.clone();
    let (run, got) = kill_and_resume(
        &t,
        &t.inference,
        "after-ingest",
        infer_dirs,
        &move |r: &str| committed(&st(r, "ingest")) && !has_attempt(&st(r, "features")),
        None,
    );
    expect_statuses(
        &got,
        &[
            ("ingest", "skipped"),
            ("features", "ran"),
            ("predict", "ran"),
        ],
        &run,
    );
    assert_eq!(
        common::checksum(&common::predictions(&t.lake, &run).await),
        sum,
        "{run}"
    );

    // 3. During the features write.
    let st = step.clone();
    let (run, got) = kill_and_resume(
        &t,
        &t.inference,
        "during-features",
        infer_dirs,
        &move |r: &str| has_attempt(&st(r, "features")) && !committed(&st(r, "features")),
        None,
    );
    expect_statuses(
        &got,
        &[
            ("ingest", "skipped"),
            ("features", "ran"),
            ("predict", "ran"),
        ],
        &run,
    );
    assert_eq!(
        common::checksum(&common::predictions(&t.lake, &run).await),
        sum,
        "{run}"
    );

    // 4. During the predictions write.
    let p = preds.clone();
    let (run, got) = kill_and_resume(
        &t,
        &t.inference,
        "during-predict",
        infer_dirs,
        &move |r: &str| has_attempt(&p(r)) && !committed(&p(r)),
        None,
    );
    expect_statuses(
        &got,
        &[
            ("ingest", "skipped"),
            ("features", "skipped"),
            ("predict", "ran"),
        ],
        &run,
    );
    let resumed = common::predictions(&t.lake, &run).await;
    common::assert_same_predictions(&resumed, &expected, 0.0, &run);
    assert_eq!(common::checksum(&resumed), sum, "{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn training_killed_mid_train_resumes_to_an_identical_model() {
    let t = test_lake().await;
    // Killed while training: features committed, no model committed yet.
    let root = t.root.clone();
    let (run, got) = kill_and_resume(
        &t,
        &t.training,
        "during-train",
        train_dirs,
        &move |r: &str| {
            let d = root.join(format!("runs/lt-train/{r}"));
            committed(&d.join("features"))
                && !committed(&d.join("train/gbt"))
                && !committed(&d.join("train/rf"))
        },
        Some("io"),
    );
    expect_statuses(
        &got,
        &[
            ("ingest", "skipped"),
            ("features", "skipped"),
            ("train", "ran"),
            ("evaluate", "ran"),
            ("deploy", "ran"),
        ],
        &run,
    );
    assert_eq!(
        registry::latest_version(&t.lake, "io")
            .await
            .unwrap()
            .as_deref(),
        Some("v0001")
    );
    run_to_end(&t.inference, &["--run-id", "with-resumed-model"]);

    // An uninterrupted training run deploys v0002; its predictions must be
    // those of the model the killed-and-resumed run trained.
    let reader = Reader::start(
        t.root.to_str().unwrap(),
        train_dirs("uninterrupted"),
        Some("io"),
    );
    run_to_end(&t.training, &["--run-id", "uninterrupted"]);
    assert!(reader.finish() > 0);
    assert_eq!(
        registry::latest_version(&t.lake, "io")
            .await
            .unwrap()
            .as_deref(),
        Some("v0002")
    );
    run_to_end(&t.inference, &["--run-id", "with-uninterrupted-model"]);
    let a = common::predictions(&t.lake, "with-resumed-model").await;
    let b = common::predictions(&t.lake, "with-uninterrupted-model").await;
    common::assert_same_predictions(&a, &b, 0.0, "resumed vs uninterrupted training");
    assert_eq!(common::checksum(&a), common::checksum(&b));
    let eval = |run: &str| {
        let p = t
            .root
            .join(format!("runs/lt-train/{run}/evaluate/{}", commit::MANIFEST));
        let m: commit::Manifest = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
        m.output::<EvaluateOutput>().unwrap().models
    };
    assert_eq!(
        eval(&run),
        eval("uninterrupted"),
        "evaluation metrics differ"
    );
}
