"""Session fixtures: the default app is synthesized once, with cdk-nag, and shared by every stack test."""

import os

from tests.support import REPO

# jsii runs on the first `node` on PATH: use the pinned Node 22 from package.json, as the Makefile does.
os.environ["PATH"] = f"{REPO / 'node_modules/.bin'}{os.pathsep}{os.environ['PATH']}"

import pytest
from aws_cdk import cx_api

from config import AppConfig, load_config
from stacks.app_stacks import AppStacks
from tests.support.apps import synth_app


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
