"""HyperPod's managed Karpenter objects (opt-in autoscaling): the HyperpodNodeClass and its NodePools."""

import aws_cdk as cdk
from constructs import Construct

from config import AppConfig
from k8s_charts.karpenter import KarpenterChart

from .eks import ClusterAccess
from .kubernetes import ChartDeployer


class KarpenterStack(cdk.Stack):
    """The NodeClass and NodePools, in their own stack because their lifecycle sits between two others:
    HyperPod installs the Karpenter controller and its CRDs only once the cluster's autoscaling is InService
    (after the HyperPod stack), and deleting the NodePools (which removes Karpenter's nodes) must finish
    before the HyperPod cluster goes and after the Ray pods that asked for the nodes are gone (before the Ray
    stack)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AppConfig,
        cluster_access: ClusterAccess,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.deployer = ChartDeployer(self, cluster_access.cluster)
        self.chart = KarpenterChart(self.deployer.app, "karpenter", config=config)
        self.manifest = self.deployer.apply("KarpenterManifest", self.chart)
