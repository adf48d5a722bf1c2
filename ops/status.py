"""What `ops status` shows: one panel per part (HyperPod, nodes, RayCluster, GCS store, supervisor job, GPUs).

Every panel is optional and independent: a part that fails to answer (an API error, a tunnel that did not
open, a Pending Grafana) shows its error inline and the others still show, so one status report (or one
refresh of --watch) never fails as a whole for one part. Nodes are named as Kubernetes names them
(`hyperpod-<instance id>`) in every table.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import botocore.exceptions
from rich.console import Group
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from . import hyperpod, kube
from .gcs import gcs_status
from .metrics import gpu_utilization_by_node
from .outputs import Deployment
from .tools import OpsError, run_tool

GOOD = {"InService", "Running", "ready", "Schedulable", "healthy", "Succeeded", "CREATE_COMPLETE"}
BAD = {"Failed", "failed", "Unschedulable", "UnschedulablePendingReboot", "UnschedulablePendingReplacement"}
# torch 2.13 cu130 (the Ray image's) needs an R580 driver or newer (CUDA 13.0's minimum on Linux).
MIN_DRIVER_MAJOR = 580


def coloured(state: str) -> str:
    """A state in green when it is where it should be, red when it failed, yellow while on its way."""
    colour = "green" if state in GOOD else "red" if state in BAD else "yellow"
    return f"[{colour}]{state}[/{colour}]"


def node_name(instance_id: str) -> str:
    """The Kubernetes node name HyperPod gives an instance (the one naming of every table here)."""
    return f"hyperpod-{instance_id}"


@dataclass
class StatusView:
    parts: list = field(default_factory=list)
    done: bool = True  # every group at its target and the RayCluster ready (--watch stops)
    failed: bool = False  # the HyperPod cluster is Failed (--watch stops, exit 3)

    def add(self, title: str, read: Callable[[], Any], show: Callable[[Any], list]) -> Any:
        """Read one part and show it; on an error, show the error in its place (and the view is not done)."""
        try:
            value = read()
        except OpsError as error:
            self.parts.append(f"{title}: [red]{error}[/red]")
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
            self.parts.append(f"{title}: [red]{error}[/red]")
        else:
            self.parts += show(value)
            return value
        self.done = False
        return None

    def renderable(self) -> Group:
        return Group(*self.parts)


def render_status(
    deployment: Deployment, context: str, grafana: str | None = None, grafana_error: str | None = None
) -> StatusView:
    view = StatusView()
    for missing in deployment.missing:
        view.parts.append(f"[yellow]stack {missing}[/yellow]")
        view.done = False
    nodes = view.add("Kubernetes nodes", lambda: kube.nodes(context), lambda _: [])
    if deployment.hyperpod_cluster:
        name = deployment.hyperpod_cluster
        state = view.add(
            f"HyperPod {name}",
            lambda: hyperpod.cluster_state(hyperpod.sagemaker(deployment.region), name),
            lambda s: hyperpod_view(s, nodes or {}),
        )
        at_target = state is not None and state.status == "InService" and state.ready_fraction >= 1
        view.done = view.done and at_target
        view.failed = state is not None and state.status == "Failed"
    if deployment.ray_namespace:
        _ray_parts(view, deployment, context)
    if grafana_error is not None:
        view.parts.append(f"GPU utilization: [red]{grafana_error}[/red]")
    elif grafana is not None:
        view.parts.append(gpu_view(gpu_utilization_by_node(grafana)))
    return view


def _ray_parts(view: StatusView, deployment: Deployment, context: str) -> None:
    namespace = deployment.ray_namespace
    assert namespace is not None
    clusters = view.add(
        "RayCluster",
        lambda: (kube.ray_cluster(context, namespace), kube.ray_pods(context, namespace)),
        lambda found: [ray_view(*found)],
    )
    ready = clusters is not None and bool(clusters[0])
    view.done = view.done and ready and all(c.get("status", {}).get("state") == "ready" for c in clusters[0])
    view.parts.append(gcs_view(deployment, context))
    supervisor = deployment.ray_outputs.get("SupervisorJob")
    if supervisor:
        view.add(
            f"Supervisor job {supervisor}",
            lambda: kube.job(context, namespace, supervisor),
            lambda job: [supervisor_view(supervisor, job)],
        )


def supervisor_view(name: str, job: dict | None) -> str:
    """The declarative training run's supervisor (ray.job.enabled): running, done, or failed and why."""
    if job is None:
        return f"Supervisor job {name}: not found (deleted, or replaced by a newer deploy)"
    status = job.get("status", {})
    conditions = {c["type"]: c for c in status.get("conditions", []) if c.get("status") == "True"}
    if "Complete" in conditions:
        return f"Supervisor job {name}: the training run succeeded"
    if "Failed" in conditions:
        reason = conditions["Failed"].get("message") or conditions["Failed"].get("reason", "")
        return f"Supervisor job {name}: failed ({reason})"
    restarts = status.get("failed", 0)
    return f"Supervisor job {name}: running ({status.get('active', 0)} pod, {restarts} replaced)"


