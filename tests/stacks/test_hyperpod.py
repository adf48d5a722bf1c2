"""The HyperPod stack as synthesized: request, IAM, bucket, ordering, cdk-nag, cfn-lint and botocore's model.

Two apps are synthesized once each: the default configuration (environment-agnostic) and one with an
environment and every optional instance-group feature, which proves the cdk-nag acknowledgments that are
derived from tokens still match once account and region are literals.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import boto3
import botocore.session
import cdk_nag
import pytest
from aws_cdk import assertions, cx_api
from moto import mock_aws

from config import AppConfig, ConfigError, load_config
from stacks.components import hyperpod_cluster
from stacks.components.hyperpod_cluster import HANDLER_DIR, cluster_request
from stacks.components.lifecycle_scripts import MAX_BUCKET_NAME, SCRIPTS_DIR, bucket_name
from stacks.components.node_wait import NodeWait
from stacks.hyperpod import HyperPodStack
from tests.support.apps import cli_app, cluster_stacks, synth_app
from tests.support.cfn_lint import cfn_lint
from tests.support.handlers import load_handler

ACCOUNT, REGION = "123456789012", "us-west-2"
PLAN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-plan/ray-plan"
FEATURES: dict[str, Any] = {
    "env": {"account": ACCOUNT, "region": REGION},
    "tags": {"project": "ray-on-hyperpod", "owner": "ml-platform"},
    "hyperpod": {
        "cluster_name": "ray-features",
        "node_provisioning_mode": "Continuous",
        "instance_groups": [
            {"name": "head", "instance_type": "ml.m5.2xlarge", "count": 1},
            {
                "name": "workers",
                "instance_type": "ml.p5.48xlarge",
                "count": 2,
                "threads_per_core": 2,
                "ebs_volume_gb": 1000,
                "deep_health_checks": ["InstanceStress"],
                "training_plan_arn": PLAN,
                "labels": {"ray.io/node-type": "worker"},
                "taints": [
                    {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"},
                    {"key": "dedicated", "effect": "NoExecute"},
                ],
            },
        ],
    },
    "ray": {
        "worker_groups": [{"name": "gpu", "instance_group": "workers", "replicas": 2, "max_replicas": 2}]
    },
}


cfn_coerce = load_handler("hyperpod_cluster", "cfn_coerce")
handler = load_handler("hyperpod_cluster")


class Synthesized:
    """One synthesized app: the stacks, their templates and the cloud assembly."""

    def __init__(self, config: AppConfig, outdir: Path) -> None:
        self.app = cli_app(outdir)
        env = cdk.Environment(account=config.env.account, region=config.env.region)
        cluster = cluster_stacks(self.app, config)
        self.network, self.eks = cluster.network, cluster.eks
        self.hyperpod = HyperPodStack(
            self.app, "HyperPod", config=config, cluster_access=cluster.cluster_access, env=env
        )
        cdk.Validations.of(self.app).add_plugins(cdk_nag.AwsSolutionsChecks())
        # Unacknowledged cdk-nag findings raise here.
        self.assembly: cx_api.CloudAssembly = self.app.synth()
        self.outdir = outdir
        self.template = assertions.Template.from_stack(self.hyperpod)
        self.raw = self.template.to_json()
        self.network_outputs = _template(self.assembly, "Network")["Outputs"]
        self.eks_outputs = _template(self.assembly, "Eks")["Outputs"]

    def only(self, resource_type: str) -> tuple[str, dict[str, Any]]:
        found = self.template.find_resources(resource_type)
        assert len(found) == 1, f"expected one {resource_type}, found {sorted(found)}"
        return next(iter(found.items()))

    def logical_id(self, construct: cdk.IResource) -> str:
        return self.hyperpod.get_logical_id(construct.node.default_child)

    def cluster_config(self) -> dict[str, Any]:
        return self.only("Custom::HyperPodCluster")[1]["Properties"]["ClusterConfig"]


def _template(assembly: cx_api.CloudAssembly, stack: str) -> dict[str, Any]:
    return assembly.get_stack_by_name(stack).template


@pytest.fixture(scope="module")
def default(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return Synthesized(load_config({}), tmp_path_factory.mktemp("default"))


@pytest.fixture(scope="module")
def features(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return Synthesized(load_config({}, FEATURES), tmp_path_factory.mktemp("features"))


# --- the request ---------------------------------------------------------------------------------------


def test_instance_groups_follow_the_config(default: Synthesized) -> None:
    config = load_config({}).hyperpod
    groups = default.cluster_config()["InstanceGroups"]
    role = {"Fn::GetAtt": [default.logical_id(default.hyperpod.execution_role), "Arn"]}
    assert [g["InstanceGroupName"] for g in groups] == [g.name for g in config.instance_groups]
    for spec, group in zip(groups, config.instance_groups, strict=True):
        assert spec["InstanceType"] == group.instance_type
        assert spec["InstanceCount"] == group.count
        assert spec["ThreadsPerCore"] == group.threads_per_core
        assert spec["ExecutionRole"] == role
        assert spec["InstanceStorageConfigs"] == [
            {"EbsVolumeConfig": {"VolumeSizeInGB": group.ebs_volume_gb}}
        ]
        assert spec.get("OnStartDeepHealthChecks", []) == list(group.deep_health_checks)
        assert "KubernetesConfig" not in spec  # no labels or taints in the default config
    assert default.cluster_config()["ClusterName"] == config.cluster_name
    assert default.cluster_config()["NodeRecovery"] == config.node_recovery
    # Continuous: InService once cluster-level resources are ready, whatever deep health checks take.
    assert default.cluster_config()["NodeProvisioningMode"] == "Continuous"


def test_lifecycle_config_points_at_the_script_bucket(default: Synthesized) -> None:
    bucket = default.logical_id(default.hyperpod.lifecycle.bucket)
    for group in default.cluster_config()["InstanceGroups"]:
        assert group["LifeCycleConfig"] == {
            "SourceS3Uri": {"Fn::Join": ["", ["s3://", {"Ref": bucket}, "/"]]},
            "OnCreate": "on_create.sh",
        }
    assert (SCRIPTS_DIR / "on_create.sh").is_file()


def test_vpc_config_imports_node_security_group_and_the_compute_subnet(default: Synthesized) -> None:
    network = default.network
    vpc = default.cluster_config()["VpcConfig"]
    group = network.get_logical_id(network.node_security_group.node.default_child)
    # One subnet (one AZ) for EFA and for locality with FSx: the network stack's compute subnet.
    subnets = [network.get_logical_id(network.compute_subnet.node.default_child)]
    assert [_exported(default.network_outputs, i) for i in vpc["SecurityGroupIds"]] == [
        {"Fn::GetAtt": [group, "GroupId"]}
    ]
    assert [_exported(default.network_outputs, i) for i in vpc["Subnets"]] == [{"Ref": s} for s in subnets]


def test_orchestrator_is_the_eks_stacks_cluster(default: Synthesized) -> None:
    arn = default.cluster_config()["Orchestrator"]["Eks"]["ClusterArn"]
    cluster = default.eks.get_logical_id(default.eks.cluster.node.default_child)
    assert _exported(default.eks_outputs, arn) == {"Fn::GetAtt": [cluster, "Arn"]}


def test_tags_are_a_key_value_list(default: Synthesized) -> None:
    assert default.cluster_config()["Tags"] == [{"Key": "project", "Value": "ray-on-hyperpod"}]


def test_optional_group_features(features: Synthesized) -> None:
    request = features.cluster_config()
    head, workers = request["InstanceGroups"]
    assert "TrainingPlanArn" not in head
    assert "KubernetesConfig" not in head
    assert workers["TrainingPlanArn"] == PLAN
    assert workers["ThreadsPerCore"] == 2
    assert workers["OnStartDeepHealthChecks"] == ["InstanceStress"]
    assert workers["KubernetesConfig"] == {
        "Labels": {"ray.io/node-type": "worker"},
        # A taint without a value omits Value: the API's minimum length is 1.
        "Taints": [
            {"Key": "nvidia.com/gpu", "Effect": "NoSchedule", "Value": "present"},
            {"Key": "dedicated", "Effect": "NoExecute"},
        ],
    }
    assert request["NodeProvisioningMode"] == "Continuous"
    assert request["Tags"] == [
        {"Key": "owner", "Value": "ml-platform"},
        {"Key": "project", "Value": "ray-on-hyperpod"},
    ]


@pytest.mark.parametrize("app", ["default", "features"])
def test_request_passes_the_handlers_coercion_and_botocores_model(
    app: str, request: pytest.FixtureRequest
) -> None:
    synthesized: Synthesized = request.getfixturevalue(app)
    resolved = _as_cloudformation_sends(_fake_resolve(synthesized, synthesized.cluster_config()))
    shape = botocore.session.get_session().get_service_model("sagemaker").operation_model("CreateCluster")
    # The handler's own path: strings back to the model's types, then botocore's validator (raises).
    coerced = cfn_coerce.coerce_request(resolved, shape.input_shape, "ClusterConfig")
    assert coerced["InstanceGroups"][0]["InstanceCount"] == 1
    assert coerced["InstanceGroups"][0]["LifeCycleConfig"]["SourceS3Uri"].startswith("s3://sagemaker-")


def test_handler_creates_the_synthesized_cluster_in_moto(
    default: Synthesized, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The construct's properties, as CloudFormation delivers them, through the handler's own entry points."""
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    properties = {
        "ServiceToken": "arn:aws:lambda:us-west-2:123456789012:function:framework-onEvent",
        "ClusterConfig": _as_cloudformation_sends(_fake_resolve(default, default.cluster_config())),
    }
    event = {
        "RequestType": "Create",
        "RequestId": "r1",
        "StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/HyperPod/0a1b2c3d",
        "LogicalResourceId": "HyperPodCluster701F7C41",
        "ResourceProperties": properties,
    }
    with mock_aws():
        client = boto3.client("sagemaker", region_name=REGION)
        monkeypatch.setattr(handler, "_client", lambda: client)
        created = handler.on_event(event, None)
        done = handler.is_complete({**event, **created}, None)
    assert created["PhysicalResourceId"] == "ray-hyperpod"
    assert done["IsComplete"] is True
    assert done["Data"]["ClusterName"] == "ray-hyperpod"


