"""Customer-managed KMS keys, all made the same way: yearly rotation, deleted with their stack."""

import aws_cdk as cdk
from aws_cdk import aws_kms as kms
from constructs import Construct


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
