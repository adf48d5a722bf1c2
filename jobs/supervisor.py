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

A failed status poll is not a lost head. The dashboard answers 5xx while it reconnects to the GCS, and
DNS or the network blip; polled every 2 s for days, such errors are certain. An attempt counts as lost
only when the job API says the job is gone (404), when the head that answers is another one (its Ray
session, `session_name` of GET /api/version, differs from the one recorded at submit), or when polls kept
failing for `--grace-s`. A head restored from a fault-tolerant GCS keeps its session name; its job manager
then marks the old driver FAILED, or the grace period runs out, and the run is resubmitted either way.

    python3 jobs/supervisor.py --address http://127.0.0.1:8265 --working-dir jobs/fsdp_ray -- \
        python3 train.py --run-name my-run --storage-path /fsx/ray_results

Exit status (the supervisor Job fails at once on 2-5 and replaces the pod on any other):
    0  the run succeeded
    1  an unexpected error (Python's own status): worth another pod
    2  bad arguments
    3  gave up: the run failed --max-attempts times, the head stayed away for --head-wait-s, or the driver
       exited 3 (train.py's failure policy stopped a run that kept failing without progress)
    4  the job API refused a request for good (a 4xx other than 401, 403, 404 or "already exists")
    5  the driver exited 2, a mistake in the job's arguments or data: resubmitting cannot help
    6  the job API refused the token (401/403): after the RayCluster was recreated its Secret holds a new
       token, which a new pod reads, so this one is retried
One JSON line per event goes to stderr (`supervisor: {...}`); after success, at most the last
`--log-tail-lines` lines (and LOG_TAIL_BYTES) of the driver's log go to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shlex
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
SUBMISSION_PREFIX = "supervised-"
EXIT_SUCCEEDED = 0
EXIT_USAGE = 2
EXIT_GAVE_UP = 3
EXIT_REJECTED = 4
EXIT_USER_ERROR = 5
EXIT_UNAUTHORIZED = 6
# The exit statuses that end the supervisor Job without another pod (k8s_charts/ray_supervisor.py).
FINAL_EXIT_CODES = (EXIT_USAGE, EXIT_GAVE_UP, EXIT_REJECTED, EXIT_USER_ERROR)
# train.py's statuses that no resubmission can change, and the supervisor's own status for each: 2 a user's
# mistake found before training starts (its preflight), 3 its failure policy stopped a run that kept
# failing without progress (resubmitting would repeat the crash loop).
DRIVER_FINAL_EXITS = {2: EXIT_USER_ERROR, 3: EXIT_GAVE_UP}
# The supervisor pod has 256 MiB: a days-long driver log must never be read whole.
LOG_TAIL_BYTES = 64 * 1024
HTTP_TIMEOUT_S = 30.0


class RunEndedError(Exception):
    """Ends the supervisor with `code` after one line saying why."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


@dataclass(frozen=True)
class Options:
    address: str
    working_dir: str | None
    entrypoint: list[str]
    max_attempts: int
    head_wait_s: float
    poll_s: float
    grace_s: float = 180.0
    log_tail_lines: int = 200


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
    p.add_argument(
        "--grace-s",
        type=positive(float),
        default=180.0,
        help="how long status polls may keep failing, on the same head, before the attempt counts as lost",
    )
    p.add_argument(
        "--log-tail-lines", type=positive(int), default=200, help="driver log lines printed after success"
    )
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
        grace_s=args.grace_s,
        log_tail_lines=args.log_tail_lines,
    )


def log(event: str, **fields: Any) -> None:
    print(
        "supervisor: " + json.dumps({"event": event, "time": round(time.time(), 3), **fields}),
        file=sys.stderr,
    )


def http_status(error: Exception) -> int | None:
    """The HTTP status behind a job SDK error: it raises RuntimeError("Request failed with status code
    N: ...") for any non-200 answer and AuthenticationError for 401/403; None when nothing answered."""
    if type(error).__name__ == "AuthenticationError":
        return 403 if str(error).startswith("Authentication failed") else 401
    found = re.search(r"status code (\d{3})", str(error))
    return int(found.group(1)) if found else None


def raise_if_permanent(error: Exception, doing: str) -> None:
    """A 4xx that no retry on this pod can change ends the supervisor; 404 and 5xx are the caller's."""
    status = http_status(error)
    if status in (401, 403):
        raise RunEndedError(EXIT_UNAUTHORIZED, f"{doing}: the job API refused the token ({status}): {error}")
    if status is not None and 400 <= status < 500 and status != 404:
        raise RunEndedError(EXIT_REJECTED, f"{doing}: the job API refused it ({status}): {str(error)[:500]}")


def connect(options: Options) -> Any:
    """A job client, once the head answers; waits up to head_wait_s (the head may be restarting)."""
    from ray.job_submission import JobSubmissionClient  # noqa: PLC0415 (import cost only when used)

    deadline = time.monotonic() + options.head_wait_s
    while True:
        try:
            return JobSubmissionClient(options.address)
        except Exception as error:
            raise_if_permanent(error, f"connecting to {options.address}")
            if time.monotonic() > deadline:
                raise RunEndedError(
                    EXIT_GAVE_UP, f"the head at {options.address} did not answer: {error}"
                ) from error
            time.sleep(options.poll_s)


def head_session(client: Any) -> str | None:
    """The head's Ray session name, or None when it does not answer. A head started afresh has a new one.

    The SDK has no public call for it (`get_version` returns only the API version); `_do_request` sends
    the same token and cookies as every other call.
    """
    try:
        response = client._do_request("GET", "/api/version", timeout=HTTP_TIMEOUT_S)
        return str(response.json()["session_name"]) if response.status_code == 200 else None
    except Exception:
        return None


def watch(options: Options, client: Any, submission_id: str, session: str | None) -> Any:
    """Poll until the job is terminal (returns its JobDetails) or lost (returns None).

    A lost attempt is stopped (best effort) before it is replaced: with a restored GCS the old driver may
    still be listed as RUNNING, and two drivers must never train the same run.
    """
    failing_since: float | None = None
    while True:
        try:
            info = client.get_job_info(submission_id)
        except Exception as error:
            if http_status(error) == 404:
                log("lost", submission_id=submission_id, reason="the head no longer knows the job")
                return None
            raise_if_permanent(error, f"polling {submission_id}")
            failing_since = failing_since or time.monotonic()
            if _head_lost(
                options,
                client,
                submission_id=submission_id,
                session=session,
                since=failing_since,
                error=error,
            ):
                with contextlib.suppress(Exception):
                    client.stop_job(submission_id)
                return None
            time.sleep(options.poll_s)
            continue
        failing_since = None
        if _status(info) in TERMINAL:
            return info
        time.sleep(options.poll_s)


def _head_lost(
    options: Options, client: Any, *, submission_id: str, session: str | None, since: float, error: Exception
) -> bool:
    """After a failed poll: True when the head is another one, or polls failed for the grace period."""
    current = head_session(client)
    failing_s = time.monotonic() - since
    log(
        "poll_failed",
        submission_id=submission_id,
        error=str(error)[:200],
        session=current,
        failing_s=round(failing_s, 1),
    )
    if current is not None and session is not None and current != session:
        log("lost", submission_id=submission_id, reason="new head session", session=current, was=session)
        return True
    if failing_s < options.grace_s:
        return False
    log("lost", submission_id=submission_id, reason=f"polls failed for {options.grace_s:g} s")
    connect(options)  # waits for the head to answer again, up to --head-wait-s
    return True


def _status(info: Any) -> str:
    return str(info.status).rpartition(".")[2]


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
        raise_if_permanent(error, "listing jobs")
        log("list_failed", error=str(error)[:200])
        return None
    for submission_id in stop:
        with contextlib.suppress(Exception):
            client.stop_job(submission_id)
        log("stopped_other", submission_id=submission_id)
    return keep


def run(options: Options) -> int:
    try:
        return _run(options)
    except RunEndedError as stop:
        log("stopped", code=stop.code, reason=str(stop)[:2000])
        print(f"supervisor: {stop}", file=sys.stderr)
        return stop.code


def _run(options: Options) -> int:
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
            _submit(options, client, submission_id, runtime_env)
        session = head_session(client)
        log("watching", attempt=attempt, submission_id=submission_id, session=session)
        info = watch(options, client, submission_id, session)
        status = "LOST" if info is None else _status(info)
        log("finished", attempt=attempt, submission_id=submission_id, status=status)
        if status == "SUCCEEDED":
            print(log_tail(options, client, info), end="", flush=True)
            return EXIT_SUCCEEDED
        driver_exit = None if info is None else _driver_exit_code(info)
        if driver_exit in DRIVER_FINAL_EXITS:
            raise RunEndedError(
                DRIVER_FINAL_EXITS[driver_exit],
                f"the run's driver exited {driver_exit}, not resubmitted: {info.message}",
            )
    raise RunEndedError(EXIT_GAVE_UP, f"the run did not succeed in {options.max_attempts} attempts")


def _driver_exit_code(info: Any) -> int | None:
    """The driver's exit status: JobDetails.driver_exit_code, else read from Ray's failure message."""
    code = getattr(info, "driver_exit_code", None)
    if code is not None:
        return int(code)
    found = re.search(r"failed with exit code (-?\d+)", info.message or "")
    return int(found.group(1)) if found else None


def log_tail(options: Options, client: Any, info: Any) -> str:
    """The last lines of the driver's log, read as a stream and cut at LOG_TAIL_BYTES: the job API's own
    logs call returns the whole log in one JSON string, days of every worker's output. The state API's
    log endpoint tails a file on one node: Ray 2.60 refuses a submission id without the driver's node."""
    submission_id = info.submission_id
    try:
        response = client._do_request(
            "GET",
            "/api/v0/logs/file",
            params={
                "node_id": info.driver_node_id,
                "submission_id": submission_id,
                "lines": options.log_tail_lines,
            },
            stream=True,
            timeout=HTTP_TIMEOUT_S,
        )
        with contextlib.closing(response):
            if response.status_code != 200:
                log("log_tail_failed", submission_id=submission_id, status=response.status_code)
                return ""
            data = b""
            for chunk in response.iter_content(chunk_size=8192):
                data = (data + chunk)[-LOG_TAIL_BYTES:]
            return data.decode(errors="replace")
    except Exception as error:
        log("log_tail_failed", submission_id=submission_id, error=str(error)[:200])
        return ""


def _submit(options: Options, client: Any, submission_id: str, runtime_env: dict | None) -> None:
    """Submit, retrying while the head is away (up to --head-wait-s); a permanent refusal ends the run."""
    deadline = time.monotonic() + options.head_wait_s
    while True:
        try:
            client.submit_job(
                entrypoint=shlex.join(options.entrypoint),
                submission_id=submission_id,
                runtime_env=runtime_env,
            )
            log("submitted", submission_id=submission_id)
            return
        except Exception as error:
            if "already exists" in str(error):
                return  # an earlier try reached the head before the connection dropped
            raise_if_permanent(error, f"submitting {submission_id}")
            log("submit_failed", submission_id=submission_id, error=str(error)[:200])
            if time.monotonic() > deadline:
                raise RunEndedError(
                    EXIT_GAVE_UP, f"could not submit for {options.head_wait_s:g} s: {error}"
                ) from error
            time.sleep(options.poll_s)


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
