"""The reachability matrix of the synthesized NetworkPolicies in both directions
(tests/support/network_policy.py): who can open which port, egress and IMDS included, for the default and
three other configurations, with a failing copy of each rule."""

import copy
from typing import Any

import pytest
from cdk8s import Testing as Cdk8s

from config import load_config
from k8s_charts.gcs import GcsStoreChart
from k8s_charts.network_policy import MonitoringNetworkPolicyChart
from tests.k8s.scenarios import SCENARIOS, SCRAPER_CIDR, Synth, synth
from tests.support.network_policy import Endpoint, connects

HEAD = Endpoint("ray", {"ray.io/cluster": "ray-cluster", "ray.io/node-type": "head"}, "10.0.64.10")
WORKER = Endpoint("ray", {"ray.io/cluster": "ray-cluster", "ray.io/node-type": "worker"}, "10.0.65.11")
CLEANUP = Endpoint(
    "ray", {"ray.io/cluster": "ray-cluster", "ray.io/node-type": "redis-cleanup"}, "10.0.65.30"
)
CLIENT = Endpoint("ray", {"job-name": "fsdp-train-supervisor"}, "10.0.66.12")  # a plain pod in the namespace
STORE = Endpoint("ray", {"app.kubernetes.io/name": "ray-gcs-store"}, "10.0.67.13")
DNS = Endpoint("kube-system", {"k8s-app": "kube-dns"}, "10.0.68.14")
GRAFANA = Endpoint("monitoring", {"app.kubernetes.io/name": "grafana"}, "10.0.69.15")
OTHER = Endpoint("default", {}, "10.0.70.16")
IMDS = Endpoint(None, {}, "169.254.169.254")
POD_IDENTITY = Endpoint(None, {}, "169.254.170.23")  # the EKS Pod Identity agent's link-local address
API_SERVER = Endpoint(None, {}, "10.0.200.5")  # the private endpoint's ENI, in the VPC (10.0.0.0/16)
ELASTICACHE = Endpoint(None, {}, "10.0.150.9")
HUGGING_FACE = Endpoint(None, {}, "18.164.174.118")
S3 = Endpoint(None, {}, "52.216.8.171")  # reached through the gateway endpoint: a public S3 address
IN_CLUSTER = {
    "gcs_fault_tolerance.enabled": "true",
    "gcs_fault_tolerance.store": "in_cluster",
    "observability.store": "in_cluster",
}


def rules(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == "NetworkPolicy"]


def policies_of(result: Synth) -> list[dict[str, Any]]:
    found = rules(result.objects())
    if result.config.gcs_fault_tolerance.in_cluster:
        found += rules(Cdk8s.synth(GcsStoreChart(Cdk8s.app(), "store", config=result.config)))
    return found


# (source, target, port, protocol) -> open, for the default configuration.
DEFAULT_MATRIX = [
    (WORKER, HEAD, 6379, "TCP", True),  # Ray's own traffic
    (HEAD, WORKER, 10002, "TCP", True),
    (WORKER, DNS, 53, "UDP", True),
    (WORKER, DNS, 53, "TCP", True),
    (WORKER, DNS, 9153, "TCP", False),  # CoreDNS's metrics: not DNS
    (WORKER, HUGGING_FACE, 443, "TCP", True),
    (WORKER, S3, 443, "TCP", True),
    (WORKER, POD_IDENTITY, 80, "TCP", True),
    (WORKER, IMDS, 80, "TCP", False),  # the node's role: refused
    (HEAD, IMDS, 80, "TCP", False),
    (WORKER, API_SERVER, 443, "TCP", False),  # the EKS API: refused
    (HEAD, API_SERVER, 443, "TCP", False),  # no autoscaler, no need
    (WORKER, GRAFANA, 3000, "TCP", False),  # another namespace
    (WORKER, OTHER, 8080, "TCP", False),
    (HEAD, ELASTICACHE, 6380, "TCP", True),  # GCS fault tolerance (on by default): ElastiCache's port
    (HEAD, ELASTICACHE, 6379, "TCP", False),
    (OTHER, HEAD, 8265, "TCP", False),
]


@pytest.mark.parametrize("case", DEFAULT_MATRIX)
def test_default_matrix(synths: dict[str, Synth], case: tuple[Endpoint, Endpoint, int, str, bool]) -> None:
    source, target, port, protocol, expected = case
    assert connects(policies_of(synths["defaults"]), source, target, port, protocol) is expected


@pytest.mark.parametrize("scenario", ["defaults", "g5_workers", "autoscaling", "job"])
def test_every_scenario_refuses_imds_and_other_namespaces(synths: dict[str, Synth], scenario: str) -> None:
    policies = policies_of(synths[scenario])
    assert not connects(policies, WORKER, GRAFANA, 3000)
    assert not connects(policies, HEAD, GRAFANA, 5555)  # the head: Grafana's port only (dashboard backend)
    for pod in (HEAD, WORKER):
        assert not connects(policies, pod, IMDS, 80)
        assert not connects(policies, pod, OTHER, 8080)
        assert connects(policies, pod, DNS, 53, "UDP")
        assert connects(policies, pod, HUGGING_FACE, 443)


def test_imds_only_when_the_config_opts_in() -> None:
    policies = policies_of(synth({"ray.allow_imds": "true"}))
    assert connects(policies, WORKER, IMDS, 80)
    assert not connects(policies, WORKER, API_SERVER, 443)  # the VPC stays closed


def test_autoscaling_lets_only_the_head_reach_the_api_server(synths: dict[str, Synth]) -> None:
    policies = policies_of(synths["autoscaling"])
    assert connects(policies, HEAD, API_SERVER, 443)
    assert not connects(policies, WORKER, API_SERVER, 443)
    assert not connects(policies, HEAD, API_SERVER, 10250)


