"""A Kubernetes Secret filled from Secrets Manager by this app's own handler (lambda/k8s_secret).

CloudFormation never sees the value: the custom resource's properties name the secret's ARN only. The
handler runs in the VPC (the EKS endpoint may be private), as a role that reads this one secret, writes its
own log group and, through an EKS access entry mapped to a Kubernetes group, may read, replace and delete
this one Secret (RBAC `resourceNames`) and create Secrets in this one namespace (RBAC cannot limit `create`
by name: the residual right). No EKS access policy: AmazonEKSEditPolicy gives every object in the namespace.
"""

from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks as eks_v1
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import custom_resources as cr
from constructs import Construct

from ..nag import acknowledge, managed_policy, nag_resource
from .runtime import HANDLER_RUNTIME

HANDLER_DIR = Path(__file__).resolve().parents[2] / "lambda" / "k8s_secret"
# What a function in a VPC needs to create and remove its network interfaces; EC2 offers no resource-level
# permissions for these (hence Resource *).
VPC_ENI_ACTIONS = [
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
]


class KubernetesSecretFromSecretsManager(Construct):
    """The Secret `namespace/name` with one key `key` holding the secret's string value."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        cluster: eks.ICluster,
        secret: secretsmanager.ISecret,
        namespace: str,
        name: str,
        key: str,
        subnets: list[ec2.ISubnet],
        security_group: ec2.ISecurityGroup,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
        role.add_to_policy(iam.PolicyStatement(actions=VPC_ENI_ACTIONS, resources=["*"]))
        role.add_to_policy(
            iam.PolicyStatement(actions=["eks:DescribeCluster"], resources=[cluster.cluster_arn])
        )
        secret.grant_read(role)
        log_group = logs.LogGroup(
            self, "Logs", retention=log_retention, removal_policy=cdk.RemovalPolicy.DESTROY
        )
        # Its own log group only (CreateLogStream, PutLogEvents): without it the handler logs nothing.
        log_group.grant_write(role)
        handler = lambda_.Function(
            self,
            "Handler",
            runtime=HANDLER_RUNTIME,
            code=lambda_.Code.from_asset(str(HANDLER_DIR), exclude=["__pycache__", "*.pyc"]),
            handler="index.on_event",
            role=role,
            timeout=cdk.Duration.minutes(2),
            memory_size=256,
            log_group=log_group,
            vpc=cluster.vpc,
            vpc_subnets=ec2.SubnetSelection(subnets=subnets),
            security_groups=[security_group],
        )
        access = _writer_access(self, cluster, role, namespace=namespace, name=name)
        provider = cr.Provider(
            self,
            "Provider",
            on_event_handler=handler,
            log_group=logs.LogGroup(
                self, "ProviderLogs", retention=log_retention, removal_policy=cdk.RemovalPolicy.DESTROY
            ),
        )
        self.resource = cdk.CustomResource(
            self,
            "Resource",
            service_token=provider.service_token,
            resource_type="Custom::KubernetesSecretFromSecretsManager",
            properties={
                "ClusterName": cluster.cluster_name,
                "SecretArn": secret.secret_arn,
                "Namespace": namespace,
                "Name": name,
                "Key": key,
            },
        )
        # The handler authenticates through the access entry: it exists before the first call and is
        # removed only after the Secret is deleted.
        self.resource.node.add_dependency(*access)
        self._acknowledge(role, handler, provider)

    def _acknowledge(self, role: iam.Role, handler: lambda_.Function, provider: cr.Provider) -> None:
        acknowledge(
            role,
            "AwsSolutions-IAM5",
            "A function in a VPC manages its own network interfaces; EC2 has no resource-level permissions "
            "for these actions.",
            "Resource::*",
        )
        acknowledge(
            provider,
            "AwsSolutions-IAM4",
            "CDK's provider framework function logs through the AWS managed Lambda logging policy that CDK "
            "attaches to its role.",
            managed_policy("service-role/AWSLambdaBasicExecutionRole"),
        )
        acknowledge(
            provider,
            "AwsSolutions-IAM5",
            "The framework invokes any version (<arn>:*) of this construct's own handler, nothing else.",
            nag_resource(self, f"{handler.function_arn}:*"),
        )


def _writer_access(
    scope: Construct, cluster: eks.ICluster, role: iam.Role, *, namespace: str, name: str
) -> list[Construct]:
    """An access entry mapping `role` to a Kubernetes group, and the Role and RoleBinding that let that group
    write the one Secret `namespace/name`; returns both, for the custom resource to depend on (created
    before its first call, removed after the Secret is deleted)."""
    group = f"{name}-secret-writer"
    secrets = {"apiGroups": [""], "resources": ["secrets"]}
    rbac = eks.KubernetesManifest(
        scope,
        "WriterRbac",
        cluster=cluster,
        manifest=[
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": group, "namespace": namespace},
                "rules": [
                    # RBAC checks `create` before the object has a name: it cannot be narrowed to one.
                    {**secrets, "verbs": ["create"]},
                    {**secrets, "resourceNames": [name], "verbs": ["get", "update", "delete"]},
                ],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": group, "namespace": namespace},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": group},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}],
            },
        ],
    )
    # The L1 resource: aws_eks_v2.AccessEntry takes access policies only, not Kubernetes groups.
    access = eks_v1.CfnAccessEntry(
        scope,
        "Access",
        cluster_name=cluster.cluster_name,
        principal_arn=role.role_arn,
        kubernetes_groups=[group],
        type="STANDARD",
    )
    return [rbac, access]
