"""Head-node loss mid-training on a real two-node local Ray, with or without GCS fault tolerance (Redis).

A head and a worker node run on this machine (own ports, own temp dir), training runs through
jobs/supervisor.py, and the head's processes are SIGKILLed once a checkpoint is registered, as if its node
had gone. The head is then started again on the same ports (what KubeRay does with a new head pod).
Without GCS fault tolerance the worker node's raylet dies with the old GCS; a restart loop stands in for
the kubelet (a Ray worker pod's container is restarted). Used by tests/jobs/test_gcs_fault_tolerance.py
(with GCS FT) and bench/head_recovery.py (with vs without, same run).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fsdp_job import JOB_DIR, REPO, VENV_BIN, job_env, latest_per_rank, registered_checkpoint, summary_of

TEMP_ROOT = Path("/tmp/h14-ray")  # short: Ray's socket paths must stay under 107 characters
REDIS_PORT = 6399
GCS_PORT = 6393
DASHBOARD_PORT = 8293
CLIENT_PORT = 10093
MAX_STEPS = 24
CHECKPOINT_EVERY = 3
START_TIMEOUT_S = 180
RUN_TIMEOUT_S = 600
# Worker processes' ports: away from Ray's default range (10002-19999), which holds the client port.
HEAD_WORKER_PORTS = ["--min-worker-port=23000", "--max-worker-port=23199"]
NODE_WORKER_PORTS = ["--min-worker-port=23200", "--max-worker-port=23399"]
TINY = [
    "--gpus-per-worker", "0", "--num-workers", "2", "--d-model", "32", "--n-layers", "2", "--n-heads", "2",
    "--vocab-size", "128", "--seq-len", "16", "--batch-size", "4", "--lr", "3e-3",
]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_ports() -> list[str]:
    """Every port a node opens, chosen free: two nodes share this host, and other Ray tests run beside."""
    names = (
        "node-manager-port", "object-manager-port", "metrics-export-port", "dashboard-agent-listen-port",
        "dashboard-agent-grpc-port", "runtime-env-agent-port",
    )  # fmt: skip
    return [f"--{name}={_free_port()}" for name in names]


@dataclass
class Cluster:
    """A head and one worker node on this host, the head's processes known so that only they are killed."""

    name: str
    redis_password: str | None
    temp_dir: Path = field(init=False)
    env: dict[str, str] = field(init=False)
    head_pids: set[int] = field(default_factory=set)
    worker_raylet_pid: int | None = None
    worker_node_id: str | None = None

    def __post_init__(self) -> None:
        self.temp_dir = TEMP_ROOT / self.name
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        self.temp_dir.mkdir(parents=True)
        self.env = job_env()
        self.env.pop("RAY_ADDRESS")
        if self.redis_password is not None:
            # Workers must outlive a head restart (KubeRay sets the same on worker pods with GCS FT).
            self.env["RAY_gcs_rpc_server_reconnect_timeout_s"] = "600"
        self.head_ports = [*_node_ports(), *HEAD_WORKER_PORTS]

    def _ray(self, *args: str, env: dict[str, str] | None = None) -> None:
        done = subprocess.run(
            [str(VENV_BIN / "ray"), *args], env=env or self.env, capture_output=True, text=True,
            timeout=START_TIMEOUT_S, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"ray {args[0]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"

    def start_head(self) -> None:
        env = dict(self.env)
        args = [
            "start", "--head", f"--port={GCS_PORT}", f"--dashboard-port={DASHBOARD_PORT}",
            "--dashboard-host=127.0.0.1", f"--ray-client-server-port={CLIENT_PORT}", "--num-cpus=0",
            f"--temp-dir={self.temp_dir}", "--disable-usage-stats", *self.head_ports,
        ]  # fmt: skip
        if self.redis_password is not None:
            env["RAY_REDIS_ADDRESS"] = f"127.0.0.1:{REDIS_PORT}"
            args.append(f"--redis-password={self.redis_password}")
        # A new head pod starts with an empty /tmp/ray. Here the old head's address file would make
        # `ray start` refuse the port, as the surviving worker's raylet still names that address.
        (self.temp_dir / "ray_current_cluster").unlink(missing_ok=True)
        before = self._ours()
        self._ray(*args, env=env)
        # Everything of this cluster that appeared now is the head's (the worker node keeps its own pids).
        self.head_pids = self._ours() - before

    def start_worker(self) -> None:
        args = [
            "start", f"--address=127.0.0.1:{GCS_PORT}", "--num-cpus=2", "--disable-usage-stats",
            f"--temp-dir={self.temp_dir}",
        ]  # fmt: skip
        self._ray(*args, *_node_ports(), *NODE_WORKER_PORTS)
        raylets = [pid for pid in self._ours() - self.head_pids if _name(pid) == "raylet" and _alive(pid)]
        assert len(raylets) == 1, raylets
        self.worker_raylet_pid = raylets[0]
        self.worker_node_id = _flag(_processes()[raylets[0]], "--node_id")

    def kill_head(self) -> None:
        """SIGKILL the head's processes and whatever they started (drivers, workers, agents)."""
        spared = _tree({self.worker_raylet_pid}) if self.worker_raylet_pid else set()
        _kill(_tree(self.head_pids) - spared)

    def worker_alive(self) -> bool:
        return self.worker_raylet_pid is not None and _alive(self.worker_raylet_pid)

    def alive_node_ids(self) -> set[str]:
        done = subprocess.run(
            [str(VENV_BIN / "ray"), "list", "nodes", "--address", f"http://127.0.0.1:{DASHBOARD_PORT}",
             "--format", "json", "--filter", "state=ALIVE"],
            env=self.env, capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        return {node["node_id"] for node in json.loads(done.stdout)}

    def stop(self) -> None:
        """Kill every process of this cluster (found by its temp dir), never another test's Ray."""
        _kill(_tree(self._ours()))

    def _ours(self) -> set[int]:
        marker = str(self.temp_dir)
        return {pid for pid, cmdline in _processes().items() if any(marker in arg for arg in cmdline)} - {
            os.getpid()
        }


# /proc, not psutil (not a dependency of this project): Linux is where these tests run.
def _processes() -> dict[int, list[str]]:
    """pid -> command line of every live process (zombies have an empty one)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                raw = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if raw:
                found[int(entry.name)] = raw.decode(errors="replace").rstrip("\0").split("\0")
    return found


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return [
        text[: text.index(" (")],
        text[text.index(" (") + 2 : text.rindex(")")],
        *text[text.rindex(")") + 2 :].split(),
    ]


def _alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[2] != "Z"


def _name(pid: int) -> str:
    stat = _stat(pid)
    return stat[1] if stat else ""


def _tree(pids: set[int]) -> set[int]:
    """pids and all their descendants."""
    parents = {pid: int(stat[3]) for pid in _processes() if (stat := _stat(pid))}
    result, grew = set(pids), True
    while grew:
        more = {pid for pid, ppid in parents.items() if ppid in result} - result
        result |= more
        grew = bool(more)
    return result


def _kill(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.1)


def _flag(cmdline: list[str], name: str) -> str:
    for arg in cmdline:
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"{name} not in {cmdline}")


class Kubelet(threading.Thread):
    """Without GCS FT a worker pod's container exits with its raylet and the kubelet starts it again."""

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.restarts = 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(0.5):
            if not self.cluster.worker_alive():
                try:
                    self.cluster.start_worker()
                    self.restarts += 1
                except AssertionError:
                    pass  # the head is not back yet: try again, as a crash-looping pod would


def _supervise(storage: Path, progress_dir: Path, run_name: str, log: Path, env: dict) -> subprocess.Popen:
    cmd = [
        sys.executable, str(REPO / "jobs" / "supervisor.py"), "--address", f"http://127.0.0.1:{DASHBOARD_PORT}",
        "--working-dir", str(JOB_DIR), "--poll-s", "0.5", "--head-wait-s", "300", "--",
        "python3", "train.py", *TINY, "--storage-path", str(storage), "--run-name", run_name,
        "--max-steps", str(MAX_STEPS), "--checkpoint-every", str(CHECKPOINT_EVERY),
        "--progress-dir", str(progress_dir),
    ]  # fmt: skip
    with log.open("wb") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _wait(predicate, what: str, timeout: float = RUN_TIMEOUT_S, poll: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _resumed_step(progress_dir: Path, killed_at: float) -> dict | None:
    """A rank of an attempt started after the kill that has finished a step: training has resumed."""
    for p in latest_per_rank(progress_dir).values():
        if p["started_at"] > killed_at and p["step"] > p["start_step"]:
            return p
    return None


def head_loss(name: str, redis_password: str | None, tmp_path: Path) -> dict:
    """Train, kill the head after a registered checkpoint, restart it; returns what happened."""
    cluster = Cluster(name, redis_password)
    tmp_path.mkdir(parents=True)
    storage, progress_dir, log = tmp_path / "results", tmp_path / "progress", tmp_path / "supervisor.log"
    kubelet = None
    supervisor = None
    try:
        cluster.start_head()
        cluster.start_worker()
        node_id, raylet_pid = cluster.worker_node_id, cluster.worker_raylet_pid
        supervisor = _supervise(storage, progress_dir, name, log, cluster.env)
        checkpoint = _wait(lambda: registered_checkpoint(progress_dir), "a registered checkpoint")
        killed_at = time.time()
        cluster.kill_head()
        cluster.start_head()
        if redis_password is None:
            kubelet = Kubelet(
                cluster
            )  # after the head is back, so it never mistakes head pids for a worker's
            kubelet.start()
        resumed = _wait(lambda: _resumed_step(progress_dir, killed_at), "training to resume")
        # The progress file is written when a step ends; its mtime is when training had resumed.
        resumed_at = min(
            f.stat().st_mtime
            for f in progress_dir.glob("rank*.json")
            if json.loads(f.read_text())["started_at"] > killed_at
        )
        rc = supervisor.wait(timeout=RUN_TIMEOUT_S)
        output = log.read_text(errors="replace")
        assert rc == 0, output[-4000:]
        return {
            "summary": summary_of(
                "\n".join(ln for ln in output.splitlines() if not ln.startswith("supervisor:"))
            ),
            "checkpoint": checkpoint,
            "resumed": resumed,
            "seconds_to_resume": round(resumed_at - killed_at, 1),
            "same_worker": cluster.worker_raylet_pid == raylet_pid and cluster.worker_node_id == node_id,
            "node_alive": node_id in cluster.alive_node_ids(),
            "worker_restarts": kubelet.restarts if kubelet else 0,
            "submissions": output.count('"event": "submitted"'),
        }
    finally:
        if kubelet is not None:
            kubelet.halt.set()
            kubelet.join(timeout=30)
        if supervisor is not None and supervisor.poll() is None:
            os.killpg(supervisor.pid, signal.SIGKILL)
        cluster.stop()
        shutil.rmtree(cluster.temp_dir, ignore_errors=True)


@contextlib.contextmanager
def redis_server(data_dir: Path) -> Iterator[str]:
    """Debian's redis-server on a loopback port with a password (yielded); RuntimeError when missing."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is missing: apt-get install -y redis-server")
    password = secrets.token_hex(16)
    proc = subprocess.Popen(
        [binary, "--port", str(REDIS_PORT), "--bind", "127.0.0.1", "--requirepass", password,
         "--dir", str(data_dir), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", REDIS_PORT)) == 0:
                    break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"redis-server did not listen on {REDIS_PORT}")
        yield password
    finally:
        proc.kill()
        proc.wait(timeout=30)
