//! `sluice-scheduler`: parses flags and environment, installs logging and
//! hands over to [`sluice_scheduler::run`].

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = sluice_scheduler::SchedulerArgs::parse();
    sluice_scheduler::init_logging(args.log_json);
    sluice_scheduler::run(args).await?;
    Ok(())
}
