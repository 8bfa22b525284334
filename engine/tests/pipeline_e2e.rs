//! End-to-end tests of the training and inference pipelines on a small
//! generated lake: metrics above a floor, one prediction per input sample,
//! the registry layout, reports, partial reruns and resume.

use std::collections::HashSet;
use std::path::Path;

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use sluice_engine::config::{self, StepName};
use sluice_engine::lake::Lake;
use sluice_engine::outputs::StepStatus;
use sluice_engine::pipeline::{self, RunOptions};

use sluice_testkit as common;

use common::{INFERENCE, TRAINING};

fn cfg(text: &str, lake: &Path) -> config::LoadedConfig {
    common::cfg(text, &lake.display().to_string())
}

async fn generated_lake(dir: &Path) -> Lake {
    let lake = Lake::open(dir.to_str().unwrap()).unwrap();
    common::generate(&lake, 40_000).await;
    lake
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn training_then_inference_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = generated_lake(tmp.path()).await;

    let train = pipeline::run(&cfg(TRAINING, tmp.path()), &RunOptions::default())
        .await
        .unwrap();
    assert!(
        train.steps.iter().all(|s| s.status == StepStatus::Ran),
        "{:?}",
        train.steps
    );
    let eval = train.summary.evaluation.as_ref().unwrap();
    for m in ["gbt", "rf"] {
        let acc = eval.models[m].metrics.accuracy;
        let auc = eval.models[m].metrics.auc;
        assert!(acc > 0.85 && auc > 0.9, "{m}: accuracy {acc}, auc {auc}");
    }
    // Registry layout.
    let root = tmp.path();
    assert_eq!(
        std::fs::read_to_string(root.join("models/io/latest"))
            .unwrap()
            .trim(),
        "v0001"
    );
    for f in [
        "model.sluice",
        "transform_state.json",
        "metrics.json",
        "_manifest.json",
    ] {
        assert!(root.join("models/io/v0001").join(f).exists(), "{f} missing");
    }
    // Reports.
    let run_dir = root.join(format!("runs/lt-train/{}", train.run_id));
    let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("gbt") && html.contains("rf"));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("report.json")).unwrap())
            .unwrap();
    assert_eq!(json["models"].as_array().unwrap().len(), 2);

    let infer = pipeline::run(&cfg(INFERENCE, tmp.path()), &RunOptions::default())
        .await
        .unwrap();
    let predicted = infer.summary.predictions.as_ref().unwrap();
    assert_eq!(
        predicted.predictions,
        format!("predictions/run={}", infer.run_id),
        "the predict output is where the predictions are"
    );
    let scoring = &predicted.scoring.as_ref().unwrap().metrics;
    assert!(scoring.accuracy > 0.85, "{scoring:?}");
    assert!(scoring.auc > 0.9, "{scoring:?}");

    // Exactly one prediction per raw sample.
    let ctx = datafusion::prelude::SessionContext::new();
    let preds = ctx
        .read_parquet(
            lake.table_url(&format!("predictions/run={}/", infer.run_id)),
            Default::default(),
        )
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let raw = ctx
        .read_parquet(lake.table_url("raw/samples/"), Default::default())
        .await
        .unwrap()
        .count()
        .await
        .unwrap();
    let mut ids = HashSet::new();
    for b in &preds {
        let id = b
            .column_by_name("sample_id")
            .unwrap()
            .as_primitive::<Int64Type>();
        let p = b
            .column_by_name("indoor_probability")
            .unwrap()
            .as_primitive::<arrow::datatypes::Float64Type>();
        assert_eq!(p.null_count(), 0);
        assert!(p.values().iter().all(|v| (0.0..=1.0).contains(v)));
        for v in id.values() {
            assert!(ids.insert(*v), "duplicate prediction for sample {v}");
        }
        let mv = b.column_by_name("model_version").unwrap();
        assert_eq!(mv.null_count(), 0);
    }
    assert_eq!(ids.len(), raw, "one prediction per raw sample");

    // The default run did not write the join (the generated samples' ids
    // are grouped by device): its ingest output is a manifest with the
    // device_id slices, and predict ran join, features and model in one
    // plan per slice.
    let ingest_dir = root.join(format!("runs/lt-infer/{}/ingest", infer.run_id));
    assert_eq!(
        parquet_files(&ingest_dir),
        0,
        "a deferred join wrote Parquet"
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ingest_dir.join("_manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["rows"], raw as u64, "{manifest}");
    let slices = manifest["extra"]["deferred"]["slices"].as_array().unwrap();
    assert_eq!(slices.len(), 1, "{manifest}");

    // The same predictions, bit for bit, from (a) the join written in four
    // sample_id slices and the features computed inside predict's plan in
    // three device_id slices, and (b) the join deferred in three slices
    // with the feature table written.
    let written_cfg = INFERENCE
        .replace(
            "  - step: ingest\n",
            "  - step: ingest\n    materialize: true\n    join_slices: 4\n",
        )
        .replace(
            "  - step: features\n",
            "  - step: features\n    materialize: false\n    slices: 3\n",
        );
    let deferred_cfg = INFERENCE.replace(
        "  - step: features\n",
        "  - step: features\n    materialize: true\n    slices: 3\n",
    );
    for (text, ingest_parquet, features_parquet) in
        [(&written_cfg, true, false), (&deferred_cfg, false, true)]
    {
        let other = pipeline::run(&cfg(text, tmp.path()), &RunOptions::default())
            .await
            .unwrap();
        assert_eq!(
            common::predictions(&lake, &other.run_id).await,
            common::predictions(&lake, &infer.run_id).await,
            "{text}"
        );
        let dir = root.join(format!("runs/lt-infer/{}", other.run_id));
        assert_eq!(
            parquet_files(&dir.join("ingest")) > 0,
            ingest_parquet,
            "{text}"
        );
        assert_eq!(
            parquet_files(&dir.join("features")) > 0,
            features_parquet,
            "{text}"
        );
    }

    // Partial rerun from train reuses ingest/features of the earlier run.
    let opts = RunOptions {
        from: Some(StepName::Train),
        ..Default::default()
    };
    let again = pipeline::run(&cfg(TRAINING, tmp.path()), &opts)
        .await
        .unwrap();
    let status: Vec<&str> = again.steps.iter().map(|s| s.status.as_str()).collect();
    assert_eq!(
        status,
        ["not_selected", "not_selected", "ran", "ran", "ran"]
    );
    assert_eq!(
        std::fs::read_to_string(root.join("models/io/latest"))
            .unwrap()
            .trim(),
        "v0002"
    );

    // Resume of a finished run skips everything and changes nothing.
    let opts = RunOptions {
        resume: Some(train.run_id.clone()),
        ..Default::default()
    };
    let resumed = pipeline::run(&cfg(TRAINING, tmp.path()), &opts)
        .await
        .unwrap();
    assert!(
        resumed
            .steps
            .iter()
            .all(|s| s.status == StepStatus::Skipped),
        "{:?}",
        resumed.steps
    );

    // Samples whose ids are not grouped by device: four device_id slices
    // would each read most of the per-sample tables, so the ingest step
    // writes the join unless told not to; both give the same predictions.
    scatter_devices(root).await;
    let four = INFERENCE.replace(
        "  - step: features\n",
        "  - step: features\n    slices: 4\n",
    );
    let forced = four.replace(
        "  - step: ingest\n",
        "  - step: ingest\n    materialize: false\n",
    );
    let auto = pipeline::run(&cfg(&four, tmp.path()), &RunOptions::default())
        .await
        .unwrap();
    let deferred = pipeline::run(&cfg(&forced, tmp.path()), &RunOptions::default())
        .await
        .unwrap();
    assert_eq!(
        common::predictions(&lake, &auto.run_id).await,
        common::predictions(&lake, &deferred.run_id).await
    );
    for (run, written) in [(&auto, true), (&deferred, false)] {
        let dir = root.join(format!("runs/lt-infer/{}/ingest", run.run_id));
        assert_eq!(parquet_files(&dir) > 0, written, "{}", run.run_id);
    }
}

/// Rewrites `raw/samples` with each sample's device drawn across all
/// devices by its id (`sample_id * 7919 mod devices`), so a device's
/// samples are spread over the whole id range.
async fn scatter_devices(lake: &Path) {
    let ctx = datafusion::prelude::SessionContext::new();
    let dir = lake.join("raw/samples");
    let samples = ctx
        .read_parquet(dir.to_str().unwrap(), Default::default())
        .await
        .unwrap();
    ctx.register_table("s", samples.into_view()).unwrap();
    let batches = ctx
        .sql(
            "SELECT sample_id, \
               (SELECT min(device_id) FROM s) + (sample_id * 7919) % \
                 ((SELECT max(device_id) FROM s) - (SELECT min(device_id) FROM s) + 1) AS device_id, \
               ts, cell_key, network_type FROM s ORDER BY sample_id",
        )
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    let file = std::fs::File::create(dir.join("part-00000.parquet")).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batches[0].schema(), None).unwrap();
    for b in &batches {
        w.write(b).unwrap();
    }
    w.close().unwrap();
}

