"""The SageMaker HyperPod cluster: its instance groups and node recovery."""

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from .base import Section
from .instance_types import known_gpus
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
# Deep health checks exercise accelerators (DCGM on NVIDIA GPUs, the Neuron stack on Trainium); HyperPod
# runs them only on GPU (ml.p*, ml.g*) and Trainium (ml.trn*) instance types.
ACCELERATED_FAMILY = re.compile(r"ml\.(p|g|trn)\d[a-z0-9-]*\.[a-z0-9]+")
# InstanceConnectivity tests the links between instances of a group: it needs at least two.
MIN_CONNECTIVITY_COUNT = 2
# CloudFormation's longest wait condition: 12 hours.
MAX_NODE_WAIT_MINUTES = 720
# The Helm release that prepares the dependency chart, and the sha256 of its linux-amd64 tarball as Helm
# publishes it (get.helm.sh/helm-v3.17.3-linux-amd64.tar.gz.sha256sum): pinned here, not fetched beside the
# tarball, so that the check means something if the download host is compromised.
DEFAULT_HELM_VERSION = "3.17.3"
DEFAULT_HELM_SHA256 = "ee88b3c851ae6466a3de507f7be73fe94d54cbf2987cbaa3d1a3832ea331f2cd"
# HyperPod's managed Karpenter (AWS docs, "Create a NodeClass"): a HyperpodNodeClass names at most 10 instance
# groups; this app puts every autoscaled group into one NodeClass.
MAX_NODECLASS_GROUPS = 10


# SageMaker API limits (botocore sagemaker service-2: ClusterInstanceCount max 6758, ClusterKubernetesLabels
# and ClusterKubernetesTaints max 50, ClusterKubernetesLabelValue min 1, ClusterInstanceGroupSpecifications
# max 100). CreateCluster refuses anything outside them, after the EKS cluster is up.
MAX_INSTANCE_COUNT = 6758
MAX_NODE_LABELS = 50
MAX_NODE_TAINTS = 50
MAX_INSTANCE_GROUPS = 100


def check_group_inputs(group: "InstanceGroupConfig") -> "InstanceGroupConfig":
    """Labels and taints the SageMaker API refuses (ClusterKubernetesConfig)."""
    problems = []
    empty = sorted(key for key, value in group.labels.items() if value == "")
    if empty:
        problems.append(
            f"labels {empty} have empty values: HyperPod's ClusterKubernetesLabelValue needs 1-63 characters"
        )
    if len(group.labels) > MAX_NODE_LABELS:
        problems.append(f"labels: {len(group.labels)} labels; HyperPod accepts at most {MAX_NODE_LABELS}")
    if len(group.taints) > MAX_NODE_TAINTS:
        problems.append(f"taints: {len(group.taints)} taints; HyperPod accepts at most {MAX_NODE_TAINTS}")
    pairs = [(taint.key, taint.effect) for taint in group.taints]
    repeated = sorted({pair for pair in pairs if pairs.count(pair) > 1})
    if repeated:
        problems.append(
            f"taints repeat key and effect {[f'{key}:{effect}' for key, effect in repeated]}: Kubernetes "
            "refuses a node with two taints of the same key and effect"
        )
    if problems:
        raise ValueError("\n".join(problems))
    return group


class Taint(Section):
    key: TaintKey = Field(description="Taint key, e.g. nvidia.com/gpu.")
    value: TaintValue = Field(default="", description="Taint value; empty for a key-only taint.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] = Field(
        default="NoSchedule", description="What the taint does to pods that do not tolerate it."
    )


