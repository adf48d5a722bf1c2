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
from k8s_charts.namespace import NamespaceChart, namespace_pod_security

from .components.fsx_cleanup import FsxCleanup
from .components.hyperpod_dependencies.recipe import taint_tolerations
from .components.hyperpod_dependencies.release import HyperPodDependencies
from .kubernetes import ChartDeployer
from .nag import acknowledge, nag_resource
from .retention import retention

KUBERAY_REPOSITORY = "https://ray-project.github.io/kuberay-helm/"
FSX_CSI_REPOSITORY = "https://kubernetes-sigs.github.io/aws-fsx-csi-driver"
FSX_CSI_SERVICE_ACCOUNT = "fsx-csi-controller-sa"
FSX_SERVICE = "fsx.amazonaws.com"
FSX_SERVICE_LINKED_ROLE = "AWSServiceRoleForAmazonFSx"
# Read-only calls the controller makes in every mode; none supports resource-level permissions.
FSX_CSI_DESCRIBE_ACTIONS = ("fsx:DescribeFileSystems",)
FSX_CSI_DYNAMIC_DESCRIBE_ACTIONS = ("ec2:DescribeSubnets", "ec2:DescribeSecurityGroups", "ec2:DescribeVpcs")


class PlatformStack(cdk.Stack):
    """Cluster-wide software (HyperPod dependency chart, FSx CSI driver, KubeRay operator): its own stack so
    that HyperPod can wait for it and the Ray stack is always destroyed before it (module docstring)."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: AppConfig, cluster: eks.Cluster, **kwargs
    ):
        super().__init__(scope, construct_id, **kwargs)
        self.cluster = cluster
        self.deployer = ChartDeployer(self, self.cluster)
        # HyperPod requires its agents and device plugins before the cluster is created (HyperPodStack
        # depends on this stack); they are removed only after the HyperPod cluster is gone.
        self.hyperpod_dependencies = HyperPodDependencies(
            self,
            "HyperPodDependencies",
            cluster=self.cluster,
            config=config.hyperpod.dependency_chart,
            log_retention=retention(config.log_retention_days),
            values=taint_tolerations(t for group in config.hyperpod.instance_groups for t in group.taints),
        )
        self.kuberay_operator = self._kuberay(config)
        self.fsx_csi_driver = self._fsx_csi_driver(config)

    def _kuberay(self, config: AppConfig) -> eks.HelmChart:
        namespace = self.deployer.apply(
            "KuberayNamespace",
            NamespaceChart(
                self.deployer.app,
                "kuberay-namespace",
                name=config.kuberay.namespace,
                enforce=namespace_pod_security(config)[config.kuberay.namespace],
            ),
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
        if config.storage.mode != "dynamic":
            self._grant_describe(service_account.role)
        else:
            self._grant_file_system_lifecycle(service_account.role, config.dynamic_fsx_tag)
            cleanup = FsxCleanup(
                self,
                "FsxCleanup",
                tag=config.dynamic_fsx_tag,
                log_retention=retention(config.log_retention_days),
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

    def _grant_describe(self, role: iam.IRole) -> None:
        """Static mode: the controller only polls DescribeFileSystems (every minute, in every mode)."""
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=list(FSX_CSI_DESCRIBE_ACTIONS), resources=["*"])
        )
        acknowledge(
            role,
            "AwsSolutions-IAM5",
            "fsx:DescribeFileSystems has no resource-level permissions; it reads metadata only.",
            nag_resource(self, "*"),
        )

    def _grant_file_system_lifecycle(self, role: iam.IRole, tag: tuple[str, str]) -> None:
        """Dynamic mode: create, tag, update and delete file systems, but only this deployment's.

        The StorageClass puts `tag` on every file system it creates (extraTags), so a create or tag request
        must carry it (aws:RequestTag) and an update or delete must target a file system that has it
        (aws:ResourceTag): the role cannot touch any other file system in the account.

        Residual risk, documented rather than hidden: tag-on-create is authorized as fsx:TagResource, and no
        FSx condition key verified here (the service authorization reference lists none like EFS's
        `elasticfilesystem:CreateAction`) separates that from a later TagResource call. So this role could
        put this deployment's tag on an existing file system and then delete it. It is the CSI controller's
        IRSA role only; the tag key is reserved from user `tags` (config/app.py DEPLOYMENT_TAG_KEY), so no
        deployment's own resources carry another deployment's tag.
        """
        key, value = tag
        file_systems = self.format_arn(service="fsx", resource="file-system", resource_name="*")
        service_linked_role = self.format_arn(
            service="iam",
            region="",
            resource="role",
            resource_name=f"aws-service-role/{FSX_SERVICE}/{FSX_SERVICE_LINKED_ROLE}",
        )
        statements = [
            iam.PolicyStatement(
                actions=["fsx:CreateFileSystem", "fsx:TagResource"],
                resources=[file_systems],
                conditions={"StringEquals": {f"aws:RequestTag/{key}": value}},
            ),
            iam.PolicyStatement(
                actions=["fsx:DeleteFileSystem", "fsx:UpdateFileSystem"],
                resources=[file_systems],
                conditions={"StringEquals": {f"aws:ResourceTag/{key}": value}},
            ),
            iam.PolicyStatement(
                actions=[*FSX_CSI_DESCRIBE_ACTIONS, *FSX_CSI_DYNAMIC_DESCRIBE_ACTIONS], resources=["*"]
            ),
            # FSx creates its service-linked role on the first file system of an account.
            iam.PolicyStatement(
                actions=["iam:CreateServiceLinkedRole"],
                resources=[service_linked_role],
                conditions={"StringEquals": {"iam:AWSServiceName": FSX_SERVICE}},
            ),
        ]
        for statement in statements:
            role.add_to_principal_policy(statement)
        acknowledge(
            role,
            "AwsSolutions-IAM5",
            "Dynamic provisioning creates file systems whose ids are unknown until a PVC exists: "
            "file-system/* is narrowed to this deployment's tag (aws:RequestTag on create and tag, "
            "aws:ResourceTag on update and delete); Describe* calls have no resource-level permissions.",
            nag_resource(self, file_systems),
            nag_resource(self, "*"),
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
