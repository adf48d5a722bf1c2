"""Teardown guard for dynamic storage: no CSI-created FSx file system outlives `cdk destroy`."""

from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct

from ..nag import acknowledge, nag_resource
from .polling_provider import PollingProvider

HANDLER_DIR = Path(__file__).resolve().parents[2] / "lambda" / "fsx_cleanup"


class FsxCleanup(Construct):
    """On delete, deletes every file system tagged `tag` and waits until FSx has removed them.

    Make the CSI driver depend on this resource: CloudFormation then deletes the driver first and this
    resource after it, so that a file system the driver did not finish deleting is still caught here.
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, tag: tuple[str, str], log_retention: logs.RetentionDays
    ) -> None:
        super().__init__(scope, construct_id)
        key, value = tag
        stack = cdk.Stack.of(self)
        file_systems = stack.format_arn(service="fsx", resource="file-system", resource_name="*")
        provider = PollingProvider(
            self,
            "Provider",
            handler_dir=HANDLER_DIR,
            statements=[
                iam.PolicyStatement(actions=["fsx:DescribeFileSystems"], resources=["*"]),
                iam.PolicyStatement(
                    actions=["fsx:DeleteFileSystem"],
                    resources=[file_systems],
                    conditions={"StringEquals": {f"aws:ResourceTag/{key}": value}},
                ),
            ],
            query_interval=cdk.Duration.seconds(30),
            # FSx for Lustre deletes in minutes; stay well inside CloudFormation's one-hour limit.
            total_timeout=cdk.Duration.minutes(45),
            log_retention=log_retention,
        )
        acknowledge(
            provider.role,
            "AwsSolutions-IAM5",
            "DescribeFileSystems has no resource-level permissions; DeleteFileSystem covers file-system/* "
            "because the CSI driver's file system ids are unknown here, but only those carrying this "
            "deployment's tag (aws:ResourceTag condition).",
            nag_resource(self, "*"),
            nag_resource(self, file_systems),
        )
        self.resource = cdk.CustomResource(
            self,
            "Resource",
            service_token=provider.service_token,
            resource_type="Custom::FsxCleanup",
            properties={"TagKey": key, "TagValue": value},
        )
