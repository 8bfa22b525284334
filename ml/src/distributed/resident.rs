//! Executor-resident training data: the bin columns of a training job's
//! batches and, for boosting, their margins, kept in the executor process
//! between level passes, keyed by (job id, fingerprint of the batch's row
//! ids: which rows, in which order).
//!
//! * **Bins.** A pass that scans the bin columns (a *full* pass) keeps a
//!   copy of each batch's columns. A *resident* pass scans only the labels
//!   and row ids and takes the bins from here; a batch that is not here (a
//!   new or restarted executor, a task placed on another executor than
//!   before, an evicted entry) is counted as missed and the driver runs the
//!   pass again as a full pass, which fills the cache where it runs.
//! * **Margins.** Without them every GBT pass routes each row through every
//!   finished tree (round `k` costs `k` tree walks per row and pass). The
//!   first pass of a job computes the margins of each batch and keeps them;
//!   later passes add only the trees finished since, in the same order, so
//!   the margins (and the model) are bit-identical to a recomputation. A
//!   batch without margins here computes them from scratch.
//!
//! So the cache never changes a result, it only saves work.
//!
//! The cache is process-global and bounded ([`CacheSettings`]; the
//! executor sets them from its flags with [`configure`], other processes
//! read the environment): entries idle longer than
//! `SLUICE_TRAIN_CACHE_TTL_SECS` (default 900) are dropped, and the total
//! stays under `SLUICE_TRAIN_CACHE_MB` (default 1024; `0` disables the
//! cache). Least recently used entries leave memory first: with a spill
//! directory their bins and margins are written there (up to
//! `SLUICE_TRAIN_SPILL_MB`, default 16384) and read back by the next pass
//! that needs them, so data larger than the executors' memory still trains
//! from resident passes; without one they are dropped and missed.
//! [`release_job`] drops a job's entries at once (the engine calls it when
//! a fit ends).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, RwLock};
use std::time::{Duration, Instant};

use xxhash_rust::xxh3::Xxh3;

use crate::sampling::hash2;

use super::level::{CompactTree, LevelPlan};

/// A batch's margins after the first `trees` finished trees of `init`,
/// and the gradients and hessians of a round drawn from them.
#[derive(Debug)]
struct Margins {
    values: Vec<f64>,
    trees: usize,
    init_bits: u64,
    grads: Option<Gradients>,
}

/// A round's gradients and hessians of a batch's rows (`NaN` for a row the
/// round does not train on), under the round's fingerprint `key`.
#[derive(Debug)]
struct Gradients {
    key: u64,
    g: Vec<f32>,
    h: Vec<f32>,
}

/// How a boosting round weighs rows: `key` fingerprints the round (its
/// trees, sampling and holdout), `of(i, margin)` is row `i`'s gradient and
/// hessian, `NaN` when the round does not train on it.
pub(crate) struct RoundTargets<'a> {
    pub key: u64,
    pub of: &'a dyn Fn(usize, f64) -> (f32, f32),
}

/// What `with_batch` hands its function besides the bins.
#[derive(Default)]
pub(crate) struct Kept<'a> {
    /// Boosting margins.
    pub margins: Option<&'a [f64]>,
    /// A weighted forest's row weights, per tree of the plan.
    pub weights: Option<&'a [&'a [u8]]>,
    /// A boosting round's gradients and hessians.
    pub grads: Option<(&'a [f32], &'a [f32])>,
    /// Each row's node in the trees being grown (a job's batch only).
    pub nodes: Option<&'a mut NodeCache>,
}

/// Each row of a batch's node in the trees being grown, as of the shape
/// each tree had at the last pass: the next pass advances a row from its
/// node by the levels added since instead of from the root.
#[derive(Debug, Default)]
pub(crate) struct NodeCache {
    per_tree: HashMap<u64, TreeNodes>,
}

#[derive(Debug)]
struct TreeNodes {
    shape: CompactTree,
    of: Vec<u16>,
}

impl NodeCache {
    fn bytes(&self) -> usize {
        self.per_tree.values().map(|t| t.of.len() * 2).sum()
    }

    /// Each row's current node (a leaf of the shape) in every tree of
    /// `trees` (`(index, shape)`, in plan order), for the `n` rows of
    /// `bins`. A tree that only grew since the last pass (every node split
    /// then is split the same way now) advances each row from its node; any
    /// other tree starts at the root. `None` when a tree has more nodes than
    /// a `u16` numbers.
    pub(crate) fn leaves(
        &mut self,
        trees: &[(u64, &CompactTree)],
        bins: &[&[u8]],
        n: usize,
    ) -> Option<Vec<&[u16]>> {
        if trees.iter().any(|(_, s)| s.left.len() > u16::MAX as usize) {
            return None;
        }
        self.per_tree
            .retain(|t, _| trees.iter().any(|(g, _)| g == t));
        for &(t, shape) in trees {
            let e = self.per_tree.entry(t).or_insert_with(|| TreeNodes {
                shape: CompactTree::default(),
                of: vec![0; n],
            });
            if e.of.len() != n || !shape.grown_from(&e.shape) {
                e.of.clear();
                e.of.resize(n, 0);
            }
            for (i, v) in e.of.iter_mut().enumerate() {
                *v = shape.leaf_from(bins, i, *v as usize) as u16;
            }
            e.shape = shape.clone();
        }
        Some(
            trees
                .iter()
                .map(|(t, _)| self.per_tree[t].of.as_slice())
                .collect(),
        )
    }
}

