"""The IAM role HyperPod instances run as: node agent, VPC CNI, image pulls, Pod Identity, scripts."""

from collections.abc import Sequence

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from ..nag import acknowledge, managed_policy, nag_resource

INSTANCE_POLICY = "AmazonSageMakerClusterInstanceRolePolicy"
# What the VPC CNI does to the node's ENIs (AmazonEKS_CNI_Policy's write actions).
ENI_ACTIONS = [
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
    "ec2:CreateNetworkInterface",
    "ec2:DeleteNetworkInterface",
    "ec2:AttachNetworkInterface",
    "ec2:DetachNetworkInterface",
    "ec2:ModifyNetworkInterfaceAttribute",
]
# Describe calls support no resource-level permissions: IAM only accepts "*" for them.
DESCRIBE_ACTIONS = [
    "ec2:DescribeInstances",
    "ec2:DescribeInstanceTypes",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:DescribeSecurityGroups",
    "ec2:DescribeVpcs",
    "ec2:DescribeDhcpOptions",
    "ec2:DescribeTags",
]
# HyperPod attaches each node to your subnet through an ENI it creates in its own account and lets yours use:
# every AWS peer grants both (awsome-distributed-training's execution role, Sid "AdditionToEnableVpcConfig").
ENI_PERMISSION_CREATE = "ec2:CreateNetworkInterfacePermission"
# Deletion names a permission id, not an ENI: the action takes no resource-level permissions, only "*".
ENI_PERMISSION_DELETE = "ec2:DeleteNetworkInterfacePermission"
IMAGE_PULL_ACTIONS = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]


class NodeExecutionRole(Construct):
    """The instance groups' ExecutionRole, assumed by SageMaker on behalf of each node."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        cluster: eks.ICluster,
        security_group: ec2.ISecurityGroup,
        subnets: Sequence[ec2.ISubnet],
        lifecycle_bucket: s3.IBucket,
    ) -> None:
        super().__init__(scope, construct_id)
        # Confused-deputy guard: SageMaker may assume the role only for this account's own clusters.
        trust = {"StringEquals": {"aws:SourceAccount": cdk.Stack.of(self).account}}
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com", conditions=trust),
            description="HyperPod EKS nodes: node agent, VPC CNI, image pulls, Pod Identity",
            managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name(INSTANCE_POLICY)],
        )
        stack = cdk.Stack.of(self)
        # Every wildcard resource the policy uses, named once: the policy and its cdk-nag acknowledgment
        # share these values, so a wildcard added later without a reason still fails cdk-nag.
        self._wildcards = {
            "network_interfaces": _ec2_arn(stack, "network-interface", "*"),
            "instances": _ec2_arn(stack, "instance", "*"),
            "repositories": f"arn:{stack.partition}:ecr:*:*:repository/*",
            "scripts": lifecycle_bucket.arn_for_objects("*"),
        }
        for statement in self._statements(cluster, security_group, subnets, lifecycle_bucket):
            self.role.add_to_policy(statement)
        self._acknowledge()

    def _statements(
        self,
        cluster: eks.ICluster,
        security_group: ec2.ISecurityGroup,
        subnets: Sequence[ec2.ISubnet],
        bucket: s3.IBucket,
    ) -> list[iam.PolicyStatement]:
        stack, wild = cdk.Stack.of(self), self._wildcards
        placement = [_ec2_arn(stack, "subnet", subnet.subnet_id) for subnet in subnets]
        placement.append(_ec2_arn(stack, "security-group", security_group.security_group_id))
        return [
            iam.PolicyStatement(
                sid="VpcCniEni",
                actions=ENI_ACTIONS,
                resources=[wild["network_interfaces"], wild["instances"], *placement],
            ),
            iam.PolicyStatement(
                sid="VpcCniTagEni", actions=["ec2:CreateTags"], resources=[wild["network_interfaces"]]
            ),
            iam.PolicyStatement(
                sid="HyperPodEniPermission",
                actions=[ENI_PERMISSION_CREATE],
                resources=[wild["network_interfaces"]],
            ),
            iam.PolicyStatement(
                sid="HyperPodEniPermissionDelete", actions=[ENI_PERMISSION_DELETE], resources=["*"]
            ),
            iam.PolicyStatement(sid="Describe", actions=DESCRIBE_ACTIONS, resources=["*"]),
            iam.PolicyStatement(sid="EcrLogin", actions=["ecr:GetAuthorizationToken"], resources=["*"]),
            iam.PolicyStatement(sid="EcrPull", actions=IMAGE_PULL_ACTIONS, resources=[wild["repositories"]]),
            iam.PolicyStatement(
                sid="EksCluster",
                actions=["eks:DescribeCluster", "eks-auth:AssumeRoleForPodIdentity"],
                resources=[cluster.cluster_arn],
            ),
            iam.PolicyStatement(
                sid="LifecycleBucket", actions=["s3:ListBucket"], resources=[bucket.bucket_arn]
            ),
            iam.PolicyStatement(
                sid="LifecycleScripts", actions=["s3:GetObject"], resources=[wild["scripts"]]
            ),
        ]

    def _acknowledge(self) -> None:
        acknowledge(
            self.role,
            "AwsSolutions-IAM4",
            "HyperPod requires AmazonSageMakerClusterInstanceRolePolicy on every instance group's "
            "execution role (node agent, health monitoring, cluster log delivery); it has no "
            "customer-managed equivalent.",
            managed_policy(INSTANCE_POLICY),
        )
        acknowledge(
            self.role,
            "AwsSolutions-IAM5",
            "EC2 Describe*, ec2:DeleteNetworkInterfacePermission and ecr:GetAuthorizationToken support no "
            "resource-level permissions (*). ENIs and "
            "instances that the VPC CNI manages get generated ids, so they are scoped to this account and "
            "region (ENI writes also name the cluster's subnets and security group). Images come from "
            "AWS-owned EKS add-on registries and the user's own, so pulls are limited to ECR repositories. "
            "Object reads are limited to the lifecycle-script bucket's objects.",
            nag_resource(self, "*"),
            *(nag_resource(self, arn) for arn in self._wildcards.values()),
        )


def _ec2_arn(stack: cdk.Stack, resource: str, name: str) -> str:
    return stack.format_arn(service="ec2", resource=resource, resource_name=name)
