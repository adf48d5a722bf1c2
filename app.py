#!/usr/bin/env python3
"""CDK entry point: read the configuration once, build every stack from it, check them with cdk-nag."""

import sys
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import cx_api
from cdk_nag import AwsSolutionsChecks

from config import CONFIG_FILE_KEY, AppConfig, ConfigError, load_config
from config.loader import read_config_file, shorten_line
from stacks.app_stacks import build_stacks
from stacks.manifests import write_manifests

# CloudFormation's largest template body (from S3, where CDK puts every template over 50 KB).
MAX_TEMPLATE_BYTES = 1_000_000


def read_config(app: cdk.App) -> AppConfig:
    """Defaults < the YAML file named by `-c config=path.yaml` < every other context key."""
    path = app.node.try_get_context(CONFIG_FILE_KEY)
    file_values: Any = read_config_file(str(path)) if path else None
    return load_config(app.node.get_all_context(), file_values)


def synthesize(app: cdk.App) -> None:
    """Read the config, build the stacks, synthesize and check them: every failure is a ConfigError."""
    try:
        config = read_config(app)
        # Some checks need the file system (a local chart directory): they raise ConfigError while building.
        stacks = build_stacks(app, config)
        cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(verbose=True))
        assembly = app.synth()
    except ConfigError:
        raise
    except Exception as error:  # a construct's or a validation plugin's check: still one line
        raise ConfigError([describe_failure(error)]) from None
    check_template_sizes(assembly)
    write_manifests(stacks.all(), Path(app.outdir))


def describe_failure(error: BaseException) -> str:
    """A construct's, jsii's or a validation plugin's exception as one line: its type and first line."""
    first = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    first = first.removeprefix("config error: ")
    return shorten_line(f"the app cannot be built from this configuration: {type(error).__name__}: {first}")


def check_template_sizes(assembly: cx_api.CloudAssembly) -> None:
    """CloudFormation refuses a template body over 1 MB at deploy time; say so at synth, naming the stack."""
    problems = []
    for stack in assembly.stacks:
        size = Path(assembly.directory, stack.template_file).stat().st_size
        if size > MAX_TEMPLATE_BYTES:
            problems.append(
                f"stack {stack.stack_name}: its template is {size} bytes, over CloudFormation's "
                f"{MAX_TEMPLATE_BYTES}-byte limit: shorten the config values it carries"
            )
    if problems:
        raise ConfigError(problems)


def main(app: cdk.App | None = None) -> None:
    """Synthesize `app` (a fresh one from the CLI's context by default); bad config exits 1, one line each."""
    try:
        synthesize(app or cdk.App())
    except ConfigError as error:
        for problem in error.problems:
            print(f"config error: {problem}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
