"""The chart configurations the k8s tests synthesize, and how the ray stack combines the charts."""

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cdk8s import Testing

from config import AppConfig, load_config
from k8s_charts import (
    DynamicFileSystem,
    NamespaceChart,
    RayClusterChart,
    RayJobChart,
    RayNetworkPolicyChart,
    RaySupervisorChart,
    StaticFileSystem,
    StorageChart,
)
from k8s_charts.namespace import namespace_pod_security

IMAGE = "123456789012.dkr.ecr.us-west-2.amazonaws.com/ray:2.60.0-py311-gpu"
STATIC_FS = StaticFileSystem(
    file_system_id="fs-0123456789abcdef0", dns_name="fs.example", mount_name="abcdefgh"
)
DYNAMIC_FS = DynamicFileSystem(subnet_id="subnet-0123456789abcdef0", security_group_id="sg-0123456789abcdef0")

G5_GROUPS = [
    {"name": "head", "instance_type": "ml.m5.2xlarge", "count": 1},
    {"name": "workers", "instance_type": "ml.p5.48xlarge", "count": 4},
    {
        "name": "g5",
        "instance_type": "ml.g5.12xlarge",
        "count": 2,
        "taints": [{"key": "dedicated", "value": "ray", "effect": "NoSchedule"}],
    },
]
G5_WORKERS = [
    {"name": "gpu-workers", "instance_group": "workers", "replicas": 1, "max_replicas": 4},
    {"name": "g5-workers", "instance_group": "g5", "replicas": 2, "max_replicas": 2},
]
# The acceptance case: 2 x ml.g5.12xlarge workers, no sizes given.
G5_ONLY_GROUPS = [
    {"name": "head", "instance_type": "ml.m5.2xlarge", "count": 1},
    {"name": "workers", "instance_type": "ml.g5.12xlarge", "count": 2},
]
G5_ONLY_WORKERS = [{"name": "gpu-workers", "instance_group": "workers", "replicas": 2, "max_replicas": 2}]

# name -> context overrides (as `cdk -c` would pass them)
SCENARIOS: dict[str, dict[str, str]] = {
    "defaults": {},
    "dynamic_storage": {"storage.mode": "dynamic", "storage.capacity_gib": "4800"},
    "autoscaling": {"ray.autoscaling.enabled": "true", "ray.autoscaling.idle_timeout_seconds": "300"},
    "monitoring": {
        "ray.monitoring.grafana_host": "http://grafana.monitoring:3000",
        "ray.monitoring.prometheus_host": "http://prometheus.monitoring:9090",
        "ray.monitoring.grafana_iframe_host": "http://localhost:3000",
    },
    "job": {
        "ray.job.enabled": "true",
        "ray.job.runner": "rayjob",
        "ray.job.shutdown_after_job_finishes": "true",
    },
    # The default runner, on an instance group with a taint the supervisor must tolerate like the head.
    "supervisor": {
        "ray.job.enabled": "true",
        "hyperpod.instance_groups": json.dumps(
            [
                {
                    **G5_ONLY_GROUPS[0],
                    "taints": [{"key": "dedicated", "value": "head", "effect": "NoSchedule"}],
                },
                *G5_ONLY_GROUPS[1:],
            ]
        ),
        "ray.worker_groups": json.dumps(G5_ONLY_WORKERS),
    },
    "g5_workers": {
        "hyperpod.instance_groups": json.dumps(G5_GROUPS),
        "ray.worker_groups": json.dumps(G5_WORKERS),
    },
    "g5_only": {
        "hyperpod.instance_groups": json.dumps(G5_ONLY_GROUPS),
        "ray.worker_groups": json.dumps(G5_ONLY_WORKERS),
    },
    "explicit_sizes": {
        "ray.head.cpu": "2",
        "ray.head.memory": "16Gi",
        "ray.worker_groups": json.dumps([{"cpu": "64", "memory": "1500Gi", "gpus": 4, "efa": False}]),
        "ray.image_uri": "rayproject/ray:2.60.0-py311-gpu",
    },
    "user_image_with_efa": {"ray.image_uri": "example.com/ray:2.60.0-efa", "ray.image_efa": "true"},
}


@dataclass
class Synth:
    """A configuration, its charts and each chart's synthesized objects."""

    config: AppConfig
    charts: dict[str, Any] = field(default_factory=dict)
    manifests: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def objects(self) -> list[dict[str, Any]]:
        return [obj for manifest in self.manifests.values() for obj in manifest]

    def one(self, kind: str) -> dict[str, Any]:
        found = [obj for obj in self.objects() if obj["kind"] == kind]
        assert len(found) == 1, f"expected one {kind}, found {len(found)}"
        return found[0]


# The VPC range the managed scraper connects from (RayStack passes the VPC's CIDR).
SCRAPER_CIDR = "10.0.0.0/16"


def synth(overrides: Mapping[str, str]) -> Synth:
    """All charts the ray stack adds for this configuration, synthesized like the stack would."""
    config = load_config(overrides)
    app = Testing.app()
    result = Synth(config)
    fs = {"static": STATIC_FS} if config.storage.mode == "static" else {"dynamic": DYNAMIC_FS}
    result.charts = {
        "namespace": NamespaceChart(
            app,
            "namespace",
            name=config.ray.namespace,
            enforce=namespace_pod_security(config)[config.ray.namespace],
        ),
        "storage": StorageChart(app, "storage", storage=config.storage, namespace=config.ray.namespace, **fs),
        "ray_cluster": RayClusterChart(app, "ray-cluster", config=config, image=IMAGE),
        "network_policy": RayNetworkPolicyChart(
            app, "network-policy", config=config, scraper_cidr=SCRAPER_CIDR
        ),
    }
    if config.runs_supervisor:
        result.charts["ray_supervisor"] = RaySupervisorChart(
            app,
            "ray-supervisor",
            config=config,
            cluster=result.charts["ray_cluster"],
            image=IMAGE,
            image_key=IMAGE,
        )
    elif config.ray.job.enabled:
        result.charts["ray_job"] = RayJobChart(app, "ray-job", config=config)
    result.manifests = {name: Testing.synth(chart) for name, chart in result.charts.items()}
    return result
