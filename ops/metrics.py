"""GPU utilization per node for `ops status`, read through the Grafana port-forward.

Grafana's data-source proxy is the one query path for both stores (it signs AMP requests; the in-cluster
Prometheus answers directly), so the CLI needs no AWS signing of its own (observability/access.py).
"""

import json
import urllib.error
import urllib.request

from observability.access import GPU_UTILIZATION_BY_NODE, gpu_utilization, prometheus_query_url


def gpu_utilization_by_node(grafana_url: str, timeout: float = 10) -> dict[str, float] | None:
    """node -> mean GPU utilization (percent); {} before the first samples; None when Grafana did not
    answer (a status report must not fail because the metrics are not there yet)."""
    url = prometheus_query_url(GPU_UTILIZATION_BY_NODE, grafana=grafana_url)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return gpu_utilization(json.load(response))
    except (OSError, ValueError):
        return None
