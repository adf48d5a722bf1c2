"""The command-line tools the CLI drives (kubectl, aws), behind one function so tests can swap the binaries.

kubectl and the AWS CLI are what a user already has configured (kubeconfig, profiles, SSO); going through
them keeps the CLI's credentials and cluster access exactly the user's own.
"""

import json
import shutil
import subprocess
from typing import Any


class OpsError(Exception):
    """A problem the user can fix: printed as one line, no traceback."""


INSTALL_HINT = {
    "kubectl": "install kubectl within one minor version of the cluster (README: Prerequisites)",
    "aws": "install the AWS CLI v2 (README: Prerequisites)",
}


def tool_path(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise OpsError(f"{name} not found on PATH: {INSTALL_HINT.get(name, 'install it')}")
    return path


def run_tool(name: str, *args: str, timeout: float = 60) -> str:
    """Run `name args...` and return its stdout; a non-zero exit becomes an OpsError with its stderr."""
    command = [tool_path(name), *args]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise OpsError(f"{name} {' '.join(args)}: no answer in {timeout:.0f} s") from None
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise OpsError(
            f"{name} {' '.join(args[:3])} failed: {detail[-1] if detail else f'exit {done.returncode}'}"
        )
    return done.stdout


def kubectl_json(context: str, *args: str) -> Any:
    """`kubectl --context CONTEXT args... -o json`, parsed."""
    return json.loads(run_tool("kubectl", "--context", context, *args, "-o", "json"))


def start_tool(name: str, *args: str) -> subprocess.Popen:
    """A long-running tool (port-forward) whose first output line says it is ready."""
    return subprocess.Popen(
        [tool_path(name), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1
    )
