//! The synthetic lake generator (`sluice datagen`).
//!
//! Writes, through the lake's object store:
//!
//! * the seven raw tables of the data contract under
//!   `raw/<table>/part-XXXXX.parquet`,
//! * the ground-truth labels of the raw samples under
//!   `truth/labels/part-XXXXX.parquet` (`sample_id`, `indoor`),
//! * the four labelled training CSVs under `training/<label_source>.csv`,
//!   generated from their own device population (independent of the raw
//!   samples).
//!
//! The behaviour model lives in [`sim`]. Generation is deterministic for a
//! seed whatever the thread count: every device draws from its own ChaCha
//! stream seeded from `(seed, population, device index)`, devices are grouped
//! into fixed chunks, and chunks are built in parallel (rayon) in waves whose
//! results are written in chunk order. Only one wave is in memory at a time,
//! so peak memory is bounded by `2 × threads × chunk_samples` samples
//! whatever the total size.

pub mod sim;

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use tokio::io::AsyncWriteExt;

use sim::{cell_attrs, device_spec, mix, simulate_device, DeviceSpec, Sample, MODELS, OS_VERSIONS};
use sluice_common::error::{EngineError, Result};
use sluice_lake::lake::Lake;
use sluice_lake::schema;

/// The label sources of the training campaigns (one CSV file each) with the
/// share of training devices and the label noise of each campaign.
pub const LABEL_SOURCES: &[(&str, f64, f64)] = &[
    ("manual", 0.15, 0.005),
    ("geofence", 0.30, 0.025),
    ("wifi_home", 0.25, 0.015),
    ("campaign", 0.30, 0.015),
];

/// First device id of the raw (inference) population.
pub const RAW_DEVICE_ID_BASE: i64 = 1_000_000;
/// First device id of the training population.
pub const TRAIN_DEVICE_ID_BASE: i64 = 50_000_000;
/// First sample id of the training population (raw samples start at 1).
pub const TRAIN_SAMPLE_ID_BASE: i64 = 1_000_000_000_000;

const STREAM_RAW: u64 = 0x5241_5700;
const STREAM_TRAIN: u64 = 0x5452_4E00;

/// Generator settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DatagenConfig {
    /// Raw (inference) samples to generate.
    pub samples: u64,
    /// Raw devices (each simulated over about one day).
    pub devices: u64,
    /// Labelled training rows over the four CSV files.
    pub train_rows: u64,
    /// Seed of every random stream.
    pub seed: u64,
    /// Label noise of the raw truth labels (the training files use
    /// per-campaign rates, see [`LABEL_SOURCES`]).
    pub label_noise: f64,
    /// Samples per output chunk (one Parquet file per table and chunk).
    pub chunk_samples: u64,
    /// A known shift of the raw population (drift tests); none by default.
    pub shift: Option<sim::Shift>,
}

impl DatagenConfig {
    /// The defaults for `samples` raw samples: `samples / 2000` devices,
    /// 544,500 training rows, seed 42, 1.5 % label noise.
    pub fn new(samples: u64) -> Self {
        Self {
            samples,
            devices: (samples / 2_000).max(1),
            train_rows: 544_500,
            seed: 42,
            label_noise: 0.015,
            chunk_samples: 262_144,
            shift: None,
        }
    }

    fn validate(&self) -> Result<()> {
        let bad =
            |key: &str, msg: String| Err(EngineError::config(format!("datagen --{key}"), msg));
        if self.samples == 0 {
            return bad("samples", "expected at least 1 sample, found 0".into());
        }
        if self.devices == 0 || self.devices > self.samples {
            return bad(
                "devices",
                format!(
                    "expected 1..={} devices (at most one per sample), found {}",
                    self.samples, self.devices
                ),
            );
        }
        if !(0.0..0.5).contains(&self.label_noise) {
            return bad(
                "label-noise",
                format!("expected a rate in [0, 0.5), found {}", self.label_noise),
            );
        }
        if self.chunk_samples == 0 {
            return bad("chunk-samples", "expected at least 1, found 0".into());
        }
        Ok(())
    }

