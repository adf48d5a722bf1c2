"""CloudFormation custom resource that runs the CodeBuild project preparing the HyperPod dependency chart, for
the CDK Provider framework.

- Create and Update start a build (`ProjectName`) and return at once; `is_complete` is polled until the
  build ends, so a build longer than one Lambda invocation still finishes. A build that ends without
  SUCCEEDED fails the resource with its failed phases and its log link.
- Delete makes no call: the chart object goes with its bucket.
- The physical id is the chart's S3 URL (`ChartAssetURL`): a new chart (new commit, new build recipe) is a
  new URL, so the Helm release that reads it is updated too, and CloudFormation's Delete of the old id
  costs nothing.

`is_complete` is stateless: the build id travels in the event's `Data`. boto3 and the standard library only.
"""

from __future__ import annotations

import functools
import json
import sys
from typing import Any, Literal, NotRequired, TypedDict

import boto3
from botocore.config import Config
from build_outcome import BuildFailedError, finished

# Standard mode retries throttling and transient errors with backoff; each invocation stays short,
# since the framework polls again anyway.
CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 8}, connect_timeout=10, read_timeout=30)

# Last status logged per build, so a warm container logs transitions, not every poll.
_last_status: dict[str, str] = {}


class Properties(TypedDict):
    """The resource's properties, as the construct sets them (CloudFormation adds ServiceToken)."""

    ServiceToken: str
    ProjectName: str
    ChartAssetURL: str


class BuildData(TypedDict):
    """`on_event`'s Data, which the framework hands to every `is_complete` poll."""

    BuildId: str
    ChartAssetURL: str


class Event(TypedDict):
    """A custom-resource request as the Provider framework passes it on (powertools'
    `CloudFormationCustomResourceEvent`); `is_complete` also gets `on_event`'s `PhysicalResourceId` and
    `Data`."""

    RequestType: Literal["Create", "Update", "Delete"]
    ServiceToken: str
    ResponseURL: str
    StackId: str
    RequestId: str
    LogicalResourceId: str
    ResourceType: str
    ResourceProperties: Properties
    OldResourceProperties: NotRequired[Properties]
    PhysicalResourceId: NotRequired[str]
    Data: NotRequired[BuildData]


@functools.cache
def _client() -> Any:
    """The CodeBuild client, created on first use; tests replace this function with a stubbed client."""
    return boto3.client("codebuild", config=CLIENT_CONFIG)


def on_event(event: Event, context: Any) -> dict[str, Any]:
    """Create and Update start a build; Delete keeps the physical id and makes no call."""
    if event["RequestType"] == "Delete":
        return {"PhysicalResourceId": event["PhysicalResourceId"]}
    props = event["ResourceProperties"]
    build = _client().start_build(projectName=props["ProjectName"])["build"]
    _log("build_started", event, build=build["id"], chart=props["ChartAssetURL"])
    data: BuildData = {"BuildId": build["id"], "ChartAssetURL": props["ChartAssetURL"]}
    return {"PhysicalResourceId": props["ChartAssetURL"], "Data": data}


def is_complete(event: Event, context: Any) -> dict[str, Any]:
    """Done when the build SUCCEEDED; any other final status raises with the reason and the log link."""
    if event["RequestType"] == "Delete":
        return {"IsComplete": True}
    build_id = event["Data"]["BuildId"]
    builds = _client().batch_get_builds(ids=[build_id])["builds"]
    if not builds:
        raise BuildFailedError(f"chart build {build_id} not found: CodeBuild no longer knows it")
    build = builds[0]
    _log_status(event, build_id, build["buildStatus"])
    return {"IsComplete": finished(build)}


def _log_status(event: Event, build_id: str, status: str) -> None:
    previous = _last_status.get(build_id)
    if previous == status:
        return
    _last_status[build_id] = status
    _log("status", event, build=build_id, status=status, previous=previous)


def _log(action: str, event: Event, **fields: Any) -> None:
    """One JSON line per state change: identifiers and statuses only, never the event."""
    record = {
        "action": action,
        "requestType": event.get("RequestType"),
        "requestId": event.get("RequestId"),
        "logicalResourceId": event.get("LogicalResourceId"),
        **{k: v for k, v in fields.items() if v is not None},
    }
    sys.stdout.write(json.dumps(record, default=str) + "\n")
    sys.stdout.flush()