def gcs_view(deployment: Deployment, context: str) -> str:
    """Whether the head's state survives a head loss, and whether its store answers."""
    gcs = gcs_status(deployment.gcs_outputs, deployment.ray_outputs)
    if not gcs.enabled or gcs.health_check is None:
        return "GCS fault tolerance: off (losing the Ray head restarts every worker)"
    tool, *args = gcs.health_check
    # The user's kubeconfig context and the deployment's region, as every other call here uses.
    args = ["--context", context, *args] if tool == "kubectl" else [*args, "--region", deployment.region]
    try:
        answer = run_tool(tool, *args).strip()
    except OpsError as error:
        answer = f"no answer ({error})"
    health = "healthy" if answer == gcs.healthy_when else f"not healthy: {answer or 'nothing'}"
    return f"GCS fault tolerance: on, store {gcs.store}, {health}"


def gpu_view(utilization: dict[str, float] | None) -> Table | str:
    if utilization is None:
        return "GPU utilization: Grafana did not answer"
    if not utilization:
        return "GPU utilization: no samples yet"
    table = Table("node", "GPU utilization", title="GPUs (last 5 minutes)", title_justify="left")
    for node, percent in sorted(utilization.items()):
        table.add_row(node, f"{percent:.0f} %")
    return table


def hyperpod_view(state: hyperpod.ClusterState, nodes: dict[str, kube.NodeInfo]) -> list:
    title = f"HyperPod {state.name}: {coloured(state.status)}" + (
        f" ({state.failure})" if state.failure else ""
    )
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}")
    )
    for group in state.groups:
        progress.add_task(
            f"{group.name:<12} {group.instance_type:<16} {group.status:<10}",
            completed=group.current,
            total=group.target,
        )
    table = Table("node", "group", "type", "status", "health", "driver", title="nodes", title_justify="left")
    old_drivers = []
    for node in state.nodes:
        name = node_name(node.instance_id)
        info = nodes.get(name)
        driver = info.driver if info and info.driver else "-"
        if info and info.driver and info.driver_major() < MIN_DRIVER_MAJOR:
            old_drivers.append(name)
            driver = f"[red]{driver}[/red]"
        table.add_row(
            name, node.group, node.instance_type,
            coloured(node.status) + (f": {node.message}" if node.message else ""),
            coloured(info.health) if info else "-", driver,
        )  # fmt: skip
    parts: list = [title, progress, table]
    if old_drivers:
        parts.append(
            f"[red]warning: NVIDIA driver older than R{MIN_DRIVER_MAJOR} on {', '.join(old_drivers)}: "
            "the Ray image's torch (CUDA 13.0) will not see the GPUs there[/red]"
        )
    return parts


def ray_view(clusters: list[dict], pods: list[dict]) -> Table:
    states = ", ".join(
        f"{c['metadata']['name']}: {coloured(c.get('status', {}).get('state', 'pending'))}" for c in clusters
    )
    table = Table("pod", "phase", "node", title=f"RayCluster {states or 'not found'}", title_justify="left")
    for pod in pods:
        phase = pod.get("status", {}).get("phase", "?")
        table.add_row(pod["metadata"]["name"], coloured(phase), pod["spec"].get("nodeName", "-"))
    return table
