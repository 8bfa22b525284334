//! Where a config error is: the key path of a deserialization error, and
//! the line and column of a key in the YAML text, so every error names
//! `<file>:<line>:<column>: <key path>`.

use super::*;

/// The key path of a deserialization error (`steps[2].models[1].params.numTrees`)
/// and the message without location, or `None` when the text is not YAML
/// or the path says nothing more than the top level.
///
/// serde buffers internally tagged enums (the steps), which hides the path
/// below `steps[i]`; the step is then deserialized again as its own struct
/// (chosen by its `step:` tag) to find the rest of the path. Model entries
/// put the path inside the entry at the start of their message
/// (`params.numTrees: ...`), which is joined here too.
pub(super) fn key_path(text: &str) -> Option<(String, String)> {
    let value: serde_yaml::Value = serde_yaml::from_str(text).ok()?;
    let e = serde_path_to_error::deserialize::<_, PipelineConfig>(value.clone()).err()?;
    let mut path = e.path().to_string();
    let mut message = strip_location(&e.into_inner().to_string());
    if let Some(i) = step_index(&path) {
        let step = value.get("steps")?.get(i)?.clone();
        let mut map = step.as_mapping()?.clone();
        let tag = map.remove("step")?;
        let inner = serde_yaml::Value::Mapping(map);
        fn sub<T: serde::de::DeserializeOwned>(v: serde_yaml::Value) -> Option<(String, String)> {
            let e = serde_path_to_error::deserialize::<_, T>(v).err()?;
            Some((
                e.path().to_string(),
                strip_location(&e.into_inner().to_string()),
            ))
        }
        let found = match tag.as_str()? {
            "ingest" => sub::<IngestStep>(inner),
            "features" => sub::<FeaturesStep>(inner),
            "train" => sub::<TrainStep>(inner),
            "evaluate" => sub::<EvaluateStep>(inner),
            "deploy" => sub::<DeployStep>(inner),
            "predict" => sub::<PredictStep>(inner),
            _ => None,
        };
        if let Some((p, m)) = found {
            if p != "." {
                path = format!("steps[{i}].{p}");
            }
            message = m;
        }
    }
    // `params.numTrees: invalid value ...` from a model entry.
    if let Some((head, rest)) = message.split_once(": ") {
        if (head.starts_with("params") || head == "type") && !head.contains(' ') {
            path = format!("{path}.{head}");
            message = rest.to_string();
        }
    }
    (path != "." && !path.is_empty()).then_some((path, message))
}

/// For an unknown key that looks like a credential: where credentials go
/// instead. (The value is never echoed: serde names only the key.)
pub(super) fn secret_hint(message: &str) -> &'static str {
    let Some(key) = message
        .split("unknown field `")
        .nth(1)
        .and_then(|r| r.split('`').next())
    else {
        return "";
    };
    let k = key.to_ascii_lowercase();
    let secret = ["key", "secret", "token", "password", "sas", "credential"]
        .iter()
        .any(|w| k.contains(w));
    if secret {
        "; credentials never go in the config file: set them in the environment (AZURE_STORAGE_ACCOUNT_KEY, AZURE_STORAGE_SAS_TOKEN, AWS_SECRET_ACCESS_KEY, ... or workload identity; see docs/LAKE.md) and reference non-secret values as ${VAR}"
    } else {
        ""
    }
}

/// `Some(i)` for the path `steps[i]` (and below).
fn step_index(path: &str) -> Option<usize> {
    let rest = path.strip_prefix("steps[")?;
    rest[..rest.find(']')?].parse().ok()
}

/// A serde_yaml message without its " at line L column C" suffix.
fn strip_location(m: &str) -> String {
    m.rsplit_once(" at line ")
        .map_or(m, |(head, _)| head)
        .to_string()
}

/// A validation error located as `<origin>: <key path>` pointed at the
/// key's line instead: `<origin>:<line>:<column>: <key path>`.
pub(super) fn at_key_line(e: EngineError, text: &str, origin: &str) -> EngineError {
    match e {
        EngineError::Config { location, message } => {
            let key = location
                .strip_prefix(origin)
                .and_then(|r| r.strip_prefix(": "))
                .map(str::to_string);
            match key.as_deref().and_then(|k| Some((k, locate_key(text, k)?))) {
                Some((k, (line, col))) => {
                    EngineError::config(format!("{origin}:{line}:{col}: {k}"), message)
                }
                None => EngineError::Config { location, message },
            }
        }
        other => other,
    }
}

