//! A deterministic synthetic binary dataset shaped like the pipeline's
//! features (for tests, benchmarks and the LightGBM / scikit-learn comparison).
//!
//! 40 columns: 12 informative numeric (4 with missing values), 10 noise
//! numeric, an 8-way and a 5-way one-hot group, an hour of day (0..23), a
//! signal level (0..4, sometimes missing), and 3 binary flags. The label is a
//! Bernoulli draw from a non-linear logit of the informative columns.

use crate::gbt::sigmoid;
use crate::matrix::FeatureMatrix;
use crate::sampling::{hash2, unit};

/// Number of feature columns of [`generate`].
pub const N_FEATURES: usize = 40;

fn normal(seed: u64, row: u64, col: u64) -> f64 {
    let u1 = unit(hash2(seed, row, col * 2)).max(1e-300);
    let u2 = unit(hash2(seed, row, col * 2 + 1));
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Generates `n` rows: the feature matrix and 0/1 labels.
pub fn generate(n: usize, seed: u64) -> (FeatureMatrix, Vec<u8>) {
    let mut names = Vec::with_capacity(N_FEATURES);
    let mut cols: Vec<Vec<f64>> = (0..N_FEATURES).map(|_| Vec::with_capacity(n)).collect();
    for i in 0..12 {
        names.push(format!("num_{i}"));
    }
    for i in 0..10 {
        names.push(format!("noise_{i}"));
    }
    for i in 0..8 {
        names.push(format!("activity_{i}"));
    }
    for i in 0..5 {
        names.push(format!("network_{i}"));
    }
    names.push("hour".into());
    names.push("signal_level".into());
    names.push("wifi_connected".into());
    names.push("screen_on".into());
    names.push("charging".into());
    let mut y = Vec::with_capacity(n);
    for r in 0..n as u64 {
        let mut row = [0.0f64; N_FEATURES];
        for (j, v) in row.iter_mut().enumerate().take(22) {
            *v = normal(seed, r, j as u64);
        }
        // Skewed scales, like distances and delays.
        row[2] = row[2].exp() * 100.0;
        row[7] = (row[7] * 3.0).round();
        let act = (unit(hash2(seed, r, 100)) * 8.0) as usize;
        row[22 + act] = 1.0;
        let net = (unit(hash2(seed, r, 101)).powf(1.5) * 5.0) as usize;
        row[30 + net] = 1.0;
        let hour = (unit(hash2(seed, r, 102)) * 24.0).floor();
        row[35] = hour;
        let signal = (row[0] * 1.2 + 2.0 + normal(seed, r, 103))
            .round()
            .clamp(0.0, 4.0);
        row[36] = signal;
        let wifi = (unit(hash2(seed, r, 104)) < sigmoid(row[1] * 1.5)) as u8 as f64;
        row[37] = wifi;
        row[38] = (unit(hash2(seed, r, 105)) < 0.4) as u8 as f64;
        row[39] = (unit(hash2(seed, r, 106)) < 0.2) as u8 as f64;
        let logit = 0.9 * row[0] - 0.7 * row[1]
            + 0.5 * (row[2] / 100.0).ln()
            + 0.6 * row[3] * row[4]
            + if row[5] > 0.5 { 0.8 } else { -0.3 }
            + row[6].sin()
            + 0.3 * row[7].clamp(-3.0, 3.0)
            - 0.4 * row[8].abs()
            + 0.5 * row[9] * (row[10] > 0.0) as u8 as f64
            + 0.25 * row[11]
            + [0.6, -0.8, -0.5, 0.3, 0.9, -0.2, 0.0, 0.4][act]
            + [0.2, -0.3, 0.5, 0.0, -0.6][net]
            + if (7.0..19.0).contains(&hour) {
                -0.4
            } else {
                0.5
            }
            + 1.2 * wifi
            - 0.3 * signal
            + 0.3 * row[38];
        // Missing values: more often missing indoors (no GPS fix).
        let indoor = unit(hash2(seed, r, 200)) < sigmoid(logit);
        for (k, j) in [0usize, 3, 6, 9].into_iter().enumerate() {
            let rate = if indoor { 0.12 } else { 0.04 };
            if unit(hash2(seed, r, 300 + k as u64)) < rate {
                row[j] = f64::NAN;
            }
        }
        if unit(hash2(seed, r, 310)) < 0.05 {
            row[36] = f64::NAN;
        }
        for (c, v) in cols.iter_mut().zip(row) {
            c.push(v);
        }
        y.push(indoor as u8);
    }
    let m = FeatureMatrix::new(names, cols).expect("synthetic columns are consistent");
    (m, y)
}
