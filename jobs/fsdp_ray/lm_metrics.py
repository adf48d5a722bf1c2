"""Training throughput as Ray metrics: tokens/s and MFU, next to Ray's own and the GPUs' in Prometheus.

Ray only, no other module of the job: the observability tests ship it alone as a working directory. Ray
exports these gauges
through the metrics port of the node the calling worker runs on, prefixed with `ray_`:
`ray_training_tokens_per_second` and `ray_training_mfu`, tagged with the run name and the worker's rank.
"""

from functools import cache

from ray.util.metrics import Gauge

TOKENS_PER_SECOND = "training_tokens_per_second"
MFU = "training_mfu"
TAG_KEYS = ("run", "rank")


@cache
def _gauges() -> tuple[Gauge, Gauge]:
    # Created once per worker process: a second Gauge of the same name would be a second registration.
    return (
        Gauge(TOKENS_PER_SECOND, description="Tokens this worker trained on per second.", tag_keys=TAG_KEYS),
        Gauge(
            MFU, description="Model FLOPs utilization of the worker's accelerator (0-1).", tag_keys=TAG_KEYS
        ),
    )


def report_throughput(tokens_per_s: float, mfu: float, *, run: str, rank: int) -> None:
    """Set this worker's gauges; call it once per logging interval (Ray exports the last value). The job
    computes MFU itself (lm_loop.Meter, from the model's FLOPs per token); 0 where no peak is known."""
    tags = {"run": run, "rank": str(rank)}
    tokens, utilization = _gauges()
    tokens.set(tokens_per_s, tags=tags)
    utilization.set(mfu, tags=tags)
