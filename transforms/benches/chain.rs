//! Whole-chain benchmark: the default-contract feature pipeline over N unified
//! rows read from Parquet, against a plain scan of the same file as baseline.
//!
//! ```text
//! SLUICE_BENCH_ROWS=10000000 cargo bench --workspace --bench chain
//! ```
//!
//! The bench generates `$SLUICE_BENCH_DIR/unified-<rows>.parquet` (default dir:
//! the system temp dir) once with realistic values: devices logging every
//! 5-60 s in bursts, ~10% nulls in the optional columns, the contract's
//! categorical values. It then prints rows/s for
//! `scan` (read every column and drop the batches) and `chain` (fit on the
//! first 544,500 rows, then transform the whole file and drain the output),
//! the chain/scan ratio, and the peak resident memory of each phase (VmHWM,
//! reset between phases). `SLUICE_BENCH_MEM_GB` (default 6) caps the
//! DataFusion memory pool; sorts spill beyond it. With `SLUICE_BENCH_EXPLAIN`
//! set it also prints `EXPLAIN ANALYZE` of one more transform run.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, RecordBatch,
    StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::physical_plan::execute_stream;
use datafusion::prelude::{DataFrame, ParquetReadOptions, SessionConfig, SessionContext};
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sluice_transforms::{register_all, FeaturePipeline};

const CHUNK: usize = 65_536;

struct Device {
    id: i64,
    ts: i64,
    lat: f64,
    lon: f64,
    manufacturer: &'static str,
    indoor: bool,
}

fn pick<'a>(rng: &mut StdRng, v: &[&'a str]) -> &'a str {
    v[rng.random_range(0..v.len())]
}

fn maybe(rng: &mut StdRng, p_null: f64, v: impl FnOnce(&mut StdRng) -> f64) -> Option<f64> {
    (!rng.random_bool(p_null)).then(|| v(rng))
}

