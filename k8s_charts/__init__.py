"""cdk8s charts of the Kubernetes objects the ray stack adds to the EKS cluster."""

from .namespace import NamespaceChart
from .network_policy import MonitoringNetworkPolicyChart, RayNetworkPolicyChart
from .ray_cluster import RayClusterChart
from .ray_job import JOB_DIR, RayJobChart
from .ray_supervisor import RaySupervisorChart
from .storage import DynamicFileSystem, StaticFileSystem, StorageChart

__all__ = [
    "JOB_DIR",
    "DynamicFileSystem",
    "MonitoringNetworkPolicyChart",
    "NamespaceChart",
    "RayClusterChart",
    "RayJobChart",
    "RayNetworkPolicyChart",
    "RaySupervisorChart",
    "StaticFileSystem",
    "StorageChart",
]
