//! The drift section of an inference run's report: the per-feature PSI /
//! KS table (features at `fail` first) and, for the most drifted features
//! and the predicted probability, the reference and current bin shares
//! side by side.

use std::fmt::Write as _;

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::format::escape_html as esc;
use sluice_common::error::{EngineError, Result};

/// How many of the most drifted features get a chart.
pub const DRIFT_PLOTS: usize = 3;

/// One column of the drift check (a plain copy of
/// `sluice_ml::drift::ColumnDrift`, so the report depends on no ML type).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DriftRow {
    /// Column name.
    pub name: String,
    /// Population stability index.
    pub psi: f64,
    /// Binned two-sample KS distance.
    pub ks: f64,
    /// Its asymptotic p-value.
    pub ks_p_value: f64,
    /// Null rate in the reference.
    pub null_rate_reference: f64,
    /// Null rate in this run.
    pub null_rate_current: f64,
    /// `ok`, `warn` or `fail`.
    pub status: String,
    /// Reference bin shares `[missing, bin 1, ...]`.
    pub reference_shares: Vec<f64>,
    /// Current bin shares.
    pub current_shares: Vec<f64>,
    /// Upper bounds of the value bins (the last bin is unbounded).
    pub upper_bounds: Vec<f64>,
}

/// The drift check of an inference run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DriftSection {
    /// Whether the run counts as drifted.
    pub drifted: bool,
    /// PSI warn threshold.
    pub psi_warn: f64,
    /// PSI fail threshold.
    pub psi_fail: f64,
    /// Rows of the reference profile.
    pub reference_rows: f64,
    /// Rows profiled in this run.
    pub current_rows: f64,
    /// Per feature, by decreasing PSI.
    pub features: Vec<DriftRow>,
    /// The predicted probability.
    pub prediction: DriftRow,
}

/// Appends the drift section (nothing when the run had no drift check).
pub(crate) fn section(h: &mut String, d: Option<&DriftSection>) -> Result<()> {
    let Some(d) = d else {
        return Ok(());
    };
    let _ = write!(
        h,
        "<section id=\"drift\">\n<h2>Input drift {}</h2>\n<p class=\"sub\">{:.0} rows against the model's reference profile of {:.0} held-out rows; PSI &ge; {} warns, &ge; {} marks the run as drifted (<code>drift.json</code>).</p>\n",
        if d.drifted {
            "<span class=\"badge failed\">drifted</span>"
        } else {
            "<span class=\"badge ran\">no drift</span>"
        },
        d.current_rows,
        d.reference_rows,
        d.psi_warn,
        d.psi_fail
    );
    h.push_str("<table>\n<tr><th>column</th><th class=\"num\">PSI</th><th class=\"num\">KS</th><th class=\"num\">KS p-value</th><th class=\"num\">null rate ref</th><th class=\"num\">null rate now</th><th>status</th></tr>\n");
    for r in std::iter::once(&d.prediction).chain(&d.features) {
        let class = match r.status.as_str() {
            "fail" => " class=\"failed\"",
            "warn" => " class=\"skipped\"",
            _ => "",
        };
        let _ = writeln!(
            h,
            "<tr{class}><td>{}</td><td class=\"num\">{:.4}</td><td class=\"num\">{:.4}</td><td class=\"num\">{:.2e}</td><td class=\"num\">{:.2}%</td><td class=\"num\">{:.2}%</td><td>{}</td></tr>",
            esc(&r.name),
            r.psi,
            r.ks,
            r.ks_p_value,
            100.0 * r.null_rate_reference,
            100.0 * r.null_rate_current,
            esc(&r.status)
        );
    }
    h.push_str("</table>\n<div class=\"grid\">\n");
    for r in d
        .features
        .iter()
        .take(DRIFT_PLOTS)
        .chain(std::iter::once(&d.prediction))
    {
        let svg = shares_chart(r)?;
        let _ = write!(
            h,
            "<figure>\n{svg}<figcaption>{}: reference (grey) and this run (blue) per bin, PSI {:.3}</figcaption>\n</figure>\n",
            esc(&r.name),
            r.psi
        );
    }
    h.push_str("</div>\n</section>\n");
    Ok(())
}

/// Bin labels: `missing`, `<= u1`, ..., `> u_last`.
fn bin_labels(r: &DriftRow) -> Vec<String> {
    let mut l = vec!["missing".to_string()];
    l.extend(r.upper_bounds.iter().map(|u| format!("<={}", short(*u))));
    l.push(match r.upper_bounds.last() {
        Some(u) => format!(">{}", short(*u)),
        None => "all".into(),
    });
    l
}

fn short(v: f64) -> String {
    if v.abs() >= 1000.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Grouped bars of the reference and current shares of one column.
fn shares_chart(r: &DriftRow) -> Result<String> {
    let labels = bin_labels(r);
    let n = labels.len().min(r.reference_shares.len());
    let top = r
        .reference_shares
        .iter()
        .chain(&r.current_shares)
        .fold(0.0f64, |a, b| a.max(*b))
        .max(0.01)
        * 1.1;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (420, 260)).into_drawing_area();
        let err = |e: &dyn std::fmt::Display| {
            EngineError::Internal(format!("report chart `drift {}`: {e}", r.name))
        };
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(&r.name, ("sans-serif", 15))
            .margin(8)
            .x_label_area_size(56)
            .y_label_area_size(44)
            .build_cartesian_2d(0f64..n as f64, 0f64..top)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&|x| {
                let i = x.floor() as usize;
                labels.get(i).cloned().unwrap_or_default()
            })
            .x_label_style(("sans-serif", 10))
            .y_label_formatter(&|v| format!("{:.0}%", 100.0 * v))
            .draw()
            .map_err(|e| err(&e))?;
        let bars = |shares: &[f64], offset: f64, color: RGBColor| {
            shares
                .iter()
                .take(n)
                .enumerate()
                .map(|(i, s)| {
                    let x0 = i as f64 + offset;
                    Rectangle::new([(x0, 0.0), (x0 + 0.4, *s)], color.filled())
                })
                .collect::<Vec<_>>()
        };
        chart
            .draw_series(bars(&r.reference_shares, 0.1, RGBColor(170, 170, 170)))
            .map_err(|e| err(&e))?;
        chart
            .draw_series(bars(&r.current_shares, 0.5, RGBColor(31, 119, 180)))
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn section_lists_features_and_draws_the_top_ones() {
        let row = |name: &str, psi: f64, status: &str| DriftRow {
            name: name.into(),
            psi,
            status: status.into(),
            reference_shares: vec![0.0, 0.5, 0.5],
            current_shares: vec![0.0, 0.2, 0.8],
            upper_bounds: vec![-95.0],
            ..Default::default()
        };
        let d = DriftSection {
            drifted: true,
            psi_warn: 0.1,
            psi_fail: 0.25,
            reference_rows: 100.0,
            current_rows: 200.0,
            features: vec![row("rsrp_dbm", 0.4, "fail"), row("hour", 0.01, "ok")],
            prediction: row("indoor_probability", 0.12, "warn"),
        };
        let mut h = String::new();
        section(&mut h, Some(&d)).unwrap();
        assert!(h.contains("badge failed\">drifted"));
        assert!(h.contains("<td>rsrp_dbm</td><td class=\"num\">0.4000</td>"));
        assert_eq!(
            h.matches("<svg").count(),
            3,
            "two features and the prediction"
        );
        assert!(
            !h.contains("<=-95"),
            "bin labels are escaped text, never raw markup"
        );
        let mut none = String::new();
        section(&mut none, None).unwrap();
        assert!(none.is_empty());
    }
}
