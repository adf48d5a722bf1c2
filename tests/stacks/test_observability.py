"""The Observability stack: AMP workspace and scraper (or an in-cluster Prometheus), the DCGM exporter,
Grafana, least-privilege query access, and a teardown that leaves nothing behind."""

import base64
import json

import pytest
import yaml

from config import load_config
from observability.scrape import scrape_yaml
from stacks.observability import AMP_QUERY_ACTIONS
from tests.stacks.test_teardown_order import Graph
from tests.support.apps import synth_app


def _of_type(template: dict, kind: str) -> dict[str, dict]:
    return {rid: r for rid, r in template["Resources"].items() if r["Type"] == kind}


def _helm_charts(template: dict) -> dict[str, dict]:
    return {r["Properties"]["Chart"]: r for r in _of_type(template, "Custom::AWSCDK-EKS-HelmChart").values()}


@pytest.fixture(scope="module")
def observability(templates) -> dict:
    return templates["Observability"]


def test_workspace_keeps_amps_own_encryption_so_the_managed_collector_can_write_and_goes_on_destroy(
    observability,
):
    (workspace,) = _of_type(observability, "AWS::APS::Workspace").values()
    assert workspace["DeletionPolicy"] == "Delete"
    # AWS owned keys encrypt every workspace at rest; a customer managed key may shut out the scraper.
    assert "KmsKeyArn" not in workspace["Properties"]
    assert not _of_type(observability, "AWS::KMS::Key")


def test_scraper_sends_the_generated_configuration_from_the_clusters_subnets(observability, default_config):
    (scraper,) = _of_type(observability, "AWS::APS::Scraper").values()
    props = scraper["Properties"]
    blob = base64.b64decode(props["ScrapeConfiguration"]["ConfigurationBlob"]).decode()
    assert blob == scrape_yaml(default_config)
    assert [job["job_name"] for job in yaml.safe_load(blob)["scrape_configs"]] == ["ray", "dcgm-exporter"]
    eks = props["Source"]["EksConfiguration"]
    assert len(eks["SubnetIds"]) == 2 and len(eks["SecurityGroupIds"]) == 1
    assert props["Destination"]["AmpConfiguration"]["WorkspaceArn"] == {"Fn::GetAtt": ["Workspace", "Arn"]}


def test_grafana_may_only_query_this_workspace(observability):
    (policy,) = _of_type(observability, "AWS::IAM::Policy").values()
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert sorted(statement["Action"]) == sorted(AMP_QUERY_ACTIONS)
    assert statement["Resource"] == {"Fn::GetAtt": ["Workspace", "Arn"]}


def test_charts_are_pinned_from_config(observability, default_config):
    charts = _helm_charts(observability)
    observed = {
        name: (c["Properties"]["Version"], c["Properties"]["Namespace"]) for name, c in charts.items()
    }
    assert observed == {
        "grafana": (default_config.observability.grafana_chart_version, "monitoring"),
        "dcgm-exporter": (default_config.observability.dcgm_exporter_chart_version, "monitoring"),
    }
    values = json.dumps(charts["grafana"]["Properties"]["Values"])
    assert "rayproject/ray:2.60.0-py311-cpu" in values and "sigV4Auth" in values


def test_ray_head_finds_grafana_and_prometheus(default_app):
    stacks, _ = default_app
    (head_env,) = [
        json.dumps(chart.to_json()) for chart in stacks.ray.deployer.charts.values() if "RAY_GRAFANA_HOST" in
        json.dumps(chart.to_json())
    ]  # fmt: skip
    assert "http://grafana.monitoring.svc.cluster.local:80/api/datasources/proxy/uid/prometheus" in head_env
    assert "http://localhost:3000" in head_env


@pytest.mark.parametrize(
    ("first", "later", "why"),
    [
        ("AWS::APS::Scraper", "AWS::EKS::Cluster", "the scraper and its access entry go before the cluster"),
        ("AWS::APS::Scraper", "AWS::APS::Workspace", "nothing writes into a workspace being deleted"),
    ],
)
def test_teardown_order(assembly, first, later, why):
    graph = Graph(assembly)
    first_node = graph.find(lambda r: r["Type"] == first)
    later_node = graph.find(lambda r: r["Type"] == later)
    assert later_node in graph.depends_on(first_node), why


def test_helm_releases_go_before_their_namespace(assembly):
    graph = Graph(assembly)
    namespace = ("Observability", next(
        rid for rid in graph.templates["Observability"]["Resources"] if rid.startswith("MonitoringNamespace")
    ))  # fmt: skip
    for rid, resource in graph.templates["Observability"]["Resources"].items():
        if resource["Type"] == "Custom::AWSCDK-EKS-HelmChart":
            assert namespace in graph.depends_on(("Observability", rid))


@pytest.fixture(scope="module")
def in_cluster(tmp_path_factory):
    config = load_config(
        {"observability.store": "in_cluster", "env.account": "123456789012", "env.region": "us-west-2"}
    )
    stacks, assembly = synth_app(config, tmp_path_factory.mktemp("in-cluster"))
    return config, assembly.get_stack_by_name(stacks.observability.stack_name).template


def test_in_cluster_store_runs_prometheus_and_no_aws_metrics_store(in_cluster):
    config, template = in_cluster
    assert not _of_type(template, "AWS::APS::Workspace") and not _of_type(template, "AWS::APS::Scraper")
    assert not _of_type(template, "AWS::IAM::Policy")  # Grafana needs no AWS access then
    charts = _helm_charts(template)
    assert charts["prometheus"]["Properties"]["Version"] == config.observability.prometheus_chart_version
    values = json.loads(charts["grafana"]["Properties"]["Values"])
    (source,) = values["datasources"]["datasources.yaml"]["datasources"]
    assert source["url"] == "http://prometheus-server.monitoring.svc.cluster.local:80"
