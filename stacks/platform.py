"""Cluster-wide software that needs only EKS: the HyperPod dependency chart, the FSx CSI driver and the
KubeRay operator.

Being its own stack, it installs while HyperPod is still provisioning nodes (Helm releases are applied
without waiting for pods), and it is destroyed only after the Ray stack has removed every RayCluster and PVC.
"""

import aws_cdk as cdk
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from constructs import Construct

from config import AppConfig
from k8s_charts.namespace import NamespaceChart

from .components.fsx_cleanup import FsxCleanup
from .components.hyperpod_dependencies import HyperPodDependencies
from .eks import EksStack
from .kubernetes import ChartDeployer
from .nag import acknowledge
from .retention import retention

KUBERAY_REPOSITORY = "https://ray-project.github.io/kuberay-helm/"
FSX_CSI_REPOSITORY = "https://kubernetes-sigs.github.io/aws-fsx-csi-driver"
FSX_CSI_SERVICE_ACCOUNT = "fsx-csi-controller-sa"


class PlatformStack(cdk.Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: AppConfig, eks_stack: EksStack, **kwargs
    ):
        super().__init__(scope, construct_id, **kwargs)
        self.cluster = eks_stack.cluster
        self.deployer = ChartDeployer(self, self.cluster)
        # HyperPod requires its agents and device plugins before the cluster is created (HyperPodStack
        # depends on this stack); they are removed only after the HyperPod cluster is gone.
        self.hyperpod_dependencies = HyperPodDependencies(
            self, "HyperPodDependencies", cluster=self.cluster, config=config.hyperpod.dependency_chart
        )
        self.kuberay_operator = self._kuberay(config)
        self.fsx_csi_driver = self._fsx_csi_driver(config)

    def _kuberay(self, config: AppConfig) -> eks.HelmChart:
        namespace = self.deployer.apply(
            "KuberayNamespace",
            NamespaceChart(self.deployer.app, "kuberay-namespace", name=config.kuberay.namespace),
        )
        operator = eks.HelmChart(
            self,
            "KuberayOperator",
            cluster=self.cluster,
            chart="kuberay-operator",
            repository=KUBERAY_REPOSITORY,
            version=config.kuberay.operator_chart_version,
            release="kuberay-operator",
            namespace=config.kuberay.namespace,
            # The namespace is its own manifest: Helm would never delete a namespace it created.
            create_namespace=False,
            # No node exists until HyperPod has provisioned one; waiting for pods would stall the deploy.
            wait=False,
        )
        # Helm needs the namespace to install into; on destroy the release goes before its namespace.
        operator.node.add_dependency(namespace)
        return operator

    def _fsx_csi_driver(self, config: AppConfig) -> eks.HelmChart:
        service_account = eks.ServiceAccount(
            self,
            "FsxCsiControllerServiceAccount",
            cluster=self.cluster,
            name=FSX_CSI_SERVICE_ACCOUNT,
            namespace="kube-system",
            identity_type=eks.IdentityType.IRSA,
        )
        _lint_irsa_condition(service_account)
        if config.storage.mode == "dynamic":
            self._grant_file_system_lifecycle(service_account.role)
            cleanup = FsxCleanup(
                self,
                "FsxCleanup",
                tag=config.dynamic_fsx_tag,
                log_retention=retention(config.eks.log_retention_days),
            )
        driver = eks.HelmChart(
            self,
            "FsxCsiDriver",
            cluster=self.cluster,
            chart="aws-fsx-csi-driver",
            repository=FSX_CSI_REPOSITORY,
            version=config.storage.csi_driver_chart_version,
            release="aws-fsx-csi-driver",
            namespace="kube-system",
            values={
                "controller": {
                    "serviceAccount": {"create": False, "name": FSX_CSI_SERVICE_ACCOUNT},
                    # Explicit: the controller would otherwise ask the instance metadata service, which
                    # a hop limit or IMDSv2-only node can refuse.
                    "region": self.region,
                }
            },
            wait=False,
        )
        # The controller must start with its IRSA-annotated account; on destroy the driver goes first.
        driver.node.add_dependency(service_account)
        if config.storage.mode == "dynamic":
            # Deleted after the driver: catches a file system whose asynchronous deletion the driver had not
            # started or finished when it was removed (the most common thing left behind by teardown).
            driver.node.add_dependency(cleanup)
        return driver

    def _grant_file_system_lifecycle(self, role: iam.IRole) -> None:
        """What the controller needs to create and delete file systems for PVCs (dynamic mode only)."""
        file_systems = self.format_arn(service="fsx", resource="file-system", resource_name="*")
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=[
                    "fsx:CreateFileSystem",
                    "fsx:DeleteFileSystem",
                    "fsx:UpdateFileSystem",
                    "fsx:TagResource",
                ],
                resources=[file_systems],
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=[
                    "fsx:DescribeFileSystems",
                    "ec2:DescribeSubnets",
                    "ec2:DescribeSecurityGroups",
                    "ec2:DescribeVpcs",
                ],
                resources=["*"],
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["iam:CreateServiceLinkedRole"],
                resources=[f"arn:{self.partition}:iam::{self.account}:role/aws-service-role/*"],
                conditions={"StringEquals": {"iam:AWSServiceName": "fsx.amazonaws.com"}},
            )
        )
        acknowledge(
            role,
            "AwsSolutions-IAM5",
            "Dynamic provisioning creates file systems whose ids are unknown until the PVC exists; Describe* "
            "calls do not support resource-level permissions; FSx creates its service-linked role once.",
            "Resource::arn:<AWS::Partition>:fsx:<AWS::Region>:<AWS::AccountId>:file-system/*",
            "Resource::*",
            "Resource::arn:<AWS::Partition>:iam::<AWS::AccountId>:role/aws-service-role/*",
        )


def _lint_irsa_condition(service_account: eks.ServiceAccount) -> None:
    """Silence one cfn-lint false positive on exactly the resource that triggers it.

    CDK builds the IRSA trust condition with Fn::Split over the OIDC provider's ARN, which arrives through
    Fn::GetStackOutput (weak cross-stack references). cfn-lint 1.58 does not know that this intrinsic yields
    a string and reports E1022; CloudFormation accepts it.
    """
    condition = (
        service_account.node.find_child("ConditionJson").node.find_child("Resource").node.default_child
    )
    condition.add_metadata("cfn-lint", {"config": {"ignore_checks": ["E1022"]}})
