//! Integration tests of the run report: a realistic two-model training
//! report, an inference-only report and the edge cases (NaN metrics, empty
//! curves, missing row counts), checked for well-formed markup, one SVG per
//! chart, escaping, redaction and a lossless JSON round trip.
//!
//! `SLUICE_REPORT_OUT=<dir> cargo test --release -p sluice-engine --test report`
//! also leaves the example report in `<dir>` for a look in a browser.

use std::collections::BTreeSet;

use serde_json::json;
use sluice_engine::report::{
    parse_json, redacted, render_html, render_json, write_report, Confusion, DeployedModel,
    GridPoint, Importance, MetricSet, ModelReport, RunReport, StepReport, StepStatus,
};

/// A ROC curve of `n` points bending towards the top-left by `power`.
fn roc(n: usize, power: f64) -> Vec<(f64, f64)> {
    (0..=n)
        .map(|i| {
            let x = i as f64 / n as f64;
            (x, x.powf(power))
        })
        .collect()
}

fn importance(seed: u64, n: usize) -> Vec<Importance> {
    (0..n)
        .map(|i| Importance {
            name: format!("feature_{i:02}"),
            gain: 1000.0 / (1.0 + i as f64) + seed as f64,
            splits: 3 * (n - i) as u64,
        })
        .collect()
}

fn step(name: &str, status: StepStatus, seconds: f64, rows: Option<(u64, u64)>) -> StepReport {
    StepReport {
        name: name.to_string(),
        status,
        seconds,
        rows_in: rows.map(|r| r.0),
        rows_out: rows.map(|r| r.1),
        output: Some(format!(
            "s3://AKIAEXAMPLE:hunter2@bucket/lake/runs/train/r1/{name}/"
        )),
    }
}

fn training_report() -> RunReport {
    let gbt = ModelReport {
        name: "gbt".into(),
        kind: "histogram gradient boosted trees".into(),
        metrics: MetricSet {
            samples: Some(100_000),
            accuracy: Some(0.9612),
            weighted_precision: Some(0.9608),
            weighted_recall: Some(0.9612),
            f1: Some(0.9609),
            auc: Some(0.9873),
            pr_auc: Some(0.9711),
            log_loss: Some(0.1123),
        },
        roc: roc(400, 0.08),
        confusion: Confusion {
            tn: 61_234,
            fp: 1_766,
            fn_: 2_114,
            tp: 34_886,
        },
        // One feature name that needs escaping everywhere it appears.
        feature_importance: {
            let mut fi = importance(5, 28);
            fi[0].name = "amount<&>\"ratio\"".into();
            fi
        },
        grid: vec![
            GridPoint {
                params: json!({"max_depth": 4, "learning_rate": 0.1}),
                mean: 0.9801,
                std: 0.0021,
                ..GridPoint::default()
            },
            GridPoint {
                params: json!({"max_depth": 6, "learning_rate": 0.1}),
                mean: 0.9866,
                std: 0.0017,
                ..GridPoint::default()
            },
            GridPoint {
                params: json!({"max_depth": 8, "learning_rate": 0.05}),
                mean: 0.9843,
                std: 0.0019,
                ..GridPoint::default()
            },
        ],
        best_params: json!({"max_depth": 6, "learning_rate": 0.1}),
        grid_metric: "auc".into(),
        train_seconds: 41.7,
        ..ModelReport::default()
    };
    let rf = ModelReport {
        name: "rf".into(),
        kind: "random forest".into(),
        metrics: MetricSet {
            samples: Some(100_000),
            accuracy: Some(0.9437),
            weighted_precision: Some(0.9441),
            weighted_recall: Some(0.9437),
            f1: Some(0.9433),
            auc: Some(0.9765),
            pr_auc: Some(0.9602),
            log_loss: Some(0.1687),
        },
        roc: roc(250, 0.12),
        confusion: Confusion {
            tn: 60_800,
            fp: 2_200,
            fn_: 3_430,
            tp: 33_570,
        },
        feature_importance: importance(1, 12),
        grid: vec![
            GridPoint {
                params: json!({"trees": 100, "max_features": "sqrt"}),
                mean: 0.9741,
                std: 0.003,
                ..GridPoint::default()
            },
            GridPoint {
                params: json!({"trees": 300, "max_features": "sqrt"}),
                mean: 0.9760,
                std: 0.0025,
                ..GridPoint::default()
            },
        ],
        best_params: json!({"trees": 300, "max_features": "sqrt"}),
        grid_metric: "auc".into(),
        train_seconds: 63.2,
        ..ModelReport::default()
    };
    RunReport {
        pipeline: "fraud-training".into(),
        kind: "training".into(),
        run_id: "20261126T120000Z-4f2a".into(),
        config_path: "config/training.yaml".into(),
        lake_url: "s3://AKIAEXAMPLE:hunter2@bucket/lake?sig=topsecret".into(),
        engine: "embedded (2 partitions)".into(),
        started_at: "2026-11-26T12:00:00Z".into(),
        finished_at: "2026-11-26T12:02:31.500Z".into(),
        steps: vec![
            step("ingest", StepStatus::Ran, 12.4, Some((500_000, 500_000))),
            step("features", StepStatus::Ran, 8.9, Some((500_000, 498_731))),
            step("train", StepStatus::Ran, 104.9, Some((398_985, 398_985))),
            StepReport {
                output: None,
                ..step("evaluate", StepStatus::Ran, 3.2, None)
            },
            step("deploy", StepStatus::Ran, 0.4, None),
            step("predict", StepStatus::Skipped, 0.0, None),
        ],
        models: vec![gbt, rf],
        deployed: Some(DeployedModel {
            name: "fraud".into(),
            version: "7".into(),
            model: "gbt".into(),
            metric: "auc".into(),
            value: 0.9873,
        }),
        scoring: None,
        drift: None,
        warnings: vec![
            "1269 rows dropped: <null> label & unknown \"country\"".into(),
            "rf: max_features='sqrt' rounded to 5".into(),
        ],
        ..RunReport::default()
    }
}

