"""Deploy-time preparation of the dependency chart: a CodeBuild project runs the recipe's buildspec, and a
custom resource starts it and waits for the chart to be in its bucket."""

from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from config.hyperpod import DependencyChartConfig

from ...nag import acknowledge, nag_resource
from ..keys import encryption_key
from ..polling_provider import PollingProvider
from .recipe import build_phases, chart_object_key

HANDLER_DIR = Path(__file__).resolve().parents[3] / "lambda" / "hyperpod_chart_build"
BUILD_IMAGE = codebuild.LinuxBuildImage.STANDARD_7_0  # Ubuntu 22.04 with git, curl, python3, zip, AWS CLI


class ChartBuild(Construct):
    """Deploy-time preparation of the chart: a CodeBuild project and the custom resource that runs it."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DependencyChartConfig,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        self.object_key = chart_object_key(config)
        self.key = encryption_key(
            self, "Key", "HyperPod dependency chart: build artifacts and the packaged chart"
        )
        self.bucket = self._bucket()
        self.project = self._project(build_phases(config), log_retention)
        self.resource = self._run_build(log_retention)
        self.chart_url = self.resource.get_att_string("ChartAssetURL")
        self._acknowledge()

    def grant_chart_read(self, scope: Construct, role: iam.IRole) -> iam.Policy:
        """Read access to the chart, as a policy in `scope`'s stack: the role's own default policy lives in
        the cluster's stack, and a grant there would make that stack refer back to this one."""
        return iam.Policy(
            scope,
            "KubectlChartRead",
            roles=[role],
            statements=[
                iam.PolicyStatement(
                    actions=["s3:GetObject"], resources=[self.bucket.arn_for_objects(self.object_key)]
                ),
                iam.PolicyStatement(actions=["kms:Decrypt"], resources=[self.key.key_arn]),
            ],
        )

    def _bucket(self) -> s3.Bucket:
        return s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            bucket_key_enabled=True,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            removal_policy=cdk.RemovalPolicy.DESTROY,
            auto_delete_objects=True,
        )

    def _project(self, phases: dict[str, Any], log_retention: logs.RetentionDays) -> codebuild.Project:
        project = codebuild.Project(
            self,
            "Project",
            description="Fetches the pinned HyperPod dependency chart, builds its dependencies, uploads it",
            build_spec=codebuild.BuildSpec.from_object_to_yaml(
                {"version": "0.2", "env": {"shell": "bash"}, "phases": phases}
            ),
            environment=codebuild.BuildEnvironment(
                build_image=BUILD_IMAGE, compute_type=codebuild.ComputeType.SMALL
            ),
            environment_variables={
                "CHART_BUCKET": codebuild.BuildEnvironmentVariable(value=self.bucket.bucket_name),
                "CHART_KEY": codebuild.BuildEnvironmentVariable(value=self.object_key),
            },
            encryption_key=self.key,
            logging=codebuild.LoggingOptions(
                cloud_watch=codebuild.CloudWatchLoggingOptions(
                    log_group=self._log_group("BuildLogs", log_retention)
                )
            ),
            timeout=cdk.Duration.minutes(20),
            queued_timeout=cdk.Duration.minutes(10),
            grant_report_group_permissions=False,
        )
        # Only the one object; the project's KMS grant covers encrypting it.
        project.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:PutObject"], resources=[self.bucket.arn_for_objects(self.object_key)]
            )
        )
        self._acknowledge_project(project)
        return project

    def _run_build(self, log_retention: logs.RetentionDays) -> cdk.CustomResource:
        provider = PollingProvider(
            self,
            "Runner",
            handler_dir=HANDLER_DIR,
            statements=[
                iam.PolicyStatement(
                    actions=["codebuild:StartBuild", "codebuild:BatchGetBuilds"],
                    resources=[self.project.project_arn],
                )
            ],
            query_interval=cdk.Duration.seconds(20),
            # Below CloudFormation's one-hour custom resource limit; the build itself stops at 30 minutes
            # (queued plus running).
            total_timeout=cdk.Duration.minutes(40),
            handler_timeout=cdk.Duration.seconds(60),
            log_retention=log_retention,
        )
        return cdk.CustomResource(
            self,
            "Resource",
            service_token=provider.service_token,
            resource_type="Custom::HyperPodChartBuild",
            properties={
                "ProjectName": self.project.project_name,
                "ChartAssetURL": self.bucket.s3_url_for_object(self.object_key),
            },
        )

    def _log_group(self, name: str, retention: logs.RetentionDays) -> logs.LogGroup:
        return logs.LogGroup(self, name, retention=retention, removal_policy=cdk.RemovalPolicy.DESTROY)

    def _acknowledge(self) -> None:
        acknowledge(
            self.bucket,
            "AwsSolutions-S1",
            "Holds one chart archive built from a public, pinned commit (nothing secret); only this app's "
            "CodeBuild role may write it and the kubectl provider role read it (IAM), public access is "
            "blocked and TLS enforced. Access logs would record only those two roles' calls, in a second "
            "bucket that needs its own retention and logging.",
        )

    def _acknowledge_project(self, project: codebuild.Project) -> None:
        default_logs = cdk.Stack.of(self).format_arn(
            service="logs",
            resource="log-group",
            resource_name=f"/aws/codebuild/{project.project_name}:*",
            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
        )
        acknowledge(
            project,
            "AwsSolutions-IAM5",
            "CDK's CodeBuild grants: streams of the project's own log group (<group>:*), and data keys of "
            "this construct's KMS key (kms:GenerateDataKey*, kms:ReEncrypt*) to encrypt the build's output.",
            nag_resource(self, default_logs),
            "Action::kms:GenerateDataKey*",
            "Action::kms:ReEncrypt*",
        )
