"""Signal a CloudFormation wait condition once every HyperPod instance group reaches its count.

The opt-in `hyperpod.wait_for_nodes`: the cluster custom resource completes at InService (Continuous
provisioning), and this poller, run by an EventBridge schedule, holds the stack on a wait condition of up to
12 hours until instances have passed their deep health checks. It signals once, then disables its own rule:
SUCCESS when each group's CurrentCount reaches its TargetCount; FAILURE with the cluster's FailureMessage if
the cluster fails or disappears, or with the failing nodes' messages shortly before the wait would time out.

Input (the rule's target input): `{"clusterName", "signalUrl", "timeoutSeconds", "ruleArn"}`.
"""

from __future__ import annotations

import functools
import json
import sys
import time
import urllib.request
from datetime import datetime
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=20)
# Give up this long before the wait condition's own timeout, so the stack shows why rather than "timed out"
# (two schedule periods: the last chance to signal must come before the deadline).
DEADLINE_MARGIN_SECONDS = 2 * 5 * 60
MAX_REASON = 4000  # keep the signal short; CloudFormation shows the reason in the stack events


@functools.cache
def _sagemaker() -> Any:
    return boto3.client("sagemaker", config=CLIENT_CONFIG)


@functools.cache
def _events() -> Any:
    return boto3.client("events", config=CLIENT_CONFIG)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """One poll: signal and stop, or log progress and wait for the next scheduled run."""
    name = event["clusterName"]
    verdict = _verdict(name, int(event["timeoutSeconds"]))
    _log(name, **verdict)
    if verdict["status"] in ("SUCCESS", "FAILURE"):
        _signal(event["signalUrl"], verdict["status"], verdict["reason"], name)
        _stop(event.get("ruleArn", ""))
    return verdict


def _verdict(name: str, timeout_seconds: int) -> dict[str, Any]:
    try:
        cluster = _sagemaker().describe_cluster(ClusterName=name)
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("ResourceNotFound", "ValidationException"):
            return {"status": "FAILURE", "reason": f"HyperPod cluster {name!r} no longer exists"}
        raise
    status = cluster["ClusterStatus"]
    groups = {
        g["InstanceGroupName"]: (g.get("CurrentCount", 0), g.get("TargetCount", 0))
        for g in cluster.get("InstanceGroups", [])
    }
    progress = ", ".join(f"{group} {current}/{target}" for group, (current, target) in sorted(groups.items()))
    if status == "Failed":
        reason = cluster.get("FailureMessage") or "no FailureMessage given"
        return {"status": "FAILURE", "reason": f"HyperPod cluster {name!r} is Failed: {reason}"}
    if status == "InService" and all(current >= target for current, target in groups.values()):
        return {"status": "SUCCESS", "reason": f"every instance group is at its count: {progress}"}
    if _past_deadline(cluster.get("CreationTime"), timeout_seconds):
        failures = _node_failures(name)
        detail = "; ".join(failures) if failures else "no node reported a failure message"
        return {
            "status": "FAILURE",
            "reason": f"HyperPod cluster {name!r} did not reach its counts in time ({progress}): {detail}",
        }
    return {"status": "WAITING", "reason": f"{status}: {progress}"}


def _past_deadline(created: Any, timeout_seconds: int) -> bool:
    """The wait began after the cluster was created: creation time + timeout errs on the safe side."""
    if not isinstance(created, datetime):
        return False
    return time.time() > created.timestamp() + timeout_seconds - DEADLINE_MARGIN_SECONDS


def _node_failures(name: str) -> list[str]:
    """What each failed or failing node says (ListClusterNodes, then DescribeClusterNode for its message)."""
    messages = []
    for page in _sagemaker().get_paginator("list_cluster_nodes").paginate(ClusterName=name):
        for node in page.get("ClusterNodeSummaries", []):
            status = node.get("InstanceStatus", {})
            if status.get("Status") == "Failure":
                message = status.get("Message") or "no message"
                messages.append(f"{node.get('InstanceGroupName')}/{node.get('InstanceId')}: {message}")
    return messages


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
