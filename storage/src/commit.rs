//! The atomic commit protocol for everything Sluice writes to the lake.
//!
//! 1. Data files are written under a fresh attempt prefix
//!    (`<dir>/data-<uuid>/...`) that no reader looks at by itself.
//! 2. Each file's size and xxh3-64 checksum are recorded.
//! 3. `<dir>/_manifest.json` is written last, in one PUT (atomic per object on
//!    every store). It lists the files, row count, schema, parameters and the
//!    fingerprints of the inputs.
//!
//! Readers only read outputs whose manifest exists, and only the files it
//! lists, after checking they still exist with the recorded size (and, with
//! [`Verify::Full`], checksum). A killed writer leaves an attempt prefix without
//! a manifest: invisible, and removed by the next successful commit.
//! See `docs/LAKE.md`.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::prelude::{DataFrame, ParquetReadOptions, SessionContext};
use futures::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

use crate::lake::Lake;
use sluice_common::error::{EngineError, Result};

/// File name of the commit marker.
pub const MANIFEST: &str = "_manifest.json";
/// Manifest format identifier; bump on incompatible changes.
pub const MANIFEST_FORMAT: &str = "sluice.manifest/v1";

/// One committed data file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the lake root.
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
    /// xxh3-64 of the content, hex.
    pub xxh3: String,
}

/// A reference to an input this output was computed from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputRef {
    /// What the input is (`ingest`, `model`, `raw/samples`, ...).
    pub name: String,
    /// Its fingerprint (a manifest fingerprint, or a listing hash for raw inputs).
    pub fingerprint: String,
}

/// The commit record of one output directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`MANIFEST_FORMAT`].
    pub format: String,
    /// What wrote it (`step:features`, `model`, `predictions`).
    pub kind: String,
    /// Pipeline name.
    pub pipeline: String,
    /// Run id.
    pub run_id: String,
    /// Parameters the output was computed with.
    pub params: serde_json::Value,
    /// Hash of `params`.
    pub params_fingerprint: String,
    /// Inputs and their fingerprints.
    pub inputs: Vec<InputRef>,
    /// Committed data files.
    pub files: Vec<FileEntry>,
    /// Rows in the data files, when tabular.
    pub rows: Option<u64>,
    /// Arrow schema of the data files (field name → type, nullability).
    pub schema: Option<serde_json::Value>,
    /// Start time (RFC 3339).
    pub started_at: String,
    /// Finish time (RFC 3339).
    pub finished_at: String,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Step-specific facts (metrics, chosen model, ...).
    pub extra: serde_json::Value,
}

impl Manifest {
    /// A fingerprint of what this output *is*: parameters, inputs and file
    /// checksums. Downstream steps record it as their input fingerprint.
    pub fn fingerprint(&self) -> String {
        let mut h = Xxh3::new();
        h.update(self.params_fingerprint.as_bytes());
        for i in &self.inputs {
            h.update(i.name.as_bytes());
            h.update(i.fingerprint.as_bytes());
        }
        for f in &self.files {
            h.update(f.path.as_bytes());
            h.update(f.xxh3.as_bytes());
        }
        format!("{:016x}", h.digest())
    }

    /// Full URLs of the data files, for DataFusion.
    pub fn file_urls(&self, lake: &Lake) -> Vec<String> {
        self.files.iter().map(|f| lake.table_url(&f.path)).collect()
    }

    /// Whether this output was computed from exactly these parameters and inputs.
    pub fn matches(&self, params_fingerprint: &str, inputs: &[InputRef]) -> bool {
        self.params_fingerprint == params_fingerprint && self.inputs == inputs
    }
}

/// Hash of a JSON value (canonical: serde_json keeps map keys sorted).
pub fn fingerprint_json(v: &serde_json::Value) -> String {
    let s = serde_json::to_string(v).unwrap_or_default();
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(s.as_bytes()))
}

/// How much of a committed output to check when reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Existence and size of every file (cheap: one HEAD each).
    Size,
    /// Size and xxh3 checksum of every file (reads the bytes).
    Full,
}

/// Builder for one output directory's commit.
#[derive(Debug)]
pub struct Commit<'a> {
    lake: &'a Lake,
    dir: String,
    attempt: String,
    started: Instant,
    started_at: String,
    files: Vec<FileEntry>,
    rows: Option<u64>,
    schema: Option<serde_json::Value>,
    progress: Option<sluice_common::progress::Task>,
}

