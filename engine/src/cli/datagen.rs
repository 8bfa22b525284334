//! `sluice datagen`: argument parsing for the synthetic lake generator.

/// Arguments of `sluice datagen`.
#[derive(Debug, clap::Args)]
pub struct DatagenArgs {
    /// Lake to write into (path or URL).
    #[arg(long)]
    pub out: String,
}

/// Runs `sluice datagen`.
pub async fn run(args: DatagenArgs) -> anyhow::Result<i32> {
    anyhow::bail!("datagen into {} is being implemented", args.out)
}
