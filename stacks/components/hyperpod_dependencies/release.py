"""The dependency chart's Helm release: from a local chart asset, or from the chart `ChartBuild` prepared."""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from config.hyperpod import DependencyChartConfig

from ...nag import acknowledge, nag_resource
from .chart_build import ChartBuild
from .recipe import chart_values, local_chart_dir

RELEASE = "hyperpod-dependencies"


class HyperPodDependencies(Construct):
    """Installs the dependency chart release; `release` is what the HyperPod cluster must depend on."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        cluster: eks.Cluster,
        config: DependencyChartConfig,
        log_retention: logs.RetentionDays,
        values: Mapping[str, Any] | None = None,
    ) -> None:
        # Checked before any construct exists, so a bad path fails synth with one line.
        local_dir = local_chart_dir(config) if config.source == "local" else None
        super().__init__(scope, construct_id)
        self.kubectl = _kubectl_provider(cluster)
        self.values = chart_values(cdk.Stack.of(self).region, values)
        self.release: Construct
        if local_dir is not None:
            self.release = self._install_asset(cluster, config, local_dir)
        else:
            self.build = ChartBuild(self, "Build", config=config, log_retention=log_retention)
            self.release = self._install_built(cluster, config, self.build)

    def _install_asset(self, cluster: eks.Cluster, config: DependencyChartConfig, path: Path) -> Construct:
        asset = s3_assets.Asset(self, "ChartAsset", path=str(path))
        acknowledge(
            self.kubectl,
            "AwsSolutions-IAM5",
            "CDK's HelmChart grants its kubectl provider read on the bootstrap asset bucket, where the chart "
            "asset lies; that bucket holds only deployment assets of this account and region.",
            "Action::s3:GetBucket*",
            "Action::s3:GetObject*",
            "Action::s3:List*",
            nag_resource(self, asset.bucket.arn_for_objects("*")),
        )
        return eks.HelmChart(
            self,
            "Release",
            cluster=cluster,
            chart_asset=asset,
            release=RELEASE,
            namespace=config.namespace,
            values=self.values,
        )

    def _install_built(
        self, cluster: eks.Cluster, config: DependencyChartConfig, build: ChartBuild
    ) -> Construct:
        # eks.HelmChart takes only a synth-time asset; this is the resource it would create, with the same
        # properties (see aws-eks-v2/lib/helm-chart.js), reading the chart the build uploaded.
        read = build.grant_chart_read(self, self.kubectl.role)
        release = cdk.CustomResource(
            self,
            "Release",
            service_token=self.kubectl.service_token,
            resource_type=eks.HelmChart.RESOURCE_TYPE,
            properties={
                "ClusterName": cluster.cluster_name,
                "Release": RELEASE,
                "ChartAssetURL": build.chart_url,
                "Values": cdk.Stack.of(self).to_json_string(self.values),
                "Namespace": config.namespace,
                "CreateNamespace": True,
            },
        )
        release.node.add_dependency(read, build.resource)
        return release


def _kubectl_provider(cluster: eks.Cluster) -> eks.KubectlProvider:
    provider = cluster.kubectl_provider
    if provider is None or provider.role is None:
        raise ValueError("the cluster needs a kubectl provider (kubectl_provider_options) with a role")
    return provider
