"""The operations CLI: preflight, outputs, status, dashboard, submit, jobs, logs, stop and manifest-diff, for
the deployment in cdk-outputs.json or, without that file, in CloudFormation."""

import json
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from pathlib import Path
from typing import Annotated

import botocore.exceptions
import typer
from botocore.config import Config
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from config import AppConfig, ConfigError, load_config
from config.loader import read_config_file
from config.observability import GRAFANA_LOCAL_PORT, GRAFANA_SERVICE_PORT

from . import aws, kube, plan
from . import jobs as ray_jobs
from . import leftovers as ops_leftovers
from . import preflight as checks
from .outputs import Deployment, deployment_from_aws, deployment_of, read_outputs_file, stack_outputs
from .status import StatusView, coloured, render_status
from .tools import OpsError

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console()
EXIT_CLUSTER_FAILED = 3  # `status`: the HyperPod cluster is Failed (README: Exit codes)
STS_CONFIG = Config(retries={"mode": "standard", "max_attempts": 2}, connect_timeout=5, read_timeout=10)


class State:
    """What every command shares: the config (as deployed) and where the outputs file is."""

    def __init__(self, outputs_file: Path, config_file: Path | None) -> None:
        self.outputs_file = outputs_file
        self.config = read_config(config_file)

    def deployment(self) -> Deployment:
        """The outputs file when there is one (`make deploy` wrote it), else the stacks in CloudFormation."""
        outputs = read_outputs_file(self.outputs_file)
        if outputs is not None:
            return deployment_of(outputs, self.config.prefix, str(self.outputs_file))
        try:
            return self.deployment_from_aws()
        except OpsError as error:
            raise OpsError(
                f"{self.outputs_file} not found (`make deploy` and `make outputs` write it) and "
                f"CloudFormation did not tell: {error}"
            ) from None

    def deployment_from_aws(self) -> Deployment:
        cloudformation = aws.client("cloudformation", self.config.env.region)
        with aws.aws_errors("reading the stacks from CloudFormation"):
            return deployment_from_aws(cloudformation, self.config.prefix, cloudformation.meta.region_name)


def read_config(path: Path | None) -> AppConfig:
    """The same AppConfig `cdk -c config=PATH` builds (without -c overrides: put them in the file)."""
    # The app's own bounded, strict reader (config/loader.py): the same file gives the same errors.
    values = read_config_file(str(path)) if path is not None else None
    return load_config({}, values)


@app.callback()
def _options(
    ctx: typer.Context,
    outputs_file: Annotated[Path, typer.Option(help="written by `make deploy`")] = Path("cdk-outputs.json"),
    config: Annotated[Path | None, typer.Option(help="the YAML config you deployed with (CONFIG=)")] = None,
) -> None:
    ctx.obj = State(outputs_file, config)


@app.command()
def preflight(
    ctx: typer.Context,
    deploy: Annotated[
        bool, typer.Option("--deploy", help="also kubectl, AWS CLI v2, Docker and the CDK bootstrap")
    ] = False,
) -> None:
    """Check AWS credentials and region (the config's env.region and env.account when set); print the
    principal to put in eks.admin_principal_arns. With --deploy, also what a deploy needs."""
    env = ctx.obj.config.env
    session = aws.session(env.region)
    if session.region_name is None:
        raise OpsError("no AWS region: set AWS_REGION or `aws configure set region <region>` (or env.region)")
    with aws.aws_errors("checking your AWS credentials"):
        identity = session.client("sts", config=STS_CONFIG).get_caller_identity()
    if env.account and identity["Account"] != env.account:
        raise OpsError(
            f"env.account is {env.account} but your credentials are for account {identity['Account']}: "
            "switch AWS_PROFILE or fix env.account"
        )
    console.print(f"account {identity['Account']}, region {session.region_name}, you are {identity['Arn']}")
    console.print(f'for cluster access: eks.admin_principal_arns: ["{principal_arn(identity["Arn"])}"]')
    if deploy:
        problems = checks.tool_problems(builds_image=ctx.obj.config.ray.image_uri is None)
        with aws.aws_errors("checking the CDK bootstrap"):
            ssm = session.client("ssm", config=STS_CONFIG)
            bootstrap = checks.bootstrap_problem(ssm, identity["Account"], session.region_name)
        problems += [bootstrap] if bootstrap else []
        if problems:
            raise OpsError("; ".join(problems))