#[test]
fn config_errors_are_precise() {
    let unknown =
        "name: x\nkind: training\nlake: /tmp/x\nsteps:\n  - step: ingest\n    csv_globb: a\n";
    let e = config::parse(unknown, "bad.yaml").unwrap_err().to_string();
    assert!(e.contains("bad.yaml:6") && e.contains("csv_globb"), "{e}");

    let wrong_type = "name: x\nkind: training\nlake: /tmp/x\nsteps:\n  - step: train\n    test_fraction: lots\n    models: []\n";
    let e = config::parse(wrong_type, "t.yaml").unwrap_err().to_string();
    assert!(e.contains("t.yaml:") && e.contains("test_fraction"), "{e}");

    let missing_env = "name: x\nkind: training\nlake: ${SLUICE_TEST_SURELY_UNSET_VAR}\nsteps: []\n";
    let e = config::parse(missing_env, "e.yaml")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("e.yaml:3:7") && e.contains("SLUICE_TEST_SURELY_UNSET_VAR"),
        "{e}"
    );

    let unmaterialized = "name: x\nkind: training\nlake: /tmp/x\nsteps:\n  - step: features\n    materialize: false\n";
    let e = config::parse(unmaterialized, "f.yaml")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("steps[0].materialize") && e.contains("inference"),
        "{e}"
    );

    let bad_grid = "name: x\nkind: training\nlake: /tmp/x\nsteps:\n  - step: train\n    models:\n      - name: g\n        type: gbt\n        grid: {maxDepthh: [1, 2]}\n";
    let e = config::parse(bad_grid, "g.yaml").unwrap_err().to_string();
    assert!(e.contains("maxDepthh") && e.contains("maxDepth"), "{e}");

    let model_key = "name: x\nkind: training\nlake: /tmp/x\nsteps:\n  - step: train\n    models:\n      - name: g\n        type: gbt\n        gird: {maxDepth: [1, 2]}\n";
    let e = config::parse(model_key, "m.yaml").unwrap_err().to_string();
    assert!(e.contains("m.yaml:9") && e.contains("gird"), "{e}");

    let bad_param = "name: x\nkind: training\nlake: /tmp/x\nsteps:\n  - step: train\n    models:\n      - name: g\n        type: gbt\n        params: {maxDepht: 3}\n";
    let e = config::parse(bad_param, "p.yaml").unwrap_err().to_string();
    assert!(
        e.contains("p.yaml:") && e.contains("maxDepht") && e.contains("model `g`"),
        "{e}"
    );

    let order = "name: x\nkind: inference\nlake: /tmp/x\nsteps:\n  - step: predict\n    model_name: m\n  - step: ingest\n";
    let e = config::parse(order, "o.yaml").unwrap_err().to_string();
    assert!(e.contains("steps[1]") && e.contains("order"), "{e}");
}

