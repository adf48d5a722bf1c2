"""`make deploy`'s own `cdk deploy` command, as `make -n` prints it, run by the pinned CDK CLI in a terminal
against a local moto CloudFormation: a first deploy of stacks that add IAM (what every stack of this app
does) gets through the CLI's approval decision with stacks deployed in parallel. An update meets the same
decision (the CLI asks on the security diff of whatever it deploys); moto's change-set updates hang, so
the update is not run here.

The CLI refuses to ask for approval when --concurrency > 1 ("concurrency is greater than 1 so we are unable
to get a confirmation from the user"); the control case runs the same command with the old
`--require-approval broadening` to show that this test does reach that decision.
"""

import json
import os
import pty
import re
import shlex
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.support import REPO
from tests.test_cli import CDK, OFFLINE

ACCOUNT, REGION = "123456789012", "us-east-1"  # moto's default account


def deploy_command() -> list[str]:
    """The recipe's `cdk ... deploy ...` line, with YES=1 (the user answered the project's own plan)."""
    printed = subprocess.run(
        ["make", "-n", "deploy", "YES=1"], cwd=REPO, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    lines = [line for line in printed.splitlines() if " deploy --all " in line]
    assert len(lines) == 1, printed
    return shlex.split(lines[0])


def role(service: str) -> dict:
    trust = {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
    return {
        "Type": "AWS::IAM::Role",
        "Properties": {"AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [trust]}},
    }


def assembly(directory: Path, stacks: dict[str, dict[str, str]]) -> Path:
    """A cloud assembly of stacks (name -> role name -> service) with IAM roles, a security-broadening
    change for the CLI, and no assets."""
    directory.mkdir(parents=True, exist_ok=True)
    artifacts = {}
    for stack, roles in stacks.items():
        template = {"Resources": {name: role(service) for name, service in roles.items()}}
        (directory / f"{stack}.template.json").write_text(json.dumps(template))
        artifacts[stack] = {
            "type": "aws:cloudformation:stack",
            "environment": f"aws://{ACCOUNT}/{REGION}",
            "properties": {"templateFile": f"{stack}.template.json"},
        }
    (directory / "manifest.json").write_text(json.dumps({"version": "55.0.0", "artifacts": artifacts}))
    return directory


@pytest.fixture
def moto_endpoint() -> Iterator[str]:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    # moto's backends are process-wide: start from an empty account, whatever ran before.
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10)
    yield endpoint
    server.stop()


def in_terminal(command: list[str], cwd: Path, endpoint: str) -> tuple[int, str]:
    """Run with stdin/stdout on a pseudo-terminal, as `make deploy` runs for a user (the CLI only asks on a
    TTY), against the moto endpoint with dummy credentials."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        **OFFLINE,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": REGION,
    }
    main, child = pty.openpty()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdin=child, stdout=child, stderr=child)
    os.close(child)
    output = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(main)
    return process.wait(timeout=120), output.decode(errors="replace")


def with_app(command: list[str], app: Path) -> list[str]:
    assert command[0] == "cdk" and "--app" in command, command
    at = command.index("--app")
    return [CDK, *command[1:at], "--app", str(app), *command[at + 2 :]]


def test_the_recipe_deploys_in_parallel_after_the_plan_was_approved(tmp_path, moto_endpoint) -> None:
    command = deploy_command()
    assert int(command[command.index("--concurrency") + 1]) > 1  # stacks still deploy in parallel
    stacks = {"DemoA": {"RoleA": "lambda.amazonaws.com"}, "DemoB": {"RoleA": "lambda.amazonaws.com"}}
    first = assembly(tmp_path / "v1", stacks)
    code, output = in_terminal(with_app(command, first), tmp_path, moto_endpoint)
    assert code == 0, output[-3000:]
    assert "unable to get a confirmation" not in output
    assert (tmp_path / "cdk-outputs.json").exists()


def test_the_old_flags_reach_the_clis_refusal(tmp_path, moto_endpoint) -> None:
    """Control: this setup does reach the approval decision, where asking with concurrency 4 fails."""
    command = deploy_command()
    command[command.index("--require-approval") + 1] = "broadening"
    first = assembly(tmp_path / "v1", {"DemoA": {"RoleA": "lambda.amazonaws.com"}})
    code, output = in_terminal(with_app(command, first), tmp_path, moto_endpoint)
    assert code == 1
    assert "concurrency is greater than 1 so we are unable to get a confirmation" in output


def plan_diff_command() -> list[str]:
    printed = subprocess.run(
        ["make", "-n", "plan", "CONFIG=my.yaml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    lines = [line for line in printed.splitlines() if " diff --all " in line]
    assert len(lines) == 1, printed
    return shlex.split(lines[0])


def test_the_plan_diffs_against_the_deployed_stack_without_a_change_set(tmp_path, moto_endpoint) -> None:
    first = assembly(tmp_path / "v1", {"DemoA": {"RoleA": "lambda.amazonaws.com"}})
    code, output = in_terminal(with_app(deploy_command(), first), tmp_path, moto_endpoint)
    assert code == 0, output[-3000:]
    cloudformation = boto3.client(
        "cloudformation", endpoint_url=moto_endpoint, region_name=REGION,
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip
    change_sets = cloudformation.list_change_sets(StackName="DemoA")["Summaries"]
    planned = assembly(
        tmp_path / "v2", {"DemoA": {"RoleA": "lambda.amazonaws.com", "RoleB": "ec2.amazonaws.com"}}
    )
    code, output = in_terminal(with_app(plan_diff_command(), planned), tmp_path, moto_endpoint)
    assert code == 0, output[-3000:]
    plain = re.sub(r"\x1b\[[0-9;]*m", "", output)
    assert re.search(r"\[\+\] AWS::IAM::Role RoleB", plain), plain[-3000:]
    # Read-only: the diff created no change set (the deploy role's right) beside the deploy's own.
    assert cloudformation.list_change_sets(StackName="DemoA")["Summaries"] == change_sets