def principal_arn(caller_arn: str) -> str:
    """The IAM ARN an EKS access entry takes: an assumed-role session becomes its role. The role's path is
    not in a session ARN: roles under one (SSO's aws-reserved/sso.amazonaws.com/) need it added."""
    prefix, _, resource = caller_arn.partition(":assumed-role/")
    if not resource:
        return caller_arn
    partition_account = prefix.replace(":sts:", ":iam:")
    return f"{partition_account}:role/{resource.split('/')[0]}"


@app.command()
def outputs(ctx: typer.Context) -> None:
    """Write the outputs file from the deployed stacks in CloudFormation (what `make deploy` writes), for a
    teammate, a second machine or after the file was lost."""
    state: State = ctx.obj
    cloudformation = aws.client("cloudformation", state.config.env.region)
    with aws.aws_errors("reading the stacks from CloudFormation"):
        found, statuses = stack_outputs(cloudformation, state.config.prefix)
        deployment_of(found, state.config.prefix, "CloudFormation", statuses)  # says what is missing
    state.outputs_file.write_text(json.dumps(found, indent=2) + "\n")
    listed = ", ".join(f"{name} ({status})" for name, status in statuses.items())
    console.print(f"wrote {state.outputs_file}: {listed}")


@app.command("manifest-diff")
def manifest_diff(
    ctx: typer.Context,
    assembly: Annotated[Path, typer.Argument(help="the synthesized cdk.out")] = Path("cdk.out"),
) -> None:
    """The Kubernetes manifests of the synthesized stacks against the deployed ones, as YAML diffs (read
    only: CloudFormation GetTemplate). `make plan` runs it after `cdk diff`."""
    artifacts = json.loads((assembly / "manifest.json").read_text())["artifacts"].values()
    stacks = [a["properties"] for a in artifacts if a.get("type") == "aws:cloudformation:stack"]
    cloudformation = aws.client("cloudformation", ctx.obj.config.env.region)
    changed = 0
    for stack in stacks:
        planned = json.loads((assembly / stack["templateFile"]).read_text())
        with aws.aws_errors(f"reading the deployed template of {stack['stackName']}"):
            deployed = _deployed_template(cloudformation, stack["stackName"])
        for diff in plan.manifest_diffs(stack["stackName"], deployed, planned):
            changed += 1
            console.print(diff, markup=False, highlight=False)
    console.print(f"{changed} manifest(s) change" if changed else "no manifest changes")


def _deployed_template(cloudformation, stack_name: str) -> dict:
    """The deployed stack's template ({} when the stack is not deployed)."""
    try:
        body = cloudformation.get_template(StackName=stack_name, TemplateStage="Original")["TemplateBody"]
    except botocore.exceptions.ClientError as error:
        if "does not exist" in error.response.get("Error", {}).get("Message", ""):
            return {}
        raise
    return body if isinstance(body, dict) else json.loads(body)


@app.command()
def status(
    ctx: typer.Context,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="refresh until every group is at its target")
    ] = False,
    interval: Annotated[float, typer.Option(help="seconds between refreshes")] = 30,
    grafana_port: Annotated[int, typer.Option(help="local port of the Grafana tunnel")] = GRAFANA_LOCAL_PORT,
) -> None:
    """HyperPod cluster, instance groups (current/target) and nodes with their NVIDIA driver, the RayCluster
    and its pods, GCS fault tolerance and, with observability on, each node's GPU utilization. Exits 3 when
    the HyperPod cluster is Failed."""
    deployment = ctx.obj.deployment()
    context = kube.use_cluster(deployment)
    with ExitStack() as tunnels:
        grafana, grafana_error = None, None
        try:
            grafana = tunnels.enter_context(_grafana_forward(deployment, context, grafana_port))
        except OpsError as error:  # port busy (`make dashboard` elsewhere), Grafana Pending: the rest shows
            grafana_error = f"no tunnel to Grafana ({error})"
        if watch:
            view = watch_status(lambda: render_status(deployment, context, grafana, grafana_error), interval)
        else:
            view = render_status(deployment, context, grafana, grafana_error)
            console.print(view.renderable())
    if view.failed:
        raise typer.Exit(EXIT_CLUSTER_FAILED)


