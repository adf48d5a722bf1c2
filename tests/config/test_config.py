"""The configuration: defaults, precedence, and one clear line per bad input, raised before any construct."""

import json
import re

import pytest
import yaml

from config import ConfigError, load_config
from tests.support import REPO
from tests.support.apps import run_app


def errors(context: dict, file_values: dict | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(context, file_values)
    return caught.value.problems


def test_defaults_are_the_documented_ones(default_config):
    assert default_config.eks.version == "1.33"
    assert default_config.eks.endpoint_access == "private"
    assert default_config.network.az_count == 2
    head, workers = default_config.hyperpod.instance_groups
    assert (head.name, head.instance_type, head.count) == ("head", "ml.m5.2xlarge", 1)
    assert (workers.instance_type, workers.count) == ("ml.p5.48xlarge", 4)
    assert workers.deep_health_checks == ("InstanceStress", "InstanceConnectivity")
    assert default_config.hyperpod.node_recovery == "Automatic"
    assert default_config.worker_gpus(0) == 8


def test_context_overrides_yaml_file_which_overrides_defaults():
    config = load_config(
        {"network.nat_gateways": "2", "@aws-cdk/core:foo": True, "availability-zones:account=1": ["a"]},
        {"network": {"az_count": 3, "nat_gateways": 1}, "env": {"region": "us-west-2"}, "prefix": "team-a"},
    )
    assert (config.network.az_count, config.network.nat_gateways, config.prefix) == (3, 2, "team-a")


def test_json_values_from_the_command_line():
    config = load_config({"eks.admin_principal_arns": '["arn:aws:iam::123456789012:role/Admin"]'})
    assert config.eks.admin_principal_arns == ("arn:aws:iam::123456789012:role/Admin",)


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        ({"network.az_cnt": "3"}, "network.az_cnt = '3': unknown key; allowed keys here: az_count, "),
        (
            {"nework.az_count": "3"},
            "nework: unknown key; allowed keys here: eks, env, gcs_fault_tolerance, hyperpod, ",
        ),
        ({"network.az_count": "two"}, "network.az_count = 'two': Input should be a valid integer"),
        ({"network.az_count": "1"}, "network.az_count = '1': Input should be greater than or equal to 2"),
        ({"network.vpc_cidr": "10.0.0.0/33"}, "network.vpc_cidr = '10.0.0.0/33': Input is not a valid IPv4"),
        ({"network.vpc_cidr": "10.0.0.0/24"}, "network.vpc_cidr = '10.0.0.0/24': prefix length must be /16"),
        ({"eks.version": "1.35"}, "eks.version = '1.35': must be one of 1.32, 1.33: HyperPod supports EKS"),
        ({"eks.version": "1.27"}, "eks.version = '1.27': must be one of 1.32, 1.33"),
        ({"eks.endpoint_access": "public"}, "eks.endpoint_access = 'public': Input should be 'private' or"),
        ({"eks.endpoint_access": "public_and_private"}, "eks: endpoint_access=public_and_private needs "),
        (
            {"eks.admin_principal_arns": '["bob"]'},
            "eks.admin_principal_arns[0] = 'bob': must be an IAM role or user ARN",
        ),
        (
            {
                "eks.addon_versions": '{"vpc-cni": "v1.18.0-eksbuild.1", "kube-proxy": null, '
                '"coredns": null, "eks-pod-identity-agent": null}'
            },
            "eks.addon_versions: vpc-cni v1.18.0-eksbuild.1 is older than v1.18.3",
        ),
        (
            {"eks.version": "1.32", "eks.addon_versions": '{"kube-proxy": "v1.33.5-eksbuild.2"}'},
            "eks: addon_versions.kube-proxy = 'v1.33.5-eksbuild.2' does not match eks.version 1.32",
        ),
        ({"network.az_count": "3"}, "network.az_count=3 needs env.region"),
        (
            {"env.region": "Oregon"},
            "env.region = 'Oregon': must be an AWS region known to the pinned botocore",
        ),
        ({"prefix": "Ray_HP"}, "prefix = 'Ray_HP': must be 3-24 lower-case letters"),
    ],
)
def test_bad_foundation_input_names_field_value_and_rule(context, expected):
    problems = errors(context)
    assert len(problems) == 1, problems
    assert problems[0].startswith(expected), problems[0]


@pytest.mark.parametrize(
    ("group", "expected"),
    [
        (
            {"instance_type": "p5.48xlarge"},
            "instance_type = 'p5.48xlarge': must be a HyperPod instance type",
        ),
        ({"count": -1}, "count = -1: Input should be greater than or equal to 0"),
        (
            {"name": "gpu_workers"},
            "name = 'gpu_workers': must be a SageMaker ClusterInstanceGroupName: 1-63 letters",
        ),
        ({"name": "-gpu"}, "name = '-gpu': must be a SageMaker ClusterInstanceGroupName"),
        (
            {"deep_health_checks": ["InstanceStress", "GpuBurn"]},
            "deep_health_checks[1] = 'GpuBurn': Input should",
        ),
        ({"threads_per_core": 4}, "threads_per_core = 4: Input should be 1 or 2"),
    ],
)
def test_bad_instance_group(group, expected):
    base = {"name": "workers", "instance_type": "ml.p5.48xlarge", "count": 4}
    problems = errors({"hyperpod.instance_groups": json.dumps([{**base, **group}])})
    assert problems == [problems[0]] and problems[0].startswith(f"hyperpod.instance_groups[0].{expected}"), (
        problems
    )