    /// Samples per device of both populations (the training population uses
    /// the same density so its features match the raw ones).
    fn samples_per_device(&self) -> u64 {
        (self.samples / self.devices).max(1)
    }

    /// Cells in the simulated network.
    pub fn cell_pool(&self) -> u64 {
        (self.samples / 500).clamp(1_000, 2_000_000)
    }
}

/// What a generator run produced.
#[derive(Debug, Clone, PartialEq)]
pub struct DatagenSummary {
    /// Raw samples written (rows of `samples`).
    pub samples: u64,
    /// Raw devices written.
    pub devices: u64,
    /// Cells written.
    pub cells: u64,
    /// Training rows written over the CSV files.
    pub train_rows: u64,
    /// Share of indoor labels among the raw truth labels.
    pub indoor_share: f64,
    /// Objects written.
    pub files: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// A population of devices laid out over consecutive sample ids.
struct Population {
    stream: u64,
    seed: u64,
    devices: u64,
    samples: u64,
    device_id_base: i64,
    sample_id_base: i64,
    shift: Option<sim::Shift>,
}

impl Population {
    fn device_samples(&self, i: u64) -> u64 {
        let per = self.samples / self.devices;
        per + u64::from(i < self.samples % self.devices)
    }

    fn first_sample(&self, i: u64) -> u64 {
        let per = self.samples / self.devices;
        i * per + i.min(self.samples % self.devices)
    }

    fn rng(&self, i: u64) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(mix(mix(self.seed ^ self.stream) ^ i))
    }

    fn spec(&self, i: u64, rng: &mut ChaCha8Rng) -> DeviceSpec {
        let mut spec = device_spec(
            rng,
            self.device_id_base + i as i64,
            self.sample_id_base + self.first_sample(i) as i64,
            self.device_samples(i) as usize,
        );
        if let Some(s) = self.shift {
            s.apply(&mut spec);
        }
        spec
    }

    /// Contiguous device ranges of about `chunk_samples` samples each.
    fn chunks(&self, chunk_samples: u64) -> Vec<std::ops::Range<u64>> {
        let mut out = Vec::new();
        let mut start = 0;
        let mut acc = 0;
        for i in 0..self.devices {
            acc += self.device_samples(i);
            if acc >= chunk_samples {
                out.push(start..i + 1);
                start = i + 1;
                acc = 0;
            }
        }
        if start < self.devices {
            out.push(start..self.devices);
        }
        out
    }
}

