"""KubeRay and the RayCluster: operator version, image, head and worker groups."""

import re
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from .base import Section
from .types import (
    CommandArgument,
    DnsLabel,
    DnsLabel1035,
    HttpUrl,
    ImageUri,
    Namespace,
    Quantity,
    SageMakerInstanceGroupName,
    SemVer,
)

RAY_VERSION = re.compile(r"\d+\.\d+\.\d+")
PYTHON_TAG = re.compile(r"py3\d{1,2}")
IMAGE_TAG_VERSION = re.compile(r":(\d+\.\d+\.\d+)(-[\w.-]+)?(@sha256:[0-9a-f]{64})?\Z")
# KubeRay rejects RayCluster names over 53 characters (room for its "-serve-svc" suffix) and RayJob names over
# 47 (room for the suffix of a cluster it creates); both must be DNS-1035 labels, i.e. start with a letter.
MAX_RAY_CLUSTER_NAME = 53
MAX_RAY_JOB_NAME = MAX_RAY_CLUSTER_NAME - 6


def check_kuberay_name(value: str, max_length: int) -> str:
    """A name KubeRay's own validation accepts (it would only fail later, in the operator's log)."""
    if len(value) > max_length:
        raise ValueError(f"KubeRay needs a name of at most {max_length} characters")
    return value


# The arguments are repeated in the job's manifest, inside a CloudFormation template whose body may be at most
# 1 MB (CloudFormation quotas): 16 KiB in all keeps every template far below it.
MAX_ENTRYPOINT_CHARS = 16384


def check_entrypoint_args(args: tuple[str, ...]) -> tuple[str, ...]:
    total = sum(len(arg) + 1 for arg in args)
    if total > MAX_ENTRYPOINT_CHARS:
        raise ValueError(
            f"add up to {total} characters: at most {MAX_ENTRYPOINT_CHARS}, so that the manifest and its "
            "CloudFormation template (1 MB at most) stay small"
        )
    return args


class KubeRayConfig(Section):
    operator_chart_version: SemVer = Field(
        default="1.7.0", description="kuberay-operator Helm chart version."
    )
    namespace: Namespace = Field(default="kuberay", description="Namespace of the KubeRay operator.")


SIZE_HELP = (
    "Defaults to all that one node of the instance group can give a pod (config/capacity.py); "
    "a larger value is a config error."
)


class HeadConfig(Section):
    instance_group: SageMakerInstanceGroupName = Field(
        default="head", description="HyperPod instance group the Ray head runs on."
    )
    cpu: Quantity | None = Field(default=None, description=SIZE_HELP)
    memory: Quantity | None = Field(default=None, description=SIZE_HELP)


class WorkerGroupConfig(Section):
    name: DnsLabel = Field(default="gpu-workers", description="Ray worker group name.")
    instance_group: SageMakerInstanceGroupName = Field(
        default="workers", description="HyperPod instance group the workers run on (one pod per node)."
    )
    replicas: int = Field(default=4, ge=0, description="Worker pods to start with.")
    min_replicas: int = Field(default=0, ge=0, description="Fewest worker pods (the autoscaler's floor).")
    max_replicas: int = Field(default=4, ge=0, description="Most worker pods; at most the group's nodes.")
    gpus: int | None = Field(default=None, ge=0, description="Defaults to the instance type's GPU count.")
    efa: bool = Field(
        default=True,
        description="Request every EFA device of the instance type, when the image can use them "
        "(the project's image, or ray.image_efa for ray.image_uri).",
    )
    cpu: Quantity | None = Field(default=None, description=SIZE_HELP)
    memory: Quantity | None = Field(default=None, description=SIZE_HELP)

    @model_validator(mode="after")
    def _replicas_in_range(self) -> "WorkerGroupConfig":
        if not self.min_replicas <= self.replicas <= self.max_replicas:
            raise ValueError(
                f"replicas ({self.replicas}) must be within [min_replicas, max_replicas] = "
                f"[{self.min_replicas}, {self.max_replicas}]"
            )
        return self


