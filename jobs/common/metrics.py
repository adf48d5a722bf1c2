"""Training throughput as Ray metrics: tokens/s and MFU, next to Ray's own and the GPUs' in Prometheus.

Self-contained (Ray only), so that it can travel with a job's working directory. Ray exports these gauges
through the metrics port of the node the calling worker runs on, prefixed with `ray_`:
`ray_training_tokens_per_second` and `ray_training_mfu`, tagged with the run name and the worker's rank.
"""

from functools import cache

from ray.util.metrics import Gauge

TOKENS_PER_SECOND = "training_tokens_per_second"
MFU = "training_mfu"
TAG_KEYS = ("run", "rank")
# 6 FLOPs per parameter and token: forward (2) and backward (4) of a dense transformer (Kaplan et al. 2020).
FLOPS_PER_PARAMETER_TOKEN = 6


@cache
def _gauges() -> tuple[Gauge, Gauge]:
    # Created once per worker process: a second Gauge of the same name would be a second registration.
    return (
        Gauge(TOKENS_PER_SECOND, description="Tokens this worker trained on per second.", tag_keys=TAG_KEYS),
        Gauge(
            MFU, description="Model FLOPs utilization of the worker's accelerator (0-1).", tag_keys=TAG_KEYS
        ),
    )


def model_flops_utilization(tokens_per_s: float, parameters: int, peak_flops_per_s: float) -> float:
    """The fraction of the accelerator's peak that the model's own FLOPs use (no recomputation counted)."""
    if peak_flops_per_s <= 0:
        raise ValueError("peak_flops_per_s must be positive")
    return tokens_per_s * FLOPS_PER_PARAMETER_TOKEN * parameters / peak_flops_per_s


def report_throughput(tokens_per_s: float, mfu: float, *, run: str, rank: int) -> None:
    """Set this worker's gauges; call it once per logging interval (Ray exports the last value)."""
    tags = {"run": run, "rank": str(rank)}
    tokens, utilization = _gauges()
    tokens.set(tokens_per_s, tags=tags)
    utilization.set(mfu, tags=tags)
