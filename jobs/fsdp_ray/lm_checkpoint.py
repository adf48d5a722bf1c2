"""Sharded checkpoints with torch.distributed.checkpoint (DCP): one `__<rank>_0.distcp` per rank.

Every rank saves into its own local temp dir and reports it; Ray Train copies all of them into one
`checkpoint_<timestamp>` dir under the run and registers it only after every rank's copy finished, so
`ray.train.get_checkpoint()` never returns a half-written checkpoint. `validate` re-checks completeness
on load as a second line of defence (e.g. a storage path edited by hand).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch.optim import Optimizer

STATE_FILE = "train_state.json"
DCP_METADATA = ".metadata"


class CheckpointError(RuntimeError):
    pass


def save(directory: str, model: nn.Module, optimizer: Optimizer, *, rank: int, state: dict[str, Any]) -> None:
    """Collective: every rank must call it. `state` (step, loss, config) is written by rank 0 only."""
    model_sd, optim_sd = get_state_dict(model, optimizer)
    dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=directory)
    if rank == 0:
        _write_json_atomic(Path(directory) / STATE_FILE, state)


def load(directory: str, model: nn.Module, optimizer: Optimizer, *, expected_model: dict) -> dict[str, Any]:
    """Collective: restores model and optimizer shards in place and returns the saved train state."""
    state = validate(directory)
    if state["model"] != expected_model:
        raise CheckpointError(
            f"checkpoint {directory} was written for model {state['model']}, this run builds "
            f"{expected_model}; use a new --run-name for a different model"
        )
    # get_state_dict gives the sharded (DTensor) layout to load into; DCP reshards if world size changed.
    model_sd, optim_sd = get_state_dict(model, optimizer)
    loaded = {"model": model_sd, "optim": optim_sd}
    dcp.load(loaded, checkpoint_id=directory)
    set_state_dict(model, optimizer, model_state_dict=loaded["model"], optim_state_dict=loaded["optim"])
    return state


def validate(directory: str) -> dict[str, Any]:
    """Returns the train state if the checkpoint holds DCP metadata, the state file and every rank's shard."""
    path = Path(directory)
    missing = [name for name in (DCP_METADATA, STATE_FILE) if not (path / name).is_file()]
    if missing:
        raise CheckpointError(f"incomplete checkpoint {directory}: missing {missing}")
    state = json.loads((path / STATE_FILE).read_text())
    shards = {p.name for p in path.glob("*.distcp")}
    expected = {f"__{r}_0.distcp" for r in range(state["world_size"])}
    if not expected <= shards:
        raise CheckpointError(
            f"incomplete checkpoint {directory}: missing shards {sorted(expected - shards)}"
        )
    return state


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, sort_keys=True))
    os.replace(tmp, path)
