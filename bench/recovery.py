"""Recovery benchmark for jobs/fsdp_ray: the same job run cleanly, then with one worker killed mid-run.

Prints cold start (launch to first step), recovery (kill to first step after the restart), lost steps,
their ratio, and the checkpoint stall as a share of step time. Targets: recovery <= 1.0x cold start,
lost steps <= the checkpoint interval. Both runs join one Ray head this bench starts first (its own
ports, temp dir and session), so the cold start is of the same kind as the recovery, Ray already up:
a job submitted to a running cluster, not Ray's own start-up. Runs on CPU:  python bench/recovery.py
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

JOB_DIR = Path(__file__).resolve().parents[1] / "jobs" / "fsdp_ray"
sys.path.insert(0, str(JOB_DIR))
from lm_hooks import progress  # noqa: E402 - the job's own hook readers

# Token auth as on the cluster, with a token of this run only: nothing read from or written to ~/.ray.
RAY_AUTH = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}

MODEL = ["--gpus-per-worker", "0", "--num-workers", "2", "--d-model", "128", "--n-layers", "4",
         "--n-heads", "4", "--vocab-size", "2048", "--seq-len", "64", "--batch-size", "8",
         "--eval-every", "0", "--no-export"]  # fmt: skip


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--max-steps", type=int, default=40)
    p.add_argument("--checkpoint-every", type=int, default=5)
    p.add_argument("--kill-at-step", type=int, default=17, help="kill rank 1 once every rank reached it")
    p.add_argument("--timeout", type=float, default=600)
    args = p.parse_args()
    if not args.checkpoint_every + 2 <= args.kill_at_step < args.max_steps:
        p.error("--kill-at-step must be >= checkpoint-every + 2 (a registered checkpoint) and < max-steps")
    return args


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_head(work: Path) -> tuple[subprocess.Popen, str]:
    """`ray start --head --block` in its own session (stopped by killing that session, never `ray stop`,
    which would stop every Ray on the machine); returns it and its GCS address once it answers."""
    port = free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **RAY_AUTH}
    env.pop("RAY_ADDRESS", None)
    ray = str(Path(sys.executable).parent / "ray")
    cmd = [ray, "start", "--head", "--block", f"--port={port}", "--num-cpus=4", "--include-dashboard=false",
           f"--temp-dir={work / 'ray'}", "--disable-usage-stats"]  # fmt: skip
    with (work / "head.log").open("wb") as out:
        head = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        status = subprocess.run(
            [ray, "status", f"--address={address}"], env=env, capture_output=True, check=False
        )
        if status.returncode == 0:
            return head, address
        time.sleep(1)
    os.killpg(head.pid, signal.SIGKILL)
    sys.exit("the Ray head did not start within 180 s")


def launch(
    args: argparse.Namespace, work: Path, name: str, address: str
) -> tuple[subprocess.Popen, Path, float]:
    marks = work / f"{name}-progress"
    cmd = [sys.executable, "train.py", *MODEL, "--storage-path", str(work / "results"), "--run-name", name,
           "--max-steps", str(args.max_steps), "--checkpoint-every", str(args.checkpoint_every),
           "--progress-dir", str(marks)]  # fmt: skip
    env = {**os.environ, "RAY_ADDRESS": address, "RAY_USAGE_STATS_ENABLED": "0", **RAY_AUTH}
    with (work / f"{name}.log").open("wb") as log:
        started = time.time()
        proc = subprocess.Popen(cmd, cwd=JOB_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    return proc, marks, started


def finish(proc: subprocess.Popen, work: Path, name: str, timeout: float) -> dict[str, Any]:
    try:
        rc = proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    lines = (work / f"{name}.log").read_text(errors="replace").splitlines()
    if rc != 0:
        sys.exit(f"{name} failed ({rc}):\n" + "\n".join(lines[-40:]))
    return json.loads(next(line for line in reversed(lines) if line.startswith('{"run_name"')))


def kill_worker_at(marks: Path, step: int, timeout: float) -> tuple[float, int]:
    """Waits until every rank finished `step`, kills rank 1; returns kill time and the step reached."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = progress(marks)
        if len(files) == 2 and min(f["step"] for f in files) >= step:
            victim = next(f for f in files if f["rank"] == 1)
            os.kill(victim["pid"], signal.SIGKILL)
            return time.time(), max(f["step"] for f in progress(marks))
        time.sleep(0.02)
    sys.exit(f"no worker reached step {step} within {timeout}s")


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="fsdp-bench-") as tmp:
        work = Path(tmp)
        head, address = start_head(work)
        try:
            measured = measure(args, work, address)
        finally:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(timeout=60)
    report(args, measured)


def measure(args: argparse.Namespace, work: Path, address: str) -> dict[str, Any]:
    """A clean run (cold start: launch to first step) and a run with rank 1 killed (recovery)."""
    proc, marks, started = launch(args, work, "clean", address)
    clean = finish(proc, work, "clean", args.timeout)
    ranks = progress(marks)
    cold = min(f["first_step_at"] for f in ranks) - started
    step_s = statistics.mean(t for f in ranks for t in f["step_times_s"])
    ckpt_s = statistics.mean(t for f in ranks for t in f["checkpoint_stalls_s"])

    proc, marks, _ = launch(args, work, "killed", address)
    killed_at, reached = kill_worker_at(marks, args.kill_at_step, args.timeout)
    killed = finish(proc, work, "killed", args.timeout)
    restarted = [f for f in progress(marks) if f["started_at"] > killed_at]
    recovery = min(f["first_step_at"] for f in restarted) - killed_at
    resumed = killed["start_steps"][-1]

    share = ckpt_s / (ckpt_s + args.checkpoint_every * step_s)
    return {
        "cold_start_s": cold, "recovery_s": recovery, "recovery_ratio": recovery / cold,
        "lost_steps": reached - resumed, "checkpoint_every": args.checkpoint_every, "step_time_s": step_s,
        "checkpoint_time_s": ckpt_s, "checkpoint_share": share, "start_steps": killed["start_steps"],
        "clean_final_loss": clean["final_loss"], "killed_final_loss": killed["final_loss"],
    }  # fmt: skip


def report(args: argparse.Namespace, m: dict[str, Any]) -> None:
    cold, recovery, lost, step_s, ckpt_s = (
        m["cold_start_s"],
        m["recovery_s"],
        m["lost_steps"],
        m["step_time_s"],
        m["checkpoint_time_s"],
    )
    print(f"cold start (launch -> first step):      {cold:7.2f} s   (Ray already up, as for a recovery)")
    print(f"recovery (kill -> first step again):    {recovery:7.2f} s")
    print(f"recovery / cold start:                  {recovery / cold:7.2f}x   (target <= 1.0x)")
    print(f"lost steps:                             {lost:7d}     (target <= {args.checkpoint_every})")
    print(f"mean step time:                         {step_s * 1000:7.1f} ms")
    print(f"checkpoint stall (async save + report): {ckpt_s * 1000:7.1f} ms = {ckpt_s / step_s:.2f}x a step")
    print(f"checkpoint share of training time:      {m['checkpoint_share']:7.1%}   "
          f"(one checkpoint every {args.checkpoint_every} steps)")  # fmt: skip
    print(json.dumps(m))
    ok = recovery <= cold and 0 <= lost <= args.checkpoint_every
    print("targets met" if ok else "TARGETS MISSED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
