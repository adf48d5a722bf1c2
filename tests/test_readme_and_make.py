"""A new user's path as the README prints it: the example config synthesizes offline through the real CLI,
every make target takes CONFIG=, and deploy/destroy show the plan and ask before they act."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support import REPO
from tests.test_cli import CDK, run

sys.path.insert(0, str(REPO / "scripts"))
import prices  # scripts/ modules are run by path: imported from their directory
import summary


def readme_example() -> str:
    text = (REPO / "README.md").read_text()
    match = re.search(r"```yaml\n(# my-cluster\.yaml\n.*?)```", text, re.DOTALL)
    assert match, "the README lost its my-cluster.yaml example"
    return match.group(1)


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The README's example and its command (`cdk synth -c config=my-cluster.yaml -c eks.version=1.32`)."""
    work = tmp_path_factory.mktemp("readme")
    config = work / "my-cluster.yaml"
    config.write_text(readme_example())
    out = work / "cdk.out"
    args = [
        CDK,
        "synth",
        "--no-notices",
        "-q",
        "-c",
        f"config={config}",
        "-c",
        "eks.version=1.32",
        "-o",
        str(out),
    ]
    return out, run(args, timeout=300)


def test_the_readme_example_synthesizes_offline_as_printed(example) -> None:
    out, done = example
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    names = {
        a["properties"]["stackName"] for a in manifest["artifacts"].values() if "stackName" in a["properties"]
    }
    assert names == {
        f"my-ray-{part}"
        for part in ("network", "storage", "eks", "platform", "hyperpod", "gcs-store", "ray", "observability")
    }
    eks = json.loads((out / "Eks.template.json").read_text())["Resources"]
    proxy = next(r for r in eks.values() if r["Properties"].get("AddonName") == "kube-proxy")
    assert proxy["Properties"]["AddonVersion"].startswith("v1.32.")  # the add-ons followed eks.version
    # The example names an admin principal, so no access warning.
    assert "admin_principal_arns is empty" not in done.stderr


def test_the_default_config_warns_that_nobody_gets_cluster_access(tmp_path) -> None:
    done = run([CDK, "synth", "--no-notices", "-q", "-o", str(tmp_path / "out")], timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "eks.admin_principal_arns is empty: no person will have access to the cluster" in done.stderr


def test_the_summary_shows_groups_fsx_and_a_price_that_adds_up(example) -> None:
    out, _ = example
    plan = summary.read_plan(out)
    groups = [(g.name, g.instance_type, g.count) for g in plan.instance_groups]
    assert groups == [("head", "ml.m5.2xlarge", 1), ("workers", "ml.p5.48xlarge", 2)]
    (fsx,) = plan.file_systems
    assert (fsx.mode, fsx.capacity_gib, fsx.deployment_type, fsx.throughput_per_tib) == (
        "static", 1200, "PERSISTENT_2", 250,
    )  # fmt: skip
    # The GCS store (on by default): a primary and one replica.
    assert [(c.node_type, c.count) for c in plan.cache_nodes] == [("cache.t4g.small", 2)]
    expected = 0.461 + 2 * 63.296 + 1200 * 0.21 / 730 + 2 * 0.0256 + 0.10 + 0.045
    assert plan.hourly_total == pytest.approx(expected)
    text = summary.summarize(out, "my-cluster.yaml")
    assert text.startswith("Config: my-cluster.yaml")
    assert "workers: ml.p5.48xlarge x 2" in text and f"${expected:,.2f}" in text
    assert f"On-demand list prices for {prices.PRICE_REGION}, {prices.PRICE_DATE}" in text


def test_a_dynamic_file_system_is_read_from_its_storage_class_and_claim(tmp_path) -> None:
    objects = [
        {"kind": "StorageClass", "metadata": {"name": "fsx"}, "provisioner": "fsx.csi.aws.com",
         "parameters": {"deploymentType": "PERSISTENT_2", "perUnitStorageThroughput": "500"}},
        {"kind": "PersistentVolumeClaim", "metadata": {"name": "c"},
         "spec": {"storageClassName": "fsx", "resources": {"requests": {"storage": "2400Gi"}}}},
        {"kind": "PersistentVolumeClaim", "metadata": {"name": "other"},
         "spec": {"storageClassName": "gp3", "resources": {"requests": {"storage": "10Gi"}}}},
    ]  # fmt: skip
    (tmp_path / "Ray-Claim.yaml").write_text(yaml.safe_dump_all(objects))
    (fs,) = summary._dynamic_file_systems(tmp_path)
    assert (fs.mode, fs.capacity_gib, fs.throughput_per_tib) == ("dynamic", 2400, 500)
    assert fs.hourly == pytest.approx(2400 * 0.34 / 730)


def _plan(out: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "scripts/summary.py", str(out), *args]
    return subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60, check=False
    )


def test_destroy_says_it_deletes_fsx_and_checkpoints_and_will_not_act_unasked(example) -> None:
    out, _ = example
    refused = _plan(out, "--plan", "destroy")
    assert refused.returncode == 1
    assert "DELETES the FSx for Lustre file system (1200 GiB, static" in refused.stdout
    assert "including the job's checkpoints" in refused.stdout
    assert (
        refused.stderr.strip() == "Not asking without a terminal: run `make destroy YES=1` to destroy anyway."
    )
    assert _plan(out, "--plan", "destroy", "--yes").returncode == 0


