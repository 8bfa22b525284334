//! The lake on Azure Blob / ADLS through `object_store`, against a real
//! Azurite (`tests/common/azurite.rs`): the full training and inference
//! pipelines on an `az://` lake (and the `abfss://` form of the same lake)
//! predict exactly what they predict on a local lake; a committed file that
//! is altered or deleted in the Azure lake is detected on read; an
//! unreachable endpoint, a wrong key and a missing container each fail with
//! the URL and what to check, never the key.
//!
//! All Azurite tests live in this one binary: they share one emulator and
//! the emulator settings in the process environment.

use sluice_testkit as common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::azurite::{self, ACCOUNT_KEY};
use object_store::ObjectStoreExt;
use sluice_engine::commit::{self, Verify};
use sluice_engine::config::StepName;
use sluice_engine::lake::Lake;
use sluice_engine::outputs::StepStatus;
use sluice_engine::pipeline::{self, RunOptions};

const SAMPLES: u64 = 20_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_on_azurite_match_a_local_lake() {
    let az = azurite::shared();
    az.create_container("lake-e2e");
    let az_url = "az://lake-e2e/lakes/one";
    // The same lake in the Hadoop/ADLS Gen2 form: in emulator mode the
    // account in the host is the development account.
    let abfss_url = "abfss://lake-e2e@devstoreaccount1.dfs.core.windows.net/lakes/one";
    let az_lake = Lake::open(az_url).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let local_url = tmp.path().to_str().unwrap().to_string();
    let local_lake = Lake::open(&local_url).unwrap();
    let t = Instant::now();
    common::generate(&az_lake, SAMPLES).await;
    common::generate(&local_lake, SAMPLES).await;
    eprintln!(
        "datagen (azurite + local): {:.1}s",
        t.elapsed().as_secs_f64()
    );

    // Training on the az:// lake, then on the local lake.
    let t = Instant::now();
    let az_train = pipeline::run(
        &common::cfg(common::TRAINING, az_url),
        &RunOptions::default(),
    )
    .await
    .unwrap();
    eprintln!("training on azurite: {:.1}s", t.elapsed().as_secs_f64());
    assert!(
        az_train.steps.iter().all(|s| s.status == StepStatus::Ran),
        "{:?}",
        az_train.steps
    );
    assert_eq!(az_train.summary.deployed.as_ref().unwrap().version, "v0001");
    let local_train = pipeline::run(
        &common::cfg(common::TRAINING, &local_url),
        &RunOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        az_train.summary.evaluation, local_train.summary.evaluation,
        "evaluation metrics differ between the azurite and the local lake"
    );

    // Everything landed in the container, committed.
    assert_eq!(
        az_lake.get("models/io/latest").await.unwrap().as_ref(),
        b"v0001"
    );
    for dir in [
        "ingest",
        "features",
        "train/gbt",
        "train/rf",
        "evaluate",
        "deploy",
    ] {
        let d = format!("runs/lt-train/{}/{dir}", az_train.run_id);
        commit::open_committed(&az_lake, &d, Verify::Full)
            .await
            .unwrap_or_else(|e| panic!("{d}: {e}"));
    }
    commit::open_committed(&az_lake, "models/io/v0001", Verify::Full)
        .await
        .unwrap();
    assert!(az_lake
        .exists(&format!("runs/lt-train/{}/report.html", az_train.run_id))
        .await
        .unwrap());

    // Inference through the abfss:// form of the same container.
    let t = Instant::now();
    let az_infer = pipeline::run(
        &common::cfg(common::INFERENCE, abfss_url),
        &RunOptions::default(),
    )
    .await
    .unwrap();
    eprintln!(
        "inference on azurite (abfss://): {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let local_infer = pipeline::run(
        &common::cfg(common::INFERENCE, &local_url),
        &RunOptions::default(),
    )
    .await
    .unwrap();
    let az_preds = common::predictions(&az_lake, &az_infer.run_id).await;
    let local_preds = common::predictions(&local_lake, &local_infer.run_id).await;
    assert_eq!(
        az_preds.len() as u64,
        SAMPLES,
        "one prediction per raw sample"
    );
    common::assert_same_predictions(&az_preds, &local_preds, 1e-12, "azurite vs local lake");
    assert_eq!(common::checksum(&az_preds), common::checksum(&local_preds));
    assert!(
        az_infer
            .summary
            .predictions
            .as_ref()
            .and_then(|p| p.scoring.as_ref())
            .unwrap()
            .metrics
            .auc
            > 0.9,
        "{:?}",
        az_infer.summary
    );

    // A committed file altered in the Azure lake is detected on read: the
    // predict step of the inference run refuses its features input.
    let feats_dir = format!("runs/lt-infer/{}/features", az_infer.run_id);
    let feats = commit::read_manifest(&az_lake, &feats_dir)
        .await
        .unwrap()
        .unwrap();
    let victim = feats
        .files
        .iter()
        .find(|f| f.path.ends_with(".parquet"))
        .unwrap()
        .clone();
    let original = az_lake.get(&victim.path).await.unwrap();
    az_lake
        .put(&victim.path, Bytes::from_static(b"PAR1 not really"))
        .await
        .unwrap();
    let rerun = RunOptions {
        steps: Some(vec![StepName::Predict]),
        run_id: Some(az_infer.run_id.clone()),
        ..Default::default()
    };
    let e = pipeline::run(&common::cfg(common::INFERENCE, az_url), &rerun)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("altered") && e.contains(&format!("az://lake-e2e/lakes/one/{}", victim.path)),
        "{e}"
    );
    // ... and a deleted one.
    az_lake
        .store()
        .delete(&az_lake.path(&victim.path))
        .await
        .unwrap();
    let e = pipeline::run(&common::cfg(common::INFERENCE, az_url), &rerun)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing") && e.contains(&victim.path), "{e}");
    az_lake.put(&victim.path, original).await.unwrap();
    let ok = pipeline::run(&common::cfg(common::INFERENCE, az_url), &rerun)
        .await
        .unwrap();
    assert_eq!(
        ok.steps.last().unwrap().status,
        StepStatus::Skipped,
        "restored input: predictions still match"
    );

    // A model artefact altered in place with the same size: the checksum
    // check of the registry catches it before any prediction.
    let model = commit::read_manifest(&az_lake, "models/io/v0001")
        .await
        .unwrap()
        .unwrap();
    let art = model
        .files
        .iter()
        .find(|f| f.path.ends_with("model.sluice"))
        .unwrap();
    let mut bytes = az_lake.get(&art.path).await.unwrap().to_vec();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    az_lake.put(&art.path, Bytes::from(bytes)).await.unwrap();
    let e = pipeline::run(
        &common::cfg(common::INFERENCE, az_url),
        &RunOptions::default(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("checksum") && e.contains("model.sluice") && e.contains("az://lake-e2e/"),
        "{e}"
    );
}

