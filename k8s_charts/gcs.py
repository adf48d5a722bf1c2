"""GCS fault tolerance: the RayCluster's `gcsFaultToleranceOptions` and the Kubernetes side of its store.

The RayCluster always names the store by a fixed in-cluster DNS name, `<cluster>-gcs-store.<namespace>`:
for ElastiCache it is an ExternalName Service whose target (the replication group's primary endpoint) is
only known at deploy time, for the in-cluster store it is the store's own Service. So the RayCluster chart
needs nothing from CloudFormation, and a failover (ElastiCache keeps the primary endpoint's name) changes
nothing on the Ray side.

The password reaches KubeRay as the Secret `<cluster>-gcs-store` (key `password`), written by the
`KubernetesSecretFromSecretsManager` custom resource (stacks/components/gcs_store.py), never by a manifest:
a manifest's values travel in CloudFormation events to the kubectl handler, which logs them.
"""

from cdk8s import Chart
from cdk8s_plus_28 import k8s
from constructs import Construct

from config import AppConfig
from config.gcs import ELASTICACHE_PORT, REDIS_PORT
from k8s_charts.imports.io import ray

PASSWORD_KEY = "password"
# The in-cluster store's start: `exec` keeps valkey-server as PID 1 (it receives the pod's SIGTERM). The
# generated password is alphanumeric (stacks/components/gcs_store.py), so it needs no quoting in the config.
STORE_COMMAND = (
    "exec valkey-server - --port 6379 --appendonly yes --dir /data <<EOF\nrequirepass $REDIS_PASSWORD\nEOF\n"
)
# The CA bundle of the Ray image (Ubuntu's ca-certificates): ElastiCache's server certificates chain to
# Amazon's public roots. Ray's GCS Redis client (hiredis) reads it from RAY_REDIS_CA_CERT.
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
RECONNECT_TIMEOUT_ENV = "RAY_gcs_rpc_server_reconnect_timeout_s"
STORE_LABELS = {"app.kubernetes.io/name": "ray-gcs-store"}
INSTANCE_GROUP_LABEL = "sagemaker.amazonaws.com/instance-group-name"
VALKEY_UID = 999  # the `valkey` user and group of the official valkey/valkey images


def store_name(config: AppConfig) -> str:
    """The Service and the Secret of the store (one name: both belong to this cluster's store)."""
    return f"{config.ray.cluster_name}-gcs-store"


def store_address(config: AppConfig) -> str:
    """`rediss://` (TLS) for ElastiCache, `redis://` for the in-cluster store; Ray reads the scheme."""
    managed = config.gcs_fault_tolerance.elasticache
    scheme, port = ("rediss", ELASTICACHE_PORT) if managed else ("redis", REDIS_PORT)
    host = f"{store_name(config)}.{config.ray.namespace}.svc.cluster.local"
    return f"{scheme}://{host}:{port}"


def fault_tolerance_options(config: AppConfig) -> ray.RayClusterSpecGcsFaultToleranceOptions | None:
    """KubeRay's options; the operator turns them into RAY_REDIS_ADDRESS and --redis-password on the head."""
    if not config.gcs_fault_tolerance.enabled:
        return None
    secret = ray.RayClusterSpecGcsFaultToleranceOptionsRedisPasswordValueFromSecretKeyRef
    return ray.RayClusterSpecGcsFaultToleranceOptions(
        redis_address=store_address(config),
        redis_password=ray.RayClusterSpecGcsFaultToleranceOptionsRedisPassword(
            value_from=ray.RayClusterSpecGcsFaultToleranceOptionsRedisPasswordValueFrom(
                secret_key_ref=secret(name=store_name(config), key=PASSWORD_KEY)
            )
        ),
        # Fixed rather than KubeRay's default (the RayCluster's UID): a re-created RayCluster object (for
        # example after `cdk deploy` replaced it) finds its predecessor's state.
        external_storage_namespace=config.ray.cluster_name,
    )


def head_env(config: AppConfig) -> dict[str, str]:
    """The head's GCS verifies ElastiCache's certificate against the image's CA bundle."""
    return {"RAY_REDIS_CA_CERT": CA_BUNDLE} if config.gcs_fault_tolerance.elasticache else {}


def worker_env(config: AppConfig) -> dict[str, str]:
    """How long a worker node waits for a new head; explicit, not KubeRay's default (600 s in 1.7.0)."""
    ft = config.gcs_fault_tolerance
    return {RECONNECT_TIMEOUT_ENV: str(ft.worker_reconnect_timeout_s)} if ft.enabled else {}


