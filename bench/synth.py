"""Synth-time benchmark: the whole app against the floor of one aws_eks_v2 cluster, measured in the same run.

Each candidate runs in a fresh interpreter, as `cdk synth` runs app.py, so jsii start-up and imports count.
Runs alternate (floor, app, floor, app, ...) so that machine noise hits both alike; medians are compared.
Target (issue 2): the full app synthesizes in at most 2.0x the floor.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

FLOOR_APP = """
import aws_cdk as cdk
from aws_cdk import aws_eks_v2 as eks
from aws_cdk.lambda_layer_kubectl_v33 import KubectlV33Layer

app = cdk.App()
stack = cdk.Stack(app, "Floor")
eks.Cluster(
    stack, "Cluster", version=eks.KubernetesVersion.V1_33,
    default_capacity_type=eks.DefaultCapacityType.NODEGROUP, default_capacity=0,
    kubectl_provider_options=eks.KubectlProviderOptions(kubectl_layer=KubectlV33Layer(stack, "Kubectl")),
)
app.synth()
"""


def run_once(argv: list[str], context: dict) -> float:
    with tempfile.TemporaryDirectory() as outdir:
        env = {**os.environ, "CDK_OUTDIR": outdir, "CDK_CONTEXT_JSON": json.dumps(context)}
        start = time.perf_counter()
        subprocess.run(argv, cwd=REPO, env=env, check=True, capture_output=True)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    context = json.loads((REPO / "cdk.json").read_text())["context"]
    os.environ["PATH"] = f"{REPO / 'node_modules/.bin'}{os.pathsep}{os.environ['PATH']}"
    floor, full = [], []
    for _ in range(args.runs):
        floor.append(run_once([sys.executable, "-c", FLOOR_APP], context))
        full.append(run_once([sys.executable, "app.py"], context))
    floor_s, full_s = statistics.median(floor), statistics.median(full)
    print(f"floor (one aws_eks_v2 cluster): median {floor_s:.2f} s over {args.runs} runs {_fmt(floor)}")
    print(f"full app (all stacks, cdk-nag): median {full_s:.2f} s over {args.runs} runs {_fmt(full)}")
    print(f"ratio full/floor: {full_s / floor_s:.2f}x (target <= 2.0x)")


def _fmt(samples: list[float]) -> str:
    return "[" + ", ".join(f"{s:.2f}" for s in samples) + "]"


if __name__ == "__main__":
    main()