def test_cluster_request_is_plain_python() -> None:
    config = load_config({}, FEATURES).hyperpod
    request = cluster_request(
        config,
        tags={},
        eks_cluster_arn="arn:aws:eks:us-west-2:123456789012:cluster/c",
        security_group_ids=["sg-1"],
        subnet_ids=["subnet-1"],
        execution_role_arn="arn:aws:iam::123456789012:role/r",
        source_s3_uri="s3://sagemaker-x/",
        on_create="on_create.sh",
    )
    assert "Tags" not in request  # an empty list would be sent as a no-op; omitted instead
    assert request["VpcConfig"] == {"SecurityGroupIds": ["sg-1"], "Subnets": ["subnet-1"]}


# --- the provider --------------------------------------------------------------------------------------


def test_provider_polls_every_30s_and_the_handler_stops_itself_first(default: Synthesized) -> None:
    _, machine = default.only("AWS::StepFunctions::StateMachine")
    definition = json.loads("".join(p if isinstance(p, str) else "ARN" for p in _join(machine)))
    retry = definition["States"]["framework-isComplete-task"]["Retry"][0]
    assert retry["IntervalSeconds"] == 30
    assert retry["BackoffRate"] == 1
    # The framework's own timeout is a backstop past the handler's budget, so users see the handler's message.
    budget = int(
        _user_function(default.raw, "index.is_complete")["Environment"]["Variables"]["WAIT_BUDGET_SECONDS"]
    )
    assert budget == 45 * 60
    assert retry["IntervalSeconds"] * retry["MaxAttempts"] == 50 * 60 > budget + retry["IntervalSeconds"]
    assert machine["Properties"]["LoggingConfiguration"]["Level"] == "ALL"