class GcsStoreChart(Chart):
    """The store's Service (ExternalName to ElastiCache, or in front of the in-cluster Valkey pod).

    `elasticache_endpoint`: the replication group's primary endpoint (a CloudFormation token); required
    with `store: elasticache`, unused otherwise.
    """

    def __init__(
        self, scope: Construct, id: str, *, config: AppConfig, elasticache_endpoint: str | None = None
    ) -> None:
        super().__init__(scope, id)
        name, namespace = store_name(config), config.ray.namespace
        metadata = k8s.ObjectMeta(name=name, namespace=namespace, labels=STORE_LABELS)
        if config.gcs_fault_tolerance.elasticache:
            if elasticache_endpoint is None:
                raise ValueError("store elasticache needs the replication group's endpoint")
            k8s.KubeService(
                self,
                "service",
                metadata=metadata,
                spec=k8s.ServiceSpec(type="ExternalName", external_name=elasticache_endpoint),
            )
            return
        k8s.KubeService(
            self,
            "service",
            metadata=metadata,
            spec=k8s.ServiceSpec(
                selector=STORE_LABELS,
                ports=[
                    k8s.ServicePort(
                        name="redis", port=REDIS_PORT, target_port=k8s.IntOrString.from_number(REDIS_PORT)
                    )
                ],
            ),
        )
        self._only_the_head_connects(config)
        k8s.KubeDeployment(
            self,
            "store",
            metadata=metadata,
            spec=k8s.DeploymentSpec(
                replicas=1,
                # One writer at a time on the append-only file.
                strategy=k8s.DeploymentStrategy(type="Recreate"),
                selector=k8s.LabelSelector(match_labels=STORE_LABELS),
                template=k8s.PodTemplateSpec(
                    metadata=k8s.ObjectMeta(labels=STORE_LABELS),
                    spec=_store_pod(config),
                ),
            ),
        )

    def _only_the_head_connects(self, config: AppConfig) -> None:
        """Only GCS (on the head) and KubeRay's Redis cleanup Job (run when the RayCluster is deleted) talk
        to the store; Ray workers and user code in the namespace have no business there."""
        cluster = config.ray.cluster_name
        peers = [
            k8s.NetworkPolicyPeer(
                pod_selector=k8s.LabelSelector(
                    match_labels={"ray.io/cluster": cluster, "ray.io/node-type": node_type}
                )
            )
            for node_type in ("head", "redis-cleanup")  # KubeRay 1.7's node-type labels
        ]
        k8s.KubeNetworkPolicy(
            self,
            "store-ingress",
            metadata=k8s.ObjectMeta(name=f"{store_name(config)}-ingress", namespace=config.ray.namespace),
            spec=k8s.NetworkPolicySpec(
                pod_selector=k8s.LabelSelector(match_labels=STORE_LABELS),
                policy_types=["Ingress"],
                ingress=[
                    k8s.NetworkPolicyIngressRule(
                        from_=peers,
                        ports=[
                            k8s.NetworkPolicyPort(
                                port=k8s.IntOrString.from_number(REDIS_PORT), protocol="TCP"
                            )
                        ],
                    )
                ],
            ),
        )


def _store_pod(config: AppConfig) -> k8s.PodSpec:
    ft = config.gcs_fault_tolerance
    password = k8s.EnvVarSource(
        secret_key_ref=k8s.SecretKeySelector(name=store_name(config), key=PASSWORD_KEY)
    )
    return k8s.PodSpec(
        containers=[
            k8s.Container(
                name="valkey",
                image=ft.in_cluster_image,
                # The password comes from the environment, so it is not in the pod spec, and reaches the
                # server as config on stdin (`-`, a here-document the shell writes itself), never on a
                # process argv that /proc/<pid>/cmdline shows. AOF on the pod's volume keeps the state across
                # a container restart (not across a new pod).
                command=["sh", "-c", STORE_COMMAND],
                # Pod Security `restricted`: the image's valkey user, no privilege escalation, no
                # capabilities (port 6379 needs none).
                security_context=k8s.SecurityContext(
                    allow_privilege_escalation=False,
                    capabilities=k8s.Capabilities(drop=["ALL"]),
                    read_only_root_filesystem=True,
                ),
                env=[k8s.EnvVar(name="REDIS_PASSWORD", value_from=password)],
                ports=[k8s.ContainerPort(container_port=REDIS_PORT, name="redis")],
                resources=k8s.ResourceRequirements(
                    requests={
                        "cpu": k8s.Quantity.from_string("250m"),
                        "memory": k8s.Quantity.from_string("512Mi"),
                    },
                    limits={
                        "cpu": k8s.Quantity.from_string("250m"),
                        "memory": k8s.Quantity.from_string("512Mi"),
                    },
                ),
                volume_mounts=[k8s.VolumeMount(name="data", mount_path="/data")],
                readiness_probe=k8s.Probe(
                    tcp_socket=k8s.TcpSocketAction(port=k8s.IntOrString.from_number(REDIS_PORT)),
                    period_seconds=5,
                ),
            )
        ],
        volumes=[k8s.Volume(name="data", empty_dir=k8s.EmptyDirVolumeSource())],
        # The official valkey image's `valkey` user and group (999): the command bypasses the entrypoint
        # that would otherwise drop root itself. fsGroup makes the emptyDir its own.
        security_context=k8s.PodSecurityContext(
            run_as_non_root=True,
            run_as_user=VALKEY_UID,
            run_as_group=VALKEY_UID,
            fs_group=VALKEY_UID,
            seccomp_profile=k8s.SeccompProfile(type="RuntimeDefault"),
        ),
        automount_service_account_token=False,  # the store never calls the Kubernetes API
        # Never on the head's instance group: a lost head node must not take the GCS state with it. (Node
        # affinity, not anti-affinity to the head pod: that would let the store take the head's only node.)
        affinity=k8s.Affinity(
            node_affinity=k8s.NodeAffinity(
                required_during_scheduling_ignored_during_execution=k8s.NodeSelector(
                    node_selector_terms=[
                        k8s.NodeSelectorTerm(
                            match_expressions=[
                                k8s.NodeSelectorRequirement(
                                    key=INSTANCE_GROUP_LABEL,
                                    operator="NotIn",
                                    values=[config.ray.head.instance_group],
                                )
                            ]
                        )
                    ]
                )
            )
        ),
        # Worker nodes are the only others: tolerate their GPU taint.
        tolerations=[k8s.Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")],
    )
