"""The Prometheus scrape configuration: Ray's metrics port on every Ray pod, and NVIDIA's DCGM exporter.

One recipe serves the AWS managed collector (which only supports Kubernetes service discovery), the
in-cluster Prometheus server, and the local acceptance test (file-based discovery over the file Ray writes).
"""

from typing import Any

import yaml

from config import AppConfig

RAY_JOB = "ray"
DCGM_JOB = "dcgm-exporter"
# KubeRay names the Ray container's metrics port "metrics" (8080) on every head and worker pod, and labels
# every pod of a RayCluster `ray.io/cluster: <name>` and `ray.io/node-type: head|worker`.
METRICS_PORT_NAME = "metrics"
RAY_METRICS_PORT = 8080
RAY_CLUSTER_LABEL = "ray.io/cluster"
RAY_NODE_TYPE_LABEL = "ray.io/node-type"
# The DCGM exporter chart labels its pods `app.kubernetes.io/name: dcgm-exporter`; its port is "metrics" too.
DCGM_NAME_LABEL = "app.kubernetes.io/name"
DCGM_NAME = "dcgm-exporter"
DCGM_METRICS_PORT = 9400


def _pod_label(label: str) -> str:
    """The meta label Prometheus derives from a pod label (every non-alphanumeric character becomes '_')."""
    return "__meta_kubernetes_pod_label_" + "".join(c if c.isalnum() else "_" for c in label)


def _pod_targets(namespace: str, label: str, value: str) -> dict[str, Any]:
    """Kubernetes discovery of one labelled set of pods, keeping only their port named "metrics"."""
    return {
        "kubernetes_sd_configs": [{"role": "pod", "namespaces": {"names": [namespace]}}],
        "relabel_configs": [
            {
                "source_labels": [_pod_label(label), "__meta_kubernetes_pod_container_port_name"],
                "regex": f"{value};{METRICS_PORT_NAME}",
                "action": "keep",
            },
            # `node` is what dashboards and `status` group GPUs and Ray nodes by.
            {"source_labels": ["__meta_kubernetes_pod_node_name"], "target_label": "node"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        ],
    }


def ray_job(config: AppConfig) -> dict[str, Any]:
    ray = config.ray
    job = {"job_name": RAY_JOB, **_pod_targets(ray.namespace, RAY_CLUSTER_LABEL, ray.cluster_name)}
    job["relabel_configs"] += [
        {"source_labels": [_pod_label(RAY_NODE_TYPE_LABEL)], "target_label": "ray_node_type"},
        # Ray's own Grafana dashboards filter every panel on `ray_io_cluster` (what KubeRay's PodMonitor
        # sets): without it their Cluster variable is empty and the panels show nothing.
        {"source_labels": [_pod_label(RAY_CLUSTER_LABEL)], "target_label": "ray_io_cluster"},
    ]
    return job


def ray_file_job(discovery_file: str) -> dict[str, Any]:
    """The same Ray job over the service-discovery file Ray's dashboard writes
    (`<temp dir>/prom_metrics_service_discovery.json`): for a Ray outside Kubernetes."""
    return {"job_name": RAY_JOB, "file_sd_configs": [{"files": [discovery_file]}]}


def dcgm_job(config: AppConfig) -> dict[str, Any]:
    return {"job_name": DCGM_JOB, **_pod_targets(config.observability.namespace, DCGM_NAME_LABEL, DCGM_NAME)}


def scrape_configuration(config: AppConfig, *, ray: dict[str, Any] | None = None) -> dict[str, Any]:
    """The whole configuration; `ray` replaces the Ray job's discovery (the local test's file)."""
    interval = f"{config.observability.scrape_interval_seconds}s"
    jobs = [ray or ray_job(config)]
    if config.observability.dcgm_exporter:
        jobs.append(dcgm_job(config))
    return {
        "global": {
            "scrape_interval": interval,
            # Series of several deployments can share one store: the cluster name tells them apart.
            "external_labels": {"ray_cluster": config.ray.cluster_name},
        },
        "scrape_configs": jobs,
    }


def scrape_yaml(config: AppConfig, *, ray: dict[str, Any] | None = None) -> str:
    return yaml.safe_dump(scrape_configuration(config, ray=ray), sort_keys=False)
