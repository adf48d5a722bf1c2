"""The EKS control plane that orchestrates HyperPod: no worker capacity of its own, HyperPod provides it."""

from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_logs as logs
from aws_cdk.lambda_layer_kubectl_v33 import KubectlV33Layer
from constructs import Construct

from config import EksConfig

from .components.keys import encryption_key
from .nag import acknowledge, managed_policy, nag_policy, nag_resource
from .retention import days

NO_ADMIN_WARNING = "ray-hyperpod:eks-no-admin-principal"  # id for `cdk.Annotations.acknowledge_warning`
# The VPC CNI enforces NetworkPolicies only with its network policy agent on (k8s_charts/network_policy.py).
ADDON_CONFIGURATION: dict[str, dict] = {"vpc-cni": {"enableNetworkPolicy": "true"}}


@dataclass(frozen=True)
class ClusterAccess:
    """What a stack needs to put workloads on the cluster and resources beside its nodes: the cluster, its
    fixed name, the private subnets, the node security group and the one subnet HyperPod nodes use."""

    cluster: eks.Cluster
    # Fixed from config: a stack may name the cluster without a cross-stack reference.
    cluster_name: str
    private_subnets: ec2.SelectedSubnets
    node_security_group: ec2.ISecurityGroup
    compute_subnet: ec2.ISubnet


