"""What a deployment is called, read from `cdk deploy --outputs-file cdk-outputs.json`.

The file maps stack name to its outputs; this app's stacks are `<prefix>-eks`, `<prefix>-hyperpod`,
`<prefix>-ray` and, when enabled, `<prefix>-observability` and `<prefix>-gcs-store`, with the outputs their
stacks declare (stacks/eks.py, stacks/hyperpod.py, stacks/ray.py, stacks/observability.py,
stacks/gcs_store.py).
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from .tools import OpsError


@dataclass(frozen=True)
class Deployment:
    eks_cluster: str
    region: str
    hyperpod_cluster: str | None
    ray_namespace: str | None
    ray_head_service: str | None
    ray_auth_secret: str | None  # Secret holding the Ray token under `auth_token`; None: no token auth
    grafana: tuple[str, str] | None = None  # (namespace, service) of the in-cluster Grafana
    gcs_outputs: dict[str, str] | None = None  # the gcs-store stack's outputs; None: GCS FT off
    ray_outputs: dict[str, str] = field(default_factory=dict)


def read_deployment(path: Path, prefix: str) -> Deployment:
    try:
        outputs = json.loads(path.read_text())
    except FileNotFoundError:
        raise OpsError(
            f"{path} not found: `make deploy` writes it (cdk deploy --outputs-file {path.name})"
        ) from None
    except (OSError, json.JSONDecodeError) as error:
        raise OpsError(f"{path}: cannot read it as JSON: {error}") from None
    eks, hyperpod, ray, observability, gcs = (
        _stack(outputs, f"{prefix}-{part}")
        for part in ("eks", "hyperpod", "ray", "observability", "gcs-store")
    )
    if not eks:
        stacks = ", ".join(sorted(outputs)) or "none"
        raise OpsError(
            f"{path} has no outputs of stack {prefix}-eks (stacks there: {stacks}); is CONFIG right?"
        )
    arn = _required(eks, "ClusterArn", f"{prefix}-eks", path)
    return Deployment(
        eks_cluster=_required(eks, "ClusterName", f"{prefix}-eks", path),
        region=_region(arn),
        hyperpod_cluster=hyperpod.get("HyperPodClusterName"),
        ray_namespace=ray.get("RayNamespace"),
        ray_head_service=ray.get("RayHeadService"),
        ray_auth_secret=ray.get("RayAuthSecret"),
        grafana=_grafana(observability),
        gcs_outputs=gcs or None,
        ray_outputs=ray,
    )


def _grafana(observability: dict[str, str]) -> tuple[str, str] | None:
    if "GrafanaNamespace" in observability and "GrafanaService" in observability:
        return observability["GrafanaNamespace"], observability["GrafanaService"]
    return None


def _stack(outputs: object, name: str) -> dict[str, str]:
    stack = outputs.get(name, {}) if isinstance(outputs, dict) else {}
    return {key: str(value) for key, value in stack.items()} if isinstance(stack, dict) else {}


def _required(stack: dict[str, str], key: str, stack_name: str, path: Path) -> str:
    if key not in stack:
        raise OpsError(
            f"{path}: stack {stack_name} has no output {key}; redeploy with this version of the app"
        )
    return stack[key]


def _region(arn: str) -> str:
    """arn:aws:eks:<region>:<account>:cluster/<name> -> region."""
    parts = arn.split(":")
    if len(parts) < 6 or not parts[3]:
        raise OpsError(f"ClusterArn {arn!r} is not an EKS cluster ARN")
    return parts[3]
