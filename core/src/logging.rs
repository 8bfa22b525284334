//! The one logging setup of every Sluice process (the `sluice` command line,
//! the scheduler and the executor): a `tracing` subscriber with a `RUST_LOG`
//! filter, human-readable or one JSON object per line.

use tracing_subscriber::fmt::MakeWriter;

/// Installs the global subscriber writing to `writer`: `RUST_LOG` if set,
/// else `default_level` (`info`, `warn`, ...); JSON lines when `json`
/// (fields flattened, for Airflow and log collectors); ANSI colours only
/// when `ansi`. A second call is a no-op.
pub fn init<W>(json: bool, default_level: &str, ansi: bool, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

/// [`init`] for a server process: `info` by default, plain text (or JSON)
/// on standard error, no colours (pod logs are files).
pub fn init_server(json: bool) {
    init(json, "info", false, std::io::stderr);
}
