"""How much of a HyperPod node one Ray pod can request: the capacity model behind the derived pod sizes.

A pod larger than this stays Pending forever while CloudFormation reports success, so the sizes are
derived from it by default and checked against it when configured. The model is deliberately pessimistic
(every figure rounds towards less room for the pod):

    visible cores  = instance vCPUs x ThreadsPerCore / 2          (ThreadsPerCore 1 hides the siblings)
    memory         = instance memory x (1 - 7.5%)                 (what the kernel reports, Karpenter's
                                                                   default VM_MEMORY_OVERHEAD_PERCENT)
    allocatable    = capacity - kube-reserved - eviction threshold (the EKS AMI's nodeadm formula)
    for a Ray pod  = allocatable - every per-node DaemonSet - every cluster Deployment (they may all land
                     on the same node: nothing keeps them off HyperPod nodes, the cluster's only nodes)
                     - the pods pinned beside it (the job supervisor beside the head, when it runs)

kube-reserved, from awslabs/amazon-eks-ami nodeadm (`internal/kubelet/config.go`):
    cpu    = 6% of the first core + 1% of the second + 0.5% of the next two + 0.25% of the rest
    memory = 11 MiB x maxPods + 255 MiB
    eviction-hard memory.available = 100Mi

maxPods is the larger of the ENI-derived value (the EKS AMI's own table, config/data/eks_max_pods.txt:
default ENIs x (IPv4 addresses per ENI - 1) + 2, what nodeadm and the AL2 bootstrap use when nothing
overrides it) and the max-pods-calculator's caps (110 up to 30 vCPUs, 250 above), which a node started
with prefix delegation or `--use-max-pods false` may use instead. HyperPod does not document which of them
its AMI's kubelet uses, nor any reservation of its own beyond the kubelet's (system-reserved is unset in
the EKS AMIs): the larger one is kept, so the model errs towards a smaller pod. Karpenter publishes the
same figures (ml.g5.12xlarge, 737 pods: 173400Mi allocatable before DaemonSets). `ops status` shows the
real allocatable of each node once it has joined.
"""

from functools import cache
from pathlib import Path
from typing import NamedTuple

from .instance_types import UnknownInstanceTypeError, instance_facts

VM_MEMORY_OVERHEAD = 0.075
EVICTION_HARD_MIB = 100
BASE_RESERVED_MIB = 255
RESERVED_MIB_PER_POD = 11
# (up to this many millicores, reserve this many ten-thousandths of them)
CPU_RESERVATION_STEPS = ((1000, 600), (2000, 100), (4000, 50), (None, 25))


class Requests(NamedTuple):
    """What one pod of a workload requests, and where the figure comes from."""

    name: str
    cpu_millis: int
    memory_mib: int
    source: str
    replicas: int = 1


# Pods every HyperPod node runs. Device plugins select GPU/EFA nodes only; counting them everywhere costs
# nothing since they request nothing.
NODE_DAEMONSETS: tuple[Requests, ...] = (
    Requests("aws-node", 25, 0, "vpc-cni add-on (amazon-vpc-cni-k8s chart values: requests cpu 25m)"),
    Requests(
        "aws-eks-nodeagent",
        25,
        0,
        "vpc-cni network policy agent (enableNetworkPolicy); counted like aws-node, no separate figure",
    ),
    Requests("kube-proxy", 100, 0, "kube-proxy add-on (requests cpu 100m)"),
    Requests("eks-pod-identity-agent", 0, 0, "eks-pod-identity-agent chart values: resources {}"),
    Requests(
        "fsx-csi-node",
        30,
        104,
        "aws-fsx-csi-driver chart: fsx-plugin 10m/40Mi, node-driver-registrar and liveness-probe 10m/32Mi",
    ),
    Requests("health-monitoring-agent", 500, 512, "HyperPod dependency chart: requests 500m/512Mi"),
    Requests("nvidia-device-plugin", 0, 0, "HyperPod dependency chart (nvidia-device-plugin 0.16.1): none"),
    Requests("aws-efa-k8s-device-plugin", 0, 0, "HyperPod dependency chart (0.5.20): none"),
)

# Cluster services that run as Deployments somewhere on the HyperPod nodes. The HyperPod chart's
# training-operator and mpi-operator request nothing.
CLUSTER_DEPLOYMENTS: tuple[Requests, ...] = (
    Requests("coredns", 100, 70, "coredns add-on: requests 100m/70Mi", replicas=2),
    Requests(
        "kuberay-operator", 100, 512, "kuberay-operator chart 1.7.0: limits 100m/512Mi (requests = limits)"
    ),
    Requests(
        "fsx-csi-controller",
        40,
        136,
        "aws-fsx-csi-driver chart: fsx-plugin 10m/40Mi, provisioner, resizer, liveness-probe 10m/32Mi",
        replicas=2,
    ),
)


# The job supervisor (ray.job.runner=supervisor, k8s_charts/ray_supervisor.py) runs on the head's
# instance group, beside a head pod that would otherwise take all a node can give: its requests (= limits)
# are reserved here, the one place both the head's size and the supervisor's pod read them. It imports
# Ray's job SDK (about 85 MiB resident with Ray 2.60) and polls the job API every few seconds.
SUPERVISOR = Requests("ray-job-supervisor", 250, 256, "k8s_charts/ray_supervisor.py: requests = limits")

