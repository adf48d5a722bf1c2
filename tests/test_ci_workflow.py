"""The CI workflow: every action pinned by a full commit SHA, and the live diff runs only reviewed code
(pushes to main, in an environment), read-only (templates compared, no change set)."""

import re

import yaml

from tests.support import REPO

WORKFLOW = yaml.safe_load((REPO / ".github/workflows/ci.yml").read_text())


def test_every_action_is_pinned_by_a_full_commit_sha() -> None:
    uses = [step["uses"] for job in WORKFLOW["jobs"].values() for step in job["steps"] if "uses" in step]
    assert uses and all(re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", use) for use in uses), uses


def test_the_live_diff_never_runs_pull_request_code_with_credentials() -> None:
    jobs = WORKFLOW["jobs"]
    with_credentials = [
        name for name, job in jobs.items() if job.get("permissions", {}).get("id-token") == "write"
    ]
    assert with_credentials == ["diff-deployed"]
    live = jobs["diff-deployed"]
    assert "github.event_name == 'push'" in live["if"] and "refs/heads/main" in live["if"]
    assert live["environment"] == "aws-diff"
    diff = next(step["run"] for step in live["steps"] if "cdk diff" in step.get("run", ""))
    assert "--method template" in diff