def test_duplicate_group_names_and_bad_cluster_name():
    groups = [{"name": "a", "instance_type": "ml.m5.large", "count": 1}] * 2
    assert errors({"hyperpod.instance_groups": json.dumps(groups)}) == [
        "hyperpod: instance group names must be unique; repeated: ['a']"
    ]
    assert errors({"hyperpod.cluster_name": "my cluster"})[0].startswith(
        "hyperpod.cluster_name = 'my cluster'"
    )


def test_every_problem_is_reported_at_once():
    problems = errors({"network.az_count": "1", "eks.version": "2", "storage.capacity_gib": "1000"})
    assert [line.split(" = ")[0] for line in problems] == [
        "network.az_count",
        "eks.version",
        "storage.capacity_gib",
    ]


def test_yaml_top_level_must_be_a_mapping():
    assert errors({}, ["not", "a", "mapping"]) == [
        "config file: the top level must be a mapping of sections, not list"
    ]


def test_ray_version_matches_the_job_pin(default_config):
    pins = (REPO / "jobs/fsdp_ray/requirements.txt").read_text()
    assert re.search(rf"^ray\[[\w,]+\]=={re.escape(default_config.ray.ray_version)}$", pins, re.M)


def test_app_reports_bad_config_as_lines_not_a_stack_trace(tmp_path):
    config_file = tmp_path / "bad.yaml"
    config_file.write_text(yaml.safe_dump({"network": {"az_count": 1}, "hyperpod": {"cluster_name": "x_y"}}))
    result = run_app({"config": str(config_file), "eks.version": "1.40"})
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "config error: network.az_count = 1: Input should be greater than or equal to 2",
        "config error: eks.version = '1.40': must be one of 1.32, 1.33: HyperPod supports EKS 1.28-1.33 and "
        "the pinned kubectl 1.33 manages clusters within one minor version",
        "config error: hyperpod.cluster_name = 'x_y': must be a SageMaker ClusterName: 1-63 letters, digits "
        "and hyphens, starting and ending with a letter or digit",
    ]


def test_app_reports_an_unreadable_config_file():
    result = run_app({"config": "/nonexistent/config.yaml"})
    assert result.returncode == 1
    assert result.stderr.startswith("config error: config = '/nonexistent/config.yaml': cannot read it")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        (
            {"ray.worker_groups": '[{"replicas": 5, "min_replicas": 1, "max_replicas": 4}]'},
            "ray.worker_groups[0]: replicas (5) must be within [min_replicas, max_replicas] = [1, 4]",
        ),
        (
            {"ray.worker_groups": '[{"instance_group": "gpus"}]'},
            "ray.worker_groups[0].instance_group 'gpus' is not one of hyperpod.instance_groups ['head', "
            "'workers']",
        ),
        (
            {"ray.head.instance_group": "cpu"},
            "ray.head.instance_group 'cpu' is not one of hyperpod.instance_groups ['head', 'workers']",
        ),
        (
            {"ray.worker_groups": '[{"gpus": 9}]'},
            "ray.worker_groups[0].gpus=9 exceeds the 8 GPUs of ml.p5.48xlarge",
        ),
        (
            {"ray.worker_groups": '[{"max_replicas": 8, "replicas": 8}]'},
            "ray.worker_groups[0].max_replicas=8 exceeds the 4 nodes of instance group 'workers'",
        ),
        (
            {"storage.capacity_gib": "3600"},
            "storage.capacity_gib = '3600': PERSISTENT_2 file systems are 1200 GiB or a multiple of 2400 GiB",
        ),
        (
            {"ray.image_uri": "rayproject/ray:2.59.0-py311-gpu"},
            "ray.image_uri = 'rayproject/ray:2.59.0-py311-gpu': the image has Ray 2.59.0 but ray_version is "
            "2.60.0",
        ),
        (
            {"ray.image_uri": "example.com/ray:latest"},
            "ray.image_uri = 'example.com/ray:latest': the tag must start with the Ray version",
        ),
        ({"storage.mode": "efs"}, "storage.mode = 'efs': Input should be 'static' or 'dynamic'"),
    ],
)
def test_bad_ray_and_storage_input(context, expected):
    problems = errors(context)
    assert len(problems) == 1, problems
    assert problems[0].startswith(expected), problems[0]


def test_a_matching_image_tag_and_gpu_count_are_accepted():
    config = load_config(
        {"ray.image_uri": "rayproject/ray:2.60.0-py311-gpu", "ray.worker_groups": '[{"gpus": 8}]'}
    )
    assert config.worker_gpus(0) == 8
