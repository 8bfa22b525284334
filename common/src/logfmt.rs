//! Plain values for log fields: `0.9731` rather than `0.97312345678`,
//! `auc` rather than `Auc`, `12.3` seconds rather than `12.30000001`.
//! Use with tracing's display sigil: `score = %logfmt::num(x)`.

/// A number with up to four decimals (trailing zeros dropped), `n/a` when
/// not finite.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".to_string();
    }
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

/// Seconds with one decimal.
pub fn secs(v: f64) -> String {
    format!("{v:.1}")
}

/// A metric as written in configs (`auc`, `log_loss`).
pub fn metric_name(m: sluice_ml::Metric) -> String {
    serde_json::to_value(m)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{m:?}").to_lowercase())
}

/// A model family as people name it.
pub fn kind_name(k: sluice_ml::ModelKind) -> String {
    match k {
        sluice_ml::ModelKind::Gbt => "gradient-boosted trees",
        sluice_ml::ModelKind::RandomForest => "random forest",
    }
    .to_string()
}

/// An optional count: the number, or `n/a`.
pub fn count(v: Option<u64>) -> String {
    v.map_or_else(|| "n/a".to_string(), |n| n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_values() {
        assert_eq!(num(2.8723045430000003), "2.8723");
        assert_eq!(num(0.5), "0.5");
        assert_eq!(num(3.0), "3");
        assert_eq!(num(f64::NAN), "n/a");
        assert_eq!(secs(2.8723045430000003), "2.9");
        assert_eq!(metric_name(sluice_ml::Metric::Auc), "auc");
        assert_eq!(metric_name(sluice_ml::Metric::LogLoss), "log_loss");
        assert_eq!(count(Some(544500)), "544500");
        assert_eq!(count(None), "n/a");
    }
}
