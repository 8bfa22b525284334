//! # sluice-testkit
//!
//! Helpers shared by the integration tests of every crate: small generated
//! lakes, pipeline configs, reading the committed predictions of a run in a
//! comparable form, running a process under a timeout, and one Azurite
//! ([`azurite`]) shared by the tests of a binary.

pub mod azurite;

use std::path::{Path, PathBuf};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int32Type, Int64Type};
use arrow::util::display::ArrayFormatter;
use datafusion::prelude::SessionContext;
use sluice_datagen::{self as datagen, DatagenConfig};
use sluice_engine::config::{self, LoadedConfig};
use sluice_lake::commit::{self, Verify};
use sluice_lake::lake::Lake;

/// A small training pipeline (two models, deploys `io`).
pub const TRAINING: &str = r#"
name: lt-train
kind: training
lake: LAKE
engine:
  target_partitions: 2
steps:
  - step: ingest
  - step: features
  - step: train
    test_fraction: 0.25
    seed: 7
    models:
      - name: gbt
        type: gbt
        params: {maxIter: 20, maxDepth: 5, stepSize: 0.2}
      - name: rf
        type: random_forest
        params: {numTrees: 10, maxDepth: 8}
  - step: evaluate
    metric: auc
  - step: deploy
    model_name: io
"#;

/// The inference pipeline scoring the raw samples with `io`.
pub const INFERENCE: &str = r#"
name: lt-infer
kind: inference
lake: LAKE
engine:
  target_partitions: 2
steps:
  - step: ingest
  - step: features
  - step: predict
    model_name: io
"#;

/// A pipeline config text with its lake set.
pub fn config_text(text: &str, lake: &str) -> String {
    text.replace("LAKE", lake)
}

/// A parsed pipeline config for `lake` (a path or URL).
pub fn cfg(text: &str, lake: &str) -> LoadedConfig {
    config::parse(&config_text(text, lake), "test.yaml").unwrap()
}

/// Writes a config file for the `sluice` binary; returns its path.
pub fn write_config(dir: &Path, name: &str, text: &str, lake: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, config_text(text, lake)).unwrap();
    p
}

/// Generates a small lake: `samples` raw samples and as many training rows.
pub async fn generate(lake: &Lake, samples: u64) {
    let mut c = DatagenConfig::new(samples);
    c.devices = (samples / 1_000).max(4);
    c.train_rows = samples;
    datagen::generate(lake, &c).await.unwrap();
}

/// One prediction row, comparable across runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Sample id.
    pub sample_id: i64,
    /// Predicted probability of `indoor`.
    pub probability: f64,
    /// Thresholded label.
    pub indoor: i32,
}

/// The batches of the committed output `dir`, read through its manifest
/// (checksums verified); their row count must be the manifest's.
pub async fn committed_batches(lake: &Lake, dir: &str) -> Vec<RecordBatch> {
    let m = commit::open_committed(lake, dir, Verify::Full)
        .await
        .unwrap_or_else(|e| panic!("{dir}: {e}"));
    let ctx = SessionContext::new();
    lake.register(&ctx);
    let batches = commit::read_parquet(&ctx, lake, &m)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(Some(rows as u64), m.rows, "rows of {dir} vs its manifest");
    batches
}

/// The committed output `dir` as sorted rows (every column rendered), so
/// two outputs compare as multisets: a duplicated or missing row differs.
pub async fn committed_rows(lake: &Lake, dir: &str) -> Vec<String> {
    let mut rows = Vec::new();
    for b in &committed_batches(lake, dir).await {
        let fmt: Vec<_> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &Default::default()).unwrap())
            .collect();
        for i in 0..b.num_rows() {
            let r: Vec<String> = fmt.iter().map(|f| f.value(i).to_string()).collect();
            rows.push(r.join("|"));
        }
    }
    rows.sort();
    rows
}

/// The committed predictions of `run_id`, read through their manifest
/// (checksums verified), sorted by sample id.
pub async fn predictions(lake: &Lake, run_id: &str) -> Vec<Prediction> {
    let batches = committed_batches(lake, &format!("predictions/run={run_id}")).await;
    let mut out = Vec::new();
    for b in &batches {
        let id = b
            .column_by_name("sample_id")
            .unwrap()
            .as_primitive::<Int64Type>();
        let p = b
            .column_by_name("indoor_probability")
            .unwrap()
            .as_primitive::<Float64Type>();
        let y = b
            .column_by_name("indoor")
            .unwrap()
            .as_primitive::<Int32Type>();
        for i in 0..b.num_rows() {
            out.push(Prediction {
                sample_id: id.value(i),
                probability: p.value(i),
                indoor: y.value(i),
            });
        }
    }
    out.sort_by_key(|p| p.sample_id);
    out
}

/// An order-independent checksum of predictions (sorted by sample id, exact
/// probability bits).
pub fn checksum(preds: &[Prediction]) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for p in preds {
        h.update(&p.sample_id.to_le_bytes());
        h.update(&p.probability.to_bits().to_le_bytes());
        h.update(&p.indoor.to_le_bytes());
    }
    format!("{:016x}", h.digest())
}

/// Asserts two prediction sets are equal: same ids, probabilities within
/// `tol`, same labels. Reports the first difference.
pub fn assert_same_predictions(a: &[Prediction], b: &[Prediction], tol: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: row counts differ");
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.sample_id, y.sample_id, "{what}: sample ids differ");
        assert!(
            (x.probability - y.probability).abs() <= tol && x.indoor == y.indoor,
            "{what}: sample {} differs: {:?} vs {:?}",
            x.sample_id,
            x,
            y
        );
    }
}

/// The output of a finished child process.
#[derive(Debug)]
pub struct Finished {
    /// Whether it exited with status 0.
    pub success: bool,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
    /// Wall-clock seconds from spawn to exit.
    pub seconds: f64,
}

/// Spawns `cmd` with piped output and waits at most `timeout` (then kills
/// it and panics, so a hung process never hangs the suite).
pub fn run_with_timeout(cmd: &mut std::process::Command, timeout: std::time::Duration) -> Finished {
    run_watched(cmd, timeout, |_| {})
}

/// [`run_with_timeout`], calling `poll` with the child's pid every 20 ms
/// while it runs (to sample `/proc/<pid>/status`, say).
pub fn run_watched(
    cmd: &mut std::process::Command,
    timeout: std::time::Duration,
    mut poll: impl FnMut(u32),
) -> Finished {
    use std::io::Read;
    use std::process::Stdio;
    let started = std::time::Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = loop {
        poll(child.id());
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    Finished {
        success: status.success(),
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
        seconds: started.elapsed().as_secs_f64(),
    }
}
