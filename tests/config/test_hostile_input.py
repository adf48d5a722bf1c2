"""Hostile input through the real entry points: every case ends with exit status 1, only `config error:`
lines that name the field, no line longer than the loader's bound, and nothing written.

The cases are generated from the configuration itself where they can be (a CDK token marker and a
CloudFormation dynamic reference in every string field, a boolean and YAML 1.1 words in every number
field), so that a field added later is covered too; the rest are the loader's bounds (alias bombs, depth,
size, duplicate keys, devices) and the inputs that used to deploy broken. Most run `app.main` in-process on a
fresh `cdk.App`; a few run `python app.py`, the `cdk` CLI and `python -m ops`, as a user would.
"""

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import app as entry_point
from config import AppConfig
from config.loader import MAX_LINE
from tests.support import REPO
from tests.support.apps import cli_app, run_app

TOKEN = "${Token[AWS.AccountId.1]}"
DYNAMIC_REFERENCE = "{{resolve:secretsmanager:prod/db:SecretString:password}}"
HEAD = {"name": "head", "instance_type": "ml.m5.2xlarge", "count": 1}
WORKERS = {"name": "workers", "instance_type": "ml.p5.48xlarge", "count": 4}
ARN = "arn:aws:iam::123456789012:role/Admin"
PLAN = "arn:aws:sagemaker:us-west-2:123456789012:training-plan/plan-1"
# Nine levels of ten aliases each: 10^9 values from 260-odd bytes.
ALIAS_BOMB = b'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + b"".join(
    f"{n}: &{n} [{','.join([f'*{p}'] * 9)}]\n".encode() for p, n in zip("abcdefgh", "bcdefghi", strict=True)
)