/// A forest's per-row sample weights of a batch, per tree, drawn under the
/// sampling parameters fingerprinted by `params`.
#[derive(Debug)]
struct TreeWeights {
    params: u64,
    per_tree: HashMap<u64, Vec<u8>>,
}

/// How a forest weighs rows (bootstrap or subsampling): `params`
/// fingerprints the sampling parameters, `draw(tree, row_id)` is a row's
/// weight in a tree, `trees` the trees of the pass.
pub(crate) struct Sampling<'a> {
    pub params: u64,
    pub trees: &'a [u64],
    pub draw: &'a dyn Fn(u64, u64) -> u8,
}

/// What is kept of one batch.
#[derive(Debug)]
struct Entry {
    rows: usize,
    /// The bin columns, once a full pass has scanned the batch here.
    bins: Option<Vec<Vec<u8>>>,
    /// The boosting margins.
    margins: Option<Margins>,
    /// The forest's sample weights of the trees still growing.
    weights: Option<TreeWeights>,
    /// Each row's node in the trees being grown.
    nodes: Option<NodeCache>,
    used: Instant,
}

impl Entry {
    fn bytes(&self) -> usize {
        self.bins.as_ref().map_or(0, |b| b.len() * self.rows)
            + self.margins.as_ref().map_or(0, |m| {
                m.values.len() * 8 + m.grads.as_ref().map_or(0, |g| g.g.len() * 8)
            })
            + self
                .weights
                .as_ref()
                .map_or(0, |w| w.per_tree.len() * self.rows)
            + self.nodes.as_ref().map_or(0, NodeCache::bytes)
    }
}

/// How much the cache keeps in memory, and where batches that do not fit go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSettings {
    /// Memory for cached batches, bytes; 0 disables the cache.
    pub memory_bytes: usize,
    /// Batches idle longer than this are dropped (from memory and disk).
    pub ttl: Duration,
    /// Directory the bins and margins of batches past `memory_bytes` are
    /// written to and read back from; `None` drops them instead.
    pub spill_dir: Option<PathBuf>,
    /// Disk for spilled batches, bytes (least recently used go first).
    pub spill_bytes: usize,
}

impl CacheSettings {
    /// From `SLUICE_TRAIN_CACHE_MB` (default 1024), `SLUICE_TRAIN_CACHE_TTL_SECS`
    /// (900), `SLUICE_TRAIN_SPILL_DIR` (none) and `SLUICE_TRAIN_SPILL_MB` (16384).
    pub fn from_env() -> Self {
        Self {
            memory_bytes: mib(env_or("SLUICE_TRAIN_CACHE_MB", 1024)),
            ttl: Duration::from_secs(env_or("SLUICE_TRAIN_CACHE_TTL_SECS", 900)),
            spill_dir: std::env::var_os("SLUICE_TRAIN_SPILL_DIR")
                .filter(|d| !d.is_empty())
                .map(PathBuf::from),
            spill_bytes: mib(env_or("SLUICE_TRAIN_SPILL_MB", 16384)),
        }
    }
}

fn mib(n: u64) -> usize {
    (n as usize).saturating_mul(1 << 20)
}

/// Cache key: (job id, fingerprint of the batch's row ids; for the
/// margins and weights of one of several fits of the job, that fingerprint
/// hashed with the fit id).
type Key = (u64, u64);

/// Hash stream of a fit's entry key.
const FIT_STREAM: u64 = 0x0f17;

/// A batch whose bins (and margins after `margins` = (trees, init bits))
/// are in the spill directory.
#[derive(Debug)]
struct OnDisk {
    rows: usize,
    cols: usize,
    margins: Option<(usize, u64)>,
    bytes: usize,
    used: Instant,
}

#[derive(Debug, Default)]
struct Cache {
    entries: HashMap<Key, Entry>,
    bytes: usize,
    disk: HashMap<Key, OnDisk>,
    disk_bytes: usize,
    /// Batches written to and read back from the spill directory.
    spilled: u64,
    restored: u64,
}

/// A cache and its settings (`None`: the process's, see [`configure`]).
struct Store {
    cache: Mutex<Cache>,
    settings: Option<CacheSettings>,
}

