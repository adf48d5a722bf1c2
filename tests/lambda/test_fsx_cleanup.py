"""The FSx cleanup handler (lambda/fsx_cleanup): Stubber sequences validated against botocore's FSx model, and
its pure selection module."""

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

TAG = {"Key": "ray-on-hyperpod/deployment", "Value": "ray-hyperpod"}
OTHER = {"Key": TAG["Key"], "Value": "another-deployment"}
PHYSICAL_ID = "fsx-cleanup"

selection = load_handler("fsx_cleanup", "fsx_selection")


@pytest.fixture
def handler(aws_env: None) -> Iterator[ModuleType]:
    """The handler module with a fresh client cache and log memory for each test."""
    with fresh_handler("fsx_cleanup", "_last_remaining") as module:
        yield module


@pytest.fixture
def cleanup(handler: ModuleType, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ModuleType, Stubber]]:
    """The handler using a real FSx client whose every request and response botocore checks."""
    client = boto3.client("fsx", region_name=REGION, config=handler.CLIENT_CONFIG)
    monkeypatch.setattr(handler, "_client", lambda: client)
    with Stubber(client) as stubber:
        yield handler, stubber
        stubber.assert_no_pending_responses()


def fs(fs_id: str, lifecycle: str, tags: list[dict]) -> dict:
    return {"FileSystemId": fs_id, "FileSystemType": "LUSTRE", "Lifecycle": lifecycle, "Tags": tags}


def event(request_type: str) -> dict[str, Any]:
    properties = {"TagKey": TAG["Key"], "TagValue": TAG["Value"]}
    return custom_resource_event(
        request_type,
        resource_type="Custom::FsxCleanup",
        logical_id="FsxCleanupResource",
        properties=properties,
        old_properties=properties if request_type == "Update" else None,
        physical_id=None if request_type == "Create" else PHYSICAL_ID,
    )