class InstanceGroupConfig(Section):
    name: SageMakerInstanceGroupName = Field(description="Instance group name (create-only in HyperPod).")
    instance_type: SageMakerInstanceType = Field(description="HyperPod instance type, e.g. ml.p5.48xlarge.")
    count: int = Field(
        ge=0,
        le=MAX_INSTANCE_COUNT,
        description="0 keeps the group defined but empty (SageMaker: at most 6758).",
    )
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
    autoscale_max_count: int | None = Field(
        default=None,
        ge=1,
        description="Opt-in autoscaling: HyperPod's managed Karpenter adds up to this many nodes for pending "
        "pods and removes them when empty (count must be 0). Null: a fixed group of `count` nodes.",
    )

    @property
    def autoscaled(self) -> bool:
        """Karpenter sizes the group between 0 and autoscale_max_count."""
        return self.autoscale_max_count is not None

    @property
    def max_nodes(self) -> int:
        """The most nodes the group can have: its fixed count, or its autoscaling ceiling."""
        return self.count if self.autoscale_max_count is None else self.autoscale_max_count

    @model_validator(mode="after")
    def _autoscaled_group_fits_karpenter(self) -> "InstanceGroupConfig":
        """What AWS's "Create a NodeClass" page rules out for a group in a HyperpodNodeClass."""
        if not self.autoscaled:
            return self
        where = f"instance group {self.name!r} (autoscale_max_count={self.autoscale_max_count})"
        problems = []
        if self.count != 0:
            problems.append(
                f"count={self.count} on autoscaled {where}: HyperPod's Karpenter scales an autoscaled group "
                "from 0 (it would scale any other count down); set count: 0"
            )
        if self.deep_health_checks:
            problems.append(
                f"deep_health_checks {list(self.deep_health_checks)} on autoscaled {where}: HyperPod "
                "autoscaling does not support them (60-90 minutes of Pending pods would over-provision); "
                "remove them"
            )
        if self.training_plan_arn:
            problems.append(
                f"training_plan_arn on autoscaled {where}: HyperPod autoscaling supports on-demand capacity "
                "only, not training plans or reserved capacity; remove it or autoscale_max_count"
            )
        if problems:
            raise ValueError("\n".join(problems))
        return self

    _inputs_deploy = model_validator(mode="after")(check_group_inputs)

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
        default="b01cf90676553a711ab1a8ac51422adbb09aef6b",
        # Tag v3.9.0 of aws/sagemaker-hyperpod-cli (a release): README "HyperPod" says how to bump it.
        description="Commit of the repository to fetch (a full id: a branch or tag can move).",
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
    cluster_name: SageMakerClusterName = Field(
        default="ray-hyperpod",
        description="Unique per account and region; the app config defaults it to the app prefix.",
    )
    instance_groups: tuple[InstanceGroupConfig, ...] = Field(
        default_factory=_default_groups,
        min_length=1,
        max_length=MAX_INSTANCE_GROUPS,
        description="The cluster's instance groups (SageMaker: at most 100).",
    )
    node_recovery: Literal["Automatic", "None"] = Field(
        default="Automatic", description="Automatic: HyperPod replaces or reboots faulty nodes."
    )
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
        # The poller gives up 10 minutes before the wait ends and polls every 5: 20 leaves it two polls.
        ge=20,
        le=MAX_NODE_WAIT_MINUTES,
        description="How long wait_for_nodes waits (CloudFormation allows at most 12 h).",
    )
    dependency_chart: DependencyChartConfig = Field(
        default=DependencyChartConfig(), description="The HyperPod dependency Helm chart."
    )

    @property
    def autoscaled_groups(self) -> tuple[InstanceGroupConfig, ...]:
        """The groups HyperPod's managed Karpenter sizes (empty: autoscaling is off, the default)."""
        return tuple(group for group in self.instance_groups if group.autoscaled)

    @model_validator(mode="after")
    def _autoscaling_prerequisites(self) -> "HyperPodConfig":
        """Cluster-wide settings AWS's "Autoscaling on SageMaker HyperPod EKS" page requires."""
        groups = self.autoscaled_groups
        if not groups:
            return self
        names = [group.name for group in groups]
        problems = []
        if self.node_provisioning_mode != "Continuous":
            problems.append(
                f"node_provisioning_mode={self.node_provisioning_mode} with autoscaled groups {names}: "
                "HyperPod autoscaling needs Continuous provisioning"
            )
        if self.node_recovery != "Automatic":
            problems.append(
                f"node_recovery={self.node_recovery} with autoscaled groups {names}: HyperPod autoscaling "
                "needs Automatic node recovery"
            )
        if len(groups) > MAX_NODECLASS_GROUPS:
            problems.append(
                f"{len(groups)} autoscaled instance groups {names}: a HyperpodNodeClass holds at most "
                f"{MAX_NODECLASS_GROUPS}"
            )
        types = [group.instance_type for group in self.instance_groups]
        shared = sorted({g.instance_type for g in groups if types.count(g.instance_type) > 1})
        if shared:
            problems.append(
                f"autoscaled groups {names} share instance types {shared} with another group: pods reach an "
                "autoscaled group by instance type (the only group-specific key HyperPod's Karpenter knows), "
                "so each autoscaled group needs a type no other group uses"
            )
        if problems:
            raise ValueError("\n".join(problems))
        return self

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
