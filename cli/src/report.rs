//! `sluice report <run_id> [--open]`: where a run's report is, opened in
//! the browser on request.

use sluice_engine::report;
use sluice_lake::lake::Lake;

/// Arguments of `sluice report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The run id (`sluice runs list` shows them).
    pub run_id: String,
    /// Open the HTML report in the default browser (local lakes).
    #[arg(long)]
    pub open: bool,
    /// Print the report's JSON instead of its location.
    #[arg(long, conflicts_with = "open")]
    pub json: bool,
}

/// Runs `sluice report`.
pub async fn run(args: ReportArgs, lake: &str) -> anyhow::Result<i32> {
    let lake = Lake::open_existing(lake)?;
    let entry = super::runs::find(&lake, &args.run_id).await?;
    let html = format!("{}/{}", entry.dir, report::HTML_FILE);
    if !lake.exists(&html).await? {
        anyhow::bail!(
            "run {} has no report yet (still running, or killed before it finished: `sluice run <config> --resume {}` completes it)",
            args.run_id,
            args.run_id
        );
    }
    if args.json {
        let json = lake
            .get(&format!("{}/{}", entry.dir, report::JSON_FILE))
            .await?;
        println!("{}", String::from_utf8_lossy(&json));
        return Ok(0);
    }
    let url = lake.table_url(&html);
    let local = url::Url::parse(&url)
        .ok()
        .filter(|u| u.scheme() == "file")
        .and_then(|u| u.to_file_path().ok());
    match &local {
        Some(path) => println!("{}", path.display()),
        None => println!("{}", sluice_lake::lake::redact(&url::Url::parse(&url)?)),
    }
    if args.open {
        let Some(path) = local else {
            anyhow::bail!("--open needs a local lake; download the report from the URL above");
        };
        let opener = if cfg!(target_os = "macos") {
            "open"
        } else {
            "xdg-open"
        };
        let status = std::process::Command::new(opener)
            .arg(&path)
            .status()
            .map_err(|e| {
                anyhow::anyhow!(
                    "could not start `{opener}` to open {} ({e}); open the file in a browser",
                    path.display()
                )
            })?;
        if !status.success() {
            anyhow::bail!(
                "`{opener} {}` failed ({status}); open the file in a browser",
                path.display()
            );
        }
    }
    Ok(0)
}
