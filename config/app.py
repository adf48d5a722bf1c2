"""The whole app's configuration: one object, validated once, passed down to every stack."""

import re
from typing import Any, NamedTuple

from pydantic import Field, model_validator

from .base import Section
from .capacity import (
    AUTOSCALER,
    DCGM_EXPORTER,
    IN_CLUSTER_STORE,
    RAYJOB_SUBMITTER,
    SUPERVISOR,
    Requests,
    cpu_millis,
    cpu_quantity,
    memory_mib,
    memory_quantity,
    ray_pod_capacity,
)
from .eks import EksConfig
from .gcs import GcsFaultToleranceConfig
from .hyperpod import HyperPodConfig, InstanceGroupConfig
from .instance_types import UnknownInstanceTypeError, known_gpus
from .network import NetworkConfig
from .observability import ObservabilityConfig, check_one_dcgm_exporter
from .ray import HeadConfig, KubeRayConfig, RayConfig, WorkerGroupConfig
from .storage import StorageConfig
from .types import (
    AccountId,
    LogRetentionDays,
    Region,
    TagKey,
    TagValue,
    arn_partition_and_region,
    matching,
    region_partitions,
)

# Stack names are <prefix>-<part>, bucket names sagemaker-<prefix>-lc-...: lower case, at most 24 characters.
PREFIX_PATTERN = r"[a-z][a-z0-9-]{1,22}[a-z0-9]"
Prefix = matching(
    PREFIX_PATTERN,
    "3-24 lower-case letters, digits and '-', starting with a letter and ending alphanumeric",
)
MAX_TAGS = 50  # AWS allows 50 user tags per resource


class PodSize(NamedTuple):
    """What a Ray pod requests (and, being Guaranteed, is limited to)."""

    cpu: str
    memory: str
    gpus: int
    efa: int


class EnvConfig(Section):
    """Where to deploy. Both unset keeps the stacks environment-agnostic (any account, any region)."""

    account: AccountId | None = Field(default=None, description="AWS account to deploy to.")
    region: Region | None = Field(default=None, description="AWS region to deploy to.")


# The tag key the FSx CSI driver puts on the file systems it creates for a deployment (dynamic storage);
# `cdk destroy` deletes file systems by it, so no user tag may set it (on another stack's resources, say).
DEPLOYMENT_TAG_KEY = "ray-on-hyperpod/deployment"
# Kubernetes object names (a PersistentVolume's) are DNS-1123 subdomains of at most 253 characters.
MAX_OBJECT_NAME = 253
# A pod tolerates a NoSchedule or NoExecute taint only if it lists it; the in-cluster store lists this one.
STORE_TOLERATED_TAINTS = frozenset({("nvidia.com/gpu", "NoSchedule")})


def check_cross_section_inputs(config: "AppConfig") -> "AppConfig":
    """Inputs valid field by field that deploy broken together (each message names the limit it enforces)."""
    problems = [
        *_tag_problems(config),
        *_head_group_problems(config),
        *_volume_name_problems(config),
        *_partition_problems(config),
        *_store_node_problems(config),
    ]
    if problems:
        raise ValueError("\n".join(problems))
    return config


def _tag_problems(config: "AppConfig") -> list[str]:
    if DEPLOYMENT_TAG_KEY in config.tags:
        return [
            f"tags.{DEPLOYMENT_TAG_KEY}: reserved: cdk destroy deletes the FSx file systems that carry "
            "this tag key, so the app sets it itself"
        ]
    return []


def _head_group_problems(config: "AppConfig") -> list[str]:
    group = next(
        (g for g in config.hyperpod.instance_groups if g.name == config.ray.head.instance_group), None
    )
    if group is not None and group.count < 1:
        return [
            f"ray.head.instance_group {group.name!r} has count 0: the Ray head needs one node of it "
            "(the RayCluster would stay Pending)"
        ]
    return []


def _volume_name_problems(config: "AppConfig") -> list[str]:
    # The static PersistentVolume is named <ray.namespace>-<storage.claim_name> (k8s_charts/storage.py).
    name_length = len(config.ray.namespace) + 1 + len(config.storage.claim_name)
    if config.storage.mode == "static" and name_length > MAX_OBJECT_NAME:
        return [
            f"storage.claim_name: the PersistentVolume <ray.namespace>-<storage.claim_name> would have "
            f"{name_length} characters; Kubernetes names have at most {MAX_OBJECT_NAME}"
        ]
    return []