impl<'a> Commit<'a> {
    /// Starts a commit of the output directory `dir` (relative to the lake).
    pub fn begin(lake: &'a Lake, dir: &str) -> Self {
        let dir = dir.trim_end_matches('/').to_string();
        let attempt = format!("{dir}/data-{}", uuid::Uuid::new_v4().simple());
        Self {
            lake,
            dir,
            attempt,
            started: Instant::now(),
            started_at: now_rfc3339(),
            files: Vec::new(),
            rows: None,
            schema: None,
            progress: None,
        }
    }

    /// Reports the rows of every Parquet write to `task` as they are
    /// written (rows/s and ETA for long steps); finished with the commit.
    pub fn with_progress(mut self, task: sluice_common::progress::Task) -> Self {
        self.progress = Some(task);
        self
    }

    /// The attempt prefix data files go under.
    pub fn attempt_dir(&self) -> &str {
        &self.attempt
    }

    /// Writes a DataFrame as Parquet under the attempt prefix.
    pub async fn write_parquet(&mut self, df: DataFrame) -> Result<u64> {
        let schema = schema_json(df.schema().as_arrow());
        let url = self.lake.table_url(&format!("{}/", self.attempt));
        let base = self.rows.unwrap_or(0);
        let rows = write_parquet_once(df, &url, self.progress.as_ref().map(|t| (t, base))).await?;
        if let Some(task) = &self.progress {
            task.set(base + rows);
        }
        self.rows = Some(self.rows.unwrap_or(0) + rows);
        self.schema = Some(schema);
        self.record_written().await?;
        Ok(rows)
    }

    /// Writes each DataFrame in turn (the slices of one table) under the
    /// attempt prefix; returns the rows written by all of them.
    pub async fn write_parquet_parts(
        &mut self,
        parts: impl IntoIterator<Item = DataFrame>,
    ) -> Result<u64> {
        let mut rows = 0;
        for part in parts {
            rows += self.write_parquet(part).await?;
        }
        Ok(rows)
    }

