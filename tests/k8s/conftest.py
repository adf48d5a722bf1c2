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
from tests.support.k8s_validation import default_crd_dir  # noqa: E402


@pytest.fixture(scope="session")
def synths() -> dict[str, Synth]:
    return {name: synth(overrides) for name, overrides in SCENARIOS.items()}


@pytest.fixture(scope="session")
def crd_dir() -> Path:
    """The committed KubeRay CRD schemas. Missing is a failure, never a skip."""
    path = default_crd_dir()
    if not path.is_dir():
        pytest.fail(f"KubeRay CRD schemas missing at {path}: run `make imports`")
    return path
