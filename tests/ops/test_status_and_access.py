"""The operations CLI finds the deployment in cdk-outputs.json, checks credentials and reports status."""

import base64
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import boto3
import pytest
from botocore.stub import Stubber
from typer.testing import CliRunner

from config import load_config
from ops import cli as ops_cli
from ops import hyperpod, kube
from ops.cli import app, principal_arn
from ops.outputs import read_deployment
from ops.tools import OpsError

REPO = Path(__file__).resolve().parents[2]


def test_the_deployment_is_the_config_prefixs_stacks(deployed) -> None:
    outputs, _ = deployed
    deployment = read_deployment(outputs, "demo")
    assert (deployment.eks_cluster, deployment.region, deployment.hyperpod_cluster) == (
        "demo-eks",
        "us-east-2",
        "demo",
    )
    assert (deployment.ray_namespace, deployment.ray_head_service) == ("ray", "ray-cluster-head-svc")
    assert deployment.ray_auth_secret == "ray-cluster-token"


def test_a_wrong_prefix_names_the_stacks_that_are_there(deployed) -> None:
    outputs, _ = deployed
    with pytest.raises(
        OpsError, match=r"no outputs of stack nope-eks \(stacks there: demo-eks, demo-hyperpod"
    ):
        read_deployment(outputs, "nope")


def _ops(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ops", *args],
        capture_output=True, text=True, timeout=60, check=False, cwd=cwd or REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )  # fmt: skip


