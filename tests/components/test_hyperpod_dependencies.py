"""The HyperPod dependency chart: deploy-time build from the pinned commit, air-gapped local chart, and the
shared digest definition. The build custom resource's handler is tested in tests/lambda/."""

import hashlib
import json
import subprocess
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
import yaml
from aws_cdk import aws_logs as logs
from aws_cdk import cx_api
from cdk_nag import AwsSolutionsChecks

from config import ConfigError, load_config
from config.hyperpod import DependencyChartConfig, Taint
from stacks.components.hyperpod_dependencies.digest import DIGEST_COMMAND, chart_digest
from stacks.components.hyperpod_dependencies.recipe import (
    DEVICE_PLUGIN_TOLERATIONS,
    build_phases,
    chart_object_key,
    chart_values,
    taint_tolerations,
    tolerates,
)
from stacks.components.hyperpod_dependencies.release import RELEASE, HyperPodDependencies
from tests.support.apps import cli_app, cluster_stacks
from tests.support.cfn_lint import cfn_lint

HELM_TYPE = "Custom::AWSCDK-EKS-HelmChart"
BUILD_TYPE = "Custom::HyperPodChartBuild"
PINNED = DependencyChartConfig().commit
RETENTION = logs.RetentionDays.ONE_MONTH


def write_chart(directory: Path, description: str = "test chart") -> Path:
    """A minimal installable chart: Chart.yaml and one template."""
    (directory / "templates").mkdir(parents=True)
    (directory / "Chart.yaml").write_text(
        f"apiVersion: v2\nname: tiny\nversion: 0.1.0\ndescription: {description}\n"
    )
    (directory / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: tiny\ndata:\n  a: b\n"
    )
    return directory


# --- one synthesized app for the whole module ------------------------------------------------------------


@pytest.fixture(scope="module")
def local_chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_chart(tmp_path_factory.mktemp("local") / "chart")


@pytest.fixture(scope="module")
def synthesized(
    tmp_path_factory: pytest.TempPathFactory, local_chart: Path
) -> tuple[cx_api.CloudAssembly, dict[str, HyperPodDependencies]]:
    """Network + EKS from stacks/, a stack per chart source, cdk-nag on: any open finding raises here."""
    config = load_config({})
    app = cli_app(tmp_path_factory.mktemp("cdk.out"))
    cluster = cluster_stacks(app, config).cluster_access.cluster
    github = cdk.Stack(app, "GithubDeps")
    local = cdk.Stack(app, "LocalDeps")
    local_config = DependencyChartConfig(
        source="local", local_path=str(local_chart), content_sha256=chart_digest(local_chart)
    )
    constructs = {
        "github": HyperPodDependencies(
            github,
            "Dependencies",
            cluster=cluster,
            config=config.hyperpod.dependency_chart,
            log_retention=RETENTION,
        ),
        "local": HyperPodDependencies(
            local, "Dependencies", cluster=cluster, config=local_config, log_retention=RETENTION
        ),
    }
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks())
    return app.synth(), constructs


@pytest.fixture(scope="module")
def github(synthesized: Any) -> dict:
    return synthesized[0].get_stack_by_name("GithubDeps").template


@pytest.fixture(scope="module")
def local(synthesized: Any) -> dict:
    return synthesized[0].get_stack_by_name("LocalDeps").template


def resources(template: dict, type_: str) -> dict[str, dict]:
    return {name: res for name, res in template["Resources"].items() if res["Type"] == type_}


def only(template: dict, type_: str) -> tuple[str, dict]:
    found = resources(template, type_)
    assert len(found) == 1, f"expected one {type_}, found {sorted(found)}"
    return next(iter(found.items()))


def buildspec(template: dict) -> dict:
    _, project = only(template, "AWS::CodeBuild::Project")
    return yaml.safe_load(project["Properties"]["Source"]["BuildSpec"])


def commands(spec: dict) -> list[str]:
    return [command for phase in spec["phases"].values() for command in phase["commands"]]


# --- source=github: CodeBuild at deploy time -----------------------------------------------------------


def test_project_image_compute_encryption_and_logs(github):
    _, project = only(github, "AWS::CodeBuild::Project")
    props = project["Properties"]
    assert props["Environment"]["Image"] == "aws/codebuild/standard:7.0"
    assert props["Environment"]["ComputeType"] == "BUILD_GENERAL1_SMALL"
    assert props["Environment"]["PrivilegedMode"] is False
    assert props["Source"]["Type"] == "NO_SOURCE"
    key_id, _ = only(github, "AWS::KMS::Key")
    assert props["EncryptionKey"] == {"Fn::GetAtt": [key_id, "Arn"]}
    assert props["LogsConfig"]["CloudWatchLogs"]["Status"] == "ENABLED"
    for group in resources(github, "AWS::Logs::LogGroup").values():
        assert group["Properties"]["RetentionInDays"] == 30


