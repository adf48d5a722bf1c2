"""What a deployment is called: read from `cdk deploy --outputs-file cdk-outputs.json`, or, without that
file, from the stacks' outputs in CloudFormation (found by name, `<prefix>-<part>`).

The file maps stack name to its outputs; this app's stacks are `<prefix>-eks`, `<prefix>-hyperpod`,
`<prefix>-ray` and, when enabled, `<prefix>-observability` and `<prefix>-gcs-store`, with the outputs their
stacks declare (stacks/eks.py, stacks/hyperpod.py, stacks/ray.py, stacks/observability.py,
stacks/gcs_store.py).
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import botocore.exceptions

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
    missing: tuple[str, ...] = ()  # stacks every deployment has that gave no outputs, each with why


PARTS = ("eks", "hyperpod", "ray", "observability", "gcs-store")
ALWAYS = ("eks", "hyperpod", "ray")  # every config deploys these; the others are optional


def read_outputs_file(path: Path) -> dict | None:
    """The outputs file as `cdk deploy --outputs-file` writes it; None when there is none."""
    try:
        outputs = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as error:
        raise OpsError(f"{path}: cannot read it as JSON: {error}") from None
    if not isinstance(outputs, dict):
        raise OpsError(f"{path}: not an outputs file (a JSON object of stack name -> outputs)")
    return outputs


def read_deployment(path: Path, prefix: str) -> Deployment:
    """The deployment in an outputs file (tests and callers that have one)."""
    outputs = read_outputs_file(path)
    if outputs is None:
        raise OpsError(
            f"{path} not found: `make deploy` writes it (cdk deploy --outputs-file {path.name}), "
            "`make outputs` rewrites it from the deployed stacks"
        )
    return deployment_of(outputs, prefix, str(path))


def stack_outputs(cloudformation, prefix: str) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """Outputs (name -> outputs, as in the outputs file) and status of the app's stacks in CloudFormation,
    found by name (`<prefix>-<part>`); stacks that do not exist are left out."""
    outputs, statuses = {}, {}
    for part in PARTS:
        name = f"{prefix}-{part}"
        try:
            stack = cloudformation.describe_stacks(StackName=name)["Stacks"][0]
        except botocore.exceptions.ClientError as error:
            if "does not exist" in error.response.get("Error", {}).get("Message", ""):
                continue
            raise
        statuses[name] = stack["StackStatus"]
        outputs[name] = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    return outputs, statuses


def deployment_from_aws(cloudformation, prefix: str, region: str) -> Deployment:
    """The deployment as CloudFormation has it: for a teammate, a second laptop, or a lost outputs file."""
    outputs, statuses = stack_outputs(cloudformation, prefix)
    where = f"CloudFormation ({region})"
    if f"{prefix}-eks" not in statuses:
        found = ", ".join(f"{name} {status}" for name, status in statuses.items()) or "none"
        raise OpsError(
            f"no stack {prefix}-eks in {where} (stacks of prefix {prefix!r}: {found}): "
            "deploy with `make deploy`, or check CONFIG (prefix, env.region) and AWS_REGION"
        )
    return deployment_of(outputs, prefix, where, statuses)


def deployment_of(
    outputs: dict, prefix: str, source: str, statuses: dict[str, str] | None = None
) -> Deployment:
    """The deployment of `prefix` in stack name -> outputs, read from `source` (named in errors)."""
    eks, hyperpod, ray, observability, gcs = (_stack(outputs, f"{prefix}-{part}") for part in PARTS)
    if not eks:
        stacks = ", ".join(sorted(outputs)) or "none"
        status = (statuses or {}).get(f"{prefix}-eks")
        if status:
            raise OpsError(f"stack {prefix}-eks is {status} and has no outputs yet; wait for `make deploy`")
        raise OpsError(
            f"{source} has no outputs of stack {prefix}-eks (stacks there: {stacks}); is CONFIG right?"
        )
    arn = _required(eks, "ClusterArn", f"{prefix}-eks", source)
    missing = tuple(
        _missing(f"{prefix}-{part}", statuses) for part in ALWAYS if not _stack(outputs, f"{prefix}-{part}")
    )
    return Deployment(
        eks_cluster=_required(eks, "ClusterName", f"{prefix}-eks", source),
        region=_region(arn),
        hyperpod_cluster=hyperpod.get("HyperPodClusterName"),
        ray_namespace=ray.get("RayNamespace"),
        ray_head_service=ray.get("RayHeadService"),
        ray_auth_secret=ray.get("RayAuthSecret"),
        grafana=_grafana(observability),
        gcs_outputs=gcs or None,
        ray_outputs=ray,
        missing=missing,
    )


def _missing(name: str, statuses: dict[str, str] | None) -> str:
    if statuses is None:
        return f"{name}: no outputs in the outputs file (`make outputs` rewrites it from AWS)"
    if name in statuses:
        return f"{name}: {statuses[name]}, no outputs yet"
    return f"{name}: not deployed"


def _grafana(observability: dict[str, str]) -> tuple[str, str] | None:
    if "GrafanaNamespace" in observability and "GrafanaService" in observability:
        return observability["GrafanaNamespace"], observability["GrafanaService"]
    return None


def _stack(outputs: object, name: str) -> dict[str, str]:
    stack = outputs.get(name, {}) if isinstance(outputs, dict) else {}
    return {key: str(value) for key, value in stack.items()} if isinstance(stack, dict) else {}


def _required(stack: dict[str, str], key: str, stack_name: str, source: str) -> str:
    if key not in stack:
        raise OpsError(
            f"{source}: stack {stack_name} has no output {key}; redeploy with this version of the app"
        )
    return stack[key]


def _region(arn: str) -> str:
    """arn:aws:eks:<region>:<account>:cluster/<name> -> region."""
    parts = arn.split(":")
    if len(parts) < 6 or not parts[3]:
        raise OpsError(f"ClusterArn {arn!r} is not an EKS cluster ARN")
    return parts[3]
