"""The HyperPod custom resource handler, against moto and against botocore Stubber sequences.

Events carry the properties the way CloudFormation delivers them: every number and boolean a string.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import ModuleType
from typing import Any, ClassVar

import boto3
import botocore
import pytest
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError, ReadTimeoutError
from botocore.model import ShapeResolver
from botocore.stub import Stubber
from botocore.validate import validate_parameters
from cfn_coerce import ConfigError, coerce, coerce_request
from cluster_diff import CreateOnlyChangeError

from stacks.components.hyperpod_cluster import HANDLER_TIMEOUT

ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/hyperpod-execution"
OTHER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/hyperpod-execution-v2"
EKS_ARN = f"arn:aws:eks:us-east-1:{ACCOUNT}:cluster/ray-eks"
CLUSTER_ARN = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:cluster/abcdef123456"
STACK_ID = (
    f"arn:aws:cloudformation:us-east-1:{ACCOUNT}:stack/RayHyperPod/1f2e3d4c-5b6a-7980-a1b2-c3d4e5f60718"
)
FAILED_CREATE_MARKER = "AWSCDK::CustomResourceProviderFramework::CREATE_FAILED"


def group(name: str, instance_type: str, count: int, threads: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "InstanceGroupName": name,
        "InstanceType": instance_type,
        "InstanceCount": count,
        "ExecutionRole": ROLE,
        "ThreadsPerCore": threads,
        # moto insists on a bucket named sagemaker-*; so does HyperPod's managed instance policy.
        "LifeCycleConfig": {
            "SourceS3Uri": "s3://sagemaker-ray-lifecycle/scripts/",
            "OnCreate": "on_create.sh",
        },
        **extra,
    }


def cluster_config(name: str = "ray-hp", **overrides: Any) -> dict[str, Any]:
    """A realistic CreateCluster request, typed as the API wants it."""
    config = {
        "ClusterName": name,
        "InstanceGroups": [
            group(
                "head",
                "ml.m5.2xlarge",
                1,
                InstanceStorageConfigs=[{"EbsVolumeConfig": {"VolumeSizeInGB": 500, "RootVolume": False}}],
                KubernetesConfig={"Labels": {"ray.io/node-type": "head"}},
            ),
            group("workers", "ml.g5.8xlarge", 4, threads=2, OnStartDeepHealthChecks=["InstanceStress"]),
        ],
        "VpcConfig": {"SecurityGroupIds": ["sg-0123456789abcdef0"], "Subnets": ["subnet-0a", "subnet-0b"]},
        "Orchestrator": {"Eks": {"ClusterArn": EKS_ARN}},
        "NodeRecovery": "Automatic",
        "Tags": [{"Key": "project", "Value": "ray"}, {"Key": "cost-center", "Value": "1234"}],
    }
    config.update(overrides)
    return config


def stringify(value: Any) -> Any:
    """What CloudFormation does to a custom resource's properties."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return [stringify(v) for v in value]
    if isinstance(value, dict):
        return {k: stringify(v) for k, v in value.items()}
    return value


def cfn_event(
    request_type: str,
    config: dict[str, Any] | None = None,
    old: dict[str, Any] | None = None,
    physical_id: str | None = None,
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "RequestType": request_type,
        "RequestId": "6f1c0c4e-request",
        "StackId": STACK_ID,
        "LogicalResourceId": "HyperPodCluster",
        "ResourceType": "Custom::HyperPodCluster",
        "ResourceProperties": {
            "ServiceToken": f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:provider",
            "ClusterConfig": stringify(config or cluster_config()),
        },
    }
    if old is not None:
        event["OldResourceProperties"] = {"ClusterConfig": stringify(old)}
    if physical_id is not None:
        event["PhysicalResourceId"] = physical_id
    return event


def started(handler: ModuleType, event: dict[str, Any]) -> dict[str, Any]:
    """Run on_event and merge its answer into the event, as the Provider framework does for is_complete."""
    return {**event, **handler.on_event(event, None)}


def described(
    status: str,
    config: dict[str, Any] | None = None,
    failure: str | None = None,
    current: dict[str, int] | None = None,
) -> dict[str, Any]:
    """A DescribeCluster answer for `config`; `current` overrides CurrentCount per group (instances still
    provisioning)."""
    config = config or cluster_config()
    groups = [
        {
            "InstanceGroupName": g["InstanceGroupName"],
            "InstanceType": g["InstanceType"],
            "ExecutionRole": g["ExecutionRole"],
            "ThreadsPerCore": g["ThreadsPerCore"],
            "CurrentCount": (current or {}).get(g["InstanceGroupName"], g["InstanceCount"]),
            "TargetCount": g["InstanceCount"],
            "LifeCycleConfig": g["LifeCycleConfig"],
            **(
                {"OnStartDeepHealthChecks": g["OnStartDeepHealthChecks"]}
                if "OnStartDeepHealthChecks" in g
                else {}
            ),
            "KubernetesConfig": {
                "CurrentLabels": g.get("KubernetesConfig", {}).get("Labels", {}),
                "DesiredLabels": g.get("KubernetesConfig", {}).get("Labels", {}),
            },
        }
        for g in config["InstanceGroups"]
    ]
    response = {
        "ClusterArn": CLUSTER_ARN,
        "ClusterName": config["ClusterName"],
        "ClusterStatus": status,
        "CreationTime": datetime.now(UTC),
        "InstanceGroups": groups,
        "VpcConfig": config["VpcConfig"],
        "Orchestrator": config["Orchestrator"],
        "NodeRecovery": config["NodeRecovery"],
    }
    if "NodeProvisioningMode" in config:
        response["NodeProvisioningMode"] = config["NodeProvisioningMode"]
    if failure:
        response["FailureMessage"] = failure
    return response


def owned(config: dict[str, Any]) -> dict[str, Any]:
    """The CreateCluster request the handler sends: the config plus this resource's owner tags, first."""
    owner = [
        {"Key": "ray-on-hyperpod:cfn-stack-id", "Value": STACK_ID},
        {"Key": "ray-on-hyperpod:cfn-logical-id", "Value": "HyperPodCluster"},
    ]
    return {**config, "Tags": owner + config.get("Tags", [])}


def client_error(stub: Stubber, method: str, code: str, message: str, params: dict[str, Any]) -> None:
    stub.add_client_error(
        method, service_error_code=code, service_message=message, http_status_code=400, expected_params=params
    )


def log_records(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]


# --- coercion -------------------------------------------------------------------------------------


def create_shape() -> Any:
    return boto3.client("sagemaker").meta.service_model.operation_model("CreateCluster").input_shape


def test_cloudformation_strings_become_a_valid_create_request() -> None:
    shape = create_shape()
    request = coerce_request(stringify(cluster_config()), shape, "ClusterConfig")
    validate_parameters(request, shape)  # raises ParamValidationError on any mismatch
    assert request == cluster_config()
    head, workers = request["InstanceGroups"]
    assert workers["InstanceCount"] == 4
    assert head["InstanceStorageConfigs"][0]["EbsVolumeConfig"]["RootVolume"] is False
    assert request["Tags"][1]["Value"] == "1234"  # a string member stays a string


