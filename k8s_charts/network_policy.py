"""Who may connect to the Ray pods: the namespace's own pods, the KubeRay operator on the dashboard port, and
the metrics collector on the metrics port; and where the Ray pods, which run arbitrary user code, may connect.

Ray's ports (GCS 6379, dashboard and job API 8265, client 10001, and the workers' object-manager and worker
ports) would otherwise be open to every pod in the cluster; token authentication guards the APIs, this keeps
everything else in the cluster from even reaching them. The VPC CNI enforces it (its add-on runs with
enableNetworkPolicy, stacks/eks.py). `kubectl port-forward` enters the pod through the kubelet, not the pod
network, so the documented way in keeps working. EFA traffic bypasses the IP stack and is not affected.
"""

from cdk8s import Chart
from cdk8s_plus_28 import k8s
from constructs import Construct

from config import AppConfig
from config.gcs import ELASTICACHE_PORT
from config.observability import PROMETHEUS_RELEASE
from observability.scrape import DCGM_METRICS_PORT, RAY_METRICS_PORT

from .ray_cluster import HEAD_PORTS

CLUSTER_LABEL = "ray.io/cluster"
NODE_TYPE_LABEL = "ray.io/node-type"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # set by Kubernetes on every namespace
# The operator's pods as the kuberay-operator chart labels them.
OPERATOR_LABELS = {"app.kubernetes.io/name": "kuberay-operator"}
# The in-cluster Prometheus server's pods as the prometheus chart labels them.
PROMETHEUS_LABELS = {"app.kubernetes.io/name": PROMETHEUS_RELEASE}
DNS_LABELS = {"k8s-app": "kube-dns"}  # CoreDNS as the EKS add-on labels it
IMDS_CIDR = "169.254.169.254/32"
GRAFANA_LABELS = {"app.kubernetes.io/name": "grafana"}  # as the grafana chart labels its pods
DCGM_LABELS = {"app.kubernetes.io/name": "dcgm-exporter"}
GRAFANA_CONTAINER_PORT = 3000  # the grafana chart's container port (its Service maps 80 to it)
PROMETHEUS_CONTAINER_PORT = 9090


def _port(number: int, protocol: str = "TCP") -> k8s.NetworkPolicyPort:
    return k8s.NetworkPolicyPort(port=k8s.IntOrString.from_number(number), protocol=protocol)


def _cidr(cidr: str) -> k8s.NetworkPolicyPeer:
    return k8s.NetworkPolicyPeer(ip_block=k8s.IpBlock(cidr=cidr))


