"""The HyperPod cluster that gives the EKS cluster its nodes, with its lifecycle scripts and node role."""

import aws_cdk as cdk
from constructs import Construct

from config import AppConfig

from .components.execution_role import NodeExecutionRole
from .components.hyperpod_cluster import HyperPodCluster
from .components.lifecycle_scripts import LifecycleScripts
from .eks import ClusterAccess
from .retention import retention


class HyperPodStack(cdk.Stack):
    """Lifecycle-script bucket, node execution role and the HyperPod cluster on the EKS cluster."""

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
        log_retention = retention(config.log_retention_days)
        lifecycle = LifecycleScripts(
            self, "LifecycleScripts", prefix=config.prefix, log_retention=log_retention
        )
        # One subnet: EFA traffic stays within an AZ, and the nodes sit next to the FSx file system.
        subnets = [cluster_access.compute_subnet]
        execution_role = NodeExecutionRole(
            self,
            "ExecutionRole",
            cluster=cluster_access.cluster,
            lifecycle_bucket=lifecycle.bucket,
        )
        self.cluster = HyperPodCluster(
            self,
            "HyperPodCluster",
            config=config.hyperpod,
            tags=config.tags,
            eks_cluster=cluster_access.cluster,
            eks_cluster_name=cluster_access.cluster_name,
            security_group=cluster_access.node_security_group,
            subnets=subnets,
            execution_role=execution_role.role,
            lifecycle=lifecycle,
            log_retention=log_retention,
        )
        self.execution_role = execution_role.role
        self.lifecycle = lifecycle
        cdk.CfnOutput(self, "HyperPodClusterName", value=self.cluster.cluster_name)
        cdk.CfnOutput(self, "HyperPodClusterArn", value=self.cluster.cluster_arn)
