"""Metrics and dashboards: where Ray, GPU and job metrics are stored, and the Grafana that shows them.

The names of the in-cluster services (Grafana, Prometheus) live here, next to the setting that creates them,
so that the RayCluster's dashboard settings, the stacks and the operations CLI derive them from one place.
"""

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from .base import Section
from .ray import MonitoringConfig
from .types import Namespace, SemVer

if TYPE_CHECKING:
    from .app import AppConfig

# The AWS managed collector refuses a scrape interval under 30 seconds (AMP user guide, "Scraper
# configuration").
MIN_MANAGED_SCRAPE_INTERVAL_SECONDS = 30
# The EKS add-on of SageMaker HyperPod observability: it runs its own DCGM exporter on every GPU node.
HYPERPOD_OBSERVABILITY_ADDON = "amazon-sagemaker-hyperpod-observability"

GRAFANA_RELEASE = "grafana"  # the chart names its Service after the release
GRAFANA_SERVICE_PORT = 80
GRAFANA_LOCAL_PORT = 3000  # where `kubectl port-forward` puts Grafana on the user's machine
PROMETHEUS_RELEASE = "prometheus"
PROMETHEUS_SERVICE = f"{PROMETHEUS_RELEASE}-server"  # the chart's server Service
PROMETHEUS_SERVICE_PORT = 80
# The uid of the one Prometheus data source Grafana is provisioned with (AMP or the in-cluster server).
DATASOURCE_UID = "prometheus"
# Ray's generated dashboards select their data source by this name (RAY_PROMETHEUS_NAME's default).
DATASOURCE_NAME = "Prometheus"


class ObservabilityConfig(Section):
    enabled: bool = Field(default=True, description="Collect Ray, GPU and job metrics and run Grafana.")
    store: Literal["managed", "in_cluster"] = Field(
        default="managed",
        description="managed: Amazon Managed Service for Prometheus with an AWS managed scraper (no "
        "collector pods, data survives the cluster); in_cluster: a Prometheus server pod with its own "
        "volume.",
    )
    namespace: Namespace = Field(default="monitoring", description="Namespace of Grafana, Prometheus, DCGM.")
    scrape_interval_seconds: int = Field(
        default=30, ge=1, le=300, description="How often Ray, DCGM and job metrics are scraped."
    )
    dcgm_exporter: bool = Field(
        default=True,
        description="Run NVIDIA's DCGM exporter on GPU nodes. Neither the HyperPod dependency chart (its GPU "
        "operator and that operator's exporter are off) nor this app runs another one.",
    )
    # Pinned chart versions (verified in the charts' repositories):
    grafana_chart_version: SemVer = Field(
        default="12.11.1", description="grafana-community/helm-charts grafana chart (Grafana 13.2.0)."
    )
    dcgm_exporter_chart_version: SemVer = Field(
        default="4.8.2", description="NVIDIA/dcgm-exporter chart (image 4.5.3-4.8.2)."
    )
    prometheus_chart_version: SemVer = Field(
        default="29.27.0", description="prometheus-community/helm-charts prometheus chart (in_cluster only)."
    )
    prometheus_volume_gib: int = Field(default=50, ge=1, description="in_cluster only: the server's volume.")
    prometheus_retention_days: int = Field(
        default=15, ge=1, description="in_cluster only: how long the server keeps samples."
    )

    @model_validator(mode="after")
    def _managed_scrape_interval(self) -> "ObservabilityConfig":
        if self.store == "managed" and self.scrape_interval_seconds < MIN_MANAGED_SCRAPE_INTERVAL_SECONDS:
            raise ValueError(
                f"scrape_interval_seconds={self.scrape_interval_seconds}: the AWS managed collector "
                f"(store 'managed') scrapes at most every {MIN_MANAGED_SCRAPE_INTERVAL_SECONDS} seconds"
            )
        return self

    @property
    def grafana_url(self) -> str:
        """Grafana inside the cluster, as the Ray head reaches it."""
        return f"http://{GRAFANA_RELEASE}.{self.namespace}.svc.cluster.local:{GRAFANA_SERVICE_PORT}"

    @property
    def prometheus_url(self) -> str:
        """A Prometheus query API the Ray head can call without AWS credentials.

        The in-cluster server answers directly. AMP needs SigV4-signed requests, which Ray's dashboard cannot
        make: it goes through Grafana's data source proxy, which signs them with Grafana's role.
        """
        if self.store == "in_cluster":
            return f"http://{PROMETHEUS_SERVICE}.{self.namespace}.svc.cluster.local:{PROMETHEUS_SERVICE_PORT}"
        return f"{self.grafana_url}/api/datasources/proxy/uid/{DATASOURCE_UID}"

    def ray_monitoring(self, explicit: MonitoringConfig) -> MonitoringConfig:
        """What the Ray dashboard is told (RAY_GRAFANA_HOST, ...): the explicit settings if any is set,
        else this deployment's Grafana and Prometheus. The iframe host is the browser's port-forward."""
        if not self.enabled or any(explicit.model_dump().values()):
            return explicit
        return MonitoringConfig(
            grafana_host=self.grafana_url,
            prometheus_host=self.prometheus_url,
            grafana_iframe_host=f"http://localhost:{GRAFANA_LOCAL_PORT}",
        )


def check_one_dcgm_exporter(config: "AppConfig") -> "AppConfig":
    """Two DCGM exporters on a node would compete for the GPUs' profiling counters and duplicate series."""
    observability: Any = config.observability
    if (
        observability.enabled
        and observability.dcgm_exporter
        and HYPERPOD_OBSERVABILITY_ADDON in config.eks.addon_versions
    ):
        raise ValueError(
            f"observability.dcgm_exporter=true with eks.addon_versions.{HYPERPOD_OBSERVABILITY_ADDON}: that "
            "add-on runs its own DCGM exporter; set observability.dcgm_exporter=false"
        )
    return config
