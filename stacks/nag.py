"""cdk-nag acknowledgments and the finding text they name: every acknowledgment names the exact finding
(derived from the value the policy uses, never typed by hand) and says why it is acceptable."""

import json
from collections.abc import Callable
from typing import Any

import aws_cdk as cdk
from constructs import IConstruct


def acknowledge(scope: IConstruct, rule: str, reason: str, *applies_to: str) -> None:
    """Acknowledge AwsSolutions `rule` on `scope` and its children, optionally for specific findings only.

    `applies_to` narrows a granular rule (IAM4, IAM5) to the listed policies, actions or resources, so that a
    new wildcard added later is still reported.
    """
    ids = [f"AwsSolutions::{rule}[{finding}]" for finding in applies_to] or [f"AwsSolutions::{rule}"]
    cdk.Validations.of(scope).acknowledge(*(cdk.Acknowledgment(id=id_, reason=reason) for id_ in ids))


def managed_policy(name: str) -> str:
    """The finding text cdk-nag uses for an AWS managed policy."""
    return f"Policy::arn:<AWS::Partition>:iam::aws:policy/{name}"


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
