"""Kubernetes access to the deployed EKS cluster, through the user's own AWS CLI and kubectl."""

import base64
import binascii
import selectors
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from .outputs import Deployment
from .tools import OpsError, kubectl_json, run_tool, start_tool

HEALTH_LABEL = "sagemaker.amazonaws.com/node-health-status"
RAY_CLUSTER_LABEL = "ray.io/cluster"
DASHBOARD_PORT = 8265


def use_cluster(deployment: Deployment) -> str:
    """Write (or refresh) the cluster's kubeconfig entry and return its context name (the cluster's name).

    Access is the cluster's decision: without an access entry for your principal (eks.admin_principal_arns)
    or a reachable endpoint, kubectl fails and says so.
    """
    previous = _current_context()
    run_tool(
        "aws", "eks", "update-kubeconfig", "--name", deployment.eks_cluster,
        "--region", deployment.region, "--alias", deployment.eks_cluster,
    )  # fmt: skip
    if previous and previous != deployment.eks_cluster:
        # update-kubeconfig also makes its context the current one; ops passes --context to every call,
        # so the user's own kubectl keeps pointing where it did.
        run_tool("kubectl", "config", "use-context", previous)
    return deployment.eks_cluster


def _current_context() -> str | None:
    """The user's current kubectl context; None without one (or without a kubeconfig)."""
    try:
        return run_tool("kubectl", "config", "current-context").strip() or None
    except OpsError:
        return None


# NVIDIA GPU feature discovery's driver labels: the current names, then the older ones it still writes.
DRIVER_FULL = "nvidia.com/cuda.driver-version.full"
DRIVER_PARTS = ("nvidia.com/cuda.driver.major", "nvidia.com/cuda.driver.minor", "nvidia.com/cuda.driver.rev")


@dataclass(frozen=True)
class NodeInfo:
    health: str  # HyperPod's health label, "-" before it labels the node
    driver: str | None  # NVIDIA driver version from GPU feature discovery's labels; None: not labelled

    def driver_major(self) -> int:
        return int(self.driver.split(".")[0]) if self.driver and self.driver[0].isdigit() else 0


def nodes(context: str) -> dict[str, NodeInfo]:
    """Kubernetes node name (HyperPod names them hyperpod-<instance id>) -> health and driver version."""
    found = {}
    for node in kubectl_json(context, "get", "nodes")["items"]:
        labels = node["metadata"].get("labels", {})
        found[node["metadata"]["name"]] = NodeInfo(labels.get(HEALTH_LABEL, "-"), driver_version(labels))
    return found


def driver_version(labels: dict[str, str]) -> str | None:
    if DRIVER_FULL in labels:
        return labels[DRIVER_FULL]
    parts = [labels[key] for key in DRIVER_PARTS if key in labels]
    return ".".join(parts) if parts else None


def ray_cluster(context: str, namespace: str) -> list[dict]:
    return kubectl_json(context, "-n", namespace, "get", "rayclusters.ray.io")["items"]


def ray_pods(context: str, namespace: str) -> list[dict]:
    return kubectl_json(context, "-n", namespace, "get", "pods", "-l", RAY_CLUSTER_LABEL)["items"]


def job(context: str, namespace: str, name: str) -> dict | None:
    """A Kubernetes Job, or None when it does not exist."""
    found = kubectl_json(context, "-n", namespace, "get", "jobs", "--field-selector", f"metadata.name={name}")
    return found["items"][0] if found["items"] else None


def ray_token(context: str, namespace: str, secret: str) -> str:
    """The Ray auth token from the Secret KubeRay uses (key `auth_token`)."""
    data = kubectl_json(context, "-n", namespace, "get", "secret", secret).get("data", {})
    if "auth_token" not in data:
        raise OpsError(f"secret {namespace}/{secret} has no auth_token key")
    try:
        return base64.b64decode(data["auth_token"], validate=True).decode().strip()
    except (binascii.Error, UnicodeDecodeError):
        raise OpsError(f"secret {namespace}/{secret}: auth_token is not base64 text") from None


@contextmanager
def port_forward(
    context: str,
    namespace: str,
    service: str,
    local_port: int,
    *,
    wait_s: float = 30,
    remote_port: int = DASHBOARD_PORT,
) -> Iterator[str]:
    """Forward localhost:local_port to the service's `remote_port` (Ray's dashboard unless told); yields the
    local URL while it runs."""
    process = start_tool(
        "kubectl", "--context", context, "-n", namespace, "port-forward",
        f"svc/{service}", f"{local_port}:{remote_port}",
    )  # fmt: skip
    try:
        _wait_forwarding(process, wait_s)
        yield f"http://127.0.0.1:{local_port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_forwarding(process, wait_s: float) -> None:
    """kubectl prints `Forwarding from 127.0.0.1:<port> -> <remote port>` once the tunnel listens."""
    deadline = time.monotonic() + wait_s
    ready = selectors.DefaultSelector()
    ready.register(process.stdout, selectors.EVENT_READ)
    while (remaining := deadline - time.monotonic()) > 0:
        if not ready.select(timeout=remaining):
            break
        line = process.stdout.readline()
        if line.startswith("Forwarding from"):
            return
        if not line and process.poll() is not None:
            error = process.stderr.read().strip().splitlines()
            raise OpsError(f"kubectl port-forward exited: {error[-1] if error else process.returncode}")
    raise OpsError(f"kubectl port-forward did not start within {wait_s:.0f} s")