static STORE: LazyLock<Store> = LazyLock::new(|| Store {
    cache: Mutex::new(Cache::default()),
    settings: None,
});
static CONFIGURED: RwLock<Option<CacheSettings>> = RwLock::new(None);
static HITS: AtomicU64 = AtomicU64::new(0);
static MISSES: AtomicU64 = AtomicU64::new(0);

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// Sets this process's cache settings (the executor does, from its flags),
/// instead of the environment's. The spill directory is emptied: what a
/// previous process left there belongs to no one.
pub fn configure(settings: CacheSettings) -> std::io::Result<()> {
    if let Some(dir) = &settings.spill_dir {
        match std::fs::remove_dir_all(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        std::fs::create_dir_all(dir)?;
    }
    *CONFIGURED.write().unwrap_or_else(|e| e.into_inner()) = Some(settings);
    Ok(())
}

/// A fingerprint of a batch's row ids (which rows, in which order).
pub fn fingerprint(row_id: &[i64]) -> u64 {
    let mut h = Xxh3::new();
    let mut buf = [0u8; 8 * 512];
    for chunk in row_id.chunks(512) {
        for (i, r) in chunk.iter().enumerate() {
            buf[i * 8..i * 8 + 8].copy_from_slice(&r.to_le_bytes());
        }
        h.update(&buf[..chunk.len() * 8]);
    }
    h.digest()
}

fn spill_path(dir: &Path, key: Key, what: &str) -> PathBuf {
    dir.join(format!("{:016x}-{:016x}.{what}", key.0, key.1))
}

fn write_file<'a>(path: &Path, parts: impl Iterator<Item = &'a [u8]>) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    for p in parts {
        f.write_all(p)?;
    }
    f.into_inner().map_err(|e| e.into_error())?;
    Ok(())
}

fn read_file(path: &Path, len: usize) -> std::io::Result<Vec<u8>> {
    let v = std::fs::read(path)?;
    if v.len() != len {
        return Err(std::io::Error::other(format!(
            "{} bytes, expected {len}",
            v.len()
        )));
    }
    Ok(v)
}

