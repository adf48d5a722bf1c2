"""The VPC that EKS, HyperPod nodes and FSx share, and the one security group they talk through."""

import math

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from constructs import Construct

from config import ConfigError, NetworkConfig

LUSTRE_PORTS = ((988, 988), (1018, 1023))  # FSx for Lustre: LNet, and the client-server range


class NetworkStack(cdk.Stack):
    """VPC with public and private subnets, an S3 gateway endpoint, flow logs and the node security group."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: NetworkConfig,
        log_retention: logs.RetentionDays,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.vpc = self._import_vpc(config) if config.existing_vpc_id else self._create_vpc(config)
        self._add_flow_logs(log_retention)
        self.private_subnets = self.vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)
        # HyperPod nodes and FSx share one subnet (one AZ): EFA traffic does not cross AZs, and Lustre clients
        # next to their file system avoid cross-AZ latency and charges. EKS still gets every private subnet.
        # The index comes from config (the AZ of a capacity reservation or training plan); default: the first.
        self.compute_subnet = self._compute_subnet(config)
        self.node_security_group = self._node_security_group()

    def _compute_subnet(self, config: NetworkConfig) -> ec2.ISubnet:
        subnets = self.private_subnets.subnets
        index = config.compute_subnet_index
        if index >= len(subnets):  # only an imported VPC gets here; a created one is checked in config
            raise ConfigError(
                [
                    f"network.compute_subnet_index = {index}: VPC {config.existing_vpc_id} has "
                    f"{len(subnets)} private subnets (index from 0)"
                ]
            )
        return subnets[index]

    def _create_vpc(self, config: NetworkConfig) -> ec2.IVpc:
        # Half the range for private subnets, spread over the AZs: HyperPod nodes and every pod take a VPC
        # address (VPC CNI), so the private side must be large. Public subnets hold only NAT gateways.
        private_mask = config.vpc_cidr.prefixlen + math.ceil(math.log2(config.az_count * 2))
        vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(str(config.vpc_cidr)),
            max_azs=config.az_count,
            nat_gateways=config.nat_gateways,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=private_mask + 4
                ),
                ec2.SubnetConfiguration(
                    name="private", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=private_mask
                ),
            ],
            restrict_default_security_group=True,
        )
        # Image pulls and lifecycle scripts come from S3: keep that traffic off the NAT gateways.
        vpc.add_gateway_endpoint("S3", service=ec2.GatewayVpcEndpointAwsService.S3)
        return vpc

    def _import_vpc(self, config: NetworkConfig) -> ec2.IVpc:
        # A lookup: needs credentials at synth, or the answer cached in a committed cdk.context.json.
        return ec2.Vpc.from_lookup(self, "Vpc", vpc_id=config.existing_vpc_id)

    def _add_flow_logs(self, log_retention: logs.RetentionDays) -> None:
        log_group = logs.LogGroup(
            self,
            "FlowLogs",
            retention=log_retention,
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        ec2.FlowLog(
            self,
            "FlowLog",
            resource_type=ec2.FlowLogResourceType.from_vpc(self.vpc),
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(log_group),
            traffic_type=ec2.FlowLogTrafficType.ALL,
        )

    def _node_security_group(self) -> ec2.SecurityGroup:
        group = ec2.SecurityGroup(
            self,
            "NodeSecurityGroup",
            vpc=self.vpc,
            description="EKS control plane, HyperPod nodes and FSx: all traffic within the group (EFA)",
            allow_all_outbound=True,
        )
        # EFA requires all traffic to and from members of the same group; outbound is already open.
        group.add_ingress_rule(group, ec2.Port.all_traffic(), "EFA and node-to-node traffic")
        for low, high in LUSTRE_PORTS:
            port = ec2.Port.tcp(low) if low == high else ec2.Port.tcp_range(low, high)
            group.add_ingress_rule(group, port, "FSx for Lustre")
        return group
