"""The chart build handler (lambda/hyperpod_chart_build): Stubber sequences validated against botocore's
CodeBuild model, and its pure build-outcome module."""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from tests.support.events import REGION, custom_resource_event, poll_event
from tests.support.handlers import fresh_handler, load_handler

URL = "s3://bucket/hyperpod-dependencies/abc.zip"
BUILD_ID = "chart-build:0f6c3a7e-1111-2222-3333-444455556666"
LOGS = {"deepLink": "https://console.aws.amazon.com/cloudwatch/home#logEvent:group=g;stream=s"}

outcome = load_handler("hyperpod_chart_build", "build_outcome")


@pytest.fixture
def handler(aws_env: None) -> Iterator[ModuleType]:
    """The handler module with a fresh client cache and log memory for each test."""
    with fresh_handler("hyperpod_chart_build", "_last_status") as module:
        yield module


@pytest.fixture
def stub(handler: ModuleType, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    """A real CodeBuild client for the handler, its requests and responses checked by botocore."""
    client = boto3.client("codebuild", region_name=REGION, config=handler.CLIENT_CONFIG)
    monkeypatch.setattr(handler, "_client", lambda: client)
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def event(request_type: str, **extra: Any) -> dict[str, Any]:
    properties = {"ProjectName": "chart-build", "ChartAssetURL": URL}
    request = custom_resource_event(
        request_type,
        resource_type="Custom::HyperPodChartBuild",
        logical_id="DependenciesChartBuild",
        properties=properties,
        old_properties={**properties, "ChartAssetURL": "s3://bucket/hyperpod-dependencies/old.zip"}
        if request_type == "Update"
        else None,
        physical_id=None if request_type == "Create" else URL,
    )
    return {**request, **extra}


def build(status: str, **extra: Any) -> dict:
    return {"builds": [{"id": BUILD_ID, "buildStatus": status, **extra}]}


def test_create_starts_the_build_and_waits_until_it_succeeds(handler, stub):
    stub.add_response("start_build", {"build": {"id": BUILD_ID}}, {"projectName": "chart-build"})
    started = handler.on_event(event("Create"), None)
    assert started == {"PhysicalResourceId": URL, "Data": {"BuildId": BUILD_ID, "ChartAssetURL": URL}}
    polled = poll_event(event("Create"), started)
    stub.add_response("batch_get_builds", build("IN_PROGRESS"), {"ids": [BUILD_ID]})
    assert handler.is_complete(polled, None) == {"IsComplete": False}
    stub.add_response("batch_get_builds", build("SUCCEEDED"), {"ids": [BUILD_ID]})
    assert handler.is_complete(polled, None) == {"IsComplete": True}


def test_a_failed_build_fails_the_resource_with_its_log_link(handler, stub):
    failed_phase = {
        "phaseType": "PRE_BUILD",
        "phaseStatus": "FAILED",
        "contexts": [{"message": "exit status 1"}],
    }
    stub.add_response(
        "batch_get_builds", build("FAILED", phases=[failed_phase], logs=LOGS), {"ids": [BUILD_ID]}
    )
    polled = event("Update", Data={"BuildId": BUILD_ID})
    with pytest.raises(handler.BuildFailedError, match="ended FAILED") as error:
        handler.is_complete(polled, None)
    assert "PRE_BUILD: exit status 1" in str(error.value)
    assert LOGS["deepLink"] in str(error.value)


def test_a_build_codebuild_no_longer_knows_fails_the_resource_by_name(handler, stub):
    stub.add_response("batch_get_builds", {"builds": [], "buildsNotFound": [BUILD_ID]}, {"ids": [BUILD_ID]})
    with pytest.raises(handler.BuildFailedError, match=f"chart build {BUILD_ID} not found"):
        handler.is_complete(event("Update", Data={"BuildId": BUILD_ID}), None)


def test_delete_makes_no_call(handler, stub):
    deleting = event("Delete")
    assert handler.on_event(deleting, None) == {"PhysicalResourceId": URL}
    assert handler.is_complete(deleting, None) == {"IsComplete": True}


def test_one_json_line_per_state_change_with_the_request_ids_and_never_the_event(handler, stub, capsys):
    stub.add_response("start_build", {"build": {"id": BUILD_ID}}, {"projectName": "chart-build"})
    started = handler.on_event(event("Update"), None)
    polled = poll_event(event("Update"), started)
    for status in ("IN_PROGRESS", "IN_PROGRESS", "IN_PROGRESS", "SUCCEEDED"):
        stub.add_response("batch_get_builds", build(status), {"ids": [BUILD_ID]})
        handler.is_complete(polled, None)

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line["action"], line.get("status"), line.get("previous")) for line in lines] == [
        ("build_started", None, None),
        ("status", "IN_PROGRESS", None),
        ("status", "SUCCEEDED", "IN_PROGRESS"),
    ]
    assert lines[0]["build"] == BUILD_ID and lines[0]["chart"] == URL
    for line in lines:
        assert line["requestId"] == polled["RequestId"]
        assert line["logicalResourceId"] == polled["LogicalResourceId"]
        assert line["requestType"] == "Update"
        assert not {"ResourceProperties", "ServiceToken", "StackId", "ResponseURL", "Data"} & set(line)


