"""Ray access control: token authentication, who can reach the Ray pods, the pods' securityContext, and
KubeRay's own admission rules for every scenario."""

import copy
from ipaddress import ip_address, ip_network
from typing import Any

import pytest

from config import load_config
from tests.k8s.kuberay_rules import ray_cluster_problems, ray_job_problems
from tests.k8s.scenarios import SCENARIOS, Synth, synth

HEAD = {"ray.io/cluster": "ray-cluster", "ray.io/node-type": "head"}
WORKER = {"ray.io/cluster": "ray-cluster", "ray.io/node-type": "worker"}
OPERATOR = {"app.kubernetes.io/name": "kuberay-operator", "app.kubernetes.io/instance": "kuberay-operator"}


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.get("matchLabels", {}).items())


def _peer_admits(
    peer: dict[str, Any], policy_ns: str, source_ns: str, source: dict[str, str], ip: str | None = None
) -> bool:
    """NetworkPolicyPeer semantics: podSelector alone means the policy's namespace; ipBlock matches the
    source address only."""
    if "ipBlock" in peer:
        return ip is not None and ip_address(ip) in ip_network(peer["ipBlock"]["cidr"])
    if "namespaceSelector" in peer:
        namespace_labels = {"kubernetes.io/metadata.name": source_ns}
        if not _matches(peer["namespaceSelector"], namespace_labels):
            return False
    elif source_ns != policy_ns:
        return False
    return _matches(peer.get("podSelector", {}), source)


def allowed(
    policies: list[dict[str, Any]],
    target: tuple[str, dict[str, str]],
    source: tuple[str, dict[str, str]],
    port: int,
    ip: str | None = None,
) -> bool:
    """Whether a TCP connection from `source` to `target`:`port` (each a namespace and pod labels; `ip` the
    source address) is allowed by these ingress policies."""
    (target_ns, target_labels), (source_ns, source_labels) = target, source
    selecting = [
        p
        for p in policies
        if p["metadata"]["namespace"] == target_ns and _matches(p["spec"]["podSelector"], target_labels)
    ]
    if not selecting:
        return True  # a pod no policy selects is open
    for policy in selecting:
        for rule in policy["spec"].get("ingress", []):
            ports = [p["port"] for p in rule.get("ports", [])]
            if ports and port not in ports:
                continue
            peers = rule.get("from")
            if not peers or any(
                _peer_admits(peer, target_ns, source_ns, source_labels, ip) for peer in peers
            ):
                return True
    return False


def policies(result: Synth) -> list[dict[str, Any]]:
    return [obj for obj in result.objects() if obj["kind"] == "NetworkPolicy"]


def test_token_authentication_is_on_and_the_secret_is_kuberays(synths: dict[str, Synth]) -> None:
    for result in synths.values():
        spec = result.one("RayCluster")["spec"]
        # No secretName: KubeRay creates the Secret (key auth_token) named after the cluster, owned by it.
        assert spec["authOptions"] == {"mode": "token"}
        chart = result.charts["ray_cluster"]
        assert chart.auth_secret_name == result.one("RayCluster")["metadata"]["name"] == "ray-cluster"
        assert chart.auth_secret_key == "auth_token"


def test_no_container_carries_a_token_of_its_own(synths: dict[str, Synth]) -> None:
    """KubeRay sets RAY_AUTH_MODE/RAY_AUTH_TOKEN from the Secret; a literal one here would leak into the
    template."""
    for result in synths.values():
        text = str(result.one("RayCluster"))
        assert "RAY_AUTH_TOKEN" not in text and "auth_token" not in text


def test_a_changed_spec_recreates_the_pods(synths: dict[str, Synth]) -> None:
    for result in synths.values():
        assert result.one("RayCluster")["spec"]["upgradeStrategy"] == {"type": "Recreate"}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_only_the_namespace_and_the_operator_reach_the_ray_pods(
    synths: dict[str, Synth], scenario: str
) -> None:
    rules = policies(synths[scenario])
    ray_ns = synths[scenario].config.ray.namespace
    # Ray's own traffic and the namespace's clients (RayJob submitter, a user's pod): every port.
    assert allowed(rules, (ray_ns, HEAD), (ray_ns, WORKER), 6379)
    assert allowed(rules, (ray_ns, WORKER), (ray_ns, WORKER), 12345)
    assert allowed(rules, (ray_ns, HEAD), (ray_ns, {"job-name": "fsdp-train"}), 8265)
    # The operator: the dashboard only.
    assert allowed(rules, (ray_ns, HEAD), ("kuberay", OPERATOR), 8265)
    assert not allowed(rules, (ray_ns, HEAD), ("kuberay", OPERATOR), 6379)
    assert not allowed(rules, (ray_ns, WORKER), ("kuberay", OPERATOR), 8265)
    # Anything else in the cluster: nothing.
    for source_ns, labels in [("default", {}), ("kube-system", {"k8s-app": "kube-dns"}), ("kuberay", {})]:
        for target, port in [(HEAD, 8265), (HEAD, 6379), (HEAD, 10001), (WORKER, 10002)]:
            assert not allowed(rules, (ray_ns, target), (source_ns, labels), port), (source_ns, target, port)