def test_coercion_walks_any_shape_generically() -> None:
    resolver = ShapeResolver(
        {
            "Req": {
                "type": "structure",
                "members": {
                    "Ratio": {"shape": "D"},
                    "Big": {"shape": "L"},
                    "Limits": {"shape": "M"},
                    "On": {"shape": "B"},
                },
            },
            "D": {"type": "double"},
            "L": {"type": "long"},
            "B": {"type": "boolean"},
            "M": {"type": "map", "key": {"shape": "S"}, "value": {"shape": "I"}},
            "I": {"type": "integer"},
            "S": {"type": "string"},
        }
    )
    given = {"Ratio": "0.5", "Big": "9007199254740993", "Limits": {"gpu": "8"}, "On": "TRUE"}
    assert coerce(given, resolver.get_shape_by_name("Req"), "X") == {
        "Ratio": 0.5,
        "Big": 9007199254740993,
        "Limits": {"gpu": 8},
        "On": True,
    }


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda c: c["InstanceGroups"][1].update(InstanceCount="four"),
            "ClusterConfig.InstanceGroups[workers].InstanceCount: expected an integer, got 'four'",
        ),
        (
            lambda c: c["InstanceGroups"][0]["InstanceStorageConfigs"][0]["EbsVolumeConfig"].update(
                RootVolume="yes"
            ),
            "ClusterConfig.InstanceGroups[head].InstanceStorageConfigs[0].EbsVolumeConfig.RootVolume: "
            'expected a boolean ("true" or "false"), got \'yes\'',
        ),
        (
            lambda c: c["InstanceGroups"][1].update(InstanceCont="4"),
            "ClusterConfig.InstanceGroups[workers]: unknown member 'InstanceCont'; "
            "did you mean 'InstanceCount'?",
        ),
        (
            lambda c: c.update(VpcConfig="subnet-0a"),
            "ClusterConfig.VpcConfig: expected an object, got 'subnet-0a'",
        ),
    ],
)
def test_bad_values_name_the_field_path(mutate: Callable[[dict], None], message: str) -> None:
    config = stringify(cluster_config())
    mutate(config)
    with pytest.raises(ConfigError) as err:
        coerce_request(config, create_shape(), "ClusterConfig")
    assert str(err.value) == message


def test_missing_required_member_is_reported_by_botocore() -> None:
    config = stringify(cluster_config())
    del config["InstanceGroups"][0]["ExecutionRole"]
    with pytest.raises(ParamValidationError, match="ExecutionRole"):
        coerce_request(config, create_shape(), "ClusterConfig")


def test_unknown_resource_property_is_rejected(handler: ModuleType, stub: Stubber) -> None:
    event = cfn_event("Create")
    event["ResourceProperties"]["ClusterConfg"] = event["ResourceProperties"].pop("ClusterConfig")
    with pytest.raises(ConfigError, match=r"unknown resource properties \['ClusterConfg'\]"):
        handler.on_event(event, None)


def test_service_timeout_echoed_by_cloudformation_is_accepted(handler: ModuleType, stub: Stubber) -> None:
    event = cfn_event("Create")
    event["ResourceProperties"]["ServiceTimeout"] = "3600"  # the template's ServiceTimeout, as a string
    stub.add_response("create_cluster", {"ClusterArn": CLUSTER_ARN}, owned(cluster_config()))
    assert handler.on_event(event, None)["PhysicalResourceId"] == "ray-hp"


