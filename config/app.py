"""The whole app's configuration: one object, validated once, passed down to every stack."""

from pydantic import Field, model_validator

from .base import Section
from .eks import EksConfig
from .hyperpod import HyperPodConfig
from .instance_types import accelerators
from .network import NetworkConfig
from .ray import KubeRayConfig, RayConfig
from .storage import StorageConfig
from .types import AccountId, LogRetentionDays, Region, TagKey, TagValue, matching

# Stack names are <prefix>-<part>, bucket names sagemaker-<prefix>-lc-...: lower case, at most 24 characters.
Prefix = matching(
    r"[a-z][a-z0-9-]{1,22}[a-z0-9]",
    "3-24 lower-case letters, digits and '-', starting with a letter and ending alphanumeric",
)
MAX_TAGS = 50  # AWS allows 50 user tags per resource


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
        groups = {group.name: group for group in self.hyperpod.instance_groups}
        problems = []
        if self.ray.head.instance_group not in groups:
            problems.append(
                f"ray.head.instance_group {self.ray.head.instance_group!r} is not one of "
                f"hyperpod.instance_groups {sorted(groups)}"
            )
        for i, worker in enumerate(self.ray.worker_groups):
            where = f"ray.worker_groups[{i}]"
            group = groups.get(worker.instance_group)
            if group is None:
                problems.append(
                    f"{where}.instance_group {worker.instance_group!r} is not one of "
                    f"hyperpod.instance_groups {sorted(groups)}"
                )
                continue
            gpus = accelerators(group.instance_type).gpus
            if worker.gpus is not None and worker.gpus != gpus:
                problems.append(f"{where}.gpus={worker.gpus} but {group.instance_type} has {gpus} GPUs")
            if worker.max_replicas > group.count:
                problems.append(
                    f"{where}.max_replicas={worker.max_replicas} exceeds the {group.count} "
                    f"nodes of instance group {group.name!r} (one Ray worker pod per node)"
                )
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def dynamic_fsx_tag(self) -> tuple[str, str]:
        """The tag the CSI driver puts on file systems it creates for this deployment (dynamic storage);
        teardown finds and deletes them by it."""
        return ("ray-on-hyperpod/deployment", self.prefix)

    def worker_gpus(self, worker_index: int) -> int:
        """GPUs per pod of a worker group: configured, or the whole instance's."""
        worker = self.ray.worker_groups[worker_index]
        if worker.gpus is not None:
            return worker.gpus
        return accelerators(self.hyperpod.group(worker.instance_group).instance_type).gpus
