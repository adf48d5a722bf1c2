"""The IAM role HyperPod instances run as: node agent, VPC CNI, image pulls, Pod Identity, scripts."""

import aws_cdk as cdk
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from ..nag import acknowledge, managed_policy, nag_resource

INSTANCE_POLICY = "AmazonSageMakerClusterInstanceRolePolicy"
# The VPC CNI's own policy, attached by AWS's HyperPod EKS execution role (awsome-distributed-training
# sagemaker-iam-role-stack.yaml) next to the network actions below.
CNI_POLICY = "AmazonEKS_CNI_Policy"
# The sample's network actions, on "*" as it grants them. HyperPod instances live in a service account and
# reach this VPC through cross-account ENIs; a narrower grant that the service needs would show only on a
# live node (pods without IPs) while the stack reports success. Narrow it once a real node shows less works.
NETWORK_ACTIONS = [
    "ec2:AssignPrivateIpAddresses",
    "ec2:CreateNetworkInterface",
    "ec2:CreateNetworkInterfacePermission",
    "ec2:DeleteNetworkInterface",
    "ec2:DeleteNetworkInterfacePermission",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeVpcs",
    "ec2:DescribeDhcpOptions",
    "ec2:DescribeSubnets",
    "ec2:DescribeSecurityGroups",
    "ec2:DetachNetworkInterface",
    "ec2:ModifyNetworkInterfaceAttribute",
    "ec2:UnassignPrivateIpAddresses",
]
IMAGE_PULL_ACTIONS = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]


class NodeExecutionRole(Construct):
    """The instance groups' ExecutionRole, assumed by SageMaker on behalf of each node."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        cluster: eks.ICluster,
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
            managed_policies=[
                iam.ManagedPolicy.from_aws_managed_policy_name(INSTANCE_POLICY),
                iam.ManagedPolicy.from_aws_managed_policy_name(CNI_POLICY),
            ],
        )
        stack = cdk.Stack.of(self)
        # Every wildcard resource the policy uses, named once: the policy and its cdk-nag acknowledgment
        # share these values, so a wildcard added later without a reason still fails cdk-nag.
        self._wildcards = {
            # As the sample names it: any region and account (HyperPod's ENIs are in its service account).
            "network_interfaces": f"arn:{stack.partition}:ec2:*:*:network-interface/*",
            "repositories": f"arn:{stack.partition}:ecr:*:*:repository/*",
            "scripts": lifecycle_bucket.arn_for_objects("*"),
        }
        for statement in self._statements(cluster, lifecycle_bucket):
            self.role.add_to_policy(statement)
        self._acknowledge()

    def _statements(self, cluster: eks.ICluster, bucket: s3.IBucket) -> list[iam.PolicyStatement]:
        wild = self._wildcards
        return [
            iam.PolicyStatement(sid="HyperPodNetwork", actions=NETWORK_ACTIONS, resources=["*"]),
            iam.PolicyStatement(
                sid="VpcCniTagEni", actions=["ec2:CreateTags"], resources=[wild["network_interfaces"]]
            ),
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
            "AwsSolutions-IAM4",
            "AWS's HyperPod EKS execution role attaches AmazonEKS_CNI_Policy: the VPC CNI on each node "
            "assigns pod IPs through it; HyperPod's cross-account ENIs are not in this account, so a "
            "scoped copy could deny the CNI on a live node only.",
            managed_policy(CNI_POLICY),
        )
        acknowledge(
            self.role,
            "AwsSolutions-IAM5",
            "The network actions are granted on * as AWS's HyperPod EKS execution role grants them "
            "(awsome-distributed-training sagemaker-iam-role-stack.yaml): HyperPod nodes reach the VPC "
            "through ENIs in HyperPod's service account, whose ARNs no policy here can name; EC2 Describe* "
            "and ecr:GetAuthorizationToken support no resource-level permissions; ENI tagging is limited to "
            "network interfaces, as in the sample. Images come from "
            "AWS-owned EKS add-on registries and the user's own, so pulls are limited to ECR repositories. "
            "Object reads are limited to the lifecycle-script bucket's objects.",
            nag_resource(self, "*"),
            *(nag_resource(self, arn) for arn in self._wildcards.values()),
        )