def test_the_managed_scraper_reaches_only_the_metrics_port(synths: dict[str, Synth]) -> None:
    rules = policies(synths["defaults"])
    scraper = ("", {})  # an ENI in the VPC: no namespace, no labels, only an address
    for target in (HEAD, WORKER):
        assert allowed(rules, ("ray", target), scraper, 8080, ip="10.0.130.7")
        for port in (6379, 8265, 10001):
            assert not allowed(rules, ("ray", target), scraper, port, ip="10.0.130.7")
    assert not allowed(rules, ("ray", HEAD), scraper, 8080, ip="192.0.2.1")


def test_the_in_cluster_prometheus_reaches_only_the_metrics_port() -> None:
    rules = policies(synth({"observability.store": "in_cluster"}))
    prometheus = ("monitoring", {"app.kubernetes.io/name": "prometheus"})
    assert allowed(rules, ("ray", WORKER), prometheus, 8080)
    assert not allowed(rules, ("ray", HEAD), prometheus, 6379)
    assert not allowed(rules, ("ray", WORKER), ("monitoring", {"app.kubernetes.io/name": "grafana"}), 8080)


def test_without_observability_nothing_outside_reaches_the_metrics_port() -> None:
    rules = policies(synth({"observability.enabled": "false"}))
    assert not allowed(rules, ("ray", WORKER), ("", {}), 8080, ip="10.0.130.7")
    assert not allowed(rules, ("ray", WORKER), ("monitoring", {"app.kubernetes.io/name": "prometheus"}), 8080)


def test_the_policy_evaluator_can_fail(synths: dict[str, Synth]) -> None:
    rules = copy.deepcopy(policies(synths["defaults"]))
    rules[0]["spec"]["ingress"] = [{}]  # an empty rule admits everyone
    assert allowed(rules, ("ray", HEAD), ("default", {}), 6379)


def test_ray_pods_run_unprivileged(synths: dict[str, Synth]) -> None:
    spec = synths["defaults"].one("RayCluster")["spec"]
    pods = [spec["headGroupSpec"]["template"]["spec"]] + [
        g["template"]["spec"] for g in spec["workerGroupSpecs"]
    ]
    for pod in pods:
        assert pod["securityContext"] == {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "runAsGroup": 100,
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        for container in pod["containers"]:
            assert container["securityContext"] == {
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
            }


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_kuberay_admission_rules_pass(synths: dict[str, Synth], scenario: str) -> None:
    result = synths[scenario]
    assert ray_cluster_problems(result.one("RayCluster")) == []
    if "ray_job" in result.manifests:
        assert ray_job_problems(result.one("RayJob")) == []


def test_kuberay_admission_rules_can_fail(synths: dict[str, Synth]) -> None:
    cluster = copy.deepcopy(synths["defaults"].one("RayCluster"))
    cluster["spec"]["rayVersion"] = "2.51.0"
    cluster["spec"]["upgradeStrategy"] = {"type": "RollingUpdate"}
    problems = ray_cluster_problems(cluster)
    assert any("minimum Ray version is 2.52.0" in p for p in problems)
    assert any("UpgradeStrategy.Type value RollingUpdate is invalid" in p for p in problems)
    job = copy.deepcopy(synths["job"].one("RayJob"))
    job["spec"]["preRunningDeadlineSeconds"] = 0
    assert ray_job_problems(job) == ["preRunningDeadlineSeconds must be a positive integer"]


def test_the_pinned_ray_supports_token_auth() -> None:
    version = tuple(int(part) for part in load_config({}).ray.ray_version.split("."))
    assert version >= (2, 52, 0)
