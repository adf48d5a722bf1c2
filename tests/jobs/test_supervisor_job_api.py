"""The supervisor against a real HTTP server standing in for Ray's job API (stdlib http.server on a free
loopback port), driven through Ray's own JobSubmissionClient: blips (a 503 burst, a connection reset)
never stop a run, a new head session does, and each way of ending has its own exit status."""

from __future__ import annotations

import importlib.util
import json
import re
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

SPEC = importlib.util.spec_from_file_location(
    "supervisor", Path(__file__).resolve().parents[2] / "jobs" / "supervisor.py"
)
supervisor = sys.modules.get("supervisor") or importlib.util.module_from_spec(SPEC)
if "supervisor" not in sys.modules:
    sys.modules["supervisor"] = supervisor  # its dataclasses look their module up there
    SPEC.loader.exec_module(supervisor)

ENTRYPOINT = ["python3", "train.py", "--run-name", "fsdp-train"]
# One answer to a status poll: a job status, an HTTP error, a dropped connection, or a new head session.
RUNNING, SUCCEEDED = "RUNNING", "SUCCEEDED"
RESET = "reset"
HEAD_NODE = "a3c1" * 14


@dataclass
class JobApi:
    """What the fake head answers. `polls` is consumed one entry per status poll; then SUCCEEDED."""

    polls: list[Any] = field(default_factory=list)
    session: str = "session_2026-12-03_10-00-00_000001_1"
    submit_answer: int = 200
    failure: dict[str, Any] | None = None  # a terminal FAILED status for every attempt
    down_until: float = 0.0  # every request before this monotonic time is refused with a 503
    log: bytes = b'step 10 loss 1.0\nsummary: {"steps_completed": 10}\n'
    submissions: list[str] = field(default_factory=list)
    stops: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    log_request: dict[str, list[str]] = field(default_factory=dict)

    def status_answer(self) -> Any:
        if self.failure is not None:
            return self.failure
        return self.polls.pop(0) if self.polls else SUCCEEDED