/// Generates a complete synthetic lake into `lake` (replacing any previous
/// `raw/`, `training/` and `truth/` content).
pub async fn generate(lake: &Lake, cfg: &DatagenConfig) -> Result<DatagenSummary> {
    cfg.validate()?;
    let started = Instant::now();
    for dir in ["raw", "training", "truth"] {
        lake.delete_prefix(dir).await?;
    }
    let raw = Population {
        stream: STREAM_RAW,
        seed: cfg.seed,
        devices: cfg.devices,
        samples: cfg.samples,
        device_id_base: RAW_DEVICE_ID_BASE,
        sample_id_base: 1,
        shift: cfg.shift,
    };
    let spd = cfg.samples_per_device();
    let train_devices = cfg
        .train_rows
        .div_ceil(spd)
        .max(u64::from(cfg.train_rows > 0));
    let train = Population {
        stream: STREAM_TRAIN,
        seed: cfg.seed,
        devices: train_devices,
        samples: cfg.train_rows,
        device_id_base: TRAIN_DEVICE_ID_BASE,
        sample_id_base: TRAIN_SAMPLE_ID_BASE,
        shift: None,
    };

    let bar = sluice_common::progress::task(
        "datagen",
        sluice_common::progress::Unit::Rows,
        Some(cfg.samples + cfg.train_rows),
    );
    let mut files = 0usize;

    // Dimension tables.
    let devices = devices_batch(&raw)?;
    lake.put(
        "raw/devices/part-00000.parquet",
        encode_parquet(&devices, "devices")?,
    )
    .await?;
    let cells = cells_batch(cfg.cell_pool())?;
    lake.put(
        "raw/cells/part-00000.parquet",
        encode_parquet(&cells, "cells")?,
    )
    .await?;
    files += 2;

    // Raw per-sample tables and truth labels, chunk by chunk.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<(u64, u64, Vec<(String, Bytes)>)>>(1);
    let raw = Arc::new(raw);
    let chunk_samples = cfg.chunk_samples;
    let cell_pool = cfg.cell_pool();
    let noise = cfg.label_noise;
    let producer = {
        let raw = Arc::clone(&raw);
        tokio::task::spawn_blocking(move || {
            let chunks = raw.chunks(chunk_samples);
            let wave = 2 * rayon::current_num_threads().max(1);
            for (w, group) in chunks.chunks(wave).enumerate() {
                let built: Vec<Result<RawChunk>> = group
                    .par_iter()
                    .enumerate()
                    .map(|(k, devs)| {
                        build_raw_chunk(&raw, (w * wave + k) as u64, devs.clone(), cell_pool, noise)
                    })
                    .collect();
                for item in built {
                    let failed = item.is_err();
                    if tx.blocking_send(item).is_err() || failed {
                        return;
                    }
                }
            }
        })
    };
    let mut indoor = 0u64;
    while let Some(item) = rx.recv().await {
        let (rows, indoor_rows, objects) = item?;
        for (rel, bytes) in objects {
            lake.put(&rel, bytes).await?;
            files += 1;
        }
        indoor += indoor_rows;
        bar.inc(rows);
    }
    producer
        .await
        .map_err(|e| EngineError::Internal(format!("datagen producer panicked: {e}")))?;

    // Training CSVs: one streamed upload per label source, chunks in order.
    if cfg.train_rows > 0 {
        files += write_training(lake, Arc::new(train), cfg, &bar).await?;
    }
    bar.finish();
    let summary = DatagenSummary {
        samples: cfg.samples,
        devices: cfg.devices,
        cells: cfg.cell_pool(),
        train_rows: cfg.train_rows,
        indoor_share: indoor as f64 / cfg.samples as f64,
        files,
        seconds: started.elapsed().as_secs_f64(),
    };
    tracing::info!(
        samples = summary.samples,
        devices = summary.devices,
        train_rows = summary.train_rows,
        indoor_share = %sluice_common::logfmt::num(summary.indoor_share),
        files = summary.files,
        seconds = %sluice_common::logfmt::secs(summary.seconds),
        "generated lake {}",
        lake.url()
    );
    Ok(summary)
}

fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(1 << 20))
        .build()
}

/// Encodes one batch as a complete Parquet file.
fn encode_parquet(batch: &RecordBatch, table: &str) -> Result<Bytes> {
    let fail = |e: parquet::errors::ParquetError| {
        EngineError::Internal(format!("encoding Parquet for table `{table}`: {e}"))
    };
    let mut buf = Vec::with_capacity(batch.get_array_memory_size() / 2);
    let mut w =
        ArrowWriter::try_new(&mut buf, batch.schema(), Some(writer_properties())).map_err(fail)?;
    w.write(batch).map_err(fail)?;
    w.close().map_err(fail)?;
    Ok(Bytes::from(buf))
}

fn batch(schema: SchemaRef, columns: Vec<ArrayRef>) -> Result<RecordBatch> {
    Ok(RecordBatch::try_new(schema, columns)?)
}

fn ts_array(v: Vec<i64>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(v).with_timezone(schema::TIMESTAMP_TZ))
}

fn devices_batch(pop: &Population) -> Result<RecordBatch> {
    let n = pop.devices as usize;
    let (mut id, mut man, mut model, mut os) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for i in 0..pop.devices {
        let spec = pop.spec(i, &mut pop.rng(i));
        id.push(spec.device_id);
        man.push(MODELS[spec.model].0);
        model.push(MODELS[spec.model].1);
        os.push(OS_VERSIONS[spec.os]);
    }
    batch(
        Arc::clone(&schema::raw_table("devices")?.schema),
        vec![
            Arc::new(Int64Array::from(id)),
            Arc::new(StringArray::from(man)),
            Arc::new(StringArray::from(model)),
            Arc::new(StringArray::from(os)),
        ],
    )
}

