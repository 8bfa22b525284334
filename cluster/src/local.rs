//! A local Ballista cluster for development and tests: one `sluice-scheduler`
//! and N `sluice-executor` processes on 127.0.0.1.
//!
//! [`LocalCluster::start`] spawns the processes (the binaries next to the
//! current executable, or in `SLUICE_BIN_DIR`), waits until the scheduler's
//! `/readyz` reports every executor registered and each executor's `/readyz`
//! reports a successful heartbeat, and writes a state file (`cluster.json`:
//! PIDs and ports) to the cluster directory. Dropping a [`LocalCluster`]
//! stops every process it started (SIGTERM, then SIGKILL after a grace
//! period); [`LocalCluster::detach`] leaves them running for
//! `sluice cluster down` ([`stop_from_state`]) to stop later.
//!
//! Port layout from a base port `P`: the scheduler serves gRPC, `/healthz`
//! and `/readyz` on `P`; executor `i` uses `P+1+3i` (Flight), `P+2+3i`
//! (gRPC) and `P+3+3i` (health).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use sluice_common::error::{EngineError, Result};

/// The name of the state file in the cluster directory.
pub const STATE_FILE: &str = "cluster.json";
/// Default base port of a local cluster (the scheduler's port).
pub const DEFAULT_BASE_PORT: u16 = 50050;
/// Environment variable naming the directory of `sluice-scheduler` and
/// `sluice-executor` (default: next to the current executable).
pub const BIN_DIR_ENV: &str = "SLUICE_BIN_DIR";

/// Options of a local cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// The scheduler's port; executors use the ports above it.
    ///
    /// Ports inside the kernel's ephemeral range (Linux: 32768-60999) can be
    /// taken by any outgoing connection between the free-port check and the
    /// bind; tests and benches therefore use bases below 32768.
    pub base_port: u16,
    /// Directory of the state file, logs and executor work dirs.
    pub dir: PathBuf,
    /// Directory of the two binaries (default: [`find_bin_dir`]).
    pub bin_dir: Option<PathBuf>,
    /// Tasks each executor runs at the same time.
    pub concurrent_tasks: usize,
    /// Memory limit of each executor (e.g. `2GiB`).
    pub memory_limit: Option<String>,
    /// Training cache memory of each executor (`--train-cache`, e.g.
    /// `32KiB`: smaller than a job's batches, they spill to the work dir).
    pub train_cache: Option<String>,
    /// Executor heartbeat interval (short, so a killed executor is noticed fast).
    pub heartbeat_interval_seconds: u64,
    /// After this long without a heartbeat the scheduler declares an executor
    /// lost and reschedules its tasks.
    pub executor_timeout_seconds: u64,
    /// How long to wait for every process to become ready.
    pub ready_timeout: Duration,
    /// Extra `RUST_LOG` for the processes (default `info`).
    pub rust_log: Option<String>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            base_port: DEFAULT_BASE_PORT,
            dir: std::env::temp_dir().join("sluice-cluster"),
            bin_dir: None,
            concurrent_tasks: 1,
            memory_limit: None,
            train_cache: None,
            heartbeat_interval_seconds: 2,
            executor_timeout_seconds: 10,
            ready_timeout: Duration::from_secs(60),
            rust_log: None,
        }
    }
}

/// One process of the cluster, as written to the state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessEntry {
    /// `scheduler` or `executor-<i>`.
    pub name: String,
    /// OS process id.
    pub pid: u32,
    /// Main port (scheduler gRPC, or executor Flight).
    pub port: u16,
    /// Executor gRPC port (0 for the scheduler).
    pub grpc_port: u16,
    /// Health port (`/healthz`, `/readyz`).
    pub health_port: u16,
    /// Log file.
    pub log: PathBuf,
}

/// The state file's contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    /// `df://127.0.0.1:<port>`, the URL clients pass as `engine.scheduler`.
    pub scheduler_url: String,
    /// The scheduler process.
    pub scheduler: ProcessEntry,
    /// The executor processes, in start order.
    pub executors: Vec<ProcessEntry>,
}

