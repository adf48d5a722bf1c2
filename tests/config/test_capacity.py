"""The capacity model: instance facts, the EKS AMI's kubelet reservation, derived and checked pod sizes."""

import botocore.session
import pytest

from config import ConfigError, load_config
from config.capacity import (
    AUTOSCALER,
    CLUSTER_DEPLOYMENTS,
    DCGM_EXPORTER,
    IN_CLUSTER_STORE,
    MAX_PODS_TABLE,
    NODE_DAEMONSETS,
    RAYJOB_SUBMITTER,
    SUPERVISOR,
    cpu_millis,
    eni_max_pods_table,
    kube_reserved_cpu_millis,
    kube_reserved_memory_mib,
    kubelet_max_pods,
    memory_mib,
    node_allocatable,
    overhead,
    ray_pod_capacity,
    visible_cores,
)
from config.instance_types import ARM64_TYPES, INSTANCE_FACTS, UnknownInstanceTypeError, instance_facts
from tests.support.apps import run_app

# In the SageMaker enum but deliberately absent from the table (no public figures at hand): see its docstring.
UNSOURCED = {
    f"ml.g7.{size}" for size in ("2xlarge", "4xlarge", "8xlarge", "12xlarge", "24xlarge", "48xlarge")
} | {
    "ml.c8a.16xlarge",
    "ml.m8a.16xlarge",
}


def hyperpod_instance_types() -> list[str]:
    model = botocore.session.get_session().get_service_model("sagemaker")
    return list(model.shape_for("ClusterInstanceType").enum)


def test_every_hyperpod_instance_type_is_in_the_table_or_refused_with_a_reason():
    offered = set(hyperpod_instance_types())
    assert set(INSTANCE_FACTS) <= offered, sorted(set(INSTANCE_FACTS) - offered)
    assert offered >= ARM64_TYPES, sorted(ARM64_TYPES - offered)
    assert offered - set(INSTANCE_FACTS) - ARM64_TYPES == UNSOURCED


@pytest.mark.parametrize(
    ("instance_type", "facts"),
    [  # EC2's published specifications
        ("ml.p5.48xlarge", (192, 2048, 8, 32, "H100")),
        ("ml.p4d.24xlarge", (96, 1152, 8, 4, "A100-40GB")),
        ("ml.g5.12xlarge", (48, 192, 4, 1, "A10G")),
        ("ml.m5.2xlarge", (8, 32, 0, 0, None)),
        ("ml.g4dn.12xlarge", (48, 192, 4, 1, "T4")),
        ("ml.p5en.48xlarge", (192, 2048, 8, 16, "H200")),
    ],
)
def test_instance_facts_match_ec2(instance_type, facts):
    assert tuple(instance_facts(instance_type)) == facts


def test_gpu_types_name_their_gpu_and_cpu_types_do_not():
    for instance_type, facts in INSTANCE_FACTS.items():
        assert (facts.gpus > 0) == (facts.gpu_model is not None), instance_type


def test_unknown_and_arm64_types_are_refused_with_the_reason():
    with pytest.raises(
        UnknownInstanceTypeError, match="arm64 instance type; the Ray image is built for linux/amd64"
    ):
        instance_facts("ml.c7g.4xlarge")
    with pytest.raises(UnknownInstanceTypeError, match="not in the instance facts table"):
        instance_facts("ml.g7.2xlarge")


@pytest.mark.parametrize(
    ("cores", "millicores"),
    # nodeadm's steps: 6% of core 1, 1% of core 2, 0.5% of cores 3-4, 0.25% beyond
    [(1, 60), (2, 70), (4, 80), (8, 90), (48, 190), (96, 310)],
)
def test_kubelet_cpu_reservation_follows_the_eks_ami(cores, millicores):
    assert kube_reserved_cpu_millis(cores) == millicores


def test_kubelet_memory_reservation_is_11_mib_per_pod_plus_255():
    assert kube_reserved_memory_mib(110) == 11 * 110 + 255
    assert kube_reserved_memory_mib(737) == 8362


@pytest.mark.parametrize(
    ("instance_type", "max_pods"),
    [
        ("ml.g5.12xlarge", 737),  # ENI-derived (15 x 49 + 2) beats the cap of 250
        ("ml.p5.48xlarge", 250),  # ENI-derived 100: the cap of 250 is larger
        ("ml.m5.2xlarge", 110),  # ENI-derived 58: the cap of 110 (8 vCPUs) is larger
        ("ml.p4d.24xlarge", 737),
    ],
)
def test_max_pods_is_the_larger_of_the_eni_table_and_the_cap(instance_type, max_pods):
    assert kubelet_max_pods(instance_type, instance_facts(instance_type).vcpus) == max_pods


def test_the_max_pods_table_covers_every_instance_type_and_shows_the_formula():
    table = eni_max_pods_table()
    assert {f"ml.{name}" for name in table} == set(INSTANCE_FACTS)
    for line in MAX_PODS_TABLE.read_text().splitlines():
        if not line.startswith("#"):
            name, enis, ips, shown = line.split()
            assert int(shown) == int(enis) * (int(ips) - 1) + 2 == table[name], line


