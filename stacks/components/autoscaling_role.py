"""The ClusterRole HyperPod assumes to add and remove nodes for its managed Karpenter (opt-in autoscaling).

Its permissions are exactly the ones AWS documents ("Create an IAM role for HyperPod autoscaling with
Karpenter"), conditions included; tests/components/test_autoscaling_role.py compares them statement by
statement with the documented policy, committed as test data.
"""

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from constructs import Construct

from ..nag import acknowledge, nag_resource

HYPERPOD_SERVICE = "hyperpod.sagemaker.amazonaws.com"
NODE_ACTIONS = ["sagemaker:BatchAddClusterNodes", "sagemaker:BatchDeleteClusterNodes"]
KMS_ACTIONS = ["kms:CreateGrant", "kms:DescribeKey"]
# What a grant HyperPod creates for a node's EBS volumes may do with a customer managed key.
GRANT_OPERATIONS = [
    "CreateGrant",
    "Decrypt",
    "DescribeKey",
    "GenerateDataKeyWithoutPlaintext",
    "ReEncryptTo",
    "ReEncryptFrom",
    "RetireGrant",
]
# CreateCluster/UpdateCluster pass the role to SageMaker; the role itself is trusted by HyperPod's principal.
# Which of the two IAM checks as iam:PassedToService is not documented: both are allowed, for this role only.
PASSED_TO = ["sagemaker.amazonaws.com", HYPERPOD_SERVICE]


def _any_cluster() -> str:
    # As documented: any region and account, held to the caller's account by the aws:ResourceAccount condition
    # (the cluster's ARN ends in an id SageMaker generates, so it cannot be named in advance).
    return _wildcard_arn("sagemaker", "cluster")


def _any_key() -> str:
    # As documented: any key, used only through SageMaker for grants on AWS resources (the conditions).
    return _wildcard_arn("kms", "key")


def _wildcard_arn(service: str, resource: str) -> str:
    components = cdk.ArnComponents(
        partition=cdk.Aws.PARTITION,
        service=service,
        resource=resource,
        resource_name="*",
        region="*",
        account="*",
    )
    return cdk.Arn.format(components)


def autoscaling_statements() -> list[iam.PolicyStatement]:
    """The documented permissions, in the documented order."""
    return [
        iam.PolicyStatement(
            sid="AddAndRemoveClusterNodes",
            actions=NODE_ACTIONS,
            resources=[_any_cluster()],
            conditions={"StringEquals": {"aws:ResourceAccount": "${aws:PrincipalAccount}"}},
        ),
        iam.PolicyStatement(
            sid="EncryptNodeVolumes",
            actions=KMS_ACTIONS,
            resources=[_any_key()],
            conditions={
                "StringLike": {"kms:ViaService": "sagemaker.*.amazonaws.com"},
                "Bool": {"kms:GrantIsForAWSResource": "true"},
                "ForAllValues:StringEquals": {"kms:GrantOperations": GRANT_OPERATIONS},
            },
        ),
    ]


class AutoscalingClusterRole(Construct):
    """The CreateCluster `ClusterRole`: HyperPod's managed Karpenter scales instance groups through it."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal(HYPERPOD_SERVICE),
            description="HyperPod autoscaling (Karpenter): adds and removes cluster nodes",
        )
        for statement in autoscaling_statements():
            self.role.add_to_policy(statement)
        acknowledge(
            self.role,
            "AwsSolutions-IAM5",
            "Exactly the policy AWS documents for HyperPod autoscaling: cluster ARNs end in a generated id "
            "and are held to this account by aws:ResourceAccount; KMS keys are usable only via SageMaker, "
            "for grants on AWS resources, with the listed grant operations.",
            nag_resource(self, _any_cluster()),
            nag_resource(self, _any_key()),
        )

    def grant_pass(self, grantee: iam.IGrantable) -> None:
        """Let `grantee` (the cluster handler) name this role in CreateCluster and UpdateCluster."""
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                sid="PassAutoscalingClusterRole",
                actions=["iam:PassRole"],
                resources=[self.role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": PASSED_TO}},
            )
        )