impl Store {
    fn settings(&self) -> CacheSettings {
        if let Some(s) = &self.settings {
            return s.clone();
        }
        let configured = CONFIGURED.read().unwrap_or_else(|e| e.into_inner());
        configured.clone().unwrap_or_else(CacheSettings::from_env)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        // A panic while holding the lock leaves a consistent map: keep using it.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The batch's entry, from memory or read back from the spill directory.
    fn take(&self, key: Key, s: &CacheSettings) -> Option<Entry> {
        let mut c = self.lock();
        if let Some(e) = c.entries.remove(&key) {
            c.bytes -= e.bytes();
            return Some(e);
        }
        let dir = s.spill_dir.as_deref()?;
        let d = c.disk.get_mut(&key)?;
        d.used = Instant::now();
        let (rows, cols, margins) = (d.rows, d.cols, d.margins);
        let read = || -> std::io::Result<Entry> {
            let bins = read_file(&spill_path(dir, key, "bins"), rows * cols)?;
            let margins = match margins {
                None => None,
                Some((trees, init_bits)) => {
                    let raw = read_file(&spill_path(dir, key, "margins"), rows * 8)?;
                    let values = raw
                        .chunks_exact(8)
                        .map(|b| f64::from_le_bytes(b.try_into().unwrap_or_default()))
                        .collect();
                    Some(Margins {
                        values,
                        trees,
                        init_bits,
                        grads: None,
                    })
                }
            };
            Ok(Entry {
                rows,
                bins: Some(
                    (0..cols)
                        .map(|j| bins[j * rows..(j + 1) * rows].to_vec())
                        .collect(),
                ),
                margins,
                weights: None,
                nodes: None,
                used: Instant::now(),
            })
        };
        match read() {
            Ok(e) => {
                c.restored += 1;
                Some(e)
            }
            Err(err) => {
                tracing::warn!(dir = %dir.display(), error = %err, "cannot read a spilled training batch back; it is read from the source again");
                forget(&mut c, dir, key);
                None
            }
        }
    }

    fn put(&self, key: Key, e: Entry, s: &CacheSettings) {
        let size = e.bytes();
        let mut c = self.lock();
        let now = Instant::now();
        let stale: Vec<Key> = c
            .entries
            .iter()
            .filter(|(_, v)| now.duration_since(v.used) > s.ttl)
            .map(|(k, _)| *k)
            .collect();
        for k in stale {
            if let Some(v) = c.entries.remove(&k) {
                c.bytes -= v.bytes();
            }
        }
        if let Some(dir) = s.spill_dir.as_deref() {
            let stale: Vec<Key> = c
                .disk
                .iter()
                .filter(|(k, v)| *k != &key && now.duration_since(v.used) > s.ttl)
                .map(|(k, _)| *k)
                .collect();
            for k in stale {
                forget(&mut c, dir, k);
            }
        }
        if size > s.memory_bytes {
            spill(&mut c, s, key, &e);
            return;
        }
        while c.bytes + size > s.memory_bytes {
            let Some(oldest) = c
                .entries
                .iter()
                .min_by_key(|(_, v)| v.used)
                .map(|(k, _)| *k)
            else {
                break;
            };
            if let Some(v) = c.entries.remove(&oldest) {
                c.bytes -= v.bytes();
                spill(&mut c, s, oldest, &v);
            }
        }
        c.bytes += size;
        c.entries.insert(key, e);
    }
}

/// Deletes a batch's spill files.
fn forget(c: &mut Cache, dir: &Path, key: Key) {
    if let Some(d) = c.disk.remove(&key) {
        c.disk_bytes -= d.bytes;
        for what in ["bins", "margins"] {
            let _ = std::fs::remove_file(spill_path(dir, key, what));
        }
    }
}

/// Keeps an entry leaving memory in the spill directory: its bins (written
/// once, they never change) and its margins (when they advanced since they
/// were written). Without a directory, or room in it, the entry is dropped.
fn spill(c: &mut Cache, s: &CacheSettings, key: Key, e: &Entry) {
    let (Some(dir), Some(bins)) = (s.spill_dir.as_deref(), &e.bins) else {
        return;
    };
    let old = c.disk.get(&key);
    // Margins on disk stay valid (a prefix of the trees) until newer ones replace them.
    let fresh = e.margins.as_ref().map(|m| (m.trees, m.init_bits));
    let on_disk = old.and_then(|d| d.margins);
    let write_margins = fresh.is_some() && fresh != on_disk;
    let margins = if write_margins { fresh } else { on_disk };
    let bytes = bins.len() * e.rows + margins.map_or(0, |_| e.rows * 8);
    let old_bytes = old.map_or(0, |d| d.bytes);
    let had_bins = old.is_some();
    // Room: least recently used spilled batches go first.
    while c.disk_bytes - old_bytes + bytes > s.spill_bytes {
        let Some(oldest) = c
            .disk
            .iter()
            .filter(|(k, _)| **k != key)
            .min_by_key(|(_, v)| v.used)
            .map(|(k, _)| *k)
        else {
            forget(c, dir, key);
            return;
        };
        forget(c, dir, oldest);
    }
    let write = || -> std::io::Result<()> {
        if !had_bins {
            write_file(
                &spill_path(dir, key, "bins"),
                bins.iter().map(Vec::as_slice),
            )?;
        }
        if let (true, Some(m)) = (write_margins, &e.margins) {
            let raw: Vec<u8> = m.values.iter().flat_map(|v| v.to_le_bytes()).collect();
            write_file(&spill_path(dir, key, "margins"), std::iter::once(&raw[..]))?;
        }
        Ok(())
    };
    if let Err(err) = write() {
        tracing::warn!(dir = %dir.display(), error = %err, "cannot spill a training batch; it is dropped and read from the source again");
        forget(c, dir, key);
        return;
    }
    if c.spilled == 0 {
        tracing::info!(
            dir = %dir.display(),
            memory_mib = s.memory_bytes >> 20,
            "training cache full: spilling batches to disk"
        );
    }
    c.spilled += 1;
    c.disk_bytes = c.disk_bytes - old_bytes + bytes;
    c.disk.insert(
        key,
        OnDisk {
            rows: e.rows,
            cols: bins.len(),
            margins,
            bytes,
            used: e.used,
        },
    );
}

/// Runs `f` on a batch of rows `row_id`: its bin columns and, with
/// `boosting` = (`init`, finished trees), its margins (`init` plus the leaf
/// values of the trees, added tree by tree in order), or with `sampling`
/// the rows' weights in each of its trees (drawn once per tree and batch,
/// in the order of `sampling.trees`).
///
/// The bins are `scanned` (a full pass) or, in a resident pass (`None`),
/// this executor's copy; without one the batch is missed and `f` does not
/// run (`None`). With a `job` id the batch's entry is used and updated: the
/// margins advanced by the trees added since (or computed from scratch),
/// the scanned bins copied in.
pub(crate) fn with_batch<T>(
    job: Option<u64>,
    fit: u64,
    row_id: &[i64],
    scanned: Option<&[&[u8]]>,
    boosting: Option<(f64, &[CompactTree], Option<RoundTargets>)>,
    sampling: Option<Sampling>,
    f: impl FnOnce(&[&[u8]], Kept) -> T,
) -> Option<T> {
    with_batch_in(&STORE, job, fit, row_id, scanned, boosting, sampling, f)
}

#[allow(clippy::too_many_arguments)]
fn with_batch_in<T>(
    store: &Store,
    job: Option<u64>,
    fit: u64,
    row_id: &[i64],
    scanned: Option<&[&[u8]]>,
    boosting: Option<(f64, &[CompactTree], Option<RoundTargets>)>,
    sampling: Option<Sampling>,
    f: impl FnOnce(&[&[u8]], Kept) -> T,
) -> Option<T> {
    let n = row_id.len();
    let settings = store.settings();
    let fp = fingerprint(row_id);
    let key = job.map(|j| (j, fp));
    // Several fits of one job share its bins; each keeps its margins and
    // weights in an entry of its own.
    let fit_key = job
        .filter(|_| fit != 0)
        .map(|j| (j, hash2(fp, fit, FIT_STREAM)));
    let found = key
        .and_then(|k| store.take(k, &settings))
        .filter(|e| e.rows == n);
    if key.is_some() {
        let counter = if found.is_some() { &HITS } else { &MISSES };
        counter.fetch_add(1, Ordering::Relaxed);
    }
    let empty = || Entry {
        rows: n,
        bins: None,
        margins: None,
        weights: None,
        nodes: None,
        used: Instant::now(),
    };
    let mut entry = found.unwrap_or_else(empty);
    let mut fit_entry = fit_key.map(|k| {
        store
            .take(k, &settings)
            .filter(|e| e.rows == n)
            .unwrap_or_else(empty)
    });
    let state = fit_entry.as_mut().unwrap_or(&mut entry);
    let (mut margins_kept, mut weights_kept, mut nodes_kept) = (
        state.margins.take(),
        state.weights.take(),
        state.nodes.take(),
    );
    // Copy the scanned bins only where a later pass can find them.
    if entry.bins.is_none() && key.is_some() && settings.memory_bytes > 0 {
        entry.bins = scanned.map(|cols| cols.iter().map(|c| c.to_vec()).collect());
    }
    let out = {
        let kept: Option<Vec<&[u8]>> = match scanned {
            Some(_) => None,
            None => entry
                .bins
                .as_ref()
                .map(|cols| cols.iter().map(Vec::as_slice).collect()),
        };
        scanned.or(kept.as_deref()).map(|bins| {
            let (margins, grads) = match boosting {
                None => (None, None),
                Some((init, trees, targets)) => {
                    let kept = margins_kept
                        .take()
                        .filter(|m| m.init_bits == init.to_bits() && m.trees <= trees.len())
                        .unwrap_or(Margins {
                            values: vec![init; n],
                            trees: 0,
                            init_bits: init.to_bits(),
                            grads: None,
                        });
                    let m = margins_kept.insert(kept);
                    for t in &trees[m.trees..] {
                        for (i, v) in m.values.iter_mut().enumerate() {
                            *v += t.value[t.leaf_of(bins, i)];
                        }
                    }
                    m.trees = trees.len();
                    if let Some(t) = &targets {
                        if m.grads.as_ref().is_none_or(|g| g.key != t.key) {
                            let (g, h) = m
                                .values
                                .iter()
                                .enumerate()
                                .map(|(i, &v)| (t.of)(i, v))
                                .unzip();
                            m.grads = Some(Gradients { key: t.key, g, h });
                        }
                    }
                    let m = &*m;
                    let grads = targets
                        .and(m.grads.as_ref())
                        .map(|g| (g.g.as_slice(), g.h.as_slice()));
                    (Some(m.values.as_slice()), grads)
                }
            };
            let weights = sampling.map(|s| {
                let w = weights_kept.get_or_insert_with(|| TreeWeights {
                    params: s.params,
                    per_tree: HashMap::new(),
                });
                if w.params != s.params {
                    w.params = s.params;
                    w.per_tree.clear();
                }
                // Finished trees' weights are not needed again.
                w.per_tree.retain(|t, _| s.trees.contains(t));
                for &t in s.trees {
                    w.per_tree
                        .entry(t)
                        .or_insert_with(|| row_id.iter().map(|&r| (s.draw)(t, r as u64)).collect());
                }
                s.trees
                    .iter()
                    .map(|t| w.per_tree[t].as_slice())
                    .collect::<Vec<&[u8]>>()
            });
            let kept = Kept {
                margins,
                weights: weights.as_deref(),
                grads,
                nodes: key.map(|_| nodes_kept.get_or_insert_with(NodeCache::default)),
            };
            f(bins, kept)
        })
    };
    let state = fit_entry.as_mut().unwrap_or(&mut entry);
    (state.margins, state.weights, state.nodes) = (margins_kept, weights_kept, nodes_kept);
    for (key, entry) in [(key, Some(entry)), (fit_key, fit_entry)] {
        if let (Some(key), Some(mut entry)) = (key, entry) {
            if entry.bins.is_some()
                || entry.margins.is_some()
                || entry.weights.is_some()
                || entry.nodes.is_some()
            {
                entry.used = Instant::now();
                store.put(key, entry, &settings);
            }
        }
    }
    out
}

/// Consecutive missed resident passes after which a job runs only full
/// passes (the executors do not keep its batches: cache off or too small).
const MAX_MISSED_IN_A_ROW: usize = 4;

/// The driver's side of a fit's passes: whether the next one can be
/// resident, and whether a pass must run again as a full pass. Only plans
/// of a named job ([`LevelPlan::job`]) are ever resident.
#[derive(Debug, Clone, Default)]
pub struct PassMode {
    /// A full pass has run since the start or the last miss: the executors
    /// hold what it scanned.
    filled: bool,
    missed_in_a_row: usize,
}

impl PassMode {
    /// `plan` as the next pass runs it: resident once a full pass has
    /// filled the executors, unless passes keep missing.
    pub fn plan(&self, plan: &LevelPlan) -> LevelPlan {
        let mut p = plan.clone();
        p.resident = p.job.is_some() && self.filled && self.missed_in_a_row < MAX_MISSED_IN_A_ROW;
        p
    }

