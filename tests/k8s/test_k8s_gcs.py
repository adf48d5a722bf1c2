"""GCS fault tolerance in the RayCluster and the store's Kubernetes objects, checked against KubeRay 1.7.0's
CRD schema and the rules its webhook-free validation (utils/validation.go) applies to GCS FT."""

import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
from cdk8s import Testing as Cdk8s

from config import ConfigError, load_config
from k8s_charts.gcs import GcsStoreChart
from tests.k8s.scenarios import SCENARIOS, Synth, synth
from tests.support.k8s_validation import validate_k8s_objects

ENDPOINT = "master.ray-gcs.abc123.use1.cache.amazonaws.com"


def spec(result: Synth) -> dict[str, Any]:
    return result.one("RayCluster")["spec"]


def env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def kuberay_gcs_problems(spec: dict[str, Any]) -> list[str]:
    """KubeRay 1.7.0's ValidateRayClusterSpec GCS FT rules: what the operator would refuse to reconcile."""
    head = spec["headGroupSpec"]
    container_env = env(head["template"]["spec"]["containers"][0])
    problems = []
    if spec.get("gcsFaultToleranceOptions"):
        if head.get("rayStartParams", {}).get("redis-password"):
            problems.append("redis-password in rayStartParams")
        problems += [
            f"{name} env on the head"
            for name in ("REDIS_PASSWORD", "RAY_REDIS_ADDRESS")
            if name in container_env
        ]
        problems += (
            ["RAY_external_storage_namespace env"]
            if "RAY_external_storage_namespace" in container_env
            else []
        )
    elif "RAY_REDIS_ADDRESS" in container_env:
        problems.append("RAY_REDIS_ADDRESS without gcsFaultToleranceOptions")
    if head.get("rayStartParams", {}).get("redis-username") or "REDIS_USERNAME" in container_env:
        problems.append("redis username outside gcsFaultToleranceOptions")
    return problems


@pytest.fixture(scope="module")
def in_cluster() -> Synth:
    return synth({"gcs_fault_tolerance.store": "in_cluster"})


@pytest.fixture(scope="module")
def disabled() -> Synth:
    return synth({"gcs_fault_tolerance.enabled": "false"})


