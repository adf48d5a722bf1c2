"""`make plan`'s manifest diff: a changed manifest of the synthesized Ray stack shows as a YAML line diff
against the deployed template (CloudFormation GetTemplate through a Stubber)."""

import copy
import json
from pathlib import Path

import boto3
from botocore.stub import Stubber
from typer.testing import CliRunner

from ops import aws
from ops.cli import app
from ops.plan import manifest_diffs, manifests
from tests.support import REPO

DEPLOYED = json.loads((REPO / "tests/snapshots/Ray.template.json").read_text())


def _claim_id(template: dict) -> str:
    return next(key for key in manifests(template) if key.startswith("ClaimManifest"))


def _planned() -> dict:
    """The deployed template with the claim's storage size changed inside its Fn::Join'd manifest."""
    planned = copy.deepcopy(DEPLOYED)
    join = planned["Resources"][_claim_id(planned)]["Properties"]["Manifest"]["Fn::Join"][1]
    first = next(i for i, part in enumerate(join) if isinstance(part, str) and '"storage":"' in part)
    join[first] = join[first].replace('"storage":"', '"storage":"9', 1)
    return planned


def test_a_manifest_change_is_a_yaml_line_diff() -> None:
    assert manifest_diffs("Ray", DEPLOYED, DEPLOYED) == []
    [diff] = manifest_diffs("Ray", DEPLOYED, _planned())
    changed = [line for line in diff.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert len(changed) == 2 and "storage: " in changed[0] and "storage: 9" in changed[1]
    assert "kind: PersistentVolume" in manifests(DEPLOYED)[_claim_id(DEPLOYED)]  # YAML, not a JSON string


def test_manifest_diff_reads_the_deployed_template_read_only(tmp_path: Path, monkeypatch) -> None:
    assembly = tmp_path / "cdk.out"
    assembly.mkdir()
    (assembly / "Ray.template.json").write_text(json.dumps(_planned()))
    stack = {"type": "aws:cloudformation:stack", "properties": {"templateFile": "Ray.template.json",
                                                                 "stackName": "demo-ray"}}  # fmt: skip
    (assembly / "manifest.json").write_text(json.dumps({"artifacts": {"Ray": stack}}))
    client = boto3.client(
        "cloudformation", region_name="us-east-2", aws_access_key_id="t", aws_secret_access_key="t"
    )
    stub = Stubber(client)
    stub.add_response(
        "get_template",
        {"TemplateBody": json.dumps(DEPLOYED)},
        {"StackName": "demo-ray", "TemplateStage": "Original"},
    )
    monkeypatch.setattr(aws, "client", lambda service, region=None: client)
    with stub:
        result = CliRunner().invoke(app, ["manifest-diff", str(assembly)])
    assert result.exit_code == 0, result.output
    assert "(planned)" in result.output and "1 manifest(s) change" in result.output
