//! The `sluice` binary: parses arguments and hands over to the library.

use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = sluice_engine::cli::Cli::parse();
    match sluice_engine::cli::run(cli).await {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