def test_default_cluster_keeps_its_gcs_in_elasticache_over_tls(synths):
    options = spec(synths["defaults"])["gcsFaultToleranceOptions"]
    assert options["redisAddress"] == "rediss://ray-cluster-gcs-store.ray.svc.cluster.local:6380"
    assert options["redisPassword"] == {
        "valueFrom": {"secretKeyRef": {"name": "ray-cluster-gcs-store", "key": "password"}}
    }
    assert options["externalStorageNamespace"] == "ray-cluster"
    head = spec(synths["defaults"])["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert env(head)["RAY_REDIS_CA_CERT"] == "/etc/ssl/certs/ca-certificates.crt"


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_worker_outlives_a_head_restart_and_kuberay_accepts_the_spec(synths, scenario):
    cluster = spec(synths[scenario])
    for group in cluster["workerGroupSpecs"]:
        timeout = env(group["template"]["spec"]["containers"][0])["RAY_gcs_rpc_server_reconnect_timeout_s"]
        # Longer than a new head pod takes (schedule, pull, GCS reload): KubeRay documents ~120 s.
        assert int(timeout) >= 120
    assert kuberay_gcs_problems(cluster) == []


def test_the_rule_check_catches_a_password_set_beside_the_options(synths):
    cluster = spec(synths["defaults"])
    cluster = {
        **cluster,
        "headGroupSpec": {**cluster["headGroupSpec"], "rayStartParams": {"redis-password": "x"}},
    }
    assert kuberay_gcs_problems(cluster) == ["redis-password in rayStartParams"]


def test_in_cluster_store_is_plain_redis_without_a_ca(in_cluster, crd_dir: Path):
    cluster = spec(in_cluster)
    assert (
        cluster["gcsFaultToleranceOptions"]["redisAddress"]
        == "redis://ray-cluster-gcs-store.ray.svc.cluster.local:6379"
    )
    assert "RAY_REDIS_CA_CERT" not in env(cluster["headGroupSpec"]["template"]["spec"]["containers"][0])
    validate_k8s_objects(in_cluster.objects(), in_cluster.config.eks.version, crd_dir)


def test_disabled_leaves_no_trace(disabled, crd_dir: Path):
    cluster = spec(disabled)
    assert "gcsFaultToleranceOptions" not in cluster
    for group in cluster["workerGroupSpecs"]:
        assert "RAY_gcs_rpc_server_reconnect_timeout_s" not in env(group["template"]["spec"]["containers"][0])
    validate_k8s_objects(disabled.objects(), disabled.config.eks.version, crd_dir)


def store_objects(overrides: dict[str, str], endpoint: str | None = ENDPOINT) -> list[dict[str, Any]]:
    config = load_config(overrides)
    return Cdk8s.synth(GcsStoreChart(Cdk8s.app(), "store", config=config, elasticache_endpoint=endpoint))


def test_elasticache_is_reached_through_an_external_name_service(crd_dir: Path):
    (service,) = store_objects({})
    assert service["kind"] == "Service" and service["metadata"]["namespace"] == "ray"
    assert service["spec"] == {"type": "ExternalName", "externalName": ENDPOINT}
    validate_k8s_objects([service], "1.33", crd_dir)


def test_in_cluster_store_never_runs_on_the_head_group_and_reads_its_password_from_the_secret(crd_dir: Path):
    objects = store_objects({"gcs_fault_tolerance.store": "in_cluster"}, endpoint=None)
    validate_k8s_objects(objects, "1.33", crd_dir)
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (term,) = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert term["matchExpressions"] == [
        {"key": "sagemaker.amazonaws.com/instance-group-name", "operator": "NotIn", "values": ["head"]}
    ]
    container = pod["containers"][0]
    assert container["env"] == [
        {
            "name": "REDIS_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": "ray-cluster-gcs-store", "key": "password"}},
        }
    ]
    assert_password_reaches_the_store_on_stdin_not_argv(container["command"])
    (service,) = [o for o in objects if o["kind"] == "Service"]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_elasticache_store_needs_its_endpoint():
    with pytest.raises(ValueError, match="endpoint"):
        store_objects({}, endpoint=None)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("gcs_fault_tolerance.engine_version", "6.2", "Input should be '7.2'"),
        ("gcs_fault_tolerance.node_type", "t4g.small", "ElastiCache node type"),
        ("gcs_fault_tolerance.worker_reconnect_timeout_s", "30", "greater than or equal to 60"),
        ("gcs_fault_tolerance.store", "memorydb", "'elasticache' or 'in_cluster'"),
        ("gcs_fault_tolerance.in_cluster_image", "valkey", "pinned with a tag"),
    ],
)
def test_bad_gcs_settings_are_config_errors(key, value, message):
    with pytest.raises(ConfigError, match=message) as error:
        load_config({key: value})
    assert str(error.value).startswith(f"{key} = ")  # printed as one "config error:" line by the loader


def assert_password_reaches_the_store_on_stdin_not_argv(command: list[str]) -> None:
    """Run the container's command with a stand-in valkey-server that records its argv and stdin: the
    password must arrive as config on stdin (`-`), never on the argv that /proc/<pid>/cmdline shows."""
    with tempfile.TemporaryDirectory() as scratch:
        bin_dir = Path(scratch)
        fake = bin_dir / "valkey-server"
        fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {scratch}/argv\ncat > {scratch}/stdin\n')
        fake.chmod(0o755)
        password = "Pw0rdA1b2C3"
        env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "REDIS_PASSWORD": password}
        subprocess.run(command, env=env, check=True, timeout=30)
        argv = (bin_dir / "argv").read_text().split()
        assert password not in " ".join(argv)
        assert argv[0] == "-" and "--appendonly" in argv
        assert (bin_dir / "stdin").read_text() == f"requirepass {password}\n"