def test_a_member_the_runtime_sdk_lacks_names_both_sdk_versions(
    handler: ModuleType, stub: Stubber, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(handler.SDK_ENV, "boto3 9.9.9, botocore 9.9.9")
    config = cluster_config()
    config["ClusterRole"] = ROLE  # as if the runtime's model predated this member
    monkeypatch.delitem(handler._operation_shape("CreateCluster").members, "ClusterRole", raising=False)
    with pytest.raises(ConfigError) as err:
        handler.on_event(cfn_event("Create", config), None)
    assert "unknown member 'ClusterRole'" in str(err.value)
    assert f"botocore {botocore.__version__}" in str(err.value)
    assert "built and tested with boto3 9.9.9, botocore 9.9.9" in str(err.value)


# --- create ---------------------------------------------------------------------------------------

NAME = {"ClusterName": "ray-hp"}


def test_create_tags_the_cluster_with_its_owner_and_waits_until_in_service(
    handler: ModuleType, stub: Stubber
) -> None:
    stub.add_response("create_cluster", {"ClusterArn": CLUSTER_ARN}, owned(cluster_config()))
    event = started(handler, cfn_event("Create"))
    assert event["PhysicalResourceId"] == "ray-hp"

    stub.add_response("describe_cluster", described("Creating"), NAME)
    assert handler.is_complete(event, None) == {"IsComplete": False}
    stub.add_response("describe_cluster", described("InService"), NAME)
    assert handler.is_complete(event, None) == {
        "IsComplete": True,
        "Data": {"ClusterArn": CLUSTER_ARN, "ClusterName": "ray-hp", "ClusterStatus": "InService"},
    }


def test_continuous_mode_request_is_valid_and_completes_at_in_service_before_nodes_are_up(
    handler: ModuleType, stub: Stubber
) -> None:
    config = cluster_config(NodeProvisioningMode="Continuous")
    # The Stubber validates the request against botocore's model: NodeProvisioningMode is a real member.
    stub.add_response("create_cluster", {"ClusterArn": CLUSTER_ARN}, owned(config))
    event = started(handler, cfn_event("Create", config))
    # InService with no worker up yet (deep health checks run for hours): the resource is done.
    stub.add_response("describe_cluster", described("InService", config, current={"workers": 0}), NAME)
    assert handler.is_complete(event, None)["IsComplete"] is True


@pytest.mark.parametrize("status", ["Failed", "RollingBack"])
def test_create_failure_reports_the_failure_message(handler: ModuleType, stub: Stubber, status: str) -> None:
    stub.add_response("create_cluster", {"ClusterArn": CLUSTER_ARN}, owned(cluster_config()))
    event = started(handler, cfn_event("Create"))
    reason = "We currently do not have sufficient capacity for the requested instance type(s)."
    stub.add_response("describe_cluster", described(status, failure=reason), NAME)
    with pytest.raises(handler.ClusterFailedError) as err:
        handler.is_complete(event, None)
    assert str(err.value) == f"HyperPod cluster 'ray-hp' is {status}: {reason}"


def test_create_completes_when_the_echo_differs_in_form(handler: ModuleType, stub: Stubber) -> None:
    """DescribeCluster reports the lifecycle URI without its trailing slash (as AWS's samples send it) and
    adds defaults to the storage config: a fresh create is done at InService with the requested targets."""
    stub.add_response("create_cluster", {"ClusterArn": CLUSTER_ARN}, owned(cluster_config()))
    event = started(handler, cfn_event("Create"))
    echo = described("InService")
    for g in echo["InstanceGroups"]:
        g["LifeCycleConfig"] = {
            "SourceS3Uri": "s3://sagemaker-ray-lifecycle/scripts",
            "OnCreate": "on_create.sh",
        }
    stub.add_response("describe_cluster", echo, NAME)
    assert handler.is_complete(event, None)["IsComplete"] is True


def test_create_waits_for_the_requested_targets(handler: ModuleType, stub: Stubber) -> None:
    stub.add_response("create_cluster", {"ClusterArn": CLUSTER_ARN}, owned(cluster_config()))
    event = started(handler, cfn_event("Create"))
    short = described("InService")
    short["InstanceGroups"][1]["TargetCount"] = 2
    stub.add_response("describe_cluster", short, NAME)
    assert handler.is_complete(event, None) == {"IsComplete": False}


def test_adoption_compares_with_normalizations_and_sends_nothing_for_a_form_difference(
    handler: ModuleType, stub: Stubber
) -> None:
    client_error(stub, "create_cluster", "ResourceInUse", "Cluster already exists", owned(cluster_config()))
    echo = described("InService")
    head = echo["InstanceGroups"][0]
    head["LifeCycleConfig"] = {
        "SourceS3Uri": "s3://sagemaker-ray-lifecycle/scripts",
        "OnCreate": "on_create.sh",
    }
    head["InstanceStorageConfigs"] = [{"EbsVolumeConfig": {"VolumeSizeInGB": 500, "RootVolume": False}}]
    stub.add_response("describe_cluster", echo, NAME)
    stub.add_response("list_tags", owner_tags(), {"ResourceArn": CLUSTER_ARN})
    event = started(handler, cfn_event("Create"))
    stub.add_response("describe_cluster", echo, NAME)  # no update_cluster queued: nothing differs
    assert handler.is_complete(event, None)["IsComplete"] is True


def test_instance_storage_is_compared_with_the_live_cluster_on_rollback(
    handler: ModuleType, stub: Stubber
) -> None:
    """A rollback re-sends the old storage; the live cluster already has it: no UpdateCluster."""
    live, rejected = cluster_config(), cluster_config()
    rejected["InstanceGroups"][0]["InstanceStorageConfigs"][0]["EbsVolumeConfig"]["VolumeSizeInGB"] = 900
    echo = described("InService", live)
    echo["InstanceGroups"][0]["InstanceStorageConfigs"] = live["InstanceGroups"][0]["InstanceStorageConfigs"]
    stub.add_response("describe_cluster", echo, NAME)
    event = started(handler, cfn_event("Update", live, rejected, physical_id="ray-hp"))
    stub.add_response("describe_cluster", echo, NAME)
    assert handler.is_complete(event, None)["IsComplete"] is True


def owner_tags(stack_id: str = STACK_ID, logical_id: str = "HyperPodCluster") -> dict[str, Any]:
    return {
        "Tags": [
            {"Key": "project", "Value": "ray"},
            {"Key": "ray-on-hyperpod:cfn-stack-id", "Value": stack_id},
            {"Key": "ray-on-hyperpod:cfn-logical-id", "Value": logical_id},
        ]
    }


def test_retry_after_a_lost_create_response_adopts_the_cluster_this_resource_created(
    handler: ModuleType, stub: Stubber
) -> None:
    # The first CreateCluster went through but its answer was lost; the retry finds the name taken.
    client_error(stub, "create_cluster", "ResourceInUse", "Cluster already exists", owned(cluster_config()))
    stub.add_response("describe_cluster", described("Creating"), NAME)
    stub.add_response("list_tags", owner_tags(), {"ResourceArn": CLUSTER_ARN})
    event = started(handler, cfn_event("Create"))
    assert event["PhysicalResourceId"] == "ray-hp"

    stub.add_response("describe_cluster", described("Creating"), NAME)
    assert handler.is_complete(event, None) == {"IsComplete": False}
    stub.add_response("describe_cluster", described("InService"), NAME)
    assert handler.is_complete(event, None)["IsComplete"] is True


@pytest.mark.parametrize(
    "tags",
    [
        owner_tags(stack_id=STACK_ID.replace("RayHyperPod", "OtherStack")),
        owner_tags(logical_id="AnotherCluster"),
        {"Tags": [{"Key": "project", "Value": "ray"}]},
    ],
)
def test_a_name_owned_by_someone_else_fails_clearly_without_touching_it(
    handler: ModuleType, stub: Stubber, tags: dict[str, Any]
) -> None:
    client_error(stub, "create_cluster", "ResourceInUse", "Cluster already exists", owned(cluster_config()))
    stub.add_response("describe_cluster", described("InService"), NAME)
    stub.add_response("list_tags", tags, {"ResourceArn": CLUSTER_ARN})
    with pytest.raises(handler.ClusterNotOwnedError) as err:  # no update, tag or delete call is queued
        handler.on_event(cfn_event("Create"), None)
    assert "already exists in this account and region and was not created by this resource" in str(err.value)
    assert "Choose another hyperpod.cluster_name" in str(err.value)


def test_create_past_the_budget_fails_with_its_own_message(
    handler: ModuleType, stub: Stubber, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(handler.BUDGET_ENV, "2700")
    stub.add_response("create_cluster", {"ClusterArn": CLUSTER_ARN}, owned(cluster_config()))
    event = started(handler, cfn_event("Create"))
    event[handler.STARTED_AT] = time.time() - 2701
    stub.add_response("describe_cluster", described("Creating"), NAME)
    with pytest.raises(handler.BudgetExceededError, match="'ray-hp' is still Creating after 45 minutes"):
        handler.is_complete(event, None)


# --- update ---------------------------------------------------------------------------------------


def scaled(config: dict[str, Any], group_name: str, count: int) -> dict[str, Any]:
    config = copy.deepcopy(config)
    next(g for g in config["InstanceGroups"] if g["InstanceGroupName"] == group_name)["InstanceCount"] = count
    return config


def test_update_instance_count_waits_for_updating_then_in_service(handler: ModuleType, stub: Stubber) -> None:
    old, new = cluster_config(), scaled(cluster_config(), "workers", 8)
    stub.add_response("describe_cluster", described("InService", old), NAME)
    stub.add_response(
        "update_cluster", {"ClusterArn": CLUSTER_ARN}, {**NAME, "InstanceGroups": [new["InstanceGroups"][1]]}
    )
    event = started(handler, cfn_event("Update", new, old, physical_id="ray-hp"))
    assert event["PhysicalResourceId"] == "ray-hp"

    # Called right after on_event: the service may not have left InService yet. Not done, and no resend.
    stub.add_response("describe_cluster", described("InService", old), NAME)
    assert handler.is_complete(event, None) == {"IsComplete": False}
    stub.add_response("describe_cluster", described("Updating", new), NAME)
    assert handler.is_complete(event, None) == {"IsComplete": False}
    stub.add_response("describe_cluster", described("InService", new), NAME)
    assert handler.is_complete(event, None)["IsComplete"] is True


@pytest.mark.parametrize("busy", ["Updating", "RollingBack", "SystemUpdating"])
def test_update_of_a_busy_cluster_waits_and_then_applies_the_change(
    handler: ModuleType, stub: Stubber, busy: str
) -> None:
    old, new = cluster_config(), scaled(cluster_config(), "workers", 2)
    stub.add_response("describe_cluster", described(busy, old), NAME)
    event = started(handler, cfn_event("Update", new, old, physical_id="ray-hp"))  # no update call queued

    stub.add_response("describe_cluster", described(busy, old), NAME)
    assert handler.is_complete(event, None) == {"IsComplete": False}
    stub.add_response("describe_cluster", described("InService", old), NAME)
    stub.add_response(
        "update_cluster", {"ClusterArn": CLUSTER_ARN}, {**NAME, "InstanceGroups": [new["InstanceGroups"][1]]}
    )
    assert handler.is_complete(event, None) == {"IsComplete": False}
    stub.add_response("describe_cluster", described("Updating", new), NAME)
    assert handler.is_complete(event, None) == {"IsComplete": False}
    stub.add_response("describe_cluster", described("InService", new), NAME)
    assert handler.is_complete(event, None)["IsComplete"] is True


def test_update_refused_as_busy_is_retried_from_is_complete(handler: ModuleType, stub: Stubber) -> None:
    old, new = cluster_config(), scaled(cluster_config(), "workers", 2)
    request = {**NAME, "InstanceGroups": [new["InstanceGroups"][1]]}
    stub.add_response("describe_cluster", described("InService", old), NAME)
    client_error(stub, "update_cluster", "ConflictException", "Deep health checks are in progress", request)
    event = started(handler, cfn_event("Update", new, old, physical_id="ray-hp"))
    stub.add_response("describe_cluster", described("InService", old), NAME)
    stub.add_response("update_cluster", {"ClusterArn": CLUSTER_ARN}, request)
    assert handler.is_complete(event, None) == {"IsComplete": False}


def test_removed_group_is_sent_as_instance_groups_to_delete(handler: ModuleType, stub: Stubber) -> None:
    spare = group("spare", "ml.g5.8xlarge", 2)
    old = cluster_config(InstanceGroups=[*cluster_config()["InstanceGroups"], spare])
    new = cluster_config()
    stub.add_response("describe_cluster", described("InService", old), NAME)
    stub.add_response(
        "update_cluster", {"ClusterArn": CLUSTER_ARN}, {**NAME, "InstanceGroupsToDelete": ["spare"]}
    )
    event = started(handler, cfn_event("Update", new, old, physical_id="ray-hp"))
    stub.add_response("describe_cluster", described("Updating", old), NAME)
    assert handler.is_complete(event, None) == {"IsComplete": False}
    stub.add_response("describe_cluster", described("InService", new), NAME)
    assert handler.is_complete(event, None)["IsComplete"] is True


def test_new_group_instance_type_lifecycle_health_checks_and_node_recovery_go_through_update(
    handler: ModuleType, stub: Stubber
) -> None:
    old = cluster_config()
    new = copy.deepcopy(old)
    new["NodeRecovery"] = "None"
    workers = new["InstanceGroups"][1]
    workers["InstanceType"] = "ml.g5.12xlarge"  # UpdateCluster changes an existing group's instance type
    workers["OnStartDeepHealthChecks"] = ["InstanceStress", "InstanceConnectivity"]
    workers["LifeCycleConfig"]["OnCreate"] = "on_create_v2.sh"
    gpu = group("gpu-extra", "ml.p5.48xlarge", 2, threads=1)
    new["InstanceGroups"].append(gpu)
    stub.add_response("describe_cluster", described("InService", old), NAME)
    stub.add_response(
        "update_cluster",
        {"ClusterArn": CLUSTER_ARN},
        {**NAME, "InstanceGroups": [workers, gpu], "NodeRecovery": "None"},
    )
    assert handler.on_event(cfn_event("Update", new, old, physical_id="ray-hp"), None)[
        "PhysicalResourceId"
    ] == ("ray-hp")


def test_label_only_update_sends_only_that_group(handler: ModuleType, stub: Stubber) -> None:
    old = cluster_config()
    new = copy.deepcopy(old)
    head = new["InstanceGroups"][0]
    head["KubernetesConfig"] = {"Labels": {"ray.io/node-type": "head", "team": "ml"}}
    stub.add_response("describe_cluster", described("InService", old), NAME)
    stub.add_response("update_cluster", {"ClusterArn": CLUSTER_ARN}, {**NAME, "InstanceGroups": [head]})
    event = started(handler, cfn_event("Update", new, old, physical_id="ray-hp"))
    stub.add_response("describe_cluster", described("InService", new), NAME)
    assert handler.is_complete(event, None)["IsComplete"] is True


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (
            lambda c: c["InstanceGroups"][0].update(ExecutionRole=OTHER_ROLE),
            "InstanceGroups[head].ExecutionRole",
        ),
        (lambda c: c["InstanceGroups"][1].update(ThreadsPerCore=1), "InstanceGroups[workers].ThreadsPerCore"),
        (lambda c: c["VpcConfig"].update(Subnets=["subnet-0a", "subnet-0c"]), "VpcConfig.Subnets"),
        (lambda c: c["Orchestrator"]["Eks"].update(ClusterArn=EKS_ARN + "-2"), "Orchestrator.Eks.ClusterArn"),
    ],
)
def test_create_only_change_fails_before_any_change_and_its_rollback_succeeds(
    handler: ModuleType, stub: Stubber, mutate: Callable[[dict], None], path: str
) -> None:
    original, changed = cluster_config(), cluster_config()
    mutate(changed)
    stub.add_response("describe_cluster", described("InService", original), NAME)
    with pytest.raises(CreateOnlyChangeError) as err:  # only a describe was queued: nothing was changed
        handler.on_event(cfn_event("Update", changed, original, physical_id="ray-hp"), None)
    assert path in str(err.value)
    assert "create-only" in str(err.value)
    assert "Rename the cluster (hyperpod.cluster_name)" in str(err.value)

    # CloudFormation's rollback: an Update from the rejected properties back to the original ones. The live
    # cluster already is the original: success with no call that changes anything.
    stub.add_response("describe_cluster", described("InService", original), NAME)
    rollback = started(handler, cfn_event("Update", original, changed, physical_id="ray-hp"))
    stub.add_response("describe_cluster", described("InService", original), NAME)
    assert handler.is_complete(rollback, None)["IsComplete"] is True


