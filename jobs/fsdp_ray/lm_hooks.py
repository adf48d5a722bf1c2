"""Test and benchmark hooks (`--progress-dir`): the files the job writes for them, and their readers.

The job never reads these files itself; tests/jobs and bench/ import the readers from here, so the
format is defined once. Two writers:
- `Progress`, on every rank: `rank<r>-pid<p>.json`, rewritten atomically after every step (pid,
  steps, step times, checkpoint stalls, steady-state step rate).
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
            "steady_steps_per_s": None,
        }
        self._steady_since: tuple[int, float] | None = None
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
        if stall_s is not None:
            self.data["checkpoint_stalls_s"].append(stall_s)
            self.data["checkpoint_step"] = step
        # Wall-clock rate over all steps after the warm-up, checkpoints and data waits included.
        done = step - self.data["start_step"]
        if done == WARMUP_STEPS:
            self._steady_since = (step, now)
        elif self._steady_since and step > self._steady_since[0]:
            self.data["steady_steps_per_s"] = (step - self._steady_since[0]) / (now - self._steady_since[1])
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


def registered_checkpoint(directory: Path) -> int | None:
    """The step of the latest checkpoint Ray Train has registered, or None."""
    path = directory / REGISTERED_FILE
    return json.loads(path.read_text())["step"] if path.is_file() else None
