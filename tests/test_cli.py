"""The pipeline as users and CI run it: the real CDK CLI synthesizes offline, and `cdk diff` against the
committed snapshots finds no change (what `make synth` and `make diff` do)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO

CDK = str(REPO / "node_modules/.bin/cdk")
OFFLINE = {"AWS_EC2_METADATA_DISABLED": "true", "CDK_DISABLE_CLI_TELEMETRY": "true"}


def run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, **OFFLINE, "PATH": f"{REPO / 'node_modules/.bin'}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(args, cwd=REPO, env=env, check=False, capture_output=True, text=True, **kwargs)


@pytest.fixture(scope="module")
def cli_out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "cdk.out"
    result = run([CDK, "synth", "--no-notices", "-q", "-o", str(out)], timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_cli_synth_writes_every_stack_and_the_manifests(cli_out):
    manifest = json.loads((cli_out / "manifest.json").read_text())
    stacks = [name for name, a in manifest["artifacts"].items() if a["type"] == "aws:cloudformation:stack"]
    assert stacks == ["Network", "Storage", "Eks", "Platform", "HyperPod", "GcsStore", "Ray", "Observability"]
    assert sorted(p.name for p in (cli_out / "manifests").glob("*.yaml")) == [
        "Observability-MonitoringNamespace.yaml",
        "Observability-MonitoringNetworkPolicies.yaml",
        "Platform-KuberayNamespace.yaml",
        "Ray-ClaimManifest.yaml",
        "Ray-GcsStoreManifest.yaml",
        "Ray-NamespaceManifest.yaml",
        "Ray-NetworkPolicyManifest.yaml",
        "Ray-RayClusterManifest.yaml",
    ]
    summary = run([sys.executable, "scripts/summary.py", str(cli_out)], timeout=60).stdout
    assert "ray-hyperpod-hyperpod" in summary and "FSx::FileSystem 1" in summary


def test_cdk_diff_against_the_snapshots_finds_no_change(cli_out):
    baseline = cli_out / "snapshot-baseline"
    prepared = run(
        [
            sys.executable,
            "scripts/snapshots.py",
            "prepare-diff",
            str(cli_out),
            "tests/snapshots",
            str(baseline),
        ],
        timeout=60,
    )
    assert prepared.returncode == 0, prepared.stderr
    for template in sorted(baseline.glob("*.template.json")):
        stack = template.name.removesuffix(".template.json")
        result = run(
            [
                CDK,
                "diff",
                stack,
                "--exclusively",
                "--app",
                str(cli_out),
                "--template",
                str(template),
                "--fail",
                "--no-notices",
            ],
            timeout=120,
        )
        assert result.returncode == 0, f"{stack}: {result.stdout[-2000:]}{result.stderr[-2000:]}"