fn inference_report() -> RunReport {
    let mut report = RunReport {
        pipeline: "fraud-inference".into(),
        kind: "inference".into(),
        run_id: "20261126T121000Z-9c01".into(),
        config_path: "config/inference.yaml".into(),
        lake_url: "file:///tmp/lake".into(),
        engine: "embedded".into(),
        started_at: "2026-11-26T12:10:00Z".into(),
        finished_at: "2026-11-26T12:10:40Z".into(),
        steps: vec![
            step(
                "ingest",
                StepStatus::Ran,
                20.1,
                Some((1_000_000, 1_000_000)),
            ),
            step(
                "features",
                StepStatus::Ran,
                9.8,
                Some((1_000_000, 1_000_000)),
            ),
            step(
                "predict",
                StepStatus::Ran,
                6.3,
                Some((1_000_000, 1_000_000)),
            ),
        ],
        models: vec![],
        deployed: Some(DeployedModel {
            name: "fraud".into(),
            version: "7".into(),
            model: "gbt".into(),
            metric: "auc".into(),
            value: 0.9873,
        }),
        scoring: Some(MetricSet {
            samples: Some(1_000_000),
            accuracy: Some(0.9588),
            auc: Some(0.9851),
            ..MetricSet::default()
        }),
        drift: None,
        warnings: vec![],
        ..RunReport::default()
    };
    for s in &mut report.steps {
        s.output = Some(format!(
            "file:///tmp/lake/runs/fraud-inference/r2/{}/",
            s.name
        ));
    }
    report
}

const VOID: [&str; 6] = ["meta", "link", "br", "hr", "img", "input"];

