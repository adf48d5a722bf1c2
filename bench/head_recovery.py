"""Head-node loss: time from killing the Ray head to training resumed, with GCS fault tolerance vs without,
measured in the same run on a real two-node local Ray (tests/jobs/head_loss.py; needs Debian's
redis-server). Without GCS FT the worker node dies with the head and is restarted (as the kubelet would).

Usage:  python bench/head_recovery.py   (about 4 minutes on two cores; prints one JSON line last)
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests" / "jobs"), str(REPO / "jobs" / "fsdp_ray")]
from head_loss import head_loss, redis_server  # noqa: E402 - the tests' harness, on the path above


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "redis").mkdir()
        with redis_server(work / "redis") as password:
            with_ft = head_loss("ft", password, work / "ft")
        without_ft = head_loss("noft", None, work / "noft")
    figures = {
        "with_gcs_ft_s": with_ft["seconds_to_resume"],
        "without_gcs_ft_s": without_ft["seconds_to_resume"],
        "ratio": round(with_ft["seconds_to_resume"] / without_ft["seconds_to_resume"], 2),
        "with_gcs_ft_same_worker": with_ft["same_worker"],
        "without_gcs_ft_worker_restarts": without_ft["worker_restarts"],
        "submissions": [with_ft["submissions"], without_ft["submissions"]],
    }
    print(f"head kill -> training resumed, with GCS FT:    {figures['with_gcs_ft_s']:7.1f} s")
    print(f"head kill -> training resumed, without GCS FT: {figures['without_gcs_ft_s']:7.1f} s")
    print(f"with / without:                                {figures['ratio']:7.2f}x")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
