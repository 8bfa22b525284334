//! The config reference, generated from the config types: their doc
//! comments, serde names and defaults, read through the JSON Schema that
//! schemars derives from the same declarations. `sluice config schema`
//! prints the schema (for editors: yaml-language-server reads it);
//! `sluice config docs` prints the Markdown reference that `docs/CONFIG.md`
//! embeds, and a test fails when the two differ, so the page cannot drift
//! from the code.
//!
//! The Markdown has one section per object type, in the order a reader
//! meets them from the top-level keys: a table of its keys (type, default,
//! meaning). Enumerations of documented values and tagged unions (`step:`,
//! `type:`, a transform's `name:`) get a table of their choices.

use std::collections::{BTreeSet, VecDeque};
use std::fmt::Write as _;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Map, Value};

use super::PipelineConfig;

/// The JSON Schema (draft 2020-12) of a pipeline config file.
pub fn json_schema() -> Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(PipelineConfig))
        .expect("a derived JSON Schema serializes");
    if let Some(obj) = schema.as_object_mut() {
        obj.insert("title".into(), "Sluice pipeline config".into());
    }
    schema
}

/// The schema of a model's `params`: the keys of either family.
pub(super) fn model_params_schema(g: &mut SchemaGenerator) -> Schema {
    let gbt = g.subschema_for::<sluice_ml::GbtParams>();
    let rf = g.subschema_for::<sluice_ml::RfParams>();
    schemars::json_schema!({
        "description": "Spark-named parameters of the model's `type`; missing ones take Spark's defaults.",
        "anyOf": [gbt, rf],
    })
}

/// The Markdown reference of every key (the generated part of
/// `docs/CONFIG.md`).
pub fn markdown() -> String {
    let schema = json_schema();
    let defs = schema
        .get("$defs")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut doc = Doc {
        defs,
        out: String::new(),
        queued: BTreeSet::new(),
        queue: VecDeque::new(),
    };
    doc.section("Top level", "the keys of a pipeline file", &schema);
    while let Some((name, at)) = doc.queue.pop_front() {
        let def = doc.defs.get(&name).cloned().unwrap_or_default();
        doc.section(&name, &at, &def);
    }
    doc.out
}

struct Doc {
    defs: Map<String, Value>,
    out: String,
    queued: BTreeSet<String>,
    /// Definitions to document: name and the key where a reader meets it.
    queue: VecDeque<(String, String)>,
}

