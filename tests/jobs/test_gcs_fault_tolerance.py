"""Head-node loss mid-training, on a real two-node Ray with GCS fault tolerance (Debian's redis-server).

The head's processes are SIGKILLed once a checkpoint is registered and the head is started again on the
same Redis (tests/jobs/head_loss.py): the worker node survives (same raylet process, same node id, alive in
the new GCS) and training resumes from its last checkpoint with nobody acting. The same loss without GCS
fault tolerance, and the time each takes to resume, is bench/head_recovery.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from head_loss import MAX_STEPS, head_loss, redis_server

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def redis_password(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Missing redis-server is a failure, never a skip."""
    try:
        with redis_server(tmp_path_factory.mktemp("redis")) as password:
            yield password
    except RuntimeError as error:
        pytest.fail(str(error))


def test_training_survives_a_head_loss_with_gcs_fault_tolerance(redis_password: str, tmp_path: Path) -> None:
    result = head_loss("ft", redis_password, tmp_path / "ft")
    print(f"\nhead kill -> training resumed with GCS FT: {result['seconds_to_resume']} s")
    # The worker node lived through the head's loss; nobody restarted it.
    assert result["same_worker"] and result["node_alive"], result
    assert result["worker_restarts"] == 0
    summary = result["summary"]
    assert summary["steps_completed"] == MAX_STEPS, result
    # Resumed, not restarted: the new attempt began at a checkpoint no older than the registered one.
    assert summary["start_steps"] and summary["start_steps"][0] >= result["checkpoint"] > 0, result
    assert result["resumed"]["start_step"] >= result["checkpoint"], result
    assert result["submissions"] >= 2, result  # the supervisor, not a person, resubmitted