/// Runs `sluice run <config>` with extra environment; returns (success, stderr).
fn sluice_run(config: &Path, env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.arg("run").arg(config);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = common::run_with_timeout(&mut cmd, Duration::from_secs(90));
    (out.success, out.stderr)
}

#[test]
fn unreachable_endpoint_wrong_key_and_missing_container_are_named() {
    let az = azurite::shared();
    az.create_container("lake-bad");
    let tmp = tempfile::tempdir().unwrap();
    let good = common::write_config(
        tmp.path(),
        "good.yaml",
        common::INFERENCE,
        "az://lake-bad/l",
    );
    let never = |e: &str| {
        assert!(!e.contains(ACCOUNT_KEY), "the account key was printed: {e}");
        eprintln!("--- user sees:\n{}", e.trim());
    };

    // Sanity: the same config against the running emulator gets past the
    // store (the pre-run check lists the registry there) and fails on the
    // empty lake, naming what is missing, before any data is read.
    let (ok, e) = sluice_run(&good, &[]);
    assert!(!ok);
    assert!(
        e.contains("az://lake-bad/l/models/io/") && e.contains("no deployed version"),
        "{e}"
    );

    // Unreachable endpoint (nothing listens on the port). One retry keeps
    // the test quick; the default policy retries for up to 3 minutes.
    let port = azurite::free_port();
    let dead = format!("http://127.0.0.1:{port}");
    let t = Instant::now();
    let (ok, e) = sluice_run(
        &good,
        &[
            ("AZURITE_BLOB_STORAGE_URL", &dead),
            ("SLUICE_LAKE_MAX_RETRIES", "1"),
        ],
    );
    assert!(!ok);
    assert!(
        // The first object the run touches is its `runs/.../_run.json` marker.
        e.contains("az://lake-bad/l/") && e.contains("cannot reach") && e.contains(&dead),
        "{e}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(60),
        "unreachable endpoint took {:?}",
        t.elapsed()
    );
    never(&e);

    // Wrong key: a well-formed key that is not the account's.
    let wrong = azurite::base64_encode(&[7u8; 64]);
    let (ok, e) = sluice_run(&good, &[("AZURE_STORAGE_ACCOUNT_KEY", &wrong)]);
    assert!(!ok);
    assert!(
        e.contains("az://lake-bad/l/")
            && e.contains("rejected the credentials")
            && e.contains("AZURE_STORAGE_ACCOUNT_KEY"),
        "{e}"
    );
    assert!(!e.contains(&wrong), "the wrong key was printed: {e}");
    never(&e);

    // Missing container.
    let missing = common::write_config(
        tmp.path(),
        "missing.yaml",
        common::INFERENCE,
        "az://no-such-container/l",
    );
    let (ok, e) = sluice_run(&missing, &[]);
    assert!(!ok);
    assert!(
        e.contains("az://no-such-container/l/")
            && e.contains("container `no-such-container` does not exist"),
        "{e}"
    );
    never(&e);
}

#[test]
fn shared_key_helpers_match_known_vectors() {
    // RFC 4231 test case 2.
    let mac = azurite::hmac_sha256(b"Jefe", b"what do ya want for nothing?");
    assert_eq!(
        hex::encode(mac),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    assert_eq!(azurite::base64_encode(b"foobar"), "Zm9vYmFy");
    assert_eq!(azurite::base64_encode(b"fooba"), "Zm9vYmE=");
    assert_eq!(azurite::base64_decode("Zm9vYg==").unwrap(), b"foob");
    assert_eq!(azurite::base64_decode(ACCOUNT_KEY).unwrap().len(), 64);
}
