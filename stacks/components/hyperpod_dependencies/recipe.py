"""The dependency chart's recipe, as plain data: Helm values, the buildspec phases that prepare the chart,
the S3 key the recipe determines, and the check of a local chart directory. No aws_cdk here."""

import hashlib
import json
import shlex
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from config import ConfigError
from config.hyperpod import DependencyChartConfig, Taint

from .digest import DIGEST_COMMAND, chart_digest

CONFIG_PATH = "hyperpod.dependency_chart"

# Components this app relies on are on; everything else in the chart is off, explicitly: Helm enables a
# subchart whose `condition` path is missing from the values (the chart's own values spell
# `namespaced-role-and-bindings.enable`, and set no `gpu-operator.enabled`).
BASE_VALUES: dict[str, Any] = {
    "health-monitoring-agent": {"enabled": True},
    "deep-health-check": {"enabled": True},
    "job-auto-restart": {"enabled": True},
    "hyperpod-patching": {"enabled": True},  # RBAC HyperPod uses to drain nodes during software updates
    "nvidia-device-plugin": {"devicePlugin": {"enabled": True}},
    "aws-efa-k8s-device-plugin": {"devicePlugin": {"enabled": True}},
    # The NVIDIA device plugin above serves GPUs; the GPU operator would run a second one.
    "gpu-operator": {"enabled": False},
    "neuron-device-plugin": {"devicePlugin": {"enabled": False}},
    # Ray jobs: KubeRay comes from this app's Ray stack; no Kubeflow/MPI training operators.
    "trainingOperators": {"enabled": False},
    "mpi-operator": {"enabled": False},
    "kuberay": {"enabled": False},
    "hyperpod-ray-endpoint-operator": {"enabled": False},
    # cert-manager only serves the inference operator's webhooks.
    "cert-manager": {"enabled": False},
    "inferenceOperators": {"enabled": False},
    "mlflow": {"enabled": False},
    "storage": {"enabled": False},
    "cluster-role-and-bindings": {"enabled": False},
    "namespaced-role-and-bindings": {"enabled": False},
    "team-role-and-bindings": {"enabled": False},
}


_HEALTH_TOLERATION = {
    "key": "sagemaker.amazonaws.com/node-health-status",
    "operator": "Equal",
    "value": "Unschedulable",
    "effect": "NoSchedule",
}
# The device plugins' own tolerations in the pinned chart's values.yaml (HyperPodHelmChart at tag v3.9.0).
# Helm replaces a list value whole, so a chart that must tolerate more repeats these first.
DEVICE_PLUGIN_TOLERATIONS: dict[str, list[dict[str, str]]] = {
    "nvidia-device-plugin": [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        _HEALTH_TOLERATION,
    ],
    "aws-efa-k8s-device-plugin": [
        {"key": "CriticalAddonsOnly", "operator": "Exists"},
        {"key": "aws.amazon.com/efa", "operator": "Exists", "effect": "NoSchedule"},
        _HEALTH_TOLERATION,
    ],
}


def taint_tolerations(taints: Iterable[Taint]) -> dict[str, Any]:
    """Values that let both device plugins onto nodes with the instance groups' taints. Without them a
    tainted GPU group (say `nvidia.com/gpu`, which the EFA plugin does not tolerate) advertises no EFA
    devices, and Ray workers that request them stay Pending."""
    wanted = sorted({(taint.key, taint.effect, taint.value) for taint in taints})
    values: dict[str, Any] = {}
    for chart, own in DEVICE_PLUGIN_TOLERATIONS.items():
        missing = {
            (key, effect)
            for key, effect, value in wanted
            if not any(tolerates(toleration, key, effect, value) for toleration in own)
        }
        extra = [{"key": key, "operator": "Exists", "effect": effect} for key, effect in sorted(missing)]
        if extra:
            values[chart] = {"tolerations": [*own, *extra]}
    return values


def tolerates(toleration: Mapping[str, str], key: str, effect: str, value: str = "") -> bool:
    """Kubernetes' rule for one toleration and one taint (an empty effect matches every effect)."""
    if toleration.get("effect") not in (None, "", effect) or toleration.get("key") != key:
        return False
    return toleration.get("operator") == "Exists" or toleration.get("value", "") == value


