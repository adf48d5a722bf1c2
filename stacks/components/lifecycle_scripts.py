"""The S3 bucket HyperPod nodes read their lifecycle scripts from, and the deployment that fills it."""

import hashlib
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_s3_deployment as s3_deployment
from constructs import Construct

from ..nag import acknowledge, managed_policy, nag_resource

SCRIPTS_DIR = Path(__file__).resolve().parents[2] / "lifecycle_scripts"
ON_CREATE = "on_create.sh"
# AmazonSageMakerClusterInstanceRolePolicy grants S3 reads only on buckets named sagemaker-*.
NAME_PREFIX = "sagemaker-"
NAME_INFIX = "-lc-"
MAX_BUCKET_NAME = 63
ACCOUNT_LENGTH = 12
LONGEST_REGION = 14  # e.g. ap-southeast-5; an environment-agnostic stack only knows a token
PREFIX_HASH_LENGTH = 8  # hex characters of sha256(prefix) that keep a shortened prefix unique
# What BucketDeployment's handler role is granted on the source and destination buckets (CDK's grants).
DEPLOYMENT_ACTIONS = ("s3:GetObject*", "s3:GetBucket*", "s3:List*", "s3:DeleteObject*", "s3:Abort*")


class LifecycleScripts(Construct):
    """Private, TLS-only bucket holding `lifecycle_scripts/`, removed with the stack."""

    def __init__(
        self, scope: Construct, construct_id: str, *, prefix: str, log_retention: logs.RetentionDays
    ) -> None:
        super().__init__(scope, construct_id)
        self.bucket = self._bucket(prefix)
        self.scripts = s3_assets.Asset(self, "Scripts", path=str(SCRIPTS_DIR))
        self.deployment = self._deployment(log_retention)
        self.source_s3_uri = f"s3://{self.bucket.bucket_name}/"
        self.on_create = ON_CREATE
        self._acknowledge()

    def _bucket(self, prefix: str) -> s3.Bucket:
        return s3.Bucket(
            self,
            "Bucket",
            bucket_name=bucket_name(cdk.Stack.of(self), prefix),
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            versioned=False,
            removal_policy=cdk.RemovalPolicy.DESTROY,
            auto_delete_objects=True,
        )

    def _deployment(self, log_retention: logs.RetentionDays) -> s3_deployment.BucketDeployment:
        log_group = logs.LogGroup(
            self, "DeploymentLogs", retention=log_retention, removal_policy=cdk.RemovalPolicy.DESTROY
        )
        return s3_deployment.BucketDeployment(
            self,
            "Deployment",
            destination_bucket=self.bucket,
            sources=[s3_deployment.Source.bucket(self.scripts.bucket, self.scripts.s3_object_key)],
            log_group=log_group,
            # The bucket empties itself on delete (auto_delete_objects); deleting twice gains nothing.
            retain_on_delete=True,
        )

    def _acknowledge(self) -> None:
        acknowledge(
            self.bucket,
            "AwsSolutions-S1",
            "Holds only copies of the lifecycle scripts in this repository (nothing secret); IAM fixes who "
            "touches it (CDK's deployment handler writes, the HyperPod node role reads), public access is "
            "blocked and TLS enforced. Access logs would record only those reads and writes, in a second "
            "bucket that needs its own retention and logging.",
        )
        acknowledge(
            self.deployment.handler_role,
            "AwsSolutions-IAM4",
            "CDK's BucketDeployment handler logs through the AWS managed Lambda logging policy CDK attaches.",
            managed_policy("service-role/AWSLambdaBasicExecutionRole"),
        )
        # The handler is a stack-wide singleton that owns the role; acknowledge on it, not the stack.
        handler = self.deployment.handler_role.node.scope
        acknowledge(
            handler,
            "AwsSolutions-IAM5",
            "CDK's BucketDeployment copies the script asset's objects from the CDK asset bucket into the "
            "lifecycle-script bucket, and prunes stale ones there: CDK's own object-level grants on exactly "
            "those two buckets.",
            *(f"Action::{action}" for action in DEPLOYMENT_ACTIONS),
            nag_resource(self, self.scripts.bucket.arn_for_objects("*")),
            nag_resource(self, self.bucket.arn_for_objects("*")),
        )
        acknowledge(
            handler,
            "AwsSolutions-L1",
            "CDK pins BucketDeployment's handler runtime to the one its bundled AWS CLI layer is built for.",
        )


def bucket_name(stack: cdk.Stack, prefix: str) -> str:
    """`sagemaker-<prefix>-lc-<account>-<region>`, within S3's 63 characters.

    Account and region make the name globally unique without a random suffix. When a long prefix and region
    would exceed the limit, the prefix is shortened and ends in a hash of the whole prefix, so that two
    prefixes sharing their first characters still get two buckets.
    """
    region_length = LONGEST_REGION if cdk.Token.is_unresolved(stack.region) else len(stack.region)
    room = MAX_BUCKET_NAME - len(NAME_PREFIX) - len(NAME_INFIX) - ACCOUNT_LENGTH - 1 - region_length
    return f"{NAME_PREFIX}{short_prefix(prefix, room)}{NAME_INFIX}{stack.account}-{stack.region}"


def short_prefix(prefix: str, room: int) -> str:
    """`prefix` if it fits in `room` characters, else its start, '-' and a hash of all of it (distinct
    prefixes stay distinct)."""
    if len(prefix) <= room:
        return prefix
    digest = hashlib.sha256(prefix.encode()).hexdigest()[:PREFIX_HASH_LENGTH]
    return f"{prefix[: room - PREFIX_HASH_LENGTH - 1].rstrip('-')}-{digest}"
