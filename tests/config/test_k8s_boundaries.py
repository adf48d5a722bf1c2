"""Config errors for the Kubernetes boundaries: namespaces the stacks would share, node label keys that
belong to Kubernetes or HyperPod."""

import json

import pytest

from config import ConfigError, load_config

GROUPS = [
    {"name": "head", "instance_type": "ml.m5.2xlarge", "count": 1},
    {"name": "workers", "instance_type": "ml.p5.48xlarge", "count": 4},
]


def problems(context: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(context)
    return caught.value.problems


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        (
            {"ray.namespace": "monitoring"},
            "ray.namespace='monitoring' is also observability.namespace: each needs a namespace of its own",
        ),
        (
            {"kuberay.namespace": "monitoring"},
            "kuberay.namespace='monitoring' is also observability.namespace: each needs a namespace of its "
            "own",
        ),
        (
            {"hyperpod.dependency_chart.namespace": "ray"},
            "ray.namespace='ray' is also hyperpod.dependency_chart.namespace: each needs a namespace of its "
            "own",
        ),
        (
            {"ray.namespace": "kuberay"},
            "ray.namespace 'kuberay' is the KubeRay operator's namespace (kuberay.namespace)",
        ),
    ],
)
def test_namespaces_the_stacks_would_share_are_refused(context: dict[str, str], expected: str) -> None:
    (problem,) = problems(context)
    assert problem.startswith(expected), problem


def test_monitoring_namespace_is_free_when_observability_is_off() -> None:
    config = load_config({"observability.enabled": "false", "ray.namespace": "monitoring"})
    assert config.ray.namespace == "monitoring"


@pytest.mark.parametrize(
    "key",
    [
        "kubernetes.io/role",
        "node.kubernetes.io/instance-type",
        "k8s.io/x",
        "topology.k8s.io/zone",
        "sagemaker.amazonaws.com/node-health-status",
    ],
)
def test_reserved_label_keys_are_refused(key: str) -> None:
    groups = [GROUPS[0], {**GROUPS[1], "labels": {key: "x"}}]
    (problem,) = problems({"hyperpod.instance_groups": json.dumps(groups)})
    assert problem.startswith(f"hyperpod.instance_groups[1].labels: key {key!r} is under "), problem


@pytest.mark.parametrize("key", ["team", "example.com/team", "notkubernetes.io/x", "sagemaker.example.com/x"])
def test_other_label_keys_are_kept(key: str) -> None:
    groups = [GROUPS[0], {**GROUPS[1], "labels": {key: "x"}}]
    config = load_config({"hyperpod.instance_groups": json.dumps(groups)})
    assert config.hyperpod.instance_groups[1].labels == {key: "x"}
