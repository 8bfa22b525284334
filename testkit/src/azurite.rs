//! A real Azurite (Azure Storage emulator) for the tests.
//!
//! [`shared`] uses the one `tests/run-all.sh` started (`SLUICE_TEST_AZURITE`)
//! or starts `azurite-blob` itself on a free 127.0.0.1 port (installing the
//! npm package `azurite@3` into `~/.cache/sluice/npm-azurite` when missing),
//! and points `object_store`'s emulator mode at it through the process
//! environment (`AZURE_STORAGE_USE_EMULATOR`, `AZURITE_BLOB_STORAGE_URL`).
//! Containers are created with the Blob REST API (`Create Container`, signed
//! with SharedKey and the well-known development account), because
//! `object_store` never creates them.
//!
//! A started Azurite runs under a small shell watchdog that kills it when
//! the test process's end of its stdin pipe closes, so it goes away on drop,
//! at process exit and when the test binary is killed.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// The well-known Azurite development account.
pub const ACCOUNT: &str = "devstoreaccount1";
/// Its published key (public, documented by Microsoft; not a secret).
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A running Azurite blob service.
pub struct Azurite {
    endpoint: String,
    child: Option<Child>,
    _workdir: Option<tempfile::TempDir>,
}

impl Azurite {
    /// The one from `SLUICE_TEST_AZURITE`, or a fresh one on a free port.
    pub fn start() -> Self {
        if let Ok(ep) = std::env::var("SLUICE_TEST_AZURITE") {
            let ep = ep.trim_end_matches('/').to_string();
            wait_listening(&ep, Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("SLUICE_TEST_AZURITE={ep}: {e}"));
            return Self {
                endpoint: ep,
                child: None,
                _workdir: None,
            };
        }
        let bin = azurite_bin();
        let port = free_port();
        let workdir = tempfile::tempdir().expect("temp dir for azurite");
        // The watchdog: azurite in the background, `cat` waits for our end of
        // the pipe to close, then azurite is stopped.
        let script = r#"bin=$1; shift; "$bin" "$@" </dev/null & p=$!; cat >/dev/null; kill $p 2>/dev/null; wait $p"#;
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("azurite-watchdog")
            .arg(&bin)
            .args([
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                &port.to_string(),
                "--inMemoryPersistence",
                "--skipApiVersionCheck",
                "--loose",
                "--silent",
                "--disableTelemetry",
            ])
            .current_dir(workdir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let endpoint = format!("http://127.0.0.1:{port}");
        let az = Self {
            endpoint,
            child: Some(child),
            _workdir: Some(workdir),
        };
        wait_listening(&az.endpoint, Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("azurite ({}) did not start: {e}", bin.display()));
        az
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Creates a blob container (`PUT /<account>/<name>?restype=container`,
    /// SharedKey); an existing container is fine.
    pub fn create_container(&self, name: &str) {
        let status = self
            .request(
                "PUT",
                &format!("/{ACCOUNT}/{name}"),
                "restype=container",
                ACCOUNT_KEY,
            )
            .unwrap_or_else(|e| panic!("create container {name} at {}: {e}", self.endpoint));
        assert!(
            status == 201 || status == 409,
            "create container {name} at {}: HTTP {status}",
            self.endpoint
        );
    }

    /// Sends one SharedKey-signed request without a body; returns the status.
    pub fn request(
        &self,
        verb: &str,
        path: &str,
        query: &str,
        key_b64: &str,
    ) -> Result<u16, String> {
        let hostport = self.endpoint.trim_start_matches("http://");
        let date = httpdate_now();
        let version = "2021-08-06";
        // Canonicalized resource: /<account><path> plus sorted `name:value` query lines.
        let mut resource = format!("/{ACCOUNT}{path}");
        let mut params: Vec<(String, String)> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_ascii_lowercase(), v.to_string())
            })
            .collect();
        params.sort();
        for (k, v) in &params {
            resource.push_str(&format!("\n{k}:{v}"));
        }
        let string_to_sign = format!(
            "{verb}\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n{resource}"
        );
        let key = base64_decode(key_b64).ok_or("the account key is not base64")?;
        let sig = base64_encode(&hmac_sha256(&key, string_to_sign.as_bytes()));
        let target = if query.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{query}")
        };
        let req = format!(
            "{verb} {target} HTTP/1.1\r\nHost: {hostport}\r\nx-ms-date: {date}\r\nx-ms-version: {version}\r\nAuthorization: SharedKey {ACCOUNT}:{sig}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let mut s = TcpStream::connect(hostport).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(30))).ok();
        s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).map_err(|e| e.to_string())?;
        let head = String::from_utf8_lossy(&resp);
        head.split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| {
                format!(
                    "not an HTTP response: {}",
                    head.lines().next().unwrap_or("")
                )
            })
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            drop(c.stdin.take()); // the watchdog stops azurite
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The process-wide Azurite, with `object_store`'s emulator mode pointed at
/// it. Every test of a binary shares it (and the process environment).
pub fn shared() -> &'static Azurite {
    static AZ: OnceLock<Azurite> = OnceLock::new();
    AZ.get_or_init(|| {
        let az = Azurite::start();
        // Set once, before any test reads the environment (they all wait here).
        std::env::set_var("AZURE_STORAGE_USE_EMULATOR", "true");
        std::env::set_var("AZURITE_BLOB_STORAGE_URL", az.endpoint());
        az
    })
}

/// `azurite-blob` from the cache, installed with npm when missing.
fn azurite_bin() -> PathBuf {
    let cache = std::env::var_os("SLUICE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/sluice")
        });
    let dir = cache.join("npm-azurite");
    let bin = dir.join("node_modules/.bin/azurite-blob");
    if bin.exists() {
        return bin;
    }
    std::fs::create_dir_all(&dir).expect("create the npm cache dir");
    let status = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(&dir)
        .arg("azurite@3")
        .stdout(Stdio::null())
        .status()
        .unwrap_or_else(|e| {
            panic!("npm is needed to install azurite ({e}); or set SLUICE_TEST_AZURITE")
        });
    assert!(
        status.success(),
        "npm install azurite@3 into {} failed",
        dir.display()
    );
    assert!(bin.exists(), "{} missing after npm install", bin.display());
    bin
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

fn wait_listening(endpoint: &str, timeout: Duration) -> Result<(), String> {
    let hostport = endpoint.trim_start_matches("http://").to_string();
    let deadline = Instant::now() + timeout;
    loop {
        match TcpStream::connect(&hostport) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                return Err(format!(
                    "nothing listens on {hostport} after {timeout:?}: {e}"
                ))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// RFC 1123 date for `x-ms-date`.
fn httpdate_now() -> String {
    chrono::Utc::now()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

/// HMAC-SHA256 (RFC 2104) over `sha2`.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (with padding), as the Azure account key is given.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes().filter(|c| *c != b'=') {
        let v = B64.iter().position(|x| *x == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}
