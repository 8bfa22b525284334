//! The `sluice` binary: parses arguments and hands over to the library.

use clap::Parser;

#[tokio::main]
async fn main() {
    exit_quietly_on_broken_pipe();
    let cli = sluice_cli::Cli::parse();
    // SLUICE_CHECK_ARGS=1: parse the command line, print it and exit (the
    // deployment tests check the DAGs' and Jobs' rendered args with this).
    if std::env::var_os("SLUICE_CHECK_ARGS").is_some() {
        println!("{cli:?}");
        std::process::exit(0);
    }
    match sluice_cli::run(cli).await {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {}", sluice_cli::error_chain(&e));
            std::process::exit(1);
        }
    }
}

/// `sluice models show … | head -1`: when the reader of stdout goes away,
/// stop like a Unix tool killed by SIGPIPE (status 141, no message) instead
/// of `println!`'s panic and backtrace. Rust ignores SIGPIPE so that sockets
/// report EPIPE; that is kept, only the panic it turns into on stdout is
/// caught here.
fn exit_quietly_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(sluice_cli::BROKEN_PIPE_EXIT);
        }
        default(info)
    }));
}
