"""Submit jobs/fsdp_ray with the Ray job SDK: arguments from the config, the token from its Secret."""

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from config import AppConfig
from k8s_charts.ray_job import storage_path, train_args

from . import jobs
from .jobs import auth_headers  # noqa: F401 (the submit tests' import)
from .tools import OpsError

JOB_DIR = Path(__file__).resolve().parents[1] / "jobs" / "fsdp_ray"
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


@dataclass(frozen=True)
class Submission:
    run_name: str
    entrypoint: str
    working_dir: Path


def build_submission(config: AppConfig, run_name: str | None, extra_args: Sequence[str] = ()) -> Submission:
    """train.py with one Ray Train worker per GPU of the configured worker pods and the config's run name.

    The run name defaults to `ray.job.name`, so submitting again resumes the same run from its latest
    checkpoint under `<mount>/ray_results/<run name>`. `extra_args` come last: argparse lets them override.
    """
    name = run_name or config.ray.job.name
    args = [
        "python3",
        "train.py",
        *train_args(config, name),
        "--storage-path",
        storage_path(config),
        *extra_args,
    ]
    return Submission(name, shlex.join(args), JOB_DIR)


def submit(address: str, token: str | None, submission: Submission) -> str:
    """Submit and return the job id (Ray uploads the working directory first)."""
    job_client = jobs.client(address, token)
    try:
        return job_client.submit_job(
            entrypoint=submission.entrypoint,
            runtime_env={"working_dir": str(submission.working_dir)},
            metadata={"run_name": submission.run_name},  # `ops jobs` shows it
        )
    except RuntimeError as error:  # a refused token, a bad runtime env: one line
        raise OpsError(f"Ray refused the job: {str(error).strip().splitlines()[-1]}") from None


def follow(address: str, token: str | None, job_id: str, echo: Callable[[str], None]) -> str:
    """Stream the job's logs until it ends; return its final status."""
    return jobs.follow(jobs.client(address, token), job_id, echo)
