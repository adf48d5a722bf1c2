"""Signal a CloudFormation wait condition once every HyperPod instance group reaches its count.

The opt-in `hyperpod.wait_for_nodes`: the cluster custom resource completes at InService (Continuous
provisioning), and this poller, run by an EventBridge schedule, holds the stack on a wait condition of up to
12 hours until instances have passed their deep health checks. It signals once, then disables its own rule:
SUCCESS when each group has TargetCount nodes Running (ListClusterNodes: CurrentCount also counts nodes still
in deep health checks); FAILURE with the cluster's FailureMessage if the cluster fails or disappears, or with
the failing nodes' messages and the cluster's error events (ListClusterEvents: capacity failures in
Continuous mode show there, not as Failure nodes) shortly before the wait would time out. The deadline counts
from the wait condition's start (DescribeStackResource), not the cluster's creation. A signal URL that answers
403 or 404 (expired, or its wait condition is gone) disables the rule: nothing is left to signal.

Input (the rule's target input): `{"clusterName", "signalUrl", "timeoutSeconds", "ruleArn", "stackId",
"conditionLogicalId"}`.
"""

from __future__ import annotations

import functools
import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=20)
# Give up this long before the wait condition's own timeout, so the stack shows why rather than "timed out"
# (two schedule periods: the last chance to signal must come before the deadline).
DEADLINE_MARGIN_SECONDS = 2 * 5 * 60
MAX_REASON = 4000  # keep the signal short; CloudFormation shows the reason in the stack events
RUNNING = "Running"
GONE_SIGNAL_CODES = (403, 404)  # an expired presigned URL, or a wait condition that no longer exists
MAX_EVENTS = 10  # the latest error events quoted in a failure reason


@functools.cache
def _sagemaker() -> Any:
    return boto3.client("sagemaker", config=CLIENT_CONFIG)


@functools.cache
def _events() -> Any:
    return boto3.client("events", config=CLIENT_CONFIG)


@functools.cache
def _cloudformation() -> Any:
    return boto3.client("cloudformation", config=CLIENT_CONFIG)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """One poll: signal and stop, or log progress and wait for the next scheduled run."""
    name = event["clusterName"]
    started = _wait_started(event)
    verdict = _verdict(name, started + int(event["timeoutSeconds"]) - DEADLINE_MARGIN_SECONDS)
    _log(name, **verdict)
    if verdict["status"] in ("SUCCESS", "FAILURE"):
        try:
            _signal(event["signalUrl"], verdict["status"], verdict["reason"], name)
        except urllib.error.HTTPError as err:
            if err.code not in GONE_SIGNAL_CODES:
                raise
            verdict = {"status": "GONE", "reason": f"the signal URL answered {err.code}: nothing to signal"}
            _log(name, **verdict)
        _stop(event.get("ruleArn", ""))
    return verdict


def _wait_started(event: dict[str, Any]) -> float:
    """When the wait condition began waiting: its last status change (CREATE_IN_PROGRESS) as CloudFormation
    records it. Without the stack's answer, now: a deadline can only be late, never before the wait began."""
    try:
        detail = _cloudformation().describe_stack_resource(
            StackName=event["stackId"], LogicalResourceId=event["conditionLogicalId"]
        )["StackResourceDetail"]
    except (KeyError, ClientError) as err:
        _log(event["clusterName"], action="wait_start_unknown", error=str(err))
        return time.time()
    return float(detail["LastUpdatedTimestamp"].timestamp())


def _verdict(name: str, deadline: float) -> dict[str, Any]:
    try:
        cluster = _sagemaker().describe_cluster(ClusterName=name)
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("ResourceNotFound", "ValidationException"):
            return {"status": "FAILURE", "reason": f"HyperPod cluster {name!r} no longer exists"}
        raise
    status = cluster["ClusterStatus"]
    if status == "Failed":
        reason = cluster.get("FailureMessage") or "no FailureMessage given"
        return {"status": "FAILURE", "reason": f"HyperPod cluster {name!r} is Failed: {reason}"}
    nodes = _nodes(name) if status == "InService" else []
    running = {}
    for node in nodes:
        if node.get("InstanceStatus", {}).get("Status") == RUNNING:
            running[node.get("InstanceGroupName")] = running.get(node.get("InstanceGroupName"), 0) + 1
    groups = {
        g["InstanceGroupName"]: (running.get(g["InstanceGroupName"], 0), g.get("TargetCount", 0))
        for g in cluster.get("InstanceGroups", [])
    }
    progress = ", ".join(f"{group} {current}/{target}" for group, (current, target) in sorted(groups.items()))
    if status == "InService" and all(current >= target for current, target in groups.values()):
        return {"status": "SUCCESS", "reason": f"every instance group has its count Running: {progress}"}
    if time.time() > deadline:
        failures = _node_failures(nodes) + _error_events(name)
        detail = "; ".join(failures) if failures else "no node or event reported a failure"
        return {
            "status": "FAILURE",
            "reason": f"HyperPod cluster {name!r} did not reach its counts in time ({progress}): {detail}",
        }
    return {"status": "WAITING", "reason": f"{status}: {progress}"}


def _nodes(name: str) -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = []
    for page in _sagemaker().get_paginator("list_cluster_nodes").paginate(ClusterName=name):
        nodes += page.get("ClusterNodeSummaries", [])
    return nodes


def _node_failures(nodes: list[dict[str, Any]]) -> list[str]:
    """What each failed node says."""
    messages = []
    for node in nodes:
        status = node.get("InstanceStatus", {})
        if status.get("Status") == "Failure":
            message = status.get("Message") or "no message"
            messages.append(f"{node.get('InstanceGroupName')}/{node.get('InstanceId')}: {message}")
    return messages


def _error_events(name: str) -> list[str]:
    """The latest error events of the cluster (capacity failures in Continuous mode are reported here)."""
    try:
        events = (
            _sagemaker()
            .list_cluster_events(ClusterName=name, SortBy="EventTime", SortOrder="Descending", MaxResults=100)
            .get("Events", [])
        )
    except ClientError as err:  # the reason still carries the nodes' messages
        return [f"ListClusterEvents failed: {err}"]
    errors = [e for e in events if e.get("EventLevel") == "Error"][:MAX_EVENTS]
    return [f"event {e.get('InstanceGroupName') or 'cluster'}: {e.get('Description', '')}" for e in errors]


def _signal(url: str, status: str, reason: str, unique_id: str) -> None:
    """PUT the signal to the presigned S3 URL (an empty Content-Type, as the URL was signed with)."""
    body = json.dumps(
        {"Status": status, "Reason": reason[:MAX_REASON], "UniqueId": unique_id, "Data": status}
    )
    request = urllib.request.Request(url, data=body.encode(), method="PUT", headers={"Content-Type": ""})
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


def _stop(rule_arn: str) -> None:
    """Disable this poller's own rule: the wait condition takes one signal; more polls only cost calls."""
    if not rule_arn:
        return
    try:
        _events().disable_rule(Name=rule_arn.rsplit("/", 1)[-1])
    except ClientError as err:  # the next run signals again (harmless) and retries the disable
        _log("", action="disable_failed", error=str(err))


def _log(name: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"cluster": name, **fields}, default=str) + "\n")
    sys.stdout.flush()
