"""Synthesize the charts once per session, for a handful of configurations that exercise every branch."""

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # `pytest` (unlike `python -m pytest`) does not add the working directory
    sys.path.insert(0, str(REPO_ROOT))
# jsii runs the charts on `node`: prefer the pinned Node 22 (Node 20 works but prints an end-of-life banner).
_NODE_BIN = REPO_ROOT / "node_modules" / ".bin"
if _NODE_BIN.is_dir():
    os.environ["PATH"] = f"{_NODE_BIN}{os.pathsep}{os.environ.get('PATH', '')}"

from tests.k8s.scenarios import SCENARIOS, Synth, synth  # noqa: E402  (after PATH: cdk8s starts node)


@pytest.fixture(scope="session")
def synths() -> dict[str, Synth]:
    return {name: synth(overrides) for name, overrides in SCENARIOS.items()}


@pytest.fixture(scope="session")
def crd_dir() -> Path:
    """../shared/kuberay-v1.7.0/crds beside the checkout. Missing is a failure, never a skip."""
    path = REPO_ROOT.parent / "shared" / "kuberay-v1.7.0" / "crds"
    if not path.is_dir():
        pytest.fail(f"KubeRay CRDs missing at {path}: the project needs ../shared beside the checkout")
    return path
