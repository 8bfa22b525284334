//! Executor-resident boosting state: the margins of a training job's rows,
//! kept in the executor process between level passes.
//!
//! Without it every GBT pass routes each row through every finished tree to
//! get its margin (round `k` of a boosting job costs `k` tree walks per row
//! and pass). With it the first pass of a job computes the margins of each
//! batch it scans and keeps them, keyed by (job id, fingerprint of the
//! batch's row ids); later passes add only the trees finished since, in the
//! same order, so the margins (and the model) are bit-identical to a
//! recomputation. A batch whose entry is missing (a new or restarted
//! executor, a task moved after an executor was lost, an evicted entry) is
//! simply computed from scratch from the rows it scans: the cache never
//! changes a result, it only saves work.
//!
//! The cache is process-global and bounded: entries idle longer than
//! `SLUICE_TRAIN_CACHE_TTL_SECS` (default 900) are dropped, and the total
//! stays under `SLUICE_TRAIN_CACHE_MB` (default 1024; least recently used
//! entries go first, `0` disables the cache). [`release_job`] drops a job's
//! entries at once (the engine calls it when a fit ends).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use xxhash_rust::xxh3::Xxh3;

use super::level::CompactTree;

/// The margins of one batch after the first `trees` finished trees.
#[derive(Debug)]
struct Entry {
    margins: Vec<f64>,
    trees: usize,
    init_bits: u64,
    used: Instant,
}

#[derive(Debug, Default)]
struct Cache {
    entries: HashMap<(u64, u64), Entry>,
    bytes: usize,
}

static CACHE: LazyLock<Mutex<Cache>> = LazyLock::new(|| Mutex::new(Cache::default()));
static HITS: AtomicU64 = AtomicU64::new(0);
static MISSES: AtomicU64 = AtomicU64::new(0);

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn budget_bytes() -> usize {
    (env_or("SLUICE_TRAIN_CACHE_MB", 1024) as usize).saturating_mul(1 << 20)
}

fn ttl() -> Duration {
    Duration::from_secs(env_or("SLUICE_TRAIN_CACHE_TTL_SECS", 900))
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

fn lock() -> std::sync::MutexGuard<'static, Cache> {
    // A panic while holding the lock leaves a consistent map: keep using it.
    CACHE.lock().unwrap_or_else(|e| e.into_inner())
}

fn take(key: (u64, u64)) -> Option<Entry> {
    let mut c = lock();
    let e = c.entries.remove(&key)?;
    c.bytes -= e.margins.len() * 8;
    Some(e)
}

fn put(key: (u64, u64), e: Entry) {
    let size = e.margins.len() * 8;
    let budget = budget_bytes();
    if size > budget {
        return;
    }
    let ttl = ttl();
    let mut c = lock();
    let now = Instant::now();
    let stale: Vec<(u64, u64)> = c
        .entries
        .iter()
        .filter(|(_, v)| now.duration_since(v.used) > ttl)
        .map(|(k, _)| *k)
        .collect();
    for k in stale {
        if let Some(v) = c.entries.remove(&k) {
            c.bytes -= v.margins.len() * 8;
        }
    }
    while c.bytes + size > budget {
        let Some(oldest) = c
            .entries
            .iter()
            .min_by_key(|(_, v)| v.used)
            .map(|(k, _)| *k)
        else {
            break;
        };
        if let Some(v) = c.entries.remove(&oldest) {
            c.bytes -= v.margins.len() * 8;
        }
    }
    c.bytes += size;
    c.entries.insert(key, e);
}

/// Runs `f` on the margins of a batch (rows `row_id`, bin columns `bins`):
/// `init` plus the leaf values of `trees`, added tree by tree in order.
/// With a `job` id the margins come from the executor's cache, advanced by
/// the trees added since (or computed from scratch on a miss), and go back
/// into it afterwards.
pub(crate) fn with_margins<T>(
    job: Option<u64>,
    row_id: &[i64],
    init: f64,
    trees: &[CompactTree],
    bins: &[&[u8]],
    f: impl FnOnce(&[f64]) -> T,
) -> T {
    let n = row_id.len();
    let key = job.map(|j| (j, fingerprint(row_id)));
    let cached = key.and_then(take).filter(|e| {
        e.margins.len() == n && e.init_bits == init.to_bits() && e.trees <= trees.len()
    });
    if key.is_some() {
        let counter = if cached.is_some() { &HITS } else { &MISSES };
        counter.fetch_add(1, Ordering::Relaxed);
    }
    let (mut margins, done) = match cached {
        Some(e) => (e.margins, e.trees),
        None => (vec![init; n], 0),
    };
    for t in &trees[done..] {
        for (i, m) in margins.iter_mut().enumerate() {
            *m += t.value[t.leaf_of(bins, i)];
        }
    }
    let out = f(&margins);
    if let Some(key) = key {
        put(
            key,
            Entry {
                margins,
                trees: trees.len(),
                init_bits: init.to_bits(),
                used: Instant::now(),
            },
        );
    }
    out
}

/// Drops every cached batch of `job`; returns how many there were.
pub fn release_job(job: u64) -> usize {
    let mut c = lock();
    let keys: Vec<(u64, u64)> = c.entries.keys().filter(|k| k.0 == job).copied().collect();
    for k in &keys {
        if let Some(v) = c.entries.remove(k) {
            c.bytes -= v.margins.len() * 8;
        }
    }
    keys.len()
}

/// Cached batches of `job` in this process.
pub fn cached_batches(job: u64) -> usize {
    lock().entries.keys().filter(|k| k.0 == job).count()
}

/// Lookups of this process so far: (hits, misses).
pub fn lookups() -> (u64, u64) {
    (HITS.load(Ordering::Relaxed), MISSES.load(Ordering::Relaxed))
}
