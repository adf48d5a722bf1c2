"""CloudFormation custom resource for a SageMaker HyperPod cluster, for the CDK Provider framework.

`on_event` starts the change and returns at once; `is_complete` is polled by the framework until
the cluster is InService (create, update) or gone (delete). Both are stateless: everything they
need is in the event and in `describe_cluster`, so any poll can run in a fresh Lambda container.
"""

from __future__ import annotations

import functools
import json
import re
import sys
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from cfn_coerce import ConfigError, coerce_request
from cluster_diff import (
    CreateOnlyChangeError,
    create_only_changes,
    describe_create_only,
    tag_changes,
    update_request,
)

PROPERTY = "ClusterConfig"
IGNORED_PROPERTIES = {"ServiceToken"}
CLUSTER_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
READY = "InService"
DELETING = "Deleting"
FAILED = {"Failed", "RollingBack"}
# Standard mode retries throttling and transient errors with backoff; each invocation stays short,
# since the framework polls again anyway.
CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 8}, connect_timeout=10, read_timeout=30)

# Last status logged per (request, cluster), so a warm container logs transitions, not every poll.
_last_status: dict[tuple[str, str], str] = {}


class ClusterFailedError(RuntimeError):
    """The cluster reached Failed or RollingBack; the message carries its FailureMessage."""


@functools.cache
def _client() -> Any:
    """The SageMaker client, created on first use; tests replace this function with a stub."""
    return boto3.client("sagemaker", config=CLIENT_CONFIG)