/// Checks that every tag is closed in order, that every `&` starts an entity
/// and that no `<` or `>` appears outside a tag. Returns the opened tag names.
fn assert_well_formed(doc: &str) -> Vec<String> {
    let mut stack: Vec<String> = Vec::new();
    let mut opened = Vec::new();
    let mut rest = doc;
    while let Some(lt) = rest.find('<') {
        check_text(&rest[..lt]);
        let gt = rest[lt..].find('>').expect("unterminated tag") + lt;
        let tag = &rest[lt + 1..gt];
        assert!(!tag.contains('<'), "`<` inside tag `{tag}`");
        rest = &rest[gt + 1..];
        if tag.starts_with('!') {
            continue;
        }
        check_attributes(tag);
        if let Some(name) = tag.strip_prefix('/') {
            let open = stack
                .pop()
                .unwrap_or_else(|| panic!("`</{name}>` closes nothing"));
            assert_eq!(open, name.trim(), "mismatched closing tag");
            continue;
        }
        let name: String = tag
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '/')
            .collect();
        opened.push(name.clone());
        if !tag.ends_with('/') && !VOID.contains(&name.as_str()) {
            stack.push(name);
        }
    }
    check_text(rest);
    assert!(stack.is_empty(), "unclosed tags: {stack:?}");
    opened
}

fn check_text(text: &str) {
    assert!(!text.contains('>'), "raw `>` in text: {text:.80}");
    for (i, _) in text.match_indices('&') {
        let entity: String = text[i + 1..]
            .chars()
            .take_while(|c| *c != ';')
            .take(9)
            .collect();
        let ok = text[i + 1 + entity.len()..].starts_with(';')
            && (entity.chars().all(|c| c.is_ascii_alphanumeric())
                || (entity.starts_with('#') && entity[1..].chars().all(|c| c.is_ascii_digit())));
        assert!(
            ok && !entity.is_empty(),
            "bare `&` in text: {:.40}",
            &text[i..]
        );
    }
}

/// Attribute values are double-quoted and contain no raw quote or `&`.
fn check_attributes(tag: &str) {
    let quotes = tag.matches('"').count();
    assert_eq!(quotes % 2, 0, "unbalanced quotes in `{tag}`");
    for value in tag.split('"').skip(1).step_by(2) {
        check_text(value);
    }
}

/// The `<tr>` marked best in the grid table that follows `marker`.
fn best_row<'a>(html: &'a str, marker: &str) -> &'a str {
    let from = html.find(marker).expect("grid table");
    let star = html[from..].find("★ best").expect("a best row") + from;
    let start = html[..star].rfind("<tr").unwrap();
    let end = html[star..].find("</tr>").unwrap() + star;
    &html[start..end]
}

fn svgs(html: &str) -> Vec<&str> {
    html.match_indices("<svg")
        .map(|(i, _)| {
            let end = html[i..].find("</svg>").expect("unclosed svg") + i + "</svg>".len();
            &html[i..end]
        })
        .collect()
}