    /// Writes one object (`name` relative to the attempt prefix).
    pub async fn put(&mut self, name: &str, bytes: Bytes) -> Result<()> {
        let rel = format!("{}/{name}", self.attempt);
        let entry = FileEntry {
            path: rel.clone(),
            bytes: bytes.len() as u64,
            xxh3: format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&bytes)),
        };
        self.lake.put(&rel, bytes).await?;
        self.files.retain(|f| f.path != rel);
        self.files.push(entry);
        Ok(())
    }

    /// Sets the row count and schema (for data written outside [`Self::write_parquet`]).
    pub fn set_rows(&mut self, rows: u64, schema: Option<&arrow::datatypes::Schema>) {
        self.rows = Some(rows);
        self.schema = schema.map(schema_json);
    }

    /// Full URLs of the data files recorded so far.
    pub fn file_urls(&self) -> Vec<String> {
        self.files
            .iter()
            .filter(|f| f.path.ends_with(".parquet"))
            .map(|f| self.lake.table_url(&f.path))
            .collect()
    }

    /// Moves the recorded files from the attempt prefix into the output
    /// directory itself (`<dir>/part-00000.parquet`, ...), for outputs whose
    /// layout is fixed by the data contract. Files already in `<dir>` that no
    /// manifest lists (a killed earlier attempt) are removed first.
    pub async fn promote_files(&mut self) -> Result<()> {
        self.promote(|i, path| {
            let ext = path.rsplit('.').next().unwrap_or("bin");
            format!("part-{i:05}.{ext}")
        })
        .await
    }

    /// Like [`Commit::promote_files`], but each file keeps its own name
    /// (`model.sluice`, `metrics.json`): for directories whose files are
    /// addressed by name, such as a model registry version.
    pub async fn promote_files_keep_names(&mut self) -> Result<()> {
        self.promote(|_, path| path.rsplit('/').next().unwrap_or(path).to_string())
            .await
    }

    async fn promote(&mut self, name: impl Fn(usize, &str) -> String) -> Result<()> {
        let store = self.lake.store();
        // Re-committing a directory: the old manifest goes first, so no
        // reader pairs it with a mix of old and new files. A missing one is fine.
        let _ = store
            .delete(&self.lake.path(&format!("{}/{MANIFEST}", self.dir)))
            .await;
        for meta in self.lake.list(&self.dir).await? {
            let rel = self.lake.relative(&meta.location);
            if !rel.starts_with(&self.attempt) {
                let _ = store.delete(&meta.location).await;
            }
        }
        for (i, f) in self.files.iter_mut().enumerate() {
            let to = format!("{}/{}", self.dir, name(i, &f.path));
            store
                .rename(&self.lake.path(&f.path), &self.lake.path(&to))
                .await
                .map_err(|e| {
                    EngineError::lake(
                        self.lake.table_url(&to),
                        format!("cannot move committed file into place: {e}"),
                    )
                })?;
            f.path = to;
        }
        Ok(())
    }

    /// Records every object currently under the attempt prefix.
    pub async fn record_written(&mut self) -> Result<()> {
        for meta in self.lake.list(&self.attempt).await? {
            let rel = self.lake.relative(&meta.location);
            if self.files.iter().any(|f| f.path == rel) {
                continue;
            }
            let xxh3 = hash_object(self.lake, &rel).await?;
            self.files.push(FileEntry {
                path: rel,
                bytes: meta.size,
                xxh3,
            });
        }
        self.files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(())
    }

    /// Publishes the manifest (the commit point) and removes abandoned
    /// attempts of earlier, uncommitted runs of this directory.
    #[allow(clippy::too_many_arguments)]
    pub async fn finish(
        self,
        kind: &str,
        pipeline: &str,
        run_id: &str,
        params: serde_json::Value,
        inputs: Vec<InputRef>,
        extra: serde_json::Value,
    ) -> Result<Manifest> {
        if let Some(t) = &self.progress {
            t.finish();
        }
        let manifest = Manifest {
            format: MANIFEST_FORMAT.into(),
            kind: kind.into(),
            pipeline: pipeline.into(),
            run_id: run_id.into(),
            params_fingerprint: fingerprint_json(&params),
            params,
            inputs,
            files: self.files,
            rows: self.rows,
            schema: self.schema,
            started_at: self.started_at,
            finished_at: now_rfc3339(),
            seconds: self.started.elapsed().as_secs_f64(),
            extra,
        };
        let body = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| EngineError::Internal(format!("manifest serialization: {e}")))?;
        self.lake
            .put(&format!("{}/{MANIFEST}", self.dir), Bytes::from(body))
            .await?;
        // Garbage-collect attempts no manifest refers to (killed or superseded runs).
        // Only attempt prefixes (`<dir>/data-*/`) are collected: nested
        // committed outputs (e.g. `ingest/rejected/`) are left alone.
        let keep: std::collections::BTreeSet<String> =
            manifest.files.iter().map(|f| f.path.clone()).collect();
        let attempts = format!("{}/data-", self.dir);
        for meta in self.lake.list(&self.dir).await? {
            let rel = self.lake.relative(&meta.location);
            if !rel.starts_with(&attempts) || keep.contains(&rel) {
                continue;
            }
            let _ = self.lake.store().delete(&meta.location).await;
        }
        remove_local_attempt_dirs(self.lake, &self.dir, &keep);
        Ok(manifest)
    }
}

