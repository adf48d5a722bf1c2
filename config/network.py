"""The VPC: address space, availability zones and NAT."""

from ipaddress import IPv4Network

from pydantic import Field, field_validator, model_validator

from .base import Section
from .types import VpcId


class NetworkConfig(Section):
    vpc_cidr: IPv4Network = Field(
        default=IPv4Network("10.0.0.0/16"), description="Address range of the VPC this app creates."
    )
    az_count: int = Field(default=2, ge=2, le=6, description="HyperPod and EKS need subnets in >= 2 AZs.")
    nat_gateways: int = Field(default=1, ge=1, description="1 is cheapest; one per AZ survives an AZ outage.")
    existing_vpc_id: VpcId | None = Field(
        default=None, description="Import this VPC instead of creating one (needs a context lookup)."
    )
    compute_subnet_index: int = Field(
        default=0,
        ge=0,
        description="Which private subnet (so which AZ, in the VPC's AZ order) holds the HyperPod nodes and "
        "the FSx file system; they must share it. Pick the AZ of your capacity reservation or training plan.",
    )

    @field_validator("vpc_cidr")
    @classmethod
    def _cidr_size(cls, cidr: IPv4Network) -> IPv4Network:
        if not 16 <= cidr.prefixlen <= 20:
            raise ValueError("prefix length must be /16 to /20: HyperPod nodes and pods need many addresses")
        return cidr

    @field_validator("vpc_cidr")
    @classmethod
    def _cidr_is_usable(cls, cidr: IPv4Network) -> IPv4Network:
        # The VPC user guide ("VPC CIDR blocks") refuses link-local (169.254.0.0/16), loopback, multicast
        # (224.0.0.0/4), reserved (240.0.0.0/4) and "this network" (0.0.0.0/8) ranges: CreateVpc fails.
        unusable = (
            cidr.is_link_local
            or cidr.is_loopback
            or cidr.is_multicast
            or cidr.is_reserved
            or cidr.subnet_of(IPv4Network("0.0.0.0/8"))
        )
        if unusable:
            raise ValueError(
                "is a link-local, loopback, multicast, reserved or 0.0.0.0/8 range, which a VPC cannot use: "
                "choose an RFC 1918 range such as 10.0.0.0/16"
            )
        return cidr

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
