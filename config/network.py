"""The VPC: address space, availability zones, NAT and flow logs."""

import re
from ipaddress import IPv4Network

from pydantic import Field, field_validator, model_validator

from .base import Section, check_log_retention

VPC_ID = re.compile(r"^vpc-[0-9a-f]{8}([0-9a-f]{9})?$")


class NetworkConfig(Section):
    vpc_cidr: IPv4Network = IPv4Network("10.0.0.0/16")
    az_count: int = Field(default=2, ge=2, le=6, description="HyperPod and EKS need subnets in >= 2 AZs.")
    nat_gateways: int = Field(default=1, ge=1, description="1 is cheapest; one per AZ survives an AZ outage.")
    existing_vpc_id: str | None = Field(
        default=None, description="Import this VPC instead of creating one (needs a context lookup)."
    )
    flow_log_retention_days: int = 30
    compute_subnet_index: int = Field(
        default=0,
        ge=0,
        description="Which private subnet (so which AZ, in the VPC's AZ order) holds the HyperPod nodes and "
        "the "
        "FSx file system; they must share it. Pick the AZ of your capacity reservation or training plan.",
    )

    @field_validator("vpc_cidr")
    @classmethod
    def _cidr_size(cls, cidr: IPv4Network) -> IPv4Network:
        if not 16 <= cidr.prefixlen <= 20:
            raise ValueError("prefix length must be /16 to /20: HyperPod nodes and pods need many addresses")
        return cidr

    _retention = field_validator("flow_log_retention_days")(check_log_retention)

    @field_validator("existing_vpc_id")
    @classmethod
    def _vpc_id(cls, vpc_id: str | None) -> str | None:
        if vpc_id is not None and not VPC_ID.match(vpc_id):
            raise ValueError("must look like vpc-0123456789abcdef0")
        return vpc_id

    @model_validator(mode="after")
    def _nat_per_az(self) -> "NetworkConfig":
        if self.nat_gateways > self.az_count:
            raise ValueError(f"nat_gateways ({self.nat_gateways}) must be <= az_count ({self.az_count})")
        return self

    @model_validator(mode="after")
    def _compute_subnet_exists(self) -> "NetworkConfig":
        # A created VPC has one private subnet per AZ; an imported one is checked when it is looked up.
        if self.existing_vpc_id is None and self.compute_subnet_index >= self.az_count:
            raise ValueError(
                f"compute_subnet_index ({self.compute_subnet_index}) must be < az_count ({self.az_count}): "
                "the VPC has one private subnet per AZ"
            )
        return self
