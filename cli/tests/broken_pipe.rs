//! `sluice … | head -1`: a reader that goes away ends the CLI like a Unix
//! tool killed by SIGPIPE (status 141, nothing on stderr), not with a
//! panic and a backtrace.

use std::process::{Command, Stdio};

#[test]
fn a_closed_stdout_ends_the_cli_quietly() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The read end is closed before the child starts, so its summary line
    // (`println!`) fails with EPIPE whatever the timing.
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "--quiet",
            "datagen",
            "--samples",
            "2000",
            "--train-rows",
            "1000",
            "--out",
        ])
        .arg(dir.path().join("lake"))
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run sluice");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "stderr: {stderr}");
    assert!(stderr.trim().is_empty(), "stderr: {stderr}");
    // The work before the summary line was done and committed.
    assert!(dir.path().join("lake/raw/samples").is_dir());
}