def test_the_client_retries_in_standard_mode_with_bounded_timeouts(handler):
    client = handler._client()
    assert client is handler._client()  # created once per container
    assert client.meta.service_model.service_name == "codebuild"
    # botocore counts max_attempts=8 as retries: nine attempts in all.
    assert client.meta.config.retries == {"mode": "standard", "total_max_attempts": 9}
    assert (client.meta.config.connect_timeout, client.meta.config.read_timeout) == (10, 30)


# --- build_outcome: what a build's state means for the resource -------------------------------------------


@pytest.mark.parametrize(("status", "done"), [("IN_PROGRESS", False), ("SUCCEEDED", True)])
def test_a_running_build_waits_and_a_succeeded_one_is_done(status, done):
    assert outcome.finished({"id": BUILD_ID, "buildStatus": status}) is done


@pytest.mark.parametrize("status", ["FAILED", "FAULT", "TIMED_OUT", "STOPPED"])
def test_every_other_final_status_fails_with_that_status(status):
    with pytest.raises(outcome.BuildFailedError, match=f"chart build {BUILD_ID} ended {status} "):
        outcome.finished({"id": BUILD_ID, "buildStatus": status})


def test_the_failure_names_each_unsuccessful_phase_and_each_of_its_messages():
    phases = [
        {"phaseType": "SUBMITTED", "phaseStatus": "SUCCEEDED", "contexts": [{"message": "ok"}]},
        {"phaseType": "INSTALL", "phaseStatus": "SUCCEEDED"},
        {
            "phaseType": "BUILD",
            "phaseStatus": "FAILED",
            "contexts": [{"message": "exit status 2"}, {"message": "helm: chart not found"}],
        },
        {"phaseType": "UPLOAD_ARTIFACTS", "phaseStatus": "TIMED_OUT", "contexts": [{}]},
        {"phaseType": "COMPLETED"},  # the last phase carries no status
    ]
    message = outcome.failure_message(
        {"id": BUILD_ID, "buildStatus": "FAILED", "phases": phases, "logs": LOGS}
    )
    assert message == (
        f"chart build {BUILD_ID} ended FAILED "
        "(BUILD: exit status 2; BUILD: helm: chart not found; UPLOAD_ARTIFACTS); "
        f"logs: {LOGS['deepLink']}"
    )


def test_a_failure_without_phases_or_logs_still_says_so():
    message = outcome.failure_message({"id": BUILD_ID, "buildStatus": "FAULT"})
    assert message == f"chart build {BUILD_ID} ended FAULT (no phase detail); logs: no log link"
