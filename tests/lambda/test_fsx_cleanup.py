"""The FSx cleanup handler: Stubber sequences validated against botocore's FSx model."""

import importlib.util
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

HANDLER = Path(__file__).resolve().parents[2] / "lambda" / "fsx_cleanup" / "index.py"
TAG = {"Key": "ray-on-hyperpod/deployment", "Value": "ray-hyperpod"}
PROPS = {
    "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:x",
    "TagKey": TAG["Key"],
    "TagValue": TAG["Value"],
}


@pytest.fixture
def cleanup(aws_env, monkeypatch):
    spec = importlib.util.spec_from_file_location("fsx_cleanup_index", HANDLER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    client = boto3.client("fsx", region_name="us-east-1")
    monkeypatch.setattr(module, "_client", lambda: client)
    with Stubber(client) as stubber:
        yield module, stubber
        stubber.assert_no_pending_responses()


def fs(fs_id: str, lifecycle: str, tags: list[dict]) -> dict:
    return {"FileSystemId": fs_id, "FileSystemType": "LUSTRE", "Lifecycle": lifecycle, "Tags": tags}


def event(request_type: str) -> dict:
    return {"RequestType": request_type, "PhysicalResourceId": "fsx-cleanup", "ResourceProperties": PROPS}


@pytest.mark.parametrize("request_type", ["Create", "Update"])
def test_create_and_update_touch_nothing(cleanup, request_type):
    module, _ = cleanup  # the Stubber fails on any call
    assert module.on_event(event(request_type), None) == {"PhysicalResourceId": "fsx-cleanup"}
    assert module.is_complete(event(request_type), None) == {"IsComplete": True}


def test_delete_removes_only_this_deployments_file_systems_and_waits(cleanup):
    module, stubber = cleanup
    other = {"Key": TAG["Key"], "Value": "another-deployment"}
    page1 = [fs("fs-0000000000000000a", "AVAILABLE", [TAG]), fs("fs-0000000000000000b", "AVAILABLE", [other])]
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
        "describe_file_systems", {"FileSystems": [fs("fs-0000000000000000b", "AVAILABLE", [other])]}, {}
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
