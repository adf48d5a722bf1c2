"""Who may connect to the Ray pods: the namespace's own pods, the KubeRay operator on the dashboard port, and
the metrics collector on the metrics port.

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
from config.observability import PROMETHEUS_RELEASE
from observability.scrape import RAY_METRICS_PORT

from .ray_cluster import HEAD_PORTS

CLUSTER_LABEL = "ray.io/cluster"
NODE_TYPE_LABEL = "ray.io/node-type"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # set by Kubernetes on every namespace
# The operator's pods as the kuberay-operator chart labels them.
OPERATOR_LABELS = {"app.kubernetes.io/name": "kuberay-operator"}
# The in-cluster Prometheus server's pods as the prometheus chart labels them.
PROMETHEUS_LABELS = {"app.kubernetes.io/name": PROMETHEUS_RELEASE}


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
