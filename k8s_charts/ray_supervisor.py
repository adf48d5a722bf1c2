"""The declarative job's supervisor: a Kubernetes Job that keeps one training run going across head losses."""

import hashlib
import json
from typing import Any

from cdk8s import Chart
from cdk8s_plus_28 import k8s
from constructs import Construct

from config import AppConfig
from config.capacity import SUPERVISOR, cpu_quantity, memory_quantity

from .kuberay import RAY_GID, RAY_UID
from .ray_cluster import HEAD_PORTS, RayClusterChart, group_tolerations, node_selector
from .ray_job import JOB_DIR, train_command

# Where the Ray image (docker/ray/Dockerfile) holds jobs/supervisor.py.
SUPERVISOR_PATH = "/home/ray/jobs/supervisor.py"
# supervisor.py's exit statuses that end the run for good (its FINAL_EXIT_CODES; a test keeps them equal):
# 2 bad arguments, 3 gave up, 4 a request the job API refused for good, 5 the driver rejected its input.
# 1 (an unexpected Python error) and 6 (the token was refused: a new pod reads the recreated Secret) are
# retried with a new pod, up to BACKOFF_LIMIT.
FINAL_EXIT_CODES = [2, 3, 4, 5]
# Supervisor pods that crash for another reason (killed for memory, a Python error) before the Job fails.
BACKOFF_LIMIT = 6
COMPONENT_LABEL = "app.kubernetes.io/name"
COMPONENT = "ray-job-supervisor"


class RaySupervisorChart(Chart):
    """A `batch/v1` Job in the Ray namespace that runs jobs/supervisor.py against the RayCluster's head.

    A job submitted through Ray's job API runs its driver on the head, so it dies with the head; KubeRay
    cannot retry a RayJob that selects an existing cluster. The supervisor resubmits the same train.py
    command (same `--run-name`, so it resumes from its last checkpoint) whenever the head comes back, for up
    to `pre_running_deadline_seconds` of head absence (a replaced head node goes through HyperPod's health
    checks first). It talks to the head's Service over the pod network (the namespace's NetworkPolicy
    admits its pods) with the token of KubeRay's Secret; it needs no Kubernetes API access.

    Pod failures: a pod lost with its node (eviction, node failure: condition DisruptionTarget) is replaced
    without counting against `backoffLimit`; a supervisor that ends for good (FINAL_EXIT_CODES: bad
    arguments, gave up, a permanent refusal, a driver that rejected its input) fails the Job at once, so a
    broken train.py is not resubmitted `backoffLimit` times over; any other crash (a Python error, an OOM
    kill, a refused token) is retried up to BACKOFF_LIMIT times. `podFailurePolicy` needs
    `restartPolicy: Never`.

    A Job's pod template is immutable, so the Job's name carries a digest of it: a changed image or argument
    list makes a new Job, and the manifest's prune label deletes the old one. `image_key` is a synth-time
    string naming the image (the asset hash, or the configured URI) for when `image` is a deploy-time token.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        config: AppConfig,
        cluster: RayClusterChart,
        image: str,
        image_key: str,
    ) -> None:
        super().__init__(scope, id)
        self.argv = supervisor_argv(config, cluster)
        digest = hashlib.sha256(
            json.dumps(
                k8s.KubeJob.manifest(spec=_job_spec(config, cluster, image_key, self.argv)), sort_keys=True
            ).encode()
        ).hexdigest()[:8]
        # At most 47 + 5 + 8 = 60 characters: a Job name must fit the 63 of its pods' job-name label.
        self.job_name = f"{config.ray.job.name}-sup-{digest}"
        k8s.KubeJob(
            self,
            "supervisor",
            metadata=k8s.ObjectMeta(
                name=self.job_name, namespace=config.ray.namespace, labels={COMPONENT_LABEL: COMPONENT}
            ),
            spec=_job_spec(config, cluster, image, self.argv),
        )


def supervisor_argv(config: AppConfig, cluster: RayClusterChart) -> list[str]:
    """The supervisor's command line: no shell, so every configured value arrives as one argument."""
    address = f"http://{cluster.head_service_name}:{HEAD_PORTS['dashboard']}"
    return [
        "python3",
        SUPERVISOR_PATH,
        "--address",
        address,
        "--working-dir",
        JOB_DIR,
        "--head-wait-s",
        str(config.ray.job.pre_running_deadline_seconds),
        "--",
        *train_command(config),
    ]


