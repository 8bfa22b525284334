"""A rehearsal of the Kubernetes deployment without Kubernetes.

Every Sluice container the chart or the Airflow DAGs render runs here as a
local process with its rendered command, args and env, one "pod" per network
namespace with its own address on a bridge this module creates:

* ``Network``: a Linux bridge and, per pod, a network namespace joined to it
  by a veth pair; ``ip netns exec`` bind-mounts the pod's hosts file
  (/etc/netns/<ns>/hosts) over /etc/hosts, so Service names (the scheduler's)
  resolve to pod addresses in the pod's private mount namespace.
* ``Pod``: starts a rendered container: its volumes (emptyDir, configMap)
  bind-mounted at their mountPaths, the root filesystem remounted read-only
  when the container asks for it, run as the pod's runAsUser/runAsGroup, with
  ``$(VAR)`` expansion of args; readiness and liveness probes are polled at
  their rendered paths and ports from the host.
* ``FakeKube``: the few Kubernetes API endpoints `sluice submit/scale/status`
  use, authorized with the chart's rendered submitter Role (403 otherwise);
  the harness reconciles what is asked (executor replicas, Jobs) into pods.
* ``Azurite``: the lake's Azure Blob emulator, listening on the bridge.

Needs root (network and mount namespaces) and the built binaries.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from conftest import expand_k8s_vars

# Azurite's well-known development account (public, not a secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def run(cmd: list[str], check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


class Network:
    """A bridge 10.231.<n>.1/24 and a network namespace per pod."""

    def __init__(self, base: Path):
        self.tag = f"{os.getpid() % 10000}"
        self.bridge = f"slbr{self.tag}"
        self.prefix = f"10.231.{os.getpid() % 250}"
        self.gateway = f"{self.prefix}.1"
        self.base = base
        self.namespaces: list[str] = []
        self.hosts: dict[str, str] = {}
        self._next = 10
        run(["ip", "link", "add", "name", self.bridge, "type", "bridge"])
        run(["ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge])
        run(["ip", "link", "set", self.bridge, "up"])

    def add_namespace(self) -> tuple[str, str]:
        """A fresh namespace joined to the bridge: (name, address)."""
        n = self._next
        self._next += 1
        ns, host_if, ip = f"sl{self.tag}-{n}", f"slv{self.tag}-{n}", f"{self.prefix}.{n}"
        run(["ip", "netns", "add", ns])
        self.namespaces.append(ns)
        run(["ip", "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", ns])
        run(["ip", "link", "set", host_if, "master", self.bridge])
        run(["ip", "link", "set", host_if, "up"])
        run(["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0"])
        run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
        run(["ip", "-n", ns, "route", "add", "default", "via", self.gateway])
        self.write_hosts(ns)
        return ns, ip

    def add_host(self, name: str, ip: str) -> None:
        """A Service name (or host) every pod resolves, from now on."""
        self.hosts[name] = ip
        for ns in self.namespaces:
            self.write_hosts(ns)

    def write_hosts(self, ns: str) -> None:
        d = Path("/etc/netns") / ns
        d.mkdir(parents=True, exist_ok=True)
        lines = ["127.0.0.1 localhost"] + [f"{ip} {name}" for name, ip in sorted(self.hosts.items())]
        # Replaced in place: `ip netns exec` bind-mounts this file, so the
        # inode must stay the same for running pods to see new names.
        with open(d / "hosts", "w") as fh:
            fh.write("\n".join(lines) + "\n")

    def close(self) -> None:
        for ns in self.namespaces:
            run(["ip", "netns", "del", ns], check=False)
            shutil.rmtree(Path("/etc/netns") / ns, ignore_errors=True)
        run(["ip", "link", "del", self.bridge], check=False)


class Azurite:
    """The Azure Blob emulator, listening on the bridge's gateway address."""

    def __init__(self, host: str, log: Path):
        cache = Path(os.environ.get("SLUICE_CACHE", Path.home() / ".cache" / "sluice"))
        d = cache / "npm-azurite"
        binary = d / "node_modules" / ".bin" / "azurite-blob"
        if not binary.exists():
            d.mkdir(parents=True, exist_ok=True)
            subprocess.run(["npm", "init", "-y"], cwd=d, capture_output=True, check=True)
            subprocess.run(["npm", "install", "--no-audit", "--no-fund", "azurite@3"], cwd=d, capture_output=True, check=True)
        self.host, self.port = host, 10000
        self.proc = subprocess.Popen(
            [str(binary), "--blobHost", host, "--blobPort", str(self.port), "--inMemoryPersistence",
             "--skipApiVersionCheck", "--loose", "--silent"],
            stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        wait_for(lambda: tcp_open(host, self.port), 30, "azurite to listen")
        self.url = f"http://{host}:{self.port}/{AZURITE_ACCOUNT}"

    def service(self):
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient(account_url=self.url, credential={"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY})

    def close(self) -> None:
        terminate(self.proc)


def tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def wait_for(check, seconds: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {seconds:.0f} s waiting for {what}")


def terminate(proc: subprocess.Popen, grace: float = 10) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, 15)
        except ProcessLookupError:
            return
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


def http_probe(ip: str, port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{ip}:{port}{path}", timeout=2) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except OSError as err:
        return 0, str(err)


@dataclass
class Pod:
    """One pod: a rendered pod spec (first container) run as a process."""

    name: str
    spec: dict
    labels: dict
    cluster: "Cluster"
    config_maps: dict[str, dict[str, str]] = field(default_factory=dict)
    ns: str = ""
    ip: str = ""
    proc: subprocess.Popen | None = None
    log: Path | None = None
    liveness_failures: int = 0
    created: str = ""

    def __post_init__(self) -> None:
        self.created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    @property
    def container(self) -> dict:
        return self.spec["containers"][0]

    def env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for e in self.container.get("env") or []:
            if "value" in e:
                env[e["name"]] = expand_k8s_vars(str(e["value"]), env)
            elif e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "status.podIP":
                env[e["name"]] = self.ip
            else:
                raise AssertionError(f"{self.name}: env {e['name']} has a source the rehearsal cannot provide: {e}")
        return env

    def port(self, ref) -> int:
        if isinstance(ref, int):
            return ref
        for p in self.container.get("ports") or []:
            if p["name"] == ref:
                return p["containerPort"]
        raise AssertionError(f"{self.name}: probe port {ref!r} is not a declared container port")

    def start(self) -> "Pod":
        c = self.cluster
        self.ns, self.ip = c.net.add_namespace()
        root, attempt = c.base / "pods" / self.name, 1
        while root.exists():  # a retried task's pod: a fresh sandbox
            attempt += 1
            root = c.base / "pods" / f"{self.name}-{attempt}"
        root.mkdir(parents=True)
        security = self.spec.get("securityContext") or {}
        uid, gid = security.get("runAsUser", 0), security.get("runAsGroup", 0)
        volumes = {v["name"]: v for v in self.spec.get("volumes") or []}
        script = ["set -e"]
        for m in self.container.get("volumeMounts") or []:
            v = volumes[m["name"]]
            src = root / "volumes" / m["name"]
            src.mkdir(parents=True, exist_ok=True)
            if "configMap" in v:
                data = self.config_maps.get(v["configMap"]["name"])
                assert data is not None, f"{self.name}: configMap {v['configMap']['name']} does not exist"
                for key, text in data.items():
                    (src / key).write_text(text)
            elif "emptyDir" not in v:
                raise AssertionError(f"{self.name}: volume {m['name']} of a kind the rehearsal cannot provide: {v}")
            os.chown(src, uid, gid)
            c.mount_point(m["mountPath"])
            script.append(f"mount --bind {shlex.quote(str(src))} {shlex.quote(m['mountPath'])}")
            if m.get("readOnly"):
                script.append(f"mount -o remount,bind,ro {shlex.quote(m['mountPath'])}")
        if (self.container.get("securityContext") or {}).get("readOnlyRootFilesystem"):
            script.append("mount -o remount,bind,ro /")
        env = {"PATH": f"{c.bin_dir}:/usr/bin:/bin", "HOME": "/", **self.env()}
        command = [expand_k8s_vars(a, env) for a in self.container["command"] + (self.container.get("args") or [])]
        user = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups"] if uid else []
        script.append("cd /")
        script.append("exec " + shlex.join(user + ["env", "-i"] + [f"{k}={v}" for k, v in env.items()] + command))
        self.log = root / "log.txt"
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "unshare", "--mount", "--propagation", "private", "sh", "-c", "\n".join(script)],
            stdout=open(self.log, "w"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        c.pods.append(self)
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log else ""

    def probe(self, kind: str) -> bool | None:
        """One probe of `kind` (readinessProbe/livenessProbe); None when the container declares none."""
        probe = self.container.get(kind)
        if not probe:
            return None
        if "httpGet" in probe:
            code, _ = http_probe(self.ip, self.port(probe["httpGet"]["port"]), probe["httpGet"]["path"])
            return 200 <= code < 400
        if "tcpSocket" in probe:
            return tcp_open(self.ip, self.port(probe["tcpSocket"]["port"]))
        raise AssertionError(f"{self.name}: unsupported probe {probe}")

    def wait_ready(self, seconds: float = 120) -> None:
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode} before it was ready:\n{self.output()[-4000:]}")
            return self.probe("readinessProbe")

        try:
            wait_for(ready, seconds, f"{self.name} readiness ({self.container['readinessProbe']})")
        except TimeoutError as err:
            raise AssertionError(f"{err}\n{self.output()[-4000:]}") from None

    def wait_exit(self, seconds: float) -> int:
        try:
            return self.proc.wait(seconds)
        except subprocess.TimeoutExpired:
            terminate(self.proc)
            raise AssertionError(f"{self.name} did not finish within {seconds:.0f} s:\n{self.output()[-4000:]}") from None

    @property
    def phase(self) -> str:
        if self.proc is None:
            return "Pending"
        rc = self.proc.poll()
        return "Running" if rc is None else ("Succeeded" if rc == 0 else "Failed")


class Cluster:
    """The pods of one rehearsal, their network, the lake and the fake API."""

    def __init__(self, base: Path, binaries: Path):
        self.base = base
        self.pods: list[Pod] = []
        self._made_dirs: list[Path] = []
        # "The image": the three binaries under a path every pod's user can
        # read and no pod mount hides (hard links when possible).
        self.bin_dir = base / "image-bin"
        self.bin_dir.mkdir(parents=True)
        for b in ("sluice", "sluice-scheduler", "sluice-executor"):
            try:
                os.link(binaries / b, self.bin_dir / b)
            except OSError:
                shutil.copy2(binaries / b, self.bin_dir / b)
            os.chmod(self.bin_dir / b, 0o755)
        base.chmod(0o755)
        self.net = Network(base)
        self.stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch_liveness, daemon=True)
        self._watcher.start()

    def mount_point(self, path: str) -> None:
        p = Path(path)
        if not p.exists():
            p.mkdir(parents=True)
            self._made_dirs.append(p)

    def _watch_liveness(self) -> None:
        """Kubelet's liveness checks: every 5 s for every running pod."""
        while not self.stop.wait(5):
            for pod in list(self.pods):
                if pod.phase == "Running" and pod.probe("livenessProbe") is False:
                    pod.liveness_failures += 1

    def close(self) -> None:
        self.stop.set()
        for pod in self.pods:
            if pod.proc is not None:
                terminate(pod.proc)
        self.net.close()
        for d in reversed(self._made_dirs):
            try:
                d.rmdir()
            except OSError:
                pass


def job_pod_name(job: str, n: int) -> str:
    return f"{job}-{n}"


class FakeKube:
    """The Kubernetes API endpoints `sluice submit/scale/status` call, with the
    chart's rendered Role as the authorizer (403 on anything not granted).
    Executor scale and Jobs are reconciled into pods by `reconcile`."""

    def __init__(self, cluster: Cluster, namespace: str, role: dict, deployments: dict[str, dict], on_scale, on_job):
        self.cluster, self.namespace, self.rules = cluster, namespace, role["rules"]
        self.deployments = deployments  # name -> rendered Deployment
        self.replicas = {n: d["spec"].get("replicas", 1) for n, d in deployments.items()}
        self.ready: dict[str, int] = {n: 0 for n in deployments}
        self.config_maps: dict[str, dict] = {}
        self.jobs: dict[str, dict] = {}
        self.job_pods: dict[str, list[Pod]] = {}
        self.requests: list[tuple[str, str, int]] = []
        self.on_scale, self.on_job = on_scale, on_job
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                api.handle(self, "GET")

            def do_POST(self):
                api.handle(self, "POST")

            def do_PATCH(self):
                api.handle(self, "PATCH")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def kubeconfig(self, path: Path) -> Path:
        path.write_text(
            f"apiVersion: v1\nkind: Config\nclusters:\n- name: rehearsal\n  cluster:\n    server: {self.url}\n"
            f"contexts:\n- name: rehearsal\n  context:\n    cluster: rehearsal\n    user: operator\n    namespace: {self.namespace}\n"
            "current-context: rehearsal\nusers:\n- name: operator\n  user:\n    token: rehearsal-token\n"
        )
        return path

    def close(self) -> None:
        self.server.shutdown()

    # --- authorization -------------------------------------------------
    @staticmethod
    def attributes(method: str, path: str, query: str):
        seg = path.strip("/").split("/")
        if seg[:2] == ["api", "v1"]:
            group, rest = "", seg[2:]
        elif seg[0] == "apis" and len(seg) >= 3:
            group, rest = seg[1], seg[3:]
        else:
            return None
        if len(rest) < 3 or rest[0] != "namespaces":
            return None
        ns, resource = rest[1], rest[2]
        name = rest[3] if len(rest) > 3 else None
        if len(rest) > 4:
            resource = f"{resource}/{rest[4]}"
        watch = "watch=true" in query.split("&")
        verb = {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}.get(method)
        if method == "GET":
            verb = "get" if name else ("watch" if watch else "list")
        return ns, group, resource, verb, name

    def allowed(self, group, resource, verb, name) -> bool:
        for r in self.rules:
            if group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"]:
                names = r.get("resourceNames") or []
                if not names or name in names:
                    return True
        return False

    # --- serving ------------------------------------------------------
    def handle(self, h, method: str) -> None:
        path, _, query = h.path.partition("?")
        length = int(h.headers.get("content-length") or 0)
        body = json.loads(h.rfile.read(length)) if length else None
        if path == "/version":
            return self.reply(h, 200, {"major": "1", "minor": "33", "gitVersion": "v1.33.0", "gitCommit": "rehearsal",
                                       "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24",
                                       "compiler": "gc", "platform": "linux/amd64"})
        attrs = self.attributes(method, path, query)
        if attrs is None:
            return self.status(h, 404, "NotFound", f"no route for {method} {path}")
        ns, group, resource, verb, name = attrs
        if ns != self.namespace or not self.allowed(group, resource, verb, name):
            self.requests.append((verb, f"{group}/{resource}", 403))
            return self.status(h, 403, "Forbidden", f'{resource}.{group} "{name or ""}" is forbidden: User "operator" cannot {verb} resource "{resource}" in API group "{group}" in the namespace "{ns}"')
        self.requests.append((verb, f"{group}/{resource}", 200))
        route = getattr(self, f"r_{verb}_{resource.replace('/', '_')}", None)
        if route is None:
            return self.status(h, 404, "NotFound", f"the rehearsal serves no {verb} {resource}")
        route(h, name, query, body)

    def reply(self, h, code: int, obj) -> None:
        data = json.dumps(obj).encode()
        h.send_response(code)
        h.send_header("content-type", "application/json")
        h.send_header("content-length", str(len(data)))
        h.send_header("connection", "close")
        h.end_headers()
        h.wfile.write(data)

    def status(self, h, code: int, reason: str, message: str) -> None:
        self.reply(h, code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason, "message": message})

    def r_get_deployments_scale(self, h, name, query, body):
        if name not in self.deployments:
            return self.status(h, 404, "NotFound", f'deployments.apps "{name}" not found')
        self.reply(h, 200, {"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": {"name": name, "namespace": self.namespace},
                            "spec": {"replicas": self.replicas[name]}, "status": {"replicas": self.ready[name]}})

    def r_patch_deployments_scale(self, h, name, query, body):
        if name not in self.deployments:
            return self.status(h, 404, "NotFound", f'deployments.apps "{name}" not found')
        self.replicas[name] = int(body["spec"]["replicas"])
        self.on_scale(name, self.replicas[name])
        self.r_get_deployments_scale(h, name, query, body)

    def r_get_deployments(self, h, name, query, body):
        if name not in self.deployments:
            return self.status(h, 404, "NotFound", f'deployments.apps "{name}" not found')
        d = json.loads(json.dumps(self.deployments[name]))
        d.pop("_source", None)
        d["spec"]["replicas"] = self.replicas[name]
        d["status"] = {"replicas": self.replicas[name], "readyReplicas": self.ready[name]}
        self.reply(h, 200, d)

    def r_create_configmaps(self, h, name, query, body):
        body["metadata"]["uid"] = f"cm-{len(self.config_maps)}"
        self.config_maps[body["metadata"]["name"]] = body
        self.reply(h, 201, body)

    def r_patch_configmaps(self, h, name, query, body):
        cm = self.config_maps[name]
        cm["metadata"].update(body.get("metadata", {}))
        self.reply(h, 200, cm)

    def r_create_jobs(self, h, name, query, body):
        body["metadata"]["uid"] = f"job-{len(self.jobs)}"
        body["metadata"]["creationTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.jobs[body["metadata"]["name"]] = body
        self.job_pods[body["metadata"]["name"]] = []
        self.reply(h, 201, body)
        threading.Thread(target=self.on_job, args=(body,), daemon=True).start()

    def job_status(self, job: dict) -> dict:
        pods = self.job_pods[job["metadata"]["name"]]
        failed = sum(p.phase == "Failed" for p in pods)
        if any(p.phase == "Succeeded" for p in pods):
            return {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
        if failed > job["spec"].get("backoffLimit", 6):
            return {"failed": failed, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                                     "message": "Job has reached the specified backoff limit"}]}
        return {"active": 1, "failed": failed}

    def r_get_jobs_status(self, h, name, query, body):
        job = self.jobs.get(name)
        if job is None:
            return self.status(h, 404, "NotFound", f'jobs.batch "{name}" not found')
        self.reply(h, 200, {**job, "status": self.job_status(job)})

    def r_list_jobs(self, h, name, query, body):
        items = [{**j, "status": self.job_status(j)} for j in self.jobs.values()]
        self.reply(h, 200, {"kind": "JobList", "apiVersion": "batch/v1", "metadata": {}, "items": items})

    def r_list_pods(self, h, name, query, body):
        selector = urllib.parse.unquote(dict(kv.split("=", 1) for kv in query.split("&") if "=" in kv).get("labelSelector", ""))
        job = selector.removeprefix("batch.kubernetes.io/job-name=")
        items = [{"metadata": {"name": p.name, "namespace": self.namespace, "creationTimestamp": p.created, "labels": p.labels},
                  "status": {"phase": p.phase, **({"podIP": p.ip} if p.ip else {})}} for p in self.job_pods.get(job, [])]
        self.reply(h, 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})

    def r_get_pods_log(self, h, name, query, body):
        pod = next((p for pods in self.job_pods.values() for p in pods if p.name == name), None)
        if pod is None:
            return self.status(h, 404, "NotFound", f'pods "{name}" not found')
        follow = "follow=true" in query.split("&")
        h.send_response(200)
        h.send_header("content-type", "text/plain")
        h.send_header("transfer-encoding", "chunked")
        h.send_header("connection", "close")
        h.end_headers()
        offset = 0
        while True:
            done = pod.proc.poll() is not None
            data = pod.log.read_bytes()[offset:]
            if data:
                offset += len(data)
                h.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                h.wfile.flush()
            if done or not follow:
                break
            time.sleep(0.2)
        h.wfile.write(b"0\r\n\r\n")


def wait_pattern(pod: Pod, pattern: str, seconds: float) -> re.Match:
    return wait_for(lambda: re.search(pattern, pod.output()), seconds, f"{pattern!r} in {pod.name}'s log")