def chart_values(region: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """BASE_VALUES with the region and the caller's overrides merged in (overrides win, key by key)."""
    # Without a region the agent looks it up from node labels, and at install time there are no nodes
    # yet: it would fall back to us-east-1 and pull its image from that region.
    values = _merge(BASE_VALUES, {"health-monitoring-agent": {"region": region}})
    return _merge(values, overrides or {})


def _merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        old = merged.get(key)
        both_maps = isinstance(old, Mapping) and isinstance(value, Mapping)
        merged[key] = _merge(old, value) if both_maps else value
    return merged


def local_chart_dir(config: DependencyChartConfig) -> Path:
    """The prepared chart directory of `source=local`, checked against `content_sha256` when set."""
    path = Path(config.local_path or "").expanduser()
    if not config.local_path or not (path / "Chart.yaml").is_file():
        raise ConfigError(
            [f"{CONFIG_PATH}.local_path = {config.local_path!r}: not a chart directory (no Chart.yaml there)"]
        )
    if config.content_sha256:
        actual = chart_digest(path)
        if actual != config.content_sha256:
            raise ConfigError(
                [
                    f"{CONFIG_PATH}.content_sha256 = {config.content_sha256!r}: the chart in {path} has "
                    f"digest {actual!r}"
                ]
            )
    return path


def build_phases(config: DependencyChartConfig) -> dict[str, dict[str, list[str]]]:
    """The buildspec phases: fetch and verify the pinned commit, install a verified helm, package the chart.

    Every version and digest is literal here, so any change alters the recipe's fingerprint and with it
    the chart's S3 key. The bucket and key come from the environment ($CHART_BUCKET, $CHART_KEY). Config
    values are validated (config/types.py) and still quoted: each reaches the shell as one word of data.
    """
    quote = shlex.quote
    helm_url = f"https://get.helm.sh/helm-v{config.helm_version}-linux-amd64.tar.gz"
    chart = f"src/{config.chart_path}"
    verify_digest = (
        [
            f'test "$(cd {quote(chart)} && {DIGEST_COMMAND})" = {quote(config.content_sha256)}'
            f' || {{ echo "chart digest differs from {CONFIG_PATH}.content_sha256"; exit 1; }}'
        ]
        if config.content_sha256
        else []
    )
    return {
        "install": {
            "commands": [
                f"curl -fsSL --retry 3 -o helm.tar.gz {quote(helm_url)}",
                # The digest is pinned in config: one published beside the tarball would come from the same
                # host, and prove nothing if that host served a tampered file.
                f"echo {quote(config.helm_sha256 + '  helm.tar.gz')} | sha256sum --check --strict",
                "tar -xzf helm.tar.gz linux-amd64/helm",
                "install -m 0755 linux-amd64/helm /usr/local/bin/helm",
            ]
        },
        "pre_build": {
            "commands": [
                "git init -q src",
                f"git -C src fetch -q --depth 1 {quote(config.repository)} {quote(config.commit)}",
                "git -C src checkout -q FETCH_HEAD",
                # A commit id is the hash of its content: checking it out verifies every file of the chart.
                f'test "$(git -C src rev-parse HEAD)" = {quote(config.commit)}'
                ' || { echo "fetched commit differs from the pinned one"; exit 1; }',
                *verify_digest,
            ]
        },
        "build": {
            "commands": [
                f"helm dependency build {quote(chart)}",
                f"helm package {quote(chart)} --destination package",
                # The kubectl provider downloads ChartAssetURL as a zip with the chart at its root (the
                # format of a CDK directory asset), not a helm .tgz: unpack the package and zip it.
                "mkdir chart && tar -xzf package/*.tgz -C chart --strip-components 1",
                "(cd chart && zip -qr ../chart.zip .)",
                'aws s3 cp chart.zip "s3://$CHART_BUCKET/$CHART_KEY"',
            ]
        },
    }


def chart_object_key(config: DependencyChartConfig) -> str:
    """Where the build puts the chart: any change of the recipe is a new key, hence a new ChartAssetURL,
    and so a new build and a Helm upgrade on the next deploy."""
    recipe = json.dumps(build_phases(config), sort_keys=True).encode()
    return f"hyperpod-dependencies/{config.commit}/{hashlib.sha256(recipe).hexdigest()[:16]}.zip"