class AutoscalingConfig(Section):
    enabled: bool = Field(default=False, description="Run the Ray autoscaler (in-tree, KubeRay).")
    idle_timeout_seconds: int = Field(
        default=60, ge=0, description="Seconds an idle worker stays before the autoscaler removes it."
    )


class MonitoringConfig(Section):
    """Where the Ray dashboard finds Grafana and Prometheus, if the cluster has them."""

    grafana_host: HttpUrl | None = Field(default=None, description="RAY_GRAFANA_HOST for the dashboard.")
    prometheus_host: HttpUrl | None = Field(
        default=None, description="RAY_PROMETHEUS_HOST for the dashboard."
    )
    grafana_iframe_host: HttpUrl | None = Field(
        default=None, description="RAY_GRAFANA_IFRAME_HOST: Grafana as the browser reaches it."
    )


class RayJobConfig(Section):
    enabled: bool = Field(
        default=False, description="Also run jobs/fsdp_ray on the cluster, declaratively (ray.job.runner)."
    )
    runner: Literal["supervisor", "rayjob"] = Field(
        default="supervisor",
        description="What submits the job. supervisor: a Kubernetes Job running jobs/supervisor.py beside "
        "the head, which resubmits the run after a head loss so that it resumes from its last checkpoint "
        "with no one acting. rayjob: a KubeRay RayJob, which dies with the head (KubeRay allows no retries "
        "on a RayJob that selects an existing cluster).",
    )
    name: DnsLabel1035 = Field(
        default="fsdp-train",
        description="The run name; also the RayJob's name, or the supervisor Job's (<name>-supervisor).",
    )
    entrypoint_args: tuple[CommandArgument, ...] = Field(
        default=("--max-steps", "1000", "--checkpoint-every", "50"),
        description="Extra train.py arguments, each one argument (quoted into the entrypoint).",
    )
    shutdown_after_job_finishes: bool = Field(
        default=False, description="KubeRay's shutdownAfterJobFinishes (only for clusters a RayJob creates)."
    )
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

    _args_bounded = field_validator("entrypoint_args")(check_entrypoint_args)


class RayConfig(Section):
    namespace: Namespace = Field(default="ray", description="Namespace of the RayCluster, claim and RayJob.")
    cluster_name: DnsLabel1035 = Field(default="ray-cluster", description="RayCluster name.")
    ray_version: str = Field(default="2.60.0", description="Ray release of the image and rayVersion.")
    python_tag: str = Field(default="py311", description="Python tag of the rayproject/ray base image.")
    image_uri: ImageUri | None = Field(
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
    head: HeadConfig = Field(default=HeadConfig(), description="The Ray head pod.")
    worker_groups: tuple[WorkerGroupConfig, ...] = Field(
        default=(WorkerGroupConfig(),), description="Ray worker groups, each on one HyperPod instance group."
    )
    autoscaling: AutoscalingConfig = Field(default=AutoscalingConfig(), description="The Ray autoscaler.")
    monitoring: MonitoringConfig = Field(default=MonitoringConfig(), description="Dashboard metrics sources.")
    job: RayJobConfig = Field(default=RayJobConfig(), description="The optional declarative RayJob.")
    allow_imds: bool = Field(
        default=False,
        description="Let Ray pods reach the instance metadata service (169.254.169.254), and through it "
        "the node's HyperPod execution role. Off: user code in a Ray job gets no node credentials "
        "(k8s_charts/network_policy.py).",
    )

    @field_validator("cluster_name")
    @classmethod
    def _cluster_name(cls, name: str) -> str:
        return check_kuberay_name(name, MAX_RAY_CLUSTER_NAME)

    @field_validator("ray_version")
    @classmethod
    def _version(cls, version: str) -> str:
        if not RAY_VERSION.fullmatch(version):
            raise ValueError("must be a Ray release such as 2.60.0")
        return version

    @field_validator("python_tag")
    @classmethod
    def _python_tag(cls, tag: str) -> str:
        if not PYTHON_TAG.fullmatch(tag):
            raise ValueError("must be a rayproject/ray Python tag such as py311")
        return tag

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
