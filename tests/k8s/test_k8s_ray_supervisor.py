"""The supervisor Job (ray.job.runner=supervisor): runs jobs/supervisor.py beside the head, with the same
train.py arguments a RayJob would get, the cluster's token, and room kept for it on the head's node."""

import importlib.util
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import cdk8s
import pytest

from config import ConfigError, load_config
from config.capacity import RAYJOB_SUBMITTER, SUPERVISOR, cpu_millis, memory_mib, ray_pod_capacity
from k8s_charts import RayClusterChart, RayJobChart, RaySupervisorChart
from k8s_charts.ray_supervisor import SUPERVISOR_PATH
from tests.k8s.scenarios import IMAGE, SCENARIOS, Synth, synth
from tests.k8s.test_k8s_access_control import HEAD, allowed, policies

REPO = Path(__file__).resolve().parents[2]
_SPEC = importlib.util.spec_from_file_location("supervisor", REPO / "jobs" / "supervisor.py")
supervisor = importlib.util.module_from_spec(_SPEC)
sys.modules.setdefault("supervisor", supervisor)
_SPEC.loader.exec_module(supervisor)


def pod(result: Synth) -> dict[str, Any]:
    return result.one("Job")["spec"]["template"]["spec"]


def argv(result: Synth) -> list[str]:
    (container,) = pod(result)["containers"]
    return container["command"] + container["args"]


def test_only_built_when_enabled_with_the_supervisor_runner(synths: dict[str, Synth]) -> None:
    built = {name for name, result in synths.items() if "ray_supervisor" in result.manifests}
    assert built == {
        name
        for name, overrides in SCENARIOS.items()
        if overrides.get("ray.job.enabled") and overrides.get("ray.job.runner", "supervisor") == "supervisor"
    }
    assert load_config({"ray.job.enabled": "true"}).ray.job.runner == "supervisor"
    assert not any(o["kind"] == "RayJob" for o in synths["supervisor"].objects())


def test_argv_runs_the_supervisor_with_the_rayjob_entrypoints_train_arguments() -> None:
    """One derivation of train.py's arguments: what a RayJob would run, word for word."""
    overrides = {
        "ray.job.enabled": "true",
        "ray.job.name": "short",
        "ray.job.entrypoint_args": '["--max-steps", "10", "--num-workers", "2"]',
        "storage.mount_path": "/data",
        "ray.cluster_name": "other",
        "ray.job.pre_running_deadline_seconds": "600",
    }
    result = synth(overrides)
    rayjob = RayJobChart(cdk8s.App(), "job", config=load_config({**overrides, "ray.job.runner": "rayjob"}))
    command = argv(result)
    assert command[: command.index("--")] == [
        "python3", SUPERVISOR_PATH, "--address", "http://other-head-svc:8265",
        "--working-dir", "/home/ray/jobs/fsdp_ray", "--head-wait-s", "600",
    ]  # fmt: skip
    assert command[command.index("--") + 1 :] == shlex.split(rayjob.entrypoint)
    assert result.charts["ray_cluster"].head_service_name == "other-head-svc"


def test_supervisor_py_accepts_the_argv(synths: dict[str, Synth]) -> None:
    """The Job's arguments parse as jobs/supervisor.py reads them (it insists on --run-name)."""
    options = supervisor.parse_args(argv(synths["supervisor"])[2:])
    assert options.address == "http://ray-cluster-head-svc:8265"
    assert options.working_dir == "/home/ray/jobs/fsdp_ray"
    assert options.head_wait_s == 10800
    assert options.entrypoint[:4] == ["python3", "train.py", "--run-name", "fsdp-train"]
    assert supervisor.run_name(options.entrypoint) == "fsdp-train"
    # The image holds supervisor.py where the Job runs it.
    dockerfile = (REPO / "docker/ray/Dockerfile").read_text()
    assert f"COPY --chown=ray:users jobs/supervisor.py {SUPERVISOR_PATH}" in dockerfile


def test_the_token_comes_from_kuberays_secret(synths: dict[str, Synth]) -> None:
    result = synths["supervisor"]
    chart: RayClusterChart = result.charts["ray_cluster"]
    (container,) = pod(result)["containers"]
    assert container["env"] == [
        {"name": "RAY_AUTH_MODE", "value": "token"},
        {
            "name": "RAY_AUTH_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": chart.auth_secret_name, "key": chart.auth_secret_key}},
        },
    ]
    assert chart.auth_secret_name == result.one("RayCluster")["metadata"]["name"]


