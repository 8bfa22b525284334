//! `${VAR}` and `${VAR:-default}` substitution from the environment.
//!
//! Substitution happens on the raw text before YAML parsing, one line at a
//! time, so YAML error positions still match the file. A missing variable
//! without a default is an error naming the file, line and column.

use crate::error::{EngineError, Result};

/// Replaces `${VAR}` / `${VAR:-default}` in `text`; `$${` escapes a literal `${`.
pub fn substitute_env(text: &str, origin: &str) -> Result<String> {
    substitute_with(text, origin, |k| std::env::var(k).ok())
}

/// As [`substitute_env`] with an explicit variable lookup (for tests).
pub fn substitute_with(
    text: &str,
    origin: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    for (lineno, line) in text.split_inclusive('\n').enumerate() {
        let mut rest = line;
        let mut col = 1usize;
        while let Some(pos) = rest.find("${") {
            if pos > 0 && rest.as_bytes()[pos - 1] == b'$' {
                out.push_str(&rest[..pos - 1]);
                out.push_str("${");
                col += pos + 2;
                rest = &rest[pos + 2..];
                continue;
            }
            out.push_str(&rest[..pos]);
            let after = &rest[pos + 2..];
            let end = after.find('}').ok_or_else(|| {
                EngineError::config(
                    format!("{origin}:{}:{}", lineno + 1, col + pos),
                    "unterminated `${`; expected `${VAR}` or `${VAR:-default}`",
                )
            })?;
            let inner = &after[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(EngineError::config(
                    format!("{origin}:{}:{}", lineno + 1, col + pos),
                    format!("`${{{inner}}}` is not a variable reference; names use A-Z, 0-9 and _"),
                ));
            }
            match lookup(name).or_else(|| default.map(str::to_string)) {
                Some(v) => out.push_str(&v),
                None => {
                    return Err(EngineError::config(
                        format!("{origin}:{}:{}", lineno + 1, col + pos),
                        format!("environment variable `{name}` is not set (referenced as `${{{inner}}}`); set it or give a default with `${{{name}:-value}}`"),
                    ))
                }
            }
            col += pos + 2 + end + 1;
            rest = &after[end + 1..];
        }
        out.push_str(rest);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn look(k: &str) -> Option<String> {
        (k == "KEY").then(|| "v1".to_string())
    }

    #[test]
    fn substitutes_and_defaults() {
        let s =
            substitute_with("a: ${KEY}\nb: ${NOPE:-dflt}\nc: $${KEY}\n", "f.yaml", look).unwrap();
        assert_eq!(s, "a: v1\nb: dflt\nc: ${KEY}\n");
    }

    #[test]
    fn missing_variable_names_file_line_column() {
        let e = substitute_with("x: 1\nlake: ${LAKE_URL}\n", "cfg.yaml", look)
            .unwrap_err()
            .to_string();
        assert!(e.contains("cfg.yaml:2:7"), "{e}");
        assert!(e.contains("LAKE_URL"), "{e}");
    }

    #[test]
    fn unterminated_reference_is_an_error() {
        let e = substitute_with("a: ${KEY\n", "c.yaml", look)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("c.yaml:1:4") && e.contains("unterminated"),
            "{e}"
        );
    }
}