/// On a local lake, removes the attempt directories of `dir` that hold no
/// committed file: empty directories left by deletes, and the staged
/// `<file>#<n>` parts of a killed multipart write, which object listings do
/// not show (object stores expire uncommitted blocks themselves).
fn remove_local_attempt_dirs(lake: &Lake, dir: &str, keep: &std::collections::BTreeSet<String>) {
    if lake.url().scheme() != "file" {
        return;
    }
    let Ok(root) = url::Url::parse(&lake.table_url(&format!("{dir}/"))).map(|u| u.to_file_path())
    else {
        return;
    };
    let Ok(root) = root else { return };
    let Ok(entries) = std::fs::read_dir(&root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let prefix = format!("{dir}/{name}/");
        if name.starts_with("data-")
            && entry.path().is_dir()
            && !keep.iter().any(|k| k.starts_with(&prefix))
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Reads `<dir>/_manifest.json`; `Ok(None)` when the output was never committed.
pub async fn read_manifest(lake: &Lake, dir: &str) -> Result<Option<Manifest>> {
    let rel = format!("{}/{MANIFEST}", dir.trim_end_matches('/'));
    if !lake.exists(&rel).await? {
        return Ok(None);
    }
    let bytes = lake.get(&rel).await?;
    let m: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| EngineError::lake(lake.table_url(&rel), format!("corrupt manifest: {e}")))?;
    if m.format != MANIFEST_FORMAT {
        return Err(EngineError::lake(
            lake.table_url(&rel),
            format!(
                "manifest format `{}`, this build reads `{MANIFEST_FORMAT}`",
                m.format
            ),
        ));
    }
    Ok(Some(m))
}

/// Reads and checks a committed output: every listed file must exist with
/// its recorded size (and checksum with [`Verify::Full`]).
pub async fn open_committed(lake: &Lake, dir: &str, verify: Verify) -> Result<Manifest> {
    let m = read_manifest(lake, dir).await?.ok_or_else(|| {
        EngineError::lake(
            lake.table_url(dir),
            "no committed output here (no _manifest.json): run the step that produces it first",
        )
    })?;
    for f in &m.files {
        let meta = lake.head(&f.path).await?.ok_or_else(|| {
            EngineError::lake(
                lake.table_url(&f.path),
                format!(
                    "file listed in the manifest of {dir} is missing: the committed output was damaged after its commit; rerun the step that produces it (`sluice run <config> --steps <step>`)"
                ),
            )
        })?;
        if meta.size != f.bytes {
            return Err(EngineError::lake(
                lake.table_url(&f.path),
                format!(
                    "file was altered after commit: {} bytes, the manifest of {dir} says {}; rerun the step that produces it",
                    meta.size, f.bytes
                ),
            ));
        }
        if verify == Verify::Full {
            let h = hash_object(lake, &f.path).await?;
            if h != f.xxh3 {
                return Err(EngineError::lake(
                    lake.table_url(&f.path),
                    format!(
                        "file was altered after commit: checksum {h}, the manifest of {dir} says {}; rerun the step that produces it",
                        f.xxh3
                    ),
                ));
            }
        }
    }
    Ok(m)
}

/// Reads the Parquet files of a committed output as a DataFrame.
pub async fn read_parquet(ctx: &SessionContext, lake: &Lake, m: &Manifest) -> Result<DataFrame> {
    let urls: Vec<String> = m
        .file_urls(lake)
        .into_iter()
        .filter(|u| u.ends_with(".parquet"))
        .collect();
    if urls.is_empty() {
        return Err(EngineError::Internal(format!(
            "committed output of `{}` has no Parquet files",
            m.kind
        )));
    }
    Ok(ctx
        .read_parquet(urls, ParquetReadOptions::default())
        .await?)
}

/// xxh3-64 of an object, streamed.
pub async fn hash_object(lake: &Lake, rel: &str) -> Result<String> {
    let r = lake
        .store()
        .get(&lake.path(rel))
        .await
        .map_err(|e| EngineError::lake(lake.table_url(rel), format!("cannot read: {e}")))?;
    let mut stream = r.into_stream();
    let mut h = Xxh3::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| EngineError::lake(lake.table_url(rel), format!("cannot read: {e}")))?;
        h.update(&chunk);
    }
    Ok(format!("{:016x}", h.digest()))
}

/// The arrow schema as JSON (name, type, nullable per field).
pub fn schema_json(schema: &arrow::datatypes::Schema) -> serde_json::Value {
    serde_json::Value::Array(
        schema
            .fields()
            .iter()
            .map(|f| {
                serde_json::json!({
                    "name": f.name(),
                    "type": f.data_type().to_string(),
                    "nullable": f.is_nullable(),
                })
            })
            .collect(),
    )
}