    /// Records a pass run with `plan` that missed `missed` rows; `true`
    /// when it must run again as a full pass ([`Self::plan`] then says so).
    pub fn record(&mut self, plan: &LevelPlan, missed: f64) -> bool {
        if !plan.resident {
            self.filled = true;
            return false;
        }
        if missed > 0.0 {
            self.missed_in_a_row += 1;
            self.filled = false;
            return true;
        }
        self.missed_in_a_row = 0;
        false
    }
}

/// Drops every cached batch of `job`, in memory and spilled; returns how
/// many there were.
pub fn release_job(job: u64) -> usize {
    STORE.release(job)
}

/// Batches of `job` in this process's memory.
pub fn cached_batches(job: u64) -> usize {
    STORE.lock().entries.keys().filter(|k| k.0 == job).count()
}

/// Lookups of this process so far: (hits, misses).
pub fn lookups() -> (u64, u64) {
    (HITS.load(Ordering::Relaxed), MISSES.load(Ordering::Relaxed))
}

/// Batches this process wrote to its spill directory and read back.
pub fn spill_counts() -> (u64, u64) {
    let c = STORE.lock();
    (c.spilled, c.restored)
}

impl Store {
    fn release(&self, job: u64) -> usize {
        let dir = self.settings().spill_dir;
        let mut c = self.lock();
        let mut keys: Vec<Key> = c.entries.keys().filter(|k| k.0 == job).copied().collect();
        for k in &keys {
            if let Some(v) = c.entries.remove(k) {
                c.bytes -= v.bytes();
            }
        }
        if let Some(dir) = dir {
            let spilled: Vec<Key> = c.disk.keys().filter(|k| k.0 == job).copied().collect();
            for k in spilled {
                forget(&mut c, &dir, k);
                keys.push(k);
            }
        }
        keys.sort_unstable();
        keys.dedup();
        keys.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distributed::level::PlanTargets;

    fn tree(feature: &[u32], bin: &[u8], left: &[u32], right: &[u32]) -> CompactTree {
        CompactTree {
            feature: feature.to_vec(),
            bin: bin.to_vec(),
            missing_left: (0..feature.len()).map(|i| i % 2 == 0).collect(),
            left: left.to_vec(),
            right: right.to_vec(),
            value: Vec::new(),
        }
    }

    #[test]
    fn kept_nodes_advance_like_routing_from_the_root() {
        let n = 1000;
        let f0: Vec<u8> = (0..n).map(|i| (i * 7 % 11) as u8).collect();
        let f1: Vec<u8> = (0..n).map(|i| (i * 13 % 5) as u8).collect();
        let bins = [f0.as_slice(), f1.as_slice()];
        let root = tree(&[0], &[0], &[0], &[0]);
        let depth1 = tree(&[0, 0, 0], &[5, 0, 0], &[1, 0, 0], &[2, 0, 0]);
        let depth2 = tree(
            &[0, 1, 0, 0, 0],
            &[5, 2, 0, 0, 0],
            &[1, 3, 0, 0, 0],
            &[2, 4, 0, 0, 0],
        );
        // Nodes 2 and 3 split, and 3's left child too: two levels at once.
        let depth3 = tree(
            &[0, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0],
            &[5, 2, 1, 8, 0, 0, 0, 3, 0, 0, 0],
            &[1, 3, 5, 7, 0, 0, 0, 9, 0, 0, 0],
            &[2, 4, 6, 8, 0, 0, 0, 10, 0, 0, 0],
        );
        // Not grown from depth2: the root splits at another bin.
        let other = tree(&[0, 0, 0], &[3, 0, 0], &[1, 0, 0], &[2, 0, 0]);
        assert!(depth2.grown_from(&depth1) && depth1.grown_from(&root));
        assert!(!other.grown_from(&depth2) && !root.grown_from(&depth1));
        let routed =
            |t: &CompactTree| -> Vec<u16> { (0..n).map(|i| t.leaf_of(&bins, i) as u16).collect() };
        let mut c = NodeCache::default();
        for t in [&root, &depth1, &depth2, &depth3, &other, &depth1] {
            let got = c.leaves(&[(7, t)], &bins, n).unwrap()[0].to_vec();
            assert_eq!(got, routed(t));
        }
        // Trees of a pass are kept apart; a tree no longer in the pass goes.
        let got = c.leaves(&[(1, &depth2), (2, &other)], &bins, n).unwrap();
        assert_eq!(got[0], routed(&depth2).as_slice());
        assert_eq!(got[1], routed(&other).as_slice());
        assert_eq!(c.per_tree.len(), 2);
        assert_eq!(c.bytes(), 2 * n * 2);
    }

    fn plan() -> LevelPlan {
        LevelPlan {
            n_bins: vec![4],
            targets: PlanTargets::Forest {
                seed: 1,
                bootstrap: false,
                subsampling_rate: 1.0,
            },
            trees: Vec::new(),
            slots: Vec::new(),
            eval: false,
            job: Some(7),
            resident: false,
            scope: Default::default(),
        }
    }

    #[test]
    fn passes_turn_resident_after_a_full_one_and_back_on_misses() {
        let mut mode = PassMode::default();
        let p = mode.plan(&plan());
        assert!(!p.resident, "the first pass scans the bins");
        assert!(!mode.record(&p, 0.0));
        let p = mode.plan(&plan());
        assert!(p.resident);
        assert!(!mode.record(&p, 0.0));
        // A miss: run again in full, then resident again.
        let p = mode.plan(&plan());
        assert!(mode.record(&p, 10.0));
        let full = mode.plan(&plan());
        assert!(!full.resident);
        assert!(!mode.record(&full, 0.0));
        let p = mode.plan(&plan());
        assert!(p.resident);
        assert!(!mode.record(&p, 0.0), "a hit ends the run of misses");
        // Passes that keep missing: only full passes from then on.
        for _ in 0..MAX_MISSED_IN_A_ROW {
            let p = mode.plan(&plan());
            assert!(p.resident);
            assert!(mode.record(&p, 1.0));
            let full = mode.plan(&plan());
            assert!(!mode.record(&full, 0.0));
        }
        assert!(!mode.plan(&plan()).resident);
        // Without a job nothing is resident.
        let unnamed = LevelPlan {
            job: None,
            ..plan()
        };
        let mut none = PassMode::default();
        let p = none.plan(&unnamed);
        assert!(!none.record(&p, 0.0));
        assert!(!none.plan(&unnamed).resident);
    }

    /// A stump on feature 0: bin 0 left (-0.5), the rest right (0.25).
    fn stump() -> CompactTree {
        CompactTree {
            feature: vec![0, 0, 0],
            bin: vec![0, 0, 0],
            missing_left: vec![true, false, false],
            left: vec![1, 0, 0],
            right: vec![2, 0, 0],
            value: vec![0.0, -0.5, 0.25],
        }
    }

    /// Margins of batch `ids` after one stump (a pass scanning `first`),
    /// then two (a resident pass), and after two from scratch (no job).
    fn stump_margins(
        store: &Store,
        job: u64,
        ids: &[i64],
        col: &[u8],
        first: Option<&[u8]>,
    ) -> [Vec<f64>; 3] {
        let trees = [stump(), stump()];
        let run = |job, scanned: Option<&[u8]>, n: usize| {
            let scanned = scanned.map(|c| [c]);
            with_batch_in(
                store,
                job,
                0,
                ids,
                scanned.as_ref().map(|c| &c[..]),
                Some((0.1, &trees[..n], None)),
                None,
                |_, k| k.margins.unwrap().to_vec(),
            )
            .unwrap()
        };
        [
            run(Some(job), first, 1),
            run(Some(job), None, 2),
            run(None, Some(col), 2),
        ]
    }

    #[test]
    fn a_batch_is_missed_until_a_full_pass_scans_it_here() {
        let job = 0x5e5_1de7;
        let ids: Vec<i64> = (100..110).collect();
        let col: Vec<u8> = (0..10).map(|i| (i % 3) as u8).collect();
        let sum = |bins: &[&[u8]], _: Kept| bins[0].iter().map(|&b| b as u32).sum::<u32>();
        assert_eq!(with_batch(Some(job), 0, &ids, None, None, None, sum), None);
        let full = with_batch(Some(job), 0, &ids, Some(&[col.as_slice()]), None, None, sum);
        assert_eq!(full, Some(9));
        assert_eq!(
            with_batch(Some(job), 0, &ids, None, None, None, sum),
            Some(9)
        );
        // Other rows (or their order) are another batch.
        let other: Vec<i64> = ids.iter().rev().copied().collect();
        assert_eq!(
            with_batch(Some(job), 0, &other, None, None, None, sum),
            None
        );
        // Margins advance from the kept ones: the same values as from scratch.
        let [one, two, scratch] = stump_margins(&STORE, job, &ids, &col, None);
        assert_eq!(one[0], 0.1 - 0.5);
        assert_eq!(two, scratch);
        assert_eq!(release_job(job), 1);
        assert_eq!(with_batch(Some(job), 0, &ids, None, None, None, sum), None);
        release_job(job);
    }

    #[test]
    fn forest_weights_are_drawn_once_per_tree_and_batch() {
        use std::sync::atomic::AtomicUsize;
        let job = 0xf0_7e57;
        let ids: Vec<i64> = (0..50).collect();
        let col = vec![1u8; 50];
        let draws = AtomicUsize::new(0);
        let draw = |t: u64, r: u64| {
            draws.fetch_add(1, Ordering::Relaxed);
            crate::sampling::row_weight(3, t, r, true, 1.0)
        };
        let weights = |_: &[&[u8]], k: Kept| {
            k.weights
                .unwrap()
                .iter()
                .map(|c| c.to_vec())
                .collect::<Vec<_>>()
        };
        let sampling = |trees| Sampling {
            params: 9,
            trees,
            draw: &draw,
        };
        let full = with_batch(
            Some(job),
            0,
            &ids,
            Some(&[col.as_slice()]),
            None,
            Some(sampling(&[0, 1, 2])),
            weights,
        )
        .unwrap();
        assert_eq!(draws.load(Ordering::Relaxed), 150);
        // Tree 1 finished: the kept weights of trees 0 and 2, in plan order.
        let later = with_batch(
            Some(job),
            0,
            &ids,
            None,
            None,
            Some(sampling(&[2, 0])),
            weights,
        )
        .unwrap();
        assert_eq!(draws.load(Ordering::Relaxed), 150);
        assert_eq!(later, vec![full[2].clone(), full[0].clone()]);
        let expected: Vec<u8> = (0..50)
            .map(|r| crate::sampling::row_weight(3, 2, r, true, 1.0))
            .collect();
        assert_eq!(later[0], expected);
        // Other sampling parameters draw again.
        let other = Sampling {
            params: 10,
            ..sampling(&[2])
        };
        with_batch(Some(job), 0, &ids, None, None, Some(other), weights).unwrap();
        assert_eq!(draws.load(Ordering::Relaxed), 200);
        release_job(job);
    }

    #[test]
    fn a_rounds_gradients_are_drawn_once_per_batch() {
        use std::sync::atomic::AtomicUsize;
        let job = 0x9_7ad5;
        let ids: Vec<i64> = (0..20).collect();
        let col = vec![1u8; 20];
        let calls = AtomicUsize::new(0);
        let of = |i: usize, m: f64| {
            calls.fetch_add(1, Ordering::Relaxed);
            if i.is_multiple_of(4) {
                (f32::NAN, f32::NAN)
            } else {
                crate::gbt::grad_hess(m, (i % 2) as u8)
            }
        };
        let grads = |_: &[&[u8]], k: Kept| {
            let (g, h) = k.grads.unwrap();
            (g.to_vec(), h.to_vec())
        };
        let round = |key| Some((0.3, &[][..], Some(RoundTargets { key, of: &of })));
        let first = with_batch(
            Some(job),
            0,
            &ids,
            Some(&[col.as_slice()]),
            round(1),
            None,
            grads,
        );
        let again = with_batch(Some(job), 0, &ids, None, round(1), None, grads);
        assert_eq!(calls.load(Ordering::Relaxed), 20);
        let (g, h) = again.unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&first.unwrap().1), bits(&h));
        assert!(g[0].is_nan() && !g[1].is_nan());
        assert_eq!((g[1], h[1]), crate::gbt::grad_hess(0.3, 1));
        // Another round draws again.
        with_batch(Some(job), 0, &ids, None, round(2), None, grads).unwrap();
        assert_eq!(calls.load(Ordering::Relaxed), 40);
        release_job(job);
    }

