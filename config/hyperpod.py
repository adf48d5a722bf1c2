"""The SageMaker HyperPod cluster: its instance groups and node recovery."""

from typing import Literal

from pydantic import Field, field_validator, model_validator

from .base import Section
from .types import (
    DnsLabel,
    GitCommit,
    HttpsUrl,
    LabelKey,
    LabelValue,
    LocalPath,
    RelativePath,
    SageMakerClusterName,
    SageMakerInstanceGroupName,
    SageMakerInstanceType,
    SemVer,
    Sha256,
    TaintKey,
    TaintValue,
    TrainingPlanArn,
)

DeepHealthCheck = Literal["InstanceStress", "InstanceConnectivity"]
# The Helm release that prepares the dependency chart, and the sha256 of its linux-amd64 tarball as Helm
# publishes it (get.helm.sh/helm-v3.17.3-linux-amd64.tar.gz.sha256sum): pinned here, not fetched beside the
# tarball, so that the check means something if the download host is compromised.
DEFAULT_HELM_VERSION = "3.17.3"
DEFAULT_HELM_SHA256 = "ee88b3c851ae6466a3de507f7be73fe94d54cbf2987cbaa3d1a3832ea331f2cd"


class Taint(Section):
    key: TaintKey = Field(description="Taint key, e.g. nvidia.com/gpu.")
    value: TaintValue = Field(default="", description="Taint value; empty for a key-only taint.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] = Field(
        default="NoSchedule", description="What the taint does to pods that do not tolerate it."
    )


class InstanceGroupConfig(Section):
    name: SageMakerInstanceGroupName = Field(description="Instance group name (create-only in HyperPod).")
    instance_type: SageMakerInstanceType = Field(description="HyperPod instance type, e.g. ml.p5.48xlarge.")
    count: int = Field(ge=0, description="0 keeps the group defined but empty.")
    threads_per_core: Literal[1, 2] = Field(
        default=1, description="1 disables hyperthreading (GPU training)."
    )
    ebs_volume_gb: int = Field(
        default=500, ge=1, le=16384, description="Secondary EBS volume per node, mounted at /opt/sagemaker."
    )
    deep_health_checks: tuple[DeepHealthCheck, ...] = Field(
        default=(), description="Deep health checks HyperPod runs on each new node."
    )
    training_plan_arn: TrainingPlanArn | None = Field(
        default=None, description="Run the group on this SageMaker training plan's reserved capacity."
    )
    labels: dict[LabelKey, LabelValue] = Field(
        default_factory=dict, description="Kubernetes labels HyperPod puts on the group's nodes."
    )
    taints: tuple[Taint, ...] = Field(default=(), description="Kubernetes taints on the group's nodes.")

    @field_validator("deep_health_checks")
    @classmethod
    def _unique_checks(cls, checks: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(checks)) != len(checks):
            raise ValueError("lists a deep health check twice")
        return checks


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


class DependencyChartConfig(Section):
    """The HyperPod dependency Helm chart (health monitoring agent, deep health check, job auto restart,
    NVIDIA and EFA device plugins). It is published only in a git repository, not in a Helm repository."""

    source: Literal["github", "local"] = Field(
        default="github",
        description="github: fetched at deploy time, inside AWS, at the pinned commit; "
        "local: a chart directory on this machine (air-gapped deploys).",
    )
    repository: HttpsUrl = Field(
        default="https://github.com/aws/sagemaker-hyperpod-cli.git",
        description="Git repository holding the chart (source=github).",
    )
    commit: GitCommit = Field(
        default="067d658b2d5c3d347afbadd75e1425214e965dcb", description="Commit of the repository to fetch."
    )
    chart_path: RelativePath = Field(
        default="helm_chart/HyperPodHelmChart", description="The chart's directory inside the repository."
    )
    local_path: LocalPath | None = Field(
        default=None, description="A prepared chart directory on this machine (source=local)."
    )
    content_sha256: Sha256 | None = Field(
        default=None, description="Digest of the chart directory's files; checked when set."
    )
    helm_version: SemVer = Field(
        default=DEFAULT_HELM_VERSION, description="Helm release that builds the chart's dependencies."
    )
    helm_sha256: Sha256 = Field(
        default=DEFAULT_HELM_SHA256,
        description="sha256 of helm-v<helm_version>-linux-amd64.tar.gz, as published with the release; "
        "the build refuses any other tarball.",
    )
    namespace: DnsLabel = Field(default="kube-system", description="Namespace of the chart's Helm release.")

    @model_validator(mode="after")
    def _helm_digest_follows_version(self) -> "DependencyChartConfig":
        if self.helm_version != DEFAULT_HELM_VERSION and self.helm_sha256 == DEFAULT_HELM_SHA256:
            raise ValueError(
                f"helm_version={self.helm_version} needs its own helm_sha256 (the pinned one is Helm "
                f"{DEFAULT_HELM_VERSION}'s): copy it from get.helm.sh/helm-v{self.helm_version}-linux-amd64"
                ".tar.gz.sha256sum or the release notes"
            )
        return self

    @model_validator(mode="after")
    def _local_needs_path(self) -> "DependencyChartConfig":
        if self.source == "local" and not self.local_path:
            raise ValueError("source=local needs local_path (a directory holding the chart)")
        return self


class HyperPodConfig(Section):
    cluster_name: SageMakerClusterName = Field(default="ray-hyperpod", description="HyperPod cluster name.")
    instance_groups: tuple[InstanceGroupConfig, ...] = Field(
        default_factory=_default_groups, min_length=1, description="The cluster's instance groups."
    )
    node_recovery: Literal["Automatic", "None"] = Field(
        default="Automatic", description="Automatic: HyperPod replaces or reboots faulty nodes."
    )
    node_provisioning_mode: Literal["Continuous"] | None = Field(
        default=None, description="Continuous: the cluster is usable while nodes are still provisioned."
    )
    dependency_chart: DependencyChartConfig = Field(
        default=DependencyChartConfig(), description="The HyperPod dependency Helm chart."
    )

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
