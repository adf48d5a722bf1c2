"""Keep one training run going across head-node losses: submit it, watch it, resubmit it when it dies.

A job submitted through the Ray job API runs its driver on the head node, so it dies with the head even
when GCS fault tolerance keeps the cluster (and the worker nodes) alive. KubeRay cannot retry it for us:
a RayJob that selects an existing cluster (`clusterSelector`) may not set `backoffLimit` (KubeRay 1.7.0
rejects it), and its submitter only re-attaches to the same, failed submission. This supervisor runs
outside the head (a pod of its own, or any machine that reaches the dashboard), and resubmits the same
entrypoint under a new submission id. The entrypoint must name its run (`--run-name`): train.py then
resumes from the run's latest checkpoint under `--storage-path` instead of starting over.

One supervisor owns a run. A supervisor that starts (again: its pod was replaced, or a deploy changed the
arguments) takes over the live attempts an earlier supervisor submitted for the same run name: it watches
the one with exactly its entrypoint and stops the others, so two drivers never train the same run.

    python3 jobs/supervisor.py --address http://127.0.0.1:8265 --working-dir jobs/fsdp_ray -- \
        python3 train.py --run-name my-run --storage-path /fsx/ray_results

Exit status: 0 when the job succeeded, 1 when it failed `--max-attempts` times, 2 on bad arguments.
One JSON line per event goes to stderr (`supervisor: {...}`); the last attempt's logs go to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
SUBMISSION_PREFIX = "supervised-"


@dataclass(frozen=True)
class Options:
    address: str
    working_dir: str | None
    entrypoint: list[str]
    max_attempts: int
    head_wait_s: float
    poll_s: float


def positive(kind: type) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    return parse


def parse_args(argv: list[str] | None = None) -> Options:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--address", required=True, help="Ray dashboard / job API, e.g. http://127.0.0.1:8265")
    p.add_argument("--working-dir", help="shipped with every submission (runtime_env working_dir)")
    p.add_argument("--max-attempts", type=positive(int), default=10, help="submissions before giving up")
    p.add_argument(
        "--head-wait-s",
        type=positive(float),
        default=900.0,
        help="how long to wait for an unreachable head to come back before giving up",
    )
    p.add_argument("--poll-s", type=positive(float), default=2.0, help="job status poll interval")
    p.add_argument("entrypoint", nargs=argparse.REMAINDER, help="-- python3 train.py --run-name ...")
    args = p.parse_args(argv)
    entrypoint = args.entrypoint[1:] if args.entrypoint[:1] == ["--"] else args.entrypoint
    if not entrypoint:
        p.error("give the job's entrypoint after --")
    if "--run-name" not in entrypoint:
        # Without a fixed run name every attempt would start a fresh, timestamped run from step 0.
        p.error("the entrypoint must pass --run-name, so that a resubmitted attempt resumes the run")
    return Options(
        address=args.address,
        working_dir=args.working_dir,
        entrypoint=entrypoint,
        max_attempts=args.max_attempts,
        head_wait_s=args.head_wait_s,
        poll_s=args.poll_s,
    )


def log(event: str, **fields: Any) -> None:
    print(
        "supervisor: " + json.dumps({"event": event, "time": round(time.time(), 3), **fields}),
        file=sys.stderr,
    )


def connect(options: Options) -> Any:
    """A job client, once the head answers; waits up to head_wait_s (the head may be restarting)."""
    from ray.job_submission import JobSubmissionClient  # noqa: PLC0415 (import cost only when used)

    deadline = time.monotonic() + options.head_wait_s
    while True:
        try:
            return JobSubmissionClient(options.address)
        except Exception as error:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the head at {options.address} did not answer: {error}") from error
            time.sleep(options.poll_s)


def watch(options: Options, client: Any, submission_id: str) -> tuple[Any, str]:
    """Poll until the job is terminal or lost. Returns (client, status); LOST when the head went away.

    A submitted job's driver runs on the head node, so a head that stopped answering took the driver with
    it, even if a GCS restored from Redis still lists the job as RUNNING until it notices the dead node.
    Waiting for that would add minutes; the attempt is stopped (best effort) and counted as lost at once.
    """
    while True:
        try:
            status = str(client.get_job_status(submission_id)).rpartition(".")[2]
        except Exception as error:
            if "does not exist" in str(error) or "404" in str(error):
                return client, "LOST"  # a head without GCS fault tolerance forgot the job
            log("head_unreachable", submission_id=submission_id, error=str(error)[:200])
            client = connect(options)
            with contextlib.suppress(Exception):
                client.stop_job(submission_id)
            return client, "LOST"
        if status in TERMINAL:
            return client, status
        time.sleep(options.poll_s)


def run_name(entrypoint: list[str]) -> str | None:
    """The value of the last --run-name (argparse keeps the last one)."""
    names = [entrypoint[i + 1] for i, arg in enumerate(entrypoint[:-1]) if arg == "--run-name"]
    return names[-1] if names else None


def takeover(jobs: list[Any], entrypoint: list[str]) -> tuple[str | None, list[str]]:
    """Among the cluster's jobs, the live supervised attempt of this run to keep watching (same entrypoint),
    and the live supervised attempts of this run to stop (another entrypoint, or a second copy)."""
    name, keep, stop = run_name(entrypoint), None, []
    for job in jobs:
        submission_id = job.submission_id or ""
        status = str(job.status).rpartition(".")[2]
        if not submission_id.startswith(SUBMISSION_PREFIX) or status in TERMINAL:
            continue
        try:
            theirs = shlex.split(job.entrypoint)
        except ValueError:
            continue
        if run_name(theirs) != name:
            continue
        if keep is None and theirs == entrypoint:
            keep = submission_id
        else:
            stop.append(submission_id)
    return keep, stop


def _take_over(client: Any, options: Options) -> str | None:
    try:
        keep, stop = takeover(client.list_jobs(), options.entrypoint)
    except Exception as error:
        log("list_failed", error=str(error)[:200])
        return None
    for submission_id in stop:
        with contextlib.suppress(Exception):
            client.stop_job(submission_id)
        log("stopped_other", submission_id=submission_id)
    return keep


def run(options: Options) -> int:
    client = connect(options)
    run_tag = uuid.uuid4().hex[:8]
    runtime_env = {"working_dir": options.working_dir} if options.working_dir else None
    adopted = _take_over(client, options)
    for attempt in range(1, options.max_attempts + 1):
        if attempt == 1 and adopted:
            submission_id = adopted
            log("adopted", attempt=attempt, submission_id=submission_id)
        else:
            submission_id = f"{SUBMISSION_PREFIX}{run_tag}-{attempt}"
            client = _submit(options, client, submission_id, runtime_env)
            log("submitted", attempt=attempt, submission_id=submission_id)
        client, status = watch(options, client, submission_id)
        log("finished", attempt=attempt, submission_id=submission_id, status=status)
        if status == "SUCCEEDED":
            print(client.get_job_logs(submission_id), end="", flush=True)
            return 0
    log("gave_up", attempts=options.max_attempts)
    return 1


def _submit(options: Options, client: Any, submission_id: str, runtime_env: dict | None) -> Any:
    """Submit, reconnecting while the head is away; returns the client that made it."""
    while True:
        try:
            client.submit_job(
                entrypoint=shlex.join(options.entrypoint),
                submission_id=submission_id,
                runtime_env=runtime_env,
            )
            return client
        except Exception as error:
            if "already exists" in str(error):
                return client  # an earlier try reached the head before the connection dropped
            log("submit_failed", submission_id=submission_id, error=str(error)[:200])
            time.sleep(options.poll_s)
            client = connect(options)


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
