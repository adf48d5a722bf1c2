"""The FSx for Lustre volume every Ray pod mounts: a pre-bound PV of a CloudFormation-owned file system
(static), or a StorageClass from which the CSI driver creates one (dynamic)."""

from dataclasses import dataclass

from cdk8s import Chart
from cdk8s_plus_28 import k8s
from constructs import Construct

from config import StorageConfig

FSX_CSI_DRIVER = "fsx.csi.aws.com"
LUSTRE_VERSION = "2.15"
DEPLOYMENT_TYPE = "PERSISTENT_2"
# flock: Ray and PyTorch checkpointing take file locks, which Lustre refuses unless mounted with it.
MOUNT_OPTIONS = ["flock"]
READ_WRITE_MANY = ["ReadWriteMany"]


@dataclass(frozen=True)
class StaticFileSystem:
    """An existing file system; the values are usually CloudFormation tokens (resolved at deploy)."""

    file_system_id: str
    dns_name: str
    mount_name: str


@dataclass(frozen=True)
class DynamicFileSystem:
    """Where the CSI driver creates the file system; the values are usually CloudFormation tokens."""

    subnet_id: str
    security_group_id: str
    # Put on every file system the driver creates, so that teardown can find one the driver left behind.
    tags: tuple[tuple[str, str], ...] = ()


class StorageChart(Chart):
    """The PVC `storage.claim_name` in `namespace`, backed by FSx for Lustre in the configured mode.

    Exactly one of `static` / `dynamic` must be given, matching `storage.mode`.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        storage: StorageConfig,
        namespace: str,
        static: StaticFileSystem | None = None,
        dynamic: DynamicFileSystem | None = None,
    ) -> None:
        super().__init__(scope, id)
        _check_inputs(storage, static, dynamic)
        self.claim_name = storage.claim_name
        self.namespace_name = namespace
        if static is not None:
            volume_name = _static_volume(self, storage, namespace, static)
            _claim(self, storage, namespace, storage_class_name="", volume_name=volume_name)
        elif dynamic is not None:
            _storage_class(self, storage, dynamic)
            _claim(self, storage, namespace, storage_class_name=storage.storage_class_name)


def _check_inputs(
    storage: StorageConfig, static: StaticFileSystem | None, dynamic: DynamicFileSystem | None
) -> None:
    given = {"static": static is not None, "dynamic": dynamic is not None}
    if not given[storage.mode] or sum(given.values()) != 1:
        raise ValueError(f"storage.mode is {storage.mode!r}: pass {storage.mode}= and nothing else")


def _gib(storage: StorageConfig) -> k8s.Quantity:
    return k8s.Quantity.from_string(f"{storage.capacity_gib}Gi")


def _static_volume(chart: Chart, storage: StorageConfig, namespace: str, fs: StaticFileSystem) -> str:
    """The PV, pre-bound to our claim (claimRef) so that no other claim can take it; returns its name."""
    name = f"{namespace}-{storage.claim_name}"  # PVs are cluster-scoped: the namespace keeps it unique
    k8s.KubePersistentVolume(
        chart,
        "volume",
        metadata=k8s.ObjectMeta(name=name),
        spec=k8s.PersistentVolumeSpec(
            capacity={"storage": _gib(storage)},
            access_modes=READ_WRITE_MANY,
            # Retain: CloudFormation owns the file system; Kubernetes must never try to delete it.
            persistent_volume_reclaim_policy="Retain",
            storage_class_name="",
            mount_options=MOUNT_OPTIONS,
            claim_ref=k8s.ObjectReference(namespace=namespace, name=storage.claim_name),
            csi=k8s.CsiPersistentVolumeSource(
                driver=FSX_CSI_DRIVER,
                volume_handle=fs.file_system_id,
                volume_attributes={"dnsname": fs.dns_name, "mountname": fs.mount_name},
            ),
        ),
    )
    return name


def _storage_class(chart: Chart, storage: StorageConfig, fs: DynamicFileSystem) -> None:
    k8s.KubeStorageClass(
        chart,
        "storage-class",
        metadata=k8s.ObjectMeta(name=storage.storage_class_name),
        provisioner=FSX_CSI_DRIVER,
        parameters={
            "subnetId": fs.subnet_id,
            "securityGroupIds": fs.security_group_id,
            "deploymentType": DEPLOYMENT_TYPE,
            "perUnitStorageThroughput": str(storage.throughput_per_tib),
            "dataCompressionType": storage.data_compression,
            "fileSystemTypeVersion": LUSTRE_VERSION,
            **({"extraTags": ",".join(f"{key}={value}" for key, value in fs.tags)} if fs.tags else {}),
        },
        mount_options=MOUNT_OPTIONS,
        # Delete: the claim is the file system's only owner; Retain would orphan it after cdk destroy.
        reclaim_policy="Delete",
        # FSx for Lustre grows online; the CSI driver's resizer turns a larger PVC request into it.
        allow_volume_expansion=True,
    )


def _claim(
    chart: Chart,
    storage: StorageConfig,
    namespace: str,
    *,
    storage_class_name: str,
    volume_name: str | None = None,
) -> None:
    k8s.KubePersistentVolumeClaim(
        chart,
        "claim",
        metadata=k8s.ObjectMeta(name=storage.claim_name, namespace=namespace),
        spec=k8s.PersistentVolumeClaimSpec(
            access_modes=READ_WRITE_MANY,
            storage_class_name=storage_class_name,
            volume_name=volume_name,
            resources=k8s.ResourceRequirements(requests={"storage": _gib(storage)}),
        ),
    )


# Creates each directory and gives it to the pods' user, top level only: a recursive chown would walk every
# checkpoint on every pod start, and what the pods create inside is theirs already. Runs on every pod start
# (head and each worker), so it is idempotent and safe to run on many pods at once (`mkdir -p`).
PREPARE_SCRIPT = (
    'set -eu; owner="$1"; shift; '
    'for dir in "$@"; do mkdir -p "$dir"; chown "$owner" "$dir"; chmod 0775 "$dir"; done'
)
# Only what the script needs as root: chown (CHOWN), mkdir/chmod in a directory a restore left owned by
# another user (DAC_OVERRIDE, FOWNER). All three are in Pod Security "baseline"'s allowed list.
PREPARE_CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "FOWNER")


def prepare_command(directories: tuple[str, ...], *, uid: int, gid: int) -> list[str]:
    """The root init step's command: the file system's root and the runs' directory owned by uid:gid.

    A new FSx for Lustre file system's root is root:root 0755 and the FSx CSI driver applies no fsGroup to
    RWX volumes, so the unprivileged Ray pods could not create anything on it without this step.
    """
    return ["/bin/sh", "-c", PREPARE_SCRIPT, "prepare-storage", f"{uid}:{gid}", *directories]
