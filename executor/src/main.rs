//! `sluice-executor`: parses flags and environment, installs logging and
//! hands over to [`sluice_executor::run`].

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = sluice_executor::ExecutorArgs::parse();
    // SLUICE_CHECK_ARGS=1: parse and check the command line, print it, exit
    // (tests/deploy checks the chart's rendered args with this).
    if std::env::var_os("SLUICE_CHECK_ARGS").is_some() {
        args.health_addr()?;
        args.train_cache_settings()?;
        println!("{args:?}");
        return Ok(());
    }
    sluice_executor::init_logging(args.log_json);
    sluice_executor::run(args).await?;
    Ok(())
}
