"""The SageMaker HyperPod cluster: its instance groups and node recovery."""

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from .base import Section
from .instance_types import known_gpus

# SageMaker's own patterns for ClusterName and InstanceGroupName (botocore service model).
NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
INSTANCE_TYPE = re.compile(r"^ml\.[a-z0-9-]+\.[a-z0-9]+$")
TRAINING_PLAN_ARN = re.compile(r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:training-plan/[a-z0-9-]+$")
LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
DeepHealthCheck = Literal["InstanceStress", "InstanceConnectivity"]
# Deep health checks exercise accelerators (DCGM on NVIDIA GPUs, the Neuron stack on Trainium); HyperPod
# runs them only on GPU (ml.p*, ml.g*) and Trainium (ml.trn*) instance types.
ACCELERATED_FAMILY = re.compile(r"ml\.(p|g|trn)\d[a-z0-9-]*\.[a-z0-9]+")
# InstanceConnectivity tests the links between instances of a group: it needs at least two.
MIN_CONNECTIVITY_COUNT = 2
# CloudFormation's longest wait condition: 12 hours.
MAX_NODE_WAIT_MINUTES = 720


def check_name(value: str) -> str:
    if not NAME.match(value):
        raise ValueError(
            "must be 1-63 letters, digits and hyphens, starting and ending with a letter or digit"
        )
    return value


class Taint(Section):
    key: str
    value: str = ""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] = "NoSchedule"


class InstanceGroupConfig(Section):
    name: str
    instance_type: str
    count: int = Field(ge=0, description="0 keeps the group defined but empty.")
    threads_per_core: Literal[1, 2] = Field(
        default=1, description="1 disables hyperthreading (GPU training)."
    )
    ebs_volume_gb: int = Field(default=500, ge=1, le=16384)
    deep_health_checks: tuple[DeepHealthCheck, ...] = ()
    training_plan_arn: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    taints: tuple[Taint, ...] = ()

    _name = field_validator("name")(check_name)

    @field_validator("instance_type")
    @classmethod
    def _instance_type(cls, value: str) -> str:
        if not INSTANCE_TYPE.match(value):
            raise ValueError("must be a SageMaker instance type ml.<family>.<size>, e.g. ml.p5.48xlarge")
        return value

    @field_validator("training_plan_arn")
    @classmethod
    def _plan(cls, value: str | None) -> str | None:
        if value is not None and not TRAINING_PLAN_ARN.match(value):
            raise ValueError(
                "must be a training plan ARN arn:aws:sagemaker:<region>:<account>:training-plan/<n>"
            )
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, labels: dict[str, str]) -> dict[str, str]:
        bad = [key for key in labels if not LABEL_KEY.match(key)]
        if bad:
            raise ValueError(f"{bad} are not valid Kubernetes label keys")
        return labels

    @field_validator("deep_health_checks")
    @classmethod
    def _unique_checks(cls, checks: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(checks)) != len(checks):
            raise ValueError("lists a deep health check twice")
        return checks

    @model_validator(mode="after")
    def _deep_checks_fit_the_group(self) -> "InstanceGroupConfig":
        problems = []
        if self.deep_health_checks and not is_accelerated(self.instance_type):
            problems.append(
                f"deep_health_checks {list(self.deep_health_checks)} on {self.instance_type}: HyperPod runs "
                "deep "
                "health checks only on GPU (ml.p*, ml.g*) or Trainium (ml.trn*) instance types; remove them"
            )
        if "InstanceConnectivity" in self.deep_health_checks and self.count < MIN_CONNECTIVITY_COUNT:
            problems.append(
                f"deep_health_checks InstanceConnectivity with count={self.count}: the connectivity check "
                "needs "
                f"a group of at least {MIN_CONNECTIVITY_COUNT} instances; raise count or drop "
                "InstanceConnectivity"
            )
        if problems:
            raise ValueError("\n".join(problems))
        return self


