"""Per-step overhead of jobs/fsdp_ray's failure policy, measured in one local Ray run on CPU.

The policy costs a step one thing: rank 0 sends its step to the driver's RunProgress actor (fire and
forget, `failure_policy.py`); decisions happen only after a failure. Inside a Ray task (as rank 0
runs), this times real optimizer steps of a small Llama from `lm_model` with and without that call,
in alternating blocks (ABBA) so drift on a shared machine hits both alike, and reports the ratio
(with / without; 1.0 = free) and the call's own cost in a tight loop.

Usage:  python bench/failure_policy.py   (about a minute on two cores; prints one JSON line last)
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

JOB_DIR = Path(__file__).resolve().parents[1] / "jobs" / "fsdp_ray"
sys.path.insert(0, str(JOB_DIR))


def timed_steps(run_progress: Any, shape: dict[str, int], blocks: int, steps: int) -> dict[str, Any]:
    """Runs in a Ray worker: alternating blocks of `steps` optimizer steps, without and with the call."""
    import lm_data  # noqa: PLC0415
    import lm_model  # noqa: PLC0415
    import torch  # noqa: PLC0415

    torch.set_num_threads(1)
    spec = lm_model.ModelSpec(
        source=None, vocab_size=shape["vocab"], hidden_size=shape["d_model"], n_layers=shape["layers"],
        n_heads=shape["heads"], max_seq_len=shape["seq"],
    )  # fmt: skip
    model = lm_model.create(spec, seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    data = lm_data.SyntheticBatches(shape["batch"], shape["seq"], shape["vocab"], seed=0)
    step = 0

    def block(report: bool) -> float:
        nonlocal step
        t0 = time.perf_counter()
        for _ in range(steps):
            ids = data.batch(step, 0)["input_ids"]
            model(input_ids=ids, labels=ids).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if report:
                run_progress.reached.remote(step)
        return (time.perf_counter() - t0) / steps

    block(False)  # warm-up: first-step allocations
    without, with_call = [], []
    for i in range(blocks):
        # ABBA order: whichever block runs second in a pair gains from the first's warm caches.
        if i % 2:
            with_call.append(block(True))
            without.append(block(False))
        else:
            without.append(block(False))
            with_call.append(block(True))
    t0 = time.perf_counter()
    calls = 2000
    for i in range(calls):
        run_progress.reached.remote(step + i)
    call_s = (time.perf_counter() - t0) / calls
    return {"without_s": without, "with_s": with_call, "call_s": call_s}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--blocks", type=int, default=8, help="alternating block pairs")
    p.add_argument("--steps", type=int, default=25, help="optimizer steps per block")
    args = p.parse_args()
    # A Ray of this run only: its own temp dir and token, never one already running on the machine.
    os.environ.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
                       "RAY_USAGE_STATS_ENABLED": "0"})  # fmt: skip
    os.environ.pop("RAY_ADDRESS", None)
    import failure_policy  # noqa: PLC0415 - the job's own module (sys.path above)
    import ray  # noqa: PLC0415

    # The job's test model (tests/jobs/fsdp_job.TINY): the fastest step, so the largest relative cost.
    shape = {"vocab": 128, "d_model": 32, "layers": 2, "heads": 2, "seq": 16, "batch": 4}
    with tempfile.TemporaryDirectory(prefix="ray-") as temp:
        ray.init(address="local", num_cpus=2, _temp_dir=temp, runtime_env={"working_dir": str(JOB_DIR)})
        try:
            run_progress = failure_policy.RunProgress.remote()
            task = ray.remote(num_cpus=1)(timed_steps)
            out = ray.get(task.remote(run_progress, shape, args.blocks, args.steps))
            reached = ray.get(run_progress.mark.remote()).step
        finally:
            ray.shutdown()
    without, with_call = statistics.median(out["without_s"]), statistics.median(out["with_s"])
    result = {
        "step_ms_without": round(without * 1e3, 3),
        "step_ms_with": round(with_call * 1e3, 3),
        "ratio_with_over_without": round(with_call / without, 4),
        "call_us": round(out["call_s"] * 1e6, 1),
        "call_share_of_step": round(out["call_s"] / without, 5),
        "last_step_seen_by_actor": reached,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
