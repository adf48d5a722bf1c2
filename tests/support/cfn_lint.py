"""Run the real cfn-lint (with the repository's .cfnlintrc.yaml) and return its findings."""

import json
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from . import REPO

CFN_LINT = str(Path(sys.executable).with_name("cfn-lint"))


def cfn_lint(templates: Iterable[str | Path]) -> list[dict]:
    """Findings for `templates` (empty when clean). A crash or silent run is an error, never "no findings"."""
    files = [str(path) for path in templates]
    assert files, "no templates to lint"
    result = subprocess.run(
        [CFN_LINT, "--format", "json", *files],
        cwd=REPO,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    # JSON output is always a list, "[]" when clean; exit codes 2/4/8 flag errors/warnings/infos.
    assert result.stdout.strip().startswith("["), f"cfn-lint did not run: {result.stderr[-2000:]}"
    findings = json.loads(result.stdout)
    assert bool(findings) == bool(result.returncode), (result.returncode, findings)
    return findings
