"""Session fixtures: the default app is synthesized once, with cdk-nag, and shared by every stack test."""

import json
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# jsii runs on the first `node` on PATH: use the pinned Node 22 from package.json, as the Makefile does.
os.environ["PATH"] = f"{REPO / 'node_modules/.bin'}{os.pathsep}{os.environ['PATH']}"

import aws_cdk as cdk  # noqa: E402 (PATH first)
import pytest  # noqa: E402 (PATH first)
from aws_cdk import cx_api  # noqa: E402 (PATH first)
from cdk_nag import AwsSolutionsChecks  # noqa: E402 (PATH first)

from config import AppConfig, load_config  # noqa: E402 (PATH first)
from stacks.app_stacks import AppStacks, build_stacks  # noqa: E402 (PATH first)


def cdk_json_context() -> dict:
    """cdk.json's feature flags plus what the CLI adds: tests synthesize exactly what `cdk synth` does."""
    cli_defaults = {"aws:cdk:enable-path-metadata": True, "aws:cdk:enable-asset-metadata": True}
    return {**json.loads((REPO / "cdk.json").read_text())["context"], **cli_defaults}


def synth_app(
    config: AppConfig, outdir: Path, extra_context: dict | None = None
) -> tuple[AppStacks, cx_api.CloudAssembly]:
    """Build and synthesize the whole app with cdk-nag on: any unacknowledged finding raises here."""
    app = cdk.App(context={**cdk_json_context(), **(extra_context or {})}, outdir=str(outdir))
    stacks = build_stacks(app, config)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks())
    return stacks, app.synth()


@pytest.fixture(scope="session")
def default_config() -> AppConfig:
    return load_config({})


@pytest.fixture(scope="session")
def default_app(
    default_config: AppConfig, tmp_path_factory: pytest.TempPathFactory
) -> tuple[AppStacks, cx_api.CloudAssembly]:
    return synth_app(default_config, tmp_path_factory.mktemp("cdk.out"))


@pytest.fixture(scope="session")
def assembly(default_app: tuple[AppStacks, cx_api.CloudAssembly]) -> cx_api.CloudAssembly:
    return default_app[1]


@pytest.fixture(scope="session")
def templates(assembly: cx_api.CloudAssembly) -> dict[str, dict]:
    """Stack artifact id -> synthesized template."""
    return {stack.id: stack.template for stack in assembly.stacks}
