"""Every synthesized template passes cfn-lint and cdk-nag, and matches its reviewed snapshot."""

import json
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import aws_s3 as s3
from cdk_nag import AwsSolutionsChecks

from config import load_config
from scripts.snapshots import mask, render
from tests.support import REPO
from tests.support.apps import synth_app
from tests.support.cfn_lint import cfn_lint

SNAPSHOTS = REPO / "tests/snapshots"


def test_every_template_passes_cfn_lint(assembly):
    files = [Path(stack.template_full_path) for stack in assembly.stacks]
    assert len(files) >= 2
    findings = cfn_lint(files)
    assert findings == [], json.dumps(findings, indent=1)[:4000]


def test_cfn_lint_can_fail(tmp_path):
    """The lint step is live: a template with a wrong property type is reported."""
    bad = tmp_path / "bad.template.json"
    bad.write_text(
        json.dumps({"Resources": {"Q": {"Type": "AWS::SQS::Queue", "Properties": {"DelaySeconds": "x"}}}})
    )
    assert [finding["Rule"]["Id"] for finding in cfn_lint([bad])] == ["E3012"]


def test_cdk_nag_passes_on_the_default_app(assembly):
    """The session fixture synthesizes with AwsSolutionsChecks: reaching here means no open finding."""
    report = json.loads((Path(assembly.directory) / "validation-report.json").read_text())
    (nag,) = [plugin for plugin in report["pluginReports"] if plugin["pluginName"] == "AwsSolutions"]
    assert nag["conclusion"] == "success" and nag["violations"] == []
    # Every acknowledgment carries a reason that says something.
    reasons = {item["ruleName"]: item["reason"] for item in nag["suppressedViolations"]}
    assert reasons and all(len(reason) >= 40 for reason in reasons.values()), reasons


def test_cdk_nag_fails_on_an_unacknowledged_finding(tmp_path):
    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Insecure")
    s3.Bucket(stack, "NoTls")
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks())
    with pytest.raises(Exception, match="AwsSolutions-S10"):
        app.synth()


def test_templates_match_snapshots(assembly):
    """A reviewer sees every infrastructure change as a snapshot diff; `make snapshots` rewrites them."""
    for stack in assembly.stacks:
        snapshot = SNAPSHOTS / f"{stack.id}.template.json"
        assert snapshot.exists(), f"no snapshot for {stack.id}: run `make snapshots` and review the diff"
        assert render(mask(stack.template)) == snapshot.read_text(), (
            f"{stack.id} differs from {snapshot.relative_to(REPO)}: run `make snapshots` and review the diff"
        )


def test_the_other_modes_pass_cfn_lint_and_cdk_nag(tmp_path):
    """Dynamic storage, a RayJob, autoscaling and public endpoint: different resources, same checks."""
    config = load_config(
        {
            "storage.mode": "dynamic",
            "ray.job.enabled": "true",
            "ray.autoscaling.enabled": "true",
            "eks.endpoint_access": "public_and_private",
            "eks.public_access_cidrs": '["198.51.100.0/24"]',
        }
    )
    _, variant = synth_app(config, tmp_path)  # raises on any open cdk-nag finding
    findings = cfn_lint(Path(stack.template_full_path) for stack in variant.stacks)
    assert findings == [], json.dumps(findings, indent=1)[:4000]