def test_without_an_outputs_file_or_aws_the_cli_says_what_writes_it(tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    done = subprocess.run(
        [sys.executable, "-m", "ops", "--outputs-file", str(tmp_path / "cdk-outputs.json"), "status"],
        capture_output=True, text=True, timeout=60, check=False, cwd=REPO,
        env={**clean, "PYTHONPATH": str(REPO), "AWS_CONFIG_FILE": str(tmp_path / "none")},
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"error: {tmp_path / 'cdk-outputs.json'} not found (`make deploy` and `make outputs` write it) and "
        "CloudFormation did not tell: no AWS region: set AWS_REGION, `aws configure set region <region>` "
        "or env.region"
    )


def test_preflight_without_credentials_fails_fast_with_one_line(tmp_path: Path) -> None:
    env = {
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_DEFAULT_REGION": "us-west-2",
        "AWS_ACCESS_KEY_ID": "",
        "AWS_SECRET_ACCESS_KEY": "",
        "AWS_SESSION_TOKEN": "",
        "AWS_PROFILE": "",
    }
    env = {key: value for key, value in env.items() if value}
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    done = subprocess.run(
        [sys.executable, "-m", "ops", "preflight"],
        capture_output=True, text=True, timeout=60, check=False, cwd=REPO,
        env={**clean, "PYTHONPATH": str(REPO), **env},
    )  # fmt: skip
    assert done.returncode == 1
    assert (
        done.stderr.strip()
        == "error: checking your AWS credentials: no AWS credentials: `aws configure`, `aws sso login` "
        "or AWS_PROFILE=<profile>"
    )


@pytest.mark.parametrize(
    ("caller", "principal"),
    [
        ("arn:aws:sts::123456789012:assumed-role/Admin/alice", "arn:aws:iam::123456789012:role/Admin"),
        ("arn:aws:iam::123456789012:user/bob", "arn:aws:iam::123456789012:user/bob"),
        ("arn:aws-cn:sts::123456789012:assumed-role/Ops/x", "arn:aws-cn:iam::123456789012:role/Ops"),
    ],
)
def test_the_principal_for_an_access_entry_is_the_role_not_the_session(caller: str, principal: str) -> None:
    assert principal_arn(caller) == principal
    # The printed line is accepted by the config as it is.
    assert load_config({"eks.admin_principal_arns": json.dumps([principal])}).eks.admin_principal_arns == (
        principal,
    )


def _sagemaker_stub() -> tuple[object, Stubber]:
    client = boto3.client(
        "sagemaker", region_name="us-east-2", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    stub = Stubber(client)
    stub.add_response(
        "describe_cluster",
        {
            "ClusterArn": "arn:aws:sagemaker:us-east-2:123456789012:cluster/abc123",
            "ClusterName": "demo",
            "ClusterStatus": "InService",
            "InstanceGroups": [
                {
                    "InstanceGroupName": "head",
                    "InstanceType": "ml.m5.2xlarge",
                    "CurrentCount": 1,
                    "TargetCount": 1,
                    "Status": "InService",
                },
                {
                    "InstanceGroupName": "workers",
                    "InstanceType": "ml.p5.48xlarge",
                    "CurrentCount": 2,
                    "TargetCount": 4,
                    "Status": "Updating",
                },
            ],
        },
        {"ClusterName": "demo"},
    )
    launched = "2026-11-01T00:00:00Z"

    def node(group: str, instance: str, status: str, message: str = "") -> dict:
        state = {"Status": status, **({"Message": message} if message else {})}
        return {"InstanceGroupName": group, "InstanceId": instance, "InstanceType": "ml.p5.48xlarge",
                "LaunchTime": launched, "InstanceStatus": state}  # fmt: skip

    stub.add_response(
        "list_cluster_nodes",
        {"ClusterNodeSummaries": [node("head", "i-0head", "Running")], "NextToken": "page2"},
        {"ClusterName": "demo"},
    )
    stub.add_response(
        "list_cluster_nodes",
        {
            "ClusterNodeSummaries": [
                node("workers", "i-0w1", "Running"),
                node("workers", "i-0w2", "DeepHealthCheckInProgress", "InstanceStress"),
            ]
        },
        {"ClusterName": "demo", "NextToken": "page2"},
    )
    return client, stub


def test_cluster_state_reads_every_page_of_nodes_and_counts_progress() -> None:
    client, stub = _sagemaker_stub()
    with stub:
        state = hyperpod.cluster_state(client, "demo")
    stub.assert_no_pending_responses()
    assert [(g.name, g.current, g.target) for g in state.groups] == [("head", 1, 1), ("workers", 2, 4)]
    assert [n.instance_id for n in state.nodes] == ["i-0head", "i-0w1", "i-0w2"]
    assert state.ready_fraction == 3 / 5


def test_status_shows_groups_nodes_health_and_the_ray_cluster(deployed, fake_tools, monkeypatch) -> None:
    outputs, config = deployed
    client, stub = _sagemaker_stub()
    monkeypatch.setattr(hyperpod, "sagemaker", lambda region: client if region == "us-east-2" else None)
    monkeypatch.setenv("COLUMNS", "200")
    fake_tools.answer("aws eks update-kubeconfig --name demo-eks --region us-east-2 --alias demo-eks", "")
    health = {"metadata": {"name": "hyperpod-i-0w1", "labels": {kube.HEALTH_LABEL: "Schedulable"}}}
    fake_tools.answer("kubectl --context demo-eks get nodes -o json", {"items": [health]})
    fake_tools.answer(
        "kubectl --context demo-eks -n ray get rayclusters.ray.io -o json",
        {"items": [{"metadata": {"name": "ray-cluster"}, "status": {"state": "ready"}}]},
    )
    pod = {
        "metadata": {"name": "ray-cluster-head-x"},
        "status": {"phase": "Running"},
        "spec": {"nodeName": "n1"},
    }
    fake_tools.answer(
        "kubectl --context demo-eks -n ray get pods -l ray.io/cluster -o json", {"items": [pod]}
    )
    with stub:
        result = CliRunner().invoke(app, ["--outputs-file", str(outputs), "--config", str(config), "status"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "HyperPod demo: InService" in out
    assert "1/1" in out and "2/4" in out
    assert "DeepHealthCheckInProgress: InstanceStress" in out
    assert "i-0w1" in out and "Schedulable" in out
    assert "RayCluster ray-cluster: ready" in out and "ray-cluster-head-x" in out
    kubeconfig = "aws eks update-kubeconfig --name demo-eks --region us-east-2 --alias demo-eks"
    assert fake_tools.calls()[1] == kubeconfig.split()  # after asking kubectl for the current context


def test_the_token_comes_from_the_secret_key_auth_token(fake_tools) -> None:
    encoded = base64.b64encode(b"s3cr3t\n").decode()
    fake_tools.answer(
        "kubectl --context c -n ray get secret ray-cluster-token -o json", {"data": {"auth_token": encoded}}
    )
    assert kube.ray_token("c", "ray", "ray-cluster-token") == "s3cr3t"
    fake_tools.answer("kubectl --context c -n ray get secret other -o json", {"data": {}})
    with pytest.raises(OpsError, match="secret ray/other has no auth_token key"):
        kube.ray_token("c", "ray", "other")


def test_a_missing_kubectl_is_named_with_the_fix(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(OpsError, match="kubectl not found on PATH: install kubectl"):
        kube.ray_cluster("c", "ray")


class _PrometheusThroughGrafana(http.server.BaseHTTPRequestHandler):
    """Grafana's data-source proxy on a local port, answering one instant query like Prometheus does."""

    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).requests.append(self.path)
        samples = [
            {"metric": {"node": "hyperpod-i-0w1"}, "value": [1700000000.0, "87.5"]},
            {"metric": {"node": "hyperpod-i-0w2"}, "value": [1700000000.0, "3"]},
        ]
        body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": samples}})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def grafana_port() -> Iterator[int]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _PrometheusThroughGrafana)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


def _observed(outputs: Path) -> None:
    """Add the observability and GCS store stacks' outputs to a deployment."""
    values = json.loads(outputs.read_text())
    values["demo-observability"] = {"GrafanaNamespace": "monitoring", "GrafanaService": "grafana"}
    values["demo-gcs-store"] = {
        "GcsStoreKind": "elasticache",
        "GcsStoreService": "ray-cluster-gcs-store",
        "GcsReplicationGroupId": "demo-gcs",
    }
    outputs.write_text(json.dumps(values))


def _ray_answers(fake_tools) -> None:
    fake_tools.answer("aws eks update-kubeconfig --name demo-eks --region us-east-2 --alias demo-eks", "")
    fake_tools.answer("kubectl --context demo-eks get nodes -o json", {"items": []})
    fake_tools.answer("kubectl --context demo-eks -n ray get rayclusters.ray.io -o json", {"items": []})
    fake_tools.answer("kubectl --context demo-eks -n ray get pods -l ray.io/cluster -o json", {"items": []})


def test_status_shows_gcs_health_and_gpu_utilization_per_node(
    deployed, fake_tools, monkeypatch, grafana_port
) -> None:
    outputs, config = deployed
    _observed(outputs)
    client, stub = _sagemaker_stub()
    monkeypatch.setattr(hyperpod, "sagemaker", lambda region: client)
    monkeypatch.setenv("COLUMNS", "200")
    _ray_answers(fake_tools)
    fake_tools.answer(
        "aws elasticache describe-replication-groups --replication-group-id demo-gcs --query "
        "ReplicationGroups[0].Status --output text --region us-east-2",
        "available\n",
    )
    args = [
        "--outputs-file",
        str(outputs),
        "--config",
        str(config),
        "status",
        "--grafana-port",
        str(grafana_port),
    ]
    with stub:
        result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "GCS fault tolerance: on, store elasticache, healthy" in result.output
    assert "hyperpod-i-0w1" in result.output and "88 %" in result.output and "3 %" in result.output
    forward = ["kubectl", "--context", "demo-eks", "-n", "monitoring", "port-forward", "svc/grafana"]
    assert [*forward, f"{grafana_port}:80"] in fake_tools.calls()
    assert _PrometheusThroughGrafana.requests[-1].startswith(
        "/api/datasources/proxy/uid/prometheus/api/v1/query?"
    )


def test_status_says_when_the_store_is_unhealthy_and_grafana_is_silent(
    deployed, fake_tools, monkeypatch
) -> None:
    outputs, config = deployed
    _observed(outputs)
    client, stub = _sagemaker_stub()
    monkeypatch.setattr(hyperpod, "sagemaker", lambda region: client)
    _ray_answers(fake_tools)
    fake_tools.answer(
        "aws elasticache describe-replication-groups --replication-group-id demo-gcs --query "
        "ReplicationGroups[0].Status --output text --region us-east-2",
        "modifying\n",
    )
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    args = ["--outputs-file", str(outputs), "--config", str(config), "status", "--grafana-port", str(port)]
    with stub:
        result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "GCS fault tolerance: on, store elasticache, not healthy: modifying" in result.output
    assert "GPU utilization: Grafana did not answer" in result.output


def test_status_without_the_store_says_gcs_fault_tolerance_is_off(deployed, fake_tools, monkeypatch) -> None:
    outputs, config = deployed
    client, stub = _sagemaker_stub()
    monkeypatch.setattr(hyperpod, "sagemaker", lambda region: client)
    _ray_answers(fake_tools)
    with stub:
        result = CliRunner().invoke(app, ["--outputs-file", str(outputs), "--config", str(config), "status"])
    assert result.exit_code == 0, result.output
    assert "GCS fault tolerance: off" in result.output
    assert not any("port-forward" in call for call in fake_tools.calls())  # no Grafana: no tunnel


def test_dashboard_opens_ray_and_grafana_together(deployed, fake_tools, monkeypatch) -> None:
    outputs, config = deployed
    _observed(outputs)
    fake_tools.answer("aws eks update-kubeconfig --name demo-eks --region us-east-2 --alias demo-eks", "")

    def interrupt(seconds: float) -> None:
        raise KeyboardInterrupt

    # Only the CLI's own wait: subprocess's wait for the closed tunnels still needs the real sleep.
    monkeypatch.setattr(ops_cli, "time", SimpleNamespace(sleep=interrupt))
    result = CliRunner().invoke(app, ["--outputs-file", str(outputs), "--config", str(config), "dashboard"])
    assert result.exit_code == 0, result.output
    assert "Ray dashboard: http://127.0.0.1:8265" in result.output
    assert "Grafana: http://127.0.0.1:3000" in result.output
    forwards = [call[-2:] for call in fake_tools.calls() if "port-forward" in call]
    assert forwards == [["svc/ray-cluster-head-svc", "8265:8265"], ["svc/grafana", "3000:80"]]


@pytest.mark.parametrize(
    ("job", "line"),
    [
        (
            {"status": {"active": 1, "failed": 1}},
            "Supervisor job fsdp-train-sup-1a2b3c4d: running (1 pod, 1 replaced)",
        ),
        (
            {"status": {"conditions": [{"type": "Complete", "status": "True"}]}},
            "Supervisor job fsdp-train-sup-1a2b3c4d: the training run succeeded",
        ),
        (
            {"status": {"conditions": [{"type": "Failed", "status": "True", "message": "exit code 2"}]}},
            "Supervisor job fsdp-train-sup-1a2b3c4d: failed (exit code 2)",
        ),
        (None, "Supervisor job fsdp-train-sup-1a2b3c4d: not found"),
    ],
)
def test_status_shows_the_supervisor_jobs_state(deployed, fake_tools, monkeypatch, job, line) -> None:
    outputs, config = deployed
    values = json.loads(outputs.read_text())
    values["demo-ray"]["SupervisorJob"] = "fsdp-train-sup-1a2b3c4d"
    outputs.write_text(json.dumps(values))
    client, stub = _sagemaker_stub()
    monkeypatch.setattr(hyperpod, "sagemaker", lambda region: client)
    monkeypatch.setenv("COLUMNS", "200")
    _ray_answers(fake_tools)
    fake_tools.answer(
        "kubectl --context demo-eks -n ray get jobs --field-selector "
        "metadata.name=fsdp-train-sup-1a2b3c4d -o json",
        {"items": [job] if job else []},
    )
    with stub:
        result = CliRunner().invoke(app, ["--outputs-file", str(outputs), "--config", str(config), "status"])
    assert result.exit_code == 0, result.output
    assert line in result.output