def test_reordered_subnets_are_not_a_change(handler: ModuleType, stub: Stubber) -> None:
    old = cluster_config()
    new = cluster_config(
        VpcConfig={"SecurityGroupIds": ["sg-0123456789abcdef0"], "Subnets": ["subnet-0b", "subnet-0a"]}
    )
    stub.add_response("describe_cluster", described("InService", old), NAME)
    assert handler.on_event(cfn_event("Update", new, old, physical_id="ray-hp"), None)[
        "PhysicalResourceId"
    ] == ("ray-hp")


def test_rename_creates_a_new_cluster(handler: ModuleType, stub: Stubber) -> None:
    old = cluster_config()
    new = cluster_config(name="ray-hp-v2")
    new["InstanceGroups"][1]["ThreadsPerCore"] = 1  # allowed: this is a new cluster
    stub.add_response("create_cluster", {"ClusterArn": CLUSTER_ARN}, owned(new))
    event = started(handler, cfn_event("Update", new, old, physical_id="ray-hp"))
    assert event["PhysicalResourceId"] == "ray-hp-v2"
    stub.add_response("describe_cluster", described("InService", new), {"ClusterName": "ray-hp-v2"})
    assert handler.is_complete(event, None)["Data"]["ClusterName"] == "ray-hp-v2"


