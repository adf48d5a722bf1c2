"""What the operations CLI needs to reach the dashboards and read GPU utilization: pure, no CDK.

`ops dashboard` runs `port_forwards(config)` together (Ray's dashboard and Grafana, whose panels Ray's
Metrics tab embeds from http://localhost:3000); `ops status` asks the Prometheus query API
(`prometheus_query_url`) for `GPU_UTILIZATION_BY_NODE` through the Grafana port-forward.
"""

from dataclasses import dataclass
from urllib.parse import urlencode

from config import AppConfig
from config.observability import (
    DATASOURCE_UID,
    GRAFANA_LOCAL_PORT,
    GRAFANA_RELEASE,
    GRAFANA_SERVICE_PORT,
)

from .dashboards import gpu_utilization_by_node

RAY_DASHBOARD_PORT = 8265
GPU_UTILIZATION_BY_NODE = gpu_utilization_by_node()


@dataclass(frozen=True)
class PortForward:
    name: str
    command: tuple[str, ...]  # argv for subprocess, no shell
    url: str  # what to open once the forward runs


def _kubectl_forward(namespace: str, target: str, ports: str) -> tuple[str, ...]:
    return ("kubectl", "-n", namespace, "port-forward", target, ports)


def port_forwards(config: AppConfig) -> list[PortForward]:
    """Ray's dashboard, and Grafana when observability is on."""
    ray = config.ray
    forwards = [
        PortForward(
            name="ray-dashboard",
            command=_kubectl_forward(
                ray.namespace,
                f"svc/{ray.cluster_name}-head-svc",
                f"{RAY_DASHBOARD_PORT}:{RAY_DASHBOARD_PORT}",
            ),
            url=f"http://localhost:{RAY_DASHBOARD_PORT}",
        )
    ]
    if config.observability.enabled:
        forwards.append(
            PortForward(
                name="grafana",
                command=_kubectl_forward(
                    config.observability.namespace,
                    f"svc/{GRAFANA_RELEASE}",
                    f"{GRAFANA_LOCAL_PORT}:{GRAFANA_SERVICE_PORT}",
                ),
                url=f"http://localhost:{GRAFANA_LOCAL_PORT}",
            )
        )
    return forwards


def prometheus_query_url(query: str, *, grafana: str = f"http://localhost:{GRAFANA_LOCAL_PORT}") -> str:
    """An instant query through Grafana's data-source proxy: the same path for AMP (Grafana signs it) and for
    the in-cluster server, and the only forward `ops dashboard` already opens."""
    return f"{grafana}/api/datasources/proxy/uid/{DATASOURCE_UID}/api/v1/query?{urlencode({'query': query})}"


def gpu_utilization(response: dict) -> dict[str, float]:
    """node -> mean GPU utilization (percent) from a Prometheus instant-query response; empty without data."""
    if response.get("status") != "success":
        return {}
    return {
        sample["metric"].get("node", "?"): float(sample["value"][1]) for sample in response["data"]["result"]
    }
