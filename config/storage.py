"""Shared storage: FSx for Lustre mounted at /fsx by every Ray pod."""

from typing import Literal

from pydantic import Field, field_validator

from .base import Section
from .types import AbsolutePath, DnsSubdomain, SemVer


class StorageConfig(Section):
    mode: Literal["static", "dynamic"] = Field(
        default="static",
        description="static: CloudFormation owns the file system (deleted by cdk destroy); "
        "dynamic: the CSI driver creates it from a PVC.",
    )
    capacity_gib: int = Field(
        default=1200, description="Size of the FSx for Lustre file system (PERSISTENT_2)."
    )
    throughput_per_tib: Literal[125, 250, 500, 1000] = Field(
        default=250, description="PERSISTENT_2 throughput in MB/s per TiB of storage."
    )
    data_compression: Literal["LZ4", "NONE"] = Field(default="LZ4", description="Lustre data compression.")
    mount_path: AbsolutePath = Field(
        default="/fsx", description="Where every Ray pod mounts the file system."
    )
    storage_class_name: DnsSubdomain = Field(default="fsx-sc", description="The FSx StorageClass's name.")
    claim_name: DnsSubdomain = Field(
        default="fsx-claim", description="The PersistentVolumeClaim the Ray pods mount, in the Ray namespace."
    )
    csi_driver_chart_version: SemVer = Field(
        default="1.17.0", description="Version of the aws-fsx-csi-driver Helm chart."
    )

    @field_validator("capacity_gib")
    @classmethod
    def _persistent_2_size(cls, gib: int) -> int:
        if gib != 1200 and (gib < 2400 or gib % 2400):
            raise ValueError("PERSISTENT_2 file systems are 1200 GiB or a multiple of 2400 GiB")
        return gib