def test_tag_changes_use_add_and_delete_tags(handler: ModuleType, stub: Stubber) -> None:
    old = cluster_config()
    new = cluster_config(Tags=[{"Key": "project", "Value": "ray-train"}, {"Key": "owner", "Value": "ml"}])
    stub.add_response("describe_cluster", described("InService", old), NAME)
    added = [{"Key": "project", "Value": "ray-train"}, {"Key": "owner", "Value": "ml"}]
    stub.add_response("add_tags", {"Tags": added}, {"ResourceArn": CLUSTER_ARN, "Tags": added})
    stub.add_response("delete_tags", {}, {"ResourceArn": CLUSTER_ARN, "TagKeys": ["cost-center"]})
    handler.on_event(cfn_event("Update", new, old, physical_id="ray-hp"), None)


# --- delete ---------------------------------------------------------------------------------------


def test_delete_waits_out_a_busy_cluster(handler: ModuleType, stub: Stubber) -> None:
    client_error(stub, "delete_cluster", "ConflictException", "Cluster is Updating", NAME)
    event = started(handler, cfn_event("Delete", physical_id="ray-hp"))

    stub.add_response("describe_cluster", described("Updating"), NAME)
    client_error(stub, "delete_cluster", "ConflictException", "Cluster is Updating", NAME)
    assert handler.is_complete(event, None) == {"IsComplete": False}
    stub.add_response("describe_cluster", described("InService"), NAME)
    stub.add_response("delete_cluster", {"ClusterArn": CLUSTER_ARN}, NAME)
    assert handler.is_complete(event, None) == {"IsComplete": False}
    stub.add_response("describe_cluster", described("Deleting"), NAME)
    assert handler.is_complete(event, None) == {"IsComplete": False}
    client_error(stub, "describe_cluster", "ResourceNotFound", "Cluster ray-hp not found", NAME)
    assert handler.is_complete(event, None) == {"IsComplete": True}


def test_delete_during_creating_retries_then_names_the_command_when_the_budget_runs_out(
    handler: ModuleType, stub: Stubber, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed create's rollback: DeleteCluster is refused while the cluster is Creating."""
    monkeypatch.setenv(handler.BUDGET_ENV, "2700")
    refused = "Cluster ray-hp is in Creating state and cannot be deleted"
    client_error(stub, "delete_cluster", "ConflictException", refused, NAME)
    event = started(handler, cfn_event("Delete", physical_id="ray-hp"))
    stub.add_response("describe_cluster", described("Creating"), NAME)
    client_error(stub, "delete_cluster", "ConflictException", refused, NAME)
    assert handler.is_complete(event, None) == {"IsComplete": False}

    event[handler.STARTED_AT] = time.time() - 2701
    stub.add_response("describe_cluster", described("Creating"), NAME)
    with pytest.raises(handler.BudgetExceededError) as err:
        handler.is_complete(event, None)
    assert "'ray-hp' is still Creating after 45 minutes" in str(err.value)
    assert "aws sagemaker delete-cluster --cluster-name ray-hp --region us-east-1" in str(err.value)


def test_delete_of_a_failed_cluster(handler: ModuleType, stub: Stubber) -> None:
    stub.add_response("delete_cluster", {"ClusterArn": CLUSTER_ARN}, NAME)
    event = started(handler, cfn_event("Delete", physical_id="ray-hp"))
    stub.add_response("describe_cluster", described("Deleting"), NAME)
    assert handler.is_complete(event, None) == {"IsComplete": False}
    client_error(stub, "describe_cluster", "ResourceNotFound", "Cluster ray-hp not found", NAME)
    assert handler.is_complete(event, None) == {"IsComplete": True}


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("ResourceNotFound", "Cluster ray-hp not found"),
        ("ValidationException", "Could not find cluster 'ray-hp'."),
    ],
)
def test_delete_of_a_cluster_already_gone(
    handler: ModuleType, stub: Stubber, code: str, message: str
) -> None:
    client_error(stub, "delete_cluster", code, message, NAME)
    event = started(handler, cfn_event("Delete", physical_id="ray-hp"))
    client_error(stub, "describe_cluster", code, message, NAME)
    assert handler.is_complete(event, None) == {"IsComplete": True}


def test_other_validation_errors_on_delete_are_not_success(handler: ModuleType, stub: Stubber) -> None:
    client_error(stub, "delete_cluster", "AccessDeniedException", "not authorized", NAME)
    with pytest.raises(ClientError, match="AccessDenied"):
        handler.on_event(cfn_event("Delete", physical_id="ray-hp"), None)


@pytest.mark.parametrize("physical_id", [FAILED_CREATE_MARKER, "not a cluster!", "-leading-dash", "x" * 64])
def test_delete_of_an_id_that_was_never_a_cluster(
    handler: ModuleType, stub: Stubber, physical_id: str
) -> None:
    event = started(handler, cfn_event("Delete", physical_id=physical_id))
    assert event["PhysicalResourceId"] == physical_id
    assert handler.is_complete(event, None) == {"IsComplete": True}


INVENTED_ID = "RayHyperPod-HyperPodCluster-1AB2C3D4E5F6G"  # CloudFormation's id for an abandoned Create


def test_delete_of_an_abandoned_create_deletes_the_configured_cluster_it_owns_and_waits(
    handler: ModuleType, stub: Stubber
) -> None:
    stub.add_response("describe_cluster", described("Creating"), NAME)
    stub.add_response("list_tags", owner_tags(), {"ResourceArn": CLUSTER_ARN})
    client_error(stub, "delete_cluster", "ConflictException", "Cluster is Creating", NAME)
    event = started(handler, cfn_event("Delete", physical_id=INVENTED_ID))
    assert event["PhysicalResourceId"] == INVENTED_ID  # the framework refuses a changed id on Delete
    stub.add_response("describe_cluster", described("InService"), NAME)
    stub.add_response("delete_cluster", {"ClusterArn": CLUSTER_ARN}, NAME)
    assert handler.is_complete(event, None) == {"IsComplete": False}
    stub.add_response("describe_cluster", described("Deleting"), NAME)
    assert handler.is_complete(event, None) == {"IsComplete": False}
    client_error(stub, "describe_cluster", "ResourceNotFound", "Cluster ray-hp not found", NAME)
    assert handler.is_complete(event, None) == {"IsComplete": True}


