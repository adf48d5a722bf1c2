"""The HyperPod dependency Helm chart (health monitoring agent, deep health check, job auto restart, NVIDIA
and EFA device plugins), installed before the HyperPod cluster is created.

The chart is published only in a git repository and has remote subcharts, so it needs `helm dependency
build` before install. Synth stays offline: with `source="github"` a CodeBuild project inside AWS fetches
the pinned commit and prepares the chart at deploy time; with `source="local"` (air-gapped) the deploying
machine supplies a prepared chart directory as an asset.
"""

import hashlib
import json
import os
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from config import ConfigError
from config.hyperpod import DependencyChartConfig

from ..nag import acknowledge
from . import encryption_key, nag_resource
from .polling_provider import PollingProvider

RELEASE = "hyperpod-dependencies"
CONFIG_PATH = "hyperpod.dependency_chart"
HANDLER_DIR = Path(__file__).resolve().parents[2] / "lambda" / "hyperpod_chart_build"
BUILD_IMAGE = codebuild.LinuxBuildImage.STANDARD_7_0  # Ubuntu 22.04 with git, curl, python3, zip, AWS CLI

# The chart digest, as a shell pipeline run in the chart directory: sha256 over the `sha256sum` lines
# ("<hex>  ./<path>") of every regular file, sorted by path bytes. `chart_digest` computes the same in
# Python; a user can reproduce it with these standard tools.
DIGEST_COMMAND = (
    "find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum | sha256sum | cut -d' ' -f1"
)

# Components this app relies on are on; everything else in the chart is off, explicitly: Helm enables a
# subchart whose `condition` path is missing from the values (the chart's own values spell
# `namespaced-role-and-bindings.enable`, and set no `gpu-operator.enabled`).
BASE_VALUES: dict[str, Any] = {
    "health-monitoring-agent": {"enabled": True},
    "deep-health-check": {"enabled": True},
    "job-auto-restart": {"enabled": True},
    "hyperpod-patching": {"enabled": True},  # RBAC HyperPod uses to drain nodes during software updates
    "nvidia-device-plugin": {"devicePlugin": {"enabled": True}},
    "aws-efa-k8s-device-plugin": {"devicePlugin": {"enabled": True}},
    # The NVIDIA device plugin above serves GPUs; the GPU operator would run a second one.
    "gpu-operator": {"enabled": False},
    "neuron-device-plugin": {"devicePlugin": {"enabled": False}},
    # Ray jobs: KubeRay comes from this app's Ray stack; no Kubeflow/MPI training operators.
    "trainingOperators": {"enabled": False},
    "mpi-operator": {"enabled": False},
    "kuberay": {"enabled": False},
    "hyperpod-ray-endpoint-operator": {"enabled": False},
    # cert-manager only serves the inference operator's webhooks.
    "cert-manager": {"enabled": False},
    "inferenceOperators": {"enabled": False},
    "mlflow": {"enabled": False},
    "storage": {"enabled": False},
    "cluster-role-and-bindings": {"enabled": False},
    "namespaced-role-and-bindings": {"enabled": False},
    "team-role-and-bindings": {"enabled": False},
}


