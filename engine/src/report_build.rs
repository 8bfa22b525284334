//! Builds the run report from the run's committed manifests (so a partial
//! rerun still reports everything committed for the run).

use crate::config::StepName;
use crate::pipeline::{RunContext, StepOutcome};
use crate::report::{
    Confusion, DeployedModel, DriftRow, DriftSection, GridPoint, Importance, MetricSet,
    ModelReport, RunReport, StepReport, StepStatus,
};

fn metric_set(m: &serde_json::Value) -> MetricSet {
    let f = |k: &str| m.get(k).and_then(|v| v.as_f64());
    MetricSet {
        samples: m.get("n").and_then(|v| v.as_u64()),
        accuracy: f("accuracy"),
        weighted_precision: f("weighted_precision"),
        weighted_recall: f("weighted_recall"),
        f1: f("f1"),
        auc: f("auc"),
        pr_auc: f("pr_auc"),
        log_loss: f("log_loss"),
    }
}

fn drift_row(c: &sluice_ml::drift::ColumnDrift) -> DriftRow {
    DriftRow {
        name: c.name.clone(),
        psi: c.psi,
        ks: c.ks,
        ks_p_value: c.ks_p_value,
        null_rate_reference: c.null_rate_reference,
        null_rate_current: c.null_rate_current,
        status: match c.status {
            sluice_ml::drift::DriftStatus::Ok => "ok",
            sluice_ml::drift::DriftStatus::Warn => "warn",
            sluice_ml::drift::DriftStatus::Fail => "fail",
        }
        .into(),
        reference_shares: c.reference_shares.clone(),
        current_shares: c.current_shares.clone(),
        upper_bounds: c.upper_bounds.clone(),
    }
}

/// The report's copy of a drift check.
pub(crate) fn drift_section(d: &sluice_ml::drift::DriftReport) -> DriftSection {
    DriftSection {
        drifted: d.drifted,
        psi_warn: d.thresholds.psi_warn,
        psi_fail: d.thresholds.psi_fail,
        reference_rows: d.reference_rows,
        current_rows: d.current_rows,
        features: d.features.iter().map(drift_row).collect(),
        prediction: drift_row(&d.prediction),
    }
}

