//! Quantile binning: each feature's values map to a `u8` bin; bin 0 is the
//! missing bin (`NaN`), bins `1..=n` hold values in ascending order.
//!
//! Bin `b` (1-based) holds values `v` with `upper_bounds[b-2] < v <= upper_bounds[b-1]`;
//! the last bin is unbounded above. A split "bin <= t" is therefore the raw
//! test `v <= upper_bounds[t-1]`, so a trained tree predicts on raw `f64`
//! values without binning them.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{MlError, Result};
use crate::matrix::FeatureMatrix;
use crate::sampling::{hash2, unit};

/// Largest number of value bins per feature (bin 0 is reserved for missing).
pub const MAX_VALUE_BINS: usize = 255;

/// Rows sampled to find bin edges (as LightGBM's `bin_construct_sample_cnt`).
pub const DEFAULT_BIN_SAMPLE: usize = 200_000;

/// Bin edges of one feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeatureBins {
    /// Ascending upper bounds of value bins `1..n-1`; the last value bin is unbounded.
    pub upper_bounds: Vec<f64>,
}

impl FeatureBins {
    /// Number of value bins (excluding the missing bin).
    pub fn n_value_bins(&self) -> usize {
        self.upper_bounds.len() + 1
    }

    /// The bin of a raw value: 0 for `NaN`, else `1..=n_value_bins`.
    #[inline]
    pub fn bin(&self, v: f64) -> u8 {
        if v.is_nan() {
            0
        } else {
            (1 + self.upper_bounds.partition_point(|&u| u < v)) as u8
        }
    }

    /// The raw threshold of the split "bin <= t" (`1 <= t < n_value_bins`).
    pub fn threshold(&self, t: u8) -> f64 {
        let t = t as usize;
        if t == 0 {
            f64::NEG_INFINITY
        } else if t > self.upper_bounds.len() {
            f64::INFINITY
        } else {
            self.upper_bounds[t - 1]
        }
    }

    /// Edges from a sample of values (`NaN`s are ignored).
    ///
    /// With at most `max_bins` distinct values every value gets its own bin
    /// (edges at midpoints); otherwise cuts are placed at equal-count quantiles
    /// of the value distribution, a heavy single value keeping its own bin.
    pub fn from_values(mut values: Vec<f64>, max_bins: usize) -> Self {
        values.retain(|v| !v.is_nan());
        values.sort_unstable_by(f64::total_cmp);
        let mut distinct: Vec<(f64, usize)> = Vec::new();
        for v in values.iter().copied() {
            match distinct.last_mut() {
                Some((last, c)) if *last == v => *c += 1,
                _ => distinct.push((v, 1)),
            }
        }
        let mid = |a: f64, b: f64| {
            if a.is_finite() && b.is_finite() {
                let m = a + (b - a) / 2.0;
                if m >= b {
                    a
                } else {
                    m
                }
            } else if a.is_finite() {
                a
            } else {
                b
            }
        };
        let mut upper_bounds = Vec::new();
        if distinct.len() <= max_bins {
            for w in distinct.windows(2) {
                upper_bounds.push(mid(w[0].0, w[1].0));
            }
        } else {
            let total = values.len() as f64;
            let mut remaining = total;
            let mut bins_left = max_bins as f64;
            let mut acc = 0.0;
            for i in 0..distinct.len() - 1 {
                let (v, c) = distinct[i];
                acc += c as f64;
                let target = remaining / bins_left;
                // Cut when this bin is full, or when the next value alone would overfill it.
                let next = distinct[i + 1].1 as f64;
                if acc >= target || (acc > 0.0 && acc + next > target * 1.5 && next >= target) {
                    upper_bounds.push(mid(v, distinct[i + 1].0));
                    remaining -= acc;
                    acc = 0.0;
                    bins_left -= 1.0;
                    if bins_left <= 1.0 {
                        break;
                    }
                }
            }
        }
        upper_bounds.dedup();
        Self { upper_bounds }
    }
}

/// Bin edges of every feature of a matrix; serializable so the driver can
/// ship them to executors and the model artefact can record them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BinEdges {
    /// Per feature, in column order.
    pub features: Vec<FeatureBins>,
}

impl BinEdges {
    /// Fits quantile edges on (a deterministic sample of at most `sample_rows` rows of) `x`.
    pub fn fit(x: &FeatureMatrix, max_bins: usize, sample_rows: usize) -> Result<Self> {
        if !(2..=MAX_VALUE_BINS).contains(&max_bins) {
            return Err(MlError::params(
                "maxBins",
                format!("got {max_bins}, expected 2..={MAX_VALUE_BINS}"),
            ));
        }
        let n = x.n_rows();
        let rows: Option<Vec<usize>> = (n > sample_rows).then(|| {
            let rate = sample_rows as f64 / n as f64;
            (0..n)
                .filter(|&r| unit(hash2(0x5eed, 0, r as u64)) < rate)
                .collect()
        });
        let features = (0..x.n_features())
            .into_par_iter()
            .map(|j| {
                let col = x.column(j);
                let values = match &rows {
                    Some(r) => r.iter().map(|&i| col[i]).collect(),
                    None => col.to_vec(),
                };
                FeatureBins::from_values(values, max_bins)
            })
            .collect();
        Ok(Self { features })
    }

