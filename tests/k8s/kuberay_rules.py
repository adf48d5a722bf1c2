"""KubeRay v1.7.0's own admission rules (ray-operator/controllers/ray/utils/validation.go), for the fields
this project sets. The CRD schema accepts objects the operator then refuses in its log only; these checks
bring those refusals to test time."""

import re
from typing import Any

# validation.go / constant.go
MAX_RAY_CLUSTER_NAME = 53
MAX_RAY_JOB_NAME = 47
DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
MIN_TOKEN_AUTH_RAY = (2, 52, 0)
UPGRADE_TYPES = {"Recreate", "None"}
RESOURCE_PARAMS = {"num-cpus", "num-gpus", "memory", "resources"}


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:3])


def ray_cluster_problems(cluster: dict[str, Any]) -> list[str]:
    """ValidateRayClusterMetadata, ValidateRayClusterUpgradeOptions and ValidateRayClusterSpec."""
    problems = []
    name = cluster["metadata"]["name"]
    if len(name) > MAX_RAY_CLUSTER_NAME or not DNS1035_LABEL.fullmatch(name):
        problems.append(f"RayCluster name {name!r} is not a DNS-1035 label of at most 53 characters")
    spec = cluster["spec"]
    upgrade = spec.get("upgradeStrategy", {}).get("type")
    if upgrade is not None and upgrade not in UPGRADE_TYPES:
        problems.append(f"Spec.UpgradeStrategy.Type value {upgrade} is invalid")
    if not spec["headGroupSpec"]["template"]["spec"].get("containers"):
        problems.append("headGroupSpec should have at least one container")
    problems += _worker_problems(spec)
    problems += _auth_problems(spec)
    if "networkPolicy" in spec:
        problems.append("spec.networkPolicy requires the RayClusterNetworkPolicy feature gate")
    return problems


def _worker_problems(spec: dict[str, Any]) -> list[str]:
    problems = []
    autoscaling = spec.get("enableInTreeAutoscaling", False)
    for group in spec.get("workerGroupSpecs", []):
        if not group["template"]["spec"].get("containers"):
            problems.append("workerGroupSpec should have at least one container")
        low, high = group.get("minReplicas"), group.get("maxReplicas")
        if not autoscaling and (low is None or high is None):
            problems.append(f"worker group {group['groupName']} must set both minReplicas and maxReplicas")
        if low is not None and high is not None and low > high:
            problems.append(f"worker group {group['groupName']} has minReplicas greater than maxReplicas")
        if group.get("resources") and RESOURCE_PARAMS & set(group.get("rayStartParams", {})):
            problems.append(
                f"resource fields set in both rayStartParams and Resources for {group['groupName']}"
            )
    return problems


def _auth_problems(spec: dict[str, Any]) -> list[str]:
    problems = []
    auth = spec.get("authOptions", {})
    if auth.get("mode") == "token":
        if not spec.get("rayVersion"):
            problems.append("authOptions.mode is 'token' but RayVersion was not specified")
        elif _version(spec["rayVersion"]) < MIN_TOKEN_AUTH_RAY:
            problems.append(
                f"authOptions.mode is 'token' but minimum Ray version is 2.52.0, got {spec['rayVersion']}"
            )
    elif auth.get("enableK8sTokenAuth"):
        problems.append("authOptions.enableK8sTokenAuth is enabled but authOptions.mode not set to 'token'")
    return problems


def ray_job_problems(job: dict[str, Any]) -> list[str]:
    """ValidateRayJobMetadata and ValidateRayJobSpec for a RayJob that selects an existing cluster."""
    problems = []
    name = job["metadata"]["name"]
    if len(name) > MAX_RAY_JOB_NAME or not DNS1035_LABEL.fullmatch(name):
        problems.append(f"RayJob name {name!r} is not a DNS-1035 label of at most 47 characters")
    spec = job["spec"]
    if not spec.get("rayClusterSpec") and not spec.get("clusterSelector"):
        problems.append("one of RayClusterSpec or ClusterSelector must be set")
    if spec.get("clusterSelector") is not None and not spec["clusterSelector"].get("ray.io/cluster"):
        problems.append("cluster name in ClusterSelector should not be empty")
    if spec.get("clusterSelector") and spec.get("backoffLimit") is not None:
        problems.append("BackoffLimit is incompatible with ClusterSelector mode")
    for field in ("activeDeadlineSeconds", "preRunningDeadlineSeconds"):
        if field in spec and spec[field] <= 0:
            problems.append(f"{field} must be a positive integer")
    return problems
