"""The EKS control plane that orchestrates the HyperPod nodes."""

import re
from ipaddress import IPv4Network
from typing import Literal

from pydantic import Field, field_validator, model_validator

from .base import Section
from .types import DnsLabel, IamPrincipalArn

# HyperPod documents EKS 1.28-1.33 as orchestrators; the pinned kubectl layer (v1.33) drives clusters within
# one minor version of itself. The intersection is what this app can deploy and manage.
HYPERPOD_EKS_VERSIONS = ("1.28", "1.29", "1.30", "1.31", "1.32", "1.33")
KUBECTL_LAYER_VERSION = "1.33"
SUPPORTED_EKS_VERSIONS = ("1.32", "1.33")

# EKS add-on versions for the default EKS version, pinned here and nowhere else (from the EKS user guide's
# "latest version" tables). None lets EKS pick its default build for the cluster's version: used where no
# published table was available offline; pin it from `aws eks describe-addon-versions` when you have access.
DEFAULT_ADDON_VERSIONS: dict[str, str | None] = {
    "vpc-cni": "v1.20.1-eksbuild.3",
    "kube-proxy": "v1.33.5-eksbuild.2",
    "coredns": "v1.12.4-eksbuild.1",
    "eks-pod-identity-agent": None,
}
MIN_VPC_CNI = (1, 18, 3)  # HyperPod's documented minimum
ADDON_VERSION = re.compile(r"v(\d+)\.(\d+)\.(\d+)-eksbuild\.\d+")


class EksConfig(Section):
    version: str = Field(default="1.33", description="Kubernetes version of the EKS control plane.")
    endpoint_access: Literal["private", "public_and_private"] = Field(
        default="private", description="private keeps the API server off the internet (cdk-nag EKS1)."
    )
    public_access_cidrs: tuple[IPv4Network, ...] = Field(
        default=(), description="Who may reach a public endpoint (endpoint_access=public_and_private only)."
    )
    admin_principal_arns: tuple[IamPrincipalArn, ...] = Field(
        default=(), description="IAM roles or users given cluster-admin through EKS access entries."
    )
    addon_versions: dict[DnsLabel, str | None] = Field(
        default_factory=lambda: dict(DEFAULT_ADDON_VERSIONS),
        description="EKS add-on versions by add-on name; null lets EKS pick its default build.",
    )

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
        missing = sorted(set(DEFAULT_ADDON_VERSIONS) - set(versions))
        if missing:
            raise ValueError(f"missing add-ons {missing}: HyperPod needs {sorted(DEFAULT_ADDON_VERSIONS)}")
        for name, version in versions.items():
            if version is not None and not ADDON_VERSION.fullmatch(version):
                raise ValueError(f"{name}: {version!r} is not an add-on version like v1.20.1-eksbuild.3")
        cni = versions["vpc-cni"]
        if cni is not None and _semver(cni) < MIN_VPC_CNI:
            raise ValueError(f"vpc-cni {cni} is older than v1.18.3, the oldest HyperPod supports")
        return versions

    @model_validator(mode="after")
    def _kube_proxy_matches(self) -> "EksConfig":
        proxy = self.addon_versions["kube-proxy"]
        if proxy is not None and ".".join(map(str, _semver(proxy)[:2])) != self.version:
            raise ValueError(
                f"addon_versions.kube-proxy {proxy} does not match EKS {self.version}: kube-proxy must have "
                f"the cluster's minor version (set it to a v{self.version}.x build, or to null)"
            )
        return self

    @model_validator(mode="after")
    def _public_needs_allow_list(self) -> "EksConfig":
        if self.endpoint_access == "public_and_private" and not self.public_access_cidrs:
            raise ValueError("endpoint_access=public_and_private needs public_access_cidrs (an allow-list)")
        if self.endpoint_access == "private" and self.public_access_cidrs:
            raise ValueError("public_access_cidrs is only used with endpoint_access=public_and_private")
        return self


def _semver(addon_version: str) -> tuple[int, int, int]:
    major, minor, patch = ADDON_VERSION.fullmatch(addon_version).groups()  # type: ignore[union-attr]
    return int(major), int(minor), int(patch)
