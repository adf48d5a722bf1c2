"""Custom resource that deletes, on stack deletion, every FSx file system the CSI driver created for this app.

Dynamically provisioned file systems are created by the FSx CSI driver, outside CloudFormation. Deleting the
PVC asks the driver to delete its file system, but asynchronously: if the driver is removed first, the file
system is orphaned. This resource is deleted after the driver (the driver depends on it), finds the file
systems by the tag the StorageClass puts on them, deletes them and waits until they are gone.

Create and Update do nothing. boto3 and the standard library only.
"""

import json
from functools import cache
from typing import Any

import boto3
from botocore.config import Config

TAG_KEY = "TagKey"
TAG_VALUE = "TagValue"
PHYSICAL_ID = "fsx-cleanup"


@cache
def _client() -> Any:
    return boto3.client("fsx", config=Config(retries={"mode": "standard", "max_attempts": 8}))


def _log(**fields: Any) -> None:
    print(json.dumps(fields, sort_keys=True), flush=True)


def _tag(event: dict) -> tuple[str, str]:
    props = event["ResourceProperties"]
    return props[TAG_KEY], props[TAG_VALUE]


def tagged_file_systems(key: str, value: str) -> list[dict]:
    """Every file system (any lifecycle) carrying tag key=value."""
    found = []
    for page in _client().get_paginator("describe_file_systems").paginate():
        for fs in page["FileSystems"]:
            if {"Key": key, "Value": value} in fs.get("Tags", []):
                found.append(fs)
    return found


def delete_remaining(key: str, value: str) -> list[str]:
    """Ask FSx to delete every tagged file system not already deleting; the ids still present."""
    remaining = tagged_file_systems(key, value)
    for fs in remaining:
        # FAILED file systems can be deleted too; DELETING ones are on their way.
        if fs["Lifecycle"] != "DELETING":
            _client().delete_file_system(FileSystemId=fs["FileSystemId"])
            _log(action="delete", file_system=fs["FileSystemId"], lifecycle=fs["Lifecycle"])
    return [fs["FileSystemId"] for fs in remaining]


def on_event(event: dict, context: Any) -> dict:
    if event["RequestType"] == "Delete":
        delete_remaining(*_tag(event))
    return {"PhysicalResourceId": event.get("PhysicalResourceId", PHYSICAL_ID)}


def is_complete(event: dict, context: Any) -> dict:
    if event["RequestType"] != "Delete":
        return {"IsComplete": True}
    # Deleting again catches a file system a late PVC created while the first ones were going.
    remaining = delete_remaining(*_tag(event))
    _log(action="wait", remaining=remaining)
    return {"IsComplete": not remaining}
