"""Reusable constructs: each owns one logical unit (its resources, roles and cdk-nag acknowledgments)."""

import json
from collections.abc import Callable
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from constructs import Construct, IConstruct

# The one runtime of this app's own handlers (lambda/): the latest Python, as cdk-nag's L1 asks, so that a
# runtime upgrade is a one-line change here and the handlers never drift apart.
HANDLER_RUNTIME = lambda_.Runtime.PYTHON_3_14


def encryption_key(scope: Construct, construct_id: str, description: str) -> kms.Key:
    """A customer-managed key with yearly rotation that `cdk destroy` schedules for deletion.

    7 days is KMS's shortest waiting period: the key (and what it encrypted) is gone soon after the stack.
    """
    return kms.Key(
        scope,
        construct_id,
        description=description,
        enable_key_rotation=True,
        removal_policy=cdk.RemovalPolicy.DESTROY,
        pending_window=cdk.Duration.days(7),
    )


def nag_resource(scope: IConstruct, value: str) -> str:
    """`Resource::...` as cdk-nag writes a policy resource (its flattenCfnReference), for appliesTo.

    Writing the text by hand breaks as soon as an environment is set (a token becomes a literal) or a
    logical id changes; deriving it from the same value the policy uses cannot drift.
    """
    return f"Resource::{_flatten(cdk.Stack.of(scope).resolve(value))}"


def nag_policy(scope: IConstruct, arn: Any) -> str:
    """`Policy::...` as cdk-nag writes a managed policy ARN (IAM4 appliesTo), from the value the role uses:
    conditional ARNs that CDK builds itself (Fn::If) come out exactly as cdk-nag prints them."""
    return f"Policy::{_flatten(cdk.Stack.of(scope).resolve(arn))}"


def _flatten(node: Any) -> str:
    if isinstance(node, str):
        return node.replace("${", "<").replace("}", ">")
    for intrinsic, flatten in _INTRINSICS.items():
        if intrinsic in node:
            return flatten(node[intrinsic])
    return json.dumps(node, separators=(",", ":"))  # cdk-nag's fallback: JSON.stringify


def _join(args: list[Any]) -> str:
    delimiter, items = args
    return delimiter.join(_flatten(item) for item in items)


_INTRINSICS: dict[str, Callable[[Any], str]] = {
    "Fn::Join": _join,
    "Fn::Sub": _flatten,
    "Fn::GetAtt": lambda args: f"<{_flatten(args[0])}.{_flatten(args[1])}>",
    "Fn::ImportValue": _flatten,
    "Ref": lambda name: f"<{_flatten(name)}>",
}