def is_accelerated(instance_type: str) -> bool:
    """True for GPU and Trainium instance types, the only ones deep health checks run on."""
    return known_gpus(instance_type) > 0 or bool(ACCELERATED_FAMILY.fullmatch(instance_type))


def _default_groups() -> tuple[InstanceGroupConfig, ...]:
    return (
        InstanceGroupConfig(name="head", instance_type="ml.m5.2xlarge", count=1),
        InstanceGroupConfig(
            name="workers",
            instance_type="ml.p5.48xlarge",
            count=4,
            deep_health_checks=("InstanceStress", "InstanceConnectivity"),
        ),
    )


GIT_COMMIT = re.compile(r"^[0-9a-f]{40}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")


class DependencyChartConfig(Section):
    """The HyperPod dependency Helm chart (health monitoring agent, deep health check, job auto restart,
    NVIDIA and EFA device plugins). It is published only in a git repository, not in a Helm repository."""

    source: Literal["github", "local"] = Field(
        default="github",
        description="github: fetched at deploy time, inside AWS, at the pinned commit; "
        "local: a chart directory on this machine (air-gapped deploys).",
    )
    repository: str = "https://github.com/aws/sagemaker-hyperpod-cli.git"
    # Tag v3.9.0 of aws/sagemaker-hyperpod-cli (a release): README "HyperPod" says how to bump it.
    commit: str = "b01cf90676553a711ab1a8ac51422adbb09aef6b"
    chart_path: str = "helm_chart/HyperPodHelmChart"
    local_path: str | None = None
    content_sha256: str | None = Field(
        default=None, description="Digest of the chart directory's files; checked when set."
    )
    helm_version: str = "3.17.3"
    namespace: str = "kube-system"

    @field_validator("commit")
    @classmethod
    def _commit(cls, value: str) -> str:
        if not GIT_COMMIT.match(value):
            raise ValueError("must be a full 40-character git commit id (a branch or tag can move)")
        return value

    @field_validator("content_sha256")
    @classmethod
    def _digest(cls, value: str | None) -> str | None:
        if value is not None and not SHA256.match(value):
            raise ValueError("must be 64 lower-case hex characters")
        return value

    @model_validator(mode="after")
    def _local_needs_path(self) -> "DependencyChartConfig":
        if self.source == "local" and not self.local_path:
            raise ValueError("source=local needs local_path (a directory holding the chart)")
        return self


class HyperPodConfig(Section):
    cluster_name: str = Field(
        default="ray-hyperpod",
        description="Unique per account and region; the app config defaults it to the app prefix.",
    )
    instance_groups: tuple[InstanceGroupConfig, ...] = Field(default_factory=_default_groups, min_length=1)
    node_recovery: Literal["Automatic", "None"] = "Automatic"
    node_provisioning_mode: Literal["Continuous"] | None = Field(
        default="Continuous",
        description="Continuous: the cluster is InService once its cluster-level resources are ready and "
        "instances join as they pass their checks (EKS only); null: InService only once every instance is "
        "up, "
        "which deep health checks on GPUs can push past CloudFormation's hour.",
    )
    wait_for_nodes: bool = Field(
        default=False,
        description="Hold the deployment until every instance group reaches its count (a CloudFormation wait "
        "condition of up to node_wait_minutes, signalled by a poller), instead of returning at InService.",
    )
    node_wait_minutes: int = Field(
        default=MAX_NODE_WAIT_MINUTES,
        ge=15,
        le=MAX_NODE_WAIT_MINUTES,
        description="How long wait_for_nodes waits (CloudFormation allows at most 12 h).",
    )
    dependency_chart: DependencyChartConfig = DependencyChartConfig()

    _name = field_validator("cluster_name")(check_name)

    @model_validator(mode="after")
    def _unique_groups(self) -> "HyperPodConfig":
        names = [group.name for group in self.instance_groups]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"instance group names must be unique; repeated: {duplicates}")
        return self

    def group(self, name: str) -> InstanceGroupConfig:
        """The instance group called `name` (validated to exist by the app config)."""
        return next(group for group in self.instance_groups if group.name == name)