def on_event(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Start a Create, Update or Delete; `is_complete` waits for it."""
    handlers = {"Create": _create, "Update": _update, "Delete": _delete}
    return handlers[event["RequestType"]](event)


def is_complete(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Report whether the cluster reached the state the request asked for."""
    name = event["PhysicalResourceId"]
    if event["RequestType"] == "Delete":
        return _deleted(event, name)
    cluster = _client().describe_cluster(ClusterName=name)
    status = cluster["ClusterStatus"]
    _log_status(event, name, status)
    if status in FAILED:
        reason = cluster.get("FailureMessage") or "no FailureMessage given"
        raise ClusterFailedError(f"HyperPod cluster {name!r} is {status}: {reason}")
    if status != READY or not _converged(cluster, _config(event["ResourceProperties"])):
        return {"IsComplete": False}
    data = {"ClusterArn": cluster["ClusterArn"], "ClusterName": name, "ClusterStatus": status}
    return {"IsComplete": True, "Data": data}


def _converged(cluster: dict[str, Any], config: dict[str, Any]) -> bool:
    """True once the described groups match the requested ones.

    The framework calls is_complete right after on_event: an accepted UpdateCluster may still show
    InService for a moment, so status alone could report an update done before it started.
    """
    described = {g["InstanceGroupName"]: g for g in cluster.get("InstanceGroups", [])}
    wanted = {g["InstanceGroupName"]: g["InstanceCount"] for g in config.get("InstanceGroups", [])}
    if set(described) != set(wanted):
        return False
    return all(described[n].get("TargetCount", count) == count for n, count in wanted.items())


def _create(event: dict[str, Any]) -> dict[str, Any]:
    config = _config(event["ResourceProperties"])
    name = config["ClusterName"]
    try:
        _client().create_cluster(**config)
    except ClientError as err:
        if _code(err) == "ResourceInUse":
            raise RuntimeError(
                f"HyperPod cluster {name!r} already exists and is not managed by this resource: "
                "choose another ClusterName, or delete that cluster first"
            ) from err
        raise
    _log("create_requested", event, name)
    return {"PhysicalResourceId": name}


def _update(event: dict[str, Any]) -> dict[str, Any]:
    new = _config(event["ResourceProperties"])
    old = _config(event["OldResourceProperties"])
    name = event["PhysicalResourceId"]
    if new["ClusterName"] != name:
        # Replacement: CloudFormation deletes the old cluster once this one is InService.
        _log("replace", event, name, newCluster=new["ClusterName"])
        return _create(event)
    paths = create_only_changes(old, new)
    if paths:
        raise CreateOnlyChangeError(describe_create_only(old, new, paths))
    update_members = set(_operation_shape("UpdateCluster").members)
    request, unset = update_request(old, new, update_members)
    if request:
        _call_update(name, request)
    _retag(name, old, new)
    _log("update_requested", event, name, updated=sorted(request or {}), unchanged=unset)
    return {"PhysicalResourceId": name}


def _delete(event: dict[str, Any]) -> dict[str, Any]:
    name = event["PhysicalResourceId"]
    if _is_cluster_name(name):
        _request_delete(event, name)
    else:
        _log("delete_skipped", event, name, reason="physical id is not a cluster name")
    return {"PhysicalResourceId": name}


def _deleted(event: dict[str, Any], name: str) -> dict[str, Any]:
    """Done once describe_cluster no longer finds the cluster; re-issue the delete if it never started."""
    if not _is_cluster_name(name):
        return {"IsComplete": True}
    try:
        cluster = _client().describe_cluster(ClusterName=name)
    except ClientError as err:
        if not _not_found(err):
            raise
        _log_status(event, name, "Deleted")
        return {"IsComplete": True}
    status = cluster["ClusterStatus"]
    _log_status(event, name, status, failureMessage=cluster.get("FailureMessage"))
    if status != DELETING:
        # A busy cluster refused the delete (ConflictException), or a delete failed: try again.
        _request_delete(event, name)
    return {"IsComplete": False}


def _request_delete(event: dict[str, Any], name: str) -> None:
    try:
        _client().delete_cluster(ClusterName=name)
    except ClientError as err:
        if _not_found(err):
            _log("delete_not_found", event, name)
            return
        if _code(err) == "ConflictException":
            # Creating/Updating/SystemUpdating: the next is_complete poll asks again.
            _log("delete_deferred", event, name, reason=_message(err))
            return
        raise
    _log("delete_requested", event, name)


def _call_update(name: str, request: dict[str, Any]) -> None:
    try:
        _client().update_cluster(**request)
    except ClientError as err:
        if _code(err) == "ConflictException":
            raise RuntimeError(
                f"HyperPod cluster {name!r} cannot be updated now ({_message(err)}); "
                "deploy again once it is InService"
            ) from err
        raise


def _retag(name: str, old: dict[str, Any], new: dict[str, Any]) -> None:
    to_add, to_delete = tag_changes(old, new)
    if not (to_add or to_delete):
        return
    arn = _client().describe_cluster(ClusterName=name)["ClusterArn"]
    if to_add:
        _client().add_tags(ResourceArn=arn, Tags=to_add)
    if to_delete:
        _client().delete_tags(ResourceArn=arn, TagKeys=to_delete)


def _config(properties: dict[str, Any]) -> dict[str, Any]:
    """The CreateCluster request from the resource properties, with its types restored."""
    unknown = sorted(set(properties) - {PROPERTY, *IGNORED_PROPERTIES})
    if unknown:
        raise ConfigError(f"unknown resource properties {unknown}; only {PROPERTY} is accepted")
    if PROPERTY not in properties:
        raise ConfigError(f"missing resource property {PROPERTY}")
    return coerce_request(properties[PROPERTY], _operation_shape("CreateCluster"), PROPERTY)


def _operation_shape(operation: str) -> Any:
    return _client().meta.service_model.operation_model(operation).input_shape


def _is_cluster_name(name: str) -> bool:
    """False for ids that were never a cluster, e.g. the framework's failed-create marker."""
    return bool(CLUSTER_NAME.fullmatch(name or ""))


def _not_found(err: ClientError) -> bool:
    # The model declares ResourceNotFound; moto (and older endpoints) answer ValidationException
    # "Could not find cluster ...". Accept both rather than leave a stack stuck on delete.
    code, message = _code(err), _message(err).lower()
    if code in ("ResourceNotFound", "ResourceNotFoundException"):
        return True
    return code == "ValidationException" and any(
        text in message for text in ("not found", "could not find", "does not exist")
    )


def _code(err: ClientError) -> str:
    return err.response.get("Error", {}).get("Code", "")


def _message(err: ClientError) -> str:
    return err.response.get("Error", {}).get("Message", "")


def _log_status(event: dict[str, Any], name: str, status: str, **fields: Any) -> None:
    key = (event.get("RequestId", ""), name)
    previous = _last_status.get(key)
    if previous == status:
        return
    _last_status[key] = status
    _log("status", event, name, status=status, previous=previous, **fields)


def _log(action: str, event: dict[str, Any], name: str, **fields: Any) -> None:
    """One JSON line per state change: identifiers and statuses only, never the event or config."""
    record = {
        "action": action,
        "requestType": event.get("RequestType"),
        "requestId": event.get("RequestId"),
        "logicalResourceId": event.get("LogicalResourceId"),
        "cluster": name,
        **{k: v for k, v in fields.items() if v is not None},
    }
    sys.stdout.write(json.dumps(record, default=str) + "\n")
    sys.stdout.flush()
