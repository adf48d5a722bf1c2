"""Helm values of the charts this app installs for metrics: Grafana, NVIDIA's DCGM exporter and, optionally,
a Prometheus server. Tokens (role ARN, workspace URL) arrive as arguments."""

from typing import Any

import yaml

from config import AppConfig
from config.instance_types import known_gpus
from config.observability import DATASOURCE_NAME, DATASOURCE_UID

from .dashboards import GPU_PROVIDER, RAY_DASHBOARD_SCRIPT, RAY_DASHBOARDS_DIR, gpu_dashboard_json
from .scrape import scrape_configuration

INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
INSTANCE_GROUP_LABEL = "sagemaker.amazonaws.com/instance-group-name"
# HyperPod's node health label: Schedulable once a node passed its health checks (as the Ray pods select).
HEALTH_LABEL = "sagemaker.amazonaws.com/node-health-status"
SCHEDULABLE = "Schedulable"
RAY_DASHBOARDS_VOLUME = "ray-dashboards"
GRAFANA_SERVICE_ACCOUNT = "grafana"
# The Prometheus chart's default scrape jobs (chart 29.27.0): Helm merges maps, so each is turned off by name.
PROMETHEUS_CHART_JOBS = (
    "prometheus",
    "kubernetes-api-servers",
    "kubernetes-nodes",
    "kubernetes-nodes-cadvisor",
    "kubernetes-service-endpoints",
    "kubernetes-service-endpoints-slow",
    "prometheus-pushgateway",
    "kubernetes-services",
    "kubernetes-pods",
    "kubernetes-pods-slow",
)


def ray_cpu_image(config: AppConfig) -> str:
    """Ray's CPU image of the cluster's Ray version (tag scheme <version>-<python>-cpu): only its Python
    package is used, to generate the dashboards."""
    return f"rayproject/ray:{config.ray.ray_version}-{config.ray.python_tag}-cpu"


def _head_placement(config: AppConfig) -> dict[str, Any]:
    """Grafana and Prometheus run beside the Ray head, on the CPU group, never on a GPU node."""
    group = config.hyperpod.group(config.ray.head.instance_group)
    return {
        "nodeSelector": {INSTANCE_TYPE_LABEL: group.instance_type, INSTANCE_GROUP_LABEL: group.name},
        "tolerations": [
            {"key": t.key, "value": t.value, "effect": t.effect, "operator": "Equal"} for t in group.taints
        ],
    }


def gpu_instance_types(config: AppConfig) -> list[str]:
    return sorted(
        {g.instance_type for g in config.hyperpod.instance_groups if known_gpus(g.instance_type) > 0}
    )


def grafana_values(
    config: AppConfig, *, datasource_url: str, region: str | None, role_arn: str | None
) -> dict[str, Any]:
    # role_arn: the IRSA role of the service account CDK creates, set when the store is AMP.
    """Anonymous read-only access (reached only through `kubectl port-forward`) and embedding on: Ray's
    dashboard shows Grafana panels in iframes. With AMP, Grafana signs its queries (SigV4) with its role."""
    datasource: dict[str, Any] = {
        "name": DATASOURCE_NAME,
        "uid": DATASOURCE_UID,
        "type": "prometheus",
        "access": "proxy",
        "url": datasource_url,
        "isDefault": True,
        "jsonData": {"httpMethod": "POST"},
    }
    service_account: dict[str, Any] = {"create": True, "name": GRAFANA_SERVICE_ACCOUNT}
    ini: dict[str, Any] = {
        "auth.anonymous": {"enabled": True, "org_role": "Viewer"},
        "security": {"allow_embedding": True},
    }
    if role_arn is not None:
        datasource["jsonData"].update({"sigV4Auth": True, "sigV4AuthType": "default", "sigV4Region": region})
        # CDK creates the account with its IRSA role (stacks/observability.py): Helm must not create a second.
        service_account["create"] = False
        ini["auth"] = {"sigv4_auth_enabled": True}
    return {
        **_head_placement(config),
        "serviceAccount": service_account,
        "grafana.ini": ini,
        "persistence": {"enabled": False},  # dashboards and data source are provisioned: no state to keep
        "datasources": {"datasources.yaml": {"apiVersion": 1, "datasources": [datasource]}},
        "dashboardProviders": {
            "dashboardproviders.yaml": {
                "apiVersion": 1,
                "providers": [
                    _provider("ray", RAY_DASHBOARDS_DIR),
                    _provider(GPU_PROVIDER, f"/var/lib/grafana/dashboards/{GPU_PROVIDER}"),
                ],
            }
        },
        "dashboards": {GPU_PROVIDER: {"gpu-throughput": {"json": gpu_dashboard_json()}}},
        "extraEmptyDirMounts": [{"name": RAY_DASHBOARDS_VOLUME, "mountPath": RAY_DASHBOARDS_DIR}],
        "extraInitContainers": [
            {
                "name": "ray-dashboards",
                "image": ray_cpu_image(config),
                "command": ["python", "-c", RAY_DASHBOARD_SCRIPT, "/dashboards"],
                "volumeMounts": [{"name": RAY_DASHBOARDS_VOLUME, "mountPath": "/dashboards"}],
            }
        ],
    }


def _provider(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "folder": name.capitalize(), "type": "file", "options": {"path": path}}


def dcgm_exporter_values(config: AppConfig) -> dict[str, Any]:
    """On every healthy GPU node, whatever its taints (like HyperPod's device plugins), and nowhere else."""
    return {
        "serviceMonitor": {"enabled": False},  # no Prometheus Operator here: the scrape job finds the pods
        "tolerations": [{"operator": "Exists"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {
                                    "key": INSTANCE_TYPE_LABEL,
                                    "operator": "In",
                                    "values": gpu_instance_types(config),
                                },
                                # Off nodes HyperPod is checking or repairing: deep health checks run
                                # DCGM diagnostics that need the GPUs' profiling counters to themselves.
                                {"key": HEALTH_LABEL, "operator": "In", "values": [SCHEDULABLE]},
                            ]
                        }
                    ]
                }
            }
        },
    }


def prometheus_values(config: AppConfig) -> dict[str, Any]:
    """Only the server, with this app's scrape jobs. Its data lives in an emptyDir: the cluster has no
    block-storage CSI driver, and the server is a working view, not an archive (that is AMP's role)."""
    observability = config.observability
    scrape = scrape_configuration(config)
    return {
        "alertmanager": {"enabled": False},
        "kube-state-metrics": {"enabled": False},
        "prometheus-node-exporter": {"enabled": False},
        "prometheus-pushgateway": {"enabled": False},
        # The chart's own jobs (API server, cAdvisor, every annotated pod ...) are not this app's to pay for.
        "scrapeConfigs": {job: {"enabled": False} for job in PROMETHEUS_CHART_JOBS},
        "server": {
            **_head_placement(config),
            "global": scrape["global"],
            "retention": f"{observability.prometheus_retention_days}d",
            "persistentVolume": {"enabled": False},
        },
        "extraScrapeConfigs": yaml.safe_dump(scrape["scrape_configs"], sort_keys=False),
    }