def _partition_problems(config: "AppConfig") -> list[str]:
    """ARNs in another partition or region than env.region: IAM and SageMaker refuse them at deploy time."""
    region = config.env.region
    if region is None:
        return []
    partition = region_partitions()[region]
    problems = []
    for index, arn in enumerate(config.eks.admin_principal_arns):
        if arn_partition_and_region(arn)[0] != partition:
            problems.append(
                f"eks.admin_principal_arns[{index}] = {arn!r} is in partition "
                f"{arn_partition_and_region(arn)[0]!r}, but env.region {region} is in {partition!r}: "
                "EKS access entries take principals of the cluster's partition"
            )
    for index, group in enumerate(config.hyperpod.instance_groups):
        if group.training_plan_arn is None:
            continue
        plan_partition, plan_region = arn_partition_and_region(group.training_plan_arn)
        if (plan_partition, plan_region) != (partition, region):
            problems.append(
                f"hyperpod.instance_groups[{index}].training_plan_arn is in {plan_partition}/{plan_region}, "
                f"not env.region {region} ({partition}): a training plan reserves capacity in one region"
            )
    return problems


def _store_node_problems(config: "AppConfig") -> list[str]:
    """The in-cluster GCS store avoids the head's group, tolerates only the GPU taint (k8s_charts/gcs.py)."""
    if not config.gcs_fault_tolerance.in_cluster:
        return []
    hosts = [
        group.name
        for group in config.hyperpod.instance_groups
        if group.name != config.ray.head.instance_group
        and group.count > 0
        and all(
            (taint.key, taint.effect) in STORE_TOLERATED_TAINTS or taint.effect == "PreferNoSchedule"
            for taint in group.taints
        )
    ]
    if hosts:
        return []
    return [
        "gcs_fault_tolerance.store = 'in_cluster': no instance group can run the store: it needs a group "
        "other than the head's (ray.head.instance_group) with count >= 1 and no taint but "
        "nvidia.com/gpu:NoSchedule"
    ]


