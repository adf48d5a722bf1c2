"""The RayCluster: a CPU head on the HyperPod head group, one GPU worker group per configured entry."""

from cdk8s import ApiObjectMetadata, Chart
from constructs import Construct

from config import AppConfig, InstanceGroupConfig, PodSize, instance_facts
from config.capacity import cpu_millis
from k8s_charts import gcs, kuberay
from k8s_charts.imports.io import ray
from k8s_charts.ray_job import storage_path
from k8s_charts.storage import PREPARE_CAPABILITIES, prepare_command

# Labels every HyperPod EKS node carries. The instance type comes with the ml. prefix (ml.p5.48xlarge).
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
INSTANCE_GROUP_LABEL = "sagemaker.amazonaws.com/instance-group-name"
HEALTH_LABEL = "sagemaker.amazonaws.com/node-health-status"
SCHEDULABLE = "Schedulable"

GPU_RESOURCE = "nvidia.com/gpu"
EFA_RESOURCE = "vpc.amazonaws.com/efa"
HEAD_PORTS = {"gcs": 6379, "dashboard": 8265, "client": 10001, "serve": 8000}
RAY_TMP = kuberay.Volume(name="ray-logs", mount_path="/tmp/ray")
# NCCL and Ray's object store use /dev/shm; a container's default one is 64 MiB.
SHARED_MEMORY = kuberay.Volume(name="dshm", mount_path="/dev/shm", medium="Memory")
FSX_VOLUME = "fsx"
# GPUs whose instances support GPUDirect RDMA over EFA (EC2 "EFA and GPUDirect RDMA" support): NCCL may
# then read and write GPU memory through the EFA device directly.
RDMA_GPU_MODELS = frozenset({"A100-40GB", "A100-80GB", "H100", "H200", "B200", "B300"})


class RayClusterChart(Chart):
    """A `ray.io/v1` RayCluster named `config.ray.cluster_name` in `config.ray.namespace`.

    `image` is the Ray image for every pod (a CloudFormation token at synth when CDK builds it). The PVC
    `config.storage.claim_name` must exist in the same namespace (see StorageChart).
    """

    def __init__(self, scope: Construct, id: str, *, config: AppConfig, image: str) -> None:
        super().__init__(scope, id)
        self.cluster_name = config.ray.cluster_name
        self.namespace_name = config.ray.namespace
        # The ClusterIP service KubeRay creates for the head (dashboard 8265, client 10001, GCS 6379).
        self.head_service_name = f"{config.ray.cluster_name}-head-svc"
        # The Secret KubeRay creates for token authentication (key `auth_token`): named after the cluster.
        self.auth_secret_name = config.ray.cluster_name
        self.auth_secret_key = "auth_token"
        autoscaling = config.ray.autoscaling
        cluster = kuberay.RayCluster(
            self,
            "ray-cluster",
            metadata=ApiObjectMetadata(name=config.ray.cluster_name, namespace=config.ray.namespace),
            spec=ray.RayClusterSpec(
                ray_version=config.ray.ray_version,
                auth_options=kuberay.token_auth(),
                # A redeploy that changes the pod template restarts every Ray pod; a running job resumes
                # from its last checkpoint on /fsx.
                upgrade_strategy=kuberay.recreate_on_change(),
                head_group_spec=_head(config, image),
                worker_group_specs=[_worker(config, image, i) for i in range(len(config.ray.worker_groups))],
                enable_in_tree_autoscaling=True if autoscaling.enabled else None,
                autoscaler_options=(
                    kuberay.autoscaler(idle_timeout_seconds=autoscaling.idle_timeout_seconds)
                    if autoscaling.enabled
                    else None
                ),
                gcs_fault_tolerance_options=gcs.fault_tolerance_options(config),
            ),
        )
        _prepare_storage(cluster, config, image)


def _head(config: AppConfig, image: str) -> ray.RayClusterSpecHeadGroupSpec:
    group = config.hyperpod.group(config.ray.head.instance_group)
    size = config.head_size()
    container = kuberay.RayContainer(
        name="ray-head",
        image=image,
        resources={"cpu": size.cpu, "memory": size.memory},
        ports=HEAD_PORTS,
        env={**_monitoring_env(config), **gcs.head_env(config)},
    )
    pod = kuberay.Pod(
        container=container,
        node_selector=node_selector(group),
        volumes=(RAY_TMP, _fsx(config)),
        tolerations=group_tolerations(group),
    )
    # num-cpus 0: no tasks or actors on the head, whose CPUs belong to GCS, the dashboard and job drivers.
    return kuberay.head_group(ray_start_params={"dashboard-host": "0.0.0.0", "num-cpus": "0"}, pod=pod)