class RayNetworkPolicyChart(Chart):
    """Ingress rules for every pod of the RayCluster `config.ray.cluster_name`.

    `scraper_cidr` is where the AWS managed scraper connects from (its ENIs sit in the VPC's private subnets:
    pass the VPC's CIDR); it is needed when observability stores metrics in AMP.
    """

    def __init__(
        self, scope: Construct, id: str, *, config: AppConfig, scraper_cidr: str | None = None
    ) -> None:
        super().__init__(scope, id)
        namespace = config.ray.namespace
        cluster = config.ray.cluster_name
        # Any pod of the namespace: the Ray pods themselves, the RayJob submitter, the user's own clients.
        same_namespace = k8s.NetworkPolicyPeer(pod_selector=k8s.LabelSelector())
        k8s.KubeNetworkPolicy(
            self,
            "ray-pods",
            metadata=k8s.ObjectMeta(name=f"{cluster}-ray-pods", namespace=namespace),
            spec=k8s.NetworkPolicySpec(
                pod_selector=k8s.LabelSelector(match_labels={CLUSTER_LABEL: cluster}),
                policy_types=["Ingress"],
                ingress=[k8s.NetworkPolicyIngressRule(from_=[same_namespace])],
            ),
        )
        # The operator polls the head's dashboard for job status (and submits RayJobs through it).
        operator = k8s.NetworkPolicyPeer(
            namespace_selector=k8s.LabelSelector(
                match_labels={NAMESPACE_NAME_LABEL: config.kuberay.namespace}
            ),
            pod_selector=k8s.LabelSelector(match_labels=OPERATOR_LABELS),
        )
        k8s.KubeNetworkPolicy(
            self,
            "operator-to-dashboard",
            metadata=k8s.ObjectMeta(name=f"{cluster}-operator-dashboard", namespace=namespace),
            spec=k8s.NetworkPolicySpec(
                pod_selector=k8s.LabelSelector(
                    match_labels={CLUSTER_LABEL: cluster, NODE_TYPE_LABEL: "head"}
                ),
                policy_types=["Ingress"],
                ingress=[
                    k8s.NetworkPolicyIngressRule(
                        from_=[operator],
                        ports=[
                            k8s.NetworkPolicyPort(
                                port=k8s.IntOrString.from_number(HEAD_PORTS["dashboard"]), protocol="TCP"
                            )
                        ],
                    )
                ],
            ),
        )
        if config.observability.enabled:
            self._metrics(config, scraper_cidr)
        self._egress(config, scraper_cidr)

    def _egress(self, config: AppConfig, vpc_cidr: str | None) -> None:
        """Where Ray pods may connect: the namespace (Ray itself, the in-cluster GCS store), cluster DNS,
        and addresses outside the VPC (Hugging Face, S3 through the gateway endpoint, package indexes),
        never the instance metadata service unless `ray.allow_imds`. Inside the VPC only what Ray needs:
        ElastiCache's port for the GCS store, and the API server's HTTPS for the head's autoscaler. The
        FSx Lustre client runs in the node's kernel, outside the pod network: no rule is needed for it,
        nor for EFA, which bypasses the IP stack."""
        if vpc_cidr is None:
            raise ValueError("the Ray pods' egress policy needs the VPC's CIDR")
        cluster, namespace = config.ray.cluster_name, config.ray.namespace
        outside = [vpc_cidr] + ([] if config.ray.allow_imds else [IMDS_CIDR])
        rules = [
            k8s.NetworkPolicyEgressRule(to=[k8s.NetworkPolicyPeer(pod_selector=k8s.LabelSelector())]),
            k8s.NetworkPolicyEgressRule(
                to=[
                    k8s.NetworkPolicyPeer(
                        namespace_selector=k8s.LabelSelector(
                            match_labels={NAMESPACE_NAME_LABEL: "kube-system"}
                        ),
                        pod_selector=k8s.LabelSelector(match_labels=DNS_LABELS),
                    )
                ],
                ports=[_port(53, "UDP"), _port(53, "TCP")],
            ),
            k8s.NetworkPolicyEgressRule(
                to=[k8s.NetworkPolicyPeer(ip_block=k8s.IpBlock(cidr="0.0.0.0/0", except_=outside))]
            ),
        ]
        if config.gcs_fault_tolerance.elasticache:
            rules.append(k8s.NetworkPolicyEgressRule(to=[_cidr(vpc_cidr)], ports=[_port(ELASTICACHE_PORT)]))
        k8s.KubeNetworkPolicy(
            self,
            "ray-egress",
            metadata=k8s.ObjectMeta(name=f"{cluster}-ray-egress", namespace=namespace),
            spec=k8s.NetworkPolicySpec(
                pod_selector=k8s.LabelSelector(match_labels={CLUSTER_LABEL: cluster}),
                policy_types=["Egress"],
                egress=rules,
            ),
        )
        self._head_egress(config, vpc_cidr)

    def _head_egress(self, config: AppConfig, vpc_cidr: str) -> None:
        """What only the head needs besides: this deployment's Grafana (and in-cluster Prometheus), which
        the dashboard's backend queries, and the API server, which the autoscaler sidecar patches the
        RayCluster through (the private endpoint's ENIs sit in the VPC)."""
        rules = []
        if config.observability.enabled:
            monitoring = k8s.LabelSelector(
                match_labels={NAMESPACE_NAME_LABEL: config.observability.namespace}
            )
            targets = [(GRAFANA_LABELS, GRAFANA_CONTAINER_PORT)]
            if config.observability.store == "in_cluster":
                targets.append((PROMETHEUS_LABELS, PROMETHEUS_CONTAINER_PORT))
            rules += [
                k8s.NetworkPolicyEgressRule(
                    to=[
                        k8s.NetworkPolicyPeer(
                            namespace_selector=monitoring, pod_selector=k8s.LabelSelector(match_labels=labels)
                        )
                    ],
                    ports=[_port(port)],
                )
                for labels, port in targets
            ]
        if config.ray.autoscaling.enabled:
            rules.append(k8s.NetworkPolicyEgressRule(to=[_cidr(vpc_cidr)], ports=[_port(443)]))
        if not rules:
            return
        cluster = config.ray.cluster_name
        k8s.KubeNetworkPolicy(
            self,
            "head-egress",
            metadata=k8s.ObjectMeta(name=f"{cluster}-head-egress", namespace=config.ray.namespace),
            spec=k8s.NetworkPolicySpec(
                pod_selector=k8s.LabelSelector(
                    match_labels={CLUSTER_LABEL: cluster, NODE_TYPE_LABEL: "head"}
                ),
                policy_types=["Egress"],
                egress=rules,
            ),
        )

    def _metrics(self, config: AppConfig, scraper_cidr: str | None) -> None:
        """The collector reads every Ray pod's metrics port: nothing else of Ray is reachable this way."""
        observability = config.observability
        if observability.store == "managed":
            if scraper_cidr is None:
                raise ValueError("observability.store=managed needs the scraper's CIDR (the VPC's)")
            # The scraper has no pod identity: only its address range can be named. The VPC range also
            # admits pods on this one port, which serves read-only metrics.
            collector = k8s.NetworkPolicyPeer(ip_block=k8s.IpBlock(cidr=scraper_cidr))
        else:
            collector = k8s.NetworkPolicyPeer(
                namespace_selector=k8s.LabelSelector(
                    match_labels={NAMESPACE_NAME_LABEL: observability.namespace}
                ),
                pod_selector=k8s.LabelSelector(match_labels=PROMETHEUS_LABELS),
            )
        cluster = config.ray.cluster_name
        k8s.KubeNetworkPolicy(
            self,
            "metrics",
            metadata=k8s.ObjectMeta(name=f"{cluster}-metrics", namespace=config.ray.namespace),
            spec=k8s.NetworkPolicySpec(
                pod_selector=k8s.LabelSelector(match_labels={CLUSTER_LABEL: cluster}),
                policy_types=["Ingress"],
                ingress=[
                    k8s.NetworkPolicyIngressRule(
                        from_=[collector],
                        ports=[
                            k8s.NetworkPolicyPort(
                                port=k8s.IntOrString.from_number(RAY_METRICS_PORT), protocol="TCP"
                            )
                        ],
                    )
                ],
            ),
        )


