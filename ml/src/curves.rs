//! Curves for model diagnostics: precision-recall, reliability (calibration),
//! score histograms and the held-out learning curve of a tree ensemble.
//! Each takes labels and probabilities (or the [`Metrics`] computed from
//! them) and returns plain points for a report to draw.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::matrix::FeatureMatrix;
use crate::metrics::Metrics;
use crate::model::TrainedModel;

/// Precision-recall curve as `(recall, precision)` points, derived from
/// the ROC points of `m` (same thresholds, no second sort of the scores):
/// recall = TPR, precision = TPR·P / (TPR·P + FPR·N). Points before the
/// first true positive (precision undefined) are left out; empty when
/// there is no positive label.
pub fn pr_curve(m: &Metrics) -> Vec<(f64, f64)> {
    let c = &m.confusion;
    let (p, n) = ((c.tp + c.fn_) as f64, (c.tn + c.fp) as f64);
    if p == 0.0 {
        return Vec::new();
    }
    m.roc
        .iter()
        .filter(|(_, tpr)| *tpr > 0.0)
        .map(|&(fpr, tpr)| (tpr, tpr * p / (tpr * p + fpr * n)))
        .collect()
}

/// One bin of a reliability diagram.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CalibrationBin {
    /// Mean predicted probability in the bin.
    pub mean_predicted: f64,
    /// Share of label-1 rows in the bin.
    pub observed: f64,
    /// Rows in the bin.
    pub rows: u64,
}

fn bin_of(p: f64, bins: usize) -> usize {
    ((p.clamp(0.0, 1.0) * bins as f64) as usize).min(bins - 1)
}

/// Reliability diagram over `bins` equal-width probability bins; empty bins
/// are left out.
pub fn calibration(y: &[u8], proba: &[f64], bins: usize) -> Vec<CalibrationBin> {
    let bins = bins.max(1);
    let mut sum = vec![0.0f64; bins];
    let mut pos = vec![0u64; bins];
    let mut n = vec![0u64; bins];
    for (&t, &p) in y.iter().zip(proba) {
        if !p.is_finite() {
            continue;
        }
        let b = bin_of(p, bins);
        sum[b] += p;
        pos[b] += u64::from(t == 1);
        n[b] += 1;
    }
    (0..bins)
        .filter(|&b| n[b] > 0)
        .map(|b| CalibrationBin {
            mean_predicted: sum[b] / n[b] as f64,
            observed: pos[b] as f64 / n[b] as f64,
            rows: n[b],
        })
        .collect()
}

/// Counts of `proba` in `bins` equal-width bins over `[0, 1]`.
pub fn histogram(proba: impl IntoIterator<Item = f64>, bins: usize) -> Vec<u64> {
    let bins = bins.max(1);
    let mut out = vec![0u64; bins];
    for p in proba.into_iter().filter(|p| p.is_finite()) {
        out[bin_of(p, bins)] += 1;
    }
    out
}

/// Mean binary cross-entropy, probabilities clipped to `[1e-15, 1 - 1e-15]`.
fn log_loss(y: &[u8], proba: &[f64]) -> f64 {
    let ll: f64 = y
        .iter()
        .zip(proba)
        .map(|(&t, &p)| {
            let q = p.clamp(1e-15, 1.0 - 1e-15);
            -if t == 1 { q.ln() } else { (1.0 - q).ln() }
        })
        .sum();
    ll / y.len().max(1) as f64
}

/// Log-loss on `(x, y)` of the model's first `n` trees, at up to `points`
/// values of `n` spread evenly from 1 to all trees.
pub fn learning_curve(
    model: &TrainedModel,
    x: &FeatureMatrix,
    y: &[u8],
    points: usize,
) -> Result<Vec<(usize, f64)>> {
    let mut curve = LearningCurve::new(model, points);
    curve.add(x, y)?;
    Ok(curve.finish())
}

/// [`learning_curve`] over rows that arrive in batches (the held-out rows
/// streamed from a cluster): the same points and values as one call over
/// all rows in the same order, while only the probabilities are kept.
pub struct LearningCurve {
    models: Vec<(usize, TrainedModel)>,
    proba: Vec<Vec<f64>>,
    y: Vec<u8>,
}

impl LearningCurve {
    /// The curve of `model` at up to `points` tree counts.
    pub fn new(model: &TrainedModel, points: usize) -> Self {
        let total = model.trees().len();
        let mut ns: Vec<usize> = if total == 0 {
            Vec::new()
        } else {
            let points = points.clamp(1, total);
            (1..=points).map(|k| (k * total).div_ceil(points)).collect()
        };
        ns.dedup();
        let models: Vec<(usize, TrainedModel)> = ns
            .into_iter()
            .map(|n| (n, model.truncated(n, usize::MAX)))
            .collect();
        Self {
            proba: vec![Vec::new(); models.len()],
            models,
            y: Vec::new(),
        }
    }

    /// Adds rows (`x` in any column order, `y` their labels).
    pub fn add(&mut self, x: &FeatureMatrix, y: &[u8]) -> Result<()> {
        for ((_, m), p) in self.models.iter().zip(&mut self.proba) {
            p.extend(m.predict_proba(x)?);
        }
        self.y.extend_from_slice(y);
        Ok(())
    }

    /// Adds the rows of an Arrow batch (features looked up by name, nulls
    /// missing) with their labels.
    pub fn add_batch(&mut self, batch: &arrow::array::RecordBatch, y: &[u8]) -> Result<()> {
        for ((_, m), p) in self.models.iter().zip(&mut self.proba) {
            p.extend(m.predict_proba_batch(batch)?.values().iter().copied());
        }
        self.y.extend_from_slice(y);
        Ok(())
    }

    /// `(trees, log-loss)` per point; empty without trees or rows.
    pub fn finish(self) -> Vec<(usize, f64)> {
        if self.y.is_empty() {
            return Vec::new();
        }
        self.models
            .iter()
            .zip(&self.proba)
            .map(|((n, _), p)| (*n, log_loss(&self.y, p)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pr_points_by_hand() {
        // scores 0.8(1) 0.4(0) 0.35(1) 0.1(0)
        let m = crate::metrics::evaluate(&[0, 0, 1, 1], &[0.1, 0.4, 0.35, 0.8], 0.5);
        let pr = pr_curve(&m);
        assert_eq!(
            pr,
            vec![(0.5, 1.0), (0.5, 0.5), (1.0, 2.0 / 3.0), (1.0, 0.5)]
        );
        let none = crate::metrics::evaluate(&[0, 0], &[0.1, 0.2], 0.5);
        assert!(pr_curve(&none).is_empty());
    }

    #[test]
    fn calibration_and_histogram_by_hand() {
        let c = calibration(&[0, 1, 1, 0], &[0.05, 0.15, 0.95, 1.0], 10);
        assert_eq!(c.len(), 3);
        assert_eq!(c[0].rows, 1);
        assert_eq!(c[0].observed, 0.0);
        assert_eq!(c[2].rows, 2);
        assert!((c[2].mean_predicted - 0.975).abs() < 1e-12);
        assert_eq!(c[2].observed, 0.5);
        assert_eq!(histogram([0.0, 0.49, 0.5, 1.0, f64::NAN], 2), vec![2, 2]);
    }
}