def chart_digest(directory: Path) -> str:
    """The chart directory's digest, exactly as DIGEST_COMMAND computes it (symbolic links are skipped)."""
    lines = []
    for root, _dirs, files in os.walk(directory):
        for name in files:
            path = Path(root, name)
            if path.is_symlink():
                continue
            relative = "./" + path.relative_to(directory).as_posix()
            if any(char in relative for char in "\\\n\r"):
                # sha256sum escapes such names; no chart needs them, so refuse rather than mimic.
                raise ValueError(f"{path}: a backslash or line break in a file name is not supported")
            lines.append((os.fsencode(relative), f"{_file_sha256(path)}  {relative}\n".encode()))
    manifest = b"".join(line for _key, line in sorted(lines))
    return hashlib.sha256(manifest).hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def chart_values(region: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """BASE_VALUES with the region and the caller's overrides merged in (overrides win, key by key)."""
    # Without a region the agent looks it up from node labels, and at install time there are no nodes
    # yet: it would fall back to us-east-1 and pull its image from that region.
    values = _merge(BASE_VALUES, {"health-monitoring-agent": {"region": region}})
    return _merge(values, overrides or {})


def _merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        old = merged.get(key)
        both_maps = isinstance(old, Mapping) and isinstance(value, Mapping)
        merged[key] = _merge(old, value) if both_maps else value
    return merged


def local_chart_dir(config: DependencyChartConfig) -> Path:
    """The prepared chart directory of `source=local`, checked against `content_sha256` when set."""
    path = Path(config.local_path or "").expanduser()
    if not config.local_path or not (path / "Chart.yaml").is_file():
        raise ConfigError(
            [f"{CONFIG_PATH}.local_path = {config.local_path!r}: not a chart directory (no Chart.yaml there)"]
        )
    if config.content_sha256:
        actual = chart_digest(path)
        if actual != config.content_sha256:
            raise ConfigError(
                [
                    f"{CONFIG_PATH}.content_sha256 = {config.content_sha256!r}: the chart in {path} has "
                    f"digest {actual!r}"
                ]
            )
    return path


def build_phases(config: DependencyChartConfig) -> dict[str, dict[str, list[str]]]:
    """The buildspec phases: fetch and verify the pinned commit, install a verified helm, package the chart.

    Every version and digest is literal here, so any change alters the recipe's fingerprint and with it
    the chart's S3 key. The bucket and key come from the environment ($CHART_BUCKET, $CHART_KEY). Config
    values are validated (config/types.py) and still quoted: each reaches the shell as one word of data.
    """
    quote = shlex.quote
    helm_url = f"https://get.helm.sh/helm-v{config.helm_version}-linux-amd64.tar.gz"
    chart = f"src/{config.chart_path}"
    verify_digest = (
        [
            f'test "$(cd {quote(chart)} && {DIGEST_COMMAND})" = {quote(config.content_sha256)}'
            f' || {{ echo "chart digest differs from {CONFIG_PATH}.content_sha256"; exit 1; }}'
        ]
        if config.content_sha256
        else []
    )
    return {
        "install": {
            "commands": [
                f"curl -fsSL --retry 3 -o helm.tar.gz {quote(helm_url)}",
                # The digest is pinned in config: one published beside the tarball would come from the same
                # host, and prove nothing if that host served a tampered file.
                f"echo {quote(config.helm_sha256 + '  helm.tar.gz')} | sha256sum --check --strict",
                "tar -xzf helm.tar.gz linux-amd64/helm",
                "install -m 0755 linux-amd64/helm /usr/local/bin/helm",
            ]
        },
        "pre_build": {
            "commands": [
                "git init -q src",
                f"git -C src fetch -q --depth 1 {quote(config.repository)} {quote(config.commit)}",
                "git -C src checkout -q FETCH_HEAD",
                # A commit id is the hash of its content: checking it out verifies every file of the chart.
                f'test "$(git -C src rev-parse HEAD)" = {quote(config.commit)}'
                ' || { echo "fetched commit differs from the pinned one"; exit 1; }',
                *verify_digest,
            ]
        },
        "build": {
            "commands": [
                f"helm dependency build {quote(chart)}",
                f"helm package {quote(chart)} --destination package",
                # The kubectl provider downloads ChartAssetURL as a zip with the chart at its root (the
                # format of a CDK directory asset), not a helm .tgz: unpack the package and zip it.
                "mkdir chart && tar -xzf package/*.tgz -C chart --strip-components 1",
                "(cd chart && zip -qr ../chart.zip .)",
                'aws s3 cp chart.zip "s3://$CHART_BUCKET/$CHART_KEY"',
            ]
        },
    }


def chart_object_key(config: DependencyChartConfig) -> str:
    """Where the build puts the chart: any change of the recipe is a new key, hence a new ChartAssetURL,
    and so a new build and a Helm upgrade on the next deploy."""
    recipe = json.dumps(build_phases(config), sort_keys=True).encode()
    return f"hyperpod-dependencies/{config.commit}/{hashlib.sha256(recipe).hexdigest()[:16]}.zip"


class HyperPodDependencies(Construct):
    """Installs the dependency chart release; `release` is what the HyperPod cluster must depend on."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        cluster: eks.Cluster,
        config: DependencyChartConfig,
        log_retention: logs.RetentionDays,
        values: Mapping[str, Any] | None = None,
    ) -> None:
        # Checked before any construct exists, so a bad path fails synth with one line.
        local_dir = local_chart_dir(config) if config.source == "local" else None
        super().__init__(scope, construct_id)
        self.kubectl = _kubectl_provider(cluster)
        self.values = chart_values(cdk.Stack.of(self).region, values)
        self.release: Construct
        if local_dir is not None:
            self.release = self._install_asset(cluster, config, local_dir)
        else:
            self.build = ChartBuild(self, "Build", config=config, log_retention=log_retention)
            self.release = self._install_built(cluster, config, self.build)

    def _install_asset(self, cluster: eks.Cluster, config: DependencyChartConfig, path: Path) -> Construct:
        asset = s3_assets.Asset(self, "ChartAsset", path=str(path))
        acknowledge(
            self.kubectl,
            "AwsSolutions-IAM5",
            "CDK's HelmChart grants its kubectl provider read on the bootstrap asset bucket, where the chart "
            "asset lies; that bucket holds only deployment assets of this account and region.",
            "Action::s3:GetBucket*",
            "Action::s3:GetObject*",
            "Action::s3:List*",
            nag_resource(self, asset.bucket.arn_for_objects("*")),
        )
        return eks.HelmChart(
            self,
            "Release",
            cluster=cluster,
            chart_asset=asset,
            release=RELEASE,
            namespace=config.namespace,
            values=self.values,
        )

    def _install_built(
        self, cluster: eks.Cluster, config: DependencyChartConfig, build: "ChartBuild"
    ) -> Construct:
        # eks.HelmChart takes only a synth-time asset; this is the resource it would create, with the same
        # properties (see aws-eks-v2/lib/helm-chart.js), reading the chart the build uploaded.
        read = build.grant_chart_read(self, self.kubectl.role)
        release = cdk.CustomResource(
            self,
            "Release",
            service_token=self.kubectl.service_token,
            resource_type=eks.HelmChart.RESOURCE_TYPE,
            properties={
                "ClusterName": cluster.cluster_name,
                "Release": RELEASE,
                "ChartAssetURL": build.chart_url,
                "Values": cdk.Stack.of(self).to_json_string(self.values),
                "Namespace": config.namespace,
                "CreateNamespace": True,
            },
        )
        release.node.add_dependency(read, build.resource)
        return release


def _kubectl_provider(cluster: eks.Cluster) -> eks.KubectlProvider:
    provider = cluster.kubectl_provider
    if provider is None or provider.role is None:
        raise ValueError("the cluster needs a kubectl provider (kubectl_provider_options) with a role")
    return provider


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