fn cells_batch(pool: u64) -> Result<RecordBatch> {
    let attrs: Vec<(i64, sim::CellAttrs)> = (1..=pool as i64).map(|k| (k, cell_attrs(k))).collect();
    batch(
        Arc::clone(&schema::raw_table("cells")?.schema),
        vec![
            Arc::new(Int64Array::from_iter_values(attrs.iter().map(|(k, _)| *k))),
            Arc::new(Int32Array::from_iter_values(
                attrs.iter().map(|(_, a)| a.mcc),
            )),
            Arc::new(Int32Array::from_iter_values(
                attrs.iter().map(|(_, a)| a.mnc),
            )),
            Arc::new(Int32Array::from_iter_values(
                attrs.iter().map(|(_, a)| a.tac),
            )),
            Arc::new(Int64Array::from_iter_values(
                attrs.iter().map(|(_, a)| a.cell_id),
            )),
            Arc::new(Int32Array::from_iter_values(
                attrs.iter().map(|(_, a)| a.pci),
            )),
            Arc::new(Int32Array::from_iter_values(
                attrs.iter().map(|(_, a)| a.earfcn),
            )),
        ],
    )
}

/// Column buffers of the five per-sample outputs of one chunk.
#[derive(Default)]
struct RawColumns {
    s_id: Vec<i64>,
    s_dev: Vec<i64>,
    s_ts: Vec<i64>,
    s_cell: Vec<Option<i64>>,
    s_net: Vec<&'static str>,
    l_id: Vec<i64>,
    l_lat: Vec<f64>,
    l_lon: Vec<f64>,
    l_alt: Vec<Option<f64>>,
    l_acc: Vec<Option<f64>>,
    l_speed: Vec<Option<f64>>,
    l_prov: Vec<&'static str>,
    l_fix: Vec<i64>,
    r_id: Vec<i64>,
    r_rsrp: Vec<Option<f64>>,
    r_rsrq: Vec<Option<f64>>,
    r_sinr: Vec<Option<f64>>,
    r_rssi: Vec<Option<f64>>,
    a_id: Vec<i64>,
    a_act: Vec<&'static str>,
    a_conf: Vec<i32>,
    e_id: Vec<i64>,
    e_wifi: Vec<bool>,
    e_wrssi: Vec<Option<f64>>,
    e_vis: Vec<i32>,
    e_chg: Vec<bool>,
    e_scr: Vec<bool>,
    t_id: Vec<i64>,
    t_indoor: Vec<i32>,
}

impl RawColumns {
    fn push(&mut self, s: &Sample) {
        self.s_id.push(s.sample_id);
        self.s_dev.push(s.device_id);
        self.s_ts.push(s.ts);
        self.s_cell.push(s.cell_key);
        self.s_net.push(s.network_type);
        if let Some(f) = &s.fix {
            self.l_id.push(s.sample_id);
            self.l_lat.push(f.lat);
            self.l_lon.push(f.lon);
            self.l_alt.push(f.alt);
            self.l_acc.push(f.acc);
            self.l_speed.push(f.speed);
            self.l_prov.push(f.provider);
            self.l_fix.push(f.fix_ts);
        }
        if let Some(r) = &s.radio {
            self.r_id.push(s.sample_id);
            self.r_rsrp.push(r.rsrp);
            self.r_rsrq.push(r.rsrq);
            self.r_sinr.push(r.sinr);
            self.r_rssi.push(r.rssi);
        }
        if let Some((a, c)) = s.activity {
            self.a_id.push(s.sample_id);
            self.a_act.push(a);
            self.a_conf.push(c);
        }
        if let Some(e) = &s.env {
            self.e_id.push(s.sample_id);
            self.e_wifi.push(e.wifi);
            self.e_wrssi.push(e.wifi_rssi);
            self.e_vis.push(e.visible);
            self.e_chg.push(e.charging);
            self.e_scr.push(e.screen);
        }
        self.t_id.push(s.sample_id);
        self.t_indoor.push(i32::from(s.indoor_label));
    }

