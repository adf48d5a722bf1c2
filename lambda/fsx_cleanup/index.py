"""CloudFormation custom resource that deletes this app's CSI-created FSx file systems, for the CDK Provider
framework.

Dynamically provisioned file systems are created by the FSx CSI driver, outside CloudFormation. Deleting the
PVC asks the driver to delete its file system, but asynchronously: if the driver is removed first, the file
system is orphaned. This resource is deleted after the driver (the driver depends on it).

- Create and Update make no call.
- Delete finds the file systems by the tag the StorageClass puts on them (`TagKey`=`TagValue`) and asks FSx
  to delete each one not already deleting; `is_complete` asks again on every poll (a late PVC may have
  created one meanwhile) and is done when none is left.
- The physical id is the fixed `fsx-cleanup`: the resource owns no single AWS object.

Both entry points are stateless: each poll lists the tagged file systems afresh. boto3 and the standard
library only.
"""

from __future__ import annotations

import functools
import json
import sys
from typing import Any, Literal, NotRequired, TypedDict

import boto3
from botocore.config import Config
from fsx_selection import tagged, to_delete

PHYSICAL_ID = "fsx-cleanup"
# Standard mode retries throttling and transient errors with backoff; each invocation stays short,
# since the framework polls again anyway.
CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 8}, connect_timeout=10, read_timeout=30)

# Ids logged as remaining per request, so a warm container logs changes, not every poll.
_last_remaining: dict[str, list[str]] = {}


class Properties(TypedDict):
    """The resource's properties, as the construct sets them (CloudFormation adds ServiceToken)."""

    ServiceToken: str
    TagKey: str
    TagValue: str


class Event(TypedDict):
    """A custom-resource request as the Provider framework passes it on (powertools'
    `CloudFormationCustomResourceEvent`); `is_complete` also gets `on_event`'s `PhysicalResourceId`."""

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


@functools.cache
def _client() -> Any:
    """The FSx client, created on first use; tests replace this function with a stubbed client."""
    return boto3.client("fsx", config=CLIENT_CONFIG)


def on_event(event: Event, context: Any) -> dict[str, Any]:
    """Delete asks FSx to delete every tagged file system; Create and Update make no call."""
    if event["RequestType"] == "Delete":
        _delete_remaining(event)
    return {"PhysicalResourceId": event.get("PhysicalResourceId", PHYSICAL_ID)}


def is_complete(event: Event, context: Any) -> dict[str, Any]:
    """Done once no tagged file system is left; Create and Update are done at once."""
    if event["RequestType"] != "Delete":
        return {"IsComplete": True}
    # Deleting again catches a file system a late PVC created while the first ones were going.
    remaining = _delete_remaining(event)
    if _last_remaining.get(event["RequestId"]) != remaining:
        _last_remaining[event["RequestId"]] = remaining
        _log("waiting" if remaining else "deleted", event, remaining=remaining)
    return {"IsComplete": not remaining}


def _delete_remaining(event: Event) -> list[str]:
    """Ask FSx to delete every tagged file system not already deleting; the ids still present."""
    props = event["ResourceProperties"]
    remaining = tagged(_file_systems(), props["TagKey"], props["TagValue"])
    for fs in to_delete(remaining):
        _client().delete_file_system(FileSystemId=fs["FileSystemId"])
        _log("delete_requested", event, fileSystem=fs["FileSystemId"], lifecycle=fs["Lifecycle"])
    return [fs["FileSystemId"] for fs in remaining]


def _file_systems() -> list[dict[str, Any]]:
    """Every file system in the account and region, in any lifecycle."""
    pages = _client().get_paginator("describe_file_systems").paginate()
    return [fs for page in pages for fs in page["FileSystems"]]


def _log(action: str, event: Event, **fields: Any) -> None:
    """One JSON line per state change: identifiers and lifecycles only, never the event."""
    record = {
        "action": action,
        "requestType": event.get("RequestType"),
        "requestId": event.get("RequestId"),
        "logicalResourceId": event.get("LogicalResourceId"),
        **fields,
    }
    sys.stdout.write(json.dumps(record, default=str) + "\n")
    sys.stdout.flush()
