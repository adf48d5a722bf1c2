"""What `ops status` says about head-node fault tolerance, from the stacks' outputs.

Pure: it reads the outputs (as `aws cloudformation describe-stacks` returns them, name -> value) and says
which store holds the GCS and which read-only check tells whether that store is healthy. The CLI runs the
check; this module never calls AWS or kubectl.
"""

from dataclasses import dataclass

# Output names of stacks/gcs_store.py (GcsStoreStack) and the ray stack.
STORE_KIND = "GcsStoreKind"
REPLICATION_GROUP = "GcsReplicationGroupId"
STORE_SERVICE = "GcsStoreService"
RAY_NAMESPACE = "RayNamespace"


@dataclass(frozen=True)
class GcsStatus:
    enabled: bool
    store: str | None  # "elasticache" | "in_cluster" | None
    health_check: (
        tuple[str, ...] | None
    )  # the command to run; healthy when it prints what `healthy_when` says
    healthy_when: str | None


def gcs_status(gcs_outputs: dict[str, str] | None, ray_outputs: dict[str, str]) -> GcsStatus:
    """`gcs_outputs` is None when the app was deployed without the GcsStore stack (GCS FT off)."""
    if not gcs_outputs:
        return GcsStatus(enabled=False, store=None, health_check=None, healthy_when=None)
    kind = gcs_outputs[STORE_KIND]
    if kind == "elasticache":
        group = gcs_outputs[REPLICATION_GROUP]
        check = (
            "aws", "elasticache", "describe-replication-groups", "--replication-group-id", group,
            "--query", "ReplicationGroups[0].Status", "--output", "text",
        )  # fmt: skip
        return GcsStatus(enabled=True, store=kind, health_check=check, healthy_when="available")
    namespace, service = ray_outputs[RAY_NAMESPACE], gcs_outputs[STORE_SERVICE]
    check = (
        "kubectl", "-n", namespace, "get", "deployment", service,
        "-o", "jsonpath={.status.readyReplicas}",
    )  # fmt: skip
    return GcsStatus(enabled=True, store=kind, health_check=check, healthy_when="1")
