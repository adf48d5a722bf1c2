"""A custom-resource provider for this app's boto3 handlers: on_event starts, is_complete polls.

One place for what every such provider needs: the handlers on the app's runtime with their own log group,
the CDK Provider framework with the waiter's logging on, retention everywhere, and the cdk-nag findings
that the framework's own roles raise (acknowledged with reasons, narrowed to these functions).
"""

from collections.abc import Mapping, Sequence
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import custom_resources as cr
from constructs import Construct

from ..nag import acknowledge, managed_policy, nag_resource
from .runtime import HANDLER_RUNTIME

# The framework functions the waiter state machine invokes (any version, <arn>:*); framework-onEvent is
# invoked by CloudFormation through its own permission, with no wildcard.
WAITER_FUNCTIONS = ("framework-isComplete", "framework-onTimeout")
DEFAULT_HANDLER_TIMEOUT = cdk.Duration.minutes(2)


class PollingProvider(Construct):
    """`index.on_event` / `index.is_complete` from `handler_dir`, both running as one role: `role`, or a new
    one holding `statements`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        handler_dir: Path,
        query_interval: cdk.Duration,
        total_timeout: cdk.Duration,
        log_retention: logs.RetentionDays,
        statements: Sequence[iam.PolicyStatement] = (),
        role: iam.Role | None = None,
        handler_timeout: cdk.Duration = DEFAULT_HANDLER_TIMEOUT,
        environment: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self._retention = log_retention
        self.role = role or iam.Role(
            self, "HandlerRole", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com")
        )
        for statement in statements:
            self.role.add_to_policy(statement)
        handler_logs = self._log_group("HandlerLogs")
        handler_logs.grant_write(self.role)
        self.handlers = [
            lambda_.Function(
                self,
                name,
                runtime=HANDLER_RUNTIME,
                code=lambda_.Code.from_asset(str(handler_dir), exclude=["README.md", "__pycache__", "*.pyc"]),
                handler=entry,
                role=self.role,
                timeout=handler_timeout,
                memory_size=256,
                environment=dict(environment or {}),
                # Both entry points in one group: a request's story (on_event, then each poll) reads in order.
                log_group=handler_logs,
            )
            for name, entry in (("OnEvent", "index.on_event"), ("IsComplete", "index.is_complete"))
        ]
        self.provider = cr.Provider(
            self,
            "Provider",
            on_event_handler=self.handlers[0],
            is_complete_handler=self.handlers[1],
            query_interval=query_interval,
            total_timeout=total_timeout,
            log_group=self._log_group("ProviderLogs"),
            # The framework disables the waiter's logging unless told otherwise, even with log options.
            disable_waiter_state_machine_logging=False,
            waiter_state_machine_log_options=cr.LogOptions(
                destination=self._log_group("WaiterLogs"),
                level=sfn.LogLevel.ALL,
                include_execution_data=False,
            ),
        )
        self._acknowledge()

    @property
    def service_token(self) -> str:
        return self.provider.service_token

    def _log_group(self, construct_id: str) -> logs.LogGroup:
        return logs.LogGroup(
            self, construct_id, retention=self._retention, removal_policy=cdk.RemovalPolicy.DESTROY
        )

    def _acknowledge(self) -> None:
        framework = [self.provider.node.find_child(name) for name in WAITER_FUNCTIONS]
        acknowledge(
            self.provider,
            "AwsSolutions-IAM4",
            "CDK's provider framework functions log through the AWS managed Lambda logging policy that CDK "
            "attaches to their roles.",
            managed_policy("service-role/AWSLambdaBasicExecutionRole"),
        )
        acknowledge(
            self.provider,
            "AwsSolutions-IAM5",
            "The framework and its waiter invoke any version (<arn>:*) of this construct's own handler and "
            "framework functions, nothing else; Step Functions log delivery only accepts Resource *.",
            *(nag_resource(self, f"{function.function_arn}:*") for function in [*self.handlers, *framework]),
            nag_resource(self, "*"),
        )
        acknowledge(
            self.provider,
            "AwsSolutions-SF2",
            "The waiter is one retried task calling a Lambda function; the Provider API offers no X-Ray "
            "setting, and its executions are logged at level ALL.",
        )