/// The 1-based line and column of a key path such as
/// `steps[2].models[0].cv.folds` in YAML text (block mappings and
/// sequences, and keys inside a one-line flow mapping `{folds: 10}`).
/// `None` when the path cannot be followed.
pub fn locate_key(text: &str, path: &str) -> Option<(usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let key_of = |l: &str| {
        let t = l.trim_start();
        let (t, dash) = match t.strip_prefix("- ") {
            Some(rest) => (rest, 2),
            None => (t, 0),
        };
        let k = t.split_once(':')?.0.trim();
        (!k.is_empty() && !k.starts_with('#')).then(|| (k.to_string(), indent(l) + dash))
    };
    // Segments: `steps[2]` is `steps` then index 2.
    let mut segs: Vec<Result<String, usize>> = Vec::new();
    for part in path.split('.') {
        let mut rest = part;
        if let Some(i) = rest.find('[') {
            segs.push(Ok(rest[..i].to_string()));
            rest = &rest[i..];
            while let Some(r) = rest.strip_prefix('[') {
                let (n, tail) = r.split_once(']')?;
                segs.push(Err(n.parse().ok()?));
                rest = tail;
            }
        } else {
            segs.push(Ok(rest.to_string()));
        }
    }
    // (line index, column of its key, indentation that encloses the block)
    let mut pos: Option<(usize, usize)> = None;
    let mut start = 0usize;
    let mut parent: Option<usize> = None;
    for seg in segs {
        match seg {
            Ok(name) => {
                // A key inside a one-line flow mapping of the current line.
                if let Some((li, _)) = pos {
                    let l = lines[li];
                    if let Some(brace) = l.find('{') {
                        if let Some(off) = l[brace..].find(&format!("{name}:")) {
                            return Some((li + 1, brace + off + 1));
                        }
                    }
                }
                let mut found = None;
                for (i, l) in lines.iter().enumerate().skip(start) {
                    if l.trim().is_empty() || l.trim_start().starts_with('#') {
                        continue;
                    }
                    let Some((k, col)) = key_of(l) else { continue };
                    if parent.is_some_and(|p| col <= p) && i > start {
                        break;
                    }
                    if k == name && parent.is_none_or(|p| col > p) {
                        found = Some((i, col));
                        break;
                    }
                }
                let (i, col) = found?;
                pos = Some((i, col + 1));
                parent = Some(col);
                start = i + 1;
            }
            Err(index) => {
                let mut n = 0usize;
                let mut item_indent = None;
                let mut found = None;
                for (i, l) in lines.iter().enumerate().skip(start) {
                    let t = l.trim_start();
                    if t.is_empty() || t.starts_with('#') {
                        continue;
                    }
                    let ind = indent(l);
                    if parent.is_some_and(|p| ind < p)
                        || (parent == Some(ind) && !t.starts_with("- "))
                    {
                        break;
                    }
                    if t.starts_with("- ") && item_indent.is_none_or(|w| w == ind) {
                        item_indent = Some(ind);
                        if n == index {
                            found = Some((i, ind));
                            break;
                        }
                        n += 1;
                    }
                }
                let (i, ind) = found?;
                pos = Some((i, ind + 1));
                parent = Some(ind);
                start = i;
            }
        }
    }
    pos.map(|(i, c)| (i + 1, c))
}

/// serde_yaml places errors inside internally tagged enums (our steps) at
/// the start of the mapping, without the key. Point at the key instead:
/// for "unknown field `k`" the first line from the reported one holding
/// `k:`; for "invalid type: string \"v\"" (or a number, a boolean) the
/// first line holding `<key>: v`. Returns the line, the column and the key.
pub(super) fn refine_location(
    text: &str,
    message: &str,
    line: usize,
    col: usize,
) -> (usize, usize, Option<String>) {
    let lines = || text.lines().enumerate().skip(line.saturating_sub(1));
    let entry = |l: &str| {
        let trimmed = l.trim_start().trim_start_matches("- ");
        let indent = l.len() - trimmed.len() + 1;
        trimmed
            .split_once(':')
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string(), indent))
    };
    if message.contains("unknown field") {
        if let Some(key) = message.split('`').nth(1) {
            for (i, l) in lines() {
                if let Some((k, _, c)) = entry(l) {
                    if k == key {
                        return (i + 1, c, Some(k));
                    }
                }
            }
        }
    } else if let Some(value) = message
        .split("unknown variant `")
        .nth(1)
        .and_then(|r| r.split('`').next())
    {
        for (i, l) in lines() {
            if let Some((k, v, c)) = entry(l) {
                if v.trim_matches(|c| c == '"' || c == '\'') == value {
                    return (i + 1, c, Some(k));
                }
            }
        }
    } else if let Some(rest) = message.split("invalid type: ").nth(1) {
        // `string "lots"`, `integer `5``, `floating point `1.5``, `boolean `true``
        let value = rest
            .split('"')
            .nth(1)
            .or_else(|| rest.split('`').nth(1))
            .map(str::to_string);
        if let Some(value) = value {
            for (i, l) in lines() {
                if let Some((k, v, c)) = entry(l) {
                    if v.trim_matches(|c| c == '"' || c == '\'') == value {
                        return (i + 1, c, Some(k));
                    }
                }
            }
        }
    }
    (line, col, None)
}

#[cfg(test)]
mod locate_tests {
    use super::*;

    const YAML: &str = "name: x\nkind: training\nlake: /tmp/x\nengine:\n  memory_limit: 2GiB\nsteps:\n  - step: ingest\n  - step: train\n    test_fraction: 0.95\n    models:\n      - name: g\n        type: gbt\n        cv: {folds: 1, metric: auc}\n";

    #[test]
    fn keys_are_found_on_their_line() {
        assert_eq!(locate_key(YAML, "name"), Some((1, 1)));
        assert_eq!(locate_key(YAML, "engine.memory_limit"), Some((5, 3)));
        assert_eq!(locate_key(YAML, "steps[1]"), Some((8, 3)));
        assert_eq!(locate_key(YAML, "steps[1].test_fraction"), Some((9, 5)));
        assert_eq!(locate_key(YAML, "steps[1].models[0].name"), Some((11, 9)));
        assert_eq!(
            locate_key(YAML, "steps[1].models[0].cv.folds"),
            Some((13, 14))
        );
        assert_eq!(locate_key(YAML, "steps[5].x"), None);
    }

    #[test]
    fn validation_errors_point_at_the_key() {
        let e = parse(YAML, "c.yaml").unwrap_err().to_string();
        assert!(e.contains("c.yaml:9:5: steps[1].test_fraction"), "{e}");
        let banana = YAML.replace("2GiB", "banana");
        let e = parse(&banana, "c.yaml").unwrap_err().to_string();
        assert!(
            e.contains("c.yaml:5:3: engine.memory_limit") && e.contains("banana"),
            "{e}"
        );
    }
}