def _worker(config: AppConfig, image: str, index: int) -> ray.RayClusterSpecWorkerGroupSpecs:
    worker = config.ray.worker_groups[index]
    group = config.hyperpod.group(worker.instance_group)
    size = config.worker_size(index)
    container = kuberay.RayContainer(
        name="ray-worker",
        image=image,
        resources=_worker_resources(size),
        env={**_network_env(config, group, size), **gcs.worker_env(config)},
    )
    tolerations = group_tolerations(group)
    if size.gpus > 0:
        tolerations += (kuberay.Toleration(key=GPU_RESOURCE),)
    pod = kuberay.Pod(
        container=container,
        node_selector=worker_node_selector(group),
        volumes=(RAY_TMP, SHARED_MEMORY, _fsx(config)),
        tolerations=tolerations,
    )
    return kuberay.worker_group(
        name=worker.name,
        replicas=worker.replicas,
        min_replicas=worker.min_replicas,
        max_replicas=worker.max_replicas,
        # Whole CPUs for Ray: KubeRay would round a fractional limit up and over-promise.
        ray_start_params={"num-cpus": str(cpu_millis(size.cpu) // 1000), "num-gpus": str(size.gpus)},
        pod=pod,
    )


def _worker_resources(size: PodSize) -> dict[str, str | int]:
    resources: dict[str, str | int] = {"cpu": size.cpu, "memory": size.memory}
    if size.gpus > 0:
        resources[GPU_RESOURCE] = size.gpus
    if size.efa > 0:
        resources[EFA_RESOURCE] = size.efa
    return resources


def _network_env(config: AppConfig, group: InstanceGroupConfig, size: PodSize) -> dict[str, str]:
    """What NCCL needs to say which network it uses and, with EFA devices, to use them.

    EFA also needs an unlimited locked-memory limit to register buffers. AWS's EKS samples
    (awsome-distributed-training's FSDP and nccl-tests manifests) set nothing for it in the pod: the
    node's container runtime provides it (amazon-eks-ami raised the containers' memlock limit to
    unlimited, awslabs/amazon-eks-ami#595). The pod does the same and adds no capability;
    docker/ray/README.md shows how to check it on a node.
    """
    if size.gpus == 0:
        return {}
    env = {"NCCL_DEBUG": config.ray.nccl_debug, "NCCL_DEBUG_SUBSYS": "INIT,NET"}
    if size.efa > 0:
        env |= {
            "FI_PROVIDER": "efa",  # libfabric: EFA only, never a TCP fallback provider
            "FI_EFA_FORK_SAFE": "1",  # Ray forks worker processes after libfabric may have started
        }
        if instance_facts(group.instance_type).gpu_model in RDMA_GPU_MODELS:
            env["FI_EFA_USE_DEVICE_RDMA"] = "1"
    return env


def node_selector(group: InstanceGroupConfig) -> dict[str, str]:
    # Both labels: the group pins the pod to its nodes even when two groups share an instance type.
    return {INSTANCE_TYPE_LABEL: group.instance_type, INSTANCE_GROUP_LABEL: group.name}


def worker_node_selector(group: InstanceGroupConfig) -> dict[str, str]:
    """Fixed groups: the group's nodes, once HyperPod's health agent calls them Schedulable.

    Autoscaled groups: only the instance type. A pending pod gets a node from Karpenter only if every label
    it selects is one the HyperPod provider knows before the node exists (instance type, zone, arch: AWS
    "Create a NodePool"); the group-name and health labels appear only on a running node, so selecting them
    would leave the pod Pending with no NodeClaim. The instance type still pins the group (config requires
    an autoscaled group's type to be its own), and a node HyperPod finds unhealthy carries the
    node-health-status=Unschedulable:NoSchedule taint, which worker pods do not tolerate.
    """
    if group.autoscaled:
        return {INSTANCE_TYPE_LABEL: group.instance_type}
    return {**node_selector(group), HEALTH_LABEL: SCHEDULABLE}


def group_tolerations(group: InstanceGroupConfig) -> tuple[kuberay.Toleration, ...]:
    """Tolerate the taints HyperPod puts on the group's nodes (InstanceGroupConfig.taints)."""
    return tuple(
        kuberay.Toleration(key=taint.key, value=taint.value, effect=taint.effect) for taint in group.taints
    )


def _fsx(config: AppConfig) -> kuberay.Volume:
    return kuberay.Volume(
        name=FSX_VOLUME, mount_path=config.storage.mount_path, claim_name=config.storage.claim_name
    )


PREPARE_STORAGE = "prepare-storage"  # the root init step that makes /fsx the Ray user's


def _prepare_storage(cluster: kuberay.RayCluster, config: AppConfig, image: str) -> None:
    """Every pod that mounts the file system (the head and each worker group) first makes the mount's root
    and the runs' directory the Ray user's: on a new or restored file system they are root's, and the
    CSI driver does not apply fsGroup to RWX volumes. Each pod does it, as any may start first."""
    step = kuberay.RootInitStep(
        name=PREPARE_STORAGE,
        image=image,  # already on the node for the Ray container; has /bin/sh, mkdir, chown
        command=prepare_command(
            (config.storage.mount_path, storage_path(config)), uid=kuberay.RAY_UID, gid=kuberay.RAY_GID
        ),
        volume=_fsx(config),
        capabilities=PREPARE_CAPABILITIES,
    )
    kuberay.add_root_init_step(cluster, kuberay.HEAD_POD_PATH, step)
    for index in range(len(config.ray.worker_groups)):
        kuberay.add_root_init_step(cluster, kuberay.worker_pod_path(index), step)


def _monitoring_env(config: AppConfig) -> dict[str, str]:
    """The dashboard's Grafana/Prometheus settings: only those configured (an empty one breaks its panels)."""
    monitoring = config.observability.ray_monitoring(config.ray.monitoring)
    env = {
        "RAY_GRAFANA_HOST": monitoring.grafana_host,
        "RAY_PROMETHEUS_HOST": monitoring.prometheus_host,
        "RAY_GRAFANA_IFRAME_HOST": monitoring.grafana_iframe_host,
    }
    return {name: value for name, value in env.items() if value}
