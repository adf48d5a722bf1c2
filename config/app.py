"""The whole app's configuration: one object, validated once, passed down to every stack."""

import re

from pydantic import Field, field_validator, model_validator

from .base import Section
from .eks import EksConfig
from .gcs import GcsFaultToleranceConfig
from .hyperpod import HyperPodConfig
from .instance_types import accelerators
from .network import NetworkConfig
from .ray import KubeRayConfig, RayConfig
from .storage import StorageConfig

PREFIX = re.compile(r"^[a-z][a-z0-9-]{1,22}[a-z0-9]$")
ACCOUNT = re.compile(r"^\d{12}$")
REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")


class EnvConfig(Section):
    """Where to deploy. Both unset keeps the stacks environment-agnostic (any account, any region)."""

    account: str | None = None
    region: str | None = None

    @field_validator("account")
    @classmethod
    def _account(cls, value: str | None) -> str | None:
        if value is not None and not ACCOUNT.match(value):
            raise ValueError("must be a 12-digit AWS account id")
        return value

    @field_validator("region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is not None and not REGION.match(value):
            raise ValueError("must be an AWS region such as us-west-2")
        return value


class AppConfig(Section):
    prefix: str = Field(default="ray-hyperpod", description="Prefix of every stack name.")
    env: EnvConfig = EnvConfig()
    tags: dict[str, str] = Field(default_factory=lambda: {"project": "ray-on-hyperpod"})
    network: NetworkConfig = NetworkConfig()
    eks: EksConfig = EksConfig()
    hyperpod: HyperPodConfig = HyperPodConfig()
    storage: StorageConfig = StorageConfig()
    kuberay: KubeRayConfig = KubeRayConfig()
    ray: RayConfig = RayConfig()
    gcs_fault_tolerance: GcsFaultToleranceConfig = GcsFaultToleranceConfig()

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not PREFIX.match(value):
            raise ValueError("must be 3-24 lower-case letters, digits and '-', starting with a letter")
        return value

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
