"""Shared storage: FSx for Lustre mounted at /fsx by every Ray pod."""

from typing import Literal

from pydantic import Field, field_validator

from .base import Section


class StorageConfig(Section):
    mode: Literal["static", "dynamic"] = Field(
        default="static",
        description="static: CloudFormation owns the file system (deleted by cdk destroy); "
        "dynamic: the CSI driver creates it from a PVC.",
    )
    capacity_gib: int = 1200
    throughput_per_tib: Literal[125, 250, 500, 1000] = 250
    data_compression: Literal["LZ4", "NONE"] = "LZ4"
    mount_path: str = "/fsx"
    storage_class_name: str = "fsx-sc"
    claim_name: str = "fsx-claim"
    csi_driver_chart_version: str = "1.17.0"

    @field_validator("capacity_gib")
    @classmethod
    def _persistent_2_size(cls, gib: int) -> int:
        if gib != 1200 and (gib < 2400 or gib % 2400):
            raise ValueError("PERSISTENT_2 file systems are 1200 GiB or a multiple of 2400 GiB")
        return gib

    @field_validator("mount_path")
    @classmethod
    def _absolute(cls, path: str) -> str:
        if not path.startswith("/") or path == "/":
            raise ValueError("must be an absolute path other than /")
        return path
