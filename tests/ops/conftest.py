"""Fake kubectl and aws executables on PATH: they record their arguments and answer from a table."""

import json
import os
import stat
import sys
from pathlib import Path

import pytest

FAKE_TOOL = """#!{python}
import json, os, sys, time
args = sys.argv[1:]
name = os.path.basename(sys.argv[0])
with open(os.environ["FAKE_TOOL_LOG"], "a") as log:
    log.write(json.dumps([name, *args]) + "\\n")
answers = json.load(open(os.environ["FAKE_TOOL_ANSWERS"]))
key = " ".join([name, *args])
if "port-forward" in args:
    local, remote = args[-1].split(":")
    if key in answers:  # what kubectl says when it cannot forward (a Pending pod, ...)
        print(answers[key], file=sys.stderr)
        sys.exit(1)
    if os.environ.get("FAKE_KUBECTL_BIND"):  # listen like kubectl does: a busy port fails as it does there
        import socket
        listener = socket.socket()
        try:
            listener.bind(("127.0.0.1", int(local)))
        except OSError as error:
            print("Unable to listen on port " + local + ": " + str(error), file=sys.stderr)
            print("error: unable to listen on any of the requested ports: [{{" + local + " " + remote + "}}]",
                  file=sys.stderr)
            sys.exit(1)
    print("Forwarding from 127.0.0.1:" + local + " -> " + remote, flush=True)
    time.sleep(600)
if key not in answers:
    print("fake " + name + ": no answer for: " + key, file=sys.stderr)
    sys.exit(1)
sys.stdout.write(answers[key])
"""


class FakeTools:
    def __init__(self, directory: Path) -> None:
        self.log = directory / "calls.jsonl"
        self.answers_file = directory / "answers.json"
        self.answers: dict[str, str] = {}
        self.answers_file.write_text("{}")

    def answer(self, command: str, output: object) -> None:
        """`command` is the whole argv joined by spaces; output is JSON-encoded unless it is a string."""
        self.answers[command] = output if isinstance(output, str) else json.dumps(output)
        self.answers_file.write_text(json.dumps(self.answers))

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]


@pytest.fixture
def fake_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeTools:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("kubectl", "aws"):
        script = bin_dir / name
        script.write_text(FAKE_TOOL.format(python=sys.executable))
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    tools = FakeTools(tmp_path)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_TOOL_LOG", str(tools.log))
    monkeypatch.setenv("FAKE_TOOL_ANSWERS", str(tools.answers_file))
    return tools


OUTPUTS = {
    "demo-network": {"VpcId": "vpc-1"},
    "demo-eks": {
        "ClusterName": "demo-eks",
        "ClusterArn": "arn:aws:eks:us-east-2:123456789012:cluster/demo-eks",
        "UpdateKubeconfigCommand": "aws eks update-kubeconfig --name demo-eks --region us-east-2",
    },
    "demo-hyperpod": {
        "HyperPodClusterName": "demo",
        "HyperPodClusterArn": "arn:aws:sagemaker:us-east-2:123456789012:cluster/abc123",
    },
    "demo-ray": {
        "ClusterName": "demo-eks",
        "RayNamespace": "ray",
        "RayHeadService": "ray-cluster-head-svc",
        "RayAuthSecret": "ray-cluster-token",
    },
    "other-eks": {"ClusterName": "not-this", "ClusterArn": "arn:aws:eks:eu-west-1:1:cluster/not-this"},
}


@pytest.fixture
def deployed(tmp_path: Path) -> tuple[Path, Path]:
    """cdk-outputs.json of prefix `demo` (beside another deployment) and the config it was deployed with."""
    outputs = tmp_path / "cdk-outputs.json"
    outputs.write_text(json.dumps(OUTPUTS, indent=2))
    config = tmp_path / "demo.yaml"
    config.write_text("prefix: demo\n")
    return outputs, config
