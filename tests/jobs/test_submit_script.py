"""jobs/submit.sh finds the cluster names in `cdk deploy --outputs-file` JSON, pretty or minified."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "jobs" / "submit.sh"
OUTPUTS = {
    "demo-eks": {"ClusterName": "not-this-one", "RayHeadService": "nor-this"},
    "demo-ray": {
        "RayHeadService": "raycluster-head-svc",
        "RayNamespaceA1B2C3D4": "ray",
        "ClusterName": "demo",
    },
}


def _dry_run(*args: str) -> subprocess.CompletedProcess:
    cmd = ["bash", str(SCRIPT), "--dry-run", *args]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("indent", [2, None])
def test_reads_names_from_the_ray_stack_outputs(tmp_path: Path, indent: int | None) -> None:
    outputs = tmp_path / "cdk-outputs.json"
    outputs.write_text(json.dumps(OUTPUTS, indent=indent))
    done = _dry_run("--outputs-file", str(outputs), "--region", "us-east-2", "--", "--max-steps", "7")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "cluster=demo service=raycluster-head-svc namespace=ray"
    assert lines[1] == "aws eks update-kubeconfig --name demo --region us-east-2"
    assert lines[2] == "kubectl -n ray port-forward svc/raycluster-head-svc 8265:8265"
    assert lines[3].endswith(
        "--working-dir "
        f"{SCRIPT.parent / 'fsdp_ray'} -- python3 train.py --storage-path /fsx/ray_results --max-steps 7"
    )


def test_flags_win_and_missing_names_fail_clearly(tmp_path: Path) -> None:
    done = _dry_run("--cluster", "c", "--service", "s", "--namespace", "n", "--outputs-file", "/nonexistent")
    assert done.stdout.splitlines()[0] == "cluster=c service=s namespace=n"
    outputs = tmp_path / "o.json"
    outputs.write_text(json.dumps({"x-eks": {"ClusterName": "c"}}))
    failed = _dry_run("--outputs-file", str(outputs))
    assert failed.returncode == 2
    assert "missing ClusterName/RayHeadService/RayNamespace" in failed.stderr