def handler_for(api: JobApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def _send(self, status: int, body: Any, content_type: str = "application/json") -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _reset(self) -> None:
            # SO_LINGER 0: close() sends RST, so the client sees "connection reset by peer".
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()

        def _down(self) -> bool:
            if time.monotonic() < api.down_until:
                self._send(503, b"dashboard unavailable", "text/plain")
                return True
            return False

        def do_GET(self) -> None:
            url = urlparse(self.path)
            if self._down():
                return
            if url.path == "/api/version":
                self._send(
                    200,
                    {"version": "4", "ray_version": "2.60.0", "ray_commit": "x", "session_name": api.session},
                )
            elif url.path == "/api/jobs/":
                self._send(200, [])
            elif url.path == "/api/v0/logs/file":
                api.log_request = parse_qs(url.query)
                self._send(200, api.log, "text/plain")
            elif match := re.fullmatch(r"/api/jobs/([^/]+)", url.path):
                self._job_status(match.group(1))
            else:
                self._send(404, b"not found", "text/plain")

        def _job_status(self, submission_id: str) -> None:
            answer = api.status_answer()
            api.events.append(f"poll:{answer.get('status') if isinstance(answer, dict) else answer}")
            if answer == RESET:
                self._reset()
            elif isinstance(answer, int):
                self._send(answer, f"status {answer}".encode(), "text/plain")
            elif isinstance(answer, tuple):  # ("session", new): the head was replaced and is starting
                api.session = answer[1]
                self._send(503, b"dashboard starting", "text/plain")
            else:
                details = {
                    "type": "SUBMISSION",
                    "entrypoint": " ".join(ENTRYPOINT),
                    "driver_node_id": HEAD_NODE,
                }
                details |= answer if isinstance(answer, dict) else {"status": answer}
                self._send(200, {**details, "submission_id": submission_id})

        def do_POST(self) -> None:
            url = urlparse(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self._down():
                return
            if url.path == "/api/jobs/":
                if api.submit_answer != 200:
                    self._send(api.submit_answer, b"Bad request: runtime_env invalid", "text/plain")
                    return
                submission_id = json.loads(body)["submission_id"]
                api.submissions.append(submission_id)
                api.events.append("submit")
                self._send(200, {"submission_id": submission_id, "job_id": None})
            elif match := re.fullmatch(r"/api/jobs/([^/]+)/stop", url.path):
                api.stops.append(match.group(1))
                api.events.append("stop")
                self._send(200, {"stopped": True})
            else:
                self._send(404, b"not found", "text/plain")

    return Handler


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the reset connection's own flush fails; that is the point


@pytest.fixture
def job_api() -> Iterator[tuple[JobApi, str]]:
    api = JobApi()
    server = QuietServer(("127.0.0.1", 0), handler_for(api))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def options(address: str, **overrides: Any) -> Any:
    base = {
        "address": address,
        "working_dir": None,
        "entrypoint": ENTRYPOINT,
        "max_attempts": 3,
        "head_wait_s": 5.0,
        "poll_s": 0.01,
        "grace_s": 5.0,
        "log_tail_lines": 50,
    }
    return supervisor.Options(**(base | overrides))


def supervise(address: str, **overrides: Any) -> int:
    return supervisor.run(options(address, **overrides))


@pytest.fixture(autouse=True)
def no_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake head has no token authentication; a RAY_AUTH_* from the environment must not leak in."""
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)


def test_blips_never_stop_the_run_and_a_new_head_session_does(
    job_api: tuple[JobApi, str], capsys: pytest.CaptureFixture[str]
) -> None:
    api, address = job_api
    api.polls = [
        RUNNING,
        503,
        503,
        503,
        503,
        503,
        RESET,
        502,
        RUNNING,
        ("session", "session_new_head"),
        RUNNING,
    ]
    assert supervise(address) == supervisor.EXIT_SUCCEEDED
    # Only the new session stopped attempt 1; the 503 burst and the reset before it did not.
    assert len(api.submissions) == 2
    assert api.stops == api.submissions[:1]
    assert api.events.index("stop") == api.events.index("poll:('session', 'session_new_head')") + 1
    assert "summary:" in capsys.readouterr().out


def test_a_refused_token_ends_the_supervisor_with_its_own_code_and_stops_nothing(
    job_api: tuple[JobApi, str], capsys: pytest.CaptureFixture[str]
) -> None:
    api, address = job_api
    api.polls = [RUNNING, 503, 401]
    assert supervise(address) == supervisor.EXIT_UNAUTHORIZED
    assert api.stops == [] and len(api.submissions) == 1
    assert "refused the token (401)" in capsys.readouterr().err


def test_a_bad_request_is_not_retried(
    job_api: tuple[JobApi, str], capsys: pytest.CaptureFixture[str]
) -> None:
    api, address = job_api
    api.submit_answer = 400
    started = time.monotonic()
    assert supervise(address) == supervisor.EXIT_REJECTED
    assert time.monotonic() - started < 5  # not retried until --head-wait-s
    assert "refused it (400)" in capsys.readouterr().err


def test_a_driver_that_rejects_its_input_is_not_resubmitted_and_its_error_is_printed(
    job_api: tuple[JobApi, str], capsys: pytest.CaptureFixture[str]
) -> None:
    api, address = job_api
    error = "train.py: error: --text-field 'text' is not a column of the dataset (columns: sentence, label)"
    api.failure = {
        "status": "FAILED",
        "driver_exit_code": 2,
        "message": f"Job entrypoint command failed with exit code 2, last available logs:\n{error}",
    }
    assert supervise(address) == supervisor.EXIT_USER_ERROR
    assert len(api.submissions) == 1
    assert error in capsys.readouterr().err


def test_a_run_that_keeps_failing_gives_up_with_its_own_code(job_api: tuple[JobApi, str]) -> None:
    api, address = job_api
    api.failure = {"status": "FAILED", "driver_exit_code": 1, "message": "Job entrypoint command failed"}
    assert supervise(address, max_attempts=3) == supervisor.EXIT_GAVE_UP
    assert len(api.submissions) == 3


def test_polls_failing_past_the_grace_period_count_as_a_lost_head(job_api: tuple[JobApi, str]) -> None:
    api, address = job_api
    api.polls = [RUNNING, *[503] * 1000]
    grace = 0.3
    assert supervise(address, grace_s=grace, max_attempts=2) == supervisor.EXIT_GAVE_UP
    assert len(api.stops) == 2 and api.stops == api.submissions  # each attempt stopped before it was replaced


def test_bad_arguments_exit_2() -> None:
    with pytest.raises(SystemExit) as exited:
        supervisor.main(["--address", "http://127.0.0.1:1", "--", "python3", "train.py"])  # no --run-name
    assert exited.value.code == supervisor.EXIT_USAGE


def test_only_a_bounded_tail_of_the_log_is_read_after_success(
    job_api: tuple[JobApi, str], capsys: pytest.CaptureFixture[str]
) -> None:
    api, address = job_api
    api.log = b"x" * (8 * 1024 * 1024) + b"\nlast line\n"  # a server that ignores `lines`
    assert supervise(address) == supervisor.EXIT_SUCCEEDED
    out = capsys.readouterr().out
    assert out.endswith("last line\n")
    assert len(out) <= supervisor.LOG_TAIL_BYTES
    assert api.log_request["lines"] == ["50"] and api.log_request["submission_id"] == api.submissions
    assert api.log_request["node_id"] == [HEAD_NODE]  # Ray 2.60 refuses a submission id alone


def outage_attempts(
    address: str, api: JobApi, *, outage_s: float, scale: float, run: Callable[..., int] | None = None
) -> int:
    """Submissions a run needs when every request fails for `outage_s` (real seconds) mid-run, with the
    supervisor's intervals (poll 2 s, grace 180 s) multiplied by `scale`."""
    api.polls = [RUNNING] * 3

    def outage_begins() -> None:
        api.down_until = time.monotonic() + outage_s * scale
        api.polls = [RUNNING] * 1000  # after the outage, the run goes on for a while, then succeeds
        threading.Timer(outage_s * scale + 1.0, api.polls.clear).start()

    api.polls.append(("hook", outage_begins))
    api.status_answer = _with_hooks(api.status_answer)  # type: ignore[method-assign]
    code = (run or supervise)(address, poll_s=2.0 * scale, grace_s=180.0 * scale, head_wait_s=900.0 * scale)
    assert code == supervisor.EXIT_SUCCEEDED
    return len(api.submissions)


def _with_hooks(answer: Callable[[], Any]) -> Callable[[], Any]:
    def call() -> Any:
        value = answer()
        if isinstance(value, tuple) and value[0] == "hook":
            value[1]()
            return 503
        return value

    return call


def test_a_30_s_job_api_outage_uses_no_attempt(job_api: tuple[JobApi, str]) -> None:
    """Scaled 1/100: poll 20 ms, grace 1.8 s, outage 0.3 s (the ratio outage/grace is what decides)."""
    api, address = job_api
    assert outage_attempts(address, api, outage_s=30, scale=0.01) == 1
    assert api.stops == []


def test_a_driver_whose_failure_policy_stopped_the_run_is_not_resubmitted(
    job_api: tuple[JobApi, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """train.py exits 3 when the same run failed again and again without progress: a new submission would
    start the same crash loop."""
    api, address = job_api
    reason = "run fsdp-train failed 3 times without progress: IndexError: index out of range in self"
    api.failure = {
        "status": "FAILED",
        "driver_exit_code": 3,
        "message": f"failed with exit code 3:\n{reason}",
    }
    assert supervise(address, max_attempts=10) == supervisor.EXIT_GAVE_UP
    assert len(api.submissions) == 1
    assert reason in capsys.readouterr().err