    /// Bins every value of `x` (columns in the same order as the fit).
    pub fn transform(&self, x: &FeatureMatrix) -> Result<BinnedMatrix> {
        if x.n_features() != self.features.len() {
            return Err(MlError::Data(format!(
                "matrix has {} features, bin edges were fitted on {}",
                x.n_features(),
                self.features.len()
            )));
        }
        let columns: Vec<Vec<u8>> = self
            .features
            .par_iter()
            .enumerate()
            .map(|(j, fb)| x.column(j).iter().map(|&v| fb.bin(v)).collect())
            .collect();
        let n_bins = self
            .features
            .iter()
            .map(|f| (f.n_value_bins() + 1) as u16)
            .collect();
        Ok(BinnedMatrix {
            columns,
            n_bins,
            n_rows: x.n_rows(),
        })
    }
}

/// Binned training data: one `u8` column per feature (column-major), shared
/// read-only by every tree, fold and grid point.
#[derive(Debug, Clone, PartialEq)]
pub struct BinnedMatrix {
    columns: Vec<Vec<u8>>,
    n_bins: Vec<u16>,
    n_rows: usize,
}

impl BinnedMatrix {
    /// Builds from raw bin columns; `n_bins[j]` counts bins of feature `j` including the missing bin 0.
    pub fn from_columns(columns: Vec<Vec<u8>>, n_bins: Vec<u16>) -> Result<Self> {
        let n_rows = columns.first().map_or(0, Vec::len);
        if columns.len() != n_bins.len() {
            return Err(MlError::Data(
                "bin columns and bin counts differ in length".into(),
            ));
        }
        for (j, (c, &nb)) in columns.iter().zip(&n_bins).enumerate() {
            if c.len() != n_rows {
                return Err(MlError::Data(format!(
                    "bin column {j} has {} rows, expected {n_rows}",
                    c.len()
                )));
            }
            if let Some(&b) = c.iter().find(|&&b| b as u16 >= nb) {
                return Err(MlError::Data(format!(
                    "bin column {j} holds bin {b}, expected < {nb}"
                )));
            }
        }
        Ok(Self {
            columns,
            n_bins,
            n_rows,
        })
    }

    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.n_rows
    }

    /// Number of features.
    pub fn n_features(&self) -> usize {
        self.columns.len()
    }

    /// The bins of feature `j`.
    #[inline]
    pub fn column(&self, j: usize) -> &[u8] {
        &self.columns[j]
    }

    /// Bin counts per feature, including the missing bin.
    pub fn n_bins(&self) -> &[u16] {
        &self.n_bins
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_distinct_values_get_own_bins() {
        let fb = FeatureBins::from_values(vec![3.0, 1.0, 2.0, 2.0, f64::NAN, 1.0], 255);
        assert_eq!(fb.upper_bounds, vec![1.5, 2.5]);
        assert_eq!(fb.bin(f64::NAN), 0);
        assert_eq!(fb.bin(1.0), 1);
        assert_eq!(fb.bin(1.5), 1);
        assert_eq!(fb.bin(2.0), 2);
        assert_eq!(fb.bin(3.0), 3);
        assert_eq!(fb.bin(100.0), 3);
        assert_eq!(fb.bin(-100.0), 1);
        assert_eq!(fb.threshold(1), 1.5);
    }

    #[test]
    fn quantile_bins_are_balanced() {
        let values: Vec<f64> = (0..10_000).map(|i| i as f64).collect();
        let fb = FeatureBins::from_values(values.clone(), 10);
        assert_eq!(fb.n_value_bins(), 10);
        let mut counts = [0usize; 11];
        for v in values {
            counts[fb.bin(v) as usize] += 1;
        }
        for c in &counts[1..] {
            assert!((*c as i64 - 1000).abs() <= 1, "{counts:?}");
        }
    }

    #[test]
    fn heavy_value_keeps_its_own_bin() {
        let mut values = vec![0.0; 5000];
        values.extend((1..=5000).map(|i| i as f64));
        let fb = FeatureBins::from_values(values, 16);
        assert!(fb.n_value_bins() <= 16);
        assert_ne!(fb.bin(0.0), fb.bin(1.0));
    }

    #[test]
    fn bin_threshold_consistency() {
        let values: Vec<f64> = (0..1000).map(|i| ((i * 37) % 101) as f64 * 0.37).collect();
        let fb = FeatureBins::from_values(values.clone(), 20);
        for t in 1..fb.n_value_bins() as u8 {
            let thr = fb.threshold(t);
            for &v in &values {
                assert_eq!(fb.bin(v) <= t, v <= thr);
            }
        }
    }
}