def test_a_g5_12xlarge_offers_karpenters_published_allocatable():
    # Karpenter's published allocatable memory for g5.12xlarge (maxPods 737): 173400Mi.
    assert node_allocatable("ml.g5.12xlarge", 2).memory_mib == 173400


def test_threads_per_core_1_halves_the_vcpus_a_node_shows():
    assert visible_cores(8, 1) == 4 and visible_cores(192, 1) == 96 and visible_cores(192, 2) == 192


def test_allocatable_of_a_p5_with_hyperthreading_off():
    node = node_allocatable("ml.p5.48xlarge", 1)
    assert node.cpu_millis == 96_000 - 310
    assert node.memory_mib == int(2048 * 1024 * 0.925) - (11 * 250 + 255) - 100
    assert (node.gpus, node.efa) == (8, 32)


def test_overhead_is_the_sum_of_the_listed_pods():
    cpu, memory = overhead()
    assert cpu == sum(p.cpu_millis for p in NODE_DAEMONSETS) + sum(
        p.cpu_millis * p.replicas for p in CLUSTER_DEPLOYMENTS
    )
    assert memory == sum(p.memory_mib for p in NODE_DAEMONSETS) + sum(
        p.memory_mib * p.replicas for p in CLUSTER_DEPLOYMENTS
    )
    names = {p.name for p in NODE_DAEMONSETS}
    assert {
        "aws-node",
        "kube-proxy",
        "fsx-csi-node",
        "health-monitoring-agent",
        "nvidia-device-plugin",
    } <= names


@pytest.mark.parametrize(
    ("quantity", "millis"), [("4", 4000), ("3.5", 3500), ("500m", 500), ("2860m", 2860), ("0.0001", 1)]
)
def test_cpu_quantities(quantity, millis):
    assert cpu_millis(quantity) == millis


@pytest.mark.parametrize(
    ("quantity", "mib"), [("24Gi", 24 * 1024), ("512Mi", 512), ("1G", 10**9 / 2**20), ("2Ti", 2 * 1024**2)]
)
def test_memory_quantities(quantity, mib):
    assert memory_mib(quantity) == pytest.approx(mib)


def test_default_sizes_are_derived_from_the_nodes():
    config = load_config({})
    head, workers = config.head_size(), config.worker_size(0)
    room = ray_pod_capacity("ml.m5.2xlarge", 1)
    assert (cpu_millis(head.cpu), memory_mib(head.memory)) == (room.cpu_millis, room.memory_mib)
    p5 = ray_pod_capacity("ml.p5.48xlarge", 1, (DCGM_EXPORTER,))  # observability on: DCGM on GPU nodes
    assert cpu_millis(workers.cpu) == p5.cpu_millis // 1000 * 1000  # whole cores for Ray
    assert memory_mib(workers.memory) == p5.memory_mib
    assert (workers.gpus, workers.efa) == (8, 32)


def test_hyperthreading_on_doubles_the_derived_cpus():
    groups = '[{"name": "head", "instance_type": "ml.m5.2xlarge", "count": 1, "threads_per_core": 2}, ' + (
        '{"name": "workers", "instance_type": "ml.p5.48xlarge", "count": 4, "threads_per_core": 2}]'
    )
    config = load_config({"hyperpod.instance_groups": groups})
    assert (
        cpu_millis(config.worker_size(0).cpu)
        == ray_pod_capacity("ml.p5.48xlarge", 2).cpu_millis // 1000 * 1000
    )
    assert cpu_millis(config.worker_size(0).cpu) > 180_000


def test_a_user_image_gets_efa_only_when_it_says_it_can_use_it():
    plain = load_config({"ray.image_uri": "example.com/ray:2.60.0-gpu"})
    assert plain.worker_size(0).efa == 0
    efa = load_config({"ray.image_uri": "example.com/ray:2.60.0-gpu", "ray.image_efa": "true"})
    assert efa.worker_size(0).efa == 32
    assert load_config({"ray.worker_groups": '[{"efa": false}]'}).worker_size(0).efa == 0