    fn into_batches(self) -> Result<Vec<(&'static str, RecordBatch)>> {
        let t = |name: &str| schema::raw_table(name).map(|t| Arc::clone(&t.schema));
        Ok(vec![
            (
                "samples",
                batch(
                    t("samples")?,
                    vec![
                        Arc::new(Int64Array::from(self.s_id)),
                        Arc::new(Int64Array::from(self.s_dev)),
                        ts_array(self.s_ts),
                        Arc::new(Int64Array::from(self.s_cell)),
                        Arc::new(StringArray::from(self.s_net)),
                    ],
                )?,
            ),
            (
                "locations",
                batch(
                    t("locations")?,
                    vec![
                        Arc::new(Int64Array::from(self.l_id)),
                        Arc::new(Float64Array::from(self.l_lat)),
                        Arc::new(Float64Array::from(self.l_lon)),
                        Arc::new(Float64Array::from(self.l_alt)),
                        Arc::new(Float64Array::from(self.l_acc)),
                        Arc::new(Float64Array::from(self.l_speed)),
                        Arc::new(StringArray::from(self.l_prov)),
                        ts_array(self.l_fix),
                    ],
                )?,
            ),
            (
                "radio",
                batch(
                    t("radio")?,
                    vec![
                        Arc::new(Int64Array::from(self.r_id)),
                        Arc::new(Float64Array::from(self.r_rsrp)),
                        Arc::new(Float64Array::from(self.r_rsrq)),
                        Arc::new(Float64Array::from(self.r_sinr)),
                        Arc::new(Float64Array::from(self.r_rssi)),
                    ],
                )?,
            ),
            (
                "activity",
                batch(
                    t("activity")?,
                    vec![
                        Arc::new(Int64Array::from(self.a_id)),
                        Arc::new(StringArray::from(self.a_act)),
                        Arc::new(Int32Array::from(self.a_conf)),
                    ],
                )?,
            ),
            (
                "environment",
                batch(
                    t("environment")?,
                    vec![
                        Arc::new(Int64Array::from(self.e_id)),
                        Arc::new(BooleanArray::from(self.e_wifi)),
                        Arc::new(Float64Array::from(self.e_wrssi)),
                        Arc::new(Int32Array::from(self.e_vis)),
                        Arc::new(BooleanArray::from(self.e_chg)),
                        Arc::new(BooleanArray::from(self.e_scr)),
                    ],
                )?,
            ),
            (
                "labels",
                batch(
                    schema::truth_schema(),
                    vec![
                        Arc::new(Int64Array::from(self.t_id)),
                        Arc::new(Int32Array::from(self.t_indoor)),
                    ],
                )?,
            ),
        ])
    }
}

/// One encoded chunk of raw tables: (rows, indoor rows, objects to write).
type RawChunk = (u64, u64, Vec<(String, Bytes)>);

/// Simulates one chunk of raw devices and encodes its Parquet files.
/// Returns (rows, indoor rows, objects to write).
fn build_raw_chunk(
    pop: &Population,
    chunk: u64,
    devices: std::ops::Range<u64>,
    cell_pool: u64,
    label_noise: f64,
) -> Result<RawChunk> {
    let mut cols = RawColumns::default();
    let mut rows = 0u64;
    let mut indoor = 0u64;
    for i in devices {
        let mut rng = pop.rng(i);
        let spec = pop.spec(i, &mut rng);
        simulate_device(&spec, &mut rng, cell_pool, label_noise, |s| {
            rows += 1;
            indoor += u64::from(s.indoor_label);
            cols.push(s);
        });
    }
    let mut objects = Vec::with_capacity(6);
    for (table, b) in cols.into_batches()? {
        let dir = if table == "labels" {
            "truth/labels".to_string()
        } else {
            format!("raw/{table}")
        };
        objects.push((
            format!("{dir}/part-{chunk:05}.parquet"),
            encode_parquet(&b, table)?,
        ));
    }
    Ok((rows, indoor, objects))
}

/// The label source of training device `i` (a hash, independent of the
/// device's own random stream).
fn label_source(seed: u64, i: u64) -> usize {
    let u = (mix(mix(seed ^ 0x50_5243) ^ i) >> 11) as f64 / (1u64 << 53) as f64;
    let mut acc = 0.0;
    for (k, (_, share, _)) in LABEL_SOURCES.iter().enumerate() {
        acc += share;
        if u < acc {
            return k;
        }
    }
    LABEL_SOURCES.len() - 1
}

