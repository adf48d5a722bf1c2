"""Ray jobs on the deployed cluster, through the dashboard's job API (the tunnel `ops` opens): list them,
read or follow one's logs (re-attaching to a running job), stop one."""

import asyncio
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass

from .tools import OpsError


def auth_headers(token: str | None) -> dict[str, str]:
    """Ray's HTTP token auth: the dashboard and job API accept `Authorization: Bearer <token>`."""
    return {"Authorization": f"Bearer {token}"} if token else {}


@dataclass(frozen=True)
class JobRow:
    job_id: str
    state: str
    run_name: str
    started: str  # local time, "-" before it starts
    duration: str  # "-" before it starts; up to now while it runs


def client(address: str, token: str | None):
    from ray.exceptions import RayError  # noqa: PLC0415 (heavy; only the job commands need Ray)
    from ray.job_submission import JobSubmissionClient  # noqa: PLC0415

    try:
        return JobSubmissionClient(address, headers=auth_headers(token))
    except (ConnectionError, RuntimeError, RayError) as error:  # a refused token, a silent dashboard
        raise OpsError(f"Ray job API at {address}: {error}".splitlines()[0]) from None


def run_name(entrypoint: str, metadata: dict[str, str] | None) -> str:
    """The training run a job writes to: `ops submit` records it; else train.py's --run-name argument."""
    if metadata and metadata.get("run_name"):
        return metadata["run_name"]
    args = shlex.split(entrypoint or "")
    return args[args.index("--run-name") + 1] if "--run-name" in args[:-1] else "-"


def rows(jobs: list, now_ms: float | None = None) -> list[JobRow]:
    """Newest first, as `ray job list` gives JobDetails (times in milliseconds since the epoch)."""
    now_ms = now_ms if now_ms is not None else time.time() * 1000
    found = []
    for job in sorted(jobs, key=lambda j: j.start_time or 0, reverse=True):
        start, end = job.start_time, job.end_time or (None if not job.start_time else now_ms)
        found.append(
            JobRow(
                job_id=job.submission_id or job.job_id or "-",
                state=str(job.status.value if hasattr(job.status, "value") else job.status),
                run_name=run_name(job.entrypoint, job.metadata),
                started=time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(start / 1000)) if start else "-",
                duration=_duration((end - start) / 1000) if start and end else "-",
            )
        )
    return found


def _duration(seconds: float) -> str:
    minutes, second = divmod(int(seconds), 60)
    hours, minute = divmod(minutes, 60)
    return f"{hours}h{minute:02d}m{second:02d}s" if hours else f"{minute}m{second:02d}s"


def latest_running(jobs: list[JobRow]) -> str:
    running = [job.job_id for job in jobs if job.state in ("RUNNING", "PENDING")]
    if not running:
        raise OpsError("no running job: name one (`ops jobs` lists them)")
    return running[0]


def follow(job_client, job_id: str, echo: Callable[[str], None]) -> str:
    """Stream a job's logs from its start until it ends (re-attaching to a running one); its final state."""

    async def tail() -> None:
        async for lines in job_client.tail_job_logs(job_id):
            echo(lines)

    asyncio.run(tail())
    return str(job_client.get_job_status(job_id).value)