def test_scheduled_like_the_head_and_unprivileged(synths: dict[str, Synth]) -> None:
    result = synths["supervisor"]
    head = result.one("RayCluster")["spec"]["headGroupSpec"]["template"]["spec"]
    spec = pod(result)
    assert spec["nodeSelector"] == head["nodeSelector"]
    assert (
        spec["tolerations"]
        == head["tolerations"]
        == [{"key": "dedicated", "operator": "Equal", "value": "head", "effect": "NoSchedule"}]
    )
    assert spec["securityContext"] == head["securityContext"]
    (container,) = spec["containers"]
    assert container["securityContext"] == head["containers"][0]["securityContext"]
    assert spec["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in spec


def test_head_and_supervisor_fit_one_head_node_together(synths: dict[str, Synth]) -> None:
    """The head gives up exactly the supervisor's requests; both fit the room a node leaves for pods."""
    for name in ("supervisor", "job"):
        result = synths[name]
        group = result.config.hyperpod.group(result.config.ray.head.instance_group)
        room = ray_pod_capacity(group.instance_type, group.threads_per_core)
        head = result.one("RayCluster")["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
        cpu, memory = (
            cpu_millis(head["resources"]["requests"]["cpu"]),
            memory_mib(head["resources"]["requests"]["memory"]),
        )
        if name == "job":  # KubeRay's RayJob submitter has no node selector: room is kept for it
            assert (cpu, memory) == (
                room.cpu_millis - RAYJOB_SUBMITTER.cpu_millis,
                room.memory_mib - RAYJOB_SUBMITTER.memory_mib,
            )
            continue
        (container,) = pod(result)["containers"]
        requests = container["resources"]["requests"]
        assert container["resources"]["limits"] == requests
        assert (cpu_millis(requests["cpu"]), memory_mib(requests["memory"])) == (
            SUPERVISOR.cpu_millis,
            SUPERVISOR.memory_mib,
        )
        assert cpu + SUPERVISOR.cpu_millis == room.cpu_millis
        assert memory + SUPERVISOR.memory_mib == room.memory_mib


def test_a_configured_head_must_leave_room_for_the_supervisor() -> None:
    room = ray_pod_capacity("ml.m5.2xlarge", 1)
    whole = {"ray.head.cpu": f"{room.cpu_millis}m"}
    assert load_config(whole).ray.head.cpu == f"{room.cpu_millis}m"  # alone, the head may take it all
    with pytest.raises(ConfigError, match=r"ray\.head\.cpu=.*beside ray-job-supervisor \(250m, 256Mi\)"):
        load_config({**whole, "ray.job.enabled": "true"})


def test_pod_failures_replace_lost_pods_and_stop_a_supervisor_that_gave_up(synths: dict[str, Synth]) -> None:
    job = synths["supervisor"].one("Job")
    assert job["metadata"]["namespace"] == "ray"
    assert pod(synths["supervisor"])["restartPolicy"] == "Never"  # podFailurePolicy requires it
    ignore, fail = job["spec"]["podFailurePolicy"]["rules"]
    assert ignore == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
    assert fail["action"] == "FailJob"
    # The supervisor's own list: 1 (an uncaught Python error) and 6 (a refused token) get a new pod.
    assert fail["onExitCodes"] == {
        "containerName": "supervisor",
        "operator": "In",
        "values": list(supervisor.FINAL_EXIT_CODES),
    }
    assert 1 not in fail["onExitCodes"]["values"]
    assert supervisor.EXIT_UNAUTHORIZED not in fail["onExitCodes"]["values"]
    assert [c["name"] for c in pod(synths["supervisor"])["containers"]] == ["supervisor"]
    assert job["spec"]["backoffLimit"] > 0


def test_the_network_policies_let_it_reach_the_job_api(synths: dict[str, Synth]) -> None:
    result = synths["supervisor"]
    labels = result.one("Job")["spec"]["template"]["metadata"]["labels"]
    assert allowed(policies(result), ("ray", HEAD), ("ray", labels), 8265)


def test_the_job_name_changes_with_its_pod_template() -> None:
    """A Job's template is immutable: a new template must come as a new Job (prune deletes the old)."""

    def name(image: str, **overrides: str) -> str:
        config = load_config({"ray.job.enabled": "true", **overrides})
        app = cdk8s.App()
        cluster = RayClusterChart(app, "c", config=config, image=image)
        chart = RaySupervisorChart(app, "s", config=config, cluster=cluster, image=image, image_key=image)
        return chart.job_name

    base = name(IMAGE)
    assert base == name(IMAGE) and base.startswith("fsdp-train-sup-")
    assert name(IMAGE + "x") != base
    assert name(IMAGE, **{"ray.job.entrypoint_args": json.dumps(["--max-steps", "5"])}) != base
    longest = name(IMAGE, **{"ray.job.name": "j" * 47})
    assert len(longest) <= 63