def test_handlers(default: Synthesized) -> None:
    handlers = default.template.find_resources(
        "AWS::Lambda::Function",
        {"Properties": {"Handler": assertions.Match.string_like_regexp(r"^index\.(on_event|is_complete)$")}},
    )
    assert sorted(h["Properties"]["Handler"] for h in handlers.values()) == [
        "index.is_complete",
        "index.on_event",
    ]
    for handler in handlers.values():
        props = handler["Properties"]
        assert props["Runtime"] == "python3.14"
        assert 120 <= props["Timeout"] <= 300
        group = props["LoggingConfig"]["LogGroup"]["Ref"]
        assert default.raw["Resources"][group]["Properties"]["RetentionInDays"] == 30


def test_every_log_group_has_retention_and_is_removed(default: Synthesized) -> None:
    groups = default.template.find_resources("AWS::Logs::LogGroup")
    assert len(groups) >= 4  # handler, provider framework, waiter, bucket deployment
    for group in groups.values():
        assert group["Properties"]["RetentionInDays"] == 30
        assert group["DeletionPolicy"] == "Delete"


# --- IAM -----------------------------------------------------------------------------------------------


def test_handler_role_passes_only_the_execution_role(default: Synthesized) -> None:
    statements = _policy_statements(default, default.hyperpod.cluster.handler_role)
    execution_role = {"Fn::GetAtt": [default.logical_id(default.hyperpod.execution_role), "Arn"]}
    passes = [s for s in statements if "iam:PassRole" in _list(s["Action"])]
    assert passes == [
        {
            "Action": "iam:PassRole",
            "Condition": {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            "Effect": "Allow",
            "Resource": execution_role,
            "Sid": "PassExecutionRole",
        }
    ]


def test_handler_role_has_no_service_wildcards(default: Synthesized) -> None:
    statements = _policy_statements(default, default.hyperpod.cluster.handler_role)
    actions = [a for s in statements for a in _list(s["Action"])]
    assert not [a for a in actions if "*" in a]
    assert {a for a in actions if a.startswith("sagemaker:")} == {
        "sagemaker:CreateCluster",
        "sagemaker:DescribeCluster",
        "sagemaker:UpdateCluster",
        "sagemaker:DeleteCluster",
        "sagemaker:AddTags",
        "sagemaker:DeleteTags",
        "sagemaker:ListTags",
    }
    cluster = next(s for s in statements if s.get("Sid") == "Cluster")
    assert _join_text(cluster["Resource"]).endswith(":cluster/*")
    assert all(s["Resource"] != "*" for s in statements if s.get("Sid") != "DescribeNetwork")


def test_handler_role_covers_eks_access_entries(default: Synthesized) -> None:
    statements = {
        s["Sid"]: s for s in _policy_statements(default, default.hyperpod.cluster.handler_role) if "Sid" in s
    }
    cluster = default.eks.get_logical_id(default.eks.cluster.node.default_child)
    eks_cluster = statements["EksCluster"]
    assert set(_list(eks_cluster["Action"])) == {"eks:DescribeCluster"}
    assert _exported(default.eks_outputs, eks_cluster["Resource"]) == {"Fn::GetAtt": [cluster, "Arn"]}
    # Access entries for the nodes' execution role only: the handler cannot admit another principal.
    entry = statements["EksNodeAccessEntry"]
    assert _list(entry["Action"]) == ["eks:CreateAccessEntry"]
    assert _exported(default.eks_outputs, entry["Resource"]) == {"Fn::GetAtt": [cluster, "Arn"]}
    execution_role = default.logical_id(default.hyperpod.execution_role)
    assert entry["Condition"] == {"ArnEquals": {"eks:principalArn": {"Fn::GetAtt": [execution_role, "Arn"]}}}
    # access-entry/<this EKS cluster's name>/*: only its own cluster's entries.
    parts = statements["EksAccessEntries"]["Resource"]["Fn::Join"][1]
    assert parts[-1] == f":access-entry/{default.eks.cluster_name}/*"
    clusters = _template(default.assembly, "Eks")["Resources"]
    assert clusters[cluster]["Properties"]["Name"] == default.eks.cluster_name
    assert statements["HyperPodServiceLinkedRole"]["Condition"] == {
        "StringEquals": {"iam:AWSServiceName": "hyperpod.sagemaker.amazonaws.com"}
    }


def test_training_plans_are_named_exactly(features: Synthesized) -> None:
    statements = _policy_statements(features, features.hyperpod.cluster.handler_role)
    plans = next(s for s in statements if s.get("Sid") == "TrainingPlans")
    assert plans["Resource"] == PLAN


def test_execution_role(default: Synthesized) -> None:
    role_id = default.logical_id(default.hyperpod.execution_role)
    role = default.raw["Resources"][role_id]["Properties"]
    # Confused-deputy guard: only on behalf of this account (aws:SourceAccount).
    assert role["AssumeRolePolicyDocument"]["Statement"] == [
        {
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}},
            "Effect": "Allow",
            "Principal": {"Service": "sagemaker.amazonaws.com"},
        }
    ]
    assert _join_text(role["ManagedPolicyArns"][0]).endswith(
        ":iam::aws:policy/AmazonSageMakerClusterInstanceRolePolicy"
    )
    statements = {s["Sid"]: s for s in _policy_statements(default, default.hyperpod.execution_role)}
    assert set(statements) >= {
        "HyperPodNetwork",
        "VpcCniTagEni",
        "EcrLogin",
        "EcrPull",
        "EksCluster",
        "LifecycleScripts",
    }
    assert "eks-auth:AssumeRoleForPodIdentity" in _list(statements["EksCluster"]["Action"])
    bucket = default.logical_id(default.hyperpod.lifecycle.bucket)
    assert statements["LifecycleScripts"]["Resource"] == {
        "Fn::Join": ["", [{"Fn::GetAtt": [bucket, "Arn"]}, "/*"]]
    }


