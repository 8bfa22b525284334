//! Number and text formatting shared by the HTML tables and the charts.

/// Escapes `&`, `<`, `>`, `"` and `'` so any string is safe in HTML text and
/// in quoted attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

/// A metric with four decimals, or `n/a` when missing or not finite.
pub fn metric(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.4}"),
        _ => "n/a".to_string(),
    }
}

/// Seconds with a unit that fits (`850 ms`, `12.3 s`, `4 min 05 s`).
pub fn seconds(s: f64) -> String {
    if !s.is_finite() || s < 0.0 {
        "n/a".to_string()
    } else if s < 1.0 {
        format!("{:.0} ms", s * 1000.0)
    } else if s < 120.0 {
        format!("{s:.1} s")
    } else {
        let total = s.round() as u64;
        format!("{} min {:02} s", total / 60, total % 60)
    }
}

/// An integer with thin-space thousands separators (`38 000 000`).
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('\u{2009}');
        }
        out.push(c);
    }
    out
}

/// A short axis label: `1.2G`, `3.4M`, `12.5k`, `0.25`, `n/a`.
pub fn compact(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".to_string();
    }
    let a = v.abs();
    let trimmed = |x: f64, suffix: &str| {
        let s = format!("{x:.1}");
        let s = s.strip_suffix(".0").unwrap_or(&s).to_string();
        format!("{s}{suffix}")
    };
    if a >= 1e9 {
        trimmed(v / 1e9, "G")
    } else if a >= 1e6 {
        trimmed(v / 1e6, "M")
    } else if a >= 1e3 {
        trimmed(v / 1e3, "k")
    } else if a >= 10.0 || a == 0.0 {
        trimmed(v, "")
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape_html(r#"<a href="x">&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn formats_numbers() {
        assert_eq!(metric(Some(0.97312)), "0.9731");
        assert_eq!(metric(Some(f64::NAN)), "n/a");
        assert_eq!(metric(None), "n/a");
        assert_eq!(seconds(0.25), "250 ms");
        assert_eq!(seconds(12.34), "12.3 s");
        assert_eq!(seconds(245.0), "4 min 05 s");
        assert_eq!(thousands(38_000_000), "38\u{2009}000\u{2009}000");
        assert_eq!(thousands(999), "999");
        assert_eq!(compact(1_250_000.0), "1.2M");
        assert_eq!(compact(2_000.0), "2k");
        assert_eq!(compact(0.25), "0.25");
        assert_eq!(compact(0.0), "0");
        assert_eq!(compact(42.0), "42");
    }
}
