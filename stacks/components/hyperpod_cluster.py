"""A SageMaker HyperPod cluster (EKS orchestrator) as a custom resource: handler, provider, roles, request."""

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import boto3
import botocore
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct, IDependable

from config import HyperPodConfig, InstanceGroupConfig
from config.hyperpod import Taint

from ..nag import acknowledge, nag_resource
from .autoscaling_role import AutoscalingClusterRole
from .lifecycle_scripts import LifecycleScripts
from .node_wait import NodeWait
from .polling_provider import PollingProvider

HANDLER_DIR = Path(__file__).resolve().parents[2] / "lambda" / "hyperpod_cluster"
RESOURCE_TYPE = "Custom::HyperPodCluster"
PROPERTY = "ClusterConfig"  # the handler's only property: the CreateCluster request
BUDGET_ENV = "WAIT_BUDGET_SECONDS"  # read by the handler (index.BUDGET_ENV)
# The SDK the request was checked against at synth (requirements.txt pins boto3); the handler names it with
# the Lambda runtime's own when the runtime lacks a member (index.SDK_ENV).
SDK_ENV = "BUILT_WITH_SDK"
BUILT_WITH_SDK = f"boto3 {boto3.__version__}, botocore {botocore.__version__}"
# The wait budget (handler README, "Wait budget"). CloudFormation waits at most an hour for a custom resource
# (ServiceTimeout, set explicitly). The handler fails with its own message once a request has run
# WAIT_BUDGET; the framework's timeout is a backstop just past it. Worst case until CloudFormation hears back:
# on_event (HANDLER_TIMEOUT) + WAIT_BUDGET + one interval + the last is_complete (HANDLER_TIMEOUT) = 55.5 min.
SERVICE_TIMEOUT = cdk.Duration.minutes(60)
QUERY_INTERVAL = cdk.Duration.seconds(30)
WAIT_BUDGET = cdk.Duration.minutes(45)
TOTAL_TIMEOUT = cdk.Duration.minutes(50)
# One invocation makes at most four API calls of at most 250 s each with retries; 300 s covers the usual case
# and lets on_event check for a cluster that a lost create response made (handler README).
HANDLER_TIMEOUT = cdk.Duration.minutes(5)
HYPERPOD_SERVICE = "hyperpod.sagemaker.amazonaws.com"
HYPERPOD_SERVICE_LINKED_ROLE = "AWSServiceRoleForSageMakerHyperPod"
CLUSTER_ACTIONS = [
    "sagemaker:CreateCluster",
    "sagemaker:DescribeCluster",
    "sagemaker:UpdateCluster",
    "sagemaker:DeleteCluster",
    # CreateCluster with Tags is authorised as AddTags as well; retagging uses AddTags/DeleteTags; adopting a
    # cluster after a lost create response reads its owner tags with ListTags.
    "sagemaker:AddTags",
    "sagemaker:DeleteTags",
    "sagemaker:ListTags",
]
# What CreateCluster checks and does in the caller's name for an EKS orchestrator: it reads the cluster and
# network, and creates an access entry for each execution role (HyperPod's cluster-creator permissions).
EC2_DESCRIBE_ACTIONS = ["ec2:DescribeSecurityGroups", "ec2:DescribeSubnets", "ec2:DescribeVpcs"]
ACCESS_ENTRY_ACTIONS = ["eks:DescribeAccessEntry", "eks:DeleteAccessEntry", "eks:AssociateAccessPolicy"]


