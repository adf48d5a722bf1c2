"""Shared storage: FSx for Lustre mounted at /fsx by every Ray pod."""

from typing import Literal

from pydantic import Field, field_validator

from .base import Section
from .types import AbsolutePath, DnsSubdomain, SemVer

# Paths the kernel, the container runtime or Ray own in every Ray pod: mounting the file system on (or
# above) one hides what is there (Ray's session directory /tmp/ray, the shared-memory /dev/shm object store,
# /proc and /sys, the image's /home/ray and system directories), so the pod fails to start or Ray fails.
RESERVED_MOUNT_PATHS = (
    "/proc",
    "/sys",
    "/dev",
    "/tmp",
    "/etc",
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib64",
    "/boot",
    "/run",
    "/var",
    "/root",
    "/home/ray",
)


def check_mount_path(path: str) -> str:
    """A mount path that hides none of RESERVED_MOUNT_PATHS (on, inside or above one)."""
    for reserved in RESERVED_MOUNT_PATHS:
        if path == reserved or path.startswith(reserved + "/") or reserved.startswith(path + "/"):
            raise ValueError(
                f"overlaps {reserved}, which the kernel, the container or Ray uses in every pod: choose a "
                "path such as /fsx or /mnt/fsx"
            )
    return path


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

    _mount_path_free = field_validator("mount_path")(check_mount_path)

    @field_validator("capacity_gib")
    @classmethod
    def _persistent_2_size(cls, gib: int) -> int:
        if gib != 1200 and (gib < 2400 or gib % 2400):
            raise ValueError("PERSISTENT_2 file systems are 1200 GiB or a multiple of 2400 GiB")
        return gib
