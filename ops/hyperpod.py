"""HyperPod cluster state from the SageMaker API: cluster status, instance groups and every node."""

from dataclasses import dataclass
from functools import cache

import boto3
from botocore.config import Config

CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=10, read_timeout=30)


@dataclass(frozen=True)
class GroupState:
    name: str
    instance_type: str
    current: int
    target: int
    status: str


@dataclass(frozen=True)
class NodeState:
    group: str
    instance_id: str
    instance_type: str
    status: str
    message: str


@dataclass(frozen=True)
class ClusterState:
    name: str
    status: str
    failure: str
    groups: list[GroupState]
    nodes: list[NodeState]

    @property
    def ready_fraction(self) -> float:
        target = sum(group.target for group in self.groups)
        return 1.0 if target == 0 else sum(min(g.current, g.target) for g in self.groups) / target


@cache
def sagemaker(region: str):
    return boto3.client("sagemaker", region_name=region, config=CLIENT_CONFIG)


def cluster_state(client, name: str) -> ClusterState:
    cluster = client.describe_cluster(ClusterName=name)
    groups = [
        GroupState(
            name=g["InstanceGroupName"],
            instance_type=g.get("InstanceType", "?"),
            current=g.get("CurrentCount", 0),
            target=g.get("TargetCount", 0),
            status=g.get("Status", "?"),
        )
        for g in cluster.get("InstanceGroups", [])
    ]
    nodes = [
        NodeState(
            group=n["InstanceGroupName"],
            instance_id=n["InstanceId"],
            instance_type=n.get("InstanceType", "?"),
            status=n["InstanceStatus"]["Status"],
            message=n["InstanceStatus"].get("Message", ""),
        )
        for page in client.get_paginator("list_cluster_nodes").paginate(ClusterName=name)
        for n in page["ClusterNodeSummaries"]
    ]
    return ClusterState(
        cluster["ClusterName"], cluster["ClusterStatus"], cluster.get("FailureMessage", ""), groups, nodes
    )