#[test]
fn training_report_is_well_formed_and_complete() {
    let report = training_report();
    let html = render_html(&report).unwrap();
    let tags = assert_well_formed(&html);
    let names: BTreeSet<&str> = tags.iter().map(String::as_str).collect();
    for needed in ["html", "head", "style", "body", "table", "svg", "figure"] {
        assert!(names.contains(needed), "no <{needed}>");
    }
    assert!(
        !names.contains("script"),
        "the page must not need JavaScript"
    );
    assert!(
        !html.contains("http://") || !html.contains("src="),
        "no external assets"
    );

    // ROC (linear and log FPR) + 2 confusion matrices + 2 grid heat maps +
    // importance by gain and by splits for both models + timing + rows.
    let plots = svgs(&html);
    assert_eq!(plots.len(), 12, "one <svg> per chart");
    for svg in &plots {
        assert_well_formed(svg);
        assert!(svg.contains("xmlns=\"http://www.w3.org/2000/svg\""));
    }
    let roc = plots[0];
    assert!(roc.contains("gbt (AUC 0.9873)"), "AUC in the ROC legend");
    assert!(roc.contains("rf (AUC 0.9765)"));
    assert!(roc.contains("chance (AUC 0.5)"));
    assert!(plots[1].contains("log-scaled"), "log FPR view");
    assert!(
        plots[2].contains("61") && plots[2].contains("97.2 % of row"),
        "gbt TN share"
    );
    assert!(plots[2].contains("gbt: confusion matrix"));
    assert!(plots[2].contains("actual indoor") && plots[2].contains("predicted outdoor"));
    assert!(plots[4].contains("gbt: grid search") && plots[4].contains("0.9866"));
    assert!(plots[6].contains("feature importance") && plots[6].contains("feature_01"));
    // Top 20 of 28 features: the 21st is not drawn.
    assert!(plots[6].contains("feature_19") && !plots[6].contains("feature_20"));
    assert!(plots[7].contains("split count") && plots[7].contains("84 splits"));
    assert!(plots[10].contains("Time per step") && plots[10].contains("skipped"));
    assert!(plots[11].contains("Rows per step"));

    // Tables: metrics, best marked, grid with the best point starred.
    assert!(
        html.contains("<td class=\"num best\">0.9873</td>"),
        "best AUC highlighted"
    );
    assert!(
        html.contains("<td class=\"num best\">0.1123</td>"),
        "lowest log-loss is best"
    );
    assert!(html.contains("<td class=\"num\">0.9765</td>"));
    let gbt_best = best_row(&html, "<strong>gbt</strong>: 3 points");
    for cell in ["<td>6</td>", "<td>0.1</td>", "0.9866 ± 0.0017"] {
        assert!(gbt_best.contains(cell), "{gbt_best}");
    }
    let rf_best = best_row(&html, "<strong>rf</strong>: 2 points");
    for cell in ["<td>300</td>", "<td>sqrt</td>", "0.9760 ± 0.0025"] {
        assert!(rf_best.contains(cell), "{rf_best}");
    }
    assert_eq!(html.matches("★ best").count(), 2, "one best point per grid");
    assert!(html.contains("badge deployed"));
    assert!(html.contains("version <code>7</code>"));
    assert!(html.contains("2 min 32 s"), "wall time from the timestamps");
    assert!(
        html.contains("498\u{2009}731"),
        "row counts with separators"
    );

    // Escaping and redaction.
    assert!(html.contains("&lt;null&gt; label &amp; unknown &quot;country&quot;"));
    assert!(html.contains("amount&lt;&amp;&gt;&quot;ratio&quot;"));
    assert!(!html.contains("<null>"));
    for secret in ["hunter2", "AKIAEXAMPLE", "topsecret"] {
        assert!(
            !html.contains(secret),
            "secret `{secret}` leaked into the HTML"
        );
    }
    assert!(html.contains("s3://***:***@bucket/lake?sig=***"));
}

#[test]
fn json_round_trips_every_number() {
    let mut report = training_report();
    report.lake_url = "s3://bucket/lake".into();
    for s in &mut report.steps {
        s.output = s
            .output
            .as_ref()
            .map(|_| format!("s3://bucket/lake/{}", s.name));
    }
    let json = render_json(&report).unwrap();
    let back = parse_json(&json).unwrap();
    assert_eq!(back, report);
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["models"][0]["confusion"]["fn"], 2_114);
    assert_eq!(value["models"][1]["metrics"]["auc"], 0.9765);
    assert_eq!(value["steps"][5]["status"], "skipped");
}

#[test]
fn json_never_carries_secrets() {
    let report = training_report();
    let json = render_json(&report).unwrap();
    for secret in ["hunter2", "AKIAEXAMPLE", "topsecret"] {
        assert!(
            !json.contains(secret),
            "secret `{secret}` leaked into the JSON"
        );
    }
    assert_eq!(parse_json(&json).unwrap(), redacted(&report));
}

#[test]
fn inference_report_renders_without_models() {
    let report = inference_report();
    let html = render_html(&report).unwrap();
    assert_well_formed(&html);
    assert_eq!(svgs(&html).len(), 2, "timing and row charts only");
    assert!(html.contains("Predictions scored against truth"));
    assert!(html.contains("<td class=\"num\">0.9588</td>"));
    assert!(html.contains("<td class=\"num\">0.9851</td>"));
    assert!(
        html.contains("<td class=\"num\">n/a</td>"),
        "missing metrics shown as n/a"
    );
    assert!(html.contains("Model used"));
    assert!(!html.contains("id=\"models\""));
    assert_eq!(parse_json(&render_json(&report).unwrap()).unwrap(), report);
}

