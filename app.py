#!/usr/bin/env python3
"""CDK entry point: read the configuration once, build every stack from it, check them with cdk-nag."""

import sys
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from config import CONFIG_FILE_KEY, AppConfig, ConfigError, load_config
from config.loader import read_config_file
from stacks.app_stacks import build_stacks
from stacks.manifests import write_manifests


def read_config(app: cdk.App) -> AppConfig:
    """Defaults < the YAML file named by `-c config=path.yaml` < every other context key."""
    path = app.node.try_get_context(CONFIG_FILE_KEY)
    file_values: Any = read_config_file(str(path)) if path else None
    return load_config(app.node.get_all_context(), file_values)


def main(app: cdk.App | None = None) -> None:
    """Synthesize `app` (a fresh one from the CLI's context by default); bad config exits 1, one line each."""
    app = app or cdk.App()
    try:
        config = read_config(app)
        # Some checks need the file system (a local chart directory): they raise ConfigError while building.
        stacks = build_stacks(app, config)
    except ConfigError as error:
        for problem in error.problems:
            print(f"config error: {problem}", file=sys.stderr)
        sys.exit(1)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(verbose=True))
    app.synth()
    write_manifests(stacks.all(), Path(app.outdir))


if __name__ == "__main__":
    main()
