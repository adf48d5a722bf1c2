"""The Ray GCS's external store (ElastiCache for Valkey) and its password, in a stack of their own."""

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks_v2 as eks
from constructs import Construct

from config import AppConfig
from k8s_charts.gcs import PASSWORD_KEY, GcsStoreChart, store_name

from .components.gcs_store import GcsStore
from .components.k8s_secret import KubernetesSecretFromSecretsManager
from .eks import ClusterAccess
from .kubernetes import ChartDeployer
from .retention import retention


class GcsStoreStack(cdk.Stack):
    """Needs only the network, so ElastiCache (5-15 minutes) is created while EKS and HyperPod come up.

    The ray stack depends on it: the RayCluster (and KubeRay's Redis cleanup job that runs when it is
    deleted) is gone before the store is.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AppConfig,
        vpc: ec2.IVpc,
        node_security_group: ec2.ISecurityGroup,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        gcs = config.gcs_fault_tolerance
        self.store = GcsStore(self, "GcsStore", config=gcs, vpc=vpc, node_security_group=node_security_group)
        # What `ops status` reads (ops/gcs.py).
        cdk.CfnOutput(self, "GcsStoreKind", value=gcs.store)
        cdk.CfnOutput(self, "GcsStoreService", value=store_name(config))
        if self.store.endpoint is not None:
            cdk.CfnOutput(self, "GcsReplicationGroupId", value=self.store.replication_group.ref)


def apply_store_objects(
    scope: Construct,
    deployer: ChartDeployer,
    config: AppConfig,
    cluster_access: ClusterAccess,
    store: GcsStore,
) -> list[Construct]:
    """The store's Kubernetes side, in the ray stack (beside the namespace it lives in): its Service and the
    Secret with its password. Returns both, so that the caller orders them after the namespace and
    before the RayCluster (KubeRay's Redis cleanup job, run when the RayCluster is deleted, uses both)."""
    chart = GcsStoreChart(deployer.app, "gcs-store", config=config, elasticache_endpoint=store.endpoint)
    service: eks.KubernetesManifest = deployer.apply("GcsStoreManifest", chart)
    secret = KubernetesSecretFromSecretsManager(
        scope,
        "GcsStoreSecret",
        cluster=cluster_access.cluster,
        secret=store.secret,
        namespace=config.ray.namespace,
        name=store_name(config),
        key=PASSWORD_KEY,
        subnets=cluster_access.private_subnets.subnets,
        security_group=cluster_access.node_security_group,
        log_retention=retention(config.log_retention_days),
    )
    return [service, secret]