impl Doc {
    fn section(&mut self, name: &str, at: &str, schema: &Value) {
        let _ = writeln!(self.out, "### {name}\n");
        let _ = writeln!(self.out, "*{at}*\n");
        if let Some(d) = description(schema) {
            let _ = writeln!(self.out, "{d}\n");
        }
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            self.keys(name, schema, props);
        } else if let Some(choices) = alternatives(schema) {
            self.choices(name, &choices);
        } else {
            let ty = self.type_of(schema, name);
            let _ = writeln!(self.out, "Type: {ty}\n");
        }
    }

    fn keys(&mut self, owner: &str, schema: &Value, props: &Map<String, Value>) {
        let required: BTreeSet<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        self.out
            .push_str("| key | type | default | meaning |\n|---|---|---|---|\n");
        for (key, p) in props {
            let at = format!("`{key}` of {owner}");
            let ty = self.type_of(p, &at);
            let default = match p.get("default") {
                Some(Value::Null) | None if required.contains(key.as_str()) => {
                    "required".to_string()
                }
                Some(Value::Null) | None => "—".to_string(),
                Some(v) => format!("`{}`", compact(v)),
            };
            let meaning = description(p)
                .or_else(|| self.referenced(p).and_then(|d| description(&d)))
                .unwrap_or_default();
            let _ = writeln!(
                self.out,
                "| `{key}` | {ty} | {default} | {} |",
                cell(&meaning)
            );
        }
        self.out.push('\n');
    }

    fn choices(&mut self, owner: &str, choices: &[Value]) {
        let tag = choices.iter().find_map(tag_of).map(|(k, _)| k);
        let head = tag
            .as_deref()
            .map_or("value".to_string(), |t| format!("`{t}:`"));
        let _ = writeln!(self.out, "| {head} | keys | meaning |\n|---|---|---|");
        for c in choices {
            let (value, fields) = match tag_of(c) {
                Some((t, v)) => {
                    let fields = self.variant_fields(c, &t, owner, &v);
                    (v, fields)
                }
                None => match c.get("const").or_else(|| c.get("enum")) {
                    Some(v) => (compact_list(v), String::new()),
                    None => (self.type_of(c, owner), String::new()),
                },
            };
            let meaning = description(c).unwrap_or_default();
            let _ = writeln!(self.out, "| `{value}` | {fields} | {} |", cell(&meaning));
        }
        self.out.push('\n');
    }

    /// The keys a tagged variant carries besides its tag: a link to its
    /// payload type (`$ref`, or a `params`-like property) or the keys inline.
    fn variant_fields(&mut self, v: &Value, tag: &str, owner: &str, value: &str) -> String {
        let at = format!("{owner} `{tag}: {value}`");
        if let Some(r) = ref_of(v) {
            return self.link(&r, &at);
        }
        // A payload inlined into the variant (serde's internal tagging)
        // gets its own section under its title, like a referenced type.
        if let Some(title) = v.get("title").and_then(Value::as_str) {
            self.defs.entry(title).or_insert_with(|| v.clone());
            return self.link(title, &at);
        }
        let props = v.get("properties").and_then(Value::as_object);
        props
            .map(|p| {
                p.iter()
                    .filter(|(k, _)| k.as_str() != tag)
                    .map(|(k, s)| format!("`{k}`: {}", self.type_of(s, &at)))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    }

    /// A short type: scalar names, `list of`, `map of`, links to the
    /// sections of object types, the values of enumerations.
    fn type_of(&mut self, s: &Value, at: &str) -> String {
        if let Some(r) = s.get("$ref").and_then(Value::as_str) {
            return self.link(r, at);
        }
        if let Some(v) = s.get("const") {
            return format!("`{}`", compact(v));
        }
        if let Some(v) = s.get("enum") {
            return format!("`{}`", compact_list(v));
        }
        if let Some(alts) = alternatives(s) {
            let parts: Vec<String> = alts
                .iter()
                .filter(|a| a.get("type").and_then(Value::as_str) != Some("null"))
                .map(|a| self.type_of(a, at))
                .collect();
            return parts.join(" or ");
        }
        let types: Vec<&str> = match s.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts
                .iter()
                .filter_map(Value::as_str)
                .filter(|t| *t != "null")
                .collect(),
            _ => return "any".into(),
        };
        types
            .iter()
            .map(|t| match *t {
                "array" => {
                    let item = s.get("items").map_or("any".into(), |i| self.type_of(i, at));
                    match (s.get("minItems"), s.get("maxItems")) {
                        (Some(a), Some(b)) if a == b => format!("list of {a} {item}"),
                        _ => format!("list of {item}"),
                    }
                }
                "object" => match s.get("additionalProperties") {
                    Some(v) if v.is_object() => format!("map of {}", self.type_of(v, at)),
                    _ => "map".into(),
                },
                "integer" => match s.get("minimum").and_then(Value::as_f64) {
                    Some(m) if m >= 0.0 => "integer ≥ 0".into(),
                    _ => "integer".into(),
                },
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(" or ")
    }

    /// A link to a definition's section (queued), or its type inline when it
    /// is a plain scalar (a string parsed by the type, say).
    fn link(&mut self, r: &str, at: &str) -> String {
        let name = r.rsplit('/').next().unwrap_or(r).to_string();
        let Some(def) = self.defs.get(&name).cloned() else {
            return format!("`{name}`");
        };
        let documented = def.get("properties").is_some() || alternatives(&def).is_some();
        if !documented {
            return self.type_of(&def, at);
        }
        if self.queued.insert(name.clone()) {
            self.queue.push_back((name.clone(), at.to_string()));
        }
        format!("[{name}](#{})", name.to_lowercase())
    }

    /// The definition a property refers to, for its description.
    fn referenced(&self, p: &Value) -> Option<Value> {
        let r = ref_of(p).or_else(|| alternatives(p)?.iter().find_map(ref_of))?;
        self.defs.get(r.rsplit('/').next()?).cloned()
    }
}

fn alternatives(s: &Value) -> Option<Vec<Value>> {
    ["oneOf", "anyOf"]
        .iter()
        .find_map(|k| s.get(*k).and_then(Value::as_array).cloned())
}

fn ref_of(s: &Value) -> Option<String> {
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        return Some(r.to_string());
    }
    s.get("allOf")?
        .as_array()?
        .iter()
        .find_map(|a| a.get("$ref").and_then(Value::as_str).map(str::to_string))
}

/// The tag of a variant of a tagged union: the property with a constant.
fn tag_of(v: &Value) -> Option<(String, String)> {
    v.get("properties")?.as_object()?.iter().find_map(|(k, p)| {
        let c = p
            .get("const")
            .or_else(|| match p.get("enum")?.as_array()?.as_slice() {
                [one] => Some(one),
                _ => None,
            })?;
        Some((k.clone(), compact(c).trim_matches('"').to_string()))
    })
}

fn description(s: &Value) -> Option<String> {
    s.get("description")
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn compact(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn compact_list(v: &Value) -> String {
    match v.as_array() {
        Some(vs) => vs.iter().map(compact).collect::<Vec<_>>().join("` \\| `"),
        None => compact(v),
    }
}

/// A Markdown table cell: one line, pipes escaped, rustdoc links as code.
fn cell(s: &str) -> String {
    let one_line = s.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = String::with_capacity(one_line.len());
    let mut chars = one_line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '|' => out.push_str("\\|"),
            // [`Name`] (an intra-doc link) reads as `Name`.
            '[' if chars.peek() == Some(&'`') => {}
            ']' if out.ends_with('`') => {}
            _ => out.push(c),
        }
    }
    out
}

/// Types whose schema the reference documents, for tests.
pub fn documented_types() -> Vec<String> {
    let mut g = SchemaGenerator::default();
    PipelineConfig::json_schema(&mut g);
    g.definitions().keys().cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_model_and_transform_has_a_section() {
        let md = markdown();
        for section in [
            "### Top level",
            "### EngineSettings",
            "### RetrySettings",
            "### StepConfig",
            "### IngestStep",
            "### FeaturesStep",
            "### TrainStep",
            "### ModelConfig",
            "### GbtParams",
            "### RfParams",
            "### CvConfig",
            "### EvaluateStep",
            "### DeployStep",
            "### PredictStep",
            "### DriftThresholds",
            "### TransformSpec",
            "### ShiftParams",
        ] {
            assert!(md.contains(section), "{section} missing from\n{md}");
        }
        // Defaults come from the declarations (serde defaults, Default impls).
        assert!(
            md.contains("| `csv_glob` | string | `training/*.csv` |"),
            "{md}"
        );
        assert!(md.contains("| `maxIter` | integer ≥ 0 | `20` |"), "{md}");
        assert!(
            md.contains("| `watchdog_seconds` | integer ≥ 0 | `600` |"),
            "{md}"
        );
        assert!(md.contains("| `name` | string | required |"), "{md}");
        // Tagged unions list their choices.
        for step in [
            "ingest", "features", "train", "evaluate", "deploy", "predict",
        ] {
            assert!(
                md.contains(&format!("| `{step}` | [")),
                "step {step} missing:\n{md}"
            );
        }
        assert!(md.contains("| `LagCalculator` |"), "{md}");
    }

    #[test]
    fn every_definition_is_reachable_from_the_reference() {
        let md = markdown();
        for t in documented_types() {
            let def = &json_schema()["$defs"][&t];
            if def.get("properties").is_some() || alternatives(def).is_some() {
                assert!(md.contains(&format!("### {t}\n")), "{t} has no section");
            }
        }
    }

    #[test]
    fn cells_are_one_line_with_escaped_pipes() {
        assert_eq!(cell("a | b\n  see [`X`]"), "a \\| b see `X`");
    }
}