def test_deploy_asks_and_only_yes_goes_ahead(example) -> None:
    out, _ = example
    for answer, code in (("no\n", 1), ("y\n", 1), ("yes\n", 0)):
        done = subprocess.run(
            [sys.executable, "-c", "import sys, builtins; sys.stdin.isatty = lambda: True; "
             f"sys.argv = ['summary.py', {str(out)!r}, '--plan', 'deploy']; "
             "import runpy; runpy.run_path('scripts/summary.py', run_name='__main__')"],
            cwd=REPO, input=answer, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == code, (answer, done.stderr)
        assert "make deploy creates: my-ray-network" in done.stdout


def _make_n(*args: str) -> str:
    done = subprocess.run(
        ["make", "-n", *args], cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("target", ["synth", "deploy", "destroy"])
def test_every_cdk_target_takes_the_config_file(target: str) -> None:
    commands = _make_n(target, "CONFIG=my.yaml")
    assert "-c config=my.yaml" in commands
    assert '--config-name "my.yaml"' in commands


@pytest.mark.parametrize("target", ["status", "dashboard", "submit", "outputs", "jobs", "logs", "stop"])
def test_every_ops_target_takes_the_config_file(target: str) -> None:
    assert f"-m ops --outputs-file cdk-outputs.json --config my.yaml {target}" in _make_n(
        target, "CONFIG=my.yaml"
    )


def test_deploy_and_destroy_act_on_the_assembly_they_showed_and_ask_unless_yes() -> None:
    deploy = _make_n("deploy", "CONFIG=my.yaml")
    assert re.search(r"--plan deploy *$", deploy, re.MULTILINE)
    assert "cdk --no-notices deploy --all --app cdk.out" in deploy
    assert "--plan deploy --yes" in _make_n("deploy", "CONFIG=my.yaml", "YES=1")
    destroy = _make_n("destroy")
    assert re.search(r"--plan destroy *$", destroy, re.MULTILINE)
    assert "destroy --all --app cdk.out --force" in destroy
    # Credentials are checked before anything is synthesized for deploy or destroy.
    preflight = re.search(r"-m ops --outputs-file cdk-outputs.json +preflight", destroy)
    assert preflight and preflight.start() < destroy.index("cdk --no-notices synth")


def test_the_job_commands_install_the_pinned_ray_sdk_and_not_the_dev_toolchain(tmp_path) -> None:
    """`make submit` (and jobs, logs, stop) in a fresh checkout: the job SDK at the job's own Ray pin."""
    fresh = _make_n("submit", f"VENV={tmp_path / 'venv'}")
    assert "requirements-dev.txt" not in fresh and "-r jobs/fsdp_ray/requirements.txt" not in fresh
    install = re.search(r'"ray\[default\]==\$\((.*)\)"', fresh)
    assert install, fresh
    version = subprocess.run(
        ["bash", "-c", install.group(1)], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    pins = (REPO / "jobs/fsdp_ray/requirements.txt").read_text()
    assert version and re.search(rf"^ray\[[a-z,]+\]=={re.escape(version)}$", pins, re.MULTILINE)


def test_a_training_plan_group_is_not_priced_at_on_demand_rates() -> None:
    plan_arn = "arn:aws:sagemaker:us-west-2:123456789012:training-plan/p5-week"
    properties = {
        "Cluster": {
            "InstanceGroups": [
                {"InstanceGroupName": "head", "InstanceType": "ml.m5.2xlarge", "InstanceCount": 1},
                {"InstanceGroupName": "workers", "InstanceType": "ml.p5.48xlarge", "InstanceCount": 4,
                 "TrainingPlanArn": plan_arn},
            ]
        }
    }  # fmt: skip
    head, workers = summary._instance_groups(properties)
    assert head.hourly == prices.instance_hourly("ml.m5.2xlarge") and not head.training_plan
    assert workers.hourly == 0.0 and "training plan: prepaid" in workers.label


def test_the_readme_cost_block_is_what_the_default_config_prints(assembly) -> None:
    """The README's price table is the summary of the default config's synthesized stacks, line by line."""
    block = re.search(r"## Cost\n.*?```\n(.*?)```", (REPO / "README.md").read_text(), re.DOTALL)
    assert block, "the README lost its cost block"
    printed = [line.rstrip() for line in summary.price_table(summary.read_plan(Path(assembly.directory)))]
    table = [line for line in printed if line.startswith("  ") and "$" in line]
    assert block.group(1).rstrip().splitlines() == table


@pytest.mark.parametrize("target", ["synth", "deploy", "destroy", "plan"])
def test_every_synth_starts_without_the_last_synths_manifests(target: str) -> None:
    commands = _make_n(target).splitlines()
    synth = next(i for i, line in enumerate(commands) if " synth -q" in line)
    assert commands[synth - 1] == "rm -rf cdk.out/manifests"
