"""The RayCluster: placement on HyperPod groups, resources, mounts, exposure and autoscaling."""

import json
from typing import Any

import pytest

from config import ConfigError, load_config
from tests.k8s.scenarios import IMAGE, SCENARIOS, Synth, synth

HEAD_SELECTOR = {
    "node.kubernetes.io/instance-type": "ml.m5.2xlarge",
    "sagemaker.amazonaws.com/instance-group-name": "head",
}
P5_SELECTOR = {
    "node.kubernetes.io/instance-type": "ml.p5.48xlarge",
    "sagemaker.amazonaws.com/instance-group-name": "workers",
    "sagemaker.amazonaws.com/node-health-status": "Schedulable",
}
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
PRE_STOP = {"exec": {"command": ["/bin/sh", "-c", "ray stop"]}}


def cluster(result: Synth) -> dict[str, Any]:
    return result.one("RayCluster")


def head_pod(result: Synth) -> dict[str, Any]:
    return cluster(result)["spec"]["headGroupSpec"]["template"]["spec"]


def worker(result: Synth, name: str = "gpu-workers") -> dict[str, Any]:
    groups = {group["groupName"]: group for group in cluster(result)["spec"]["workerGroupSpecs"]}
    return groups[name]


def mounts(pod: dict[str, Any]) -> dict[str, str]:
    return {mount["mountPath"]: mount["name"] for mount in pod["containers"][0]["volumeMounts"]}