SAMPLE_ROLE = Path(__file__).parent / "data" / "hyperpod_execution_role_sample.json"
PARTITION = '<{"Ref": "AWS::Partition"}>'  # how _join_text shows the stack's partition


def test_execution_role_grants_what_aws_sample_grants_for_the_network(default: Synthesized) -> None:
    """AWS's HyperPod EKS execution role (the sample's statements, committed with their source and commit):
    every managed policy it attaches is attached, and every (action, resource) pair of its network statements
    is granted on the same resource here."""
    sample = json.loads(SAMPLE_ROLE.read_text())
    role = default.raw["Resources"][default.logical_id(default.hyperpod.execution_role)]["Properties"]
    attached = {_join_text(arn).rsplit("/", 1)[-1] for arn in role["ManagedPolicyArns"]}
    assert attached == set(sample["managed_policies"])

    def pairs(statements: list[dict[str, Any]]) -> set[tuple[str, str]]:
        # The sample names the aws partition; ours is the stack's: compare the partition-neutral text.
        return {
            (action, _join_text(resource).replace(PARTITION, "aws"))
            for s in statements
            if s["Effect"] == "Allow"
            for action in _list(s["Action"])
            for resource in _list(s["Resource"])
        }

    ours = pairs(_policy_statements(default, default.hyperpod.execution_role))
    wanted = pairs(sample["statements"])
    assert wanted - ours == set()


# --- the bucket ----------------------------------------------------------------------------------------


def test_bucket_is_private_encrypted_tls_only_and_removed(default: Synthesized) -> None:
    bucket_id, bucket = default.only("AWS::S3::Bucket")
    props = bucket["Properties"]
    assert bucket["DeletionPolicy"] == "Delete"
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
        "ServerSideEncryptionByDefault"
    ] == {"SSEAlgorithm": "AES256"}
    assert props["PublicAccessBlockConfiguration"] == dict.fromkeys(
        ["BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"], True
    )
    assert props["BucketName"]["Fn::Join"][1][0].startswith("sagemaker-")
    default.template.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "Bucket": {"Ref": bucket_id},
            "PolicyDocument": {
                "Statement": assertions.Match.array_with(
                    [
                        assertions.Match.object_like(
                            {"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
                        )
                    ]
                )
            },
        },
    )
    default.template.has_resource_properties(
        "Custom::S3AutoDeleteObjects", {"BucketName": {"Ref": bucket_id}}
    )


@pytest.mark.parametrize("prefix", ["ray", "a-very-long-prefix-abcdef"])
@pytest.mark.parametrize("region", ["us-east-1", "ap-southeast-5", None])
def test_bucket_name_fits_s3s_limit(prefix: str, region: str | None) -> None:
    stack = cdk.Stack(cdk.App(), "S", env=cdk.Environment(account=ACCOUNT, region=region))
    name = bucket_name(stack, prefix)
    resolved = name if region else name.replace(stack.region, "x" * 14)
    assert resolved.startswith("sagemaker-")
    assert len(resolved) <= MAX_BUCKET_NAME
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]*[a-z0-9]", resolved)


@pytest.mark.parametrize("region", ["ap-southeast-5", None])
def test_prefixes_sharing_their_start_get_distinct_buckets(region: str | None) -> None:
    """Prefixes that differ only past the truncation point still name two buckets (hash of the whole)."""
    stack = cdk.Stack(cdk.App(), "S", env=cdk.Environment(account=ACCOUNT, region=region))
    prefixes = ["team-alpha-training-run1", "team-alpha-training-run2", "team-alpha-training-run"]
    names = {bucket_name(stack, prefix) for prefix in prefixes}
    assert len(names) == len(prefixes)
    assert bucket_name(stack, "ray-hyperpod").startswith("sagemaker-ray-hyperpod-lc-")  # short: unchanged


def test_on_create_script_is_valid_bash() -> None:
    script = SCRIPTS_DIR / "on_create.sh"
    assert os.access(script, os.X_OK)
    subprocess.run(["bash", "-n", str(script)], check=True)


def _run_on_create_functions(body: str) -> str:
    """Source on_create.sh under `set -u` (as it runs), node commands replaced by shell functions."""
    script = SCRIPTS_DIR / "on_create.sh"
    program = f'set -Eeuo pipefail\nsource {script}\nsleep() {{ :; }}\nlog() {{ echo "$*"; }}\n{body}'
    result = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=30, check=True)
    return result.stdout


def test_on_create_waits_for_the_images_own_nvme_mount() -> None:
    out = _run_on_create_functions(
        "has_instance_store() { return 0; }\n"
        "calls=0; mountpoint() { calls=$((calls + 1)); ((calls >= 4)); }\n"
        "wait_for_nvme_mount"
    )
    assert out.strip() == "/opt/dlami/nvme mounted (waited 15s)"  # three 5 s polls, no mkfs or mdadm


