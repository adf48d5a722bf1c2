"""Every synthesized object validates against the API it is sent to, and the validator can fail."""

import copy
from pathlib import Path
from typing import Any

import pytest

from tests.k8s.scenarios import SCENARIOS, Synth
from tests.support.k8s_validation import default_crd_dir, object_problems, validate_k8s_objects

# Namespace + PV + PVC (static) or StorageClass + PVC (dynamic) + RayCluster + 3 NetworkPolicies (the third
# admits the metrics collector; observability is on in every scenario) (+ the supervisor Job or a RayJob).
# 7 objects, +1 for the job's object, +1 for the head's egress policy (Grafana with observability on, the
# API server with autoscaling: k8s_charts/network_policy.py).
EXPECTED_OBJECTS = {
    name: 8
    + bool(overrides.get("ray.job.enabled"))
    + (overrides.get("observability.enabled") != "false" or bool(overrides.get("ray.autoscaling.enabled")))
    for name, overrides in SCENARIOS.items()
}
EXPECTED_KINDS = {"job": "RayJob", "supervisor": "Job"}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_object_validates(synths: dict[str, Synth], crd_dir: Path, scenario: str) -> None:
    result = synths[scenario]
    checked = validate_k8s_objects(result.objects(), result.config.eks.version, crd_dir)
    assert checked == EXPECTED_OBJECTS[scenario]
    if scenario in EXPECTED_KINDS:
        assert len([o for o in result.objects() if o["kind"] == EXPECTED_KINDS[scenario]]) == 1


def test_rejects_a_broken_supervisor_job(synths: dict[str, Synth], crd_dir: Path) -> None:
    job = broken(synths["supervisor"], "Job")
    job["spec"]["podFailurePolicy"]["rules"][0]["action"] = 3
    with pytest.raises(
        AssertionError, match=r"podFailurePolicy\.rules\.0\.action: 3 is not of type 'string'"
    ):
        validate_k8s_objects([job], "1.33", crd_dir)
    job = broken(synths["supervisor"], "Job")
    job["spec"]["template"]["spec"]["containers"][0]["comand"] = ["python3"]
    assert any("'comand' was unexpected" in p for p in object_problems(job, "1.33", crd_dir))


def test_the_fixture_finds_the_same_crds_as_the_helper(crd_dir: Path) -> None:
    assert crd_dir.resolve() == default_crd_dir().resolve()


def broken(result: Synth, kind: str) -> dict[str, Any]:
    return copy.deepcopy(result.one(kind))


def test_rejects_replicas_as_a_string(synths: dict[str, Synth], crd_dir: Path) -> None:
    ray_cluster = broken(synths["defaults"], "RayCluster")
    ray_cluster["spec"]["workerGroupSpecs"][0]["replicas"] = "4"
    with pytest.raises(AssertionError, match=r"workerGroupSpecs\.0\.replicas: '4' is not of type 'integer'"):
        validate_k8s_objects([ray_cluster], "1.33", crd_dir)


def test_rejects_an_unknown_ray_field(synths: dict[str, Synth], crd_dir: Path) -> None:
    ray_cluster = broken(synths["defaults"], "RayCluster")
    ray_cluster["spec"]["headGroupSpec"]["serviceTyp"] = "ClusterIP"
    problems = object_problems(ray_cluster, "1.33", crd_dir)
    assert len(problems) == 1
    assert "'serviceTyp' was unexpected" in problems[0]


def test_rejects_a_missing_required_ray_field(synths: dict[str, Synth], crd_dir: Path) -> None:
    ray_job = broken(synths["job"], "RayJob")
    del ray_job["spec"]["clusterSelector"]
    ray_job["spec"]["submitterPodTemplate"] = {"spec": {}}  # containers is required in a PodSpec
    assert any("'containers' is a required property" in p for p in object_problems(ray_job, "1.33", crd_dir))


def test_rejects_an_unknown_core_field(synths: dict[str, Synth], crd_dir: Path) -> None:
    claim = broken(synths["defaults"], "PersistentVolumeClaim")
    claim["spec"]["volumeNmae"] = "x"
    with pytest.raises(AssertionError, match="'volumeNmae' was unexpected"):
        validate_k8s_objects([claim], "1.33", crd_dir)


def test_rejects_a_wrong_core_type(synths: dict[str, Synth], crd_dir: Path) -> None:
    storage_class = broken(synths["dynamic_storage"], "StorageClass")
    storage_class["parameters"]["perUnitStorageThroughput"] = 250
    assert object_problems(storage_class, "1.33", crd_dir)


def test_rejects_unknown_kinds_and_versions(crd_dir: Path) -> None:
    unknown = [
        {"apiVersion": "ray.io/v1", "kind": "RayThing", "metadata": {"name": "x"}},
        {"apiVersion": "ray.io/v2", "kind": "RayCluster", "metadata": {"name": "x"}},
        {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "x"}},
    ]
    for obj in unknown:
        assert object_problems(obj, "1.33", crd_dir), obj


def test_nothing_to_validate_fails(crd_dir: Path) -> None:
    with pytest.raises(AssertionError, match="no Kubernetes objects"):
        validate_k8s_objects([], "1.33", crd_dir)


def test_missing_crds_fail(tmp_path: Path) -> None:
    ray_cluster = {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": "x"}, "spec": {}}
    with pytest.raises(FileNotFoundError):
        validate_k8s_objects([ray_cluster], "1.33", tmp_path / "missing")
