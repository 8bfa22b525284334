//! `sluice … | head -1`: a reader that goes away ends the CLI like a Unix
//! tool killed by SIGPIPE (status 141, nothing on stderr), not with a
//! panic and a backtrace.

use std::process::{Command, Stdio};

/// `sluice` with `args`, its stdout a pipe whose read end is already closed.
fn run_into_closed_pipe(args: &[&std::ffi::OsStr]) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run sluice");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Output written in one piece (`sluice config docs`, completions) ends
/// the same way as `println!` output.
#[test]
fn a_closed_stdout_ends_config_docs_quietly() {
    for what in ["docs", "schema"] {
        let (code, stderr) = run_into_closed_pipe(&["config".as_ref(), what.as_ref()]);
        assert_eq!(code, Some(141), "config {what}: stderr: {stderr}");
        assert!(stderr.trim().is_empty(), "config {what}: stderr: {stderr}");
    }
}

#[test]
fn a_closed_stdout_ends_the_cli_quietly() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The read end is closed before the child starts, so its summary line
    // (`println!`) fails with EPIPE whatever the timing.
    let lake = dir.path().join("lake");
    let (code, stderr) = run_into_closed_pipe(&[
        "--quiet".as_ref(),
        "datagen".as_ref(),
        "--samples".as_ref(),
        "2000".as_ref(),
        "--train-rows".as_ref(),
        "1000".as_ref(),
        "--out".as_ref(),
        lake.as_os_str(),
    ]);
    assert_eq!(code, Some(141), "stderr: {stderr}");
    assert!(stderr.trim().is_empty(), "stderr: {stderr}");
    // The work before the summary line was done and committed.
    assert!(dir.path().join("lake/raw/samples").is_dir());
}
