"""Test and benchmark hooks (`--progress-dir`): the files the job writes for them, and their readers.

The job never reads these files itself; tests/jobs and bench/ import the readers from here, so the
format is defined once. Two writers:
- `Progress`, on every rank: `rank<r>-pid<p>.json`, rewritten atomically after every step (pid,
  steps, step times and end times, checkpoint stalls).
- `RegisteredCheckpoints`, a Ray Train callback in the controller: `registered.json` with the step of
  the latest checkpoint Ray Train has registered (its checkpoint manager runs before user callbacks),
  i.e. one a restart will resume from or after.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

REGISTERED_FILE = "registered.json"
WARMUP_STEPS = 3  # steps left out of the steady-state rate (first-step allocations, lazy init)


def _write_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


class Progress:
    """Writer, per rank and process; does nothing without a directory."""

    def __init__(self, directory: str | None, rank: int, start_step: int) -> None:
        self.path = Path(directory) / f"rank{rank}-pid{os.getpid()}.json" if directory else None
        now = time.time()
        self.data: dict[str, Any] = {
            "rank": rank,
            "pid": os.getpid(),
            "start_step": start_step,
            "step": start_step,
            "checkpoint_step": None,
            "started_at": now,
            "first_step_at": None,
            "updated_at": now,
            "step_times_s": [],
            "checkpoint_stalls_s": [],
            "step_ends_at": [],
        }
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _write_atomic(self.path, self.data)

    def update(self, step: int, step_time: float, *, stall_s: float | None = None) -> None:
        if self.path is None:
            return
        now = time.time()
        self.data["first_step_at"] = self.data["first_step_at"] or now
        self.data.update(step=step, updated_at=now)
        self.data["step_times_s"].append(step_time)
        self.data["step_ends_at"].append(now)
        if stall_s is not None:
            self.data["checkpoint_stalls_s"].append(stall_s)
            self.data["checkpoint_step"] = step
        _write_atomic(self.path, self.data)


def registered_callback(directory: str | None) -> list[Any]:
    """The Ray Train callbacks to pass in RunConfig: the registered-checkpoint writer if hooks are on."""
    if not directory:
        return []
    from ray.train import UserCallback  # noqa: PLC0415 - the readers below must import without Ray

    class RegisteredCheckpoints(UserCallback):
        """Writer, in the Ray Train controller."""

        def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
            if checkpoint is not None:
                Path(directory).mkdir(parents=True, exist_ok=True)
                _write_atomic(
                    Path(directory) / REGISTERED_FILE, {"step": metrics[0]["step"], "path": checkpoint.path}
                )

    return [RegisteredCheckpoints()]


class InjectedFailureError(RuntimeError):
    """A deterministic failure for the failure-policy tests (`--fail-at-step`)."""


def fail_at(fail_step: int | None, step: int) -> None:
    """Raises before `step` when it is the configured one: the same error at the same step on every
    attempt, as a bug in user code would."""
    if fail_step is not None and step == fail_step:
        raise InjectedFailureError(f"injected failure before step {step}")


# --- readers ------------------------------------------------------------------------------------


def progress(directory: Path) -> list[dict[str, Any]]:
    """Every rank's and process's progress file (a restarted attempt writes new files)."""
    if not directory.is_dir():
        return []
    return [json.loads(p.read_text()) for p in sorted(directory.glob("rank*.json"))]


def latest_per_rank(directory: Path) -> dict[int, dict[str, Any]]:
    """The newest process's progress for each rank."""
    latest: dict[int, dict[str, Any]] = {}
    for p in progress(directory):
        if p["rank"] not in latest or p["started_at"] > latest[p["rank"]]["started_at"]:
            latest[p["rank"]] = p
    return latest


def steady_steps_per_s(data: dict[str, Any], drop_last: int = 0) -> float:
    """Wall-clock step rate after the warm-up steps, every wait included; `drop_last` leaves out the
    final steps (e.g. one that ends with a checkpoint)."""
    ends = data["step_ends_at"][WARMUP_STEPS - 1 : len(data["step_ends_at"]) - drop_last]
    if len(ends) < 2:
        raise ValueError(
            f"rank {data['rank']}: too few steps for a steady rate ({len(data['step_ends_at'])})"
        )
    return (len(ends) - 1) / (ends[-1] - ends[0])


def registered_checkpoint(directory: Path) -> int | None:
    """The step of the latest checkpoint Ray Train has registered, or None."""
    path = directory / REGISTERED_FILE
    return json.loads(path.read_text())["step"] if path.is_file() else None
