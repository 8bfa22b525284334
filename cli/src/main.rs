//! The `sluice` binary: parses arguments and hands over to the library.

use clap::Parser;

#[tokio::main]
async fn main() {
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
