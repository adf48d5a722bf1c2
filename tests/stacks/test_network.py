"""The VPC and the node security group, as CloudFormation will create them."""

import pytest
from aws_cdk.assertions import Match, Template

from config import load_config
from tests.support.apps import synth_app


@pytest.fixture(scope="module")
def network(templates) -> Template:
    return Template.from_json(templates["Network"])


def test_vpc_spans_two_azs_with_public_and_private_subnets(network):
    network.has_resource_properties("AWS::EC2::VPC", {"CidrBlock": "10.0.0.0/16"})
    subnets = network.find_resources("AWS::EC2::Subnet")
    public = [s for s in subnets.values() if s["Properties"]["MapPublicIpOnLaunch"]]
    assert len(subnets) == 4 and len(public) == 2
    azs = {str(s["Properties"]["AvailabilityZone"]) for s in subnets.values()}
    assert len(azs) == 2
    # Private subnets get the large share of the range: every pod takes a VPC address.
    private_cidrs = sorted(s["Properties"]["CidrBlock"] for s in subnets.values() if s not in public)
    assert all(cidr.endswith("/18") for cidr in private_cidrs)
    network.resource_count_is("AWS::EC2::NatGateway", 1)


def test_s3_gateway_endpoint_and_flow_logs(network):
    network.has_resource_properties(
        "AWS::EC2::VPCEndpoint",
        {"VpcEndpointType": "Gateway", "ServiceName": Match.object_like({"Fn::Join": Match.any_value()})},
    )
    network.has_resource_properties("AWS::EC2::FlowLog", {"TrafficType": "ALL", "ResourceType": "VPC"})
    network.has_resource(
        "AWS::Logs::LogGroup", {"Properties": {"RetentionInDays": 30}, "DeletionPolicy": "Delete"}
    )


def _self_rules(network: Template) -> list[dict]:
    (group_id,) = network.find_resources(
        "AWS::EC2::SecurityGroup", {"Properties": {"GroupDescription": Match.string_like_regexp("EFA")}}
    )
    rules = network.find_resources("AWS::EC2::SecurityGroupIngress")
    return [
        rule["Properties"]
        for rule in rules.values()
        if rule["Properties"]["GroupId"] == {"Fn::GetAtt": [group_id, "GroupId"]}
        and rule["Properties"]["SourceSecurityGroupId"] == {"Fn::GetAtt": [group_id, "GroupId"]}
    ]


def test_node_security_group_allows_efa_and_lustre_within_itself(network):
    rules = {(r["IpProtocol"], r.get("FromPort"), r.get("ToPort")) for r in _self_rules(network)}
    assert ("-1", None, None) in rules  # EFA: all traffic within the group
    assert {("tcp", 988, 988), ("tcp", 1018, 1023)} <= rules
    network.has_resource_properties(
        "AWS::EC2::SecurityGroup",
        {
            "GroupDescription": Match.string_like_regexp("EFA"),
            "SecurityGroupEgress": [
                {"CidrIp": "0.0.0.0/0", "IpProtocol": "-1", "Description": Match.any_value()}
            ],
        },
    )


VPC_ID = "vpc-0123456789abcdef0"
# What `cdk synth` caches in cdk.context.json after looking the VPC up with credentials.
LOOKUP_KEY = (
    f"vpc-provider:account=123456789012:filter.vpc-id={VPC_ID}:region=us-west-2:returnAsymmetricSubnets=true"
)
VPC_LOOKUP = {
    LOOKUP_KEY: {
        "vpcId": VPC_ID,
        "vpcCidrBlock": "10.20.0.0/16",
        "ownerAccountId": "123456789012",
        "availabilityZones": [],
        "subnetGroups": [
            {
                "name": kind,
                "type": kind,
                "subnets": [
                    {
                        "subnetId": f"subnet-0{kind.lower()[:3]}{az}000000000000",
                        "cidr": f"10.20.{16 * i + (0 if kind == 'Private' else 8)}.0/21",
                        "availabilityZone": f"us-west-2{az}",
                        "routeTableId": f"rtb-0{kind.lower()[:3]}{az}00000000000",
                    }
                    for i, az in enumerate("ab")
                ],
            }
            for kind in ("Public", "Private")
        ],
    }
}


def test_existing_vpc_is_imported_not_created(tmp_path):
    config = load_config(
        {"env.account": "123456789012", "env.region": "us-west-2", "network.existing_vpc_id": VPC_ID}
    )
    stacks, _ = synth_app(config, tmp_path, extra_context=VPC_LOOKUP)
    network = Template.from_stack(stacks.network)
    network.resource_count_is("AWS::EC2::VPC", 0)
    network.has_resource_properties("AWS::EC2::FlowLog", {"ResourceId": VPC_ID})
    eks = Template.from_stack(stacks.eks)
    eks.has_resource_properties(
        "AWS::EKS::Cluster",
        {
            "ResourcesVpcConfig": Match.object_like(
                {"SubnetIds": ["subnet-0pria000000000000", "subnet-0prib000000000000"]}
            )
        },
    )
