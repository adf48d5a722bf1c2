"""Put cdk8s charts onto the cluster from any stack, and keep them for the readable manifests."""

import cdk8s
from aws_cdk import aws_eks_v2 as eks
from constructs import Construct


class ChartDeployer:
    """Applies cdk8s charts as KubernetesManifest resources in `scope`'s stack.

    `Cluster.add_cdk8s_chart` would put every manifest into the EKS stack; creating the manifest here keeps
    each chart in the stack whose lifecycle it shares, so stack order gives create and delete order.
    """

    def __init__(self, scope: Construct, cluster: eks.ICluster) -> None:
        self._scope = scope
        self._cluster = cluster
        self.app = cdk8s.App()
        self.charts: dict[str, cdk8s.Chart] = {}

    def apply(self, construct_id: str, chart: cdk8s.Chart) -> eks.KubernetesManifest:
        """Serialise `chart` now (it must be complete) and apply it with the cluster's kubectl provider."""
        self.charts[construct_id] = chart
        return eks.KubernetesManifest(
            self._scope, construct_id, cluster=self._cluster, manifest=chart.to_json(), prune=True
        )