def watch_status(refresh, interval: float, max_backoff: float = 300) -> StatusView:
    """Refresh until done or Failed; a refresh that fails (kubectl or AWS for a moment) keeps the last view,
    says so under it and waits longer before the next try (doubling, up to max_backoff)."""
    view, note, wait = StatusView(), "", interval
    with Live(console=console, refresh_per_second=1) as live:
        while True:
            try:
                view, wait = refresh(), interval
                note = f"refreshed at {_now()}, next in {wait:.0f} s (Ctrl-C to stop)"
            except OpsError as error:
                wait = min(wait * 2, max_backoff)
                note = f"[red]refresh failed at {_now()}: {error}[/red]; retrying in {wait:.0f} s"
            live.update(Group(view.renderable(), note))
            if view.done or view.failed:
                return view
            time.sleep(wait)


def _now() -> str:
    return time.strftime("%H:%M:%S")


def _grafana_forward(deployment: Deployment, context: str, local_port: int):
    """A tunnel to the deployment's Grafana (yields its URL), or None without observability."""
    if deployment.grafana is None:
        return nullcontext(None)
    namespace, service = deployment.grafana
    return kube.port_forward(context, namespace, service, local_port, remote_port=GRAFANA_SERVICE_PORT)


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
    from . import submit as ray_submit  # noqa: PLC0415 (builds train.py's arguments with the cdk8s charts' code)

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


@contextmanager
def _ray_jobs(ctx: typer.Context, local_port: int) -> Iterator:
    """A job client through a tunnel to the Ray head's dashboard, with the cluster's token."""
    deployment = ctx.obj.deployment()
    namespace, service = _ray_names(deployment)
    context = kube.use_cluster(deployment)
    secret = deployment.ray_auth_secret
    token = kube.ray_token(context, namespace, secret) if secret else None
    with kube.port_forward(context, namespace, service, local_port) as url:
        try:
            yield ray_jobs.client(url, token)
        except RuntimeError as error:  # the job SDK's answer to an unknown job id, a refused call
            raise OpsError(f"Ray: {str(error).strip().splitlines()[-1]}") from None


PORT_OPTION = typer.Option(help="local port of the tunnel")


@app.command()
def jobs(ctx: typer.Context, local_port: Annotated[int, PORT_OPTION] = kube.DASHBOARD_PORT) -> None:
    """Every Ray job on the cluster, newest first: id, state, training run, start and duration."""
    with _ray_jobs(ctx, local_port) as client:
        found = ray_jobs.rows(client.list_jobs())
    table = Table("job", "state", "run", "started", "duration", title="Ray jobs", title_justify="left")
    for job in found:
        table.add_row(job.job_id, coloured(job.state), job.run_name, job.started, job.duration)
    console.print(table if found else "no Ray jobs on the cluster")


@app.command()
def logs(
    ctx: typer.Context,
    job_id: Annotated[str | None, typer.Argument(help="default: the newest running job")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep streaming until the job ends")] = False,
    local_port: Annotated[int, PORT_OPTION] = kube.DASHBOARD_PORT,
) -> None:
    """A job's logs from its start; --follow re-attaches to a running job and exits 1 unless it succeeds."""
    with _ray_jobs(ctx, local_port) as client:
        job_id = job_id or ray_jobs.latest_running(ray_jobs.rows(client.list_jobs()))
        if not follow:
            print(client.get_job_logs(job_id), end="")
            return
        final = ray_jobs.follow(client, job_id, lambda text: print(text, end="", flush=True))
    console.print(f"job {job_id}: {coloured(final)}")
    if final != "SUCCEEDED":
        raise typer.Exit(1)


@app.command()
def stop(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="the job (`ops jobs` lists them)")],
    local_port: Annotated[int, PORT_OPTION] = kube.DASHBOARD_PORT,
) -> None:
    """Stop a job (its checkpoints stay: submitting the same run again resumes from the latest)."""
    with _ray_jobs(ctx, local_port) as client:
        stopped = client.stop_job(job_id)
    console.print(f"job {job_id}: {'stopping' if stopped else 'already ended'}")


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
    region = config.env.region
    with aws.aws_errors("looking for HyperPod clusters left by this deployment"):
        found = ops_leftovers.leftover_clusters(aws.client("sagemaker", region), f"{config.prefix}-hyperpod")
    if found:
        raise OpsError(ops_leftovers.advice(found, aws.session(region).region_name or "<region>"))
    console.print("no HyperPod cluster of this deployment is left")
    if not keep_logs:
        with aws.aws_errors("deleting HyperPod's cluster log group"):
            logs = aws.client("logs", region)
            for name in ops_leftovers.delete_cluster_logs(logs, config.hyperpod.cluster_name):
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
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
        # An AWS call outside aws.aws_errors: still one line, never a traceback.
        print(f"error: AWS: {error}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
