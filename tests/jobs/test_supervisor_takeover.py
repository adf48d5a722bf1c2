"""A supervisor that starts again (pod replaced, arguments changed by a deploy) takes over the earlier
supervisor's live attempts of the same run: the job list is Ray's own JobDetails, no cluster needed."""

import importlib.util
import shlex
import sys
from pathlib import Path

from ray.job_submission import JobDetails, JobStatus, JobType

SPEC = importlib.util.spec_from_file_location(
    "supervisor", Path(__file__).resolve().parents[2] / "jobs" / "supervisor.py"
)
supervisor = importlib.util.module_from_spec(SPEC)
sys.modules.setdefault("supervisor", supervisor)  # its dataclasses look their module up there
SPEC.loader.exec_module(supervisor)

OURS = ["python3", "train.py", "--run-name", "fsdp-train", "--max-steps", "1000"]


def job(submission_id: str, entrypoint: list[str], status: JobStatus = JobStatus.RUNNING) -> JobDetails:
    return JobDetails(
        type=JobType.SUBMISSION, entrypoint=shlex.join(entrypoint), status=status, submission_id=submission_id
    )


def test_a_restarted_supervisor_keeps_watching_its_live_attempt():
    jobs = [
        job("supervised-aaaa-1", OURS, JobStatus.FAILED),  # lost with an earlier head
        job("supervised-aaaa-2", OURS),
    ]
    assert supervisor.takeover(jobs, OURS) == ("supervised-aaaa-2", [])


def test_attempts_of_the_run_with_other_arguments_are_stopped():
    changed = [*OURS[:-1], "2000"]
    jobs = [job("supervised-aaaa-3", OURS), job("supervised-bbbb-1", OURS, JobStatus.PENDING)]
    assert supervisor.takeover(jobs, changed) == (None, ["supervised-aaaa-3", "supervised-bbbb-1"])
    # A second live copy of the same entrypoint is stopped too: one driver per run.
    assert supervisor.takeover(jobs, OURS) == ("supervised-aaaa-3", ["supervised-bbbb-1"])


def test_other_runs_and_jobs_not_submitted_by_a_supervisor_are_left_alone():
    other_run = ["python3", "train.py", "--run-name", "other"]
    jobs = [
        job("supervised-cccc-1", other_run),
        job("raysubmit_123", OURS),  # a person's own submission
        job("supervised-dddd-1", OURS, JobStatus.SUCCEEDED),
    ]
    assert supervisor.takeover(jobs, OURS) == (None, [])


def test_the_last_run_name_counts_as_argparse_reads_it():
    assert supervisor.run_name(["train.py", "--run-name", "a", "--run-name", "b"]) == "b"
    assert supervisor.run_name(["train.py", "--run-name"]) is None