fn chunk(rng: &mut StdRng, devices: &mut [Device], first_id: i64, n: usize) -> RecordBatch {
    macro_rules! b {
        ($t:ty) => {
            <$t>::with_capacity(n)
        };
    }
    macro_rules! s {
        () => {
            StringBuilder::with_capacity(n, 8 * n)
        };
    }
    let (mut sid, mut did, mut ck, mut cid) = (
        b!(Int64Builder),
        b!(Int64Builder),
        b!(Int64Builder),
        b!(Int64Builder),
    );
    let mut ts = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut fix = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let (mut nt, mut man, mut model, mut os, mut prov, mut act) =
        (s!(), s!(), s!(), s!(), s!(), s!());
    let (mut mcc, mut mnc, mut tac, mut pci, mut earfcn, mut conf, mut vwc, mut indoor) = (
        b!(Int32Builder),
        b!(Int32Builder),
        b!(Int32Builder),
        b!(Int32Builder),
        b!(Int32Builder),
        b!(Int32Builder),
        b!(Int32Builder),
        b!(Int32Builder),
    );
    let (mut lat, mut lon, mut alt, mut acc, mut spd) = (
        b!(Float64Builder),
        b!(Float64Builder),
        b!(Float64Builder),
        b!(Float64Builder),
        b!(Float64Builder),
    );
    let (mut rsrp, mut rsrq, mut sinr, mut rssi, mut wrssi) = (
        b!(Float64Builder),
        b!(Float64Builder),
        b!(Float64Builder),
        b!(Float64Builder),
        b!(Float64Builder),
    );
    let (mut wc, mut bc, mut so) = (b!(BooleanBuilder), b!(BooleanBuilder), b!(BooleanBuilder));
    for i in 0..n {
        // Devices report in bursts: pick a device, advance its clock.
        let d = &mut devices[rng.random_range(0..devices.len())];
        d.ts += rng.random_range(5_000_000..60_000_000);
        if rng.random_bool(0.05) {
            d.indoor = !d.indoor;
        }
        let moving = !d.indoor && rng.random_bool(0.6);
        if moving {
            d.lat += rng.random_range(-0.0005..0.0005);
            d.lon += rng.random_range(-0.0008..0.0008);
        }
        sid.append_value(first_id + i as i64);
        did.append_value(d.id);
        ts.append_value(d.ts);
        let has_cell = !rng.random_bool(0.03);
        ck.append_option(has_cell.then(|| rng.random_range(0..50_000)));
        nt.append_value(pick(
            rng,
            &["LTE", "LTE", "LTE", "NR", "UMTS", "GSM", "UNKNOWN"],
        ));
        man.append_value(d.manufacturer);
        model.append_value(format!("{}-{}", d.manufacturer, d.id % 13));
        os.append_value(format!("{}.{}", 10 + d.id % 5, d.id % 3));
        mcc.append_option(has_cell.then_some(262));
        mnc.append_option(has_cell.then(|| rng.random_range(1..4)));
        tac.append_option(has_cell.then(|| rng.random_range(1000..2000)));
        cid.append_option(has_cell.then(|| rng.random_range(0..10_000_000)));
        pci.append_option(has_cell.then(|| rng.random_range(0..504)));
        earfcn
            .append_option(has_cell.then(|| pick(rng, &["1300", "3350", "6300"]).parse().unwrap()));
        lat.append_value(d.lat + rng.random_range(-0.0001..0.0001));
        lon.append_value(d.lon + rng.random_range(-0.0001..0.0001));
        alt.append_option(maybe(rng, 0.2, |r| r.random_range(30.0..90.0)));
        let a = if d.indoor {
            rng.random_range(10.0..80.0)
        } else {
            rng.random_range(2.0..20.0)
        };
        acc.append_option(maybe(rng, 0.05, |_| a));
        spd.append_option(maybe(rng, 0.3, |g| {
            if moving {
                g.random_range(0.5..15.0)
            } else {
                g.random_range(0.0..0.5)
            }
        }));
        prov.append_value(if d.indoor {
            pick(rng, &["network", "fused"])
        } else {
            pick(rng, &["gps", "fused"])
        });
        fix.append_value(d.ts - rng.random_range(0..30_000_000));
        let r = rng.random_range(-125.0..-70.0) - if d.indoor { 12.0 } else { 0.0 };
        rsrp.append_option(maybe(rng, 0.1, |_| r));
        rsrq.append_option(maybe(rng, 0.1, |g| g.random_range(-20.0..-3.0)));
        sinr.append_option(maybe(rng, 0.1, |g| g.random_range(-5.0..30.0)));
        rssi.append_option(maybe(rng, 0.2, |_| r + 25.0));
        act.append_option((!rng.random_bool(0.05)).then(|| {
            if moving {
                pick(
                    rng,
                    &["WALKING", "ON_FOOT", "IN_VEHICLE", "RUNNING", "ON_BICYCLE"],
                )
            } else {
                pick(rng, &["STILL", "STILL", "TILTING", "UNKNOWN"])
            }
        }));
        conf.append_value(rng.random_range(0..=100));
        let connected = d.indoor && rng.random_bool(0.7);
        wc.append_value(connected);
        wrssi.append_option(connected.then(|| rng.random_range(-85.0..-35.0)));
        vwc.append_value(if d.indoor {
            rng.random_range(3..30)
        } else {
            rng.random_range(0..8)
        });
        bc.append_value(d.indoor && rng.random_bool(0.3));
        so.append_value(rng.random_bool(0.4));
        indoor.append_value(i32::from(d.indoor));
    }
    let cols: Vec<(&str, ArrayRef)> = vec![
        ("sample_id", Arc::new(sid.finish()) as ArrayRef),
        ("device_id", Arc::new(did.finish())),
        ("ts", Arc::new(ts.finish())),
        ("cell_key", Arc::new(ck.finish())),
        ("network_type", Arc::new(nt.finish())),
        ("manufacturer", Arc::new(man.finish())),
        ("model", Arc::new(model.finish())),
        ("os_version", Arc::new(os.finish())),
        ("mcc", Arc::new(mcc.finish())),
        ("mnc", Arc::new(mnc.finish())),
        ("tac", Arc::new(tac.finish())),
        ("cell_id", Arc::new(cid.finish())),
        ("pci", Arc::new(pci.finish())),
        ("earfcn", Arc::new(earfcn.finish())),
        ("latitude", Arc::new(lat.finish())),
        ("longitude", Arc::new(lon.finish())),
        ("altitude_m", Arc::new(alt.finish())),
        ("accuracy_m", Arc::new(acc.finish())),
        ("speed_mps", Arc::new(spd.finish())),
        ("provider", Arc::new(prov.finish())),
        ("fix_ts", Arc::new(fix.finish())),
        ("rsrp_dbm", Arc::new(rsrp.finish())),
        ("rsrq_db", Arc::new(rsrq.finish())),
        ("sinr_db", Arc::new(sinr.finish())),
        ("rssi_dbm", Arc::new(rssi.finish())),
        ("activity", Arc::new(act.finish())),
        ("confidence", Arc::new(conf.finish())),
        ("wifi_connected", Arc::new(wc.finish())),
        ("wifi_rssi_dbm", Arc::new(wrssi.finish())),
        ("visible_wifi_count", Arc::new(vwc.finish())),
        ("battery_charging", Arc::new(bc.finish())),
        ("screen_on", Arc::new(so.finish())),
        ("indoor", Arc::new(indoor.finish())),
    ];
    RecordBatch::try_from_iter(cols).expect("consistent generated columns")
}