#[test]
fn edge_cases_render() {
    let mut report = training_report();
    report.models.truncate(1);
    let m = &mut report.models[0];
    m.metrics.auc = Some(f64::NAN);
    m.metrics.log_loss = None;
    m.roc.clear();
    m.confusion = Confusion::default();
    m.feature_importance.clear();
    m.train_seconds = f64::NAN;
    m.best_params = serde_json::Value::Null;
    report.steps[0].rows_in = None;
    report.steps[0].rows_out = None;
    report.steps[1].status = StepStatus::Failed;
    report.deployed = None;
    report.warnings.clear();

    let html = render_html(&report).unwrap();
    assert_well_formed(&html);
    assert!(html.contains("No ROC curve was recorded."));
    assert!(html.contains("gbt: no predictions counted."));
    assert!(
        !html.contains("class=\"num best\""),
        "nothing to compare with one model"
    );
    let best = best_row(&html, "<strong>gbt</strong>: 3 points");
    assert!(
        best.contains("<td>6</td>") && best.contains("0.9866"),
        "best by mean: {best}"
    );
    assert!(
        html.contains("<td class=\"num\">—</td>"),
        "missing row count"
    );
    assert!(html.contains("badge failed"));
    assert!(html.contains("failed after 8.9 s"));
    // The grid heat map, timing and rows only.
    assert_eq!(svgs(&html).len(), 3);

    let json = render_json(&report).unwrap();
    assert!(json.contains("\"auc\": null"));
    let back = parse_json(&json).unwrap();
    assert_eq!(back.models[0].metrics.auc, None);
    assert!(back.models[0].train_seconds.is_nan());

    let empty = RunReport::default();
    assert_well_formed(&render_html(&empty).unwrap());
    assert_eq!(parse_json(&render_json(&empty).unwrap()).unwrap(), empty);
}

#[test]
fn parse_json_names_the_position_of_an_error() {
    let err = parse_json("{\n  \"steps\": 3\n}").unwrap_err().to_string();
    assert!(err.contains("report.json line 2"), "{err}");
}

#[test]
fn write_report_writes_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::env::var_os("SLUICE_REPORT_OUT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| dir.path().join("run"));
    let files = write_report(&training_report(), &out).unwrap();
    let html = std::fs::read_to_string(&files.html).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("fraud-training"));
    let json = std::fs::read_to_string(&files.json).unwrap();
    assert_eq!(parse_json(&json).unwrap().models.len(), 2);
    assert!(!out.join("report.html.tmp").exists());
}

fn curves(shift: f64) -> sluice_engine::outputs::EvalCurves {
    use sluice_engine::outputs::{CalibrationBin, EvalCurves, ScoreHistogram};
    EvalCurves {
        pr: (0..=50)
            .map(|i| {
                let r = i as f64 / 50.0;
                (r, 1.0 - 0.3 * r.powf(4.0) - shift)
            })
            .collect(),
        calibration: (0..10)
            .map(|b| CalibrationBin {
                mean_predicted: (b as f64 + 0.5) / 10.0,
                observed: ((b as f64 + 0.5) / 10.0 + shift).min(1.0),
                rows: 100 + b,
            })
            .collect(),
        histogram: ScoreHistogram {
            indoor: (0..20).map(|b| b * b).collect(),
            outdoor: (0..20).map(|b| (19 - b) * (19 - b)).collect(),
            all: (0..20).map(|b| b * b + (19 - b) * (19 - b)).collect(),
        },
        learning_curve: (1..=15).map(|n| (n, 0.7 / n as f64 + shift)).collect(),
    }
}

