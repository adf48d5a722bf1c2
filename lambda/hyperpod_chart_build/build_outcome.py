"""What a CodeBuild build's state means for the resource: pure decisions on `BatchGetBuilds` output."""

from __future__ import annotations

from typing import Any

SUCCEEDED = "SUCCEEDED"
IN_PROGRESS = "IN_PROGRESS"


class BuildFailedError(RuntimeError):
    """The build ended without SUCCEEDED; the message names the failed phase and links the build log."""


def finished(build: dict[str, Any]) -> bool:
    """False while the build runs, True once it SUCCEEDED; any other final status raises BuildFailedError.

    CodeBuild's final statuses besides SUCCEEDED (FAILED, FAULT, TIMED_OUT, STOPPED) all mean no chart.
    """
    status = build["buildStatus"]
    if status == IN_PROGRESS:
        return False
    if status == SUCCEEDED:
        return True
    raise BuildFailedError(failure_message(build))


def failure_message(build: dict[str, Any]) -> str:
    """The build id and status, each unsuccessful phase with its context messages, and the log link."""
    failed = [phase for phase in build.get("phases", []) if phase.get("phaseStatus") not in (None, SUCCEEDED)]
    reason = "; ".join(
        _phase_reason(phase["phaseType"], context.get("message"))
        for phase in failed
        for context in phase.get("contexts") or [{}]
    )
    logs = build.get("logs", {}).get("deepLink", "no log link")
    status = build["buildStatus"]
    return f"chart build {build['id']} ended {status} ({reason or 'no phase detail'}); logs: {logs}"


def _phase_reason(phase_type: str, message: str | None) -> str:
    return f"{phase_type}: {message}" if message else phase_type