def test_on_create_gives_up_on_the_nvme_after_120_seconds_and_skips_instances_without_one() -> None:
    out = _run_on_create_functions(
        "has_instance_store() { return 0; }\nmountpoint() { return 1; }\nwait_for_nvme_mount"
    )
    assert out.strip() == "/opt/dlami/nvme not mounted after 120s; using /opt/sagemaker if it is mounted"
    out = _run_on_create_functions("has_instance_store() { return 1; }\nwait_for_nvme_mount")
    assert out.strip() == "no instance-store NVMe on this instance"


def test_on_create_bind_step_survives_set_u_with_nothing_to_restart() -> None:
    # No unit active: the restart list stays empty, which bash 4.2 under set -u only allows behind a guard.
    out = _run_on_create_functions(
        "systemctl() { return 1; }\nmountpoint() { return 0; }\nbind_state_dirs /opt/sagemaker"
    )
    assert out.split("\n")[:2] == [
        "/var/lib/containerd already mounted; leaving it",
        "/var/lib/kubelet already mounted; leaving it",
    ]


def test_on_create_uses_no_mdadm_or_mkfs() -> None:
    text = (SCRIPTS_DIR / "on_create.sh").read_text()
    assert "mdadm" not in text and "mkfs" not in text


# --- ordering ------------------------------------------------------------------------------------------


def test_cluster_waits_for_its_roles_and_scripts(default: Synthesized) -> None:
    _, resource = default.only("Custom::HyperPodCluster")
    hyperpod = default.hyperpod
    execution_role = hyperpod.execution_role
    handler_role = hyperpod.cluster.handler_role
    deployment = hyperpod.lifecycle.deployment.node.find_child("CustomResource").node.default_child
    expected = {
        hyperpod.get_logical_id(execution_role.node.default_child),
        hyperpod.get_logical_id(execution_role.node.find_child("DefaultPolicy").node.default_child),
        hyperpod.get_logical_id(handler_role.node.default_child),
        hyperpod.get_logical_id(handler_role.node.find_child("DefaultPolicy").node.default_child),
        hyperpod.get_logical_id(deployment),
    }
    assert expected <= set(resource["DependsOn"])


def test_hyperpod_stack_depends_on_eks_and_network(default: Synthesized) -> None:
    artifact = default.assembly.get_stack_by_name("HyperPod")
    assert {d.id for d in artifact.dependencies} >= {"Eks", "Network"}


def test_outputs(default: Synthesized) -> None:
    cluster_id, _ = default.only("Custom::HyperPodCluster")
    outputs = default.raw["Outputs"]
    assert outputs["HyperPodClusterName"]["Value"] == {"Fn::GetAtt": [cluster_id, "ClusterName"]}
    assert outputs["HyperPodClusterArn"]["Value"] == {"Fn::GetAtt": [cluster_id, "ClusterArn"]}


# --- cdk-nag and cfn-lint -----------------------------------------------------------------------------------


@pytest.mark.parametrize("app", ["default", "features"])
def test_cdk_nag_passes_with_reasons(app: str, request: pytest.FixtureRequest) -> None:
    synthesized: Synthesized = request.getfixturevalue(app)
    report = json.loads((synthesized.outdir / "validation-report.json").read_text())
    # cdk-nag's report; the other one is the app's own warnings (Construct Annotations).
    (nag,) = [plugin for plugin in report["pluginReports"] if plugin["pluginName"] == "AwsSolutions"]
    assert nag["conclusion"] == "success"
    assert nag["violations"] == []
    ours = [v for v in nag["suppressedViolations"] if _in_stack(v, "HyperPod/")]
    assert ours, "the HyperPod stack's acknowledgments should show up as suppressed findings"
    assert all(len(v["reason"]) > 40 for v in ours)


@pytest.mark.parametrize("app", ["default", "features"])
def test_cfn_lint_finds_nothing(app: str, request: pytest.FixtureRequest) -> None:
    synthesized: Synthesized = request.getfixturevalue(app)
    findings = cfn_lint([synthesized.assembly.get_stack_by_name("HyperPod").template_full_path])
    assert findings == [], json.dumps(findings, indent=1)[:4000]


# --- wait budget ---------------------------------------------------------------------------------------

# CloudFormation's limits: a custom resource waits at most ServiceTimeout (1 to 3600 s, default 3600); a wait
# condition at most its Timeout, which may not exceed 12 hours.
CUSTOM_RESOURCE_LIMIT = 3600
WAIT_CONDITION_LIMIT = 43200


def longest_waits(templates: dict[str, dict[str, Any]]) -> dict[str, tuple[float, float]]:
    """For every custom resource and wait condition of an app: (longest time it can keep CloudFormation
    waiting, the limit CloudFormation applies), computed from the templates.

    A Provider-framework resource: its on_event timeout, then the waiter. A handler with its own budget
    (WAIT_BUDGET_SECONDS) fails once the budget is spent, so it waits at most budget + one interval + one
    is_complete run, however slow each poll is. Without one, the waiter's count bounds it (interval x
    attempts,
    polls taken as instant). A plain Lambda-backed resource: its function's timeout.
    """
    waits = {}
    for stack, template in templates.items():
        for logical_id, resource in template["Resources"].items():
            props = resource.get("Properties", {})
            if resource["Type"] == "AWS::CloudFormation::WaitCondition":
                waits[f"{stack}/{logical_id}"] = (float(props["Timeout"]), WAIT_CONDITION_LIMIT)
            elif (
                resource["Type"].startswith("Custom::")
                or resource["Type"] == "AWS::CloudFormation::CustomResource"
            ):
                limit = float(props.get("ServiceTimeout", CUSTOM_RESOURCE_LIMIT))
                waits[f"{stack}/{logical_id}"] = (
                    _provider_wait(templates, stack, props["ServiceToken"]),
                    limit,
                )
    return waits