class HyperPodCluster(Construct):
    """The cluster, created after its execution role and lifecycle scripts exist and deleted before them."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: HyperPodConfig,
        tags: Mapping[str, str],
        eks_cluster: eks.ICluster,
        eks_cluster_name: str,
        security_group: ec2.ISecurityGroup,
        subnets: Sequence[ec2.ISubnet],
        execution_role: iam.IRole,
        lifecycle: LifecycleScripts,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        self._stack = cdk.Stack.of(self)
        # Opt-in autoscaling: the role HyperPod's managed Karpenter adds and removes nodes with.
        self.autoscaling_role = (
            AutoscalingClusterRole(self, "AutoscalingClusterRole") if config.autoscaled_groups else None
        )
        request = cluster_request(
            config,
            tags=tags,
            eks_cluster_arn=eks_cluster.cluster_arn,
            security_group_ids=[security_group.security_group_id],
            subnet_ids=[subnet.subnet_id for subnet in subnets],
            execution_role_arn=execution_role.role_arn,
            source_s3_uri=lifecycle.source_s3_uri,
            on_create=lifecycle.on_create,
            cluster_role_arn=self.autoscaling_role.role.role_arn if self.autoscaling_role else None,
        )
        self.handler_role = self._handler_role(config, eks_cluster, eks_cluster_name, execution_role)
        if self.autoscaling_role:
            self.autoscaling_role.grant_pass(self.handler_role)
        provider = PollingProvider(
            self,
            "Provider",
            handler_dir=HANDLER_DIR,
            role=self.handler_role,
            query_interval=QUERY_INTERVAL,
            total_timeout=TOTAL_TIMEOUT,
            handler_timeout=HANDLER_TIMEOUT,
            log_retention=log_retention,
            environment={BUDGET_ENV: str(WAIT_BUDGET.to_seconds()), SDK_ENV: BUILT_WITH_SDK},
        )
        self.resource = cdk.CustomResource(
            self,
            "Resource",
            service_token=provider.service_token,
            resource_type=RESOURCE_TYPE,
            properties={PROPERTY: request},
            service_timeout=SERVICE_TIMEOUT,
        )
        # CloudFormation deletes in reverse dependency order. These edges keep the execution role (nodes
        # drain and deregister with it), the handler's own permissions and the lifecycle scripts in place
        # until the cluster is gone, and make sure they all exist before CreateCluster boots a node.
        dependencies: list[IDependable] = [execution_role, self.handler_role, lifecycle.deployment]
        if self.autoscaling_role:
            # Karpenter removes nodes with it until the cluster (and its autoscaling) is gone.
            dependencies.append(self.autoscaling_role.role)
        # The bucket's auto-delete resource empties it when deleted: only once the cluster is gone (nodes
        # read their scripts from it while the cluster still runs).
        auto_delete = lifecycle.bucket.node.try_find_child("AutoDeleteObjectsCustomResource")
        if auto_delete is not None:
            dependencies.append(auto_delete)
        for dependency in dependencies:
            self.resource.node.add_dependency(dependency)
        self.cluster_arn = self.resource.get_att_string("ClusterArn")
        self.cluster_name = self.resource.get_att_string("ClusterName")
        # Opt-in: hold the stack until every instance has joined (deep health checks can take hours).
        self.node_wait = (
            NodeWait(
                self,
                "NodeWait",
                cluster=self.resource,
                cluster_name=config.cluster_name,
                waits_for=_waits_for(config),
                handler_dir=HANDLER_DIR,
                timeout=cdk.Duration.minutes(config.node_wait_minutes),
                log_retention=log_retention,
            )
            if config.wait_for_nodes
            else None
        )

    def _handler_role(
        self,
        config: HyperPodConfig,
        eks_cluster: eks.ICluster,
        eks_cluster_name: str,
        execution_role: iam.IRole,
    ) -> iam.Role:
        role = iam.Role(
            self,
            "HandlerRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Creates, updates and deletes one HyperPod cluster for CloudFormation",
        )
        statements = _handler_statements(self._stack, config, eks_cluster, eks_cluster_name, execution_role)
        for statement in statements:
            role.add_to_policy(statement)
        self._acknowledge_handler_role(role, eks_cluster_name)
        return role

    def _acknowledge_handler_role(self, role: iam.Role, eks_cluster_name: str) -> None:
        acknowledge(
            role,
            "AwsSolutions-IAM5",
            "A HyperPod cluster ARN ends in an id that SageMaker generates at creation "
            "(cluster/<id>, not the name), so cluster actions name this account's and region's clusters. "
            "Access entries get EKS-generated ids; they are limited to this EKS cluster's entries. "
            "ec2:Describe* supports no resource-level permissions.",
            nag_resource(self, _sagemaker_clusters(self._stack)),
            nag_resource(self, _access_entries(self._stack, eks_cluster_name)),
            nag_resource(self, "*"),
        )


def _handler_statements(
    stack: cdk.Stack,
    config: HyperPodConfig,
    eks_cluster: eks.ICluster,
    eks_cluster_name: str,
    execution_role: iam.IRole,
) -> list[iam.PolicyStatement]:
    statements = [
        iam.PolicyStatement(sid="Cluster", actions=CLUSTER_ACTIONS, resources=[_sagemaker_clusters(stack)]),
        iam.PolicyStatement(
            sid="PassExecutionRole",
            actions=["iam:PassRole"],
            resources=[execution_role.role_arn],
            conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
        ),
        iam.PolicyStatement(
            sid="EksCluster", actions=["eks:DescribeCluster"], resources=[eks_cluster.cluster_arn]
        ),
        # CreateCluster adds the access entry of the nodes' execution role with the caller's rights: for that
        # one principal only (eks:principalArn), so the handler cannot admit anyone else to the cluster.
        iam.PolicyStatement(
            sid="EksNodeAccessEntry",
            actions=["eks:CreateAccessEntry"],
            resources=[eks_cluster.cluster_arn],
            conditions={"ArnEquals": {"eks:principalArn": execution_role.role_arn}},
        ),
        iam.PolicyStatement(
            sid="EksAccessEntries",
            actions=ACCESS_ENTRY_ACTIONS,
            resources=[_access_entries(stack, eks_cluster_name)],
        ),
        iam.PolicyStatement(sid="DescribeNetwork", actions=EC2_DESCRIBE_ACTIONS, resources=["*"]),
        # The first cluster in an account creates HyperPod's service-linked role.
        iam.PolicyStatement(
            sid="HyperPodServiceLinkedRole",
            actions=["iam:CreateServiceLinkedRole"],
            resources=[
                stack.format_arn(
                    service="iam",
                    region="",
                    resource="role",
                    resource_name=f"aws-service-role/{HYPERPOD_SERVICE}/{HYPERPOD_SERVICE_LINKED_ROLE}",
                )
            ],
            conditions={"StringEquals": {"iam:AWSServiceName": HYPERPOD_SERVICE}},
        ),
    ]
    plans = sorted({group.training_plan_arn for group in config.instance_groups if group.training_plan_arn})
    if plans:
        # A group bound to a training plan is created and resized against that plan's reserved capacity.
        statements.append(
            iam.PolicyStatement(
                sid="TrainingPlans",
                actions=["sagemaker:CreateCluster", "sagemaker:UpdateCluster"],
                resources=plans,
            )
        )
    return statements


def _waits_for(config: HyperPodConfig) -> str:
    """What the node wait waits for: a change to any of it needs a new wait condition."""
    counts = ",".join(f"{group.name}={group.count}" for group in config.instance_groups)
    return f"{config.cluster_name}|{counts}|{config.node_wait_minutes}"


def _sagemaker_clusters(stack: cdk.Stack) -> str:
    return stack.format_arn(service="sagemaker", resource="cluster", resource_name="*")


def _access_entries(stack: cdk.Stack, eks_cluster_name: str) -> str:
    # arn:...:access-entry/<cluster name>/<principal type>/<account>/<principal name>/<uuid>. The name is the
    # fixed one from config, not a cross-stack token, so the cdk-nag finding can be derived from it.
    return stack.format_arn(service="eks", resource="access-entry", resource_name=f"{eks_cluster_name}/*")


def cluster_request(
    config: HyperPodConfig,
    *,
    tags: Mapping[str, str],
    eks_cluster_arn: str,
    security_group_ids: Sequence[str],
    subnet_ids: Sequence[str],
    execution_role_arn: str,
    source_s3_uri: str,
    on_create: str,
    cluster_role_arn: str | None = None,
) -> dict[str, Any]:
    """The CreateCluster request, member names as botocore's SageMaker model spells them."""
    request: dict[str, Any] = {
        "ClusterName": config.cluster_name,
        "InstanceGroups": [
            _instance_group(group, execution_role_arn, source_s3_uri, on_create)
            for group in config.instance_groups
        ],
        "VpcConfig": {"SecurityGroupIds": list(security_group_ids), "Subnets": list(subnet_ids)},
        "Orchestrator": {"Eks": {"ClusterArn": eks_cluster_arn}},
        "NodeRecovery": config.node_recovery,
    }
    if config.node_provisioning_mode:
        request["NodeProvisioningMode"] = config.node_provisioning_mode
    if config.autoscaled_groups:
        request |= autoscaling_request(cluster_role_arn)
    if tags:
        request["Tags"] = [{"Key": key, "Value": value} for key, value in sorted(tags.items())]
    return request