def one_error(context: dict) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(context)
    assert len(caught.value.problems) == 1, caught.value.problems
    return caught.value.problems[0]


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        (
            {"ray.head.cpu": "6"},
            "ray.head.cpu='6' is more than one ml.m5.2xlarge node (ThreadsPerCore 1) can give a pod: "
            "at most 2860m",
        ),
        (
            {"ray.head.memory": "30Gi"},
            "ray.head.memory='30Gi' is more than one ml.m5.2xlarge node (ThreadsPerCore 1) can give a pod: "
            "at most 27205Mi",
        ),
        (
            {"ray.worker_groups": '[{"cpu": "180"}]'},
            "ray.worker_groups[0].cpu='180' is more than one ml.p5.48xlarge node (ThreadsPerCore 1) beside "
            "dcgm-exporter (100m, 128Mi) can give a pod: at most 94530m",
        ),
        (
            {"ray.worker_groups": '[{"cpu": "500m"}]'},
            "ray.worker_groups[0].cpu='500m' gives Ray no whole CPU (num-cpus 0): request at least 1; one "
            "ml.p5.48xlarge node (ThreadsPerCore 1) beside dcgm-exporter (100m, 128Mi) leaves 94530m for "
            "the pod",
        ),
        (
            {"ray.worker_groups": '[{"gpus": 9}]'},
            "ray.worker_groups[0].gpus=9 exceeds the 8 GPUs of ml.p5.48xlarge",
        ),
        (
            {
                "hyperpod.instance_groups": '[{"name": "head", "instance_type": "ml.m5.2xlarge", "count": 1},'
                ' {"name": "workers", "instance_type": "ml.g7.2xlarge", "count": 1}]',
                "ray.worker_groups": '[{"max_replicas": 1, "replicas": 1}]',
            },
            "ray.worker_groups[0]: instance group 'workers': ml.g7.2xlarge is not in the instance facts "
            "table",
        ),
        (
            {
                "hyperpod.instance_groups": '[{"name": "head", "instance_type": "ml.t3.medium", "count": 1}, '
                '{"name": "workers", "instance_type": "ml.p5.48xlarge", "count": 4}]',
            },
            "ray.head: one ml.t3.medium node (ThreadsPerCore 1) leaves 0 CPU and",
        ),
        (
            {"ray.head.instance_group": "workers"},
            "ray.worker_groups[0].instance_group 'workers' is already used by ray.head",
        ),
    ],
)
def test_sizes_a_node_cannot_hold_are_one_config_error(context, expected):
    assert one_error(context).startswith(expected)


def test_explicit_sizes_that_fit_are_kept():
    config = load_config(
        {"ray.head.cpu": "2", "ray.worker_groups": '[{"cpu": "90", "memory": "1500Gi", "gpus": 4}]'}
    )
    assert config.head_size().cpu == "2"
    assert config.worker_size(0)[:3] == ("90", "1500Gi", 4)


def test_the_cli_reports_an_oversized_pod_as_one_line():
    result = run_app({"ray.worker_groups": '[{"memory": "2Ti"}]'})
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "config error: ray.worker_groups[0].memory='2Ti' is more than one ml.p5.48xlarge node "
        "(ThreadsPerCore 1) beside dcgm-exporter (100m, 128Mi) can give a pod: at most 1935092Mi"
    ]


G5_ONLY = {
    "hyperpod.instance_groups": '[{"name": "head", "instance_type": "ml.m5.2xlarge", "count": 1}, '
    '{"name": "workers", "instance_type": "ml.g5.12xlarge", "count": 2}]',
    "ray.worker_groups": '[{"replicas": 2, "max_replicas": 2}]',
}


def test_two_g5_12xlarge_workers_fit_what_the_node_offers():
    # The held-out case: 173400Mi allocatable (Karpenter) less every pod that may share the node must hold
    # the derived worker pod; 169.3 GiB is the bar the review measured after the DaemonSets.
    config = load_config(G5_ONLY)
    worker = config.worker_size(0)
    others = NODE_DAEMONSETS + tuple(r for r in CLUSTER_DEPLOYMENTS for _ in range(r.replicas))
    others += config.pods_beside(config.ray.worker_groups[0])
    assert memory_mib(worker.memory) + sum(p.memory_mib for p in others) <= 173400
    assert memory_mib(worker.memory) <= 169.3 * 1024
    assert cpu_millis(worker.cpu) + sum(p.cpu_millis for p in others) <= 48_000 - 190


@pytest.mark.parametrize(
    ("context", "head", "worker"),
    [
        ({}, (), (DCGM_EXPORTER,)),
        ({"observability.dcgm_exporter": "false"}, (), ()),
        ({"observability.enabled": "false"}, (), ()),
        ({"ray.job.enabled": "true"}, (SUPERVISOR,), (DCGM_EXPORTER,)),
        (
            {"ray.job.enabled": "true", "ray.job.runner": "rayjob"},
            (RAYJOB_SUBMITTER,),
            (DCGM_EXPORTER, RAYJOB_SUBMITTER),
        ),
        ({"ray.autoscaling.enabled": "true"}, (AUTOSCALER,), (DCGM_EXPORTER,)),
        (
            {"gcs_fault_tolerance.enabled": "true", "gcs_fault_tolerance.store": "in_cluster"},
            (),
            (DCGM_EXPORTER, IN_CLUSTER_STORE),
        ),
    ],
)
def test_room_is_kept_for_every_pod_the_app_may_place_beside_a_ray_pod(context, head, worker):
    config = load_config(context)
    assert config.pods_beside(config.ray.head) == head
    assert config.pods_beside(config.ray.worker_groups[0]) == worker
    room = ray_pod_capacity("ml.p5.48xlarge", 1, worker)
    assert memory_mib(config.worker_size(0).memory) == room.memory_mib
    head_room = ray_pod_capacity("ml.m5.2xlarge", 1, head)
    assert cpu_millis(config.head_size().cpu) == head_room.cpu_millis