def _job_spec(config: AppConfig, cluster: RayClusterChart, image: str, argv: list[str]) -> k8s.JobSpec:
    return k8s.JobSpec(
        backoff_limit=BACKOFF_LIMIT,
        pod_failure_policy=k8s.PodFailurePolicy(
            rules=[
                k8s.PodFailurePolicyRule(
                    action="Ignore",
                    on_pod_conditions=[
                        k8s.PodFailurePolicyOnPodConditionsPattern(type="DisruptionTarget", status="True")
                    ],
                ),
                k8s.PodFailurePolicyRule(
                    action="FailJob",
                    on_pod_conditions=[],  # required by the 1.28 typings, optional in the API
                    on_exit_codes=k8s.PodFailurePolicyOnExitCodesRequirement(
                        container_name="supervisor", operator="In", values=FINAL_EXIT_CODES
                    ),
                ),
            ]
        ),
        template=k8s.PodTemplateSpec(
            metadata=k8s.ObjectMeta(labels={COMPONENT_LABEL: COMPONENT}),
            spec=_pod_spec(config, cluster, image, argv),
        ),
    )


def _pod_spec(config: AppConfig, cluster: RayClusterChart, image: str, argv: list[str]) -> k8s.PodSpec:
    """On the head's instance group, in room config/capacity.py keeps beside the head pod; unprivileged
    like the Ray pods (the root filesystem stays writable: the job SDK zips the working dir under /tmp)."""
    group = config.hyperpod.group(config.ray.head.instance_group)
    size = {
        "cpu": k8s.Quantity.from_string(cpu_quantity(SUPERVISOR.cpu_millis)),
        "memory": k8s.Quantity.from_string(memory_quantity(SUPERVISOR.memory_mib)),
    }
    token = k8s.EnvVarSource(
        secret_key_ref=k8s.SecretKeySelector(name=cluster.auth_secret_name, key=cluster.auth_secret_key)
    )
    return k8s.PodSpec(
        restart_policy="Never",
        automount_service_account_token=False,
        node_selector=node_selector(group),
        tolerations=[_toleration(t) for t in group_tolerations(group)] or None,
        security_context=k8s.PodSecurityContext(
            run_as_non_root=True,
            run_as_user=RAY_UID,
            run_as_group=RAY_GID,
            seccomp_profile=k8s.SeccompProfile(type="RuntimeDefault"),
        ),
        containers=[
            k8s.Container(
                name="supervisor",
                image=image,
                command=argv[:2],
                args=argv[2:],
                env=[
                    # Ray's job SDK sends the token as a bearer header when token auth is on.
                    k8s.EnvVar(name="RAY_AUTH_MODE", value="token"),
                    k8s.EnvVar(name="RAY_AUTH_TOKEN", value_from=token),
                ],
                resources=k8s.ResourceRequirements(requests=size, limits=size),
                security_context=k8s.SecurityContext(
                    allow_privilege_escalation=False, capabilities=k8s.Capabilities(drop=["ALL"])
                ),
            )
        ],
    )


def _toleration(toleration: Any) -> k8s.Toleration:
    if toleration.value is None:
        return k8s.Toleration(key=toleration.key, operator="Exists", effect=toleration.effect)
    return k8s.Toleration(
        key=toleration.key, operator="Equal", value=toleration.value, effect=toleration.effect
    )