class AppConfig(Section):
    prefix: Prefix = Field(default="ray-hyperpod", description="Prefix of every stack and resource name.")
    env: EnvConfig = Field(default=EnvConfig(), description="Target account and region (both optional).")
    tags: dict[TagKey, TagValue] = Field(
        default_factory=lambda: {"project": "ray-on-hyperpod"},
        max_length=MAX_TAGS,
        description="Tags on every stack's resources and on the HyperPod cluster.",
    )
    log_retention_days: LogRetentionDays = Field(
        default=30, description="Retention of every log group this app creates (flow logs, EKS, handlers)."
    )
    network: NetworkConfig = Field(default=NetworkConfig(), description="The VPC.")
    eks: EksConfig = Field(default=EksConfig(), description="The EKS control plane.")
    hyperpod: HyperPodConfig = Field(default=HyperPodConfig(), description="The HyperPod cluster.")
    storage: StorageConfig = Field(default=StorageConfig(), description="FSx for Lustre at /fsx.")
    kuberay: KubeRayConfig = Field(default=KubeRayConfig(), description="The KubeRay operator.")
    ray: RayConfig = Field(default=RayConfig(), description="The RayCluster and the optional RayJob.")
    observability: ObservabilityConfig = Field(
        default=ObservabilityConfig(), description="Metrics (Prometheus) and dashboards (Grafana)."
    )
    gcs_fault_tolerance: GcsFaultToleranceConfig = Field(
        default=GcsFaultToleranceConfig(), description="External GCS storage so Ray survives losing its head."
    )

    _one_dcgm_exporter = model_validator(mode="after")(check_one_dcgm_exporter)
    _inputs_deploy = model_validator(mode="after")(check_cross_section_inputs)

    @model_validator(mode="after")
    def _ray_namespace_is_not_the_operators(self) -> "AppConfig":
        # The Ray stack deletes its namespace on destroy, before the platform stack removes the operator:
        # sharing it would delete the operator under its own Helm release.
        if self.ray.namespace == self.kuberay.namespace:
            raise ValueError(
                f"ray.namespace {self.ray.namespace!r} is the KubeRay operator's namespace "
                "(kuberay.namespace): the Ray stack creates and deletes its own namespace"
            )
        return self

    @model_validator(mode="after")
    def _namespaces_do_not_collide(self) -> "AppConfig":
        """Each stack creates and deletes its own namespace (Ray, the operator, monitoring), and the
        HyperPod dependency chart's release lives in its own: sharing one would let one stack's destroy
        delete another's objects, or its Pod Security level and NetworkPolicies apply to the other's pods.
        (Ray against the operator has its own message above.)"""
        owners = [
            ("ray.namespace", self.ray.namespace),
            ("kuberay.namespace", self.kuberay.namespace),
            ("hyperpod.dependency_chart.namespace", self.hyperpod.dependency_chart.namespace),
        ]
        if self.observability.enabled:
            owners.append(("observability.namespace", self.observability.namespace))
        problems = [
            f"{field}={namespace!r} is also {other}: each needs a namespace of its own"
            for index, (field, namespace) in enumerate(owners)
            for other, other_namespace in owners[index + 1 :]
            if namespace == other_namespace and (field, other) != ("ray.namespace", "kuberay.namespace")
        ]
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @model_validator(mode="after")
    def _no_reserved_node_label_keys(self) -> "AppConfig":
        """Keys under kubernetes.io/ and k8s.io/ (and their subdomains) belong to Kubernetes (the kubelet
        refuses most of them, and node.kubernetes.io/instance-type selects the Ray pods' nodes), those
        under sagemaker.amazonaws.com/ to HyperPod (the Ray pods select its node-health-status label)."""
        problems = []
        for index, group in enumerate(self.hyperpod.instance_groups):
            for key in group.labels:
                prefix = key.split("/", 1)[0] if "/" in key else ""
                if _reserved_label_prefix(prefix):
                    problems.append(
                        f"hyperpod.instance_groups[{index}].labels: key {key!r} is under {prefix}/, which "
                        "Kubernetes or HyperPod reserve (kubernetes.io, k8s.io and their subdomains, "
                        "sagemaker.amazonaws.com): choose another prefix"
                    )
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @model_validator(mode="before")
    @classmethod
    def _hyperpod_cluster_named_after_prefix(cls, values: Any) -> Any:
        """HyperPod cluster names are unique per account and region: deriving the default from the prefix lets
        two deployments (two prefixes) live side by side, instead of the second adopting or failing on
        the first."""
        if not isinstance(values, dict):
            return values
        prefix = values.get("prefix", cls.model_fields["prefix"].default)
        hyperpod = values.get("hyperpod", {})
        # An invalid prefix is reported once, on prefix, not again on the cluster name.
        unnamed = isinstance(hyperpod, dict) and "cluster_name" not in hyperpod
        if unnamed and isinstance(prefix, str) and re.fullmatch(PREFIX_PATTERN, prefix):
            return {**values, "hyperpod": {**hyperpod, "cluster_name": prefix}}
        return values

    @model_validator(mode="after")
    def _azs_need_region(self) -> "AppConfig":
        # An environment-agnostic stack only knows two placeholder AZs (Fn::GetAZs picks the first two).
        if self.network.az_count > 2 and self.env.region is None:
            raise ValueError(
                f"network.az_count={self.network.az_count} needs env.region (and env.account): "
                "without an environment CDK can only spread a VPC over 2 AZs"
            )
        if self.network.existing_vpc_id and not (self.env.account and self.env.region):
            raise ValueError("network.existing_vpc_id needs env.account and env.region for the VPC lookup")
        return self

    @model_validator(mode="after")
    def _ray_fits_hyperpod(self) -> "AppConfig":
        """Every Ray pod fits the node its group selects (one Ray pod per node, config/capacity.py)."""
        groups = {group.name: group for group in self.hyperpod.instance_groups}
        problems = []
        used: dict[str, str] = {}
        for where, ray_group in self._ray_groups():
            group = groups.get(ray_group.instance_group)
            if group is None:
                problems.append(
                    f"{where}.instance_group {ray_group.instance_group!r} is not one of "
                    f"hyperpod.instance_groups {sorted(groups)}"
                )
                continue
            if group.name in used:
                problems.append(
                    f"{where}.instance_group {group.name!r} is already used by {used[group.name]}: "
                    "each Ray group needs its own instance group (one Ray pod per node)"
                )
            used.setdefault(group.name, where)
            problems += _size_problems(where, ray_group, group, self.pods_beside(ray_group))
            if isinstance(ray_group, WorkerGroupConfig) and ray_group.max_replicas > group.max_nodes:
                problems.append(
                    f"{where}.max_replicas={ray_group.max_replicas} exceeds the {group.max_nodes} "
                    f"nodes of instance group {group.name!r} (one Ray worker pod per node)"
                )
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @model_validator(mode="after")
    def _ray_scales_autoscaled_groups(self) -> "AppConfig":
        """Ray's autoscaler is what asks for nodes of an autoscaled group (pending worker pods), and what lets
        them go (removing idle pods): a fixed-size Ray group there would pin or starve the nodes."""
        autoscaled = {group.name for group in self.hyperpod.autoscaled_groups}
        problems = []
        for where, ray_group in self._ray_groups():
            if ray_group.instance_group not in autoscaled:
                continue
            on = f"autoscaled instance group {ray_group.instance_group!r}"
            if isinstance(ray_group, HeadConfig):
                problems.append(f"{where} runs on {on}: the Ray head needs a fixed group (count >= 1)")
            elif not self.ray.autoscaling.enabled:
                problems.append(
                    f"{where} runs on {on} but ray.autoscaling.enabled is false: its replicas would be fixed "
                    "and nothing would ask for nodes; set ray.autoscaling.enabled: true"
                )
            elif ray_group.replicas or ray_group.min_replicas or not ray_group.max_replicas:
                problems.append(
                    f"{where} on {on} is fixed-size (replicas={ray_group.replicas}, min_replicas="
                    f"{ray_group.min_replicas}, max_replicas={ray_group.max_replicas}): set replicas: 0, "
                    "min_replicas: 0 and max_replicas >= 1 so that idle nodes can go"
                )
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _ray_groups(self) -> list[tuple[str, HeadConfig | WorkerGroupConfig]]:
        workers = [(f"ray.worker_groups[{i}]", w) for i, w in enumerate(self.ray.worker_groups)]
        return [("ray.head", self.ray.head), *workers]

    @property
    def image_has_efa(self) -> bool:
        """The project's image carries the EFA provider and aws-ofi-nccl; a user's image says so itself."""
        return self.ray.image_uri is None or self.ray.image_efa

    @property
    def runs_supervisor(self) -> bool:
        """The declarative job runs through jobs/supervisor.py in a Kubernetes Job beside the head."""
        return self.ray.job.enabled and self.ray.job.runner == "supervisor"

    def head_neighbours(self) -> tuple[Requests, ...]:
        """Pods pinned to the head's instance group besides the head: room is kept for them on its node."""
        return (SUPERVISOR,) if self.runs_supervisor else ()

    def pods_beside(self, ray_group: "HeadConfig | WorkerGroupConfig") -> tuple[Requests, ...]:
        """Every pod this app may place on the node of a Ray pod of this group, in this configuration,
        beyond the per-node system DaemonSets and cluster Deployments of config/capacity.py. Room is kept
        for all of them, since the scheduler may put them all on one node."""
        group = self.hyperpod.group(ray_group.instance_group)
        is_head = isinstance(ray_group, HeadConfig)
        pods = list(self.head_neighbours()) if is_head else []
        if is_head and self.ray.autoscaling.enabled:
            pods.append(AUTOSCALER)  # a second container of the head pod itself
        gpu_node = known_gpus(group.instance_type) > 0
        if self.observability.enabled and self.observability.dcgm_exporter and gpu_node:
            pods.append(DCGM_EXPORTER)
        if self.gcs_fault_tolerance.in_cluster and not is_head:  # kept off the head's group (gcs.py)
            pods.append(IN_CLUSTER_STORE)
        if self.ray.job.enabled and self.ray.job.runner == "rayjob":  # KubeRay's submitter: no selector
            pods.append(RAYJOB_SUBMITTER)
        return tuple(pods)

    def head_size(self) -> PodSize:
        """Resources of the head pod: configured, or all its node can give a pod next to its neighbours."""
        head = self.ray.head
        group = self.hyperpod.group(head.instance_group)
        room = ray_pod_capacity(group.instance_type, group.threads_per_core, self.pods_beside(head))
        # The head runs no tasks (num-cpus 0): its CPUs serve GCS, the dashboard and job drivers, so
        # fractions of a core are worth keeping.
        return PodSize(
            cpu=head.cpu or cpu_quantity(room.cpu_millis),
            memory=head.memory or memory_quantity(room.memory_mib),
            gpus=0,
            efa=0,
        )

    def worker_size(self, worker_index: int) -> PodSize:
        """Resources of one worker pod: configured, or all its node can give a pod."""
        worker = self.ray.worker_groups[worker_index]
        group = self.hyperpod.group(worker.instance_group)
        room = ray_pod_capacity(group.instance_type, group.threads_per_core, self.pods_beside(worker))
        # Whole cores: Ray schedules whole CPUs, and KubeRay would round a fraction up for num-cpus.
        return PodSize(
            cpu=worker.cpu or cpu_quantity(room.cpu_millis // 1000 * 1000),
            memory=worker.memory or memory_quantity(room.memory_mib),
            gpus=room.gpus if worker.gpus is None else worker.gpus,
            efa=room.efa if worker.efa and self.image_has_efa else 0,
        )

    @property
    def dynamic_fsx_tag(self) -> tuple[str, str]:
        """The tag the CSI driver puts on file systems it creates for this deployment (dynamic storage);
        teardown finds and deletes them by it."""
        return (DEPLOYMENT_TAG_KEY, self.prefix)

    def worker_gpus(self, worker_index: int) -> int:
        """GPUs per pod of a worker group: configured, or the whole instance's."""
        return self.worker_size(worker_index).gpus


def _reserved_label_prefix(prefix: str) -> bool:
    return prefix == "sagemaker.amazonaws.com" or any(
        prefix == domain or prefix.endswith("." + domain) for domain in ("kubernetes.io", "k8s.io")
    )


def _size_problems(
    where: str,
    ray_group: HeadConfig | WorkerGroupConfig,
    group: InstanceGroupConfig,
    beside: tuple[Requests, ...] = (),
) -> list[str]:
    """Configured sizes larger than one node of the group can give a pod (next to the pods `beside` it);
    a node too small for any."""
    try:
        room = ray_pod_capacity(group.instance_type, group.threads_per_core, beside)
    except UnknownInstanceTypeError as error:
        return [f"{where}: instance group {group.name!r}: {error}"]
    node = f"one {group.instance_type} node (ThreadsPerCore {group.threads_per_core})"
    if beside:
        node += " beside " + ", ".join(f"{r.name} ({r.cpu_millis}m, {r.memory_mib}Mi)" for r in beside)
    need_cpu = 1 if isinstance(ray_group, HeadConfig) else 1000  # a worker gets whole cores
    if room.cpu_millis < need_cpu or room.memory_mib < 1024:
        return [
            f"{where}: {node} leaves {cpu_quantity(max(room.cpu_millis, 0))} CPU and "
            f"{memory_quantity(max(room.memory_mib, 0))} memory for a Ray pod after the kubelet "
            "reservation and the per-node system pods: choose a larger instance type"
        ]
    problems = []
    if need_cpu == 1000 and ray_group.cpu is not None and cpu_millis(ray_group.cpu) < need_cpu:
        # num-cpus is the request's whole cores: below one, Ray would schedule nothing on the worker.
        problems.append(
            f"{where}.cpu={ray_group.cpu!r} gives Ray no whole CPU (num-cpus 0): request at least 1; "
            f"{node} leaves {cpu_quantity(room.cpu_millis)} for the pod"
        )
    if ray_group.cpu is not None and cpu_millis(ray_group.cpu) > room.cpu_millis:
        problems.append(
            f"{where}.cpu={ray_group.cpu!r} is more than {node} can give a pod: "
            f"at most {cpu_quantity(room.cpu_millis)}"
        )
    if ray_group.memory is not None and memory_mib(ray_group.memory) > room.memory_mib:
        problems.append(
            f"{where}.memory={ray_group.memory!r} is more than {node} can give a pod: "
            f"at most {memory_quantity(room.memory_mib)}"
        )
    gpus = getattr(ray_group, "gpus", None)
    if gpus is not None and gpus > room.gpus:
        problems.append(f"{where}.gpus={gpus} exceeds the {room.gpus} GPUs of {group.instance_type}")
    return problems
