"""The file system is the Ray user's before any Ray container starts: a root init step in every pod that
mounts it, run here for real against a root-owned directory (this machine runs the tests as root)."""

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from k8s_charts.kuberay import RAY_GID, RAY_UID
from k8s_charts.ray_job import storage_path
from tests.k8s.scenarios import SCENARIOS, Synth
from tests.support.k8s_validation import validate_k8s_objects

# Pod Security Standards, "baseline" profile, Capabilities: the only capabilities a container may add
# (kubernetes.io/docs/concepts/security/pod-security-standards/#baseline).
BASELINE_CAPABILITIES = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
    "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}  # fmt: skip
IS_ROOT = os.geteuid() == 0
SETPRIV = shutil.which("setpriv")


def pod_specs(node: Any) -> Iterator[dict[str, Any]]:
    """Every pod spec (an object with `containers`) anywhere in a manifest: the RayCluster's head and
    worker templates, a Job's template, whatever a later change adds."""
    if isinstance(node, dict):
        if isinstance(node.get("containers"), list):
            yield node
        for value in node.values():
            yield from pod_specs(value)
    elif isinstance(node, list):
        for value in node:
            yield from pod_specs(value)


def mounts_claim(spec: dict[str, Any], claim: str) -> str | None:
    """The name of the volume of `spec` backed by the claim, if any."""
    for volume in spec.get("volumes") or []:
        if (volume.get("persistentVolumeClaim") or {}).get("claimName") == claim:
            return volume["name"]
    return None


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_pod_that_mounts_the_file_system_prepares_it_first(
    synths: dict[str, Synth], crd_dir: Path, scenario: str
) -> None:
    result = synths[scenario]
    config = result.config
    prepared = 0
    for spec in pod_specs(result.objects()):
        volume = mounts_claim(spec, config.storage.claim_name)
        if volume is None:
            continue
        first = spec["initContainers"][0]
        assert first["name"] == "prepare-storage"
        assert first["volumeMounts"] == [{"name": volume, "mountPath": config.storage.mount_path}]
        assert first["command"][-2:] == [config.storage.mount_path, storage_path(config)]
        security = first["securityContext"]
        assert security["capabilities"]["drop"] == ["ALL"]
        assert set(security["capabilities"]["add"]) <= BASELINE_CAPABILITIES
        assert security["privileged"] is False and security["allowPrivilegeEscalation"] is False
        prepared += 1
    # The head and every worker group: a walk that found nothing must not pass.
    assert prepared == 1 + len(config.ray.worker_groups)
    validate_k8s_objects(result.objects(), config.eks.version, crd_dir)


@pytest.mark.parametrize("scenario", ["supervisor", "job"])
def test_the_job_runners_do_not_write_to_the_file_system(synths: dict[str, Synth], scenario: str) -> None:
    """The supervisor and KubeRay's RayJob submitter only call the job API; the driver writes, on the head,
    whose pod prepared the file system."""
    result = synths[scenario]
    runner = result.one("Job" if scenario == "supervisor" else "RayJob")
    assert not [s for s in pod_specs(runner) if mounts_claim(s, result.config.storage.claim_name)]


@pytest.fixture
def fresh_file_system() -> Iterator[Path]:
    """A directory like a new FSx file system's root: root:root 0755, under parents anyone may traverse."""
    base = Path(tempfile.mkdtemp(prefix="fsx-prepare-"))
    try:
        base.chmod(0o755)
        root = base / "fsx"
        root.mkdir(mode=0o755)
        os.chown(root, 0, 0)
        yield root
    finally:
        shutil.rmtree(base)


def prepare_step(result: Synth, root: Path) -> list[str]:
    """The head's init command as synthesized, with the mount path moved to `root`."""
    cluster = result.one("RayCluster")
    command = cluster["spec"]["headGroupSpec"]["template"]["spec"]["initContainers"][0]["command"]
    mount = result.config.storage.mount_path.rstrip("/")
    return [str(root) + arg[len(mount) :] if arg.startswith(mount) else arg for arg in command]


