"""The opt-in wait for HyperPod nodes: a CloudFormation wait condition that a scheduled poller signals.

A custom resource may wait one hour; a wait condition up to twelve. Deep health checks on new GPU instances
take about two hours, so a deployment that must not return before its nodes are up waits here, after the
cluster resource completed at InService. Everything is deleted with the stack; the poller disables its own
schedule after it signals, and signals FAILURE rather than hang when the cluster is gone.
"""

import hashlib
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from ..nag import acknowledge, nag_resource
from .runtime import HANDLER_RUNTIME

# Every 5 minutes: 12 DescribeCluster and (once InService) 12 ListClusterNodes calls an hour, one
# ListClusterEvents when giving up; cheap next to a 2-hour deep health check, and a deployment learns its
# nodes are up at most 5 minutes late.
POLL_RATE = cdk.Duration.minutes(5)
POLLER_TIMEOUT = cdk.Duration.minutes(2)
# CloudFormation's maximum for AWS::CloudFormation::WaitCondition Timeout.
MAX_WAIT = cdk.Duration.hours(12)


class NodeWait(Construct):
    """A wait condition after `cluster`, and the EventBridge-scheduled Lambda function that signals it."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        cluster: cdk.CustomResource,
        cluster_name: str,
        waits_for: str,
        handler_dir: Path,
        timeout: cdk.Duration,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        seconds = int(timeout.to_seconds())
        if not 0 < seconds <= MAX_WAIT.to_seconds():
            raise ValueError(f"a wait condition times out after 1 s to 12 h, not {seconds} s")
        # A wait condition is evaluated only when created, and its handle's URL expires: each thing waited for
        # (cluster name, target counts, wait time: `waits_for`) gets its own handle, condition and enabled
        # schedule, under a construct id derived from it, so a scale-up deploy waits too and the old
        # (disabled) rule is replaced rather than re-pointed.
        wait = Construct(self, f"Wait{hashlib.sha256(waits_for.encode()).hexdigest()[:8]}")
        handle = cdk.CfnWaitConditionHandle(wait, "Handle")
        self.condition = cdk.CfnWaitCondition(
            wait, "Condition", handle=handle.ref, timeout=str(seconds), count=1
        )
        # The wait starts once the cluster resource is InService; on delete it goes first, at once.
        handle.node.add_dependency(cluster)
        self.condition.node.add_dependency(cluster)
        stack = cdk.Stack.of(self)
        self.poller = self._poller(handler_dir, log_retention)
        self.schedule = events.Rule(
            wait,
            "Schedule",
            description=f"Polls HyperPod cluster {cluster_name} until its nodes are up, then disables itself",
            schedule=events.Schedule.rate(POLL_RATE),
            targets=[
                targets.LambdaFunction(
                    self.poller,
                    event=events.RuleTargetInput.from_object(
                        {
                            "clusterName": cluster_name,
                            "signalUrl": handle.ref,
                            "timeoutSeconds": seconds,
                            # The deadline counts from the condition's start (DescribeStackResource).
                            "stackId": stack.stack_id,
                            "conditionLogicalId": stack.resolve(stack.get_logical_id(self.condition)),
                            # A scheduled event names its rule: the poller disables it after signalling.
                            "ruleArn": events.EventField.from_path("$.resources[0]"),
                        }
                    ),
                    retry_attempts=0,  # the next scheduled run is the retry
                )
            ],
        )
        # Polling starts after the cluster exists and stops (the rule is deleted) before it is deleted.
        self.schedule.node.add_dependency(cluster)
        # A policy of its own, not the role's default one: the function depends on its role's default policy
        # and the rule on the function, so naming the rule there would be a dependency cycle.
        iam.Policy(
            wait,
            "DisableSchedule",
            roles=[self.poller.role],
            statements=[
                iam.PolicyStatement(actions=["events:DisableRule"], resources=[self.schedule.rule_arn])
            ],
        )

    def _poller(self, handler_dir: Path, log_retention: logs.RetentionDays) -> lambda_.Function:
        stack = cdk.Stack.of(self)
        role = iam.Role(self, "PollerRole", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
        clusters = stack.format_arn(service="sagemaker", resource="cluster", resource_name="*")
        role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "sagemaker:DescribeCluster",
                    "sagemaker:ListClusterNodes",
                    "sagemaker:ListClusterEvents",
                ],
                resources=[clusters],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(actions=["cloudformation:DescribeStackResource"], resources=[stack.stack_id])
        )
        log_group = logs.LogGroup(
            self, "PollerLogs", retention=log_retention, removal_policy=cdk.RemovalPolicy.DESTROY
        )
        log_group.grant_write(role)
        acknowledge(
            role,
            "AwsSolutions-IAM5",
            "A HyperPod cluster ARN ends in an id SageMaker generates at creation (cluster/<id>), unknown "
            "when "
            "this policy is written, so the read-only DescribeCluster and ListClusterNodes name this "
            "account's "
            "and region's clusters.",
            nag_resource(self, clusters),
        )
        return lambda_.Function(
            self,
            "Poller",
            runtime=HANDLER_RUNTIME,
            code=lambda_.Code.from_asset(str(handler_dir), exclude=["README.md", "__pycache__", "*.pyc"]),
            handler="node_wait.handler",
            role=role,
            timeout=POLLER_TIMEOUT,
            memory_size=256,
            log_group=log_group,
        )
