"""Every storage mode and the RayJob option synthesize with cdk-nag on, environment-agnostic and with an
explicit environment; every acknowledgment matches a finding; every log group keeps the one retention.

The environment-agnostic static app is the session's default app, and the environment-agnostic dynamic app
with the RayJob is `dynamic_app` in test_storage_platform_ray.py; this module adds the explicit-env pair.
"""

import json
from pathlib import Path

import pytest
from aws_cdk import cx_api

from config import load_config
from tests.support.apps import synth_app

ACCOUNT, REGION = "123456789012", "us-west-2"
# What a committed cdk.context.json answers for the VPC's AZ lookup in this account and region.
AZ_CONTEXT = {f"availability-zones:account={ACCOUNT}:region={REGION}": [f"{REGION}{z}" for z in "abc"]}
ENV = {"env.account": ACCOUNT, "env.region": REGION}
MODES = {
    "static-env-job": {**ENV, "ray.job.enabled": "true", "log_retention_days": "7"},
    "dynamic-env": {**ENV, "storage.mode": "dynamic", "log_retention_days": "7"},
}


@pytest.fixture(scope="module", params=sorted(MODES))
def env_app(request, tmp_path_factory) -> tuple[str, cx_api.CloudAssembly]:
    """cdk-nag runs in synth_app: an open finding (or a hand-typed appliesTo that no longer matches once the
    environment turns tokens into literals) raises here."""
    config = load_config(MODES[request.param])
    _, assembly = synth_app(config, tmp_path_factory.mktemp(request.param), AZ_CONTEXT)
    return request.param, assembly


def test_every_mode_synthesizes_with_an_explicit_environment(env_app):
    name, assembly = env_app
    report = json.loads((Path(assembly.directory) / "validation-report.json").read_text())
    assert [p["conclusion"] for p in report["pluginReports"] if p["pluginName"] == "AwsSolutions"] == [
        "success"
    ]
    stacks = {stack.id for stack in assembly.stacks}
    assert ("Storage" in stacks) == ("static" in name)
    assert all(stack.environment.account == ACCOUNT for stack in assembly.stacks)


def unused_acknowledgments(assembly: cx_api.CloudAssembly) -> list[tuple[str, str]]:
    """This app's AwsSolutions acknowledgments that suppressed no finding (CDK records each acknowledgment
    as `aws:cdk:acknowledged-rules` metadata; the validation report lists what each one suppressed)."""
    out = Path(assembly.directory)
    made = set()
    for metadata in out.glob("*.metadata.json"):
        for path, entries in json.loads(metadata.read_text()).items():
            made |= {
                (path.lstrip("/"), ack)
                for entry in entries
                if entry["type"] == "aws:cdk:acknowledged-rules"
                for ack in entry["data"]
                if ack.startswith("AwsSolutions::")  # CDK's own constructs acknowledge their own rules
            }
    report = json.loads((out / "validation-report.json").read_text())
    used = {
        (violation["acknowledgedAt"], violation["acknowledgedId"])
        for plugin in report["pluginReports"]
        for violation in plugin.get("suppressedViolations", [])
    }
    return sorted(made - used)


def test_no_acknowledgment_is_left_without_a_finding(env_app, default_app):
    for assembly in (env_app[1], default_app[1]):
        assert unused_acknowledgments(assembly) == []


def test_every_log_group_keeps_the_one_configured_retention(env_app):
    _, assembly = env_app
    retentions = {
        f"{stack.id}/{name}": resource["Properties"].get("RetentionInDays")
        for stack in assembly.stacks
        for name, resource in stack.template["Resources"].items()
        if resource["Type"] == "AWS::Logs::LogGroup"
    }
    assert len(retentions) >= 5
    assert set(retentions.values()) == {7}, retentions