def _provider_wait(templates: dict[str, dict[str, Any]], stack: str, token: Any) -> float:
    stack, function = _function(templates, stack, token)
    variables = function.get("Environment", {}).get("Variables", {})
    if "USER_ON_EVENT_FUNCTION_ARN" not in variables:
        return float(function["Timeout"])
    resources = templates[stack]["Resources"]
    on_event = resources[variables["USER_ON_EVENT_FUNCTION_ARN"]["Fn::GetAtt"][0]]["Properties"]
    if "WAITER_STATE_MACHINE_ARN" not in variables:
        return float(on_event["Timeout"])
    machine = resources[variables["WAITER_STATE_MACHINE_ARN"]["Ref"]]
    definition = json.loads("".join(p if isinstance(p, str) else "X" for p in _join(machine)))
    retry = definition["States"]["framework-isComplete-task"]["Retry"][0]
    is_complete = resources[variables["USER_IS_COMPLETE_FUNCTION_ARN"]["Fn::GetAtt"][0]]["Properties"]
    budget = is_complete.get("Environment", {}).get("Variables", {}).get("WAIT_BUDGET_SECONDS")
    if budget is not None:
        return on_event["Timeout"] + float(budget) + retry["IntervalSeconds"] + is_complete["Timeout"]
    return on_event["Timeout"] + retry["IntervalSeconds"] * retry["MaxAttempts"]


def _function(templates: dict[str, dict[str, Any]], stack: str, token: Any) -> tuple[str, dict[str, Any]]:
    """The Lambda function a ServiceToken names, following cross-stack references to their producer."""
    if "Fn::GetStackOutput" in token:
        name = token["Fn::GetStackOutput"]["OutputName"]
        stack = next(s for s, t in templates.items() if name in t.get("Outputs", {}))
        token = templates[stack]["Outputs"][name]["Value"]
    logical_id = token["Fn::GetAtt"][0]
    return stack, templates[stack]["Resources"][logical_id]["Properties"]


def test_no_custom_resource_of_the_default_app_can_outlast_cloudformations_limits(
    templates: dict[str, dict[str, Any]],
) -> None:
    waits = longest_waits(templates)
    cluster = next(key for key in waits if key.startswith("HyperPod/HyperPodCluster"))
    # on_event 300 s + budget 2700 s + one 30 s interval + the last is_complete 300 s.
    assert waits[cluster] == (3330, 3600)
    assert not any(key.endswith("NodeWaitCondition") for key in waits)  # the node wait is opt-in
    over = {key: wait for key, wait in waits.items() if wait[0] > wait[1]}
    assert over == {}


def test_node_wait_is_a_wait_condition_within_twelve_hours_after_the_cluster(
    opt_in: tuple[Any, dict[str, dict[str, Any]]],
) -> None:
    _, templates = opt_in
    waits = longest_waits(templates)
    over = {key: wait for key, wait in waits.items() if wait[0] > wait[1]}
    assert over == {}
    resources = templates["HyperPod"]["Resources"]
    (condition_id,) = [k for k, r in resources.items() if r["Type"] == "AWS::CloudFormation::WaitCondition"]
    (cluster_id,) = [k for k, r in resources.items() if r["Type"] == "Custom::HyperPodCluster"]
    condition = resources[condition_id]
    assert waits[f"HyperPod/{condition_id}"] == (43200, 43200)
    assert cluster_id in condition["DependsOn"]
    (rule_id,) = [k for k, r in resources.items() if r["Type"] == "AWS::Events::Rule"]
    rule = resources[rule_id]
    assert cluster_id in rule["DependsOn"]  # polling starts after the cluster, and stops before it goes
    assert rule["Properties"]["ScheduleExpression"] == "rate(5 minutes)"
    (target,) = rule["Properties"]["Targets"]
    transformer = target["InputTransformer"]
    # A scheduled event names its rule in resources[0]: the poller disables the rule after signalling.
    assert transformer["InputPathsMap"] == {"resources-0-": "$.resources[0]"}
    parts = transformer["InputTemplate"]["Fn::Join"][1]
    assert {
        "Ref": next(k for k, r in resources.items() if r["Type"].endswith("WaitConditionHandle"))
    } in parts
    text = "".join(p if isinstance(p, str) else json.dumps(p) for p in parts)
    assert '"timeoutSeconds":43200,' in text and text.endswith('"ruleArn":<resources-0->}')
    assert f'"conditionLogicalId":"{condition_id}"' in text  # the deadline counts from its start
    assert '"stackId":"{"Ref": "AWS::StackId"}"' in text
    poller = resources[target["Arn"]["Fn::GetAtt"][0]]["Properties"]
    assert poller["Handler"] == "node_wait.handler"
    disable = [
        r["Properties"]["PolicyDocument"]["Statement"]
        for r in resources.values()
        if r["Type"] == "AWS::IAM::Policy"
        and any(s["Action"] == "events:DisableRule" for s in r["Properties"]["PolicyDocument"]["Statement"])
    ]
    assert disable == [
        [{"Action": "events:DisableRule", "Effect": "Allow", "Resource": {"Fn::GetAtt": [rule_id, "Arn"]}}]
    ]