/// Writes `df` as Parquet files under the directory `url` and returns the
/// rows written, keeping the files of **one** run of the write.
///
/// A write is one sink task: DataFusion names its files `<write id>_<n>.parquet`
/// with a fresh random write id per run. On a Ballista cluster that task can
/// run twice: its stage is rolled back when an executor is lost while the
/// first run is finishing, and Ballista then ignores the first run's status
/// but not its files. So the files that appeared are grouped by write id,
/// the run whose Parquet footers hold the rows the job reported is kept and
/// the others are deleted, with a warning. Readers of the directory see
/// every row once. With `progress` (a task and the rows written before),
/// the task follows the rows as they are written.
pub async fn write_parquet_once(
    df: DataFrame,
    url: &str,
    progress: Option<(&sluice_common::progress::Task, u64)>,
) -> Result<u64> {
    let table = datafusion::datasource::listing::ListingTableUrl::parse(url)?;
    let store = df
        .task_ctx()
        .runtime_env()
        .object_store(table.object_store())?;
    let store = &store;
    let prefix = table.prefix().clone();
    let listed = |store: Arc<dyn ObjectStore>, prefix: object_store::path::Path| async move {
        store
            .list(Some(&prefix))
            .map(|m| m.map(|m| (m.location, m.size)))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<std::result::Result<Vec<_>, _>>()
    };
    let lake_err = |e: object_store::Error| EngineError::lake(url.to_string(), e.to_string());
    let before = listed(Arc::clone(store), prefix.clone())
        .await
        .map_err(lake_err)?;
    let out = match progress {
        None => {
            df.write_parquet(url, DataFrameWriteOptions::new(), None)
                .await?
        }
        Some((task, base)) => {
            // DataFrame::write_parquet's plan, run with row tracking.
            let (state, plan) = df.into_parts();
            let copy = datafusion::logical_expr::LogicalPlanBuilder::copy_to(
                plan,
                url.to_string(),
                datafusion::datasource::file_format::format_as_file_type(Arc::new(
                    datafusion::datasource::file_format::parquet::ParquetFormatFactory::new(),
                )),
                Default::default(),
                vec![],
            )?
            .build()?;
            let df = DataFrame::new(state, copy);
            let task_ctx = Arc::new(df.task_ctx());
            let physical = df.create_physical_plan().await?;
            tracing::trace!(
                url,
                plan = %datafusion::physical_plan::displayable(physical.as_ref()).indent(true),
                "writing"
            );
            sluice_common::progress::collect_tracked(physical, task_ctx, task, base).await?
        }
    };
    let rows = count_from_write(&out);
    let mut runs: std::collections::BTreeMap<String, Vec<(object_store::path::Path, u64)>> =
        std::collections::BTreeMap::new();
    for (loc, size) in listed(Arc::clone(store), prefix).await.map_err(lake_err)? {
        let name = loc.filename().unwrap_or_default().to_string();
        if before.iter().any(|(l, _)| *l == loc) || !name.ends_with(".parquet") {
            continue;
        }
        if let Some((write_id, _)) = name.split_once('_') {
            runs.entry(write_id.to_string())
                .or_default()
                .push((loc, size));
        }
    }
    if runs.len() <= 1 {
        return Ok(rows);
    }
    let mut keep = None;
    for (write_id, files) in &runs {
        let mut n = 0u64;
        for (loc, size) in files {
            n += parquet_rows(store.as_ref(), loc, *size)
                .await
                .map_err(|e| EngineError::lake(format!("{url} ({loc})"), e))?;
        }
        if n == rows && keep.is_none() {
            keep = Some(write_id.clone());
        }
    }
    let Some(keep) = keep else {
        return Err(EngineError::lake(
            url.to_string(),
            format!(
                "the cluster ran this write {} times (a task re-run after an executor was lost) \
                 and no run holds the {rows} rows the job reported; nothing is committed",
                runs.len()
            ),
        ));
    };
    for (write_id, files) in runs.iter().filter(|(w, _)| **w != keep) {
        tracing::warn!(%url, write_id = %write_id, files = files.len(),
            "dropping the files of a duplicate run of a write task (re-run after a lost executor)");
        for (loc, _) in files {
            store.delete(loc).await.map_err(lake_err)?;
        }
    }
    Ok(rows)
}

/// The row count in a Parquet file's footer.
async fn parquet_rows(
    store: &dyn ObjectStore,
    loc: &object_store::path::Path,
    size: u64,
) -> std::result::Result<u64, String> {
    if size < 12 {
        return Err(format!("not a Parquet file: {size} bytes"));
    }
    let tail = store
        .get_range(loc, size - 8..size)
        .await
        .map_err(|e| e.to_string())?;
    let len = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]) as u64;
    if len + 12 > size {
        return Err(format!(
            "corrupt Parquet footer ({len} bytes of metadata in a {size}-byte file)"
        ));
    }
    let meta = store
        .get_range(loc, size - 8 - len..size - 8)
        .await
        .map_err(|e| e.to_string())?;
    let meta = parquet::file::metadata::ParquetMetaDataReader::decode_metadata(&meta)
        .map_err(|e| e.to_string())?;
    Ok(meta.file_metadata().num_rows().max(0) as u64)
}

