"""Custom-resource events as this app's handlers receive them from the CDK Provider framework.

CloudFormation's request (as in powertools' tests/events/cloudformationCustomResource*.json) passes through
the framework, which replaces `ResponseURL` with "..." before invoking a handler (it answers CloudFormation
itself), and hands `is_complete` the request merged with `on_event`'s answer.
"""

from __future__ import annotations

from typing import Any

REGION = "us-east-1"
ACCOUNT = "123456789012"
STACK_ID = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/RayHyperPod/5b2d5a10-0a3e-11f0-9c1b-0affd1b2c3d4"
SERVICE_TOKEN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:RayHyperPod-ProviderframeworkonEvent-Ab12Cd34"


def custom_resource_event(
    request_type: str,
    *,
    resource_type: str,
    logical_id: str,
    properties: dict[str, Any],
    old_properties: dict[str, Any] | None = None,
    physical_id: str | None = None,
    request_id: str = "3a7c6f0e-5d1b-4e8a-9f2c-1b6d0e4a7c55",
) -> dict[str, Any]:
    """One request; CloudFormation sends properties as strings and adds ServiceToken to them."""
    event: dict[str, Any] = {
        "RequestType": request_type,
        "ServiceToken": SERVICE_TOKEN,
        "ResponseURL": "...",
        "StackId": STACK_ID,
        "RequestId": request_id,
        "LogicalResourceId": logical_id,
        "ResourceType": resource_type,
        "ResourceProperties": {"ServiceToken": SERVICE_TOKEN, **properties},
    }
    if old_properties is not None:
        event["OldResourceProperties"] = {"ServiceToken": SERVICE_TOKEN, **old_properties}
    if physical_id is not None:
        event["PhysicalResourceId"] = physical_id
    return event


def poll_event(event: dict[str, Any], on_event_answer: dict[str, Any]) -> dict[str, Any]:
    """What the framework passes to `is_complete`: the request merged with `on_event`'s answer."""
    return {**event, **on_event_answer}