def _node_wait_ids(waits_for: str, minutes: int = 60) -> set[str]:
    """Logical ids of a NodeWait in a bare stack, waiting for `waits_for`."""
    stack = cdk.Stack(cdk.App(), "Bare")
    cluster = cdk.CustomResource(stack, "Cluster", service_token="arn:aws:lambda:us-east-1:1:function:x")
    NodeWait(
        stack,
        "NodeWait",
        cluster=cluster,
        cluster_name="ray-hp",
        waits_for=waits_for,
        handler_dir=HANDLER_DIR,
        timeout=cdk.Duration.minutes(minutes),
        log_retention=cdk.aws_logs.RetentionDays.ONE_WEEK,
    )
    resources = assertions.Template.from_stack(stack).to_json()["Resources"]
    kinds = (
        "AWS::CloudFormation::WaitCondition",
        "AWS::CloudFormation::WaitConditionHandle",
        "AWS::Events::Rule",
    )
    return {key for key, r in resources.items() if r["Type"] in kinds}


def test_a_new_wait_condition_and_schedule_for_each_thing_waited_for() -> None:
    """A wait condition is only evaluated when created, and the poller disables its rule: a scale-up, a
    rename or a new wait time gets a new handle, condition and enabled rule; an unchanged one keeps them."""
    base = hyperpod_cluster._waits_for(load_config({}).hyperpod)
    scaled = base.replace("=", "=9", 1)  # one group's target count changed
    assert _node_wait_ids(base) == _node_wait_ids(base)
    assert _node_wait_ids(base).isdisjoint(_node_wait_ids(scaled))
    assert len(_node_wait_ids(base)) == 3


def test_what_the_node_wait_waits_for_names_the_cluster_counts_and_minutes() -> None:
    config = load_config({}).hyperpod
    text = hyperpod_cluster._waits_for(config)
    assert text.startswith(f"{config.cluster_name}|")
    assert all(f"{g.name}={g.count}" in text for g in config.instance_groups)
    assert text.endswith(f"|{config.node_wait_minutes}")


# --- placement, names, chart pin and config checks
# ------------------------------------------------------------


@pytest.fixture(scope="module")
def opt_in(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, dict[str, Any]]]:
    """The whole app with the opt-in node wait, another prefix and the second AZ for compute."""
    config = load_config(
        {"prefix": "team-b", "hyperpod.wait_for_nodes": "true", "network.compute_subnet_index": "1"}
    )
    stacks, assembly = synth_app(config, tmp_path_factory.mktemp("opt-in"))
    return stacks, {stack.id: stack.template for stack in assembly.stacks}


def test_nodes_and_fsx_share_the_chosen_subnet(opt_in: tuple[Any, dict[str, dict[str, Any]]]) -> None:
    stacks, templates = opt_in
    network = stacks.network
    private = network.vpc.select_subnets(subnet_type=cdk.aws_ec2.SubnetType.PRIVATE_WITH_EGRESS).subnets
    ids = [network.get_logical_id(subnet.node.default_child) for subnet in private]
    assert network.get_logical_id(network.compute_subnet.node.default_child) == ids[1]
    expected = {"Ref": ids[1]}
    outputs = templates["Network"]["Outputs"]
    cluster = next(
        r for r in templates["HyperPod"]["Resources"].values() if r["Type"] == "Custom::HyperPodCluster"
    )
    assert [
        _exported(outputs, s) for s in cluster["Properties"]["ClusterConfig"]["VpcConfig"]["Subnets"]
    ] == [expected]
    fsx = next(r for r in templates["Storage"]["Resources"].values() if r["Type"] == "AWS::FSx::FileSystem")
    assert [_exported(outputs, s) for s in fsx["Properties"]["SubnetIds"]] == [expected]


def test_cluster_name_defaults_to_the_prefix(opt_in: tuple[Any, dict[str, dict[str, Any]]]) -> None:
    _, templates = opt_in
    cluster = next(
        r for r in templates["HyperPod"]["Resources"].values() if r["Type"] == "Custom::HyperPodCluster"
    )
    assert cluster["Properties"]["ClusterConfig"]["ClusterName"] == "team-b"
    assert load_config({}).hyperpod.cluster_name == "ray-hyperpod"
    assert load_config({"prefix": "team-b", "hyperpod.cluster_name": "shared-hp"}).hyperpod.cluster_name == (
        "shared-hp"
    )


def test_chart_pin_is_a_full_commit_id_of_a_release() -> None:
    chart = load_config({}).hyperpod.dependency_chart
    assert re.fullmatch(r"[0-9a-f]{40}", chart.commit)
    # Tag v3.9.0 of aws/sagemaker-hyperpod-cli, seen in a snapshot of the repository (README "HyperPod").
    assert chart.commit == "b01cf90676553a711ab1a8ac51422adbb09aef6b"
    with pytest.raises(ConfigError, match="full 40-character lower-case git commit id"):
        load_config({"hyperpod.dependency_chart.commit": "v3.9.0"})


@pytest.mark.parametrize(
    ("group", "message"),
    [
        (
            {
                "name": "cpu",
                "instance_type": "ml.m5.2xlarge",
                "count": 2,
                "deep_health_checks": ["InstanceStress"],
            },
            "hyperpod.instance_groups[1]: deep_health_checks ['InstanceStress'] on ml.m5.2xlarge: HyperPod "
            "runs "
            "deep health checks only on GPU (ml.p*, ml.g*) or Trainium (ml.trn*) instance types; remove them",
        ),
        (
            {
                "name": "gpu",
                "instance_type": "ml.p5.48xlarge",
                "count": 1,
                "deep_health_checks": ["InstanceConnectivity"],
            },
            "hyperpod.instance_groups[1]: deep_health_checks InstanceConnectivity with count=1: the "
            "connectivity "
            "check needs a group of at least 2 instances; raise count or drop InstanceConnectivity",
        ),
    ],
)
def test_deep_health_checks_are_checked_in_one_clear_line(group: dict[str, Any], message: str) -> None:
    groups = [{"name": "head", "instance_type": "ml.m5.2xlarge", "count": 1}, group]
    values = {"hyperpod": {"instance_groups": groups}, "ray": {"worker_groups": []}}
    with pytest.raises(ConfigError) as err:
        load_config({}, values)
    assert err.value.problems == [message]


