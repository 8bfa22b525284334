//! `sluice-executor`: parses flags and environment, installs logging and
//! hands over to [`sluice_executor::run`].

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = sluice_executor::ExecutorArgs::parse();
    sluice_executor::init_logging(args.log_json);
    sluice_executor::run(args).await?;
    Ok(())
}
