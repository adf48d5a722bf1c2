"""The VPC and the node security group, as CloudFormation will create them."""

import pytest
from aws_cdk.assertions import Match, Template


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
