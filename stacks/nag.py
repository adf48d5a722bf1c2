"""cdk-nag acknowledgments: every one names the exact finding and says why it is acceptable."""

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