def _leaves(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every scalar a `-c` key can reach directly (lists are set whole)."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _leaves(child, f"{path}.{key}" if path else key)
    elif not isinstance(value, list | tuple):
        yield path, value


DEFAULTS = dict(_leaves(AppConfig().model_dump(mode="json"), ""))
# Keys of mappings (tags, add-ons) are themselves dotted here: set those through their mapping instead.
STRING_FIELDS = sorted(
    key
    for key, value in DEFAULTS.items()
    if isinstance(value, str | type(None)) and not key.startswith(("tags.", "eks.addon_versions."))
)
NUMBER_FIELDS = sorted(
    key for key, value in DEFAULTS.items() if isinstance(value, int) and not isinstance(value, bool)
)


def case(context: dict, field: str, *, also: str = "") -> Any:
    """A context and the field every error line must name (and text one line must hold)."""
    return pytest.param(context, field, also, id=f"{field}:{str(next(iter(context.values())))[:30]}")


def groups(**worker: Any) -> str:
    return json.dumps([HEAD, {**WORKERS, **worker}])


CASES = [
    # --- 1. template markup in every string field, every list of strings, every mapping
    *(case({key: TOKEN}, key) for key in STRING_FIELDS),
    *(case({key: DYNAMIC_REFERENCE}, key) for key in STRING_FIELDS),
    case({"ray.job.entrypoint_args": json.dumps(["--note", TOKEN])}, "ray.job.entrypoint_args[1]"),
    case({"ray.job.entrypoint_args": json.dumps([DYNAMIC_REFERENCE])}, "ray.job.entrypoint_args[0]"),
    case({"ray.job.entrypoint_args": json.dumps(["x{{RESOLVE:ssm:/a}}"])}, "ray.job.entrypoint_args[0]"),
    case({"ray.job.entrypoint_args": json.dumps(["${AWS::Region}"])}, "ray.job.entrypoint_args[0]"),
    case({"eks.admin_principal_arns": json.dumps([TOKEN])}, "eks.admin_principal_arns[0]"),
    case({"eks.public_access_cidrs": json.dumps([TOKEN])}, "eks.public_access_cidrs[0]"),
    case({"tags": json.dumps({"team": TOKEN})}, "tags.team"),
    case({"tags": json.dumps({TOKEN: "x"})}, "tags key"),
    case({"tags": json.dumps({"team": DYNAMIC_REFERENCE})}, "tags.team"),
    case({"eks.addon_versions": json.dumps({"vpc-cni": TOKEN})}, "eks.addon_versions"),
    case({"hyperpod.instance_groups": groups(labels={"team": TOKEN})}, "hyperpod.instance_groups[1].labels"),
    case({"hyperpod.instance_groups": groups(name=TOKEN)}, "hyperpod.instance_groups[1].name"),
    case({"hyperpod.instance_groups": groups(taints=[{"key": TOKEN}])}, "instance_groups[1].taints[0].key"),
    case({"hyperpod.instance_groups": groups(training_plan_arn=PLAN + TOKEN)}, "training_plan_arn"),
    case({"ray.worker_groups": json.dumps([{"name": TOKEN}])}, "ray.worker_groups[0].name"),
    case(
        {"hyperpod.dependency_chart.source": "local", "hyperpod.dependency_chart.local_path": f"/x/{TOKEN}"},
        "hyperpod.dependency_chart.local_path",
    ),
    # --- 2. numbers: booleans, YAML 1.1 words, overflow, NaN
    *(case({key: "on"}, key) for key in NUMBER_FIELDS),
    *(case({key: "9" * 5000}, key) for key in NUMBER_FIELDS[:6]),
    case({"hyperpod.instance_groups": groups(count=True)}, "hyperpod.instance_groups[1].count"),
    case({"hyperpod.instance_groups": groups(ebs_volume_gb=True)}, "instance_groups[1].ebs_volume_gb"),
    case({"hyperpod.instance_groups": groups(threads_per_core=True)}, "instance_groups[1].threads_per_core"),
    case({"ray.worker_groups": json.dumps([{"replicas": True}])}, "ray.worker_groups[0].replicas"),
    case({"ray.worker_groups": json.dumps([{"gpus": False}])}, "ray.worker_groups[0].gpus"),
    case({"ray.head.cpu": "1e306"}, "ray.head.cpu"),
    case({"ray.head.memory": "1e400"}, "ray.head.memory"),
    case({"ray.head.cpu": "1.5m"}, "ray.head.cpu"),
    case({"ray.head.memory": "99999999999Ei"}, "ray.head.memory"),
    case({"ray.worker_groups": json.dumps([{"cpu": "1e306"}])}, "ray.worker_groups[0].cpu"),
    case({"hyperpod.instance_groups": groups(count=float("nan"))}, "hyperpod.instance_groups[1].count"),
    case({"hyperpod.instance_groups": groups(count=1e306)}, "hyperpod.instance_groups[1].count"),
    case({"hyperpod.instance_groups": groups(count=4.5)}, "hyperpod.instance_groups[1].count"),
    # --- 3. context keys
    case({"eks:version": "1.32"}, "eks:version"),
    case({"ray:head.cpu": "2"}, "ray:head.cpu"),
    case({"prefix:": "abc"}, "prefix:"),
    case({"vpc:provider": "x"}, "vpc:provider"),
    case({"nework.az_count": "3"}, "nework"),
    # --- 4. shortened echoes
    case({"prefix": "a" * 8_000_000}, "prefix"),
    case({"ray.namespace": "x" * 100_000}, "ray.namespace"),
    case({"ray.job.entrypoint_args": json.dumps(["a\n"] * 10_000)}, "ray.job.entrypoint_args"),
    case({"ray.job.entrypoint_args": json.dumps(["a" * 4000] * 5)}, "ray.job.entrypoint_args"),
    case({"network.vpc_cidr": "10.0.0.0/16" * 10_000}, "network.vpc_cidr"),
    case({"x" * 10_000: "1"}, "xxxxxxxx"),
    # --- 5. depth and size of JSON values
    case({"ray.job.entrypoint_args": "[" * 100_000 + "]" * 100_000}, "ray.job.entrypoint_args"),
    case({"ray.job.entrypoint_args": "[" * 40 + "]" * 40}, "ray.job.entrypoint_args"),
    case({"tags": json.dumps({f"k{i}": "v" for i in range(200_000)})}, "tags"),
    case({"hyperpod.instance_groups": json.dumps([HEAD] * 101)}, "hyperpod.instance_groups"),
    # --- 6. inputs that deployed broken (each message cites the limit)
    case({"storage.mount_path": "/tmp/ray"}, "storage.mount_path"),
    case({"storage.mount_path": "/dev/shm"}, "storage.mount_path"),
    case({"storage.mount_path": "/proc"}, "storage.mount_path"),
    case({"storage.mount_path": "/proc/fsx"}, "storage.mount_path"),
    case({"storage.mount_path": "/home/ray"}, "storage.mount_path"),
    case({"storage.mount_path": "/var"}, "storage.mount_path"),
    case({"storage.mount_path": "/home"}, "storage.mount_path"),
    case({"ray.namespace": "r" * 63, "storage.claim_name": "c" * 200}, "storage.claim_name", also="253"),
    case({"hyperpod.instance_groups": groups(labels={"team": ""})}, "instance_groups[1]", also="1-63"),
    case(
        {"hyperpod.instance_groups": groups(labels={f"k{i}": "v" for i in range(51)})},
        "hyperpod.instance_groups[1]",
        also="at most 50",
    ),
    case(
        {"hyperpod.instance_groups": groups(taints=[{"key": f"k{i}"} for i in range(51)])},
        "hyperpod.instance_groups[1]",
        also="at most 50",
    ),
    case(
        {"hyperpod.instance_groups": groups(taints=[{"key": "a"}, {"key": "a", "value": "b"}])},
        "hyperpod.instance_groups[1]",
        also="same key and effect",
    ),
    case({"hyperpod.instance_groups": groups(count=6759)}, "instance_groups[1].count", also="6758"),
    case({"hyperpod.instance_groups": groups(ebs_volume_gb=16385)}, "instance_groups[1].ebs_volume_gb"),
    case(
        {
            "eks.endpoint_access": "public_and_private",
            "eks.public_access_cidrs": json.dumps([f"8.8.{i}.0/24" for i in range(41)]),
        },
        "eks",
        also="at most 40",
    ),
    case(
        {"hyperpod.instance_groups": json.dumps([{**HEAD, "count": 0}, WORKERS])}, "ray.head.instance_group"
    ),
    case({"network.vpc_cidr": "169.254.0.0/16"}, "network.vpc_cidr"),
    case({"network.vpc_cidr": "224.0.0.0/16"}, "network.vpc_cidr"),
    case({"network.vpc_cidr": "240.0.0.0/16"}, "network.vpc_cidr"),
    case({"network.vpc_cidr": "127.0.0.0/16"}, "network.vpc_cidr"),
    case({"network.vpc_cidr": "0.0.0.0/16"}, "network.vpc_cidr"),
    case(
        {"env.region": "cn-north-1", "eks.admin_principal_arns": json.dumps([ARN])},
        "eks.admin_principal_arns[0]",
        also="partition",
    ),
    case(
        {"env.region": "us-gov-west-1", "eks.admin_principal_arns": json.dumps([ARN])},
        "eks.admin_principal_arns[0]",
    ),
    case(
        {"env.region": "us-east-1", "hyperpod.instance_groups": groups(training_plan_arn=PLAN)},
        "hyperpod.instance_groups[1].training_plan_arn",
    ),
    case(
        {
            "env.region": "cn-north-1",
            "hyperpod.instance_groups": groups(training_plan_arn=PLAN.replace("us-west-2", "cn-north-1")),
        },
        "hyperpod.instance_groups[1].training_plan_arn",
    ),
    case({"eks.addon_versions": json.dumps({"not-an-addon": None})}, "eks", also="unknown EKS add-ons"),
    case({"eks.admin_principal_arns": json.dumps([ARN, ARN])}, "eks", also="more than once"),
    case(
        {"gcs_fault_tolerance.store": "in_cluster", "hyperpod.instance_groups": groups(count=0)},
        "gcs_fault_tolerance.store",
    ),
    case(
        {
            "gcs_fault_tolerance.store": "in_cluster",
            "hyperpod.instance_groups": groups(taints=[{"key": "dedicated", "value": "x"}]),
        },
        "gcs_fault_tolerance.store",
    ),
    case({"tags": json.dumps({"ray-on-hyperpod/deployment": "other"})}, "tags.ray-on-hyperpod/deployment"),
    case(
        {
            "env.account": "123456789012",
            "env.region": "us-west-2",
            "network.existing_vpc_id": "vpc-0123456789abcdef0",
            "network.compute_subnet_index": "5",
        },
        "network.compute_subnet_index",
    ),
]

# YAML files: (content, text every line must hold).
FILES = [
    pytest.param(ALIAS_BOMB, "anchors and aliases", id="alias-bomb"),
    pytest.param(b"a: &x {b: *x}\n", "refers to a value that contains it", id="self-reference"),
    pytest.param(b"a: &x [*x]\n", "refers to a value that contains it", id="self-reference-list"),
    pytest.param(b"x:\n" + b"".join(b"  " * i + b"- \n" for i in range(1, 60)), "nested", id="deep-block"),
    pytest.param(b"x: " + b"[" * 5000 + b"]" * 5000, "nested", id="deep-flow"),
    pytest.param(b"x: " + b"{a: " * 200 + b"1" + b"}" * 200, "nested", id="deep-mapping"),
    pytest.param(
        b"hyperpod:\n  cluster_name: a1\nhyperpod:\n  cluster_name: b2\n", "duplicate key", id="dup"
    ),
    pytest.param(b"prefix: abc\nprefix: abd\n", "duplicate key 'prefix'", id="dup-scalar"),
    pytest.param(b"network:\n  az_count: 2\n  az_count: 3\n", "duplicate key 'az_count'", id="dup-nested"),
    pytest.param(
        b"hyperpod:\n  instance_groups:\n    - {name: head, instance_type: ml.m5.2xlarge, count: 1}\n"
        b"    - {name: workers, instance_type: ml.p5.48xlarge, count: 4, ebs_volume_gb: on}\n",
        "hyperpod.instance_groups[1].ebs_volume_gb",
        id="yaml11-on",
    ),
    pytest.param(b"network:\n  az_count: yes\n", "network.az_count", id="yaml11-yes"),
    pytest.param(b"network:\n  nat_gateways: true\n", "network.nat_gateways", id="bool-int"),
    pytest.param(b"log_retention_days: 1:30\n", "log_retention_days", id="sexagesimal"),
    pytest.param(b"log_retention_days: .nan\n", "log_retention_days", id="nan"),
    pytest.param(b"log_retention_days: .inf\n", "log_retention_days", id="inf"),
    pytest.param(b"log_retention_days: 0x1e\n", "log_retention_days", id="hex"),
    pytest.param(b"prefix: " + b"a" * 8_000_000 + b"\n", "larger than", id="8MB"),
    pytest.param(
        b"ray:\n  job:\n    entrypoint_args: ['${Token[TOKEN.1]}']\n", "entrypoint_args[0]", id="token"
    ),
    pytest.param(
        b"ray:\n  job:\n    entrypoint_args: ['{{resolve:ssm:/x}}']\n", "entrypoint_args[0]", id="dynref"
    ),
    pytest.param(b"!!python/object/apply:os.system ['id']\n", "not valid YAML", id="python-tag"),
    pytest.param(b"? [a, b]\n: c\n", "config", id="list-key"),
    pytest.param(b"--- {}\n--- {}\n", "not valid YAML", id="two-documents"),
]


def run_main(context: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    application = cli_app(tmp_path / "out", context)
    with pytest.raises(SystemExit) as exited:  # any other exception fails the test, with its traceback
        entry_point.main(application)
    return exited.value.code, capsys.readouterr().err.splitlines()


def assert_refused(status: int, lines: list[str], field: str, also: str, outdir: Path) -> None:
    assert status == 1
    assert lines, "no error line"
    for line in lines:
        assert line.startswith("config error: "), line[:300]
        assert len(line) <= len("config error: ") + MAX_LINE, len(line)
        assert "Traceback" not in line
    assert any(field in line for line in lines), (field, lines)
    assert not also or any(also in line for line in lines), (also, lines)
    assert not outdir.exists() or not any(outdir.iterdir()), "something was written"


def test_the_suite_holds_at_least_150_distinct_cases():
    contexts = [json.dumps(p.values[0], sort_keys=True) for p in CASES] + [str(p.values[0]) for p in FILES]
    assert len(set(contexts)) == len(contexts) >= 150


@pytest.mark.parametrize(("context", "field", "also"), CASES)
def test_hostile_context_is_refused_in_config_error_lines(context, field, also, tmp_path, capsys):
    assert_refused(*run_main(context, tmp_path, capsys), field, also, tmp_path / "out")


@pytest.mark.parametrize(("content", "text"), FILES)
def test_hostile_yaml_file_is_refused_fast_in_config_error_lines(content, text, tmp_path, capsys):
    path = tmp_path / "config.yaml"
    path.write_bytes(content)
    assert_refused(*run_main({"config": str(path)}, tmp_path, capsys), text, "", tmp_path / "out")


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "/dev/null/x"])
def test_a_device_as_config_file_is_one_line(device, tmp_path, capsys):
    assert_refused(
        *run_main({"config": device}, tmp_path, capsys), f"config = '{device}'", "", tmp_path / "out"
    )


