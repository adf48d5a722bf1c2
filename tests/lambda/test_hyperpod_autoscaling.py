"""Turning HyperPod's managed Karpenter on and off on an existing cluster, through the real handler with a
Stubber that checks every request against botocore's SageMaker model."""

from __future__ import annotations

import copy
import importlib
from types import ModuleType
from typing import Any

import pytest
from botocore.stub import Stubber
from cluster_diff import AutoscalingChangeError, live_differences, update_request

# The handler tests' event and answer builders (`tests.lambda` is a keyword path: imported by name).
_cases = importlib.import_module("tests.lambda.test_hyperpod_cluster")
CLUSTER_ARN, NAME = _cases.CLUSTER_ARN, _cases.NAME
cfn_event, cluster_config, described, group, started = (
    _cases.cfn_event,
    _cases.cluster_config,
    _cases.described,
    _cases.group,
    _cases.started,
)

CLUSTER_ROLE = f"arn:aws:iam::{_cases.ACCOUNT}:role/hyperpod-autoscaling"
ENABLED = {"Mode": "Enable", "AutoScalerType": "Karpenter"}


def fixed() -> dict[str, Any]:
    return cluster_config(NodeProvisioningMode="Continuous")


def autoscaled() -> dict[str, Any]:
    """The same cluster with its workers handed to Karpenter: group at 0, AutoScaling and ClusterRole."""
    config = fixed()
    config["InstanceGroups"][1] = group("workers", "ml.g5.8xlarge", 0, threads=2)
    return {**config, "AutoScaling": ENABLED, "ClusterRole": CLUSTER_ROLE}


def live(
    status: str, config: dict[str, Any], autoscaling: str | None = None, **counts: int
) -> dict[str, Any]:
    """DescribeCluster for `config`, with its AutoScaling block (`autoscaling` = its Status) and live counts
    that differ from the request (Karpenter's nodes)."""
    answer = described(status, config)
    for group_answer in answer["InstanceGroups"]:
        if group_answer["InstanceGroupName"] in counts:
            group_answer["TargetCount"] = group_answer["CurrentCount"] = counts[
                group_answer["InstanceGroupName"]
            ]
    if "AutoScaling" in config:
        answer["AutoScaling"] = {**config["AutoScaling"], "Status": autoscaling or "InService"}
        answer["ClusterRole"] = config["ClusterRole"]
    elif autoscaling:
        answer["AutoScaling"] = {"Mode": "Disable", "Status": autoscaling}
    return answer


def test_enabling_sends_autoscaling_the_role_and_the_group_at_zero_then_waits_for_in_service(
    handler: ModuleType, stub: Stubber
) -> None:
    old, new = fixed(), autoscaled()
    expected = {
        **NAME,
        "InstanceGroups": [new["InstanceGroups"][1]],
        "AutoScaling": ENABLED,
        "ClusterRole": CLUSTER_ROLE,
    }
    stub.add_response("describe_cluster", live("InService", old), NAME)
    stub.add_response("update_cluster", {"ClusterArn": CLUSTER_ARN}, expected)
    event = started(handler, cfn_event("Update", new, old, physical_id="ray-hp"))
    # InService, but Karpenter not yet: the next stack's NodeClass would find no controller.
    stub.add_response("describe_cluster", live("InService", new, autoscaling="Creating"), NAME)
    assert handler.is_complete(event, None) == {"IsComplete": False}
    stub.add_response("describe_cluster", live("InService", new, autoscaling="InService"), NAME)
    assert handler.is_complete(event, None)["IsComplete"] is True


def test_nodes_karpenter_added_are_not_a_difference_and_never_scaled_back(
    handler: ModuleType, stub: Stubber
) -> None:
    """A later stack update (a new tag) must not send the autoscaled group's count 0 over 3 busy nodes."""
    old = autoscaled()
    new = copy.deepcopy(old)
    new["Tags"] = [*new["Tags"], {"Key": "team", "Value": "ml"}]
    answer = live("InService", old, workers=3)
    assert live_differences(answer, new) == []
    assert update_request(
        answer, old, new, {"ClusterName", "InstanceGroups", "AutoScaling", "ClusterRole"}
    ) == (
        None,
        [],
    )
    stub.add_response("describe_cluster", answer, NAME)
    stub.add_response("add_tags", {}, {"ResourceArn": CLUSTER_ARN, "Tags": [{"Key": "team", "Value": "ml"}]})
    started(handler, cfn_event("Update", new, old, physical_id="ray-hp"))


def test_the_head_group_stays_compared_while_autoscaling_is_on() -> None:
    config = autoscaled()
    assert live_differences(live("InService", config, head=2), config) == [
        "InstanceGroups[head].InstanceCount"
    ]


def test_disabling_sends_mode_disable_and_the_fixed_count() -> None:
    old, new = autoscaled(), fixed()
    request, unset = update_request(
        live("InService", old), old, new, {"ClusterName", "InstanceGroups", "AutoScaling", "ClusterRole"}
    )
    assert request == {
        **NAME,
        "InstanceGroups": [new["InstanceGroups"][1]],
        "AutoScaling": {"Mode": "Disable"},
    }
    assert unset == []  # ClusterRole stays on the cluster, unused; the API refuses to change it while on


def test_a_model_without_autoscaling_refuses_with_a_clear_message() -> None:
    old, new = fixed(), autoscaled()
    with pytest.raises(AutoscalingChangeError, match="Cannot turn HyperPod autoscaling 'Enable' on cluster"):
        update_request(live("InService", old), old, new, {"ClusterName", "InstanceGroups"})


def test_an_unchanged_fixed_cluster_sends_nothing_about_autoscaling() -> None:
    config = fixed()
    assert update_request(
        live("InService", config, autoscaling="InService"),
        config,
        config,
        {"ClusterName", "InstanceGroups", "AutoScaling", "ClusterRole"},
    ) == (None, [])
