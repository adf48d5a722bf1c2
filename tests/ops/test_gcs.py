"""What `ops status` reports about GCS fault tolerance, from stack outputs (ops/gcs.py)."""

from ops.gcs import gcs_status

RAY = {"RayNamespace": "ray"}


def test_without_the_store_stack_gcs_ft_is_off():
    status = gcs_status(None, RAY)
    assert not status.enabled and status.health_check is None


def test_elasticache_health_is_the_replication_group_status():
    outputs = {
        "GcsStoreKind": "elasticache",
        "GcsReplicationGroupId": "rg-abc",
        "GcsStoreService": "x-gcs-store",
    }
    status = gcs_status(outputs, RAY)
    assert status.enabled and status.store == "elasticache"
    assert status.health_check[:3] == ("aws", "elasticache", "describe-replication-groups")
    assert "rg-abc" in status.health_check and status.healthy_when == "available"


def test_in_cluster_health_is_the_store_deployment_being_ready():
    outputs = {"GcsStoreKind": "in_cluster", "GcsStoreService": "ray-cluster-gcs-store"}
    status = gcs_status(outputs, RAY)
    assert status.health_check[:4] == ("kubectl", "-n", "ray", "get")
    assert "ray-cluster-gcs-store" in status.health_check and status.healthy_when == "1"