def run_with_only(capabilities: list[str], command: list[str]) -> subprocess.CompletedProcess[str]:
    """As root, but with every capability outside `capabilities` gone, like the init container."""
    keep = ",".join(["-all", *(f"+{c.lower()}" for c in capabilities)])
    return subprocess.run(
        [SETPRIV, f"--bounding-set={keep}", "--inh-caps=-all", "--", *command],
        capture_output=True,
        text=True,
        check=False,
    )


def write_as_ray_user(root: Path) -> subprocess.CompletedProcess[str]:
    """What Ray Train does first as the pods' user: create the run's directory and a checkpoint file."""

    def become_ray() -> None:
        os.setgroups([])
        os.setgid(RAY_GID)
        os.setuid(RAY_UID)

    run = root / "ray_results" / "fsdp-train" / "checkpoint_000000"
    return subprocess.run(
        ["/bin/sh", "-c", 'mkdir -p "$1" && echo ok > "$1/model.pt"', "write", str(run)],
        capture_output=True,
        text=True,
        check=False,
        preexec_fn=become_ray,
    )


needs_root = pytest.mark.skipif(
    not IS_ROOT or SETPRIV is None, reason="needs root and util-linux setpriv to run the init step"
)


@needs_root
def test_the_ray_user_cannot_write_to_a_fresh_file_system_without_the_step(fresh_file_system: Path) -> None:
    denied = write_as_ray_user(fresh_file_system)
    assert denied.returncode != 0
    assert "Permission denied" in denied.stderr


@needs_root
@pytest.mark.parametrize("scenario", ["defaults", "dynamic_storage"])
def test_the_synthesized_step_makes_the_file_system_writable_for_the_ray_user(
    synths: dict[str, Synth], fresh_file_system: Path, scenario: str
) -> None:
    result = synths[scenario]
    capabilities = result.one("RayCluster")["spec"]["headGroupSpec"]["template"]["spec"]["initContainers"][0][
        "securityContext"
    ]["capabilities"]["add"]
    step = prepare_step(result, fresh_file_system)
    for _ in range(2):  # every pod start runs it again
        ran = run_with_only(capabilities, step)
        assert ran.returncode == 0, ran.stderr
    for directory in (fresh_file_system, fresh_file_system / "ray_results"):
        assert (directory.stat().st_uid, directory.stat().st_gid) == (RAY_UID, RAY_GID)
    written = write_as_ray_user(fresh_file_system)
    assert written.returncode == 0, written.stderr


@needs_root
def test_the_step_repairs_a_restored_file_system_owned_by_someone_else_without_a_recursive_chown(
    synths: dict[str, Synth], fresh_file_system: Path
) -> None:
    """After a restore the root may belong to another user (mode 0755): creating in it as root needs
    DAC_OVERRIDE, and what lies deeper keeps its owner (no walk over terabytes of checkpoints)."""
    old_run = fresh_file_system / "ray_results" / "old-run"
    old_run.mkdir(parents=True)
    for path in (fresh_file_system, fresh_file_system / "ray_results", old_run):
        os.chown(path, 2000, 2000)
    capabilities = ["CHOWN", "DAC_OVERRIDE", "FOWNER"]
    ran = run_with_only(capabilities, prepare_step(synths["defaults"], fresh_file_system))
    assert ran.returncode == 0, ran.stderr
    assert (fresh_file_system / "ray_results").stat().st_uid == RAY_UID
    assert old_run.stat().st_uid == 2000
    assert write_as_ray_user(fresh_file_system).returncode == 0


@needs_root
def test_without_dac_override_root_cannot_create_in_a_root_it_does_not_own(
    synths: dict[str, Synth], fresh_file_system: Path
) -> None:
    """Why DAC_OVERRIDE is in the list: the same step with CHOWN and FOWNER only fails on a restored root."""
    os.chown(fresh_file_system, 2000, 2000)
    ran = run_with_only(["CHOWN", "FOWNER"], prepare_step(synths["defaults"], fresh_file_system))
    assert ran.returncode != 0
    assert "Permission denied" in ran.stderr