# Pods this app places beside Ray pods, depending on the configuration (AppConfig.pods_beside says where).
DCGM_EXPORTER = Requests(
    "dcgm-exporter", 100, 128, "dcgm-exporter chart 4.x values: requests 100m/128Mi (GPU nodes only)"
)
IN_CLUSTER_STORE = Requests(
    "gcs-valkey", 250, 512, "k8s_charts/gcs.py: requests = limits, on any group but the head's"
)
RAYJOB_SUBMITTER = Requests(
    "rayjob-submitter", 500, 200, "KubeRay 1.7 default submitter pod: requests 500m/200Mi, no node selector"
)
AUTOSCALER = Requests(
    "ray-autoscaler", 500, 512, "KubeRay 1.7 default autoscaler sidecar of the head: requests 500m/512Mi"
)


class Capacity(NamedTuple):
    cpu_millis: int
    memory_mib: int
    gpus: int
    efa: int


def visible_cores(vcpus: int, threads_per_core: int) -> int:
    """vCPUs the OS (and so the kubelet) sees: ThreadsPerCore 1 disables the second thread of each core."""
    return vcpus * threads_per_core // 2


def kube_reserved_cpu_millis(cores: int) -> int:
    total = cores * 1000
    reserved, start = 0, 0
    for step_end, per_10000 in CPU_RESERVATION_STEPS:
        end = total if step_end is None else min(step_end, total)
        if end > start:
            reserved += (end - start) * per_10000 // 10000
            start = end
    return reserved


def max_pods_bound(vcpus: int) -> int:
    return 110 if vcpus <= 30 else 250


MAX_PODS_TABLE = Path(__file__).with_name("data") / "eks_max_pods.txt"


@cache
def eni_max_pods_table() -> dict[str, int]:
    """EC2 instance type -> the EKS AMI's ENI-derived maxPods (a committed copy of the AMI's table)."""
    table = {}
    for line in MAX_PODS_TABLE.read_text().splitlines():
        if line and not line.startswith("#"):
            # nodeadm's CalcMaxPods; the fourth column shows the result (tests check they agree)
            instance_type, enis, ips_per_eni, _shown = line.split()
            table[instance_type] = int(enis) * (int(ips_per_eni) - 1) + 2
    return table


def kubelet_max_pods(instance_type: str, vcpus: int) -> int:
    """The maxPods the kubelet's memory reservation is computed from, at worst: the larger of the
    ENI-derived value and the calculator's cap (which HyperPod's AMI uses is not documented)."""
    eni = eni_max_pods_table().get(instance_type.removeprefix("ml."))
    if eni is None:
        raise UnknownInstanceTypeError(f"{instance_type} is not in the EKS AMI max-pods table")
    return max(eni, max_pods_bound(vcpus))


def kube_reserved_memory_mib(max_pods: int) -> int:
    return RESERVED_MIB_PER_POD * max_pods + BASE_RESERVED_MIB


def node_allocatable(instance_type: str, threads_per_core: int) -> Capacity:
    """What the kubelet of one node offers to all pods (raises UnknownInstanceTypeError)."""
    facts = instance_facts(instance_type)
    cores = visible_cores(facts.vcpus, threads_per_core)
    memory_mib = int(facts.memory_gib * 1024 * (1 - VM_MEMORY_OVERHEAD))
    return Capacity(
        cpu_millis=cores * 1000 - kube_reserved_cpu_millis(cores),
        memory_mib=memory_mib
        - kube_reserved_memory_mib(kubelet_max_pods(instance_type, facts.vcpus))
        - EVICTION_HARD_MIB,
        gpus=facts.gpus,
        efa=facts.efa,
    )


def overhead() -> tuple[int, int]:
    """CPU (millicores) and memory (MiB) that other pods may take on any node, at worst."""
    pods = [(r, 1) for r in NODE_DAEMONSETS] + [(r, r.replicas) for r in CLUSTER_DEPLOYMENTS]
    return (
        sum(r.cpu_millis * n for r, n in pods),
        sum(r.memory_mib * n for r, n in pods),
    )


def ray_pod_capacity(
    instance_type: str, threads_per_core: int, beside: tuple[Requests, ...] = ()
) -> Capacity:
    """The largest Ray pod that always fits one node of this type next to the pods `beside` it (pinned to
    the same nodes), raises UnknownInstanceTypeError."""
    node = node_allocatable(instance_type, threads_per_core)
    cpu, memory = overhead()
    cpu += sum(r.cpu_millis * r.replicas for r in beside)
    memory += sum(r.memory_mib * r.replicas for r in beside)
    return node._replace(cpu_millis=node.cpu_millis - cpu, memory_mib=node.memory_mib - memory)


# Kubernetes quantities (the subset config accepts: decimal and binary suffixes, millicores).
_SUFFIX = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def _split(quantity: str) -> tuple[float, str]:
    number = quantity.rstrip("kMGTi")
    return float(number), quantity[len(number) :]


def cpu_millis(quantity: str) -> int:
    """A CPU quantity ("4", "3.5", "500m") in millicores, rounded up (so that a check is never lenient)."""
    if quantity.endswith("m"):
        return int(quantity[:-1])
    number, suffix = _split(quantity)
    return -int(-number * _SUFFIX[suffix] * 1000 // 1)


def memory_mib(quantity: str) -> float:
    """A memory quantity ("24Gi", "1000M", "512Mi") in MiB."""
    if quantity.endswith("m"):  # millibytes: legal, never sensible
        return int(quantity[:-1]) / 1000 / 2**20
    number, suffix = _split(quantity)
    return number * _SUFFIX[suffix] / 2**20


def cpu_quantity(millis: int) -> str:
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def memory_quantity(mib: int) -> str:
    return f"{mib // 1024}Gi" if mib % 1024 == 0 else f"{mib}Mi"
