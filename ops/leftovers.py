"""After `cdk destroy`: HyperPod clusters this deployment's stack created that still exist, and the cluster
log groups HyperPod leaves behind.

The cluster custom resource tags every cluster with the stack id that created it
(`ray-on-hyperpod:cfn-stack-id`, lambda/hyperpod_cluster/index.py). A cluster whose tag names this
deployment's HyperPod stack and that still exists after the stack is gone is a leftover: it bills until
deleted. HyperPod writes `/aws/sagemaker/Clusters/<name>/<id>` itself; no stack owns that log group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

OWNER_STACK_TAG = "ray-on-hyperpod:cfn-stack-id"  # index.OWNER_STACK_TAG
CLUSTER_LOG_PREFIX = "/aws/sagemaker/Clusters/"


@dataclass(frozen=True)
class Leftover:
    name: str
    status: str
    stack_id: str


def leftover_clusters(sagemaker: Any, stack_name: str) -> list[Leftover]:
    """Clusters whose owner tag names a stack called `stack_name` (any of its ids: each deploy after a
    delete gets a new one)."""
    found = []
    for page in sagemaker.get_paginator("list_clusters").paginate():
        for summary in page.get("ClusterSummaries", []):
            tags = {t["Key"]: t.get("Value", "") for t in _tags(sagemaker, summary["ClusterArn"])}
            stack_id = tags.get(OWNER_STACK_TAG, "")
            if f":stack/{stack_name}/" in stack_id:
                found.append(Leftover(summary["ClusterName"], summary["ClusterStatus"], stack_id))
    return found


def delete_cluster_logs(logs: Any, cluster_name: str) -> list[str]:
    """Delete HyperPod's log groups of `cluster_name` (one per cluster id it ever had); their names."""
    prefix = f"{CLUSTER_LOG_PREFIX}{cluster_name}/"
    names = [
        group["logGroupName"]
        for page in logs.get_paginator("describe_log_groups").paginate(logGroupNamePrefix=prefix)
        for group in page.get("logGroups", [])
    ]
    for name in names:
        logs.delete_log_group(logGroupName=name)
    return names


def advice(leftovers: list[Leftover], region: str) -> str:
    """What to run for each leftover cluster."""
    return "\n".join(
        f"HyperPod cluster {c.name!r} ({c.status}) is left from stack {c.stack_id} and keeps billing: "
        f"aws sagemaker delete-cluster --cluster-name {c.name} --region {region}"
        for c in leftovers
    )


def _tags(sagemaker: Any, arn: str) -> list[dict[str, str]]:
    tags: list[dict[str, str]] = []
    for page in sagemaker.get_paginator("list_tags").paginate(ResourceArn=arn):
        tags += page.get("Tags", [])
    return tags