def test_without_gcs_fault_tolerance_the_vpc_is_closed() -> None:
    policies = policies_of(synth({"gcs_fault_tolerance.enabled": "false"}))
    assert not connects(policies, HEAD, ELASTICACHE, 6380)
    assert not connects(policies, HEAD, API_SERVER, 443)


def test_in_cluster_store_and_prometheus() -> None:
    result = synth(IN_CLUSTER)
    policies = policies_of(result)
    assert connects(policies, HEAD, STORE, 6379)
    assert connects(policies, CLEANUP, STORE, 6379)
    for source in (WORKER, CLIENT, OTHER, GRAFANA):
        assert not connects(policies, source, STORE, 6379), source
    assert not connects(policies, HEAD, STORE, 8080)
    prometheus = Endpoint("monitoring", {"app.kubernetes.io/name": "prometheus"}, "10.0.69.20")
    assert connects(policies, prometheus, WORKER, 8080)
    assert not connects(policies, prometheus, WORKER, 6379)


def named(policies: list[dict[str, Any]], suffix: str) -> dict[str, Any]:
    (policy,) = [p for p in policies if p["metadata"]["name"].endswith(suffix)]
    return policy


def _widen_internet(policies: list[dict[str, Any]]) -> None:
    named(policies, "-ray-egress")["spec"]["egress"][2]["to"][0]["ipBlock"].pop("except")


def _any_namespace(policies: list[dict[str, Any]]) -> None:
    named(policies, "-ray-egress")["spec"]["egress"][0]["to"][0]["namespaceSelector"] = {}


def _dns_any_port(policies: list[dict[str, Any]]) -> None:
    named(policies, "-ray-egress")["spec"]["egress"][1].pop("ports")


def _store_from_workers(policies: list[dict[str, Any]]) -> None:
    named(policies, "-gcs-store-ingress")["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"].pop(
        "ray.io/node-type"
    )


def _no_egress_policy(policies: list[dict[str, Any]]) -> None:
    policies.remove(named(policies, "-ray-egress"))


# A failing copy of each egress and store rule: the change, and the connection it wrongly opens.
FAILING_COPIES = [
    (_widen_internet, WORKER, IMDS, 80, "TCP"),
    (_widen_internet, WORKER, API_SERVER, 443, "TCP"),
    (_any_namespace, WORKER, GRAFANA, 3000, "TCP"),
    (_dns_any_port, WORKER, DNS, 9153, "TCP"),
    (_store_from_workers, WORKER, STORE, 6379, "TCP"),
    (_no_egress_policy, WORKER, IMDS, 80, "TCP"),
]


@pytest.mark.parametrize(("break_rule", "source", "target", "port", "protocol"), FAILING_COPIES)
def test_each_rule_can_fail(break_rule, source, target, port, protocol) -> None:
    policies = copy.deepcopy(policies_of(synth(IN_CLUSTER)))
    assert not connects(policies, source, target, port, protocol)
    break_rule(policies)
    assert connects(policies, source, target, port, protocol)


def test_the_scenarios_named_here_exist() -> None:
    assert {"defaults", "g5_workers", "autoscaling", "job"} <= set(SCENARIOS)
    assert load_config(IN_CLUSTER).gcs_fault_tolerance.in_cluster


PROMETHEUS = Endpoint("monitoring", {"app.kubernetes.io/name": "prometheus"}, "10.0.69.20")
DCGM = Endpoint("monitoring", {"app.kubernetes.io/name": "dcgm-exporter"}, "10.0.69.21")
SCRAPER = Endpoint(None, {}, "10.0.130.7")  # the managed scraper's ENI, in the VPC


def monitoring_policies(context: dict[str, str]) -> list[dict[str, Any]]:
    config = load_config(context)
    chart = MonitoringNetworkPolicyChart(Cdk8s.app(), "monitoring", config=config, scraper_cidr=SCRAPER_CIDR)
    return rules(Cdk8s.synth(chart)) + policies_of(synth(context))


def test_monitoring_is_closed_but_to_the_flows_it_needs() -> None:
    policies = monitoring_policies({})
    assert connects(policies, HEAD, GRAFANA, 3000)  # the dashboard's backend, through the Ray egress too
    for source in (WORKER, CLIENT, OTHER, DNS):
        assert not connects(policies, source, GRAFANA, 3000), source
    assert connects(policies, SCRAPER, DCGM, 9400)
    assert not connects(policies, SCRAPER, GRAFANA, 3000)
    # The scraper has no pod identity: its rule names the VPC range, which pods share (VPC CNI). They reach
    # the exporter's read-only metrics port, nothing else of the namespace.
    assert connects(policies, OTHER, DCGM, 9400)
    assert not connects(policies, OTHER, DCGM, 5555)
    assert not connects(policies, HEAD, PROMETHEUS, 9090)  # no in-cluster Prometheus: nothing to reach


def test_monitoring_with_the_in_cluster_prometheus() -> None:
    policies = monitoring_policies({"observability.store": "in_cluster"})
    assert connects(policies, GRAFANA, PROMETHEUS, 9090)
    assert connects(policies, HEAD, PROMETHEUS, 9090)
    assert connects(policies, PROMETHEUS, DCGM, 9400)
    assert connects(policies, PROMETHEUS, WORKER, 8080)
    assert not connects(policies, SCRAPER, DCGM, 9400)
    assert not connects(policies, WORKER, PROMETHEUS, 9090)
    assert not connects(policies, OTHER, PROMETHEUS, 9090)


def test_monitoring_default_deny_can_fail() -> None:
    kept = [p for p in monitoring_policies({}) if p["metadata"]["name"] not in ("default-deny", "grafana")]
    assert connects(kept, OTHER, GRAFANA, 3000)
