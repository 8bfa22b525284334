//! Builds the run report from the typed outputs ([`crate::outputs`]) of the
//! steps this invocation ran or reused.

use sluice_ml::{FeatureImportance, Metrics};

use crate::config::StepName;
use crate::context::{RunContext, StepOutcome};
use crate::error::Result;
use crate::outputs::{
    DeployOutput, EvaluateOutput, FeaturesOutput, IngestOutput, ManifestOutput, PredictOutput,
    TrainOutput,
};
use crate::report::{
    Confusion, DataReport, DeployedModel, DriftRow, DriftSection, Failure, GridPoint, Importance,
    InferenceReport, MetricSet, ModelReport, RunReport, StepReport, TruthReport,
};

/// A metric as the report holds it: `None` when undefined (NaN).
fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// The report's view of [`Metrics`].
pub(crate) fn metric_set(m: &Metrics) -> MetricSet {
    MetricSet {
        samples: Some(m.n),
        accuracy: finite(m.accuracy),
        weighted_precision: finite(m.weighted_precision),
        weighted_recall: finite(m.weighted_recall),
        f1: finite(m.f1),
        auc: finite(m.auc),
        pr_auc: finite(m.pr_auc),
        log_loss: finite(m.log_loss),
    }
}

fn confusion(m: &Metrics) -> Confusion {
    Confusion {
        tn: m.confusion.tn,
        fp: m.confusion.fp,
        fn_: m.confusion.fn_,
        tp: m.confusion.tp,
    }
}

fn importance(fi: &[FeatureImportance]) -> Vec<Importance> {
    fi.iter()
        .map(|i| Importance {
            name: i.name.clone(),
            gain: i.gain,
            splits: i.split_count as u64,
        })
        .collect()
}

/// The model's parameters as one flat object (`{"maxDepth": 5, ...}`).
fn params_json(spec: &sluice_ml::ModelSpec) -> serde_json::Value {
    let v = serde_json::to_value(spec).unwrap_or(serde_json::Value::Null);
    match v {
        serde_json::Value::Object(mut o) => {
            o.remove("type");
            match o.remove("params") {
                Some(p) if o.is_empty() => p,
                Some(p) => {
                    o.insert("params".into(), p);
                    serde_json::Value::Object(o)
                }
                None => serde_json::Value::Object(o),
            }
        }
        other => other,
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
/// deployed version, the predictions and their scoring against truth
/// labels, and the failing step of a failed run.
pub(crate) fn build(
    rc: &RunContext,
    outcomes: &[StepOutcome],
    started_at: &str,
    failure: Option<&Failure>,
) -> Result<RunReport> {
    let engine = &rc.cfg.config.engine;
    let mut r = RunReport {
        pipeline: rc.pipeline().to_string(),
        kind: format!("{:?}", rc.cfg.config.kind).to_lowercase(),
        run_id: rc.run_id.clone(),
        config_path: rc.cfg.path.clone(),
        lake_url: crate::lake::redact(rc.lake.url()),
        engine: match &engine.scheduler {
            Some(url) if engine.mode == crate::session::EngineMode::Ballista => {
                format!("ballista {url}")
            }
            _ => engine.mode.to_string(),
        },
        started_at: started_at.to_string(),
        finished_at: crate::commit::now_rfc3339(),
        failure: failure.cloned(),
        ..Default::default()
    };
    let mut train: Vec<TrainOutput> = Vec::new();
    let mut data = DataReport::default();
    let mut rows_prev: Option<u64> = None;
    for o in outcomes {
        let rows_out = o.manifests.iter().filter_map(|m| m.rows).max();
        r.steps.push(StepReport {
            name: o.step.to_string(),
            status: o.status,
            seconds: o.seconds,
            rows_in: rows_prev,
            rows_out,
            output: Some(rc.lake.table_url(&o.output)),
        });
        if rows_out.is_some() {
            rows_prev = rows_out;
        }
        for m in &o.manifests {
            match o.step {
                StepName::Ingest => {
                    let i: IngestOutput = m.output()?;
                    data.ingested_rows = Some(i.rows);
                    data.rejected_rows = i.rejected_rows;
                }
                StepName::Features => {
                    let f: FeaturesOutput = m.output()?;
                    data.features = f.feature_names.len();
                }
                StepName::Train => {
                    let t: TrainOutput = m.output()?;
                    if data.train.is_none() {
                        data.train = t.class_balance;
                    }
                    train.push(t);
                }
                StepName::Evaluate => {
                    let e: EvaluateOutput = m.output()?;
                    data.test = Some(e.test_balance);
                    for (name, ev) in &e.models {
                        let tm = train.iter().find(|t| &t.model == name);
                        let cv = tm.and_then(|t| t.cv.as_ref());
                        r.models.push(ModelReport {
                            name: name.clone(),
                            kind: tm
                                .map(|t| crate::logfmt::kind_name(t.kind))
                                .unwrap_or_default(),
                            metrics: metric_set(&ev.metrics),
                            roc: ev.metrics.roc.clone(),
                            confusion: confusion(&ev.metrics),
                            feature_importance: tm
                                .map(|t| importance(&t.importance))
                                .unwrap_or_default(),
                            grid: cv
                                .map(|c| {
                                    c.points
                                        .iter()
                                        .map(|p| GridPoint {
                                            params: serde_json::json!(p.params),
                                            mean: p.mean,
                                            std: p.std,
                                            fold_scores: p.fold_scores.clone(),
                                        })
                                        .collect()
                                })
                                .unwrap_or_default(),
                            best_params: cv
                                .and_then(|c| c.best())
                                .map(|p| serde_json::json!(p.params))
                                .unwrap_or(serde_json::Value::Null),
                            grid_metric: cv
                                .map(|c| crate::logfmt::metric_name(c.metric))
                                .unwrap_or_default(),
                            train_seconds: tm.map(|t| t.seconds).unwrap_or(f64::NAN),
                            params: tm
                                .map(|t| params_json(&t.params))
                                .unwrap_or(serde_json::Value::Null),
                            train_rows: tm.map(|t| t.train_rows),
                            trees: tm.map(|t| t.trees),
                            curves: ev.curves.clone(),
                        });
                    }
                }
                StepName::Deploy => {
                    let d: DeployOutput = m.output()?;
                    r.deployed = Some(DeployedModel {
                        name: d.name,
                        version: d.version,
                        model: d.model,
                        metric: crate::logfmt::metric_name(d.metric),
                        value: d.value,
                    });
                }
                StepName::Predict => {
                    let p: PredictOutput = m.output()?;
                    if let Some(s) = &p.scoring {
                        r.scoring = Some(metric_set(&s.metrics));
                        r.truth = Some(TruthReport {
                            confusion: confusion(&s.metrics),
                            roc: s.metrics.roc.clone(),
                            curves: s.curves.clone(),
                        });
                    }
                    r.drift = p.drift.as_ref().map(drift_section);
                    r.inference = Some(InferenceReport {
                        predictions: rc.lake.table_url(&p.predictions),
                        rows: p.rows,
                        predicted_indoor: p.predicted_indoor,
                        threshold: p.threshold,
                        probability_histogram: p.probability_histogram,
                        model: p.model,
                    });
                }
            }
        }
    }
    if data != DataReport::default() && rc.cfg.config.kind == crate::config::PipelineKind::Training
    {
        r.data = Some(data);
    }
    Ok(r)
}
