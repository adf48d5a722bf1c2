"""Short builders over the generated ray.io/v1 classes, whose names run to 70 characters.

KubeRay's CRDs inline a full PodTemplateSpec wherever one appears, so the head and the worker pod templates
are two unrelated families of generated classes with identical shapes. `PodTypes` names one family; the
builders take plain dataclasses and the family, so a chart never spells a generated class name.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from cdk8s import JsonPatch
from constructs import Construct

from k8s_charts.imports.io import ray

RAY_STOP = ("/bin/sh", "-c", "ray stop")
# The `ray` user of the rayproject/ray images (and so of docker/ray/Dockerfile): uid 1000, group users.
RAY_UID = 1000
RAY_GID = 100


@dataclass(frozen=True)
class Toleration:
    key: str
    effect: str = "NoSchedule"
    value: str | None = None  # None tolerates any value (operator Exists)


@dataclass(frozen=True)
class Volume:
    """A volume and where the Ray container mounts it: a PVC when claim_name is set, else an emptyDir."""

    name: str
    mount_path: str
    claim_name: str | None = None
    medium: str | None = None  # "Memory" for /dev/shm


@dataclass(frozen=True)
class RayContainer:
    """The Ray container of a pod; requests equal limits so the pod is Guaranteed and never evicted first."""

    name: str
    image: str
    resources: Mapping[str, str | int]
    ports: Mapping[str, int] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Pod:
    """A Ray pod. It runs as the image's `ray` user with no capabilities, no privilege escalation and the
    runtime's default seccomp profile; the root filesystem stays writable because Ray writes to the home
    directory (runtime environments, caches)."""

    container: RayContainer
    node_selector: Mapping[str, str]
    volumes: Sequence[Volume] = ()
    tolerations: Sequence[Toleration] = ()


@dataclass(frozen=True)
class RootInitStep:
    """An init container that runs as root before the Ray container, with only `capabilities` added (all
    others dropped), never privileged and without privilege escalation: what Pod Security "baseline"
    admits. `resources` are both requests and limits, so the pod stays Guaranteed."""

    name: str
    image: str
    command: Sequence[str]
    volume: Volume
    capabilities: Sequence[str]
    resources: Mapping[str, str] = field(default_factory=lambda: {"cpu": "100m", "memory": "64Mi"})


class PodTypes(NamedTuple):
    """One family of generated pod-template classes (head or worker)."""

    template: Any
    spec: Any
    container: Any
    port: Any
    env: Any
    resources: Any
    limit: Any
    request: Any
    lifecycle: Any
    pre_stop: Any
    exec: Any
    mount: Any
    volume: Any
    empty_dir: Any
    claim: Any
    toleration: Any
    pod_security: Any
    pod_seccomp: Any
    security: Any
    capabilities: Any


def _family(prefix: str) -> PodTypes:
    # Every class of the family is `<prefix><suffix>`; a missing one fails at import, not at deploy.
    suffixes = {
        "template": "",
        "spec": "Spec",
        "container": "SpecContainers",
        "port": "SpecContainersPorts",
        "env": "SpecContainersEnv",
        "resources": "SpecContainersResources",
        "limit": "SpecContainersResourcesLimits",
        "request": "SpecContainersResourcesRequests",
        "lifecycle": "SpecContainersLifecycle",
        "pre_stop": "SpecContainersLifecyclePreStop",
        "exec": "SpecContainersLifecyclePreStopExec",
        "mount": "SpecContainersVolumeMounts",
        "volume": "SpecVolumes",
        "empty_dir": "SpecVolumesEmptyDir",
        "claim": "SpecVolumesPersistentVolumeClaim",
        "toleration": "SpecTolerations",
        "pod_security": "SpecSecurityContext",
        "pod_seccomp": "SpecSecurityContextSeccompProfile",
        "security": "SpecContainersSecurityContext",
        "capabilities": "SpecContainersSecurityContextCapabilities",
    }
    return PodTypes(**{key: getattr(ray, prefix + suffix) for key, suffix in suffixes.items()})


HEAD = _family("RayClusterSpecHeadGroupSpecTemplate")
WORKER = _family("RayClusterSpecWorkerGroupSpecsTemplate")


def pod_template(types: PodTypes, pod: Pod) -> Any:
    """A pod template of the given family: one Ray container that runs `ray stop` before it is killed."""
    spec = types.spec(
        containers=[_container(types, pod.container, pod.volumes)],
        node_selector=dict(pod.node_selector),
        tolerations=[_toleration(types, toleration) for toleration in pod.tolerations] or None,
        volumes=[_volume(types, volume) for volume in pod.volumes] or None,
        security_context=types.pod_security(
            run_as_non_root=True,
            run_as_user=RAY_UID,
            run_as_group=RAY_GID,
            seccomp_profile=types.pod_seccomp(type="RuntimeDefault"),
        ),
    )
    return types.template(spec=spec)


def _container(types: PodTypes, container: RayContainer, volumes: Sequence[Volume]) -> Any:
    return types.container(
        name=container.name,
        image=container.image,
        ports=[types.port(name=name, container_port=port) for name, port in container.ports.items()] or None,
        env=[types.env(name=name, value=value) for name, value in container.env.items()] or None,
        resources=types.resources(
            limits={key: _quantity(types.limit, value) for key, value in container.resources.items()},
            requests={key: _quantity(types.request, value) for key, value in container.resources.items()},
        ),
        lifecycle=types.lifecycle(pre_stop=types.pre_stop(exec=types.exec(command=list(RAY_STOP)))),
        volume_mounts=[types.mount(name=volume.name, mount_path=volume.mount_path) for volume in volumes]
        or None,
        security_context=types.security(
            allow_privilege_escalation=False, capabilities=types.capabilities(drop=["ALL"])
        ),
    )


def _quantity(quantity_type: Any, value: str | int) -> Any:
    return quantity_type.from_number(value) if isinstance(value, int) else quantity_type.from_string(value)


def _volume(types: PodTypes, volume: Volume) -> Any:
    if volume.claim_name is not None:
        return types.volume(
            name=volume.name, persistent_volume_claim=types.claim(claim_name=volume.claim_name)
        )
    return types.volume(name=volume.name, empty_dir=types.empty_dir(medium=volume.medium))


def _toleration(types: PodTypes, toleration: Toleration) -> Any:
    if toleration.value is None:
        return types.toleration(key=toleration.key, operator="Exists", effect=toleration.effect)
    return types.toleration(
        key=toleration.key, operator="Equal", value=toleration.value, effect=toleration.effect
    )


def head_group(*, ray_start_params: Mapping[str, str], pod: Pod) -> ray.RayClusterSpecHeadGroupSpec:
    # ClusterIP only: reachable through port-forward, never from outside the cluster.
    return ray.RayClusterSpecHeadGroupSpec(
        ray_start_params=dict(ray_start_params),
        service_type="ClusterIP",
        template=pod_template(HEAD, pod),
    )


def worker_group(
    *,
    name: str,
    replicas: int,
    min_replicas: int,
    max_replicas: int,
    ray_start_params: Mapping[str, str],
    pod: Pod,
) -> ray.RayClusterSpecWorkerGroupSpecs:
    return ray.RayClusterSpecWorkerGroupSpecs(
        group_name=name,
        replicas=replicas,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        ray_start_params=dict(ray_start_params),
        template=pod_template(WORKER, pod),
    )


HEAD_POD_PATH = "/spec/headGroupSpec/template/spec"


def worker_pod_path(index: int) -> str:
    """The JSON pointer of worker group `index`'s pod spec inside a RayCluster."""
    return f"/spec/workerGroupSpecs/{index}/template/spec"


