"""The RayJob: submits jobs/fsdp_ray to the existing cluster."""

import shlex
from typing import Any

import yaml

from k8s_charts import JOB_DIR
from tests.k8s.scenarios import SCENARIOS, Synth, synth


def job(result: Synth) -> dict[str, Any]:
    return result.one("RayJob")


def test_only_built_when_enabled_with_the_rayjob_runner(synths: dict[str, Synth]) -> None:
    with_job = {name for name, result in synths.items() if "ray_job" in result.manifests}
    assert with_job == {
        name
        for name, overrides in SCENARIOS.items()
        if overrides.get("ray.job.enabled") and overrides.get("ray.job.runner") == "rayjob"
    }


def test_selects_the_existing_cluster(synths: dict[str, Synth]) -> None:
    ray_job = job(synths["job"])
    assert ray_job["apiVersion"] == "ray.io/v1"
    assert ray_job["metadata"] == {"name": "fsdp-train", "namespace": "ray"}
    assert ray_job["spec"]["clusterSelector"] == {"ray.io/cluster": "ray-cluster"}
    assert "rayClusterSpec" not in ray_job["spec"]
    assert ray_job["spec"]["shutdownAfterJobFinishes"] is True
    # Room for the deep health checks of new instances before the job must be running.
    assert ray_job["spec"]["preRunningDeadlineSeconds"] == 10800


def test_entrypoint_runs_train_py_on_fsx(synths: dict[str, Synth]) -> None:
    spec = job(synths["job"])["spec"]
    assert shlex.split(spec["entrypoint"]) == [
        "python3",
        "train.py",
        "--run-name",
        "fsdp-train",
        "--num-workers",
        "32",
        "--gpus-per-worker",
        "1",
        "--max-steps",
        "1000",
        "--checkpoint-every",
        "50",
        "--storage-path",
        "/fsx/ray_results",
    ]
    assert yaml.safe_load(spec["runtimeEnvYAML"]) == {"working_dir": JOB_DIR}
    assert JOB_DIR == "/home/ray/jobs/fsdp_ray"


def test_entrypoint_follows_config() -> None:
    result = synth(
        {
            "ray.job.enabled": "true",
            "ray.job.runner": "rayjob",
            "ray.job.name": "short",
            "ray.job.entrypoint_args": '["--max-steps", "10", "--num-workers", "2"]',
            "storage.mount_path": "/data",
            "ray.cluster_name": "other",
            "ray.job.pre_running_deadline_seconds": "600",
        }
    )
    spec = job(result)["spec"]
    # The configured --num-workers comes after the derived one, so argparse keeps the configured value.
    assert spec["entrypoint"] == (
        "python3 train.py --run-name short --num-workers 32 --gpus-per-worker 1 --max-steps 10 "
        "--num-workers 2 --storage-path /data/ray_results"
    )
    assert spec["clusterSelector"] == {"ray.io/cluster": "other"}
    assert spec["shutdownAfterJobFinishes"] is False
    assert spec["preRunningDeadlineSeconds"] == 600
    assert result.charts["ray_job"].job_name == "short"