#[test]
fn example_configs_validate() {
    std::env::remove_var("SLUICE_LAKE");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    for f in [
        "training.yaml",
        "inference.yaml",
        "quickstart-training.yaml",
        "quickstart-inference.yaml",
    ] {
        let c = config::load(&root.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(!c.config.steps.is_empty());
    }
}

/// Every file under `dir`, recursively.
fn parquet_files(dir: &Path) -> usize {
    walk(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .count()
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Issue 18: the evaluate step streams the held-out rows (filtered and
/// sorted where the query runs) and the deploy step counts the drift
/// reference with aggregates, so neither holds the table on the driver.
/// Their outputs equal the in-memory computation over the whole matrix in
/// `sample_id` order that they replaced: metrics, learning curves and the
/// deployed model's drift reference, value for value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_evaluation_equals_the_in_memory_one() {
    use datafusion::logical_expr::col;
    use sluice_engine::commit::{self, Verify};
    use sluice_engine::outputs::{FeaturesOutput, ManifestOutput};
    use sluice_ml::{FeatureMatrix, ModelArtefact};

    let tmp = tempfile::tempdir().unwrap();
    let lake = generated_lake(tmp.path()).await;
    let train = pipeline::run(&cfg(TRAINING, tmp.path()), &RunOptions::default())
        .await
        .unwrap();
    let ev = train.summary.evaluation.as_ref().unwrap();
    let run = format!("runs/lt-train/{}", train.run_id);

    // The whole features output in sample_id order, split by device.
    let feats = commit::open_committed(&lake, &format!("{run}/features"), Verify::Size)
        .await
        .unwrap();
    let ctx = datafusion::prelude::SessionContext::new();
    lake.register(&ctx);
    let batches = commit::read_parquet(&ctx, &lake, &feats)
        .await
        .unwrap()
        .sort(vec![col("sample_id").sort(true, false)])
        .unwrap()
        .collect()
        .await
        .unwrap();
    let names = feats.output::<FeaturesOutput>().unwrap().feature_names;
    let x = FeatureMatrix::from_batches(&batches, &names).unwrap();
    let mut y = Vec::new();
    let mut test = Vec::new();
    let mut i = 0;
    for b in &batches {
        let label = arrow::compute::cast(
            b.column_by_name("indoor").unwrap(),
            &arrow::datatypes::DataType::Int64,
        )
        .unwrap();
        y.extend(
            label
                .as_primitive::<Int64Type>()
                .values()
                .iter()
                .map(|v| (*v != 0) as u8),
        );
        let d = b.column_by_name("device_id").unwrap();
        for d in d.as_primitive::<Int64Type>().values().iter() {
            if sluice_engine::dtrain::is_test_device(*d, 0.25, 7) {
                test.push(i);
            }
            i += 1;
        }
    }
    let xt = x.select_rows(&test);
    let yt: Vec<u8> = test.iter().map(|&i| y[i]).collect();
    assert_eq!(ev.test_rows, yt.len() as u64);

    for m in ["gbt", "rf"] {
        let man = commit::open_committed(&lake, &format!("{run}/train/{m}"), Verify::Size)
            .await
            .unwrap();
        let f = man
            .files
            .iter()
            .find(|f| f.path.ends_with("model.sluice"))
            .unwrap();
        let art = ModelArtefact::from_bytes(&lake.get(&f.path).await.unwrap()).unwrap();
        let proba = art.model.predict_proba(&xt).unwrap();
        let metrics = sluice_ml::evaluate(&yt, &proba, ev.threshold);
        let curve = sluice_ml::curves::learning_curve(&art.model, &xt, &yt, 25).unwrap();
        let got = &ev.models[m];
        assert_eq!(json(&got.metrics), json(&metrics), "{m}: metrics");
        assert_eq!(got.curves.learning_curve, curve, "{m}: learning curve");
    }

    // The deployed model's drift reference: features over every row,
    // predictions over the held-out rows.
    let v = sluice_engine::registry::resolve(&lake, "io", "latest")
        .await
        .unwrap();
    let deployed = ModelArtefact::from_bytes(
        &sluice_engine::registry::load_artefact(&lake, &v)
            .await
            .unwrap(),
    )
    .unwrap();
    let cols: Vec<&[f64]> = deployed
        .feature_names
        .iter()
        .map(|n| x.column(x.names().iter().position(|m| m == n).unwrap()))
        .collect();
    let proba = deployed.model.predict_proba(&xt).unwrap();
    let reference = sluice_ml::drift::reference_profile(&deployed.model, &cols, &proba).unwrap();
    assert_eq!(
        json(deployed.drift_reference.as_ref().unwrap()),
        json(&reference),
        "drift reference"
    );
}

/// A value as JSON, to compare outputs (NaN metrics compare equal as `null`).
fn json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap()
}
