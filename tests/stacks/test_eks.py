"""The EKS control plane: version, no own capacity, encryption, logging, add-ons, access and outputs."""

import json

import pytest
from aws_cdk.assertions import Match, Template

from config import load_config
from tests.support.apps import synth_app


@pytest.fixture(scope="module")
def eks(templates) -> Template:
    return Template.from_json(templates["Eks"])


def test_cluster_version_logging_encryption_and_private_endpoint(eks):
    eks.has_resource_properties(
        "AWS::EKS::Cluster",
        {
            "Version": "1.33",
            "AccessConfig": Match.object_like({"AuthenticationMode": "API"}),
            "BootstrapSelfManagedAddons": False,
            "Logging": {
                "ClusterLogging": {
                    "EnabledTypes": [
                        {"Type": t}
                        for t in ("api", "audit", "authenticator", "controllerManager", "scheduler")
                    ]
                }
            },
            "EncryptionConfig": [{"Provider": {"KeyArn": Match.any_value()}, "Resources": ["secrets"]}],
            "ResourcesVpcConfig": Match.object_like(
                {"EndpointPrivateAccess": True, "EndpointPublicAccess": False}
            ),
        },
    )
    eks.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})


def test_no_auto_mode_and_no_node_group(eks):
    cluster = next(iter(eks.find_resources("AWS::EKS::Cluster").values()))["Properties"]
    assert "ComputeConfig" not in cluster or not cluster["ComputeConfig"].get("Enabled")
    eks.resource_count_is("AWS::EKS::Nodegroup", 0)
    eks.resource_count_is("AWS::AutoScaling::AutoScalingGroup", 0)


@pytest.mark.parametrize(
    ("name", "version"),
    [
        ("vpc-cni", "v1.20.1-eksbuild.3"),
        ("kube-proxy", "v1.33.5-eksbuild.2"),
        ("coredns", "v1.12.4-eksbuild.1"),
        ("eks-pod-identity-agent", Match.absent()),
    ],
)
def test_managed_addons(eks, name, version):
    eks.has_resource_properties("AWS::EKS::Addon", {"AddonName": name, "AddonVersion": version})


def test_native_oidc_provider_and_kubectl_layer(eks):
    eks.resource_count_is("AWS::IAM::OIDCProvider", 1)
    eks.resource_count_is("Custom::AWSCDKOpenIdConnectProvider", 0)
    eks.has_resource_properties(
        "AWS::Lambda::LayerVersion", {"Description": Match.string_like_regexp("kubectl")}
    )


def test_outputs(eks):
    outputs = eks.find_outputs("*")
    assert {"ClusterName", "ClusterArn", "UpdateKubeconfigCommand"} <= set(outputs)
    command = outputs["UpdateKubeconfigCommand"]["Value"]["Fn::Join"][1]
    assert command[0] == "aws eks update-kubeconfig --name "


def test_public_endpoint_admins_and_allow_list(tmp_path):
    config = load_config(
        {
            "eks.endpoint_access": "public_and_private",
            "eks.public_access_cidrs": '["203.0.113.0/24"]',
            "eks.admin_principal_arns": '["arn:aws:iam::123456789012:role/Admin"]',
        }
    )
    stacks, _ = synth_app(config, tmp_path)
    eks = Template.from_stack(stacks.eks)
    eks.has_resource_properties(
        "AWS::EKS::Cluster",
        {
            "ResourcesVpcConfig": Match.object_like(
                {"EndpointPublicAccess": True, "PublicAccessCidrs": ["203.0.113.0/24"]}
            )
        },
    )
    (entry,) = eks.find_resources(
        "AWS::EKS::AccessEntry", {"Properties": {"PrincipalArn": "arn:aws:iam::123456789012:role/Admin"}}
    ).values()
    (policy,) = entry["Properties"]["AccessPolicies"]
    assert policy["AccessScope"] == {"Type": "cluster"}
    assert "AmazonEKSClusterAdminPolicy" in json.dumps(policy["PolicyArn"])


def test_control_plane_logs_go_to_a_group_the_stack_owns(eks):
    """EKS would otherwise create the group itself, without retention, and leave it after destroy."""
    (group_id,) = eks.find_resources(
        "AWS::Logs::LogGroup", {"Properties": {"LogGroupName": "/aws/eks/ray-hyperpod-eks/cluster"}}
    )
    eks.has_resource(
        "AWS::Logs::LogGroup", {"Properties": {"RetentionInDays": 30}, "DeletionPolicy": "Delete"}
    )
    (cluster,) = eks.find_resources(
        "AWS::EKS::Cluster", {"Properties": {"Name": "ray-hyperpod-eks"}}
    ).values()
    assert group_id in cluster["DependsOn"]
