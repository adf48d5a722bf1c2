"""KubeRay and the RayCluster: operator version, image, head and worker groups."""

import re
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from .base import Section

QUANTITY = re.compile(r"^\d+(\.\d+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$")  # Kubernetes resource quantity
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
RAY_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
IMAGE_TAG_VERSION = re.compile(r":(\d+\.\d+\.\d+)(-[\w.-]+)?$")
# KubeRay rejects RayCluster names over 53 characters (room for its "-serve-svc" suffix) and RayJob names over
# 47 (room for the suffix of a cluster it creates); both must be DNS-1035 labels, i.e. start with a letter.
MAX_RAY_CLUSTER_NAME = 53
MAX_RAY_JOB_NAME = MAX_RAY_CLUSTER_NAME - 6


def check_quantity(value: str) -> str:
    if not QUANTITY.match(value):
        raise ValueError("must be a Kubernetes quantity such as 4, 500m or 16Gi")
    return value


def check_dns_label(value: str) -> str:
    if not DNS_LABEL.match(value):
        raise ValueError("must be a DNS label: lower-case letters, digits and '-', at most 63 characters")
    return value


def check_kuberay_name(value: str, max_length: int) -> str:
    """A name KubeRay's own validation accepts (it would only fail later, in the operator's log)."""
    check_dns_label(value)
    if not value[0].isalpha() or len(value) > max_length:
        raise ValueError(f"KubeRay needs a name of at most {max_length} characters that starts with a letter")
    return value


class KubeRayConfig(Section):
    operator_chart_version: str = "1.7.0"
    namespace: str = "kuberay"

    _ns = field_validator("namespace")(check_dns_label)


SIZE_HELP = (
    "Defaults to all that one node of the instance group can give a pod (config/capacity.py); "
    "a larger value is a config error."
)


def check_optional_quantity(value: str | None) -> str | None:
    return None if value is None else check_quantity(value)


class HeadConfig(Section):
    instance_group: str = "head"
    cpu: str | None = Field(default=None, description=SIZE_HELP)
    memory: str | None = Field(default=None, description=SIZE_HELP)

    _quantities = field_validator("cpu", "memory")(check_optional_quantity)


class WorkerGroupConfig(Section):
    name: str = "gpu-workers"
    instance_group: str = "workers"
    replicas: int = Field(default=4, ge=0)
    min_replicas: int = Field(default=0, ge=0)
    max_replicas: int = Field(default=4, ge=0)
    gpus: int | None = Field(default=None, ge=0, description="Defaults to the instance type's GPU count.")
    efa: bool = Field(
        default=True,
        description="Request every EFA device of the instance type, when the image can use them "
        "(the project's image, or ray.image_efa for ray.image_uri).",
    )
    cpu: str | None = Field(default=None, description=SIZE_HELP)
    memory: str | None = Field(default=None, description=SIZE_HELP)

    _name = field_validator("name")(check_dns_label)
    _quantities = field_validator("cpu", "memory")(check_optional_quantity)

    @model_validator(mode="after")
    def _replicas_in_range(self) -> "WorkerGroupConfig":
        if not self.min_replicas <= self.replicas <= self.max_replicas:
            raise ValueError(
                f"replicas ({self.replicas}) must be within [min_replicas, max_replicas] = "
                f"[{self.min_replicas}, {self.max_replicas}]"
            )
        return self


class AutoscalingConfig(Section):
    enabled: bool = False
    idle_timeout_seconds: int = Field(default=60, ge=0)


class MonitoringConfig(Section):
    """Where the Ray dashboard finds Grafana and Prometheus, if the cluster has them."""

    grafana_host: str | None = None
    prometheus_host: str | None = None
    grafana_iframe_host: str | None = None


class RayJobConfig(Section):
    enabled: bool = False
    name: str = "fsdp-train"
    entrypoint_args: tuple[str, ...] = ("--max-steps", "1000", "--checkpoint-every", "50")
    shutdown_after_job_finishes: bool = False
    pre_running_deadline_seconds: int = Field(
        default=10800,
        gt=0,
        le=2**31 - 1,
        description="The RayJob fails if it is not Running this long after it starts: a cluster that never "
        "becomes ready shows as a failed job. The default leaves room for the ~2 h of deep health checks "
        "a new instance goes through.",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        return check_kuberay_name(name, MAX_RAY_JOB_NAME)


class RayConfig(Section):
    namespace: str = "ray"
    cluster_name: str = "ray-cluster"
    ray_version: str = "2.60.0"
    python_tag: str = "py311"
    image_uri: str | None = Field(
        default=None, description="Use this image instead of building docker/ray/Dockerfile at deploy."
    )
    image_efa: bool = Field(
        default=False,
        description="image_uri carries libfabric's EFA provider and the aws-ofi-nccl plugin: request EFA "
        "devices for it (the project's image always does).",
    )
    nccl_debug: Literal["VERSION", "WARN", "INFO", "TRACE"] = Field(
        default="INFO",
        description="NCCL_DEBUG of the workers; INFO logs at start which network (EFA or sockets) NCCL uses.",
    )
    head: HeadConfig = HeadConfig()
    worker_groups: tuple[WorkerGroupConfig, ...] = (WorkerGroupConfig(),)
    autoscaling: AutoscalingConfig = AutoscalingConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    job: RayJobConfig = RayJobConfig()

    _namespace = field_validator("namespace")(check_dns_label)

    @field_validator("cluster_name")
    @classmethod
    def _cluster_name(cls, name: str) -> str:
        return check_kuberay_name(name, MAX_RAY_CLUSTER_NAME)

    @field_validator("ray_version")
    @classmethod
    def _version(cls, version: str) -> str:
        if not RAY_VERSION.match(version):
            raise ValueError("must be a Ray release such as 2.60.0")
        return version

    @field_validator("image_uri")
    @classmethod
    def _image_matches_ray_version(cls, image_uri: str | None, info: ValidationInfo) -> str | None:
        ray_version = info.data.get("ray_version")
        if image_uri is None or ray_version is None:
            return image_uri
        match = IMAGE_TAG_VERSION.search(image_uri)
        if match is None:
            raise ValueError(
                f"the tag must start with the Ray version (e.g. :{ray_version}-py311-gpu) "
                "so that rayVersion can be checked against it"
            )
        if match.group(1) != ray_version:
            raise ValueError(
                f"the image has Ray {match.group(1)} but ray_version is {ray_version}: "
                "KubeRay needs rayVersion to match the image's Ray"
            )
        return image_uri

    @model_validator(mode="after")
    def _unique_worker_groups(self) -> "RayConfig":
        names = [group.name for group in self.worker_groups]
        if len(set(names)) != len(names):
            raise ValueError(f"worker group names must be unique: {names}")
        return self
