"""Apps for tests, each made one way: the whole app synthesized with cdk-nag (`synth_app`), an empty app
with the CLI's context (`cli_app`), app.py run as the CLI runs it (`run_app`), and the network and EKS
stacks alone, for tests of one stack or construct (`cluster_stacks`)."""

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_logs as logs
from aws_cdk import cx_api
from cdk_nag import AwsSolutionsChecks

from config import AppConfig
from stacks.app_stacks import AppStacks, build_stacks, cluster_access_of
from stacks.eks import ClusterAccess, EksStack
from stacks.network import NetworkStack

from . import REPO

TEST_CLUSTER_NAME = "test-eks"
RETENTION = logs.RetentionDays.ONE_MONTH


def cdk_json_context() -> dict:
    """cdk.json's feature flags plus what the CLI adds: tests synthesize exactly what `cdk synth` does."""
    cli_defaults = {"aws:cdk:enable-path-metadata": True, "aws:cdk:enable-asset-metadata": True}
    return {**json.loads((REPO / "cdk.json").read_text())["context"], **cli_defaults}


def run_app(context: dict) -> subprocess.CompletedProcess:
    """app.py as the CDK CLI runs it: context arrives in CDK_CONTEXT_JSON."""
    env = {**os.environ, "CDK_CONTEXT_JSON": json.dumps(context), "CDK_OUTDIR": "/nonexistent-never-written"}
    return subprocess.run(
        [sys.executable, "app.py"],
        check=False,
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def cli_app(outdir: Path, context: dict | None = None) -> cdk.App:
    """An empty app with the CLI's context (plus `context`), writing to `outdir`."""
    return cdk.App(context={**cdk_json_context(), **(context or {})}, outdir=str(outdir))


def synth_app(
    config: AppConfig, outdir: Path, extra_context: dict | None = None
) -> tuple[AppStacks, cx_api.CloudAssembly]:
    """Build and synthesize the whole app with cdk-nag on: any unacknowledged finding raises here."""
    app = cli_app(outdir, extra_context)
    stacks = build_stacks(app, config)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks())
    return stacks, app.synth()


@dataclass(frozen=True)
class ClusterStacks:
    network: NetworkStack
    eks: EksStack
    cluster_access: ClusterAccess


def cluster_stacks(app: cdk.App, config: AppConfig) -> ClusterStacks:
    """Network and EKS stacks of `config`, wired as stacks/app_stacks.py wires them (in `config.env`)."""
    env = cdk.Environment(account=config.env.account, region=config.env.region)
    network = NetworkStack(app, "Network", config=config.network, log_retention=RETENTION, env=env)
    eks = EksStack(
        app,
        "Eks",
        config=config.eks,
        vpc=network.vpc,
        private_subnets=network.private_subnets,
        node_security_group=network.node_security_group,
        cluster_name=TEST_CLUSTER_NAME,
        log_retention=RETENTION,
        env=env,
    )
    return ClusterStacks(network=network, eks=eks, cluster_access=cluster_access_of(network, eks))
