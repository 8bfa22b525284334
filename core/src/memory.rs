//! This process's memory, as the kernel counts it: the peak resident set
//! (`VmHWM` in `/proc/self/status`, Linux only), reported by `sluice run`
//! so a run shows what the driver needed (docs/PERFORMANCE.md, issue 18).

/// Peak resident set size of this process since it started, bytes
/// (`VmHWM`); `None` where `/proc` has no such line (not Linux).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status_kib(&status, "VmHWM:").map(|kib| kib * 1024)
}

/// [`peak_rss_bytes`] in whole MiB (rounded up).
pub fn peak_rss_mib() -> Option<u64> {
    peak_rss_bytes().map(|b| b.div_ceil(1 << 20))
}

/// The value of a `Key:   1234 kB` line of a `/proc/<pid>/status` text.
pub fn status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_parse() {
        let s = "Name:\tsluice\nVmPeak:\t  900 kB\nVmHWM:\t  2048 kB\nVmRSS:\t 1024 kB\n";
        assert_eq!(status_kib(s, "VmHWM:"), Some(2048));
        assert_eq!(status_kib(s, "VmRSS:"), Some(1024));
        assert_eq!(status_kib(s, "VmSwap:"), None);
        assert_eq!(status_kib("VmHWM: lots", "VmHWM:"), None);
    }

    #[test]
    fn this_process_has_a_peak_on_linux() {
        if cfg!(target_os = "linux") {
            let mib = peak_rss_mib().unwrap();
            assert!(mib > 0 && mib < 1 << 20, "{mib}");
        }
    }
}