    /// A store of its own (the process's is shared by parallel tests).
    fn store(memory_bytes: usize, spill_bytes: usize, tag: &str) -> (Store, PathBuf) {
        let dir = std::env::temp_dir().join(format!("sluice-spill-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let settings = CacheSettings {
            memory_bytes,
            ttl: Duration::from_secs(900),
            spill_dir: Some(dir.clone()),
            spill_bytes,
        };
        let store = Store {
            cache: Mutex::new(Cache::default()),
            settings: Some(settings),
        };
        (store, dir)
    }

    fn files(dir: &Path) -> usize {
        std::fs::read_dir(dir).unwrap().count()
    }

    #[test]
    fn batches_past_the_memory_budget_are_spilled_and_read_back() {
        let job = 0x5b111;
        // Memory for one batch of 10 rows x 2 bin columns.
        let (store, dir) = store(20, 1 << 20, "lru");
        let ids = |b: i64| (b * 10..b * 10 + 10).collect::<Vec<i64>>();
        let cols = |b: u8| [vec![b; 10], (0..10).collect::<Vec<u8>>()];
        let copy = |bins: &[&[u8]], _: Kept| bins.iter().map(|c| c.to_vec()).collect::<Vec<_>>();
        for b in 0..3u8 {
            let c = cols(b);
            let scanned = [c[0].as_slice(), c[1].as_slice()];
            with_batch_in(
                &store,
                Some(job),
                0,
                &ids(b as i64),
                Some(&scanned),
                None,
                None,
                copy,
            )
            .unwrap();
        }
        // Two batches left memory for the spill directory.
        assert_eq!(store.lock().spilled, 2);
        assert_eq!(files(&dir), 2);
        // Every batch is found again, with its own bins, in any order.
        for b in [0u8, 2, 1, 0] {
            let got = with_batch_in(&store, Some(job), 0, &ids(b as i64), None, None, None, copy);
            assert_eq!(got, Some(cols(b).to_vec()), "batch {b}");
        }
        // Memory holds one batch, the one last used: each lookup reads back.
        assert_eq!(store.lock().restored, 4);
        // Each batch's bins are written once, however often it leaves memory.
        assert_eq!(files(&dir), 3);
        assert_eq!(store.release(job), 3);
        assert_eq!(files(&dir), 0);
        assert_eq!(
            with_batch_in(&store, Some(job), 0, &ids(0), None, None, None, copy),
            None
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn spilled_margins_advance_like_kept_ones() {
        let job = 0x5b112;
        // No room in memory at all: every batch lives on disk.
        let (store, dir) = store(1, 1 << 20, "margins");
        let ids: Vec<i64> = (0..10).collect();
        let col: Vec<u8> = (0..10).map(|i| (i % 3) as u8).collect();
        let [first, second, scratch] = stump_margins(&store, job, &ids, &col, Some(&col));
        assert_eq!(second, scratch);
        assert_ne!(first, second);
        let c = store.lock();
        assert_eq!((c.spilled, c.restored), (2, 1));
        assert_eq!(
            c.disk[&(job, fingerprint(&ids))].margins.map(|m| m.0),
            Some(2)
        );
        drop(c);
        store.release(job);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_full_spill_directory_drops_the_least_recently_used_batch() {
        let job = 0x5b113;
        // Disk for one batch of 10 rows x 1 column.
        let (store, dir) = store(1, 10, "full");
        let col = vec![1u8; 10];
        let sum = |bins: &[&[u8]], _: Kept| bins[0].len();
        let ids = |b: i64| (b * 10..b * 10 + 10).collect::<Vec<i64>>();
        for b in 0..2 {
            with_batch_in(
                &store,
                Some(job),
                0,
                &ids(b),
                Some(&[col.as_slice()]),
                None,
                None,
                sum,
            )
            .unwrap();
        }
        assert_eq!(files(&dir), 1);
        assert_eq!(
            with_batch_in(&store, Some(job), 0, &ids(0), None, None, None, sum),
            None
        );
        assert_eq!(
            with_batch_in(&store, Some(job), 0, &ids(1), None, None, None, sum),
            Some(10)
        );
        store.release(job);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
