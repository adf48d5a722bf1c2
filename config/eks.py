"""The EKS control plane that orchestrates the HyperPod nodes."""

import re
from ipaddress import IPv4Network
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from .base import Section
from .types import DnsLabel, IamPrincipalArn

# HyperPod documents EKS 1.28-1.33 as orchestrators; the pinned kubectl layer (v1.33) drives clusters within
# one minor version of itself. The intersection is what this app can deploy and manage.
HYPERPOD_EKS_VERSIONS = ("1.28", "1.29", "1.30", "1.31", "1.32", "1.33")
KUBECTL_LAYER_VERSION = "1.33"
SUPPORTED_EKS_VERSIONS = ("1.32", "1.33")

# EKS add-on versions per supported EKS minor, pinned here and nowhere else (from the EKS user guide's
# "latest version of the Amazon EKS add-on type for each Kubernetes version" tables). `eks.version` picks the
# row, so changing the cluster version changes its add-ons with it; `eks.addon_versions` pins single add-ons
# over the row. None lets EKS pick its default build for the cluster's version: used where no published table
# was available offline; pin it from `aws eks describe-addon-versions` when you have access.
ADDON_VERSIONS: dict[str, dict[str, str | None]] = {
    "1.32": {
        "vpc-cni": "v1.20.1-eksbuild.3",
        "kube-proxy": "v1.32.9-eksbuild.2",
        "coredns": "v1.11.4-eksbuild.24",
        "eks-pod-identity-agent": None,
    },
    "1.33": {
        "vpc-cni": "v1.20.1-eksbuild.3",
        "kube-proxy": "v1.33.5-eksbuild.2",
        "coredns": "v1.12.4-eksbuild.1",
        "eks-pod-identity-agent": None,
    },
}
DEFAULT_EKS_VERSION = "1.33"
DEFAULT_ADDON_VERSIONS = ADDON_VERSIONS[DEFAULT_EKS_VERSION]
MIN_VPC_CNI = (1, 18, 3)  # HyperPod's documented minimum
ADDON_VERSION = re.compile(r"v(\d+)\.(\d+)\.(\d+)-eksbuild\.\d+")
ANYWHERE = IPv4Network("0.0.0.0/0")
# 0.0.0.0/0 split in halves (0.0.0.0/1 + 128.0.0.0/1) is still the internet: wide ranges need the opt-in too.
WIDEST_WITHOUT_OPT_IN = 8
# Source ranges a request to a public endpoint can never come from (RFC 1918, shared address space, loopback,
# link-local): allowing them on a public endpoint admits no one; private access is endpoint_access=private.
NON_PUBLIC_RANGES = tuple(
    IPv4Network(cidr)
    for cidr in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
    )
)


# EKS's quota "Public endpoint access CIDR ranges per cluster" (EKS service quotas page): 40.
MAX_PUBLIC_ACCESS_CIDRS = 40
# Add-on names EKS publishes (`aws eks describe-addon-versions`, EKS user guide "AWS add-ons" and the
# SageMaker HyperPod add-ons). CreateAddon refuses any other name, after the cluster is up.
KNOWN_ADDONS = frozenset(
    {
        "vpc-cni",
        "coredns",
        "kube-proxy",
        "eks-pod-identity-agent",
        "aws-ebs-csi-driver",
        "aws-efs-csi-driver",
        "aws-fsx-csi-driver",
        "aws-mountpoint-s3-csi-driver",
        "snapshot-controller",
        "amazon-cloudwatch-observability",
        "adot",
        "aws-guardduty-agent",
        "aws-network-flow-monitoring-agent",
        "eks-node-monitoring-agent",
        "metrics-server",
        "amazon-sagemaker-hyperpod-observability",
        "amazon-sagemaker-hyperpod-taskgovernance",
        "amazon-sagemaker-hyperpod-training-operator",
        "amazon-sagemaker-hyperpod-inference",
    }
)


def check_eks_inputs(config: "EksConfig") -> "EksConfig":
    """Inputs the EKS API refuses only at deploy time (or jsii refuses with a traceback)."""
    problems = []
    arns = list(config.admin_principal_arns)
    repeated = sorted({arn for arn in arns if arns.count(arn) > 1})
    if repeated:
        problems.append(
            f"admin_principal_arns lists {repeated} more than once: EKS allows one access entry per principal"
        )
    if len(config.public_access_cidrs) > MAX_PUBLIC_ACCESS_CIDRS:
        problems.append(
            f"public_access_cidrs has {len(config.public_access_cidrs)} ranges: EKS accepts at most "
            f"{MAX_PUBLIC_ACCESS_CIDRS} per cluster"
        )
    unknown = sorted(set(config.addon_versions) - KNOWN_ADDONS)
    if unknown:
        problems.append(
            f"addon_versions names unknown EKS add-ons {unknown}: CreateAddon accepts only published names "
            f"({', '.join(sorted(KNOWN_ADDONS))})"
        )
    if problems:
        raise ValueError("\n".join(problems))
    return config


