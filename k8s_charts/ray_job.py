"""A declarative run of jobs/fsdp_ray on the existing RayCluster."""

import shlex

import yaml
from cdk8s import ApiObjectMetadata, Chart
from constructs import Construct

from config import AppConfig
from k8s_charts.imports.io import ray

# Where the Ray image (docker/ray/Dockerfile) holds a copy of jobs/fsdp_ray.
JOB_DIR = "/home/ray/jobs/fsdp_ray"
CLUSTER_LABEL = "ray.io/cluster"


class RayJobChart(Chart):
    """A `ray.io/v1` RayJob that submits `train.py` to the RayCluster `config.ray.cluster_name`.

    The job selects the existing cluster (`clusterSelector`) instead of creating its own, so the GPUs it
    trains on are the long-lived cluster's. In that mode KubeRay never deletes the selected cluster:
    `shutdownAfterJobFinishes` (from config) only matters for clusters a RayJob creates itself, and the
    cluster outlives the job either way. KubeRay submits through a Kubernetes Job whose pod uses the
    cluster head's image, which is why `working_dir` can name a path inside that image; Ray then ships it
    to every worker, so the job's modules import everywhere.

    The run is named after the job, so re-creating the RayJob resumes from the last checkpoint under
    `<mount_path>/ray_results/<job name>` instead of starting over.
    """

    def __init__(self, scope: Construct, id: str, *, config: AppConfig) -> None:
        super().__init__(scope, id)
        job = config.ray.job
        self.job_name = job.name
        self.entrypoint = shlex.join(train_command(config))
        ray.RayJob(
            self,
            "ray-job",
            metadata=ApiObjectMetadata(name=job.name, namespace=config.ray.namespace),
            spec=ray.RayJobSpec(
                entrypoint=self.entrypoint,
                cluster_selector={CLUSTER_LABEL: config.ray.cluster_name},
                runtime_env_yaml=yaml.safe_dump({"working_dir": JOB_DIR}),
                shutdown_after_job_finishes=job.shutdown_after_job_finishes,
                # Fails the job visibly when the cluster never becomes ready (no nodes, Pending pods).
                pre_running_deadline_seconds=job.pre_running_deadline_seconds,
            ),
        )


def train_command(config: AppConfig) -> list[str]:
    """train.py with defaults derived from the cluster first, so `entrypoint_args` can override them: the
    one derivation of the job's arguments, for the RayJob's entrypoint and the supervisor's alike."""
    derived = train_args(config, config.ray.job.name)
    return [
        "python3",
        "train.py",
        *derived,
        *config.ray.job.entrypoint_args,
        "--storage-path",
        storage_path(config),
    ]


def train_args(config: AppConfig, run_name: str) -> list[str]:
    """The run name, and the workers and device the configured cluster implies: one Ray Train worker per GPU
    of the worker pods, or, on a cluster without GPUs, one CPU worker per pod. The job never decides this
    from what the cluster shows at submit time (an autoscaled cluster may show no GPUs yet)."""
    gpus = total_worker_gpus(config)
    if gpus > 0:
        return ["--run-name", run_name, "--num-workers", str(gpus), "--gpus-per-worker", "1"]
    pods = max(1, sum(group.replicas for group in config.ray.worker_groups))
    return ["--run-name", run_name, "--num-workers", str(pods), "--gpus-per-worker", "0"]


def storage_path(config: AppConfig) -> str:
    """Where runs keep their checkpoints: on the shared file system, so any pod can resume them."""
    return f"{config.storage.mount_path.rstrip('/')}/ray_results"


def total_worker_gpus(config: AppConfig) -> int:
    """GPUs of all worker pods at their configured replica counts."""
    groups = config.ray.worker_groups
    return sum(group.replicas * config.worker_gpus(i) for i, group in enumerate(groups))
