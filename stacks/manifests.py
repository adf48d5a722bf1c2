"""Readable copies of every Kubernetes manifest the app applies, for review next to the templates."""

from pathlib import Path

import aws_cdk as cdk
import yaml

from .kubernetes import ChartDeployer


def write_manifests(stacks: list[cdk.Stack], outdir: Path) -> list[Path]:
    """One YAML file per chart, `<stack>-<manifest id>.yaml`. CDK tokens appear as CloudFormation intrinsics
    (the file system id as `{Ref: FileSystem...}`, say): the deployed value comes from there."""
    target = outdir / "manifests"
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for stack in stacks:
        deployer = getattr(stack, "deployer", None)
        if not isinstance(deployer, ChartDeployer):
            continue
        for manifest_id, chart in deployer.charts.items():
            path = target / f"{stack.node.id}-{manifest_id}.yaml"
            path.write_text(yaml.safe_dump_all(stack.resolve(chart.to_json()), sort_keys=False))
            written.append(path)
    return written