def test_buildspec_fetches_and_verifies_the_pinned_commit(github):
    lines = commands(buildspec(github))
    assert "git init -q src" in lines
    assert (
        f"git -C src fetch -q --depth 1 https://github.com/aws/sagemaker-hyperpod-cli.git {PINNED}" in lines
    )
    assert "git -C src checkout -q FETCH_HEAD" in lines
    assert any(line.startswith(f'test "$(git -C src rev-parse HEAD)" = {PINNED} ||') for line in lines)
    # The default config sets no content digest: no digest step.
    assert not any(DIGEST_COMMAND in line for line in lines)


def test_buildspec_checks_helm_against_the_digest_pinned_in_config(github):
    lines = commands(buildspec(github))
    tarball = "https://get.helm.sh/helm-v3.17.3-linux-amd64.tar.gz"
    assert any(tarball + " " in line or line.endswith(tarball) for line in lines)
    # Nothing is fetched beside the tarball: the digest is the config's.
    assert not any(".sha256sum" in line for line in lines)
    pinned = DependencyChartConfig().helm_sha256
    assert any(pinned in line and "sha256sum --check --strict" in line for line in lines)


def test_buildspec_builds_packages_and_uploads(github):
    lines = commands(buildspec(github))
    chart = "src/helm_chart/HyperPodHelmChart"
    assert f"helm dependency build {chart}" in lines
    assert f"helm package {chart} --destination package" in lines
    assert lines[-1] == 'aws s3 cp chart.zip "s3://$CHART_BUCKET/$CHART_KEY"'
    _, project = only(github, "AWS::CodeBuild::Project")
    env = {var["Name"]: var["Value"] for var in project["Properties"]["Environment"]["EnvironmentVariables"]}
    bucket_id, _ = only(github, "AWS::S3::Bucket")
    assert env["CHART_BUCKET"] == {"Ref": bucket_id}
    assert env["CHART_KEY"].startswith(f"hyperpod-dependencies/{PINNED}/")


def test_digest_step_is_added_when_content_sha256_is_set():
    phases = build_phases(DependencyChartConfig(content_sha256="a" * 64))
    step = phases["pre_build"]["commands"][-1]
    assert DIGEST_COMMAND in step
    assert "= " + "a" * 64 in step


def test_recipe_change_moves_the_chart_key(synthesized):
    """A new commit or helm version is a new S3 key, so the Helm release sees a new ChartAssetURL."""
    default = DependencyChartConfig()
    assert synthesized[1]["github"].build.object_key == chart_object_key(default)
    other_commit = default.model_copy(update={"commit": "1" * 40})
    other_helm = default.model_copy(update={"helm_version": "3.18.0"})
    keys = {chart_object_key(config) for config in (default, other_commit, other_helm)}
    assert len(keys) == 3
    assert chart_object_key(default) == chart_object_key(DependencyChartConfig())


def handler_id(template: dict, handler: str) -> str:
    functions = resources(template, "AWS::Lambda::Function")
    return next(name for name, fn in functions.items() if fn["Properties"].get("Handler") == handler)


def test_build_resource_waits_for_the_build(github):
    """The framework's onEvent calls on_event, then a waiter state machine polls is_complete."""
    _, build = only(github, BUILD_TYPE)
    framework = github["Resources"][build["Properties"]["ServiceToken"]["Fn::GetAtt"][0]]
    env = framework["Properties"]["Environment"]["Variables"]
    assert env["USER_ON_EVENT_FUNCTION_ARN"] == {"Fn::GetAtt": [handler_id(github, "index.on_event"), "Arn"]}
    assert env["USER_IS_COMPLETE_FUNCTION_ARN"] == {
        "Fn::GetAtt": [handler_id(github, "index.is_complete"), "Arn"]
    }
    _, machine = only(github, "AWS::StepFunctions::StateMachine")
    assert env["WAITER_STATE_MACHINE_ARN"] == {"Ref": only(github, "AWS::StepFunctions::StateMachine")[0]}
    assert machine["Properties"]["LoggingConfiguration"]["Level"] == "ALL"
    assert build["Properties"]["ChartAssetURL"]["Fn::Join"][1][0] == "s3://"


