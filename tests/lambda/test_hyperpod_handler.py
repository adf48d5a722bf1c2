"""The HyperPod custom resource handler, against moto and against botocore Stubber sequences.

Events carry the properties the way CloudFormation delivers them: every number and boolean a string.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from types import ModuleType
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, ParamValidationError
from botocore.model import ShapeResolver
from botocore.stub import Stubber
from botocore.validate import validate_parameters
from cfn_coerce import ConfigError, coerce, coerce_request
from cluster_diff import CreateOnlyChangeError

ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/hyperpod-execution"
OTHER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/hyperpod-execution-v2"
EKS_ARN = f"arn:aws:eks:us-east-1:{ACCOUNT}:cluster/ray-eks"
CLUSTER_ARN = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:cluster/abcdef123456"
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
        "StackId": f"arn:aws:cloudformation:us-east-1:{ACCOUNT}:stack/RayHyperPod/guid",
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
    status: str, config: dict[str, Any] | None = None, failure: str | None = None
) -> dict[str, Any]:
    config = config or cluster_config()
    groups = [
        {
            "InstanceGroupName": g["InstanceGroupName"],
            "InstanceType": g["InstanceType"],
            "ExecutionRole": g["ExecutionRole"],
            "ThreadsPerCore": g["ThreadsPerCore"],
            "CurrentCount": g["InstanceCount"],
            "TargetCount": g["InstanceCount"],
            "LifeCycleConfig": g["LifeCycleConfig"],
        }
        for g in config["InstanceGroups"]
    ]
    response = {
        "ClusterArn": CLUSTER_ARN,
        "ClusterName": config["ClusterName"],
        "ClusterStatus": status,
        "InstanceGroups": groups,
    }
    if failure:
        response["FailureMessage"] = failure
    return response


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


# --- create ---------------------------------------------------------------------------------------


def test_create_waits_until_in_service(handler: ModuleType, stub: Stubber) -> None:
    stub.add_response("create_cluster", {"ClusterArn": CLUSTER_ARN}, cluster_config())
    event = started(handler, cfn_event("Create"))
    assert event["PhysicalResourceId"] == "ray-hp"

    stub.add_response("describe_cluster", described("Creating"), {"ClusterName": "ray-hp"})
    assert handler.is_complete(event, None) == {"IsComplete": False}
    stub.add_response("describe_cluster", described("InService"), {"ClusterName": "ray-hp"})
    assert handler.is_complete(event, None) == {
        "IsComplete": True,
        "Data": {"ClusterArn": CLUSTER_ARN, "ClusterName": "ray-hp", "ClusterStatus": "InService"},
    }


@pytest.mark.parametrize("status", ["Failed", "RollingBack"])
def test_create_failure_reports_the_failure_message(handler: ModuleType, stub: Stubber, status: str) -> None:
    stub.add_response("create_cluster", {"ClusterArn": CLUSTER_ARN}, cluster_config())
    event = started(handler, cfn_event("Create"))
    reason = "We currently do not have sufficient capacity for the requested instance type(s)."
    stub.add_response("describe_cluster", described(status, failure=reason), {"ClusterName": "ray-hp"})
    with pytest.raises(handler.ClusterFailedError) as err:
        handler.is_complete(event, None)
    assert str(err.value) == f"HyperPod cluster 'ray-hp' is {status}: {reason}"


def test_create_with_a_taken_name_fails_clearly(handler: ModuleType, stub: Stubber) -> None:
    client_error(stub, "create_cluster", "ResourceInUse", "Cluster already exists", cluster_config())
    with pytest.raises(RuntimeError, match="already exists and is not managed by this resource"):
        handler.on_event(cfn_event("Create"), None)


# --- update ---------------------------------------------------------------------------------------


def scaled(config: dict[str, Any], group_name: str, count: int) -> dict[str, Any]:
    config = copy.deepcopy(config)
    next(g for g in config["InstanceGroups"] if g["InstanceGroupName"] == group_name)["InstanceCount"] = count
    return config


def test_update_instance_count_waits_for_updating_then_in_service(handler: ModuleType, stub: Stubber) -> None:
    old, new = cluster_config(), scaled(cluster_config(), "workers", 8)
    stub.add_response(
        "update_cluster",
        {"ClusterArn": CLUSTER_ARN},
        {"ClusterName": "ray-hp", "InstanceGroups": [new["InstanceGroups"][1]]},
    )
    event = started(handler, cfn_event("Update", new, old, physical_id="ray-hp"))
    assert event["PhysicalResourceId"] == "ray-hp"

    # Called right after on_event: the service may not have left InService yet.
    stub.add_response("describe_cluster", described("InService", old), {"ClusterName": "ray-hp"})
    assert handler.is_complete(event, None) == {"IsComplete": False}
    stub.add_response("describe_cluster", described("Updating", new), {"ClusterName": "ray-hp"})
    assert handler.is_complete(event, None) == {"IsComplete": False}
    stub.add_response("describe_cluster", described("InService", new), {"ClusterName": "ray-hp"})
    assert handler.is_complete(event, None)["IsComplete"] is True


def test_removed_group_is_sent_as_instance_groups_to_delete(handler: ModuleType, stub: Stubber) -> None:
    spare = group("spare", "ml.g5.8xlarge", 2)
    old = cluster_config(InstanceGroups=[*cluster_config()["InstanceGroups"], spare])
    new = cluster_config()
    stub.add_response(
        "update_cluster",
        {"ClusterArn": CLUSTER_ARN},
        {"ClusterName": "ray-hp", "InstanceGroupsToDelete": ["spare"]},
    )
    event = started(handler, cfn_event("Update", new, old, physical_id="ray-hp"))
    stub.add_response("describe_cluster", described("Updating", old), {"ClusterName": "ray-hp"})
    assert handler.is_complete(event, None) == {"IsComplete": False}
    stub.add_response("describe_cluster", described("InService", new), {"ClusterName": "ray-hp"})
    assert handler.is_complete(event, None)["IsComplete"] is True


def test_new_group_lifecycle_health_checks_and_node_recovery_go_through_update(
    handler: ModuleType, stub: Stubber
) -> None:
    old = cluster_config()
    new = copy.deepcopy(old)
    new["NodeRecovery"] = "None"
    workers = new["InstanceGroups"][1]
    workers["OnStartDeepHealthChecks"] = ["InstanceStress", "InstanceConnectivity"]
    workers["LifeCycleConfig"]["OnCreate"] = "on_create_v2.sh"
    gpu = group("gpu-extra", "ml.p5.48xlarge", 2, threads=1)
    new["InstanceGroups"].append(gpu)
    stub.add_response(
        "update_cluster",
        {"ClusterArn": CLUSTER_ARN},
        {"ClusterName": "ray-hp", "InstanceGroups": [workers, gpu], "NodeRecovery": "None"},
    )
    assert handler.on_event(cfn_event("Update", new, old, physical_id="ray-hp"), None) == {
        "PhysicalResourceId": "ray-hp"
    }


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (
            lambda c: c["InstanceGroups"][1].update(InstanceType="ml.g5.12xlarge"),
            "InstanceGroups[workers].InstanceType",
        ),
        (
            lambda c: c["InstanceGroups"][0].update(ExecutionRole=OTHER_ROLE),
            "InstanceGroups[head].ExecutionRole",
        ),
        (lambda c: c["InstanceGroups"][1].update(ThreadsPerCore=1), "InstanceGroups[workers].ThreadsPerCore"),
        (lambda c: c["VpcConfig"].update(Subnets=["subnet-0a", "subnet-0c"]), "VpcConfig.Subnets"),
        (lambda c: c["Orchestrator"]["Eks"].update(ClusterArn=EKS_ARN + "-2"), "Orchestrator.Eks.ClusterArn"),
    ],
)
def test_create_only_change_fails_naming_the_field(
    handler: ModuleType, stub: Stubber, mutate: Callable[[dict], None], path: str
) -> None:
    old, new = cluster_config(), cluster_config()
    mutate(new)
    with pytest.raises(CreateOnlyChangeError) as err:  # the Stubber has no responses: no call was made
        handler.on_event(cfn_event("Update", new, old, physical_id="ray-hp"), None)
    assert path in str(err.value)
    assert "create-only" in str(err.value)
    assert "Rename the cluster (ClusterName)" in str(err.value)
    assert "restore the old value" in str(err.value)


def test_reordered_subnets_are_not_a_change(handler: ModuleType, stub: Stubber) -> None:
    old = cluster_config()
    new = cluster_config(
        VpcConfig={"SecurityGroupIds": ["sg-0123456789abcdef0"], "Subnets": ["subnet-0b", "subnet-0a"]}
    )
    assert handler.on_event(cfn_event("Update", new, old, physical_id="ray-hp"), None) == {
        "PhysicalResourceId": "ray-hp"
    }


def test_rename_creates_a_new_cluster(handler: ModuleType, stub: Stubber) -> None:
    old = cluster_config()
    new = cluster_config(name="ray-hp-v2")
    new["InstanceGroups"][1]["InstanceType"] = "ml.g5.12xlarge"  # allowed: this is a new cluster
    stub.add_response("create_cluster", {"ClusterArn": CLUSTER_ARN}, new)
    event = started(handler, cfn_event("Update", new, old, physical_id="ray-hp"))
    assert event["PhysicalResourceId"] == "ray-hp-v2"
    stub.add_response("describe_cluster", described("InService", new), {"ClusterName": "ray-hp-v2"})
    assert handler.is_complete(event, None)["Data"]["ClusterName"] == "ray-hp-v2"


def test_tag_changes_use_add_and_delete_tags(handler: ModuleType, stub: Stubber) -> None:
    old = cluster_config()
    new = cluster_config(Tags=[{"Key": "project", "Value": "ray-train"}, {"Key": "owner", "Value": "ml"}])
    stub.add_response("describe_cluster", described("InService", old), {"ClusterName": "ray-hp"})
    added = [{"Key": "project", "Value": "ray-train"}, {"Key": "owner", "Value": "ml"}]
    stub.add_response("add_tags", {"Tags": added}, {"ResourceArn": CLUSTER_ARN, "Tags": added})
    stub.add_response("delete_tags", {}, {"ResourceArn": CLUSTER_ARN, "TagKeys": ["cost-center"]})
    handler.on_event(cfn_event("Update", new, old, physical_id="ray-hp"), None)


def test_update_of_a_busy_cluster_fails_clearly(handler: ModuleType, stub: Stubber) -> None:
    old, new = cluster_config(), scaled(cluster_config(), "workers", 2)
    client_error(
        stub,
        "update_cluster",
        "ConflictException",
        "Cluster is in SystemUpdating state",
        {"ClusterName": "ray-hp", "InstanceGroups": [new["InstanceGroups"][1]]},
    )
    with pytest.raises(RuntimeError, match="deploy again once it is InService"):
        handler.on_event(cfn_event("Update", new, old, physical_id="ray-hp"), None)


# --- delete ---------------------------------------------------------------------------------------


def test_delete_waits_out_a_busy_cluster(handler: ModuleType, stub: Stubber) -> None:
    name = {"ClusterName": "ray-hp"}
    client_error(stub, "delete_cluster", "ConflictException", "Cluster is Updating", name)
    event = started(handler, cfn_event("Delete", physical_id="ray-hp"))

    stub.add_response("describe_cluster", described("Updating"), name)
    client_error(stub, "delete_cluster", "ConflictException", "Cluster is Updating", name)
    assert handler.is_complete(event, None) == {"IsComplete": False}
    stub.add_response("describe_cluster", described("InService"), name)
    stub.add_response("delete_cluster", {"ClusterArn": CLUSTER_ARN}, name)
    assert handler.is_complete(event, None) == {"IsComplete": False}
    stub.add_response("describe_cluster", described("Deleting"), name)
    assert handler.is_complete(event, None) == {"IsComplete": False}
    client_error(stub, "describe_cluster", "ResourceNotFound", "Cluster ray-hp not found", name)
    assert handler.is_complete(event, None) == {"IsComplete": True}


def test_delete_of_a_failed_cluster(handler: ModuleType, stub: Stubber) -> None:
    name = {"ClusterName": "ray-hp"}
    stub.add_response("delete_cluster", {"ClusterArn": CLUSTER_ARN}, name)
    event = started(handler, cfn_event("Delete", physical_id="ray-hp"))
    stub.add_response("describe_cluster", described("Deleting"), name)
    assert handler.is_complete(event, None) == {"IsComplete": False}
    client_error(stub, "describe_cluster", "ResourceNotFound", "Cluster ray-hp not found", name)
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
    name = {"ClusterName": "ray-hp"}
    client_error(stub, "delete_cluster", code, message, name)
    event = started(handler, cfn_event("Delete", physical_id="ray-hp"))
    client_error(stub, "describe_cluster", code, message, name)
    assert handler.is_complete(event, None) == {"IsComplete": True}


def test_other_validation_errors_on_delete_are_not_success(handler: ModuleType, stub: Stubber) -> None:
    client_error(stub, "delete_cluster", "AccessDeniedException", "not authorized", {"ClusterName": "ray-hp"})
    with pytest.raises(ClientError, match="AccessDenied"):
        handler.on_event(cfn_event("Delete", physical_id="ray-hp"), None)


@pytest.mark.parametrize("physical_id", [FAILED_CREATE_MARKER, "not a cluster!", "-leading-dash", "x" * 64])
def test_delete_of_an_id_that_was_never_a_cluster(
    handler: ModuleType, stub: Stubber, physical_id: str
) -> None:
    event = started(handler, cfn_event("Delete", physical_id=physical_id))
    assert event["PhysicalResourceId"] == physical_id
    assert handler.is_complete(event, None) == {"IsComplete": True}


# --- logs and client ------------------------------------------------------------------------------


def test_one_json_log_line_per_state_change(
    handler: ModuleType, stub: Stubber, capsys: pytest.CaptureFixture[str]
) -> None:
    stub.add_response("create_cluster", {"ClusterArn": CLUSTER_ARN}, cluster_config())
    event = started(handler, cfn_event("Create"))
    for status in ("Creating", "Creating", "InService"):
        stub.add_response("describe_cluster", described(status), {"ClusterName": "ray-hp"})
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


def test_client_uses_standard_retries_and_the_lambda_region(handler: ModuleType) -> None:
    client = handler._client()
    assert client.meta.config.retries["mode"] == "standard"
    assert client.meta.region_name == "us-east-1"
    assert handler._client() is client  # created once per container


# --- moto -----------------------------------------------------------------------------------------


def test_moto_create_describe_nodes_update_tags_delete(handler: ModuleType, moto_sagemaker: Any) -> None:
    event = started(handler, cfn_event("Create"))
    done = handler.is_complete(event, None)
    assert done["IsComplete"] is True
    arn = done["Data"]["ClusterArn"]
    assert moto_sagemaker.describe_cluster(ClusterName="ray-hp")["ClusterStatus"] == "InService"

    nodes = moto_sagemaker.list_cluster_nodes(ClusterName="ray-hp")["ClusterNodeSummaries"]
    per_group = {g: sum(n["InstanceGroupName"] == g for n in nodes) for g in ("head", "workers")}
    assert per_group == {"head": 1, "workers": 4}

    new = cluster_config(Tags=[{"Key": "project", "Value": "ray"}, {"Key": "owner", "Value": "ml"}])
    handler.on_event(cfn_event("Update", new, cluster_config(), physical_id="ray-hp"), None)
    tags = moto_sagemaker.list_tags(ResourceArn=arn)["Tags"]
    assert sorted(t["Key"] for t in tags) == ["owner", "project"]

    delete = started(handler, cfn_event("Delete", physical_id="ray-hp"))
    assert handler.is_complete(delete, None) == {"IsComplete": True}
    with pytest.raises(ClientError):
        moto_sagemaker.describe_cluster(ClusterName="ray-hp")


def test_moto_delete_of_a_missing_cluster_succeeds(handler: ModuleType, moto_sagemaker: Any) -> None:
    event = started(handler, cfn_event("Delete", physical_id="never-created"))
    assert handler.is_complete(event, None) == {"IsComplete": True}