def test_a_construct_error_is_a_config_error_line(tmp_path, capsys, monkeypatch):
    """An exception a construct or jsii raises while building is reported, not a traceback."""

    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("Error: a construct refused this\n    at Object.<anonymous> (x.js:1:1)")

    monkeypatch.setattr(entry_point, "build_stacks", broken)
    status, lines = run_main({}, tmp_path, capsys)
    assert status == 1
    assert lines == [
        "config error: the app cannot be built from this configuration: RuntimeError: Error: a construct "
        "refused this"
    ]


def test_the_real_process_refuses_an_alias_bomb_in_one_line(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_bytes(ALIAS_BOMB)
    result = run_app({"config": str(bomb)})
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("config error: ") and "anchors and aliases" in line, line


def test_the_cdk_cli_refuses_a_colon_key_and_a_token_marker(tmp_path):
    """`npx cdk synth -c ...` as a user types it: exit 1, the lines on stderr, no template written."""
    outdir = tmp_path / "cdk.out"
    env = {**os.environ, "CDK_DISABLE_VERSION_CHECK": "1"}
    result = subprocess.run(
        [
            str(REPO / "node_modules/.bin/cdk"),
            "synth",
            "--no-notices",
            "--output",
            str(outdir),
            "-c",
            "eks:version=1.32",
            "-c",
            f'ray.job.entrypoint_args=["{TOKEN}"]',
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("config error: ")]
    assert any("context key 'eks:version'" in line for line in errors), result.stderr[-2000:]
    assert not list(outdir.glob("*.template.json"))


def test_the_ops_cli_refuses_an_alias_bomb(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_bytes(ALIAS_BOMB)
    result = subprocess.run(
        [sys.executable, "-m", "ops", "--config", str(bomb), "status"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("config error: ") and "anchors and aliases" in line, line