/// The report of a run: steps of this invocation, models evaluated, the
/// deployed version and the scoring against truth labels.
pub(crate) fn build(
    rc: &RunContext,
    outcomes: &[StepOutcome],
    started_at: &str,
    _summary: &serde_json::Value,
) -> RunReport {
    let mut r = RunReport {
        pipeline: rc.pipeline().to_string(),
        kind: format!("{:?}", rc.cfg.config.kind).to_lowercase(),
        run_id: rc.run_id.clone(),
        config_path: rc.cfg.path.clone(),
        lake_url: crate::lake::redact(rc.lake.url()),
        engine: format!("{:?}", rc.cfg.config.engine.mode).to_lowercase(),
        started_at: started_at.to_string(),
        finished_at: crate::commit::now_rfc3339(),
        ..Default::default()
    };
    let mut train: Vec<&crate::commit::Manifest> = Vec::new();
    let mut rows_prev: Option<u64> = None;
    for o in outcomes {
        let status = match o.status.as_str() {
            "ran" => StepStatus::Ran,
            "skipped" => StepStatus::Skipped,
            _ => StepStatus::Skipped,
        };
        let rows_out = o.manifests.iter().filter_map(|m| m.rows).max();
        r.steps.push(StepReport {
            name: o.step.to_string(),
            status,
            seconds: o.seconds,
            rows_in: rows_prev,
            rows_out,
            output: Some(o.output.clone()),
        });
        if rows_out.is_some() {
            rows_prev = rows_out;
        }
        for m in &o.manifests {
            match o.step {
                StepName::Train => train.push(m),
                StepName::Evaluate => {
                    if let Some(models) = m.extra["models"].as_object() {
                        for (name, mm) in models {
                            let tm = train
                                .iter()
                                .find(|t| t.extra["model"].as_str() == Some(name));
                            let c = &mm["confusion"];
                            let roc = mm["roc"]
                                .as_array()
                                .map(|a| {
                                    a.iter()
                                        .filter_map(|p| Some((p[0].as_f64()?, p[1].as_f64()?)))
                                        .collect()
                                })
                                .unwrap_or_default();
                            let importance = tm
                                .and_then(|t| t.extra["importance"].as_array())
                                .map(|a| {
                                    a.iter()
                                        .map(|i| Importance {
                                            name: i["name"]
                                                .as_str()
                                                .unwrap_or_default()
                                                .to_string(),
                                            gain: i["gain"].as_f64().unwrap_or(0.0),
                                            splits: i["split_count"].as_u64().unwrap_or(0),
                                        })
                                        .collect()
                                })
                                .unwrap_or_default();
                            let cv = tm.map(|t| &t.extra["cv"]);
                            let grid = cv
                                .and_then(|c| c["points"].as_array())
                                .map(|a| {
                                    a.iter()
                                        .map(|p| GridPoint {
                                            params: p["params"].clone(),
                                            mean: p["mean"].as_f64().unwrap_or(f64::NAN),
                                            std: p["std"].as_f64().unwrap_or(f64::NAN),
                                        })
                                        .collect()
                                })
                                .unwrap_or_default();
                            r.models.push(ModelReport {
                                name: name.clone(),
                                kind: tm
                                    .and_then(|t| t.params["model"]["type"].as_str())
                                    .unwrap_or_default()
                                    .to_string(),
                                metrics: metric_set(mm),
                                roc,
                                confusion: Confusion {
                                    tn: c["tn"].as_u64().unwrap_or(0),
                                    fp: c["fp"].as_u64().unwrap_or(0),
                                    fn_: c["fn_"].as_u64().or(c["fn"].as_u64()).unwrap_or(0),
                                    tp: c["tp"].as_u64().unwrap_or(0),
                                },
                                feature_importance: importance,
                                grid,
                                best_params: cv
                                    .map(|c| c["best_params"].clone())
                                    .unwrap_or_default(),
                                grid_metric: cv
                                    .and_then(|c| c["metric"].as_str())
                                    .unwrap_or_default()
                                    .to_string(),
                                train_seconds: tm
                                    .and_then(|t| t.extra["seconds"].as_f64())
                                    .unwrap_or(0.0),
                            });
                        }
                    }
                }
                StepName::Deploy => {
                    r.deployed = Some(DeployedModel {
                        name: m.extra["name"].as_str().unwrap_or_default().to_string(),
                        version: m.extra["version"].as_str().unwrap_or_default().to_string(),
                        model: m.extra["model"].as_str().unwrap_or_default().to_string(),
                        metric: m.extra["metric"].as_str().unwrap_or_default().to_string(),
                        value: m.extra["value"].as_f64().unwrap_or(f64::NAN),
                    })
                }
                StepName::Predict => {
                    if let Some(s) = m.extra.get("scoring").filter(|s| !s.is_null()) {
                        r.scoring = Some(metric_set(&s["metrics"]));
                    }
                    if let Some(d) = m.extra.get("drift").and_then(|d| {
                        serde_json::from_value::<sluice_ml::drift::DriftReport>(d.clone()).ok()
                    }) {
                        r.drift = Some(drift_section(&d));
                    }
                    if let Some(model) = m.extra.get("model") {
                        r.deployed.get_or_insert(DeployedModel {
                            name: model["name"].as_str().unwrap_or_default().to_string(),
                            version: model["version"].as_str().unwrap_or_default().to_string(),
                            model: String::new(),
                            metric: String::new(),
                            value: f64::NAN,
                        });
                    }
                }
                _ => {}
            }
        }
    }
    r
}
