"""The post-destroy check: clusters this deployment's stack created that still exist, and HyperPod's logs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from ops import leftovers

REGION, ACCOUNT = "us-east-1", "123456789012"
STACK = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/ray-hyperpod-hyperpod/1f2e3d4c"
OTHER = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/team-b-hyperpod/9a8b7c6d"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Any]]:
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        yield boto3.client("sagemaker", region_name=REGION), boto3.client("logs", region_name=REGION)


def _cluster(sagemaker: Any, name: str, stack_id: str | None) -> None:
    group = {
        "InstanceGroupName": "workers",
        "InstanceType": "ml.g5.8xlarge",
        "InstanceCount": 1,
        "ExecutionRole": f"arn:aws:iam::{ACCOUNT}:role/x",
        "ThreadsPerCore": 1,
        "LifeCycleConfig": {"SourceS3Uri": "s3://sagemaker-x/", "OnCreate": "on_create.sh"},
    }
    tags = [{"Key": leftovers.OWNER_STACK_TAG, "Value": stack_id}] if stack_id else []
    sagemaker.create_cluster(
        ClusterName=name,
        InstanceGroups=[group],
        VpcConfig={"SecurityGroupIds": ["sg-1"], "Subnets": ["subnet-1"]},
        Tags=tags,
    )


def test_only_clusters_tagged_with_this_deployments_stack_are_leftovers(aws: tuple[Any, Any]) -> None:
    sagemaker, _ = aws
    _cluster(sagemaker, "ray-hyperpod", STACK)
    _cluster(sagemaker, "team-b", OTHER)
    _cluster(sagemaker, "untagged", None)
    found = leftovers.leftover_clusters(sagemaker, "ray-hyperpod-hyperpod")
    assert [(c.name, c.stack_id) for c in found] == [("ray-hyperpod", STACK)]
    advice = leftovers.advice(found, REGION)
    assert "aws sagemaker delete-cluster --cluster-name ray-hyperpod --region us-east-1" in advice


def test_no_leftover_once_the_cluster_is_gone(aws: tuple[Any, Any]) -> None:
    sagemaker, _ = aws
    _cluster(sagemaker, "ray-hyperpod", STACK)
    sagemaker.delete_cluster(ClusterName="ray-hyperpod")
    assert leftovers.leftover_clusters(sagemaker, "ray-hyperpod-hyperpod") == []


def test_hyperpod_log_groups_of_the_cluster_are_deleted_and_no_other(aws: tuple[Any, Any]) -> None:
    _, logs = aws
    for name in (
        "/aws/sagemaker/Clusters/ray-hyperpod/abc123",
        "/aws/sagemaker/Clusters/ray-hyperpod/def456",
        "/aws/sagemaker/Clusters/ray-hyperpod-2/abc123",
        "/aws/lambda/other",
    ):
        logs.create_log_group(logGroupName=name)
    deleted = leftovers.delete_cluster_logs(logs, "ray-hyperpod")
    assert sorted(deleted) == [
        "/aws/sagemaker/Clusters/ray-hyperpod/abc123",
        "/aws/sagemaker/Clusters/ray-hyperpod/def456",
    ]
    left = {g["logGroupName"] for g in logs.describe_log_groups()["logGroups"]}
    assert left == {"/aws/sagemaker/Clusters/ray-hyperpod-2/abc123", "/aws/lambda/other"}