def autoscaling_request(cluster_role_arn: str | None) -> dict[str, Any]:
    """CreateCluster's AutoScaling and ClusterRole for HyperPod's managed Karpenter (AWS docs, "Autoscaling on
    SageMaker HyperPod EKS"); the groups it sizes are the ones the HyperpodNodeClass names."""
    if not cluster_role_arn:
        raise ValueError("autoscaled instance groups need the ClusterRole HyperPod scales them with")
    return {"AutoScaling": {"Mode": "Enable", "AutoScalerType": "Karpenter"}, "ClusterRole": cluster_role_arn}


def _instance_group(
    group: InstanceGroupConfig, execution_role_arn: str, source_s3_uri: str, on_create: str
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "InstanceGroupName": group.name,
        "InstanceType": group.instance_type,
        "InstanceCount": group.count,
        "ExecutionRole": execution_role_arn,
        "ThreadsPerCore": group.threads_per_core,
        "LifeCycleConfig": {"SourceS3Uri": source_s3_uri, "OnCreate": on_create},
        "InstanceStorageConfigs": [{"EbsVolumeConfig": {"VolumeSizeInGB": group.ebs_volume_gb}}],
    }
    if group.deep_health_checks:
        spec["OnStartDeepHealthChecks"] = list(group.deep_health_checks)
    if group.training_plan_arn:
        spec["TrainingPlanArn"] = group.training_plan_arn
    kubernetes = _kubernetes_config(group)
    if kubernetes:
        spec["KubernetesConfig"] = kubernetes
    return spec


def _kubernetes_config(group: InstanceGroupConfig) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if group.labels:
        config["Labels"] = dict(group.labels)
    if group.taints:
        config["Taints"] = [_taint(taint) for taint in group.taints]
    return config


def _taint(taint: Taint) -> dict[str, str]:
    # The API's taint Value has a minimum length of 1: a key-only taint omits it.
    spec = {"Key": taint.key, "Effect": taint.effect}
    if taint.value:
        spec["Value"] = taint.value
    return spec