def volumes(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {volume.pop("name"): volume for volume in [dict(v) for v in pod["volumes"]]}


def test_cluster_identity(synths: dict[str, Synth]) -> None:
    result = synths["defaults"]
    ray_cluster = cluster(result)
    assert ray_cluster["apiVersion"] == "ray.io/v1"
    assert ray_cluster["metadata"] == {"name": "ray-cluster", "namespace": "ray"}
    assert ray_cluster["spec"]["rayVersion"] == "2.60.0"
    assert result.charts["ray_cluster"].head_service_name == "ray-cluster-head-svc"


def test_head_is_cluster_ip_only(synths: dict[str, Synth]) -> None:
    for result in synths.values():
        assert cluster(result)["spec"]["headGroupSpec"]["serviceType"] == "ClusterIP"


def test_head_runs_on_the_head_group_and_takes_no_tasks(synths: dict[str, Synth]) -> None:
    result = synths["defaults"]
    head = cluster(result)["spec"]["headGroupSpec"]
    assert head["rayStartParams"] == {"dashboard-host": "0.0.0.0", "num-cpus": "0"}
    pod = head["template"]["spec"]
    assert pod["nodeSelector"] == HEAD_SELECTOR
    assert "tolerations" not in pod
    container = pod["containers"][0]
    assert container["name"] == "ray-head"
    assert container["image"] == IMAGE
    # ml.m5.2xlarge with ThreadsPerCore 1: 4 cores, 32 GiB; what is left after the kubelet reservation,
    # the per-node DaemonSets and the cluster's Deployments (config/capacity.py).
    assert container["resources"] == {
        "limits": {"cpu": "2860m", "memory": "27205Mi"},
        "requests": {"cpu": "2860m", "memory": "27205Mi"},
    }
    assert container["lifecycle"] == {"preStop": PRE_STOP}


def test_head_ports(synths: dict[str, Synth]) -> None:
    ports = head_pod(synths["defaults"])["containers"][0]["ports"]
    assert {port["name"]: port["containerPort"] for port in ports} == {
        "gcs": 6379,
        "dashboard": 8265,
        "client": 10001,
        "serve": 8000,
    }


def test_head_mounts(synths: dict[str, Synth]) -> None:
    pod = head_pod(synths["defaults"])
    assert mounts(pod) == {"/tmp/ray": "ray-logs", "/fsx": "fsx"}
    assert volumes(pod) == {
        "ray-logs": {"emptyDir": {}},
        "fsx": {"persistentVolumeClaim": {"claimName": "fsx-claim"}},
    }


def monitoring_env(pod: dict[str, Any]) -> list[dict[str, str]]:
    """The head's env without GCS fault tolerance's own entries (tests/k8s/test_k8s_gcs.py checks those)."""
    return [item for item in pod["containers"][0].get("env", []) if item["name"].startswith("RAY_GRAFANA")
            or item["name"].startswith("RAY_PROMETHEUS")]  # fmt: skip


@pytest.mark.parametrize("scenario", [name for name in SCENARIOS if name != "monitoring"])
def test_head_uses_this_deployments_grafana_unless_configured(
    synths: dict[str, Synth], scenario: str
) -> None:
    # observability.enabled (the default) runs Grafana in "monitoring"; AMP is queried through its proxy.
    env = {item["name"]: item["value"] for item in monitoring_env(head_pod(synths[scenario]))}
    assert env == {
        "RAY_GRAFANA_HOST": "http://grafana.monitoring.svc.cluster.local:80",
        "RAY_PROMETHEUS_HOST": "http://grafana.monitoring.svc.cluster.local:80/api/datasources/proxy/uid/prometheus",
        "RAY_GRAFANA_IFRAME_HOST": "http://localhost:3000",
    }


def test_monitoring_env_when_configured(synths: dict[str, Synth]) -> None:
    env = monitoring_env(head_pod(synths["monitoring"]))
    assert {item["name"]: item["value"] for item in env} == {
        "RAY_GRAFANA_HOST": "http://grafana.monitoring:3000",
        "RAY_PROMETHEUS_HOST": "http://prometheus.monitoring:9090",
        "RAY_GRAFANA_IFRAME_HOST": "http://localhost:3000",
    }


def test_only_the_configured_monitoring_env() -> None:
    result = synth({"ray.monitoring.prometheus_host": "http://prometheus:9090"})
    env = head_pod(result)["containers"][0]["env"]
    assert [item for item in env if not item["name"].startswith("RAY_REDIS_")] == [
        {"name": "RAY_PROMETHEUS_HOST", "value": "http://prometheus:9090"}
    ]


def test_p5_workers_take_whole_nodes_with_efa(synths: dict[str, Synth]) -> None:
    group = worker(synths["defaults"])
    assert (group["replicas"], group["minReplicas"], group["maxReplicas"]) == (4, 0, 4)
    assert group["rayStartParams"] == {"num-cpus": "94", "num-gpus": "8"}
    pod = group["template"]["spec"]
    assert pod["nodeSelector"] == P5_SELECTOR
    assert pod["tolerations"] == [GPU_TOLERATION]
    container = pod["containers"][0]
    assert container["name"] == "ray-worker"
    assert container["image"] == IMAGE
    # 96 visible cores (ThreadsPerCore 1) and 2 TiB, less reservations: whole cores for Ray.
    expected = {"cpu": "94", "memory": "1935092Mi", "nvidia.com/gpu": 8, "vpc.amazonaws.com/efa": 32}
    assert container["resources"] == {"limits": expected, "requests": expected}
    assert container["lifecycle"] == {"preStop": PRE_STOP}


def test_worker_mounts_include_shared_memory(synths: dict[str, Synth]) -> None:
    pod = worker(synths["defaults"])["template"]["spec"]
    assert mounts(pod) == {"/tmp/ray": "ray-logs", "/dev/shm": "dshm", "/fsx": "fsx"}
    assert volumes(pod)["dshm"] == {"emptyDir": {"medium": "Memory"}}
    assert volumes(pod)["fsx"] == {"persistentVolumeClaim": {"claimName": "fsx-claim"}}


def test_g5_group_gets_its_gpus_taints_and_no_efa(synths: dict[str, Synth]) -> None:
    result = synths["g5_workers"]
    group = worker(result, "g5-workers")
    assert (group["replicas"], group["minReplicas"], group["maxReplicas"]) == (2, 0, 2)
    assert group["rayStartParams"] == {"num-cpus": "22", "num-gpus": "4"}
    pod = group["template"]["spec"]
    assert pod["nodeSelector"] == {
        "node.kubernetes.io/instance-type": "ml.g5.12xlarge",
        "sagemaker.amazonaws.com/instance-group-name": "g5",
        "sagemaker.amazonaws.com/node-health-status": "Schedulable",
    }
    assert pod["tolerations"] == [
        {"key": "dedicated", "operator": "Equal", "value": "ray", "effect": "NoSchedule"},
        GPU_TOLERATION,
    ]
    # ml.g5.12xlarge has one EFA interface, but efa defaults to on: the group asks for it. Memory: the
    # kubelet reserves for 737 pods (the AMI's ENI-derived maxPods), and the DCGM exporter shares the node.
    expected = {"cpu": "22", "memory": "171732Mi", "nvidia.com/gpu": 4, "vpc.amazonaws.com/efa": 1}
    assert pod["containers"][0]["resources"]["limits"] == expected
    assert worker(result, "gpu-workers")["replicas"] == 1


def test_efa_off_and_cpu_workers() -> None:
    groups = [
        {"name": "head", "instance_type": "ml.m5.2xlarge", "count": 1},
        {"name": "workers", "instance_type": "ml.g5.2xlarge", "count": 2},
        {"name": "cpus", "instance_type": "ml.c5.4xlarge", "count": 2},
    ]
    workers = [
        {"name": "gpu-workers", "instance_group": "workers", "replicas": 2, "max_replicas": 2, "efa": True},
        {"name": "cpu-workers", "instance_group": "cpus", "replicas": 1, "max_replicas": 2, "efa": True},
    ]
    result = synth({"hyperpod.instance_groups": json.dumps(groups), "ray.worker_groups": json.dumps(workers)})
    g5 = worker(result, "gpu-workers")["template"]["spec"]
    # ml.g5.2xlarge has no EFA device: nothing to request even with efa on. The DCGM exporter (128Mi)
    # shares the GPU node; the CPU group has none.
    assert g5["containers"][0]["resources"]["limits"] == {
        "cpu": "2",
        "memory": "27077Mi",
        "nvidia.com/gpu": 1,
    }
    cpu_group = worker(result, "cpu-workers")
    assert cpu_group["rayStartParams"] == {"num-cpus": "6", "num-gpus": "0"}
    cpu_pod = cpu_group["template"]["spec"]
    # ml.c5.4xlarge: the AMI's ENI-derived maxPods (234) beats the cap (110): 11Mi more reserved per pod.
    assert cpu_pod["containers"][0]["resources"]["limits"] == {"cpu": "6", "memory": "25841Mi"}
    assert "tolerations" not in cpu_pod
    # No GPUs: no NCCL settings; only GCS fault tolerance's reconnect timeout.
    env = {item["name"] for item in cpu_pod["containers"][0]["env"]}
    assert env == {"RAY_gcs_rpc_server_reconnect_timeout_s"}


@pytest.mark.parametrize("scenario", [name for name in SCENARIOS if name != "autoscaling"])
def test_autoscaling_off_by_default(synths: dict[str, Synth], scenario: str) -> None:
    spec = cluster(synths[scenario])["spec"]
    assert "enableInTreeAutoscaling" not in spec
    assert "autoscalerOptions" not in spec


def test_autoscaling_on(synths: dict[str, Synth]) -> None:
    spec = cluster(synths["autoscaling"])["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["autoscalerOptions"] == {
        "idleTimeoutSeconds": 300,
        "upscalingMode": "Default",
        "version": "v2",
    }


@pytest.mark.parametrize(
    ("key", "value"),
    [("ray.cluster_name", "a" * 54), ("ray.cluster_name", "1-cluster"), ("ray.job.name", "j" * 48)],
)
def test_names_kuberay_would_reject_are_config_errors(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=r"KubeRay needs a name|must be a DNS-1035 label"):
        load_config({key: value})
