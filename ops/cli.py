"""The operations CLI: preflight, status, dashboard and submit, for the deployment in cdk-outputs.json."""

import os
import sys
import time
from contextlib import ExitStack, nullcontext
from pathlib import Path
from typing import Annotated

import boto3
import botocore.exceptions
import typer
import yaml
from botocore.config import Config
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from config import AppConfig, ConfigError, load_config
from config.observability import GRAFANA_LOCAL_PORT, GRAFANA_SERVICE_PORT

from . import hyperpod, kube
from . import leftovers as ops_leftovers
from . import submit as ray_submit
from .gcs import gcs_status
from .metrics import gpu_utilization_by_node
from .outputs import Deployment, read_deployment
from .tools import OpsError, run_tool

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console()
STS_CONFIG = Config(retries={"mode": "standard", "max_attempts": 2}, connect_timeout=5, read_timeout=10)


class State:
    """What every command shares: the config (as deployed) and where the outputs file is."""

    def __init__(self, outputs_file: Path, config_file: Path | None) -> None:
        self.outputs_file = outputs_file
        self.config = read_config(config_file)

    def deployment(self) -> Deployment:
        return read_deployment(self.outputs_file, self.config.prefix)


def read_config(path: Path | None) -> AppConfig:
    """The same AppConfig `cdk -c config=PATH` builds (without -c overrides: put them in the file)."""
    values = None
    if path is not None:
        try:
            values = yaml.safe_load(path.read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            raise ConfigError([f"config = {str(path)!r}: cannot read it as YAML: {error}"]) from None
    return load_config({}, values)


@app.callback()
def _options(
    ctx: typer.Context,
    outputs_file: Annotated[Path, typer.Option(help="written by `make deploy`")] = Path("cdk-outputs.json"),
    config: Annotated[Path | None, typer.Option(help="the YAML config you deployed with (CONFIG=)")] = None,
) -> None:
    ctx.obj = State(outputs_file, config)


@app.command()
def preflight() -> None:
    """Check AWS credentials and region; print the principal to put in eks.admin_principal_arns."""
    # boto3 reads AWS_DEFAULT_REGION and profiles; the CDK CLI also honours AWS_REGION.
    session = boto3.Session(region_name=os.environ.get("AWS_REGION"))
    if session.region_name is None:
        raise OpsError("no AWS region: set AWS_REGION or `aws configure set region <region>` (or env.region)")
    try:
        identity = session.client("sts", config=STS_CONFIG).get_caller_identity()
    except (botocore.exceptions.NoCredentialsError, botocore.exceptions.PartialCredentialsError):
        raise OpsError(
            "no AWS credentials: `aws configure`, `aws sso login` or AWS_PROFILE=<profile>"
        ) from None
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as error:
        raise OpsError(f"AWS credentials do not work: {error}") from None
    console.print(f"account {identity['Account']}, region {session.region_name}, you are {identity['Arn']}")
    console.print(f'for cluster access: eks.admin_principal_arns: ["{principal_arn(identity["Arn"])}"]')


def principal_arn(caller_arn: str) -> str:
    """The IAM ARN an EKS access entry takes: an assumed-role session becomes its role. The role's path is
    not in a session ARN: roles under one (SSO's aws-reserved/sso.amazonaws.com/) need it added."""
    prefix, _, resource = caller_arn.partition(":assumed-role/")
    if not resource:
        return caller_arn
    partition_account = prefix.replace(":sts:", ":iam:")
    return f"{partition_account}:role/{resource.split('/')[0]}"


@app.command()
def status(
    ctx: typer.Context,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="refresh until every group is at its target")
    ] = False,
    interval: Annotated[float, typer.Option(help="seconds between refreshes")] = 30,
    grafana_port: Annotated[int, typer.Option(help="local port of the Grafana tunnel")] = GRAFANA_LOCAL_PORT,
) -> None:
    """HyperPod cluster, instance groups (current/target) and nodes, the RayCluster and its pods, GCS fault
    tolerance and, with observability on, each node's GPU utilization."""
    deployment = ctx.obj.deployment()
    context = kube.use_cluster(deployment)
    with _grafana_forward(deployment, context, grafana_port) as grafana:
        if not watch:
            console.print(render_status(deployment, context, grafana))
            return
        with Live(render_status(deployment, context, grafana), console=console, refresh_per_second=1) as live:
            while True:
                time.sleep(interval)
                view = render_status(deployment, context, grafana)
                live.update(view)
                if getattr(view, "done", False):
                    return


def _grafana_forward(deployment: Deployment, context: str, local_port: int):
    """A tunnel to the deployment's Grafana (yields its URL), or None without observability."""
    if deployment.grafana is None:
        return nullcontext(None)
    namespace, service = deployment.grafana
    return kube.port_forward(context, namespace, service, local_port, remote_port=GRAFANA_SERVICE_PORT)


def render_status(deployment: Deployment, context: str, grafana: str | None = None) -> Group:
    parts: list = []
    done = True
    if deployment.hyperpod_cluster:
        state = hyperpod.cluster_state(hyperpod.sagemaker(deployment.region), deployment.hyperpod_cluster)
        parts += hyperpod_view(state, kube.node_health(context))
        done = state.status == "InService" and state.ready_fraction >= 1
    if deployment.ray_namespace:
        clusters = kube.ray_cluster(context, deployment.ray_namespace)
        parts.append(ray_view(clusters, kube.ray_pods(context, deployment.ray_namespace)))
        done = done and bool(clusters) and all(c.get("status", {}).get("state") == "ready" for c in clusters)
        parts.append(gcs_view(deployment, context))
        supervisor = deployment.ray_outputs.get("SupervisorJob")
        if supervisor:
            parts.append(supervisor_view(supervisor, kube.job(context, deployment.ray_namespace, supervisor)))
    if grafana is not None:
        parts.append(gpu_view(gpu_utilization_by_node(grafana)))
    group = Group(*parts)
    group.done = done  # type: ignore[attr-defined]  (read by --watch)
    return group


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


