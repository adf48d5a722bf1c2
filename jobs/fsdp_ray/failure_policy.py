"""The job's failure policy: retry while the run makes progress, stop a crash loop after N failures.

Ray Train V2's own policy counts failures (`FailureConfig.max_failures`) but cannot see progress:
-1 restarts a failing step forever, a number stops a healthy multi-day run after that many node
losses. So Ray Train gets `max_failures=0` and hands every worker-group failure to the driver,
which resumes the run by calling `fit()` again with the same `RunConfig(name, storage_path)` (Ray
Train V2's public way to resume: the latest registered checkpoint). Between failures the driver
compares a progress mark: the highest step rank 0 completed and the latest registered checkpoint.
Any increase resets the count; `limit` failures in a row without one end the run.
Preemptions stay with Ray Train (`max_preemption_failures=-1`): they never reach this policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ray

DEFAULT_LIMIT = 3


@dataclass(frozen=True)
class Mark:
    """How far the run has got: highest step completed, and the step of its latest registered checkpoint."""

    step: int = 0
    checkpoint: int = 0

    def beyond(self, other: Mark) -> bool:
        return self.step > other.step or self.checkpoint > other.checkpoint


@ray.remote(num_cpus=0)
class RunProgress:
    """The run's progress mark, owned by the driver so it outlives every worker group.

    Rank 0 sends `reached` after each step (fire and forget); a controller callback sends
    `checkpointed` when Ray Train registers a checkpoint.
    """

    def __init__(self) -> None:
        self._step = 0
        self._checkpoint = 0

    def reached(self, step: int) -> None:
        self._step = max(self._step, step)

    def checkpointed(self, step: int) -> None:
        self._checkpoint = max(self._checkpoint, step)

    def mark(self) -> Mark:
        return Mark(self._step, self._checkpoint)


def progress_callback(run_progress: Any) -> Any:
    """A Ray Train callback (controller side) that records each registered checkpoint's step."""
    from ray.train import UserCallback  # noqa: PLC0415

    class RecordCheckpoints(UserCallback):
        def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
            if checkpoint is not None and metrics:
                run_progress.checkpointed.remote(metrics[0]["step"])

    return RecordCheckpoints()


class Policy:
    """Decides after each failed attempt: retry (None) or stop (the one-line reason).

    `limit`: failures in a row without progress that end the run. `max_failures`: failures in all
    that end it, progress or not (-1: no cap).
    """

    def __init__(self, limit: int, max_failures: int = -1, start: Mark | None = None) -> None:
        self.limit, self.max_failures = limit, max_failures
        self.last = start or Mark()
        self.failures = 0
        self.without_progress = 0

    def after_failure(self, mark: Mark, error: str) -> str | None:
        self.failures += 1
        self.without_progress = 0 if mark.beyond(self.last) else self.without_progress + 1
        self.last = Mark(max(mark.step, self.last.step), max(mark.checkpoint, self.last.checkpoint))
        where = f"at step {mark.step}, last checkpoint {mark.checkpoint or 'none'}"
        if self.without_progress >= self.limit:
            return f"failed {self.without_progress} times in a row without progress ({where}): {error}"
        if 0 <= self.max_failures < self.failures:
            return f"failed {self.failures} times (--max-failures {self.max_failures}; {where}): {error}"
        return None


def error_line(error: BaseException) -> str:
    """One line for a TrainingFailedError: the first worker's own error (`KeyError: 'text'`), taken
    from the last line of its traceback when Ray could only hand over a wrapper."""
    failures = getattr(error, "worker_failures", None) or {}
    cause = next(iter(failures.values()), None) or getattr(error, "controller_failure", None) or error
    lines = [line.strip() for line in str(cause).strip().splitlines() if line.strip()]
    if len(lines) > 1:
        return lines[-1]
    return f"{type(cause).__name__}: {lines[0] if lines else ''}".rstrip(": ")