@pytest.mark.parametrize(
    "tags",
    [
        owner_tags(stack_id=STACK_ID.replace("1f2e3d4c", "00000000")),
        owner_tags(logical_id="Other"),
        {"Tags": []},
    ],
)
def test_delete_of_an_abandoned_create_leaves_a_cluster_it_does_not_own(
    handler: ModuleType, stub: Stubber, tags: dict[str, Any]
) -> None:
    stub.add_response("describe_cluster", described("InService"), NAME)
    stub.add_response("list_tags", tags, {"ResourceArn": CLUSTER_ARN})
    event = started(handler, cfn_event("Delete", physical_id=INVENTED_ID))  # no delete_cluster queued
    assert handler.is_complete(event, None) == {"IsComplete": True}


def test_delete_of_an_abandoned_create_that_made_no_cluster(handler: ModuleType, stub: Stubber) -> None:
    client_error(stub, "describe_cluster", "ResourceNotFound", "Cluster ray-hp not found", NAME)
    event = started(handler, cfn_event("Delete", physical_id=INVENTED_ID))
    assert handler.is_complete(event, None) == {"IsComplete": True}


def test_rename_cleanup_delete_removes_only_the_old_name(handler: ModuleType, stub: Stubber) -> None:
    # CloudFormation's cleanup Delete of a replaced cluster: physical id and properties are the old ones.
    old = {"ClusterName": "ray-hp-old"}
    stub.add_response("delete_cluster", {"ClusterArn": CLUSTER_ARN}, old)
    event = started(handler, cfn_event("Delete", cluster_config(name="ray-hp-old"), physical_id="ray-hp-old"))
    client_error(stub, "describe_cluster", "ResourceNotFound", "Cluster not found", old)
    assert handler.is_complete(event, None) == {"IsComplete": True}


# --- logs and client ------------------------------------------------------------------------------


def test_one_json_log_line_per_state_change(
    handler: ModuleType, stub: Stubber, capsys: pytest.CaptureFixture[str]
) -> None:
    stub.add_response("create_cluster", {"ClusterArn": CLUSTER_ARN}, owned(cluster_config()))
    event = started(handler, cfn_event("Create"))
    for status in ("Creating", "Creating", "InService"):
        stub.add_response("describe_cluster", described(status), NAME)
        handler.is_complete(event, None)
    records = log_records(capsys)
    assert [(r["action"], r.get("status"), r.get("previous")) for r in records] == [
        ("create_requested", None, None),
        ("status", "Creating", None),
        ("status", "InService", "Creating"),
    ]
    assert all(r["cluster"] == "ray-hp" and r["requestType"] == "Create" for r in records)
    output = json.dumps(records)
    assert ROLE not in output
    assert "ServiceToken" not in output


class _Clock:
    """Simulated time for the handler: `monotonic`, `time` and `sleep` advance together, nothing waits."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1_700_000_000 + self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class _SlowSageMaker:
    """A client whose every attempt takes the longest the client config allows and then times out, except
    what `answers` says (a callable per operation, run after the same delay)."""

    def __init__(self, clock: _Clock, attempt_seconds: float, answers: dict[str, Callable[..., Any]]) -> None:
        self.clock, self.attempt_seconds, self.answers = clock, attempt_seconds, answers
        self.calls: list[str] = []
        self.meta = boto3.client("sagemaker", region_name="us-east-1").meta  # the real service model

    def __getattr__(self, operation: str) -> Callable[..., Any]:
        def call(**params: Any) -> Any:
            self.calls.append(operation)
            self.clock.now += self.attempt_seconds
            if operation in self.answers:
                return self.answers[operation](**params)
            raise ReadTimeoutError(endpoint_url="https://api.sagemaker.us-east-1.amazonaws.com")

        return call


class _Context:
    def __init__(self, clock: _Clock, timeout_s: float) -> None:
        self.clock, self.end = clock, clock.now + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return int((self.end - self.clock.now) * 1000)


def _worst_case(
    handler: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    answers: dict[str, Callable[..., Any]],
    run: Callable,
) -> tuple[float, Any, list[str]]:
    """Run `run(context)` with every attempt as slow as the client config allows and the longest backoff;
    return the simulated seconds it took, its result or exception, and the calls it made."""
    clock = _Clock()
    config = handler.CLIENT_CONFIG
    attempt = config.connect_timeout + config.read_timeout  # from the client config, not the handler's sum
    slow = _SlowSageMaker(clock, attempt, answers)
    monkeypatch.setattr(handler, "_client", lambda: slow)
    monkeypatch.setattr(handler, "time", clock)
    monkeypatch.setattr(handler.random, "uniform", lambda low, high: high)  # every backoff at its longest
    timeout = HANDLER_TIMEOUT.to_seconds()
    try:
        result: Any = run(_Context(clock, timeout))
    except Exception as err:  # the outcome is asserted by the caller
        result = err
    return clock.now, result, slow.calls


def test_client_has_no_hidden_retries(handler: ModuleType) -> None:
    config = handler._client().meta.config
    assert config.retries["total_max_attempts"] == 1  # retries are `_call`'s, bounded by remaining time
    assert handler._client() is handler._client()  # created once per container


@pytest.mark.parametrize(
    ("request_type", "entry"),
    [
        ("Create", "on_event"),
        ("Update", "on_event"),
        ("Delete", "on_event"),
        ("Create", "is_complete"),
        ("Delete", "is_complete"),
    ],
)
def test_every_invocation_ends_before_its_lambda_timeout_when_every_call_times_out(
    handler: ModuleType, monkeypatch: pytest.MonkeyPatch, request_type: str, entry: str
) -> None:
    physical = None if request_type == "Create" and entry == "on_event" else "ray-hp"
    old = cluster_config() if request_type == "Update" else None
    event = cfn_event(request_type, scaled(cluster_config(), "workers", 8) if old else None, old, physical)
    event[handler.STARTED_AT] = 1_700_000_000
    elapsed, result, calls = _worst_case(
        handler, monkeypatch, {}, lambda ctx: getattr(handler, entry)(event, ctx)
    )
    timeout = HANDLER_TIMEOUT.to_seconds()
    assert elapsed <= timeout - handler.SAFETY_SECONDS, (elapsed, calls)
    assert isinstance(result, BotoCoreError | handler.OutOfTimeError)
    _WORST[f"{request_type} {entry}"] = elapsed


_WORST: dict[str, float] = {}


def test_lost_create_response_is_adopted_within_the_lambda_timeout(
    handler: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CreateCluster went through but no attempt's answer came back: the existence check and the adoption
    still fit in the same invocation."""
    answers = {
        "describe_cluster": lambda **_: described("Creating"),
        "list_tags": lambda **_: owner_tags(),
    }
    elapsed, result, calls = _worst_case(
        handler, monkeypatch, answers, lambda ctx: handler.on_event(cfn_event("Create"), ctx)
    )
    assert isinstance(result, dict), result
    assert result["PhysicalResourceId"] == "ray-hp" and result[handler.RECONCILE] is True
    assert calls.count("create_cluster") >= 2 and calls[-2:] == ["describe_cluster", "list_tags"]
    assert elapsed <= HANDLER_TIMEOUT.to_seconds() - handler.SAFETY_SECONDS
    _WORST["Create on_event, lost response, adopted"] = elapsed


