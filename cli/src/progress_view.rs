//! Shows the library's progress events ([`sluice_common::progress`]): bars on a
//! terminal (indicatif, one per running task, with rows/s or fits and the
//! ETA) or, with `--log-format json`, one JSON log line per event, so
//! Airflow's task log shows the same progress.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use sluice_common::logfmt;
use sluice_common::progress::{self, ProgressEvent, Unit};

/// Text logs: bars when stderr is a terminal, else a log line per task
/// every five seconds (CI and Airflow logs stay readable).
pub fn install_text() {
    use std::io::IsTerminal;
    if std::io::stderr().is_terminal() {
        install_bars();
    } else {
        install_log_lines(Duration::from_secs(5));
    }
}

/// The bars' drawing area, shared with the log writer ([`LogWriter`]).
fn multi() -> &'static MultiProgress {
    static MULTI: OnceLock<MultiProgress> = OnceLock::new();
    MULTI.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
}

/// Writes log lines to stderr above the progress bars (the bars are
/// cleared for the write and redrawn after it).
pub struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        multi().suspend(|| std::io::stderr().write_all(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Draws events as terminal bars.
pub fn install_bars() {
    let multi = multi();
    let bars: Mutex<HashMap<u64, ProgressBar>> = Mutex::new(HashMap::new());
    progress::set_sink(Some(Arc::new(move |e: &ProgressEvent| {
        let Ok(mut bars) = bars.lock() else { return };
        if e.finished {
            if let Some(pb) = bars.remove(&e.id) {
                pb.finish_and_clear();
                multi.remove(&pb);
            }
            return;
        }
        let pb = bars.entry(e.id).or_insert_with(|| {
            let pb = multi.add(ProgressBar::new(0));
            let template = match (e.unit, e.total.is_some()) {
                (Unit::Rows, true) => "{msg:>14} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} rows ({per_sec}, eta {eta})",
                (Unit::Rows, false) => "{spinner} {msg:>12} [{elapsed_precise}] {human_pos} rows ({per_sec})",
                (Unit::Fits, _) => "{msg:>14} [{elapsed_precise}] {wide_bar} {pos}/{len} fits (eta {eta}) {prefix}",
            };
            pb.set_style(
                ProgressStyle::with_template(template)
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            pb.set_message(e.task.clone());
            pb
        });
        if let Some(t) = e.total {
            pb.set_length(t);
        }
        pb.set_position(e.done);
        if let Some((metric, score)) = &e.best {
            pb.set_prefix(format!("best {metric} {}", logfmt::num(*score)));
        }
        pb.tick();
    })));
}

/// Writes events as log lines (JSON with `--log-format json`): task, done,
/// total, rate, ETA and the best score so far, at most every `every` per
/// task, plus the first and the last event of each task.
pub fn install_log_lines(every: Duration) {
    let last: Mutex<HashMap<u64, Instant>> = Mutex::new(HashMap::new());
    progress::set_sink(Some(Arc::new(move |e: &ProgressEvent| {
        if let Ok(mut last) = last.lock() {
            let now = Instant::now();
            let due = e.finished || last.get(&e.id).is_none_or(|t| now - *t >= every);
            if !due {
                return;
            }
            if e.finished {
                last.remove(&e.id);
            } else {
                last.insert(e.id, now);
            }
        }
        let eta = e.eta_secs.map(logfmt::secs).unwrap_or_default();
        let (metric, best) = e
            .best
            .as_ref()
            .map(|(m, b)| (m.clone(), logfmt::num(*b)))
            .unwrap_or_default();
        tracing::info!(
            target: "sluice::progress",
            task = %e.task,
            unit = e.unit.as_str(),
            done = e.done,
            total = %logfmt::count(e.total),
            per_sec = %logfmt::num(e.per_sec.round()),
            eta_secs = %eta,
            elapsed_secs = %logfmt::secs(e.elapsed_secs),
            best_metric = %metric,
            best = %best,
            finished = e.finished,
            "progress"
        );
    })));
}