class EksStack(cdk.Stack):
    """EKS cluster with encrypted secrets, full control-plane logging, managed add-ons and admin access."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EksConfig,
        vpc: ec2.IVpc,
        private_subnets: ec2.SelectedSubnets,
        node_security_group: ec2.ISecurityGroup,
        cluster_name: str,
        log_retention: logs.RetentionDays,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.cluster_name = cluster_name  # fixed from config: other stacks may name it without a reference
        self.cluster = self._cluster(config, vpc, private_subnets, node_security_group, cluster_name)
        self._control_plane_logs(cluster_name, log_retention)
        self._kubectl_provider_logs(log_retention)
        self.addons = self._addons(config)
        self._admin_access(config)
        # Touching the provider creates it now (a native AWS::IAM::OIDCProvider, see cdk.json): IRSA roles in
        # later stacks reference it instead of each creating their own.
        self.oidc_provider = self.cluster.open_id_connect_provider
        self._outputs()
        self._acknowledge_cdk_internals()

    def _cluster(
        self,
        config: EksConfig,
        vpc: ec2.IVpc,
        private_subnets: ec2.SelectedSubnets,
        node_security_group: ec2.ISecurityGroup,
        cluster_name: str,
    ) -> eks.Cluster:
        secrets_key = encryption_key(self, "SecretsKey", "Envelope encryption of Kubernetes secrets")
        return eks.Cluster(
            self,
            "Cluster",
            version=eks.KubernetesVersion.of(config.version),
            # A fixed name, so that the control-plane log group below can exist before the cluster does.
            cluster_name=cluster_name,
            vpc=vpc,
            vpc_subnets=[ec2.SubnetSelection(subnets=private_subnets.subnets)],
            # HyperPod nodes share this group with the control plane: one self-referencing group gives EFA,
            # kubelet and API traffic without cross-group rules to keep in sync.
            security_group=node_security_group,
            endpoint_access=_endpoint_access(config),
            # Not Auto Mode and no node group: HyperPod instance groups are the cluster's only nodes.
            default_capacity_type=eks.DefaultCapacityType.NODEGROUP,
            default_capacity=0,
            # The managed add-ons below replace the self-managed defaults; installing both would conflict.
            bootstrap_self_managed_addons=False,
            cluster_logging=list(eks.ClusterLoggingTypes),
            secrets_encryption_key=secrets_key,
            output_config_command=False,
            kubectl_provider_options=eks.KubectlProviderOptions(
                kubectl_layer=KubectlV33Layer(self, "KubectlLayer"),
                # In the VPC so that it reaches a private-only API endpoint.
                private_subnets=private_subnets.subnets,
            ),
        )

    def _control_plane_logs(self, cluster_name: str, log_retention: logs.RetentionDays) -> None:
        """Own the group EKS writes control-plane logs to: with retention, and deleted by `cdk destroy`.

        Left to EKS, the group is created on first write, never expires and outlives the stack.
        """
        group = logs.LogGroup(
            self,
            "ControlPlaneLogs",
            log_group_name=f"/aws/eks/{cluster_name}/cluster",
            retention=log_retention,
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        # Created before the cluster starts logging; deleted only after the cluster is gone.
        self.cluster.node.default_child.node.add_dependency(group)

    def _kubectl_provider_logs(self, log_retention: logs.RetentionDays) -> None:
        """CDK gives the kubectl provider's own log groups two years, with no option to change it: set the
        app's one retention on them too."""
        kubectl = self.cluster.node.find_child("KubectlProvider")
        for child in kubectl.node.find_all():
            if isinstance(child, logs.CfnLogGroup):
                child.retention_in_days = days(log_retention)

    def _addons(self, config: EksConfig) -> list[eks.Addon]:
        return [
            eks.Addon(
                self,
                f"Addon-{name}",
                cluster=self.cluster,
                addon_name=name,
                addon_version=version,
                preserve_on_delete=False,
                configuration_values=ADDON_CONFIGURATION.get(name),
            )
            for name, version in config.addon_versions.items()
        ]

    def _admin_access(self, config: EksConfig) -> None:
        """Cluster-admin access entries for the configured people; a warning (not a failure) when none are.

        The stack's own roles (kubectl provider, HyperPod) get their entries elsewhere; a person gets none by
        default, and without one kubectl, port-forward and `make status/submit` are refused by the cluster.
        """
        for index, arn in enumerate(config.admin_principal_arns):
            self.cluster.grant_cluster_admin(f"Admin{index}", arn)
        if not config.admin_principal_arns:
            cdk.Annotations.of(self).add_warning_v2(
                NO_ADMIN_WARNING,
                "eks.admin_principal_arns is empty: no person will have access to the cluster (kubectl, "
                "make status/submit). Add your IAM role ARN (`make preflight` prints it).",
            )

    def _outputs(self) -> None:
        cdk.CfnOutput(self, "ClusterName", value=self.cluster.cluster_name)
        cdk.CfnOutput(self, "ClusterArn", value=self.cluster.cluster_arn)
        cdk.CfnOutput(
            self,
            "UpdateKubeconfigCommand",
            value=f"aws eks update-kubeconfig --name {self.cluster.cluster_name} --region {self.region}",
        )

    def _acknowledge_cdk_internals(self) -> None:
        """Findings on roles and functions that aws_eks_v2 creates itself and does not let us shape."""
        acknowledge(
            self.cluster.role,
            "AwsSolutions-IAM4",
            "The EKS service role needs AmazonEKSClusterPolicy; EKS documents no narrower policy.",
            managed_policy("AmazonEKSClusterPolicy"),
        )
        kubectl = self.cluster.node.find_child("KubectlProvider")
        handler = kubectl.node.find_child("Handler")
        # Derived from the role itself: CDK adds the ECR Public policy behind a condition (Fn::If).
        policies = self.resolve(handler.role.node.default_child.managed_policy_arns)
        acknowledge(
            kubectl,
            "AwsSolutions-IAM4",
            "CDK's kubectl provider: Lambda logging and ENI management (it runs in the VPC) and image pulls "
            "for its layer use the AWS managed policies that CDK attaches.",
            *(nag_policy(self, arn) for arn in policies),
        )
        acknowledge(
            kubectl,
            "AwsSolutions-IAM5",
            "The provider framework invokes any version of its own handler function (<arn>:*), nothing else.",
            nag_resource(self, f"{handler.function_arn}:*"),
        )
        acknowledge(
            kubectl,
            "AwsSolutions-L1",
            "CDK pins the kubectl handler's runtime to the one its kubectl layer is built and tested for.",
        )


def _endpoint_access(config: EksConfig) -> eks.EndpointAccess:
    if config.endpoint_access == "private":
        return eks.EndpointAccess.PRIVATE
    return eks.EndpointAccess.PUBLIC_AND_PRIVATE.only_from(*map(str, config.public_access_cidrs))
