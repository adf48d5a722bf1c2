"""Custom resource that runs the CodeBuild project preparing the HyperPod dependency chart, for the CDK
Provider framework.

`on_event` starts a build and returns at once; `is_complete` is polled until the build ends, so a build
longer than one Lambda invocation still finishes. The chart's S3 URL is the physical id: a new chart
(new commit, new build recipe) is a new URL, so the Helm release that reads it is updated too. Delete
makes no call: the chart object goes with its bucket. boto3 and the standard library only.
"""

from __future__ import annotations

import functools
from typing import Any

import boto3
from botocore.config import Config

SUCCEEDED = "SUCCEEDED"
IN_PROGRESS = "IN_PROGRESS"
CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 8}, connect_timeout=10, read_timeout=30)


class BuildFailedError(RuntimeError):
    """The build ended without SUCCEEDED; the message names the failed phase and links the build log."""


@functools.cache
def _client() -> Any:
    """The CodeBuild client, created on first use; tests replace this function with a stubbed client."""
    return boto3.client("codebuild", config=CLIENT_CONFIG)


def on_event(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Create and Update start a build; Delete keeps the physical id and does nothing."""
    if event["RequestType"] == "Delete":
        return {"PhysicalResourceId": event["PhysicalResourceId"]}
    props = event["ResourceProperties"]
    build = _client().start_build(projectName=props["ProjectName"])["build"]
    print(f"started build {build['id']} for {props['ChartAssetURL']}")
    return {
        "PhysicalResourceId": props["ChartAssetURL"],
        "Data": {"BuildId": build["id"], "ChartAssetURL": props["ChartAssetURL"]},
    }


def is_complete(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Done when the build SUCCEEDED; any other final status raises with the reason and the log link."""
    if event["RequestType"] == "Delete":
        return {"IsComplete": True}
    build_id = event["Data"]["BuildId"]
    build = _client().batch_get_builds(ids=[build_id])["builds"][0]
    status = build["buildStatus"]
    if status == IN_PROGRESS:
        return {"IsComplete": False}
    if status == SUCCEEDED:
        return {"IsComplete": True}
    raise BuildFailedError(_failure_message(build))


def _failure_message(build: dict[str, Any]) -> str:
    failed = [phase for phase in build.get("phases", []) if phase.get("phaseStatus") not in (None, SUCCEEDED)]
    reason = "; ".join(
        f"{phase['phaseType']}: {context.get('message', '')}".rstrip(": ")
        for phase in failed
        for context in phase.get("contexts") or [{}]
    )
    logs = build.get("logs", {}).get("deepLink", "no log link")
    status = build["buildStatus"]
    return f"chart build {build['id']} ended {status} ({reason or 'no phase detail'}); logs: {logs}"
