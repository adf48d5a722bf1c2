"""Pod Security admission: every namespace the app creates carries the labels, and every pod the app
synthesizes is admitted by its namespace's enforced level (evaluated by tests/support/pod_security.py,
which follows the Pod Security Standards page rule by rule; one failing copy per rule below)."""

import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cdk8s import Testing as Cdk8s

from config import load_config
from k8s_charts.gcs import GcsStoreChart
from k8s_charts.namespace import NamespaceChart, namespace_pod_security
from k8s_charts.ray_cluster import PREPARE_STORAGE
from tests.k8s.scenarios import SCENARIOS, Synth
from tests.support.pod_security import violations

IN_CLUSTER_STORE = {"gcs_fault_tolerance.enabled": "true", "gcs_fault_tolerance.store": "in_cluster"}


def pod_specs(objects: list[dict[str, Any]]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(namespace, name, pod spec) of every pod template in the objects."""
    for obj in objects:
        namespace, kind = obj["metadata"].get("namespace"), obj["kind"]
        if kind == "RayCluster":
            yield namespace, "head", obj["spec"]["headGroupSpec"]["template"]["spec"]
            for group in obj["spec"]["workerGroupSpecs"]:
                yield namespace, group["groupName"], group["template"]["spec"]
        elif kind in ("Job", "Deployment", "StatefulSet", "DaemonSet"):
            yield namespace, obj["metadata"]["name"], obj["spec"]["template"]["spec"]
        elif kind == "Pod":
            yield namespace, obj["metadata"]["name"], obj["spec"]


def store_objects() -> list[dict[str, Any]]:
    return Cdk8s.synth(GcsStoreChart(Cdk8s.app(), "store", config=load_config(IN_CLUSTER_STORE)))


def test_every_namespace_carries_enforce_warn_and_audit_labels() -> None:
    (namespace,) = Cdk8s.synth(NamespaceChart(Cdk8s.app(), "ns", name="ray", enforce="baseline"))
    assert namespace["metadata"]["labels"] == {
        "pod-security.kubernetes.io/enforce": "baseline",
        "pod-security.kubernetes.io/warn": "restricted",
        "pod-security.kubernetes.io/audit": "restricted",
    }


@pytest.mark.parametrize(
    ("context", "monitoring"),
    [({}, "privileged"), ({"observability.dcgm_exporter": "false"}, "baseline")],
)
def test_levels_per_namespace(context: dict[str, str], monitoring: str) -> None:
    # The DCGM exporter mounts a hostPath and adds SYS_ADMIN: nothing stricter than privileged admits it.
    assert namespace_pod_security(load_config(context)) == {
        "ray": "baseline",
        "kuberay": "baseline",
        "monitoring": monitoring,
    }


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_synthesized_pod_is_admitted_by_its_namespace(synths: dict[str, Synth], scenario: str) -> None:
    result = synths[scenario]
    levels = namespace_pod_security(result.config)
    found = list(pod_specs(result.objects()))
    assert found, "no pod templates synthesized"
    for namespace, name, pod in found:
        assert violations(pod, levels[namespace]) == [], (namespace, name)


def test_pods_this_app_writes_meet_restricted(synths: dict[str, Synth]) -> None:
    """The head, workers, supervisor and in-cluster store ask for no more than restricted allows: the
    namespace enforces baseline only for what KubeRay injects (autoscaler sidecar, submitter) and the FSx
    permission init container."""
    objects = synths["supervisor"].objects() + synths["defaults"].objects() + store_objects()
    names = set()
    for _, name, pod in pod_specs(objects):
        names.add(name)
        # The FSx permission step runs as root with CHOWN/DAC_OVERRIDE/FOWNER: baseline, checked above.
        found = [v for v in violations(pod, "restricted") if f": {PREPARE_STORAGE}" not in v]
        assert found == [], name
    assert {"head", "gpu-workers", "ray-cluster-gcs-store"} <= names


def store_pod() -> dict[str, Any]:
    (pod,) = [pod for _, _, pod in pod_specs(store_objects())]
    return pod


def container(pod: dict[str, Any]) -> dict[str, Any]:
    return pod["containers"][0].setdefault("securityContext", {})


Mutation = Callable[[dict[str, Any]], None]
# Rule (as the Pod Security Standards page names it) -> a change that breaks it, and the level it breaks.
FAILING_COPIES: list[tuple[str, str, Mutation]] = [
    ("HostProcess", "baseline", lambda p: container(p).update(windowsOptions={"hostProcess": True})),
    ("Host Namespaces", "baseline", lambda p: p.update(hostNetwork=True)),
    ("Host Namespaces", "baseline", lambda p: p.update(hostPID=True)),
    ("Privileged Containers", "baseline", lambda p: container(p).update(privileged=True)),
    ("Capabilities", "baseline", lambda p: container(p).update(capabilities={"add": ["SYS_ADMIN"]})),
    (
        "HostPath Volumes",
        "baseline",
        lambda p: p["volumes"].append({"name": "root", "hostPath": {"path": "/"}}),
    ),
    ("Host Ports", "baseline", lambda p: p["containers"][0]["ports"][0].update(hostPort=6379)),
    ("AppArmor", "baseline", lambda p: container(p).update(appArmorProfile={"type": "Unconfined"})),
    ("SELinux", "baseline", lambda p: container(p).update(seLinuxOptions={"type": "spc_t"})),
    ("/proc Mount Type", "baseline", lambda p: container(p).update(procMount="Unmasked")),
    ("Seccomp", "baseline", lambda p: container(p).update(seccompProfile={"type": "Unconfined"})),
    (
        "Sysctls",
        "baseline",
        lambda p: p["securityContext"].update(sysctls=[{"name": "kernel.msgmax", "value": "1"}]),
    ),
    (
        "Volume Types",
        "restricted",
        lambda p: p["volumes"].append({"name": "n", "nfs": {"server": "x", "path": "/"}}),
    ),
    ("Privilege Escalation", "restricted", lambda p: container(p).pop("allowPrivilegeEscalation")),
    ("Running as Non-root", "restricted", lambda p: p["securityContext"].pop("runAsNonRoot")),
    ("Running as Non-root user", "restricted", lambda p: container(p).update(runAsUser=0)),
    ("Seccomp (restricted)", "restricted", lambda p: p["securityContext"].pop("seccompProfile")),
    ("Capabilities (restricted)", "restricted", lambda p: container(p).pop("capabilities")),
    (
        "Capabilities (restricted)",
        "restricted",
        lambda p: container(p).update(capabilities={"drop": ["ALL"], "add": ["CHOWN"]}),
    ),
]


@pytest.mark.parametrize(("rule", "level", "mutate"), FAILING_COPIES)
def test_one_failing_copy_per_rule(rule: str, level: str, mutate: Mutation) -> None:
    pod = copy.deepcopy(store_pod())
    assert violations(pod, "restricted") == []
    mutate(pod)
    problems = violations(pod, level)
    assert [problem.split(":")[0] for problem in problems] == [rule], problems
    assert violations(pod, "privileged") == []
    if level == "restricted":  # a restricted-only rule is no baseline refusal
        assert violations(pod, "baseline") == []


def test_the_fsx_init_container_h19fsx_adds_is_baseline_not_restricted() -> None:
    """A root init container adding CHOWN/DAC_OVERRIDE/FOWNER (not privileged): baseline admits it."""
    pod = copy.deepcopy(store_pod())
    pod["initContainers"] = [
        {
            "name": "fsx-permissions",
            "securityContext": {
                "runAsUser": 0,
                "runAsNonRoot": False,
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"], "add": ["CHOWN", "DAC_OVERRIDE", "FOWNER"]},
            },
        }
    ]
    assert violations(pod, "baseline") == []
    assert {p.split(":")[0] for p in violations(pod, "restricted")} == {
        "Running as Non-root",
        "Running as Non-root user",
        "Capabilities (restricted)",
    }
