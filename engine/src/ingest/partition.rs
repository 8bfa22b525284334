//! Hive partition filters (`date=2026-11-28`, `date=2026-11-01..2026-11-07`)
//! applied to a table's file listing, so pruning happens before any file is
//! opened.
//!
//! A raw table may be stored as `raw/<table>/<key>=<value>/.../*.parquet`
//! (Spark's `partitionBy`, pyarrow's `partition_cols`). A filter names a
//! partition key and a value or an inclusive range; values compare as
//! integers when both sides are integers, otherwise as text (ISO dates
//! `YYYY-MM-DD` sort correctly as text). A filter only applies to tables
//! partitioned by its key: `devices` and `cells` are usually not
//! partitioned and are read whole.

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};

/// One partition filter: `key=value` or `key=first..last` (inclusive).
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PartitionFilter {
    /// The partition key (the directory name before `=`).
    pub key: String,
    /// The first value kept.
    pub first: String,
    /// The last value kept (equal to `first` for a single value).
    pub last: String,
}

impl PartitionFilter {
    /// Parses `key=value` or `key=first..last`.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |why: &str| {
            EngineError::config(
                "partition",
                format!("`{s}` {why}; expected `<key>=<value>` or `<key>=<first>..<last>` (e.g. date=2026-11-28 or date=2026-11-01..2026-11-07)"),
            )
        };
        let (key, value) = s.trim().split_once('=').ok_or_else(|| bad("has no `=`"))?;
        let key = key.trim();
        if key.is_empty() || key.contains('/') {
            return Err(bad("has no partition key"));
        }
        let (first, last) = match value.split_once("..") {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (value.trim(), value.trim()),
        };
        if first.is_empty() || last.is_empty() {
            return Err(bad("has an empty value"));
        }
        if compare(first, last) == std::cmp::Ordering::Greater {
            return Err(bad("has a range whose first value is after its last"));
        }
        Ok(Self {
            key: key.to_string(),
            first: first.to_string(),
            last: last.to_string(),
        })
    }

    /// Whether the filter keeps exactly one value.
    pub fn is_single(&self) -> bool {
        self.first == self.last
    }

    /// Whether a partition value is kept.
    pub fn keeps(&self, value: &str) -> bool {
        compare(value, &self.first) != std::cmp::Ordering::Less
            && compare(value, &self.last) != std::cmp::Ordering::Greater
    }

    /// The order of partition values: integers as numbers, anything else
    /// as text (ISO dates sort correctly).
    pub fn compare_values(a: &str, b: &str) -> std::cmp::Ordering {
        compare(a, b)
    }
}

impl std::fmt::Display for PartitionFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_single() {
            write!(f, "{}={}", self.key, self.first)
        } else {
            write!(f, "{}={}..{}", self.key, self.first, self.last)
        }
    }
}

impl TryFrom<String> for PartitionFilter {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        Self::parse(&s).map_err(|e| match e {
            EngineError::Config { message, .. } => message,
            other => other.to_string(),
        })
    }
}

impl From<PartitionFilter> for String {
    fn from(p: PartitionFilter) -> String {
        p.to_string()
    }
}

/// Integers compare as numbers, anything else as text.
fn compare(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<i64>(), b.parse::<i64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}

/// The `key=value` directory segments of a path relative to its table.
pub fn partition_values(rel_in_table: &str) -> Vec<(String, String)> {
    let mut segments: Vec<&str> = rel_in_table.split('/').collect();
    segments.pop(); // the file name
    segments
        .into_iter()
        .filter_map(|s| s.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_values_and_ranges() {
        let p = PartitionFilter::parse("date=2026-11-28").unwrap();
        assert!(p.is_single() && p.keeps("2026-11-28") && !p.keeps("2026-11-27"));
        assert_eq!(p.to_string(), "date=2026-11-28");
        let r = PartitionFilter::parse("date=2026-11-01..2026-11-07").unwrap();
        assert!(r.keeps("2026-11-01") && r.keeps("2026-11-07") && !r.keeps("2026-11-08"));
        let h = PartitionFilter::parse("hour=2..10").unwrap();
        assert!(h.keeps("9") && h.keeps("10") && !h.keeps("11"), "numeric");
        for bad in ["date", "=x", "date=", "date=2026-11-09..2026-11-01"] {
            let e = PartitionFilter::parse(bad).unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains("<key>=<value>"), "{e}");
        }
    }

    #[test]
    fn values_come_from_key_value_directories() {
        assert_eq!(
            partition_values("date=2026-11-28/hour=3/part-0.parquet"),
            vec![
                ("date".to_string(), "2026-11-28".to_string()),
                ("hour".to_string(), "3".to_string())
            ]
        );
        assert!(partition_values("part-0.parquet").is_empty());
    }
}