fn count_from_write(batches: &[arrow::record_batch::RecordBatch]) -> u64 {
    use arrow::array::{Array, UInt64Array};
    batches
        .iter()
        .filter_map(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<UInt64Array>()
                .map(|a| (0..a.len()).map(|i| a.value(i)).sum::<u64>())
        })
        .sum()
}

/// Now as RFC 3339 (UTC, seconds).
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn commit_then_read_and_detect_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap()).unwrap();
        let ctx = SessionContext::new();
        let df = ctx
            .sql("select * from (values (1, 'a'), (2, 'b'), (3, 'c')) as t(x, y)")
            .await
            .unwrap();
        let mut c = Commit::begin(&lake, "runs/p/r1/ingest");
        let rows = c.write_parquet(df).await.unwrap();
        assert_eq!(rows, 3);
        // Not committed yet: readers see nothing.
        assert!(read_manifest(&lake, "runs/p/r1/ingest")
            .await
            .unwrap()
            .is_none());
        let m = c
            .finish(
                "step:ingest",
                "p",
                "r1",
                serde_json::json!({"a": 1}),
                vec![],
                serde_json::json!({}),
            )
            .await
            .unwrap();
        assert_eq!(m.rows, Some(3));
        assert!(!m.files.is_empty());
        let m2 = open_committed(&lake, "runs/p/r1/ingest", Verify::Full)
            .await
            .unwrap();
        assert_eq!(m, m2);
        let back = read_parquet(&ctx, &lake, &m2)
            .await
            .unwrap()
            .count()
            .await
            .unwrap();
        assert_eq!(back, 3);
        // Tamper with a file: detected on read.
        let f = dir.path().join(&m.files[0].path);
        std::fs::write(&f, b"garbage").unwrap();
        let e = open_committed(&lake, "runs/p/r1/ingest", Verify::Size)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("altered"), "{e}");
        std::fs::remove_file(&f).unwrap();
        let e = open_committed(&lake, "runs/p/r1/ingest", Verify::Size)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing"), "{e}");
    }

    #[tokio::test]
    async fn abandoned_attempts_are_collected_on_next_commit() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap()).unwrap();
        lake.put("out/data-dead/part-0.parquet", Bytes::from_static(b"half"))
            .await
            .unwrap();
        let mut c = Commit::begin(&lake, "out");
        c.put("model.bin", Bytes::from_static(b"1234"))
            .await
            .unwrap();
        let m = c
            .finish(
                "model",
                "p",
                "r",
                serde_json::json!({}),
                vec![],
                serde_json::json!({}),
            )
            .await
            .unwrap();
        assert_eq!(m.files.len(), 1);
        assert!(!lake.exists("out/data-dead/part-0.parquet").await.unwrap());
        assert!(lake.exists(&m.files[0].path).await.unwrap());
    }

    #[tokio::test]
    async fn commit_keeps_nested_committed_outputs() {
        // Regression: the ingest commit used to collect `ingest/rejected/`'s
        // data files, leaving its manifest pointing at deleted files.
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap()).unwrap();
        let mut nested = Commit::begin(&lake, "out/rejected");
        nested
            .put("rows.bin", Bytes::from_static(b"bad rows"))
            .await
            .unwrap();
        nested
            .finish(
                "rejected",
                "p",
                "r",
                serde_json::json!({}),
                vec![],
                serde_json::json!({}),
            )
            .await
            .unwrap();
        let mut c = Commit::begin(&lake, "out");
        c.put("model.bin", Bytes::from_static(b"1234"))
            .await
            .unwrap();
        c.finish(
            "model",
            "p",
            "r",
            serde_json::json!({}),
            vec![],
            serde_json::json!({}),
        )
        .await
        .unwrap();
        open_committed(&lake, "out/rejected", Verify::Full)
            .await
            .unwrap();
        open_committed(&lake, "out", Verify::Full).await.unwrap();
    }

    #[test]
    fn fingerprints_are_stable_and_sensitive() {
        let a = fingerprint_json(&serde_json::json!({"x": 1, "y": [1, 2]}));
        let b = fingerprint_json(&serde_json::json!({"y": [1, 2], "x": 1}));
        let c = fingerprint_json(&serde_json::json!({"x": 2, "y": [1, 2]}));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