def logged(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


@pytest.mark.parametrize("request_type", ["Create", "Update"])
def test_create_and_update_touch_nothing(cleanup, request_type):
    module, _ = cleanup  # the Stubber fails on any call
    answer = module.on_event(event(request_type), None)
    assert answer == {"PhysicalResourceId": "fsx-cleanup"}
    assert module.is_complete(poll_event(event(request_type), answer), None) == {"IsComplete": True}


def test_delete_removes_only_this_deployments_file_systems_and_waits(cleanup):
    module, stubber = cleanup
    page1 = [fs("fs-0000000000000000a", "AVAILABLE", [TAG]), fs("fs-0000000000000000b", "AVAILABLE", [OTHER])]
    stubber.add_response("describe_file_systems", {"FileSystems": page1, "NextToken": "t"}, {})
    page2 = [fs("fs-0000000000000000c", "DELETING", [TAG]), fs("fs-0000000000000000d", "FAILED", [TAG])]
    stubber.add_response("describe_file_systems", {"FileSystems": page2}, {"NextToken": "t"})
    for fs_id in ("fs-0000000000000000a", "fs-0000000000000000d"):
        stubber.add_response(
            "delete_file_system", {"FileSystemId": fs_id, "Lifecycle": "DELETING"}, {"FileSystemId": fs_id}
        )
    assert module.on_event(event("Delete"), None) == {"PhysicalResourceId": "fsx-cleanup"}

    # Still deleting: wait. A file system a late PVC created meanwhile is deleted too.
    still = [fs("fs-0000000000000000a", "DELETING", [TAG]), fs("fs-0000000000000000e", "CREATING", [TAG])]
    stubber.add_response("describe_file_systems", {"FileSystems": still}, {})
    stubber.add_response(
        "delete_file_system",
        {"FileSystemId": "fs-0000000000000000e", "Lifecycle": "DELETING"},
        {"FileSystemId": "fs-0000000000000000e"},
    )
    assert module.is_complete(event("Delete"), None) == {"IsComplete": False}

    stubber.add_response(
        "describe_file_systems", {"FileSystems": [fs("fs-0000000000000000b", "AVAILABLE", [OTHER])]}, {}
    )
    assert module.is_complete(event("Delete"), None) == {"IsComplete": True}


def test_delete_errors_fail_the_resource(cleanup):
    module, stubber = cleanup
    stubber.add_response(
        "describe_file_systems", {"FileSystems": [fs("fs-0000000000000000a", "AVAILABLE", [TAG])]}, {}
    )
    stubber.add_client_error("delete_file_system", "AccessDenied", "not allowed")
    with pytest.raises(Exception, match="AccessDenied"):
        module.on_event(event("Delete"), None)


def test_one_json_line_per_state_change_with_the_request_ids_and_never_the_event(cleanup, capsys):
    module, stubber = cleanup
    deleting = {"FileSystems": [fs("fs-0000000000000000a", "DELETING", [TAG])]}
    stubber.add_response(
        "describe_file_systems", {"FileSystems": [fs("fs-0000000000000000a", "AVAILABLE", [TAG])]}, {}
    )
    stubber.add_response(
        "delete_file_system",
        {"FileSystemId": "fs-0000000000000000a", "Lifecycle": "DELETING"},
        {"FileSystemId": "fs-0000000000000000a"},
    )
    module.on_event(event("Delete"), None)
    for _ in range(3):  # three polls see the same file system deleting: one line, not three
        stubber.add_response("describe_file_systems", deleting, {})
        module.is_complete(event("Delete"), None)
    stubber.add_response("describe_file_systems", {"FileSystems": []}, {})
    module.is_complete(event("Delete"), None)

    lines = logged(capsys)
    assert [(line["action"], line.get("remaining")) for line in lines] == [
        ("delete_requested", None),
        ("waiting", ["fs-0000000000000000a"]),
        ("deleted", []),
    ]
    assert lines[0]["fileSystem"] == "fs-0000000000000000a" and lines[0]["lifecycle"] == "AVAILABLE"
    request = event("Delete")
    for line in lines:
        assert line["requestId"] == request["RequestId"]
        assert line["logicalResourceId"] == request["LogicalResourceId"]
        assert line["requestType"] == "Delete"
        assert not {"ResourceProperties", "ServiceToken", "StackId", "ResponseURL"} & set(line)


def test_the_client_retries_in_standard_mode_with_bounded_timeouts(handler):
    client = handler._client()
    assert client is handler._client()  # created once per container
    assert client.meta.service_model.service_name == "fsx"
    # botocore counts max_attempts=8 as retries: nine attempts in all.
    assert client.meta.config.retries == {"mode": "standard", "total_max_attempts": 9}
    assert (client.meta.config.connect_timeout, client.meta.config.read_timeout) == (10, 30)


# --- fsx_selection: which file systems are this deployment's, and which still need a delete -------------


def test_only_file_systems_carrying_exactly_this_tag_are_selected():
    renamed = {"Key": "another/deployment", "Value": TAG["Value"]}
    systems = [
        fs("fs-0000000000000000a", "AVAILABLE", [OTHER, TAG]),
        fs("fs-0000000000000000b", "AVAILABLE", [OTHER]),
        fs("fs-0000000000000000c", "AVAILABLE", [renamed]),
        {"FileSystemId": "fs-0000000000000000d", "Lifecycle": "AVAILABLE"},  # no Tags at all
        fs("fs-0000000000000000e", "DELETING", [TAG]),
    ]
    chosen = selection.tagged(systems, TAG["Key"], TAG["Value"])
    assert [s["FileSystemId"] for s in chosen] == ["fs-0000000000000000a", "fs-0000000000000000e"]


@pytest.mark.parametrize(
    ("lifecycle", "deleted"),
    [("AVAILABLE", True), ("CREATING", True), ("FAILED", True), ("MISCONFIGURED", True), ("DELETING", False)],
)
def test_every_lifecycle_but_deleting_gets_a_delete_call(lifecycle, deleted):
    system = fs("fs-0000000000000000a", lifecycle, [TAG])
    assert selection.to_delete([system]) == ([system] if deleted else [])