class EksConfig(Section):
    version: str = Field(
        default=DEFAULT_EKS_VERSION, description="Kubernetes version of the EKS control plane."
    )
    endpoint_access: Literal["private", "public_and_private"] = Field(
        default="private",
        description="private keeps the API server off the internet (cdk-nag EKS1): reach it from the VPC, a "
        "VPN or a bastion. public_and_private also serves it on the internet to public_access_cidrs.",
    )
    public_access_cidrs: tuple[IPv4Network, ...] = Field(
        default=(), description="Public source ranges allowed to reach a public endpoint (e.g. your IP /32)."
    )
    allow_public_endpoint_from_anywhere: bool = Field(
        default=False,
        description="The explicit opt-in for 0.0.0.0/0 (the whole internet) in public_access_cidrs.",
    )
    admin_principal_arns: tuple[IamPrincipalArn, ...] = Field(
        default=(),
        description="IAM roles or users given cluster-admin access entries (kubectl, make status/submit).",
    )
    addon_versions: dict[DnsLabel, str | None] = Field(
        default_factory=lambda: dict(DEFAULT_ADDON_VERSIONS),
        description="The ADDON_VERSIONS row for `version`, with the pins given here on top.",
    )

    @model_validator(mode="before")
    @classmethod
    def _addons_follow_version(cls, data: Any) -> Any:
        """Fill the add-on versions from the table row of the chosen EKS version; pins given win."""
        if not isinstance(data, dict):
            return data
        row = ADDON_VERSIONS.get(str(data.get("version", DEFAULT_EKS_VERSION)))
        pins = data.get("addon_versions", {})
        if row is None or not isinstance(pins, dict):
            return data  # the field validators report the bad version or the bad mapping
        return {**data, "addon_versions": {**row, **pins}}

    @field_validator("version")
    @classmethod
    def _supported(cls, version: str) -> str:
        if version not in SUPPORTED_EKS_VERSIONS:
            raise ValueError(
                f"must be one of {', '.join(SUPPORTED_EKS_VERSIONS)}: HyperPod supports EKS "
                f"{HYPERPOD_EKS_VERSIONS[0]}-{HYPERPOD_EKS_VERSIONS[-1]} and the pinned kubectl "
                f"{KUBECTL_LAYER_VERSION} manages clusters within one minor version"
            )
        return version

    @field_validator("addon_versions")
    @classmethod
    def _addons(cls, versions: dict[str, str | None]) -> dict[str, str | None]:
        for name, version in versions.items():
            if version is not None and not ADDON_VERSION.fullmatch(version):
                raise ValueError(f"{name}: {version!r} is not an add-on version like v1.20.1-eksbuild.3")
        cni = versions["vpc-cni"]
        if cni is not None and _semver(cni) < MIN_VPC_CNI:
            raise ValueError(f"vpc-cni {cni} is older than v1.18.3, the oldest HyperPod supports")
        return versions

    _inputs_deploy = model_validator(mode="after")(check_eks_inputs)

    @model_validator(mode="after")
    def _kube_proxy_matches(self) -> "EksConfig":
        proxy = self.addon_versions["kube-proxy"]
        if proxy is not None and ".".join(map(str, _semver(proxy)[:2])) != self.version:
            table = ADDON_VERSIONS[self.version]["kube-proxy"]
            raise ValueError(
                f"addon_versions.kube-proxy = {proxy!r} does not match eks.version {self.version}: "
                f"kube-proxy must have the cluster's minor version; remove the pin to get {table}, or pin a "
                f"v{self.version}.x build"
            )
        return self

    @model_validator(mode="after")
    def _public_endpoint_is_narrow(self) -> "EksConfig":
        """A public endpoint needs an allow-list of public ranges; the whole internet only when asked for."""
        if self.endpoint_access == "private":
            if self.public_access_cidrs:
                raise ValueError("public_access_cidrs is only used with endpoint_access=public_and_private")
            return self
        if not self.public_access_cidrs:
            raise ValueError(
                "endpoint_access=public_and_private needs public_access_cidrs (an allow-list: your IP/32)"
            )
        allow_wide = self.allow_public_endpoint_from_anywhere
        problems = [p for p in (_cidr_problem(c, allow_wide) for c in self.public_access_cidrs) if p]
        if problems:
            raise ValueError("\n".join(problems))
        return self


def _cidr_problem(cidr: IPv4Network, allow_wide: bool) -> str | None:
    """Why a public endpoint should not allow cidr, or None."""
    if cidr.prefixlen < WIDEST_WITHOUT_OPT_IN:
        if allow_wide:
            return None
        reach = "the whole internet" if cidr == ANYWHERE else "more than a /8"
        return (
            f"public_access_cidrs = '{cidr}' opens the API server to {reach}: list your own ranges, "
            "or set eks.allow_public_endpoint_from_anywhere=true to mean it"
        )
    if any(cidr.subnet_of(private) for private in NON_PUBLIC_RANGES):
        return (
            f"public_access_cidrs = '{cidr}' is a private range, which never reaches a public endpoint: "
            "list public source ranges (reach the private endpoint from inside the VPC)"
        )
    return None


def _semver(addon_version: str) -> tuple[int, int, int]:
    major, minor, patch = ADDON_VERSION.fullmatch(addon_version).groups()  # type: ignore[union-attr]
    return int(major), int(minor), int(patch)
