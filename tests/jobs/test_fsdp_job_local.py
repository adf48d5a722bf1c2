"""The fsdp_ray job driver starting its own local Ray, as `make job-local` runs it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from fsdp_job import job_env, run_train, train_args

pytestmark = pytest.mark.ray


def test_run_to_completion(tmp_path: Path) -> None:
    storage = tmp_path / "results"
    args = train_args(
        storage, "complete", "--max-steps", "12", "--checkpoint-every", "4", "--num-to-keep", "2"
    )
    summary = run_train(args, tmp_path / "run.log", job_env())

    assert summary["run_name"] == "complete"
    assert summary["steps_completed"] == 12
    assert summary["start_steps"] == [0]
    assert math.isfinite(summary["final_loss"])
    final = Path(summary["checkpoint_path"])
    assert final.parent == storage / "complete"
    # FSDP shards: one DCP file per rank, DCP metadata, and the step counter written by rank 0.
    assert sorted(p.name for p in final.iterdir()) == [
        ".metadata",
        "__0_0.distcp",
        "__1_0.distcp",
        "train_state.json",
    ]
    assert json.loads((final / "train_state.json").read_text())["step"] == 12
    assert len([p for p in final.parent.glob("checkpoint_*") if p.is_dir()]) == 2  # --num-to-keep
