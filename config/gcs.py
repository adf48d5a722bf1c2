"""Head-node fault tolerance: where the Ray GCS keeps its state so that a new head picks it up."""

from typing import Literal

from pydantic import Field, field_validator

from .base import Section
from .types import ImageUri, matching

# ElastiCache node types are cache.<family>.<size> (cache.t4g.small, cache.r7g.large).
CacheNodeType = matching(r"cache\.[a-z0-9]+\.[a-z0-9]+", "an ElastiCache node type such as cache.t4g.small")
# Valkey versions ElastiCache offers for node-based replication groups with AUTH and TLS (its engine
# versions page: 7.2, 8.0, 8.1, 8.2, 9.0, 9.1). Ray's GCS speaks plain RESP through hiredis; Valkey 7.2 is
# Redis OSS 7.2, the line Ray's own GCS fault-tolerance tests run against.
ValkeyVersion = Literal["7.2", "8.0", "8.1", "8.2"]
REDIS_PORT = 6379  # the in-cluster store
# ElastiCache: not the default port (cdk-nag AEC5: the port scanners in a shared VPC try first).
ELASTICACHE_PORT = 6380


class GcsFaultToleranceConfig(Section):
    """KubeRay `gcsFaultToleranceOptions` and the Redis-compatible store behind it.

    `elasticache` (default): a Valkey replication group in the private subnets, TLS in transit, encrypted
    at rest, AUTH token generated in Secrets Manager; a replica in another AZ with automatic failover.
    `in_cluster`: one Valkey pod in the Ray namespace, no TLS, no replica: cheaper, but it shares the
    cluster's fate (see docs/gcs-fault-tolerance.md).
    """

    enabled: bool = Field(default=True, description="Keep the GCS in an external store (KubeRay GCS FT).")
    store: Literal["elasticache", "in_cluster"] = Field(
        default="elasticache", description="Where the GCS state lives: managed ElastiCache or a pod."
    )
    node_type: CacheNodeType = Field(default="cache.t4g.small", description="ElastiCache node type.")
    engine_version: ValkeyVersion = Field(default="7.2", description="ElastiCache Valkey engine version.")
    replicas: int = Field(
        default=1, ge=0, le=5, description="Read replicas (another AZ); >= 1 turns on automatic failover."
    )
    in_cluster_image: ImageUri = Field(
        default="valkey/valkey:7.2.13", description="Image of the in-cluster store (store: in_cluster)."
    )
    worker_reconnect_timeout_s: int = Field(
        default=600,
        ge=60,
        le=3600,
        description="RAY_gcs_rpc_server_reconnect_timeout_s on workers: how long a worker node waits for a "
        "new head before it gives up (a new head pod, image pull and GCS reload take minutes).",
    )

    @field_validator("in_cluster_image")
    @classmethod
    def _pinned(cls, image: str) -> str:
        name = image.rsplit("/", 1)[-1]
        if ":" not in name and "@" not in name:
            raise ValueError("must be pinned with a tag or digest, such as valkey/valkey:7.2.13")
        return image

    @property
    def elasticache(self) -> bool:
        return self.enabled and self.store == "elasticache"

    @property
    def in_cluster(self) -> bool:
        return self.enabled and self.store == "in_cluster"
