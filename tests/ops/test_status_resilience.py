"""Day two: the deployment found in CloudFormation (moto) without an outputs file, a status whose parts fail
on their own (a busy port, a Pending Grafana, a failed refresh in a watch), exit 3 on a Failed cluster,
the NVIDIA driver check, and one line for the errors a user causes."""

import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest
from moto import mock_aws
from rich.console import Console
from typer.testing import CliRunner

from ops import cli as ops_cli
from ops import hyperpod, kube
from ops.cli import app
from ops.outputs import deployment_from_aws, read_deployment
from ops.status import StatusView
from ops.tools import OpsError
from tests.ops.conftest import OUTPUTS
from tests.ops.test_status_and_access import REPO, _observed, _ray_answers, _sagemaker_stub

KUBECONFIG = "aws eks update-kubeconfig --name demo-eks --region us-east-2 --alias demo-eks"


def _create_stack(cloudformation, name: str, outputs: dict[str, str]) -> None:
    """A stack with these outputs (a placeholder resource: CloudFormation needs one)."""
    template = {
        "Resources": {"Bucket": {"Type": "AWS::S3::Bucket"}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    cloudformation.create_stack(StackName=name, TemplateBody=json.dumps(template))


@pytest.fixture
def cloudformation(monkeypatch):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-2")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        yield boto3.client("cloudformation", region_name="us-east-2")


def test_without_an_outputs_file_the_stacks_are_found_in_cloudformation(cloudformation, tmp_path) -> None:
    for name in ("demo-eks", "demo-hyperpod", "demo-ray", "other-eks"):
        _create_stack(cloudformation, name, OUTPUTS[name])
    deployment = deployment_from_aws(cloudformation, "demo", "us-east-2")
    assert (deployment.eks_cluster, deployment.region, deployment.hyperpod_cluster) == (
        "demo-eks",
        "us-east-2",
        "demo",
    )
    assert deployment.ray_auth_secret == "ray-cluster-token" and deployment.missing == ()
    # `ops outputs` writes the file `make deploy` would have written; status then reads it.
    config = tmp_path / "demo.yaml"
    config.write_text("prefix: demo\n")
    written = tmp_path / "cdk-outputs.json"
    result = CliRunner().invoke(app, ["--outputs-file", str(written), "--config", str(config), "outputs"])
    assert result.exit_code == 0, result.output
    assert json.loads(written.read_text()) == {
        n: OUTPUTS[n] for n in ("demo-eks", "demo-hyperpod", "demo-ray")
    }


def test_partial_and_missing_stacks_are_named(cloudformation) -> None:
    with pytest.raises(OpsError, match=r"no stack demo-eks in CloudFormation \(us-east-2\) .*: none"):
        deployment_from_aws(cloudformation, "demo", "us-east-2")
    _create_stack(cloudformation, "demo-eks", OUTPUTS["demo-eks"])
    _create_stack(cloudformation, "demo-hyperpod", {})  # still creating: no outputs yet
    deployment = deployment_from_aws(cloudformation, "demo", "us-east-2")
    assert deployment.missing == (
        "demo-hyperpod: CREATE_COMPLETE, no outputs yet",
        "demo-ray: not deployed",
    )


def test_a_partial_outputs_file_says_what_is_missing(deployed, fake_tools, monkeypatch) -> None:
    outputs, config = deployed
    values = json.loads(outputs.read_text())
    del values["demo-ray"]
    outputs.write_text(json.dumps(values))
    client, stub = _sagemaker_stub()
    monkeypatch.setattr(hyperpod, "sagemaker", lambda region: client)
    monkeypatch.setenv("COLUMNS", "200")
    _ray_answers(fake_tools)
    with stub:
        result = CliRunner().invoke(app, ["--outputs-file", str(outputs), "--config", str(config), "status"])
    assert result.exit_code == 0, result.output
    assert (
        "stack demo-ray: no outputs in the outputs file (`make outputs` rewrites it from AWS)"
        in result.output
    )


def _grafana_status(outputs: Path, config: Path, port: int) -> list[str]:
    return ["--outputs-file", str(outputs), "--config", str(config), "status", "--grafana-port", str(port)]


def test_a_busy_grafana_port_leaves_the_rest_of_the_status(deployed, fake_tools, monkeypatch) -> None:
    outputs, config = deployed
    _observed(outputs)
    client, stub = _sagemaker_stub()
    monkeypatch.setattr(hyperpod, "sagemaker", lambda region: client)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("FAKE_KUBECTL_BIND", "1")
    _ray_answers(fake_tools)
    with socket.socket() as busy:  # `make dashboard` in another terminal holds the port
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with stub:
            result = CliRunner().invoke(app, _grafana_status(outputs, config, port))
    assert result.exit_code == 0, result.output
    assert "GPU utilization: no tunnel to Grafana (kubectl port-forward exited: error: unable to listen" in (
        " ".join(result.output.split())
    )
    assert "HyperPod demo: InService" in result.output and "GCS fault tolerance: on" in result.output


def test_a_pending_grafana_leaves_the_rest_of_the_status(deployed, fake_tools, monkeypatch) -> None:
    outputs, config = deployed
    _observed(outputs)
    client, stub = _sagemaker_stub()
    monkeypatch.setattr(hyperpod, "sagemaker", lambda region: client)
    monkeypatch.setenv("COLUMNS", "200")
    _ray_answers(fake_tools)
    pending = "error: unable to forward port because pod is not running. Current status=Pending"
    fake_tools.answer("kubectl --context demo-eks -n monitoring port-forward svc/grafana 3999:80", pending)
    with stub:
        result = CliRunner().invoke(app, _grafana_status(outputs, config, 3999))
    assert result.exit_code == 0, result.output
    assert "Current status=Pending" in result.output
    assert "RayCluster not found" in result.output  # the Ray panel still shows


def test_the_watch_survives_a_failed_refresh_and_exits_3_on_a_failed_cluster(
    deployed, fake_tools, monkeypatch
) -> None:
    outputs, config = deployed
    monkeypatch.setenv("COLUMNS", "200")
    _ray_answers(fake_tools)
    states = iter(["Creating", "TRANSIENT", "Failed"])

    class SageMaker:
        def describe_cluster(self, ClusterName: str) -> dict:  # noqa: N803 (boto3's argument name)
            state = next(states)
            if state == "TRANSIENT":
                raise OpsError("kubectl get nodes failed: connection refused")
            return {"ClusterName": ClusterName, "ClusterStatus": state, "InstanceGroups": []}

        def get_paginator(self, name: str):
            return SimpleNamespace(paginate=lambda **_: [{"ClusterNodeSummaries": []}])

    monkeypatch.setattr(hyperpod, "sagemaker", lambda region: SageMaker())
    frames = _record_frames(monkeypatch)
    args = ["--outputs-file", str(outputs), "--config", str(config), "status", "--watch", "--interval", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 3, result.output
    assert len(frames) == 3  # the failed part did not end the watch
    assert "HyperPod demo: Creating" in frames[0] and "refreshed at 12:00:00" in frames[0]
    assert "HyperPod demo: kubectl get nodes failed: connection refused" in frames[1]
    assert "RayCluster not found" in frames[1]  # the other parts of that refresh still show
    assert "HyperPod demo: Failed" in frames[2]


def _record_frames(monkeypatch) -> list[str]:
    """Each view --watch shows, as text (rich's Live shows only the last one off a terminal)."""
    frames: list[str] = []

    class Recording:
        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

        def __enter__(self) -> "Recording":
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def update(self, renderable: object) -> None:
            console = Console(width=200, record=True, file=io.StringIO())
            console.print(renderable)
            frames.append(console.export_text())

    monkeypatch.setattr(ops_cli, "Live", Recording)
    monkeypatch.setattr(ops_cli, "time", SimpleNamespace(sleep=waits.append, strftime=lambda f: "12:00:00"))
    return frames


waits: list[float] = []


def test_a_failed_refresh_keeps_the_last_view_and_backs_off(monkeypatch) -> None:
    frames = _record_frames(monkeypatch)
    waits.clear()
    views = iter(
        [
            StatusView(["first"], done=False),
            OpsError("SageMaker: throttled"),
            StatusView(["second"], done=False),
            StatusView(["third"], failed=True),
        ]
    )

    def refresh() -> StatusView:
        view = next(views)
        if isinstance(view, OpsError):
            raise view
        return view

    view = ops_cli.watch_status(refresh, interval=10, max_backoff=15)
    assert view.failed
    assert (
        "first" in frames[1]
        and "refresh failed at 12:00:00: SageMaker: throttled; retrying in 15 s" in frames[1]
    )
    assert waits == [10, 15, 10]  # doubled after the failure (up to max_backoff), back to the interval after


def test_an_old_nvidia_driver_is_flagged(deployed, fake_tools, monkeypatch) -> None:
    outputs, config = deployed
    client, stub = _sagemaker_stub()
    monkeypatch.setattr(hyperpod, "sagemaker", lambda region: client)
    monkeypatch.setenv("COLUMNS", "200")
    _ray_answers(fake_tools)
    labels = {
        "hyperpod-i-0w1": {kube.DRIVER_FULL: "570.133.20"},
        "hyperpod-i-0w2": dict(zip(kube.DRIVER_PARTS, ("580", "95", "05"), strict=True)),
    }
    nodes = [{"metadata": {"name": name, "labels": node}} for name, node in labels.items()]
    fake_tools.answer("kubectl --context demo-eks get nodes -o json", {"items": nodes})
    with stub:
        result = CliRunner().invoke(app, ["--outputs-file", str(outputs), "--config", str(config), "status"])
    assert result.exit_code == 0, result.output
    assert "570.133.20" in result.output and "580.95.05" in result.output
    assert "NVIDIA driver older than R580 on hyperpod-i-0w1:" in " ".join(result.output.split())


def test_an_unknown_profile_is_one_line(deployed, tmp_path) -> None:
    _, config = deployed
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    done = subprocess.run(
        [sys.executable, "-m", "ops", "--config", str(config), "preflight"],
        capture_output=True, text=True, timeout=60, check=False, cwd=REPO,
        env={**clean, "PYTHONPATH": str(REPO), "AWS_PROFILE": "nope", "AWS_CONFIG_FILE": str(tmp_path / "x")},
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "error: AWS session: The config profile (nope) could not be found (set AWS_PROFILE to one in "
        "~/.aws/config)"
    )


def test_preflight_for_a_deploy_lists_every_missing_prerequisite(
    cloudformation, deployed, fake_tools, monkeypatch, tmp_path
) -> None:
    """AWS CLI v1, no Docker (the default config builds the image) and an account never bootstrapped."""
    _, config = deployed
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))  # the fake kubectl and aws only: no docker
    fake_tools.answer("aws --version", "aws-cli/1.29.0 Python/3.11 Linux botocore/1.31.0\n")
    result = CliRunner().invoke(app, ["--config", str(config), "preflight", "--deploy"])
    assert isinstance(result.exception, OpsError), result.output
    assert str(result.exception).split("; ") == [
        "the AWS CLI is aws-cli/1.29.0: `aws eks update-kubeconfig` needs v2",
        "Docker is not running (or not installed): the deploy builds the Ray image "
        "(or set ray.image_uri to an image you pushed)",
        "123456789012/us-east-2 is not bootstrapped: `npx cdk bootstrap aws://123456789012/us-east-2`",
    ]
    boto3.client("ssm", region_name="us-east-2").put_parameter(
        Name="/cdk-bootstrap/hnb659fds/version", Value="30", Type="String"
    )
    fake_tools.answer("aws --version", "aws-cli/2.27.0 Python/3.13 Linux\n")
    result = CliRunner().invoke(app, ["--config", str(config), "preflight", "--deploy"])
    assert str(result.exception).split("; ") == [
        "Docker is not running (or not installed): the deploy builds the Ray image "
        "(or set ray.image_uri to an image you pushed)"
    ]


def test_the_users_kubectl_context_stays_where_it_was(deployed, fake_tools) -> None:
    fake_tools.answer("kubectl config current-context", "my-other-cluster\n")
    fake_tools.answer(KUBECONFIG, "")
    fake_tools.answer("kubectl config use-context my-other-cluster", "")
    outputs, _ = deployed
    assert kube.use_cluster(read_deployment(outputs, "demo")) == "demo-eks"
    assert [" ".join(call) for call in fake_tools.calls()] == [
        "kubectl config current-context",
        KUBECONFIG,
        "kubectl config use-context my-other-cluster",
    ]