fn generate(path: &PathBuf, rows: usize) -> anyhow_free::Result<()> {
    let mut rng = StdRng::seed_from_u64(42);
    let n_devices = (rows / 500).clamp(10, 50_000);
    let makers = [
        "Samsung",
        "Apple",
        "Xiaomi",
        "Huawei",
        "Google",
        "OnePlus",
        "Fairphone",
    ];
    let t0 = 1_772_323_200_000_000; // 2026-03-01T00:00:00Z
    let mut devices: Vec<Device> = (0..n_devices as i64)
        .map(|id| Device {
            id,
            ts: t0 + rng.random_range(0..86_400_000_000),
            lat: 52.3 + rng.random_range(0.0..0.4),
            lon: 13.1 + rng.random_range(0.0..0.6),
            manufacturer: makers[rng.random_range(0..makers.len())],
            indoor: rng.random_bool(0.5),
        })
        .collect();
    let tmp = path.with_extension("parquet.tmp");
    let file = std::fs::File::create(&tmp)?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(1 << 20))
        .build();
    let first = chunk(&mut rng, &mut devices, 0, CHUNK.min(rows));
    let mut writer = ArrowWriter::try_new(file, first.schema(), Some(props))?;
    writer.write(&first)?;
    let mut done = first.num_rows();
    while done < rows {
        let n = CHUNK.min(rows - done);
        writer.write(&chunk(&mut rng, &mut devices, done as i64, n))?;
        done += n;
    }
    writer.close()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Minimal error plumbing for a bench binary without anyhow.
mod anyhow_free {
    pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;
}

fn vm_hwm_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn reset_hwm() {
    // Writing 5 to clear_refs resets the peak RSS counter (Linux >= 4.0).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

async fn drain(df: DataFrame) -> anyhow_free::Result<usize> {
    let task_ctx = Arc::new(df.task_ctx());
    let plan = df.create_physical_plan().await?;
    let mut stream = execute_stream(plan, task_ctx)?;
    let mut rows = 0;
    while let Some(batch) = stream.next().await {
        rows += batch?.num_rows();
    }
    Ok(rows)
}

#[tokio::main]
async fn main() -> anyhow_free::Result<()> {
    // `cargo bench` passes `--bench`; ignore arguments.
    let rows: usize = std::env::var("SLUICE_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let dir = std::env::var("SLUICE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir());
    let mem_gb: usize = std::env::var("SLUICE_BENCH_MEM_GB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let path = dir.join(format!("sluice-unified-{rows}.parquet"));
    if !path.exists() {
        let t = Instant::now();
        generate(&path, rows)?;
        eprintln!(
            "generated {} in {:.1}s",
            path.display(),
            t.elapsed().as_secs_f64()
        );
    }
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(FairSpillPool::new(mem_gb << 30)))
        .build_arc()?;
    let config = SessionConfig::new().with_target_partitions(
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2),
    );
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    register_all(&ctx);
    let file = path.to_string_lossy().to_string();
    let read = || ctx.read_parquet(file.clone(), ParquetReadOptions::default());

    reset_hwm();
    let t = Instant::now();
    let scanned = drain(read().await?).await?;
    let scan_s = t.elapsed().as_secs_f64();
    let scan_mem = vm_hwm_mb();
    assert_eq!(scanned, rows);

    let pipeline = FeaturePipeline::default_contract();
    reset_hwm();
    let t = Instant::now();
    let fitted = pipeline.fit(read().await?.limit(0, Some(544_500))?).await?;
    let fit_s = t.elapsed().as_secs_f64();
    let fit_mem = vm_hwm_mb();

    reset_hwm();
    let t = Instant::now();
    let out = drain(fitted.transform(read().await?)?).await?;
    let chain_s = t.elapsed().as_secs_f64();
    let chain_mem = vm_hwm_mb();
    assert_eq!(out, rows, "the chain must keep every row");

    let mrows = |s: f64| rows as f64 / s / 1e6;
    println!(
        "chain-default-contract-{rows}rows ({} features, {} partitions, pool {mem_gb} GiB)",
        fitted.feature_names().len(),
        ctx.copied_config().target_partitions()
    );
    println!(
        "  scan  (baseline): {scan_s:8.2} s  {:7.2} M rows/s  peak RSS {scan_mem:8.0} MiB",
        mrows(scan_s)
    );
    println!(
        "  fit   (544,500) : {fit_s:8.2} s  {:7.2} M rows/s  peak RSS {fit_mem:8.0} MiB",
        544_500f64.min(rows as f64) / fit_s / 1e6
    );
    println!(
        "  chain (transform): {chain_s:7.2} s  {:7.2} M rows/s  peak RSS {chain_mem:8.0} MiB",
        mrows(chain_s)
    );
    println!("  ratio chain/scan throughput: {:.3}", scan_s / chain_s);
    if std::env::var_os("SLUICE_BENCH_EXPLAIN").is_some() {
        // Per-operator times of one more transform run (for profiling).
        let batches = fitted
            .transform(read().await?)?
            .explain(false, true)?
            .collect()
            .await?;
        println!("{}", arrow::util::pretty::pretty_format_batches(&batches)?);
    }
    Ok(())
}
