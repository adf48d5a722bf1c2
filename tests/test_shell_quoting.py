"""Config values that reach a shell arrive there as data: each generated line is run by bash, with the
command replaced by one that prints its arguments, and the arguments are compared with the config values.

Sinks: the RayJob entrypoint (KubeRay runs it through a shell in the submitter pod), the supervisor's
entrypoint (no shell in its pod; Ray runs the entrypoint it submits through one) and the CodeBuild
buildspec of the HyperPod dependency chart. The lifecycle script takes no config value (it is uploaded as
it is in lifecycle_scripts/), which the last test pins.
"""

import importlib.util
import json
import shlex
import subprocess
import sys
from pathlib import Path

import cdk8s

from config import load_config
from config.hyperpod import DependencyChartConfig
from k8s_charts.ray_cluster import RayClusterChart
from k8s_charts.ray_job import RayJobChart
from k8s_charts.ray_supervisor import RaySupervisorChart
from stacks.components.hyperpod_dependencies.recipe import build_phases
from stacks.components.lifecycle_scripts import SCRIPTS_DIR

# Every character a shell treats specially, and a few complete attacks.
METACHARACTERS = [
    "; touch {canary}",
    "$(touch {canary})",
    "`touch {canary}`",
    "a && touch {canary}",
    "| touch {canary}",
    "> {canary}",
    "'quoted' \"double\" \\backslash",
    "$HOME $PATH {{PATH}} * ? [a-z] ~ # ! & < >",
    "--flag=value with spaces",
]
# Prints each argument on its own line, NUL-free, so the test can compare argv exactly.
PRINT_ARGS = 'printargs() { for a in "$@"; do printf \'%s\\0\' "$a"; done; }\n'


def run_as_argv(line: str, command: str, cwd: Path) -> list[str]:
    """Run `line` with `command` defined as a function that prints its arguments; return them."""
    script = PRINT_ARGS + f'{command}() {{ printargs "$@"; }}\n' + line
    result = subprocess.run(["bash", "-c", script], cwd=cwd, capture_output=True, check=True, timeout=30)
    return result.stdout.decode().split("\0")[:-1]


def test_rayjob_entrypoint_passes_each_argument_as_data(tmp_path):
    canary = tmp_path / "pwned"
    arguments = [value.format(canary=canary) for value in METACHARACTERS]
    config = load_config({"ray.job.enabled": "true", "ray.job.entrypoint_args": json.dumps(arguments)})
    chart = RayJobChart(cdk8s.App(), "job", config=config)
    argv = run_as_argv(chart.entrypoint, "python3", tmp_path)
    assert argv[0] == "train.py"
    assert argv[argv.index("--storage-path") - len(arguments) : argv.index("--storage-path")] == arguments
    assert not canary.exists()


def _supervisor_module():
    path = Path(__file__).resolve().parents[1] / "jobs" / "supervisor.py"
    spec = importlib.util.spec_from_file_location("supervisor", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("supervisor", module)
    spec.loader.exec_module(module)
    return module


def test_supervisor_job_passes_each_argument_as_data_to_the_end(tmp_path):
    """The Job's argv list holds each value as one element (Kubernetes execs it, no shell); the supervisor
    submits them to Ray joined with shlex, and the shell Ray runs that line in gives train.py the same
    arguments."""
    canary = tmp_path / "pwned"
    arguments = [value.format(canary=canary) for value in METACHARACTERS]
    config = load_config({"ray.job.enabled": "true", "ray.job.entrypoint_args": json.dumps(arguments)})
    app = cdk8s.App()
    cluster = RayClusterChart(app, "cluster", config=config, image="ray:2.60.0")
    chart = RaySupervisorChart(app, "sup", config=config, cluster=cluster, image="ray:2.60.0", image_key="k")
    (job,) = [o for o in chart.to_json() if o["kind"] == "Job"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    argv = container["command"] + container["args"]
    assert argv == chart.argv
    end = argv.index("--storage-path")
    assert argv[end - len(arguments) : end] == arguments
    options = _supervisor_module().parse_args(container["args"])
    received = run_as_argv(shlex.join(options.entrypoint), "python3", tmp_path)
    assert received == options.entrypoint[1:]
    assert received[received.index("--storage-path") - len(arguments) : received.index("--storage-path")] == (
        arguments
    )
    assert not canary.exists()


def test_buildspec_quotes_every_config_value_it_interpolates(tmp_path):
    """Values that pass validation (a digest, a repository URL with allowed characters) appear in the
    buildspec as single shell words: git, curl and test receive exactly the configured strings."""
    config = DependencyChartConfig(
        repository="https://git.example.com:8443/mirror/chart%20repo+x~y.git",
        chart_path="helm_chart/My.Chart_v2",
        content_sha256="a" * 64,
    )
    phases = build_phases(config)
    fetch = next(line for line in phases["pre_build"]["commands"] if " fetch " in line)
    assert run_as_argv(fetch, "git", tmp_path) == [
        "-C", "src", "fetch", "-q", "--depth", "1", config.repository, config.commit,
    ]  # fmt: skip
    download = phases["install"]["commands"][0]
    assert run_as_argv(download, "curl", tmp_path)[-1] == (
        f"https://get.helm.sh/helm-v{config.helm_version}-linux-amd64.tar.gz"
    )
    build = next(line for line in phases["build"]["commands"] if line.startswith("helm dependency"))
    assert run_as_argv(build, "helm", tmp_path) == ["dependency", "build", f"src/{config.chart_path}"]


def test_buildspec_values_cannot_carry_metacharacters_past_validation():
    """The fields that reach the buildspec refuse every metacharacter probe (config/types.py)."""
    fields = ("helm_version", "helm_sha256", "repository", "commit", "chart_path", "content_sha256")
    for field in fields:
        for probe in METACHARACTERS:
            value = probe.format(canary="/tmp/x")
            try:
                DependencyChartConfig(**{field: value})
            except ValueError:
                continue
            raise AssertionError(f"{field} accepted {value!r}")


def test_lifecycle_scripts_take_no_config_value():
    """HyperPod runs on_create.sh as uploaded: nothing in the directory is a template filled from config."""
    for script in SCRIPTS_DIR.iterdir():
        text = script.read_text()
        assert "{{" not in text and "%(" not in text, script