def test_build_handlers_may_only_start_and_read_builds(github):
    project_id, _ = only(github, "AWS::CodeBuild::Project")
    statements = [
        statement
        for policy in resources(github, "AWS::IAM::Policy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if "codebuild:" in json.dumps(statement["Action"])
    ]
    actions = {
        a for s in statements for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
    }
    assert actions == {"codebuild:StartBuild", "codebuild:BatchGetBuilds"}
    assert all(s["Resource"] == {"Fn::GetAtt": [project_id, "Arn"]} for s in statements)


def output_value(assembly: cx_api.CloudAssembly, reference: dict) -> Any:
    """What a cross-stack reference (weak, Fn::GetStackOutput) points to in the producing stack."""
    ref = reference["Fn::GetStackOutput"]
    return assembly.get_stack_by_name(ref["StackName"]).template["Outputs"][ref["OutputName"]]["Value"]


def test_helm_release_depends_on_the_build_and_targets_the_cluster(github, synthesized):
    build_id, _ = only(github, BUILD_TYPE)
    _, release = only(github, HELM_TYPE)
    props = release["Properties"]
    assert build_id in release["DependsOn"]
    assert props["ChartAssetURL"] == {"Fn::GetAtt": [build_id, "ChartAssetURL"]}
    eks_template = synthesized[0].get_stack_by_name("Eks").template
    cluster_id, _ = only(eks_template, "AWS::EKS::Cluster")
    assert output_value(synthesized[0], props["ClusterName"]) == {"Ref": cluster_id}
    token = output_value(synthesized[0], props["ServiceToken"])
    assert "KubectlProvider" in json.dumps(token)
    assert props["Release"] == RELEASE
    assert props["Namespace"] == "kube-system"
    assert release["DeletionPolicy"] == "Delete"


def test_kubectl_role_reads_exactly_the_chart(github):
    read_id, _ = only(github, HELM_TYPE)
    policies = {
        name: policy
        for name, policy in resources(github, "AWS::IAM::Policy").items()
        if "KubectlProvider" in json.dumps(policy["Properties"].get("Roles"))
    }
    assert len(policies) == 1
    ((name, policy),) = policies.items()
    actions = [s["Action"] for s in policy["Properties"]["PolicyDocument"]["Statement"]]
    assert actions == ["s3:GetObject", "kms:Decrypt"]
    assert name in github["Resources"][read_id]["DependsOn"]


def test_release_values_turn_on_the_resiliency_parts_only(github):
    _, release = only(github, HELM_TYPE)
    joined = release["Properties"]["Values"]["Fn::Join"]
    assert {"Ref": "AWS::Region"} in joined[1]  # the agent's region, resolved at deploy time
    values = json.loads("".join(part if isinstance(part, str) else "us-west-2" for part in joined[1]))
    for name in ("health-monitoring-agent", "deep-health-check", "job-auto-restart", "hyperpod-patching"):
        assert values[name]["enabled"] is True
    for name in ("nvidia-device-plugin", "aws-efa-k8s-device-plugin"):
        assert values[name]["devicePlugin"]["enabled"] is True
    for name in (
        "cert-manager",
        "mlflow",
        "inferenceOperators",
        "trainingOperators",
        "gpu-operator",
        "kuberay",
    ):
        assert values[name]["enabled"] is False
    assert values["health-monitoring-agent"]["region"] == "us-west-2"


def test_caller_values_override_key_by_key():
    values = chart_values(
        "eu-west-1", {"mlflow": {"enabled": True}, "health-monitoring-agent": {"imageTag": "x"}}
    )
    assert values["mlflow"] == {"enabled": True}
    assert values["health-monitoring-agent"] == {"enabled": True, "region": "eu-west-1", "imageTag": "x"}


def test_bucket_encrypted_tls_only_private_and_emptied_on_destroy(github):
    bucket_id, bucket = only(github, "AWS::S3::Bucket")
    props = bucket["Properties"]
    rule = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert bucket["DeletionPolicy"] == "Delete"
    _, policy = only(github, "AWS::S3::BucketPolicy")
    deny = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
    assert any(s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in deny)
    _, auto_delete = only(github, "Custom::S3AutoDeleteObjects")
    assert auto_delete["Properties"]["BucketName"] == {"Ref": bucket_id}


def test_release_is_exposed_for_the_hyperpod_cluster_to_depend_on(synthesized):
    constructs = synthesized[1]
    assert isinstance(constructs["github"].release, cdk.CustomResource)
    assert constructs["local"].release.node.id == "Release"


# --- source=local: air-gapped ---------------------------------------------------------------------------


def test_local_chart_is_installed_from_an_asset(local, synthesized, local_chart):
    _, release = only(local, HELM_TYPE)
    url = json.dumps(release["Properties"]["ChartAssetURL"])
    assert "s3://" in url
    assert ".zip" in url
    assert not resources(local, "AWS::CodeBuild::Project")
    assembly = synthesized[0]
    manifest = json.loads(Path(assembly.directory, "LocalDeps.assets.json").read_text())
    sources = [entry["source"]["path"] for entry in manifest["files"].values()]
    staged = [
        Path(assembly.directory, path)
        for path in sources
        if Path(assembly.directory, path, "Chart.yaml").exists()
    ]
    assert len(staged) == 1
    assert chart_digest(staged[0]) == chart_digest(local_chart)


def test_missing_local_directory_fails_before_any_construct(tmp_path):
    stack = cdk.Stack(cdk.App(), "S")
    config = DependencyChartConfig(source="local", local_path=str(tmp_path / "absent"))
    with pytest.raises(ConfigError, match=r"^hyperpod\.dependency_chart\.local_path = ") as error:
        HyperPodDependencies(stack, "Deps", cluster=None, config=config, log_retention=RETENTION)  # type: ignore[arg-type]
    assert "\n" not in str(error.value)
    assert stack.node.try_find_child("Deps") is None


def test_local_digest_mismatch_fails_with_the_config_key(tmp_path):
    chart = write_chart(tmp_path / "chart")
    config = DependencyChartConfig(source="local", local_path=str(chart), content_sha256="0" * 64)
    stack = cdk.Stack(cdk.App(), "S")
    with pytest.raises(
        ConfigError, match=r"^hyperpod\.dependency_chart\.content_sha256 = '0{64}': "
    ) as error:
        HyperPodDependencies(stack, "Deps", cluster=None, config=config, log_retention=RETENTION)  # type: ignore[arg-type]
    assert chart_digest(chart) in str(error.value)
    assert "\n" not in str(error.value)
    assert stack.node.try_find_child("Deps") is None


# --- the digest: one definition, two implementations ----------------------------------------------------


def test_digest_is_stable_and_independent_of_creation_order(tmp_path):
    names = ["b.yaml", "a/z.txt", "a/b/c.tpl", ".helmignore", "A.md", "sp ace/ü.txt"]
    first, second = tmp_path / "one", tmp_path / "two"
    for root, order in ((first, names), (second, list(reversed(names)))):
        for name in order:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(f"content of {name}")
    assert chart_digest(first) == chart_digest(first) == chart_digest(second)
    (second / "b.yaml").write_text("changed")
    assert chart_digest(second) != chart_digest(first)


def test_digest_sees_renames_and_skips_symlinks(tmp_path):
    chart = write_chart(tmp_path / "chart")
    before = chart_digest(chart)
    (chart / "link.yaml").symlink_to(chart / "Chart.yaml")
    assert chart_digest(chart) == before
    (chart / "templates" / "cm.yaml").rename(chart / "templates" / "cm2.yaml")
    assert chart_digest(chart) != before


def run_bash(command: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def test_buildspec_digest_script_agrees_with_python(tmp_path):
    chart = write_chart(tmp_path / "chart")
    for name in ("charts/dep-1.0.0.tgz", ".helmignore", "sp ace/ü.txt", "empty"):
        (chart / name).parent.mkdir(parents=True, exist_ok=True)
        (chart / name).write_bytes(name.encode() * 3)
    result = run_bash(DIGEST_COMMAND, chart)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == chart_digest(chart)
    (tmp_path / "void").mkdir()
    assert run_bash(DIGEST_COMMAND, tmp_path / "void").stdout.strip() == chart_digest(tmp_path / "void")


def test_buildspec_digest_step_passes_and_fails_as_configured(tmp_path):
    """Runs the exact pre_build line the buildspec gets, on a checkout-shaped directory."""
    config = DependencyChartConfig()
    write_chart(tmp_path / "src" / config.chart_path)
    good = DependencyChartConfig(content_sha256=chart_digest(tmp_path / "src" / config.chart_path))
    assert run_bash(build_phases(good)["pre_build"]["commands"][-1], tmp_path).returncode == 0
    bad = run_bash(
        build_phases(DependencyChartConfig(content_sha256="1" * 64))["pre_build"]["commands"][-1], tmp_path
    )
    assert bad.returncode == 1
    assert "content_sha256" in bad.stdout


def test_buildspec_helm_checksum_step_rejects_a_tampered_download(tmp_path):
    """Runs the exact checksum line against a download whose digest is, then is not, the configured one."""
    digest = hashlib.sha256(b"helm release").hexdigest()
    config = DependencyChartConfig(helm_version="3.17.4", helm_sha256=digest)
    check = next(line for line in build_phases(config)["install"]["commands"] if "sha256sum" in line)
    (tmp_path / "helm.tar.gz").write_bytes(b"helm release")
    assert run_bash(check, tmp_path).returncode == 0
    (tmp_path / "helm.tar.gz").write_bytes(b"tampered")
    assert run_bash(check, tmp_path).returncode != 0


def test_buildspec_repackaging_puts_the_chart_at_the_zip_root(tmp_path):
    """The kubectl provider unzips ChartAssetURL and installs the result: Chart.yaml must be at the root."""
    chart = write_chart(tmp_path / "tiny")
    (tmp_path / "package").mkdir()
    with tarfile.open(tmp_path / "package" / "tiny-0.1.0.tgz", "w:gz") as archive:
        archive.add(chart, arcname="tiny")  # the layout `helm package` writes
    build = build_phases(DependencyChartConfig())["build"]["commands"]
    for line in build[2:4]:
        result = run_bash(line, tmp_path)
        assert result.returncode == 0, result.stderr
    names = set(zipfile.ZipFile(tmp_path / "chart.zip").namelist())
    assert {"Chart.yaml", "templates/cm.yaml"} <= names


# --- cdk-nag and cfn-lint -------------------------------------------------------------------------------


def test_cdk_nag_passes(synthesized):
    report = json.loads((Path(synthesized[0].directory) / "validation-report.json").read_text())
    (nag,) = [plugin for plugin in report["pluginReports"] if plugin["pluginName"] == "AwsSolutions"]
    assert nag["conclusion"] == "success" and not nag["violations"]


def test_cfn_lint_finds_nothing(synthesized):
    files = [
        synthesized[0].get_stack_by_name(name).template_full_path for name in ("GithubDeps", "LocalDeps")
    ]
    findings = cfn_lint(files)
    assert findings == [], json.dumps(findings, indent=1)[:4000]


def _taint(key: str, value: str = "", effect: str = "NoSchedule") -> Taint:
    return Taint(key=key, value=value, effect=effect)


def test_device_plugins_tolerate_every_taint_of_the_instance_groups():
    taints = [
        _taint("nvidia.com/gpu", "true"),
        _taint("dedicated", "ray"),
        _taint("team", effect="NoExecute"),
    ]
    values = chart_values("us-west-2", taint_tolerations(taints))
    for chart in DEVICE_PLUGIN_TOLERATIONS:
        own = values.get(chart, {}).get("tolerations", DEVICE_PLUGIN_TOLERATIONS[chart])
        for taint in taints:
            assert any(tolerates(t, taint.key, taint.effect, taint.value) for t in own), (chart, taint)
        # The chart's own tolerations stay: Helm replaces the list whole.
        assert own[: len(DEVICE_PLUGIN_TOLERATIONS[chart])] == DEVICE_PLUGIN_TOLERATIONS[chart]
    # The EFA plugin gains nvidia.com/gpu (its chart leaves it out); the NVIDIA plugin already has it.
    efa = values["aws-efa-k8s-device-plugin"]["tolerations"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in efa
    nvidia = values["nvidia-device-plugin"]["tolerations"]
    assert sum(t.get("key") == "nvidia.com/gpu" for t in nvidia) == 1


def test_untainted_groups_keep_the_charts_own_tolerations():
    assert taint_tolerations([]) == {}
    assert "tolerations" not in chart_values("us-west-2", taint_tolerations([]))["aws-efa-k8s-device-plugin"]


def test_toleration_rule_matches_kubernetes():
    exists = {"key": "k", "operator": "Exists", "effect": "NoSchedule"}
    assert tolerates(exists, "k", "NoSchedule", "anything")
    assert not tolerates(exists, "k", "NoExecute")
    assert not tolerates(exists, "other", "NoSchedule")
    equal = {"key": "k", "operator": "Equal", "value": "v"}
    assert tolerates(equal, "k", "NoExecute", "v") and not tolerates(equal, "k", "NoSchedule", "w")