#[test]
fn every_section_of_training_inference_and_failed_runs_renders() {
    use sluice_engine::outputs::{ClassCounts, ModelProvenance};
    use sluice_engine::report::{DataReport, Failure, InferenceReport, TruthReport};
    let mut report = training_report();
    for (i, m) in report.models.iter_mut().enumerate() {
        m.curves = curves(0.02 * i as f64);
        m.params = json!({"maxDepth": 6 + i, "stepSize": 0.1});
        m.train_rows = Some(398_985);
        m.trees = Some(15);
        for g in &mut m.grid {
            g.fold_scores = vec![g.mean - 0.001, g.mean, g.mean + 0.001];
        }
    }
    report.data = Some(DataReport {
        ingested_rows: Some(500_000),
        rejected_rows: Some(0),
        features: 28,
        train: Some(ClassCounts {
            indoor: 150_000,
            outdoor: 248_985,
        }),
        test: Some(ClassCounts {
            indoor: 37_000,
            outdoor: 63_000,
        }),
    });
    let html = render_html(&report).unwrap();
    assert_well_formed(&html);
    for chart in [
        "roc",
        "roc-log",
        "pr",
        "calibration",
        "score-histogram",
        "learning-curve",
        "confusion",
        "grid-heatmap",
        "importance-gain",
        "importance-splits",
    ] {
        assert!(
            html.contains(&format!("data-chart=\"{chart}\"")),
            "no {chart} chart"
        );
    }
    assert!(html.contains("data-series=\"gbt|rf\""));
    for text in [
        "Parameters",
        "maxDepth",
        "per fold",
        "0.9856 · 0.9866 · 0.9876",
        "indoor share",
        "37.0 %",
        "truth: indoor",
        "perfectly calibrated",
    ] {
        assert!(html.contains(text), "no `{text}`");
    }
    assert!(!html.contains("n/a"), "a computed value shows n/a");

    let mut inference = inference_report();
    inference.deployed = None;
    inference.scoring = Some(MetricSet {
        samples: Some(1_000_000),
        accuracy: Some(0.9588),
        weighted_precision: Some(0.95),
        weighted_recall: Some(0.9588),
        f1: Some(0.958),
        auc: Some(0.9851),
        pr_auc: Some(0.97),
        log_loss: Some(0.12),
    });
    inference.inference = Some(InferenceReport {
        model: ModelProvenance {
            name: "fraud".into(),
            version: "v0007".into(),
            model: "gbt".into(),
            kind: Some(sluice_ml::ModelKind::Gbt),
            pipeline: Some("fraud-training".into()),
            run_id: Some("20261126T120000Z-4f2a".into()),
            committed_at: "2026-11-26T12:02:31Z".into(),
            metrics: None,
        },
        predictions: "file:///tmp/lake/predictions/run=r2".into(),
        rows: 1_000_000,
        predicted_indoor: 370_000,
        threshold: 0.5,
        probability_histogram: (0..20).map(|b| 1000 + b * 10).collect(),
    });
    inference.truth = Some(TruthReport {
        confusion: Confusion {
            tn: 600_000,
            fp: 30_000,
            fn_: 20_000,
            tp: 350_000,
        },
        roc: roc(100, 0.1),
        curves: curves(0.0),
    });
    let html = render_html(&inference).unwrap();
    assert_well_formed(&html);
    for text in [
        "Model used",
        "version <code>v0007</code>",
        "pipeline <code>fraud-training</code>",
        "id=\"predictions-path\">file:///tmp/lake/predictions/run=r2</code>",
        "data-chart=\"probability-histogram\"",
        "data-chart=\"truth-confusion\"",
        "ROC curve (against truth)",
        "37.0 %",
    ] {
        assert!(html.contains(text), "no `{text}`");
    }
    assert!(!html.contains("chosen on"), "no training-run card");
    assert!(!html.contains("n/a"), "a computed value shows n/a");

    let mut failed = training_report();
    failed.failure = Some(Failure {
        step: "deploy".into(),
        error: "best model `gbt` scores 0.97 < min_metric 0.99".into(),
    });
    let html = render_html(&failed).unwrap();
    assert_well_formed(&html);
    assert!(html.contains("Failed at step <code>deploy</code>"));
    assert!(html.contains("min_metric 0.99") && html.contains("--resume"));
    let back = parse_json(&render_json(&failed).unwrap()).unwrap();
    assert_eq!(back.failure.unwrap().step, "deploy");
}
