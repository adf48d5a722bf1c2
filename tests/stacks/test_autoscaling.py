"""Opt-in autoscaling as synthesized from examples/autoscaling.yaml: the CreateCluster request against
botocore's model, the ClusterRole against AWS's documented policy, the Karpenter stack's place in create and
delete order, its objects against Karpenter's CRD schema and AWS's documented NodeClass fields, and a
scheduling check: every Ray worker pod of the autoscaled group is one the HyperPod provider would make a node
for (a broken copy is not)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import botocore.session
import jsonschema
import pytest
import yaml

from config import AppConfig, load_config
from scripts import summary
from stacks.app_stacks import AppStacks
from stacks.components.hyperpod_cluster import cluster_request
from stacks.manifests import write_manifests
from tests.k8s.karpenter_scheduling import admission_problems
from tests.stacks.test_teardown_order import Graph, manifest_of, of_type
from tests.support import REPO
from tests.support.apps import synth_app
from tests.support.handlers import load_handler
from tests.support.k8s_validation import crd_schema

EXAMPLE = REPO / "examples" / "autoscaling.yaml"
DOCUMENTED_ROLE = REPO / "tests" / "components" / "data" / "hyperpod_autoscaling_cluster_role.json"
KARPENTER_SCHEMAS = REPO / "k8s_charts" / "crd_schemas_karpenter"
# The HyperpodNodeClass spec as AWS documents it ("Create a NodeClass"): instanceGroups, the names of
# pre-created instance groups, "MaxItems: 10"; no other spec field is documented.
DOCUMENTED_NODECLASS = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "karpenter.sagemaker.amazonaws.com/v1"},
        "kind": {"const": "HyperpodNodeClass"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["instanceGroups"],
            "properties": {
                "instanceGroups": {
                    "type": "array",
                    "items": {"type": "string", "minLength": 1},
                    "minItems": 1,
                    "maxItems": 10,
                    "uniqueItems": True,
                }
            },
        },
    },
}
cfn_coerce = load_handler("hyperpod_cluster", "cfn_coerce")


class Example:
    def __init__(self, outdir: Path) -> None:
        self.config: AppConfig = load_config({}, yaml.safe_load(EXAMPLE.read_text()))
        self.stacks: AppStacks
        self.stacks, self.assembly = synth_app(self.config, outdir)
        self.templates = {stack.id: stack.template for stack in self.assembly.stacks}

    def objects(self, manifest: str) -> list[dict[str, Any]]:
        deployer = (
            self.stacks.karpenter.deployer if manifest == "KarpenterManifest" else self.stacks.ray.deployer
        )
        return deployer.charts[manifest].to_json()

    def one(self, manifest: str, kind: str) -> dict[str, Any]:
        found = [obj for obj in self.objects(manifest) if obj["kind"] == kind]
        assert len(found) == 1, found
        return found[0]

    def resources(self, stack: str, kind: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.templates[stack]["Resources"].items() if v["Type"] == kind}


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Example:
    # cdk-nag is on: an unacknowledged finding (the ClusterRole's documented wildcards) raises here.
    return Example(tmp_path_factory.mktemp("autoscaling"))


# --- the request ------------------------------------------------------------------------------------------


def _fake(value: Any) -> Any:
    """Intrinsics replaced by plausible values; every scalar a string, as CloudFormation sends them."""
    if isinstance(value, list):
        return [_fake(item) for item in value]
    if isinstance(value, dict):
        if "Fn::GetAtt" in value:
            return f"arn:aws:iam::123456789012:role/{value['Fn::GetAtt'][0]}"
        if "Fn::Join" in value:
            delimiter, parts = value["Fn::Join"]
            return delimiter.join(str(_fake(part)) for part in parts)
        if "Ref" in value or "Fn::GetStackOutput" in value or "Fn::ImportValue" in value:
            return "fake-" + json.dumps(value, sort_keys=True)[-20:].strip('"}{ ')
        return {key: _fake(item) for key, item in value.items()}
    return str(value).lower() if isinstance(value, bool) else str(value)


def _request(example: Example) -> dict[str, Any]:
    (cluster,) = example.resources("HyperPod", "Custom::HyperPodCluster").values()
    return cluster["Properties"]["ClusterConfig"]


def test_create_cluster_enables_karpenter_with_the_role_and_the_workers_at_zero(example: Example) -> None:
    request = _request(example)
    shape = botocore.session.get_session().get_service_model("sagemaker").operation_model("CreateCluster")
    # The handler's own path: strings back to the model's types, then botocore's validator (raises).
    coerced = cfn_coerce.coerce_request(_fake(request), shape.input_shape, "ClusterConfig")
    assert coerced["AutoScaling"] == {"Mode": "Enable", "AutoScalerType": "Karpenter"}
    assert coerced["NodeProvisioningMode"] == "Continuous"
    assert coerced["NodeRecovery"] == "Automatic"
    counts = {g["InstanceGroupName"]: g["InstanceCount"] for g in coerced["InstanceGroups"]}
    assert counts == {"head": 1, "workers": 0}
    assert all("OnStartDeepHealthChecks" not in g for g in coerced["InstanceGroups"])
    (role_id,) = [
        rid
        for rid, r in example.resources("HyperPod", "AWS::IAM::Role").items()
        if "AutoscalingClusterRole" in rid
    ]
    assert request["ClusterRole"] == {"Fn::GetAtt": [role_id, "Arn"]}


def test_the_default_request_has_no_autoscaling() -> None:
    request = cluster_request(
        load_config({}).hyperpod,
        tags={},
        eks_cluster_arn="arn:aws:eks:us-west-2:123456789012:cluster/c",
        security_group_ids=["sg-1"],
        subnet_ids=["subnet-1"],
        execution_role_arn="arn:aws:iam::123456789012:role/r",
        source_s3_uri="s3://sagemaker-x/",
        on_create="on_create.sh",
    )
    assert "AutoScaling" not in request and "ClusterRole" not in request


# --- the ClusterRole ---------------------------------------------------------------------------------------


def _partition_aws(value: Any) -> Any:
    """The synthesized value in the aws partition (the documented policy's ARNs are written for it)."""
    if isinstance(value, list):
        return [_partition_aws(item) for item in value]
    if isinstance(value, dict):
        if value == {"Ref": "AWS::Partition"}:
            return "aws"
        if "Fn::Join" in value:
            delimiter, parts = value["Fn::Join"]
            return delimiter.join(_partition_aws(part) for part in parts)
        return {key: _partition_aws(item) for key, item in value.items()}
    return value


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _normal(statement: dict[str, Any]) -> dict[str, Any]:
    """A statement compared for meaning: no Sid, single values as one-item lists, actions as a set."""
    normal = {key: value for key, value in statement.items() if key != "Sid"}
    normal["Action"] = sorted(_as_list(normal["Action"]))
    if "Resource" in normal:
        normal["Resource"] = sorted(_as_list(normal["Resource"]))
    if "Principal" in normal:
        normal["Principal"] = {k: sorted(_as_list(v)) for k, v in normal["Principal"].items()}
    for operators in normal.get("Condition", {}).values():
        for key, value in operators.items():
            operators[key] = sorted(_as_list(value))
    return normal


def _cluster_role(example: Example) -> tuple[str, dict[str, Any]]:
    roles = example.resources("HyperPod", "AWS::IAM::Role")
    (found,) = [
        (rid, role)
        for rid, role in roles.items()
        if "hyperpod.sagemaker.amazonaws.com" in json.dumps(role["Properties"]["AssumeRolePolicyDocument"])
    ]
    return found


def test_cluster_role_is_exactly_the_documented_one_statement_by_statement(example: Example) -> None:
    documented = json.loads(DOCUMENTED_ROLE.read_text())
    role_id, role = _cluster_role(example)
    trust = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert [_normal(s) for s in trust] == [_normal(s) for s in documented["trust_policy"]["Statement"]]
    assert "ManagedPolicyArns" not in role["Properties"]
    policies = [
        p
        for p in example.resources("HyperPod", "AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
    ]
    assert len(policies) == 1
    synthesized = _partition_aws(policies[0]["Properties"]["PolicyDocument"]["Statement"])
    expected = documented["permissions_policy"]["Statement"]
    assert len(synthesized) == len(expected)
    for ours, theirs in zip(synthesized, expected, strict=True):
        assert _normal(ours) == _normal(theirs)


def test_only_the_cluster_handler_may_pass_the_cluster_role(example: Example) -> None:
    role_id, _ = _cluster_role(example)
    passes = [
        statement
        for policy in example.resources("HyperPod", "AWS::IAM::Policy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if "iam:PassRole" in _as_list(statement["Action"])
        and statement["Resource"] == {"Fn::GetAtt": [role_id, "Arn"]}
    ]
    assert len(passes) == 1


# --- stack order ------------------------------------------------------------------------------------------


def test_karpenter_stack_sits_between_hyperpod_and_ray(example: Example) -> None:
    stacks = {stack.id: {dep.id for dep in stack.dependencies} for stack in example.assembly.stacks}
    assert "HyperPod" in stacks["Karpenter"]
    assert "Karpenter" in stacks["Ray"]


ORDER = [  # (deleted first, deleted later, why)
    (manifest_of("NodePool"), of_type("Custom::HyperPodCluster"), "Karpenter removes its nodes first"),
    (manifest_of("RayCluster"), manifest_of("NodePool"), "worker pods go before the pools that make nodes"),
]


@pytest.mark.parametrize(("first", "later", "why"), ORDER, ids=[why for _, _, why in ORDER])
def test_deleted_before(example: Example, first: Any, later: Any, why: str) -> None:
    graph = Graph(example.assembly)
    a, b = graph.find(first), graph.find(later)
    assert b in graph.depends_on(a), f"{a} must be deleted before {b}: {why}"
    assert a not in graph.depends_on(b)


def test_the_default_app_has_no_karpenter_stack(assembly: Any) -> None:
    assert "Karpenter" not in {stack.id for stack in assembly.stacks}


# --- the Karpenter objects ----------------------------------------------------------------------------------


def test_nodepool_validates_against_karpenters_own_crd_schema(example: Example) -> None:
    schema = crd_schema(KARPENTER_SCHEMAS.resolve(), "karpenter.sh", "v1", "NodePool")
    assert schema is not None
    pool = example.one("KarpenterManifest", "NodePool")
    jsonschema.Draft202012Validator(schema).validate(pool)
    broken = copy.deepcopy(pool)
    broken["spec"]["disruption"]["consolidationPolicy"] = "WhenIdle"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate(broken)


def test_nodepool_consolidates_only_empty_nodes_and_never_expires_them(example: Example) -> None:
    pool = example.one("KarpenterManifest", "NodePool")
    assert pool["spec"]["disruption"]["consolidationPolicy"] == "WhenEmpty"
    assert pool["spec"]["template"]["spec"]["expireAfter"] == "Never"
    assert pool["spec"]["limits"] == {"nvidia.com/gpu": "32"}  # 4 nodes x 8 GPUs


def test_nodeclass_has_only_the_documented_fields_and_names_the_autoscaled_groups(example: Example) -> None:
    nodeclass = example.one("KarpenterManifest", "HyperpodNodeClass")
    jsonschema.validate(nodeclass, DOCUMENTED_NODECLASS)
    assert nodeclass["spec"]["instanceGroups"] == ["workers"]


# --- scheduling ---------------------------------------------------------------------------------------------


def _worker_pod(example: Example) -> tuple[dict[str, Any], dict[str, Any]]:
    cluster = example.one("RayClusterManifest", "RayCluster")
    (worker,) = cluster["spec"]["workerGroupSpecs"]
    return worker, worker["template"]["spec"]


def _admission(example: Example, pod: dict[str, Any], pool: dict[str, Any] | None = None) -> list[str]:
    worker, _ = _worker_pod(example)
    return admission_problems(
        pod,
        nodepool=pool or example.one("KarpenterManifest", "NodePool"),
        nodeclass=example.one("KarpenterManifest", "HyperpodNodeClass"),
        group=example.config.hyperpod.group("workers"),
        max_replicas=worker["maxReplicas"],
    )


def test_worker_group_starts_at_zero_and_ray_autoscales_it(example: Example) -> None:
    cluster = example.one("RayClusterManifest", "RayCluster")
    worker, _ = _worker_pod(example)
    assert (worker["replicas"], worker["minReplicas"], worker["maxReplicas"]) == (0, 0, 4)
    assert cluster["spec"]["enableInTreeAutoscaling"] is True
    assert cluster["spec"]["autoscalerOptions"]["idleTimeoutSeconds"] == 300


def test_every_worker_pod_is_one_karpenter_would_make_a_node_for(example: Example) -> None:
    _, pod = _worker_pod(example)
    assert _admission(example, pod) == []


@pytest.mark.parametrize(
    ("breakage", "problem"),
    [
        (
            lambda pod, pool: pod["nodeSelector"].update(
                {"sagemaker.amazonaws.com/node-health-status": "Schedulable"}
            ),
            "no NodePool requirement or label defines",
        ),
        (
            lambda pod, pool: pool["spec"]["template"]["spec"].update(
                {"taints": [{"key": "dedicated", "value": "ray", "effect": "NoSchedule"}]}
            ),
            "does not tolerate taint",
        ),
        (
            lambda pod, pool: pod["containers"][0]["resources"]["requests"].update({"nvidia.com/gpu": 9}),
            "more than one ml.p5.48xlarge node gives a pod",
        ),
        (lambda pod, pool: pool["spec"].update({"limits": {"nvidia.com/gpu": "8"}}), "is short of 4 nodes"),
        (
            lambda pod, pool: pool["spec"]["template"]["spec"]["requirements"].append(
                {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot"]}
            ),
            "not one the HyperPod provider supports",
        ),
    ],
    ids=["health-label", "untolerated-taint", "too-many-gpus", "pool-limit", "unsupported-key"],
)
def test_a_broken_copy_is_refused(example: Example, breakage: Any, problem: str) -> None:
    _, pod = _worker_pod(example)
    pod, pool = copy.deepcopy(pod), copy.deepcopy(example.one("KarpenterManifest", "NodePool"))
    breakage(pod, pool)
    problems = _admission(example, pod, pool)
    assert any(problem in p for p in problems), problems


# --- price ------------------------------------------------------------------------------------------------


def test_idle_costs_at_most_a_hundredth_of_the_always_on_default(
    example: Example, default_app: tuple[AppStacks, Any]
) -> None:
    """The summary's figures, read from the synthesized templates and manifests of both apps."""
    plans = {}
    for name, (stacks, assembly) in {
        "example": (example.stacks, example.assembly),
        "default": default_app,
    }.items():
        write_manifests(stacks.all(), Path(assembly.directory))
        plans[name] = summary.read_plan(Path(assembly.directory))
    example_plan, default_plan = plans["example"], plans["default"]
    (workers,) = [g for g in example_plan.instance_groups if g.autoscaled_max]
    assert (workers.name, workers.count, workers.autoscaled_max) == ("workers", 0, 4)
    # Busy, the example costs what the default costs all the time (same 4 x ml.p5.48xlarge, same head).
    assert example_plan.busy_hourly_total == pytest.approx(default_plan.hourly_total, rel=0.01)
    idle, always_on = example_plan.hourly_total, default_plan.hourly_total
    print(f"hourly: idle ${idle:.2f}, busy ${example_plan.busy_hourly_total:.2f}, always-on ${always_on:.2f}")
    assert idle <= always_on / 100
    table = "\n".join(summary.price_table(example_plan))
    assert "idle (autoscaled 0-4)" in table and "Busy (every autoscaled group at its most nodes)" in table
