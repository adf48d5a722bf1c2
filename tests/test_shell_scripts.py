"""The shell scripts that run on nodes (lifecycle) and on users' machines (submit) pass shellcheck."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHELLCHECK = str(Path(sys.executable).with_name("shellcheck"))
SCRIPTS = sorted([*REPO.glob("lifecycle_scripts/*.sh"), *REPO.glob("jobs/*.sh"), REPO / ".ci/run"])


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_shellcheck_clean(script):
    result = subprocess.run(
        [SHELLCHECK, "--shell=bash", str(script)], check=False, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout


def test_shellcheck_can_fail(tmp_path):
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/usr/bin/env bash\nrm -rf $1/*\n")
    result = subprocess.run([SHELLCHECK, str(bad)], check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "SC2086" in result.stdout
