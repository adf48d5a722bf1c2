"""Partial apps: the network and EKS stacks alone, for tests of one stack or construct on the cluster."""

from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_logs as logs

from config import AppConfig
from stacks.eks import ClusterAccess, EksStack
from stacks.network import NetworkStack

TEST_CLUSTER_NAME = "test-eks"
RETENTION = logs.RetentionDays.ONE_MONTH


@dataclass(frozen=True)
class ClusterStacks:
    network: NetworkStack
    eks: EksStack
    cluster_access: ClusterAccess


def cluster_stacks(app: cdk.App, config: AppConfig) -> ClusterStacks:
    """Network and EKS stacks of `config`, wired as stacks/app_stacks.py wires them (in `config.env`)."""
    env = cdk.Environment(account=config.env.account, region=config.env.region)
    network = NetworkStack(app, "Network", config=config.network, log_retention=RETENTION, env=env)
    eks = EksStack(
        app,
        "Eks",
        config=config.eks,
        vpc=network.vpc,
        private_subnets=network.private_subnets,
        node_security_group=network.node_security_group,
        cluster_name=TEST_CLUSTER_NAME,
        log_retention=RETENTION,
        env=env,
    )
    access = ClusterAccess(
        cluster=eks.cluster,
        cluster_name=eks.cluster_name,
        private_subnets=network.private_subnets,
        node_security_group=network.node_security_group,
        compute_subnet=network.compute_subnet,
    )
    return ClusterStacks(network=network, eks=eks, cluster_access=access)
