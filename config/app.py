"""The whole app's configuration: one object, validated once, passed down to every stack."""

import re
from typing import Any, NamedTuple

from pydantic import Field, model_validator

from .base import Section
from .capacity import (
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
from .instance_types import UnknownInstanceTypeError
from .network import NetworkConfig
from .observability import ObservabilityConfig, check_one_dcgm_exporter
from .ray import HeadConfig, KubeRayConfig, RayConfig, WorkerGroupConfig
from .storage import StorageConfig
from .types import AccountId, LogRetentionDays, Region, TagKey, TagValue, matching

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
            beside = self.head_neighbours() if isinstance(ray_group, HeadConfig) else ()
            problems += _size_problems(where, ray_group, group, beside)
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

    def head_size(self) -> PodSize:
        """Resources of the head pod: configured, or all its node can give a pod next to its neighbours."""
        head = self.ray.head
        group = self.hyperpod.group(head.instance_group)
        room = ray_pod_capacity(group.instance_type, group.threads_per_core, self.head_neighbours())
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
        room = ray_pod_capacity(group.instance_type, group.threads_per_core)
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
        return ("ray-on-hyperpod/deployment", self.prefix)

    def worker_gpus(self, worker_index: int) -> int:
        """GPUs per pod of a worker group: configured, or the whole instance's."""
        return self.worker_size(worker_index).gpus


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