/// The CSV header line of the training files.
pub fn training_header() -> String {
    let schema = schema::training_schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    format!("{}\n", names.join(","))
}

/// Formats a timestamp (µs since the epoch) as RFC 3339 with microseconds.
pub fn rfc3339_micros(us: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_micros(us)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
        .unwrap_or_default()
}

fn opt<T: std::fmt::Display>(out: &mut String, v: Option<T>) {
    use std::fmt::Write;
    if let Some(v) = v {
        let _ = write!(out, "{v}");
    }
    out.push(',');
}

fn csv_row(out: &mut String, s: &Sample, spec: &DeviceSpec, source: &str) {
    use std::fmt::Write;
    let _ = write!(
        out,
        "{},{},{},",
        s.sample_id,
        s.device_id,
        rfc3339_micros(s.ts)
    );
    opt(out, s.cell_key);
    let (man, model, _) = MODELS[spec.model];
    let _ = write!(
        out,
        "{},{},{},{},",
        s.network_type, man, model, OS_VERSIONS[spec.os]
    );
    let cell = s.cell_key.map(cell_attrs);
    opt(out, cell.map(|c| c.mcc));
    opt(out, cell.map(|c| c.mnc));
    opt(out, cell.map(|c| c.tac));
    opt(out, cell.map(|c| c.cell_id));
    opt(out, cell.map(|c| c.pci));
    opt(out, cell.map(|c| c.earfcn));
    let f = s.fix.as_ref();
    opt(out, f.map(|f| f.lat));
    opt(out, f.map(|f| f.lon));
    opt(out, f.and_then(|f| f.alt));
    opt(out, f.and_then(|f| f.acc));
    opt(out, f.and_then(|f| f.speed));
    opt(out, f.map(|f| f.provider));
    opt(out, f.map(|f| rfc3339_micros(f.fix_ts)));
    let r = s.radio.as_ref();
    opt(out, r.and_then(|r| r.rsrp));
    opt(out, r.and_then(|r| r.rsrq));
    opt(out, r.and_then(|r| r.sinr));
    opt(out, r.and_then(|r| r.rssi));
    opt(out, s.activity.map(|a| a.0));
    opt(out, s.activity.map(|a| a.1));
    let e = s.env.as_ref();
    opt(out, e.map(|e| e.wifi));
    opt(out, e.and_then(|e| e.wifi_rssi));
    opt(out, e.map(|e| e.visible));
    opt(out, e.map(|e| e.charging));
    opt(out, e.map(|e| e.screen));
    let _ = writeln!(out, "{},{}", i32::from(s.indoor_label), source);
}

/// Simulates one chunk of training devices; returns the CSV text per label
/// source.
fn build_train_chunk(
    pop: &Population,
    devices: std::ops::Range<u64>,
    cell_pool: u64,
) -> (u64, Vec<String>) {
    let mut texts = vec![String::new(); LABEL_SOURCES.len()];
    let mut rows = 0;
    for i in devices {
        let src = label_source(pop.seed, i);
        let (name, _, noise) = LABEL_SOURCES[src];
        let mut rng = pop.rng(i);
        let spec = pop.spec(i, &mut rng);
        let out = &mut texts[src];
        simulate_device(&spec, &mut rng, cell_pool, noise, |s| {
            rows += 1;
            csv_row(out, s, &spec, name);
        });
    }
    (rows, texts)
}

