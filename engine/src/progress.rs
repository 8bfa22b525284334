//! Progress bars for long work (indicatif), hidden when stderr is not a
//! terminal or when the user asked for quiet/JSON output, so logs stay clean.

use std::sync::atomic::{AtomicBool, Ordering};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Globally enables or disables progress bars (the CLI disables them for
/// `--log-format json` and `--quiet`).
pub fn set_enabled(enabled: bool) {
    ENABLED.store(enabled, Ordering::Relaxed);
}

fn target() -> ProgressDrawTarget {
    if ENABLED.load(Ordering::Relaxed) {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}

/// A bar counting `len` units (rows, trees, ...) labelled with `message`.
pub fn bar(len: u64, message: impl Into<String>, unit: &str) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(len), target());
    let template = format!(
        "{{msg:>12}} [{{elapsed_precise}}] {{wide_bar}} {{human_pos}}/{{human_len}} {unit} ({{per_sec}}, eta {{eta}})"
    );
    pb.set_style(
        ProgressStyle::with_template(&template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message(message.into());
    pb
}

/// A spinner for work of unknown length.
pub fn spinner(message: impl Into<String>) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(None, target());
    pb.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{elapsed_precise}]")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    pb.set_message(message.into());
    pb.enable_steady_tick(std::time::Duration::from_millis(200));
    pb
}
