"""Fixtures for the custom resource handlers: fake credentials, the handler module, SageMaker clients."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from tests.support.handlers import fresh_handler, load_handler

REGION = "us-east-1"

# The cluster handler and its wait-condition poller (same folder); the folder is importable as in Lambda,
# so test modules import its siblings (`cfn_coerce`, `cluster_diff`) by their plain names.
_NODE_WAIT = load_handler("hyperpod_cluster", "node_wait")


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake credentials and no config files, so nothing can reach a real account."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def handler(aws_env: None) -> Iterator[ModuleType]:
    """The handler module with a fresh client cache and log memory for each test."""
    with fresh_handler("hyperpod_cluster", "_last_status") as module:
        yield module


@pytest.fixture
def sagemaker(handler: ModuleType, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A real botocore client the handler will use (wrap it in a Stubber or moto)."""
    client = boto3.client("sagemaker", region_name=REGION, config=handler.CLIENT_CONFIG)
    monkeypatch.setattr(handler, "_client", lambda: client)
    return client


@pytest.fixture
def stub(sagemaker: Any) -> Iterator[Stubber]:
    """A Stubber that validates every request and response against the service model."""
    with Stubber(sagemaker) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


@pytest.fixture
def moto_sagemaker(handler: ModuleType, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A SageMaker client backed by moto, used by the handler."""
    with mock_aws():
        client = boto3.client("sagemaker", region_name=REGION)
        monkeypatch.setattr(handler, "_client", lambda: client)
        yield client


@pytest.fixture
def node_wait(aws_env: None) -> ModuleType:
    """The wait-condition poller module (same folder as the cluster handler)."""
    return _NODE_WAIT


@pytest.fixture
def node_wait_stubs(
    node_wait: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Stubber, Stubber, Stubber]]:
    """Validating Stubbers for the poller's SageMaker, EventBridge and CloudFormation clients."""
    sagemaker = boto3.client("sagemaker", region_name=REGION, config=node_wait.CLIENT_CONFIG)
    events = boto3.client("events", region_name=REGION, config=node_wait.CLIENT_CONFIG)
    cloudformation = boto3.client("cloudformation", region_name=REGION, config=node_wait.CLIENT_CONFIG)
    monkeypatch.setattr(node_wait, "_sagemaker", lambda: sagemaker)
    monkeypatch.setattr(node_wait, "_events", lambda: events)
    monkeypatch.setattr(node_wait, "_cloudformation", lambda: cloudformation)
    with Stubber(sagemaker) as sagemaker_stub, Stubber(events) as events_stub, Stubber(cloudformation) as cfn:
        yield sagemaker_stub, events_stub, cfn
        sagemaker_stub.assert_no_pending_responses()
        events_stub.assert_no_pending_responses()
        cfn.assert_no_pending_responses()