@pytest.mark.parametrize("code", ["ValidationException", "AccessDeniedException"])
def test_an_error_after_a_lost_create_attempt_checks_for_the_cluster_before_failing(
    handler: ModuleType, stub: Stubber, code: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(handler.random, "uniform", lambda low, high: low)  # no real backoff
    # First attempt's answer lost (500), the retry refused: the first may have created the cluster.
    stub.add_client_error(
        "create_cluster", "InternalFailure", "oops", 500, expected_params=owned(cluster_config())
    )
    client_error(stub, "create_cluster", code, "refused", owned(cluster_config()))
    stub.add_response("describe_cluster", described("Creating"), NAME)
    stub.add_response("describe_cluster", described("Creating"), NAME)
    stub.add_response("list_tags", owner_tags(), {"ResourceArn": CLUSTER_ARN})
    answer = handler.on_event(cfn_event("Create"), None)
    assert answer["PhysicalResourceId"] == "ray-hp" and answer[handler.RECONCILE] is True


def test_an_error_on_create_with_no_cluster_behind_it_fails(handler: ModuleType, stub: Stubber) -> None:
    client_error(stub, "create_cluster", "ValidationException", "bad subnet", owned(cluster_config()))
    client_error(stub, "describe_cluster", "ResourceNotFound", "Cluster ray-hp not found", NAME)
    with pytest.raises(ClientError, match="bad subnet"):
        handler.on_event(cfn_event("Create"), None)


# --- moto -----------------------------------------------------------------------------------------


def test_moto_create_describe_nodes_update_tags_delete(handler: ModuleType, moto_sagemaker: Any) -> None:
    event = started(handler, cfn_event("Create"))
    done = handler.is_complete(event, None)
    assert done["IsComplete"] is True
    arn = done["Data"]["ClusterArn"]
    assert moto_sagemaker.describe_cluster(ClusterName="ray-hp")["ClusterStatus"] == "InService"
    tags = {t["Key"]: t["Value"] for t in moto_sagemaker.list_tags(ResourceArn=arn)["Tags"]}
    assert tags["ray-on-hyperpod:cfn-stack-id"] == STACK_ID
    assert tags["ray-on-hyperpod:cfn-logical-id"] == "HyperPodCluster"

    nodes = moto_sagemaker.list_cluster_nodes(ClusterName="ray-hp")["ClusterNodeSummaries"]
    per_group = {g: sum(n["InstanceGroupName"] == g for n in nodes) for g in ("head", "workers")}
    assert per_group == {"head": 1, "workers": 4}

    new = cluster_config(Tags=[{"Key": "project", "Value": "ray"}, {"Key": "owner", "Value": "ml"}])
    update = started(handler, cfn_event("Update", new, cluster_config(), physical_id="ray-hp"))
    assert handler.is_complete(update, None)["IsComplete"] is True
    tags = {t["Key"] for t in moto_sagemaker.list_tags(ResourceArn=arn)["Tags"]}
    assert tags == {"owner", "project", "ray-on-hyperpod:cfn-stack-id", "ray-on-hyperpod:cfn-logical-id"}

    delete = started(handler, cfn_event("Delete", physical_id="ray-hp"))
    assert handler.is_complete(delete, None) == {"IsComplete": True}
    with pytest.raises(ClientError):
        moto_sagemaker.describe_cluster(ClusterName="ray-hp")


def test_moto_create_retried_after_a_lost_response_adopts_instead_of_failing(
    handler: ModuleType, moto_sagemaker: Any
) -> None:
    # The first attempt's CreateCluster reached SageMaker (as the handler sends it); its answer never came
    # back.
    moto_sagemaker.create_cluster(**owned(cluster_config()))
    event = started(handler, cfn_event("Create"))
    assert event["PhysicalResourceId"] == "ray-hp"
    assert handler.is_complete(event, None)["IsComplete"] is True
    assert len(moto_sagemaker.list_clusters()["ClusterSummaries"]) == 1


def test_moto_create_over_someone_elses_cluster_fails_and_leaves_it(
    handler: ModuleType, moto_sagemaker: Any
) -> None:
    moto_sagemaker.create_cluster(**cluster_config())  # no owner tags: not this resource's
    with pytest.raises(handler.ClusterNotOwnedError):
        handler.on_event(cfn_event("Create"), None)
    assert moto_sagemaker.describe_cluster(ClusterName="ray-hp")["ClusterStatus"] == "InService"


def test_moto_delete_of_a_missing_cluster_succeeds(handler: ModuleType, moto_sagemaker: Any) -> None:
    event = started(handler, cfn_event("Delete", physical_id="never-created"))
    assert handler.is_complete(event, None) == {"IsComplete": True}


# --- node wait ------------------------------------------------------------------------------------


class _SignalReceiver(BaseHTTPRequestHandler):
    """Stands in for the wait condition's presigned S3 URL: records each PUT."""

    received: ClassVar[list[tuple[str, dict[str, Any]]]] = []
    answer: ClassVar[int] = 200  # 403: an expired presigned URL; 404: a deleted wait condition

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.headers.get("Content-Type", ""), json.loads(body)))
        self.send_response(self.answer)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def signal_url() -> Any:
    _SignalReceiver.received = []
    _SignalReceiver.answer = 200
    server = HTTPServer(("127.0.0.1", 0), _SignalReceiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/signal?X-Amz-Signature=abc"
    server.shutdown()


RULE_ARN = f"arn:aws:events:us-east-1:{ACCOUNT}:rule/HyperPod-NodeWaitSchedule-ABC123"


CONDITION = "NodeWaitCondition1a2b3c4dE5F6A7B8"


def poll_event(url: str, timeout: int = 43200) -> dict[str, Any]:
    return {
        "clusterName": "ray-hp",
        "signalUrl": url,
        "timeoutSeconds": timeout,
        "ruleArn": RULE_ARN,
        "stackId": STACK_ID,
        "conditionLogicalId": CONDITION,
    }


def wait_began(cfn: Stubber, ago: timedelta = timedelta(minutes=5)) -> None:
    """DescribeStackResource: the wait condition entered CREATE_IN_PROGRESS `ago`."""
    detail = {
        "LogicalResourceId": CONDITION,
        "ResourceType": "AWS::CloudFormation::WaitCondition",
        "LastUpdatedTimestamp": datetime.now(UTC) - ago,
        "ResourceStatus": "CREATE_IN_PROGRESS",
    }
    cfn.add_response(
        "describe_stack_resource",
        {"StackResourceDetail": detail},
        {"StackName": STACK_ID, "LogicalResourceId": CONDITION},
    )


def node(group: str, index: int, status: str, message: str = "") -> dict[str, Any]:
    return {
        "InstanceGroupName": group,
        "InstanceId": f"i-0123456789abcde{index:02d}",
        "InstanceType": "ml.g5.8xlarge",
        "LaunchTime": datetime.now(UTC),
        "InstanceStatus": {"Status": status, **({"Message": message} if message else {})},
    }


def nodes(workers: list[str]) -> dict[str, Any]:
    return {
        "ClusterNodeSummaries": [node("head", 0, "Running")]
        + [node("workers", i + 1, status) for i, status in enumerate(workers)]
    }


DISABLE = {"Name": "HyperPod-NodeWaitSchedule-ABC123"}


def test_node_wait_counts_running_nodes_not_current_count_and_stops_after_success(
    node_wait: ModuleType, node_wait_stubs: tuple[Stubber, Stubber, Stubber], signal_url: str
) -> None:
    sagemaker, events, cfn = node_wait_stubs
    # CurrentCount says 4/4, but two workers are still in deep health checks: not yet.
    wait_began(cfn)
    sagemaker.add_response("describe_cluster", described("InService"), NAME)
    checking = ["Running", "Running", "DeepHealthCheckInProgress", "DeepHealthCheckInProgress"]
    sagemaker.add_response("list_cluster_nodes", nodes(checking), NAME)
    assert node_wait.handler(poll_event(signal_url), None)["status"] == "WAITING"
    assert _SignalReceiver.received == []

    wait_began(cfn)
    sagemaker.add_response("describe_cluster", described("InService"), NAME)
    sagemaker.add_response("list_cluster_nodes", nodes(["Running"] * 4), NAME)
    events.add_response("disable_rule", {}, DISABLE)
    assert node_wait.handler(poll_event(signal_url), None)["status"] == "SUCCESS"
    ((content_type, signal),) = _SignalReceiver.received
    assert content_type == ""  # what the presigned URL was signed with
    assert signal["Status"] == "SUCCESS"
    assert signal["UniqueId"] == "ray-hp"
    assert "head 1/1, workers 4/4" in signal["Reason"]


def test_node_wait_fails_with_the_clusters_message_or_when_it_is_gone(
    node_wait: ModuleType, node_wait_stubs: tuple[Stubber, Stubber, Stubber], signal_url: str
) -> None:
    sagemaker, events, cfn = node_wait_stubs
    wait_began(cfn)
    sagemaker.add_response("describe_cluster", described("Failed", failure="Insufficient capacity"), NAME)
    events.add_response("disable_rule", {}, DISABLE)
    node_wait.handler(poll_event(signal_url), None)
    wait_began(cfn)
    sagemaker.add_client_error("describe_cluster", "ResourceNotFound", "not found", expected_params=NAME)
    events.add_response("disable_rule", {}, DISABLE)
    node_wait.handler(poll_event(signal_url), None)
    reasons = [(s["Status"], s["Reason"]) for _, s in _SignalReceiver.received]
    assert reasons == [
        ("FAILURE", "HyperPod cluster 'ray-hp' is Failed: Insufficient capacity"),
        ("FAILURE", "HyperPod cluster 'ray-hp' no longer exists"),
    ]


def test_node_wait_deadline_counts_from_the_wait_start_not_the_cluster_creation(
    node_wait: ModuleType, node_wait_stubs: tuple[Stubber, Stubber, Stubber], signal_url: str
) -> None:
    """A cluster created 12 h ago (e.g. a scale-up deploy's new wait): a 20-minute wait that began 5 minutes
    ago is still waiting."""
    sagemaker, _, cfn = node_wait_stubs
    wait_began(cfn, timedelta(minutes=5))
    answer = described("InService")
    answer["CreationTime"] = datetime.now(UTC) - timedelta(hours=12)
    sagemaker.add_response("describe_cluster", answer, NAME)
    sagemaker.add_response("list_cluster_nodes", nodes(["Running"] * 3 + ["Pending"]), NAME)
    assert node_wait.handler(poll_event(signal_url, timeout=20 * 60), None)["status"] == "WAITING"


def test_node_wait_gives_up_before_the_wait_condition_with_nodes_and_error_events(
    node_wait: ModuleType, node_wait_stubs: tuple[Stubber, Stubber, Stubber], signal_url: str
) -> None:
    sagemaker, events, cfn = node_wait_stubs
    wait_began(cfn, timedelta(hours=12))
    sagemaker.add_response("describe_cluster", described("InService"), NAME)
    failing = nodes(["Running"] * 3)
    failing["ClusterNodeSummaries"].append(
        node("workers", 9, "Failure", "DCGM level 4 diagnostic failed on GPU 3")
    )
    sagemaker.add_response("list_cluster_nodes", failing, NAME)
    event = {
        "EventId": "e-1",
        "ClusterArn": CLUSTER_ARN,
        "ClusterName": "ray-hp",
        "InstanceGroupName": "workers",
        "ResourceType": "InstanceGroup",
        "EventTime": datetime.now(UTC),
        "EventLevel": "Error",
        "Description": "Insufficient capacity for ml.g5.8xlarge in us-east-1a",
    }
    info = {**event, "EventId": "e-2", "EventLevel": "Info", "Description": "scaling"}
    sagemaker.add_response(
        "list_cluster_events",
        {"Events": [event, info]},
        {**NAME, "SortBy": "EventTime", "SortOrder": "Descending", "MaxResults": 100},
    )
    events.add_response("disable_rule", {}, DISABLE)
    assert node_wait.handler(poll_event(signal_url), None)["status"] == "FAILURE"
    ((_, signal),) = _SignalReceiver.received
    assert "workers 3/4" in signal["Reason"]
    assert "workers/i-0123456789abcde09: DCGM level 4 diagnostic failed on GPU 3" in signal["Reason"]
    assert "event workers: Insufficient capacity for ml.g5.8xlarge in us-east-1a" in signal["Reason"]
    assert "scaling" not in signal["Reason"]


@pytest.mark.parametrize("code", [403, 404])
def test_node_wait_disables_itself_when_the_signal_url_is_gone(
    node_wait: ModuleType, node_wait_stubs: tuple[Stubber, Stubber, Stubber], signal_url: str, code: int
) -> None:
    sagemaker, events, cfn = node_wait_stubs
    _SignalReceiver.answer = code
    wait_began(cfn)
    sagemaker.add_response("describe_cluster", described("InService"), NAME)
    sagemaker.add_response("list_cluster_nodes", nodes(["Running"] * 4), NAME)
    events.add_response("disable_rule", {}, DISABLE)
    assert node_wait.handler(poll_event(signal_url), None)["status"] == "GONE"