class MonitoringNetworkPolicyChart(Chart):
    """Ingress in the monitoring namespace: nothing by default; Grafana from the Ray head (the dashboard's
    backend queries it); the in-cluster Prometheus from Grafana and the Ray head; the DCGM exporter from
    the collector. `kubectl port-forward` goes through the kubelet, not the pod network: it keeps working.
    Without these, Grafana's anonymous viewer would proxy AMP queries for any pod of the cluster.

    `scraper_cidr`: the VPC's CIDR, where the AWS managed scraper connects from (store managed).
    """

    def __init__(
        self, scope: Construct, id: str, *, config: AppConfig, scraper_cidr: str | None = None
    ) -> None:
        super().__init__(scope, id)
        namespace = config.observability.namespace
        head = k8s.NetworkPolicyPeer(
            namespace_selector=k8s.LabelSelector(match_labels={NAMESPACE_NAME_LABEL: config.ray.namespace}),
            pod_selector=k8s.LabelSelector(
                match_labels={CLUSTER_LABEL: config.ray.cluster_name, NODE_TYPE_LABEL: "head"}
            ),
        )
        grafana = k8s.NetworkPolicyPeer(pod_selector=k8s.LabelSelector(match_labels=GRAFANA_LABELS))
        prometheus = k8s.NetworkPolicyPeer(pod_selector=k8s.LabelSelector(match_labels=PROMETHEUS_LABELS))
        self._ingress("default-deny", namespace, {}, [])
        self._ingress("grafana", namespace, GRAFANA_LABELS, [([head], GRAFANA_CONTAINER_PORT)])
        if config.observability.store == "in_cluster":
            self._ingress(
                "prometheus", namespace, PROMETHEUS_LABELS, [([grafana, head], PROMETHEUS_CONTAINER_PORT)]
            )
            collector = prometheus
        else:
            if scraper_cidr is None:
                raise ValueError("observability.store=managed needs the scraper's CIDR (the VPC's)")
            collector = _cidr(scraper_cidr)
        if config.observability.dcgm_exporter:
            self._ingress("dcgm-exporter", namespace, DCGM_LABELS, [([collector], DCGM_METRICS_PORT)])

    def _ingress(
        self,
        name: str,
        namespace: str,
        labels: dict[str, str],
        rules: list[tuple[list[k8s.NetworkPolicyPeer], int]],
    ) -> None:
        k8s.KubeNetworkPolicy(
            self,
            name,
            metadata=k8s.ObjectMeta(name=name, namespace=namespace),
            spec=k8s.NetworkPolicySpec(
                pod_selector=k8s.LabelSelector(match_labels=labels or None),
                policy_types=["Ingress"],
                ingress=[
                    k8s.NetworkPolicyIngressRule(from_=peers, ports=[_port(port)]) for peers, port in rules
                ],
            ),
        )
