//! Deterministic, order-independent randomness: every random decision is a
//! hash of (seed, stream, item), so a row's bootstrap weight or fold does not
//! depend on which partition or thread sees it (this is what lets the same
//! learner run distributed).

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// 64-bit hash of `(a, b)` under `seed`.
pub fn hash2(seed: u64, a: u64, b: u64) -> u64 {
    let mut buf = [0u8; 16];
    buf[..8].copy_from_slice(&a.to_le_bytes());
    buf[8..].copy_from_slice(&b.to_le_bytes());
    xxh3_64_with_seed(&buf, seed)
}

/// Uniform number in `[0, 1)` from a hash.
pub fn unit(h: u64) -> f64 {
    (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Poisson(1) draw (the bootstrap weight of one row in one tree) from a
/// uniform number, by inverting the CDF; capped at 255.
pub fn poisson1(u: f64) -> u8 {
    let mut k = 0u32;
    let mut p = (-1.0f64).exp();
    let mut cdf = p;
    while u >= cdf && k < 255 {
        k += 1;
        p /= k as f64;
        cdf += p;
        if p < 1e-300 {
            break;
        }
    }
    k as u8
}

/// Whether `key` (the pipeline's device id) is held out: its xxh3 hash under
/// `seed` falls in the lowest `fraction` of the range, so every row of a key
/// lands on the same side of the split.
pub fn holds_out_key(key: i64, fraction: f64, seed: u64) -> bool {
    let cut = (fraction * u64::MAX as f64) as u64;
    xxh3_64_with_seed(&key.to_le_bytes(), seed) < cut
}

/// Bootstrap weight of `row` in `tree`: Poisson(1) when `bootstrap`, else
/// Bernoulli(`rate`) (1 with probability `rate`), always 1 for rate >= 1.
pub fn row_weight(seed: u64, tree: u64, row: u64, bootstrap: bool, rate: f64) -> u8 {
    if bootstrap {
        // Poisson(rate) approximated by Poisson(1) thinned with Bernoulli(rate).
        let w = poisson1(unit(hash2(seed, tree, row)));
        if rate >= 1.0 || w == 0 {
            return w;
        }
        (0..w)
            .filter(|&i| unit(hash2(seed ^ 0x9e37_79b9, tree, row * 256 + i as u64)) < rate)
            .count() as u8
    } else if rate >= 1.0 {
        1
    } else {
        (unit(hash2(seed, tree, row)) < rate) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_mean_and_zero_fraction() {
        let n = 200_000u64;
        let ws: Vec<u8> = (0..n).map(|r| row_weight(7, 3, r, true, 1.0)).collect();
        let mean = ws.iter().map(|&w| w as f64).sum::<f64>() / n as f64;
        let zeros = ws.iter().filter(|&&w| w == 0).count() as f64 / n as f64;
        assert!((mean - 1.0).abs() < 0.01, "mean {mean}");
        assert!((zeros - (-1.0f64).exp()).abs() < 0.01, "zeros {zeros}");
        // deterministic
        assert_eq!(row_weight(7, 3, 11, true, 1.0), ws[11]);
    }

    #[test]
    fn bernoulli_rate() {
        let n = 100_000u64;
        let kept = (0..n)
            .filter(|&r| row_weight(1, 0, r, false, 0.3) == 1)
            .count() as f64;
        assert!((kept / n as f64 - 0.3).abs() < 0.01);
    }
}