class RayCluster(ray.RayCluster):
    """The generated RayCluster, plus fields the typed classes leave out (k8s_charts/regenerate_imports.py
    drops the pod templates' `initContainers` to keep the import small).

    The generated `to_json` keeps only typed fields, so a plain `add_json_patch` would be dropped; these
    patches are applied after it. The tests validate the result against the full CRD schema.
    """

    def __init__(self, scope: Construct, id: str, **props: Any) -> None:
        super().__init__(scope, id, **props)
        self._untyped: list[JsonPatch] = []

    def add_untyped(self, patch: JsonPatch) -> None:
        self._untyped.append(patch)

    def to_json(self) -> Any:
        return JsonPatch.apply(super().to_json(), *self._untyped)


def add_root_init_step(cluster: RayCluster, pod_path: str, step: RootInitStep) -> None:
    """Put `step` first among the pod's init containers (KubeRay appends its `wait-gcs-ready` after it)."""
    cluster.add_untyped(JsonPatch.add(f"{pod_path}/initContainers", [root_init_container(step)]))


def root_init_container(step: RootInitStep) -> dict[str, Any]:
    """The step as a Kubernetes Container object (JSON)."""
    return {
        "name": step.name,
        "image": step.image,
        "command": list(step.command),
        "resources": {"limits": dict(step.resources), "requests": dict(step.resources)},
        "volumeMounts": [{"name": step.volume.name, "mountPath": step.volume.mount_path}],
        "securityContext": {
            # Overrides the pod's runAsNonRoot/runAsUser for this container only.
            "runAsUser": 0,
            "runAsGroup": 0,
            "runAsNonRoot": False,
            "privileged": False,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"], "add": list(step.capabilities)},
        },
    }


def autoscaler(*, idle_timeout_seconds: int) -> ray.RayClusterSpecAutoscalerOptions:
    # v2 is the autoscaler of current Ray (>= 2.10 with KubeRay >= 1.1); v1 is kept only for old Ray.
    return ray.RayClusterSpecAutoscalerOptions(
        idle_timeout_seconds=idle_timeout_seconds,
        upscaling_mode=ray.RayClusterSpecAutoscalerOptionsUpscalingMode.DEFAULT,
        version=ray.RayClusterSpecAutoscalerOptionsVersion.V2,
    )


def token_auth() -> ray.RayClusterSpecAuthOptions:
    """Ray token authentication (Ray >= 2.52). Without a secretName, KubeRay creates a Secret named after
    the RayCluster holding a random token under `auth_token`, owned by the cluster, and sets RAY_AUTH_MODE
    and RAY_AUTH_TOKEN on every Ray container (and on the RayJob submitter)."""
    return ray.RayClusterSpecAuthOptions(mode=ray.RayClusterSpecAuthOptionsMode.TOKEN)


def recreate_on_change() -> ray.RayClusterSpecUpgradeStrategy:
    """Without it KubeRay 1.7 never applies a changed pod template to running pods."""
    return ray.RayClusterSpecUpgradeStrategy(type=ray.RayClusterSpecUpgradeStrategyType.RECREATE)
