"""Scrape targets, dashboards, Helm values and access commands, checked against what they must match:
KubeRay's pod labels and ports, Ray's own dashboard generator, the job's metric names, config errors."""

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from config import ConfigError, load_config
from config.eks import DEFAULT_ADDON_VERSIONS
from config.observability import HYPERPOD_OBSERVABILITY_ADDON
from observability import access, dashboards, helm_values, scrape

REPO = Path(__file__).resolve().parents[2]


def _keeps(job: dict, labels: dict[str, str]) -> bool:
    """Prometheus's `keep` relabeling: source labels joined by ';', the regex fully anchored."""
    for rule in job["relabel_configs"]:
        if rule.get("action") == "keep":
            value = ";".join(labels.get(name, "") for name in rule["source_labels"])
            if not re.fullmatch(rule["regex"], value):
                return False
    return True


def _kuberay_target(cluster: str, port_name: str, node_type: str = "worker") -> dict[str, str]:
    """The discovery labels of one container port of a pod KubeRay created (labels ray.io/cluster, ...)."""
    return {
        "__meta_kubernetes_pod_label_ray_io_cluster": cluster,
        "__meta_kubernetes_pod_label_ray_io_node_type": node_type,
        "__meta_kubernetes_pod_container_port_name": port_name,
    }


def test_ray_job_scrapes_only_the_metrics_port_of_this_clusters_pods(default_config):
    job = scrape.ray_job(default_config)
    cluster = default_config.ray.cluster_name
    assert job["kubernetes_sd_configs"] == [
        {"role": "pod", "namespaces": {"names": [default_config.ray.namespace]}}
    ]
    assert _keeps(job, _kuberay_target(cluster, "metrics", "head"))
    assert _keeps(job, _kuberay_target(cluster, "metrics"))
    assert not _keeps(job, _kuberay_target(cluster, "dashboard", "head"))
    assert not _keeps(job, _kuberay_target("another-cluster", "metrics"))


def test_dcgm_job_scrapes_the_exporter_pods_in_the_monitoring_namespace(default_config):
    job = scrape.dcgm_job(default_config)
    assert job["kubernetes_sd_configs"][0]["namespaces"]["names"] == ["monitoring"]
    assert _keeps(job, {"__meta_kubernetes_pod_label_app_kubernetes_io_name": "dcgm-exporter",
                        "__meta_kubernetes_pod_container_port_name": "metrics"})  # fmt: skip
    assert not _keeps(job, {"__meta_kubernetes_pod_label_app_kubernetes_io_name": "grafana",
                            "__meta_kubernetes_pod_container_port_name": "metrics"})  # fmt: skip


def test_every_target_is_labelled_with_its_node_for_per_node_gpu_utilization(default_config):
    for job in (scrape.ray_job(default_config), scrape.dcgm_job(default_config)):
        node_rules = [r for r in job["relabel_configs"] if r.get("target_label") == "node"]
        assert node_rules == [{"source_labels": ["__meta_kubernetes_pod_node_name"], "target_label": "node"}]
    assert "by (node)" in access.GPU_UTILIZATION_BY_NODE


def test_the_managed_scraper_gets_only_what_it_supports(default_config):
    """AMP's collector: Kubernetes discovery only, an interval of at least 30 s."""
    configuration = scrape.scrape_configuration(default_config)
    assert configuration["global"]["scrape_interval"] == "30s"
    for job in configuration["scrape_configs"]:
        assert set(job) <= {"job_name", "kubernetes_sd_configs", "relabel_configs"}


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        ({"observability.scrape_interval_seconds": "10"}, "scrapes at most every 30 seconds"),
        ({"observability.store": "amp"}, "observability.store = 'amp': Input should be 'managed' or"),
        ({"observability.namespace": "Monitoring"}, "observability.namespace = 'Monitoring': must be a DNS"),
        (
            {
                "eks.addon_versions": json.dumps(
                    {**DEFAULT_ADDON_VERSIONS, HYPERPOD_OBSERVABILITY_ADDON: None}
                )
            },
            "that add-on runs its own DCGM exporter; set observability.dcgm_exporter=false",
        ),
    ],
)
def test_bad_observability_settings_are_one_clear_config_error(context, expected):
    with pytest.raises(ConfigError) as caught:
        load_config(context)
    assert any(expected in problem for problem in caught.value.problems), caught.value.problems


def test_the_ray_head_is_pointed_at_this_deployments_grafana_unless_configured_otherwise():
    config = load_config({})
    derived = config.observability.ray_monitoring(config.ray.monitoring)
    assert derived.grafana_host == "http://grafana.monitoring.svc.cluster.local:80"
    assert derived.prometheus_host == f"{derived.grafana_host}/api/datasources/proxy/uid/prometheus"
    assert derived.grafana_iframe_host == "http://localhost:3000"
    in_cluster = load_config({"observability.store": "in_cluster"})
    assert in_cluster.observability.ray_monitoring(in_cluster.ray.monitoring).prometheus_host == (
        "http://prometheus-server.monitoring.svc.cluster.local:80"
    )
    explicit = load_config({"ray.monitoring.grafana_host": "http://g:3000"})
    assert explicit.observability.ray_monitoring(explicit.ray.monitoring).prometheus_host is None
    off = load_config({"observability.enabled": "false"})
    assert off.observability.ray_monitoring(off.ray.monitoring).grafana_host is None