def hyperpod_view(state: hyperpod.ClusterState, health: dict[str, str]) -> list:
    title = f"HyperPod {state.name}: {state.status}" + (f" ({state.failure})" if state.failure else "")
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}")
    )
    for group in state.groups:
        progress.add_task(
            f"{group.name:<12} {group.instance_type:<16} {group.status:<10}",
            completed=group.current,
            total=group.target,
        )
    nodes = Table("group", "instance", "type", "status", "health", title="nodes", title_justify="left")
    for node in state.nodes:
        nodes.add_row(
            node.group, node.instance_id, node.instance_type,
            node.status + (f": {node.message}" if node.message else ""), health.get(node.instance_id, "-"),
        )  # fmt: skip
    return [title, progress, nodes]


def ray_view(clusters: list[dict], pods: list[dict]) -> Table:
    states = ", ".join(
        f"{c['metadata']['name']}: {c.get('status', {}).get('state', 'pending')}" for c in clusters
    )
    table = Table("pod", "phase", "node", title=f"RayCluster {states or 'not found'}", title_justify="left")
    for pod in pods:
        table.add_row(
            pod["metadata"]["name"], pod.get("status", {}).get("phase", "?"), pod["spec"].get("nodeName", "-")
        )
    return table


@app.command()
def dashboard(
    ctx: typer.Context,
    local_port: Annotated[int, typer.Option(help="local port of the tunnel")] = kube.DASHBOARD_PORT,
    grafana_port: Annotated[int, typer.Option(help="local port of the Grafana tunnel")] = GRAFANA_LOCAL_PORT,
) -> None:
    """Port-forward the Ray dashboard (and Grafana, whose panels its Metrics tab embeds from
    http://localhost:3000) and print their URLs; Ctrl-C closes them."""
    deployment = ctx.obj.deployment()
    namespace, service = _ray_names(deployment)
    context = kube.use_cluster(deployment)
    with ExitStack() as tunnels:
        url = tunnels.enter_context(kube.port_forward(context, namespace, service, local_port))
        console.print(f"Ray dashboard: {url}  (Ctrl-C to stop)")
        grafana = tunnels.enter_context(_grafana_forward(deployment, context, grafana_port))
        if grafana is not None:
            console.print(f"Grafana: {grafana}")
        if deployment.ray_auth_secret:
            secret = deployment.ray_auth_secret
            console.print(
                f"It asks for the token: kubectl -n {namespace} get secret {secret} "
                "-o jsonpath='{.data.auth_token}' | base64 -d"
            )
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def submit(
    ctx: typer.Context,
    run_name: Annotated[str | None, typer.Option(help="default: ray.job.name, so a resubmit resumes")] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="stream the logs until the job ends")
    ] = False,
    local_port: Annotated[int, typer.Option(help="local port of the tunnel")] = kube.DASHBOARD_PORT,
) -> None:
    """Submit jobs/fsdp_ray: workers and GPUs from the config; arguments after `--` go to train.py."""
    state: State = ctx.obj
    deployment = state.deployment()
    namespace, service = _ray_names(deployment)
    submission = ray_submit.build_submission(state.config, run_name, ctx.args)
    context = kube.use_cluster(deployment)
    token = (
        kube.ray_token(context, namespace, deployment.ray_auth_secret) if deployment.ray_auth_secret else None
    )
    with kube.port_forward(context, namespace, service, local_port) as url:
        job_id = ray_submit.submit(url, token, submission)
        console.print(
            f"submitted {job_id}: run {submission.run_name} in {deployment.region}: {submission.entrypoint}"
        )
        if follow:
            final = ray_submit.follow(url, token, job_id, lambda text: print(text, end="", flush=True))
            console.print(f"job {job_id}: {final}")
            if final != "SUCCEEDED":
                raise typer.Exit(1)


def _ray_names(deployment: Deployment) -> tuple[str, str]:
    if not (deployment.ray_namespace and deployment.ray_head_service):
        raise OpsError(
            "cdk-outputs.json has no Ray stack outputs (RayNamespace, RayHeadService): deploy the Ray stack"
        )
    return deployment.ray_namespace, deployment.ray_head_service


@app.command()
def leftovers(
    ctx: typer.Context,
    keep_logs: Annotated[bool, typer.Option(help="keep HyperPod's cluster log group")] = False,
) -> None:
    """After destroy: fail if a HyperPod cluster this deployment created still exists (with the command that
    deletes it); otherwise delete HyperPod's cluster log group, which no stack owns."""
    config: AppConfig = ctx.obj.config
    session = boto3.Session(region_name=os.environ.get("AWS_REGION"))
    found = ops_leftovers.leftover_clusters(session.client("sagemaker"), f"{config.prefix}-hyperpod")
    if found:
        raise OpsError(ops_leftovers.advice(found, session.region_name or "<region>"))
    console.print("no HyperPod cluster of this deployment is left")
    if not keep_logs:
        for name in ops_leftovers.delete_cluster_logs(session.client("logs"), config.hyperpod.cluster_name):
            console.print(f"deleted log group {name}")


def main() -> None:
    try:
        app()
    except ConfigError as error:
        for problem in error.problems:
            print(f"config error: {problem}", file=sys.stderr)
        sys.exit(1)
    except OpsError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