impl ClusterState {
    /// Reads `<dir>/cluster.json`.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(STATE_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| EngineError::io(&path, e))?;
        serde_json::from_str(&text).map_err(|e| {
            EngineError::cluster(
                path.display().to_string(),
                format!("not a Sluice cluster state file: {e}"),
            )
        })
    }

    /// Writes `<dir>/cluster.json` (atomically: temp file + rename).
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(STATE_FILE);
        let tmp = dir.join(format!("{STATE_FILE}.tmp"));
        let text = serde_json::to_string_pretty(self).map_err(|e| {
            EngineError::Internal(format!("cannot serialize the cluster state: {e}"))
        })?;
        std::fs::write(&tmp, text).map_err(|e| EngineError::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| EngineError::io(&path, e))
    }
}

/// Where `sluice-scheduler` and `sluice-executor` are: `SLUICE_BIN_DIR`, the
/// current executable's directory, or its parent (test binaries live in
/// `target/<profile>/deps/`).
pub fn find_bin_dir() -> Result<PathBuf> {
    if let Ok(dir) = std::env::var(BIN_DIR_ENV) {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().map_err(|e| EngineError::io("<current exe>", e))?;
    let mut candidates = Vec::new();
    if let Some(d) = exe.parent() {
        candidates.push(d.to_path_buf());
        if let Some(p) = d.parent() {
            candidates.push(p.to_path_buf());
        }
    }
    for c in &candidates {
        if c.join("sluice-scheduler").is_file() && c.join("sluice-executor").is_file() {
            return Ok(c.clone());
        }
    }
    Err(EngineError::cluster(
        candidates
            .iter()
            .map(|c| c.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        format!(
            "sluice-scheduler and sluice-executor not found; build them with \
             `cargo build --release -p sluice-scheduler -p sluice-executor` or set {BIN_DIR_ENV}"
        ),
    ))
}

/// A running local cluster; stops its processes when dropped (unless detached).
#[derive(Debug)]
pub struct LocalCluster {
    state: ClusterState,
    dir: PathBuf,
    scheduler: Option<Child>,
    executors: Vec<Option<Child>>,
    detached: bool,
    /// How the scheduler was started, to start it again ([`LocalCluster::restart_scheduler`]).
    scheduler_cmd: (PathBuf, Vec<String>, String),
    /// Each executor's arguments, to start it again when its port was
    /// taken at start-up.
    executor_args: Vec<Vec<String>>,
}

impl LocalCluster {
    /// Starts a scheduler and `n_executors` executors and waits until all are
    /// ready. On failure every process already started is stopped and the
    /// error names the process, its port and its log file.
    pub async fn start(n_executors: usize, opts: ClusterOptions) -> Result<Self> {
        if n_executors == 0 {
            return Err(EngineError::config(
                "--executors",
                "a cluster needs at least one executor",
            ));
        }
        let bin_dir = match &opts.bin_dir {
            Some(d) => d.clone(),
            None => find_bin_dir()?,
        };
        std::fs::create_dir_all(&opts.dir).map_err(|e| EngineError::io(&opts.dir, e))?;
        let last_port = opts.base_port as u32 + 3 * n_executors as u32;
        if last_port > u16::MAX as u32 {
            return Err(EngineError::config(
                "--base-port",
                format!(
                    "ports {}..={last_port} do not fit below 65536",
                    opts.base_port
                ),
            ));
        }
        for port in opts.base_port..=last_port as u16 {
            if TcpStream::connect_timeout(
                &([127, 0, 0, 1], port).into(),
                Duration::from_millis(200),
            )
            .is_ok()
            {
                return Err(EngineError::cluster(
                    format!("127.0.0.1:{port}"),
                    "the port is already in use; stop the other cluster (`sluice cluster down`) or pick another --base-port",
                ));
            }
        }
        let rust_log = opts.rust_log.clone().unwrap_or_else(|| "info".into());
        let sched_port = opts.base_port;
        let sched_log = opts.dir.join("scheduler.log");
        let sched_args: Vec<String> = [
            "--bind-host",
            "127.0.0.1",
            "--external-host",
            "127.0.0.1",
            "--port",
            &sched_port.to_string(),
            "--min-ready-executors",
            &n_executors.to_string(),
            "--executor-timeout-seconds",
            &opts.executor_timeout_seconds.to_string(),
            "--expire-dead-executor-interval-seconds",
            "1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let sched_bin = bin_dir.join("sluice-scheduler");
        let mut cmd = Command::new(&sched_bin);
        cmd.args(&sched_args);
        let scheduler = spawn(cmd, &sched_log, &rust_log, "scheduler")?;
        let scheduler = scheduler_answering(
            scheduler,
            (&sched_bin, &sched_args),
            &sched_log,
            &rust_log,
            sched_port,
            opts.ready_timeout,
        )?;
        let mut cluster = LocalCluster {
            state: ClusterState {
                scheduler_url: format!("df://127.0.0.1:{sched_port}"),
                scheduler: ProcessEntry {
                    name: "scheduler".into(),
                    pid: scheduler.id(),
                    port: sched_port,
                    grpc_port: 0,
                    health_port: sched_port,
                    log: sched_log,
                },
                executors: Vec::new(),
            },
            dir: opts.dir.clone(),
            scheduler: Some(scheduler),
            executors: Vec::new(),
            detached: false,
            scheduler_cmd: (sched_bin, sched_args, rust_log.clone()),
            executor_args: Vec::new(),
        };
        for i in 0..n_executors {
            let port = sched_port + 1 + 3 * i as u16;
            let (grpc, health) = (port + 1, port + 2);
            let log = opts.dir.join(format!("executor-{i}.log"));
            let work = opts.dir.join(format!("executor-{i}"));
            let mut args: Vec<String> = vec![
                "--bind-host".into(),
                "127.0.0.1".into(),
                "--external-host".into(),
                "127.0.0.1".into(),
                "--port".into(),
                port.to_string(),
                "--grpc-port".into(),
                grpc.to_string(),
                "--health-port".into(),
                health.to_string(),
                "--scheduler-host".into(),
                "127.0.0.1".into(),
                "--scheduler-port".into(),
                sched_port.to_string(),
                "--concurrent-tasks".into(),
                opts.concurrent_tasks.max(1).to_string(),
                "--heartbeat-interval-seconds".into(),
                opts.heartbeat_interval_seconds.to_string(),
                "--work-dir".into(),
                work.display().to_string(),
                "--executor-id".into(),
                format!("executor-{i}"),
            ];
            if let Some(m) = &opts.memory_limit {
                args.extend(["--memory-limit".into(), m.clone()]);
            }
            if let Some(m) = &opts.train_cache {
                args.extend(["--train-cache".into(), m.clone()]);
            }
            let mut cmd = Command::new(bin_dir.join("sluice-executor"));
            cmd.args(&args);
            cluster.executor_args.push(args);
            let child = spawn(cmd, &log, &rust_log, &format!("executor-{i}"))?;
            cluster.state.executors.push(ProcessEntry {
                name: format!("executor-{i}"),
                pid: child.id(),
                port,
                grpc_port: grpc,
                health_port: health,
                log,
            });
            cluster.executors.push(Some(child));
        }
        cluster.state.write(&cluster.dir)?;
        cluster.wait_ready(opts.ready_timeout).await?;
        Ok(cluster)
    }

    async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut pending: Vec<ProcessEntry> = self.state.executors.clone();
        pending.push(self.state.scheduler.clone());
        let mut port_retries = START_PORT_RETRIES;
        loop {
            // An executor whose port was taken between the check and its
            // bind (an outgoing connection's ephemeral port) starts again.
            if port_retries > 0 {
                if let Some(i) = self.executor_lost_its_port() {
                    port_retries -= 1;
                    self.respawn_executor(i)?;
                    pending = self.state.executors.clone();
                    pending.push(self.state.scheduler.clone());
                    continue;
                }
            }
            // A process that died will never be ready: fail with its log.
            if let Some(msg) = self.first_exited() {
                return Err(msg);
            }
            let mut still = Vec::new();
            for p in pending {
                if http_status(p.health_port, "/readyz") != Some(200) {
                    still.push(p);
                }
            }
            pending = still;
            if pending.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let p = &pending[0];
                return Err(EngineError::cluster(
                    format!("127.0.0.1:{} ({})", p.health_port, p.name),
                    format!(
                        "not ready after {} s; see {}",
                        timeout.as_secs(),
                        p.log.display()
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// An executor that exited during start-up because its address was in
    /// use.
    fn executor_lost_its_port(&mut self) -> Option<usize> {
        (0..self.executors.len()).find(|&i| {
            self.executors[i]
                .as_mut()
                .is_some_and(|c| lost_its_port(c, &self.state.executors[i].log))
        })
    }

    /// Starts executor `i` again with its arguments (its log goes on).
    fn respawn_executor(&mut self, i: usize) -> Result<()> {
        let entry = self.state.executors[i].clone();
        let bin = self.scheduler_cmd.0.with_file_name("sluice-executor");
        let child = start_again(
            (&bin, &self.executor_args[i]),
            &entry.log,
            &self.scheduler_cmd.2,
            &entry.name,
            entry.port,
        )?;
        self.state.executors[i].pid = child.id();
        self.executors[i] = Some(child);
        self.state.write(&self.dir)
    }

    fn first_exited(&mut self) -> Option<EngineError> {
        let check = |child: &mut Option<Child>, entry: &ProcessEntry| -> Option<EngineError> {
            let c = child.as_mut()?;
            match c.try_wait() {
                Ok(Some(status)) => Some(EngineError::cluster(
                    format!(
                        "127.0.0.1:{} ({}, pid {})",
                        entry.port, entry.name, entry.pid
                    ),
                    format!(
                        "exited during start-up ({status}); last log lines of {}:\n{}",
                        entry.log.display(),
                        tail(&entry.log, 15)
                    ),
                )),
                _ => None,
            }
        };
        let sched = self.state.scheduler.clone();
        if let Some(e) = check(&mut self.scheduler, &sched) {
            return Some(e);
        }
        for (i, entry) in self.state.executors.clone().iter().enumerate() {
            if let Some(e) = check(&mut self.executors[i], entry) {
                return Some(e);
            }
        }
        None
    }

    /// The scheduler URL clients use (`df://127.0.0.1:<port>`).
    pub fn scheduler_url(&self) -> String {
        self.state.scheduler_url.clone()
    }

    /// The cluster's state (PIDs, ports, logs).
    pub fn state(&self) -> &ClusterState {
        &self.state
    }

    /// The directory holding the state file, logs and work dirs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The PID of executor `i`.
    pub fn executor_pid(&self, i: usize) -> Option<u32> {
        self.state.executors.get(i).map(|e| e.pid)
    }

    /// Kills executor `i` with SIGKILL (no goodbye to the scheduler: the
    /// scheduler notices through missed heartbeats and failed fetches).
    pub fn kill_executor(&mut self, i: usize) -> Result<()> {
        let entry = self.state.executors.get(i).cloned().ok_or_else(|| {
            EngineError::config("executor", format!("no executor {i} in this cluster"))
        })?;
        let child = self.executors[i].as_mut().ok_or_else(|| {
            EngineError::cluster(&entry.name, "this executor was already stopped")
        })?;
        child.kill().map_err(|e| {
            EngineError::cluster(
                format!("{} (pid {})", entry.name, entry.pid),
                format!("cannot kill: {e}"),
            )
        })?;
        let _ = child.wait();
        self.executors[i] = None;
        Ok(())
    }

    /// Kills the scheduler with SIGKILL.
    pub fn kill_scheduler(&mut self) -> Result<()> {
        if let Some(mut c) = self.scheduler.take() {
            c.kill().map_err(|e| {
                EngineError::cluster(
                    format!("scheduler (pid {})", self.state.scheduler.pid),
                    format!("cannot kill: {e}"),
                )
            })?;
            let _ = c.wait();
        }
        Ok(())
    }

    /// Starts the scheduler again after [`LocalCluster::kill_scheduler`]
    /// (what Kubernetes does with a scheduler pod), with the same flags and
    /// port, and waits until its `/readyz` reports every executor
    /// re-registered (executors re-register on their next heartbeat). Its
    /// log is appended to `scheduler.log`.
    pub async fn restart_scheduler(&mut self, timeout: Duration) -> Result<()> {
        if self.scheduler.is_some() {
            return Err(EngineError::cluster(
                "scheduler",
                "the scheduler is still running; kill it first",
            ));
        }
        let (bin, args, rust_log) = self.scheduler_cmd.clone();
        let log = self.state.scheduler.log.clone();
        let mut cmd = Command::new(&bin);
        cmd.args(&args);
        let child = spawn_appending(cmd, &log, &rust_log, "scheduler")?;
        self.state.scheduler.pid = child.id();
        self.scheduler = Some(child);
        self.state.write(&self.dir)?;
        let deadline = Instant::now() + timeout;
        while http_status(self.state.scheduler.health_port, "/readyz") != Some(200) {
            if let Some(e) = self.first_exited() {
                return Err(e);
            }
            if Instant::now() > deadline {
                return Err(EngineError::cluster(
                    format!("127.0.0.1:{} (scheduler)", self.state.scheduler.port),
                    format!(
                        "not ready {} s after its restart; see {}",
                        timeout.as_secs(),
                        log.display()
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Leaves the processes running and returns their state (the CLI's
    /// `cluster up`; `cluster down` stops them from the state file).
    pub fn detach(mut self) -> ClusterState {
        self.detached = true;
        self.state.clone()
    }

    /// Stops every process: SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        let mut children: Vec<Child> = self.executors.iter_mut().filter_map(Option::take).collect();
        children.extend(self.scheduler.take());
        for c in &children {
            sigterm(c.id());
        }
        let deadline = Instant::now() + grace;
        for mut c in children {
            loop {
                match c.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= deadline => {
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
        let _ = std::fs::remove_file(self.dir.join(STATE_FILE));
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if !self.detached {
            self.stop(Duration::from_secs(5));
        }
    }
}

/// Stops the processes of the cluster whose state file is in `dir`
/// (SIGTERM, then SIGKILL after `grace`) and removes the state file. Returns
/// the names of the processes that had to be killed.
pub fn stop_from_state(dir: &Path, grace: Duration) -> Result<Vec<String>> {
    let state = ClusterState::read(dir)?;
    let mut all = state.executors.clone();
    all.push(state.scheduler.clone());
    for p in &all {
        if is_alive(p.pid) {
            sigterm(p.pid);
        }
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && all.iter().any(|p| is_alive(p.pid)) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut killed = Vec::new();
    for p in &all {
        if is_alive(p.pid) {
            let _ = Command::new("kill")
                .args(["-KILL", &p.pid.to_string()])
                .status();
            killed.push(p.name.clone());
        }
    }
    let path = dir.join(STATE_FILE);
    std::fs::remove_file(&path).map_err(|e| EngineError::io(&path, e))?;
    Ok(killed)
}

/// Whether a process runs (a zombie counts as gone).
pub fn is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // The state follows the parenthesised command name.
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|s| s.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X"))
        }
        Err(_) => false,
    }
}

fn sigterm(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn spawn(cmd: Command, log: &Path, rust_log: &str, name: &str) -> Result<Child> {
    let out = std::fs::File::create(log).map_err(|e| EngineError::io(log, e))?;
    spawn_to(cmd, out, log, rust_log, name)
}

fn spawn_appending(cmd: Command, log: &Path, rust_log: &str, name: &str) -> Result<Child> {
    let out = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(log)
        .map_err(|e| EngineError::io(log, e))?;
    spawn_to(cmd, out, log, rust_log, name)
}

fn spawn_to(
    mut cmd: Command,
    out: std::fs::File,
    log: &Path,
    rust_log: &str,
    name: &str,
) -> Result<Child> {
    use std::os::unix::process::CommandExt;
    let err = out.try_clone().map_err(|e| EngineError::io(log, e))?;
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .env("RUST_LOG", rust_log)
        // Own process group: Ctrl-C in the terminal of `sluice cluster up`
        // does not reach the detached cluster.
        .process_group(0);
    cmd.spawn().map_err(|e| {
        EngineError::cluster(name, format!("cannot start {:?}: {e}", cmd.get_program()))
    })
}

/// `GET http://127.0.0.1:<port><path>`'s status code, or `None` when nothing
/// answers.
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500))
            .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let head = std::str::from_utf8(&buf[..n]).ok()?;
    head.split_whitespace().nth(1)?.parse().ok()
}

/// Start-up attempts more for a process whose port was taken.
const START_PORT_RETRIES: usize = 3;

/// Waits until the scheduler answers HTTP on its port, before the
/// executors start. A scheduler that exited because its port was taken
/// after the port check starts again (up to [`START_PORT_RETRIES`] times);
/// any other exit, or no answer in `timeout`, is left to `wait_ready`,
/// which reports it with the log.
fn scheduler_answering(
    mut child: Child,
    (bin, args): (&Path, &[String]),
    log: &Path,
    rust_log: &str,
    port: u16,
    timeout: Duration,
) -> Result<Child> {
    let deadline = Instant::now() + timeout;
    let mut retries = START_PORT_RETRIES;
    while Instant::now() < deadline && http_status(port, "/readyz").is_none() {
        if retries > 0 && lost_its_port(&mut child, log) {
            retries -= 1;
            child = start_again((bin, args), log, rust_log, "scheduler", port)?;
        } else if matches!(child.try_wait(), Ok(Some(_))) {
            break;
        } else {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(child)
}

/// Whether a process exited because the address it binds was in use.
fn lost_its_port(child: &mut Child, log: &Path) -> bool {
    matches!(child.try_wait(), Ok(Some(_)))
        && std::fs::read_to_string(log).is_ok_and(|t| t.contains(ADDRESS_IN_USE))
}

/// Starts a process that lost its port again, half a second later, with
/// the same arguments (its log goes on).
fn start_again(
    (bin, args): (&Path, &[String]),
    log: &Path,
    rust_log: &str,
    name: &str,
    port: u16,
) -> Result<Child> {
    tracing::warn!(
        process = name,
        port,
        "its port was in use at start-up: starting it again"
    );
    std::thread::sleep(Duration::from_millis(500));
    let mut cmd = Command::new(bin);
    cmd.args(args);
    spawn_appending(cmd, log, rust_log, name)
}

/// How the OS error of a bind to a taken port reads in a log.
const ADDRESS_IN_USE: &str = "Address already in use";

/// The last `n` lines of a log, without a trailing stack backtrace (an
/// `anyhow` error printed with `RUST_BACKTRACE` set), so the error itself
/// is shown.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let text = text
        .find("\nStack backtrace:")
        .map_or(text.as_str(), |at| &text[..at]);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_tail_shows_the_error_not_its_backtrace() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("executor-0.log");
        let mut text = String::from(
            "INFO starting\nError: Address already in use (os error 98)\n\nStack backtrace:\n",
        );
        for i in 0..40 {
            text.push_str(&format!("  {i}: frame\n"));
        }
        std::fs::write(&log, text).unwrap();
        assert_eq!(
            tail(&log, 15),
            "INFO starting\nError: Address already in use (os error 98)"
        );
        std::fs::write(&log, "a\nb\nc\n").unwrap();
        assert_eq!(tail(&log, 2), "b\nc");
    }

    #[test]
    fn state_file_roundtrips() {
        let dir = tempfile::tempdir().unwrap();
        let p = |name: &str, port| ProcessEntry {
            name: name.into(),
            pid: 1,
            port,
            grpc_port: 0,
            health_port: port,
            log: dir.path().join("x.log"),
        };
        let s = ClusterState {
            scheduler_url: "df://127.0.0.1:1".into(),
            scheduler: p("scheduler", 1),
            executors: vec![p("executor-0", 2)],
        };
        s.write(dir.path()).unwrap();
        assert_eq!(ClusterState::read(dir.path()).unwrap(), s);
    }

    #[test]
    fn missing_state_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let e = ClusterState::read(dir.path()).unwrap_err().to_string();
        assert!(e.contains(STATE_FILE), "{e}");
    }

    #[test]
    fn liveness_of_self_and_of_nothing() {
        assert!(is_alive(std::process::id()));
        assert!(!is_alive(u32::MAX - 1));
        assert_eq!(http_status(1, "/healthz"), None);
    }
}