def test_init_container_script_writes_rays_own_dashboards_with_this_ray(tmp_path):
    """The script Grafana's init container runs, run here with the pinned Ray: its dashboards appear."""
    subprocess.run([sys.executable, "-c", dashboards.RAY_DASHBOARD_SCRIPT, str(tmp_path)], check=True)
    written = {path.name: json.loads(path.read_text()) for path in tmp_path.glob("*.json")}
    assert {"default_grafana_dashboard.json", "train_grafana_dashboard.json"} <= set(written)
    assert any("ray_train_" in json.dumps(board) for board in written.values())


def test_gpu_dashboard_queries_the_metrics_the_job_and_dcgm_export():
    sys.path.insert(0, str(REPO / "jobs" / "fsdp_ray"))
    import lm_metrics  # noqa: PLC0415 (the job's module, as the job ships it)

    expressions = json.dumps([p["targets"] for p in dashboards.gpu_dashboard()["panels"]])
    assert f"ray_{lm_metrics.TOKENS_PER_SECOND}" in expressions and f"ray_{lm_metrics.MFU}" in expressions
    assert 'DCGM_FI_DEV_GPU_UTIL{job=\\"dcgm-exporter\\"}' in expressions


def test_grafana_signs_amp_queries_and_embeds_in_rays_dashboard(default_config):
    values = helm_values.grafana_values(
        default_config, datasource_url="https://amp/ws", region="us-west-2", role_arn="arn:role"
    )
    (source,) = values["datasources"]["datasources.yaml"]["datasources"]
    assert (
        source["jsonData"]["sigV4Auth"] and source["uid"] == "prometheus" and source["name"] == "Prometheus"
    )
    assert values["grafana.ini"]["security"]["allow_embedding"] is True
    assert values["grafana.ini"]["auth.anonymous"] == {"enabled": True, "org_role": "Viewer"}
    assert values["serviceAccount"] == {"create": False, "name": "grafana"}  # CDK's, with the IRSA role
    (init,) = values["extraInitContainers"]
    assert init["image"] == "rayproject/ray:2.60.0-py311-cpu"
    assert values["nodeSelector"]["sagemaker.amazonaws.com/instance-group-name"] == "head"


def test_dcgm_exporter_runs_only_on_gpu_instance_types(default_config):
    values = helm_values.dcgm_exporter_values(default_config)
    (term,) = values["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert term["matchExpressions"][0]["values"] == ["ml.p5.48xlarge"]
    # Only on nodes HyperPod reports Schedulable: never during deep health checks or repair.
    assert term["matchExpressions"][1] == {
        "key": "sagemaker.amazonaws.com/node-health-status",
        "operator": "In",
        "values": ["Schedulable"],
    }
    assert values["serviceMonitor"] == {"enabled": False}


def _relabel(job: dict, labels: dict[str, str]) -> dict[str, str]:
    """Prometheus's replace relabeling (the default action): source labels joined by ';' into the target."""
    out = dict(labels)
    for rule in job["relabel_configs"]:
        if rule.get("action", "replace") == "replace":
            out[rule["target_label"]] = ";".join(labels.get(name, "") for name in rule["source_labels"])
    return out


def test_ray_targets_carry_the_label_rays_dashboards_filter_on(default_config):
    labels = _relabel(scrape.ray_job(default_config), _kuberay_target("ray-cluster", "metrics", "head"))
    assert labels["ray_io_cluster"] == "ray-cluster"
    assert labels["ray_node_type"] == "head"
    # The pinned Ray's default dashboard lists clusters by that label.
    (ray_dir,) = importlib.util.find_spec("ray").submodule_search_locations
    base = Path(ray_dir) / "dashboard/modules/metrics/dashboards/default_grafana_dashboard_base.json"
    assert "ray_io_cluster)" in base.read_text()


def test_in_cluster_prometheus_runs_only_this_apps_jobs():
    config = load_config({"observability.store": "in_cluster"})
    values = helm_values.prometheus_values(config)
    assert all(job == {"enabled": False} for job in values["scrapeConfigs"].values())
    assert "job_name: ray" in values["extraScrapeConfigs"]
    assert values["server"]["persistentVolume"] == {"enabled": False}


def test_dashboard_command_forwards_ray_and_grafana(default_config):
    forwards = {forward.name: forward for forward in access.port_forwards(default_config)}
    assert forwards["ray-dashboard"].command == (
        "kubectl", "-n", "ray", "port-forward", "svc/ray-cluster-head-svc", "8265:8265",
    )  # fmt: skip
    assert forwards["grafana"].command == (
        "kubectl",
        "-n",
        "monitoring",
        "port-forward",
        "svc/grafana",
        "3000:80",
    )
    assert [f.name for f in access.port_forwards(load_config({"observability.enabled": "false"}))] == [
        "ray-dashboard"
    ]


def test_status_reads_per_node_gpu_utilization_from_a_query_response():
    url = access.prometheus_query_url(access.GPU_UTILIZATION_BY_NODE)
    assert url.startswith(
        "http://localhost:3000/api/datasources/proxy/uid/prometheus/api/v1/query?query=avg+by"
    )
    response = {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [{"metric": {"node": "hyperpod-i-1"}, "value": [1, "87.5"]}],
        },
    }
    assert access.gpu_utilization(response) == {"hyperpod-i-1": 87.5}
    assert access.gpu_utilization({"status": "error"}) == {}