async fn write_training(
    lake: &Lake,
    train: Arc<Population>,
    cfg: &DatagenConfig,
    bar: &sluice_common::progress::Task,
) -> Result<usize> {
    let mut writers: Vec<(String, object_store::buffered::BufWriter)> = LABEL_SOURCES
        .iter()
        .map(|(name, _, _)| {
            let rel = format!("training/{name}.csv");
            let w = object_store::buffered::BufWriter::new(lake.store(), lake.path(&rel));
            (rel, w)
        })
        .collect();
    let header = training_header();
    for (rel, w) in &mut writers {
        w.write_all(header.as_bytes())
            .await
            .map_err(|e| EngineError::lake(lake.table_url(rel), format!("cannot write: {e}")))?;
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(u64, Vec<String>)>(1);
    let chunk_samples = cfg.chunk_samples;
    let cell_pool = cfg.cell_pool();
    let producer = tokio::task::spawn_blocking(move || {
        let chunks = train.chunks(chunk_samples);
        let wave = 2 * rayon::current_num_threads().max(1);
        for group in chunks.chunks(wave) {
            let built: Vec<(u64, Vec<String>)> = group
                .par_iter()
                .map(|devs| build_train_chunk(&train, devs.clone(), cell_pool))
                .collect();
            for item in built {
                if tx.blocking_send(item).is_err() {
                    return;
                }
            }
        }
    });
    while let Some((rows, texts)) = rx.recv().await {
        for ((rel, w), text) in writers.iter_mut().zip(texts) {
            w.write_all(text.as_bytes()).await.map_err(|e| {
                EngineError::lake(lake.table_url(rel), format!("cannot write: {e}"))
            })?;
        }
        bar.inc(rows);
    }
    producer
        .await
        .map_err(|e| EngineError::Internal(format!("datagen training producer panicked: {e}")))?;
    for (rel, w) in &mut writers {
        w.shutdown().await.map_err(|e| {
            EngineError::lake(
                lake.table_url(rel),
                format!("cannot finish the upload: {e}"),
            )
        })?;
    }
    Ok(writers.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifts_change_only_their_attribute() {
        let spec = |i: u64| device_spec(&mut ChaCha8Rng::seed_from_u64(i), i as i64, 1, 10);
        let base = spec(3);
        let mut s = base.clone();
        sim::Shift::Rsrp.apply(&mut s);
        assert_eq!(
            (s.rsrp_shift_db, s.model, s.night_rate),
            (-10.0, base.model, 1.0)
        );
        let mut s = base.clone();
        sim::Shift::Night.apply(&mut s);
        assert_eq!((s.rsrp_shift_db, s.night_rate), (0.0, 4.0));
        let new_maker = (0..400u64)
            .filter(|&i| {
                let mut s = spec(i);
                assert!(
                    s.model < sim::BASE_MODELS,
                    "unshifted devices never get the new maker"
                );
                sim::Shift::Manufacturer.apply(&mut s);
                s.model == sim::BASE_MODELS
            })
            .count();
        assert!((140..260).contains(&new_maker), "{new_maker} of 400");
    }

    #[test]
    fn population_layout_covers_every_sample_once() {
        let pop = Population {
            stream: 1,
            seed: 1,
            devices: 7,
            samples: 100,
            device_id_base: 0,
            sample_id_base: 0,
            shift: None,
        };
        let total: u64 = (0..7).map(|i| pop.device_samples(i)).sum();
        assert_eq!(total, 100);
        for i in 1..7 {
            assert_eq!(
                pop.first_sample(i),
                pop.first_sample(i - 1) + pop.device_samples(i - 1)
            );
        }
        let chunks = pop.chunks(30);
        assert_eq!(chunks.first().map(|c| c.start), Some(0));
        assert_eq!(chunks.last().map(|c| c.end), Some(7));
        assert!(chunks.windows(2).all(|w| w[0].end == w[1].start));
    }

    #[test]
    fn rfc3339_has_microseconds_and_z() {
        assert_eq!(
            rfc3339_micros(1_772_406_000_250_000),
            "2026-03-01T23:00:00.250000Z"
        );
    }

    #[test]
    fn label_sources_cover_all_shares() {
        let total: f64 = LABEL_SOURCES.iter().map(|s| s.1).sum();
        assert!((total - 1.0).abs() < 1e-9);
        let mut seen = [0usize; 4];
        for i in 0..1000 {
            seen[label_source(3, i)] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
    }

    #[test]
    fn config_validation_names_the_flag() {
        let mut c = DatagenConfig::new(100);
        c.devices = 0;
        assert!(c.validate().unwrap_err().to_string().contains("--devices"));
        assert!(DatagenConfig::new(0)
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--samples"));
    }
}