@pytest.mark.parametrize(
    "instance_type", ["ml.trn1.32xlarge", "ml.trn2.48xlarge", "ml.g6e.48xlarge", "ml.p4d.24xlarge"]
)
def test_deep_health_checks_are_accepted_on_gpu_and_trainium(instance_type: str) -> None:
    group = {
        "name": "accel",
        "instance_type": instance_type,
        "count": 2,
        "deep_health_checks": ["InstanceStress", "InstanceConnectivity"],
    }
    groups = [{"name": "head", "instance_type": "ml.m5.2xlarge", "count": 1}, group]
    load_config({}, {"hyperpod": {"instance_groups": groups}, "ray": {"worker_groups": []}})


def test_compute_subnet_must_exist() -> None:
    with pytest.raises(ConfigError, match=r"compute_subnet_index \(2\) must be < az_count \(2\)"):
        load_config({"network.compute_subnet_index": "2"})


# --- helpers -------------------------------------------------------------------------------------------


def _in_stack(violation: dict[str, Any], prefix: str) -> bool:
    return any(c["constructPath"].startswith(prefix) for c in violation["violatingConstructs"])


def _exported(outputs: dict[str, Any], value: Any) -> Any:
    """What a cross-stack reference in this stack reads from the producing stack's outputs.

    The app's cdk.json makes references weak (Fn::GetStackOutput); Fn::ImportValue is the strong form.
    """
    if "Fn::GetStackOutput" in value:
        return outputs[value["Fn::GetStackOutput"]["OutputName"]]["Value"]
    name = value["Fn::ImportValue"]
    return next(o["Value"] for o in outputs.values() if o.get("Export", {}).get("Name") == name)


def _policy_statements(synthesized: Synthesized, role: Any) -> list[dict[str, Any]]:
    policy = role.node.find_child("DefaultPolicy").node.default_child
    resource = synthesized.raw["Resources"][synthesized.hyperpod.get_logical_id(policy)]
    return resource["Properties"]["PolicyDocument"]["Statement"]


def _user_function(template: dict[str, Any], handler: str) -> dict[str, Any]:
    return next(
        r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Lambda::Function" and r["Properties"].get("Handler") == handler
    )


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _join(machine: dict[str, Any]) -> list[Any]:
    return machine["Properties"]["DefinitionString"]["Fn::Join"][1]


def _join_text(value: Any) -> str:
    """A Fn::Join flattened to text, intrinsics shown as <...>: enough to check an ARN's shape."""
    if isinstance(value, str):
        return value
    if "Fn::Join" in value:
        delimiter, parts = value["Fn::Join"]
        return delimiter.join(_join_text(p) for p in parts)
    return f"<{json.dumps(value)}>"


def _fake_resolve(synthesized: Synthesized, value: Any) -> Any:
    """Replace CloudFormation intrinsics with plausible values, as CloudFormation would at deploy time."""
    if isinstance(value, list):
        return [_fake_resolve(synthesized, item) for item in value]
    if not isinstance(value, dict):
        return value
    intrinsic = _fake_intrinsic(synthesized, value)
    if intrinsic is not None:
        return intrinsic
    return {key: _fake_resolve(synthesized, item) for key, item in value.items()}


def _fake_intrinsic(synthesized: Synthesized, value: dict[str, Any]) -> str | None:
    if "Ref" in value:
        return _fake_ref(synthesized, value["Ref"])
    if "Fn::GetAtt" in value:
        logical_id, attribute = value["Fn::GetAtt"]
        assert attribute == "Arn", value
        return f"arn:aws:iam::{ACCOUNT}:role/{logical_id}"
    if "Fn::GetStackOutput" in value:
        return _fake_output(value["Fn::GetStackOutput"]["OutputName"])
    if "Fn::Join" in value:
        delimiter, parts = value["Fn::Join"]
        return delimiter.join(_fake_resolve(synthesized, part) for part in parts)
    assert not any(key.startswith("Fn::") for key in value), value
    return None


def _fake_ref(synthesized: Synthesized, name: str) -> str:
    pseudo = {"AWS::AccountId": ACCOUNT, "AWS::Region": REGION, "AWS::Partition": "aws"}
    if name in pseudo:
        return pseudo[name]
    resource = synthesized.raw["Resources"][name]
    assert resource["Type"] == "AWS::S3::Bucket", name
    return _fake_resolve(synthesized, resource["Properties"]["BucketName"])


def _fake_output(name: str) -> str:
    """A plausible value for another stack's output (or export), judged by its CDK-generated name."""
    if "SecurityGroup" in name:
        return "sg-0123456789abcdef0"
    if "Subnet" in name:
        return "subnet-0123456789abcdef0"
    assert re.search(r"Cluster[0-9A-F]{8}Arn", name), name
    return f"arn:aws:eks:{REGION}:{ACCOUNT}:cluster/ray-eks"


def _as_cloudformation_sends(value: Any) -> Any:
    """CloudFormation hands a custom resource every scalar as a string."""
    if isinstance(value, dict):
        return {key: _as_cloudformation_sends(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_cloudformation_sends(item) for item in value]
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def test_lifecycle_bucket_is_emptied_only_after_the_cluster_is_gone(default: Synthesized) -> None:
    """CloudFormation deletes the cluster before what it depends on: the bucket's auto-delete resource
    (which empties it) waits for the cluster's deletion."""
    auto_delete, _ = default.only("Custom::S3AutoDeleteObjects")
    _, resource = default.only("Custom::HyperPodCluster")
    assert auto_delete in resource["DependsOn"]
