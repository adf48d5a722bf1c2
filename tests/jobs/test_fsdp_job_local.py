"""The fsdp_ray job driver starting its own local Ray, as `make job-local` runs it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from fsdp_job import job_env, run_train, train_args

pytestmark = pytest.mark.ray


def test_run_to_completion_with_async_checkpoints_and_an_export(tmp_path: Path) -> None:
    storage = tmp_path / "results"
    args = train_args(
        storage, "complete", "--max-steps", "12", "--checkpoint-every", "4", "--num-to-keep", "2",
        "--eval-every", "6", "--log-every-s", "1",
    )  # fmt: skip
    summary = run_train(args, tmp_path / "run.log", job_env())
    log = (tmp_path / "run.log").read_text()

    assert summary["run_name"] == "complete"
    assert summary["steps_completed"] == 12
    assert summary["start_steps"] == [0]
    assert math.isfinite(summary["final_loss"])
    final = Path(summary["checkpoint_path"])
    assert final == storage / "complete" / "checkpoint_00000012"
    # FSDP shards: one DCP file per rank, DCP metadata, and the train state written by rank 0.
    assert sorted(p.name for p in final.iterdir()) == [
        ".metadata",
        "__0_0.distcp",
        "__1_0.distcp",
        "train_state.json",
    ]
    state = json.loads((final / "train_state.json").read_text())
    assert state["step"] == 12
    assert state["scheduler"]["last_epoch"] == 12
    assert len([p for p in final.parent.glob("checkpoint_*") if p.is_dir()]) == 2  # --num-to-keep
    # The job's own log: a stall line per checkpoint (async), evaluation, and the export.
    assert log.count("training stalled") == 3
    assert "(async)" in log
    assert "eval_loss=" in log
    export = Path(summary["export_path"])
    assert export == storage / "complete" / "hf_model"
    assert {"config.json", "model.safetensors"} <= {p.name for p in export.iterdir()}
