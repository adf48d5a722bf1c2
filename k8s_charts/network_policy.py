"""Who may connect to the Ray pods: the namespace's own pods, and the KubeRay operator on the dashboard port.

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

from .ray_cluster import HEAD_PORTS

CLUSTER_LABEL = "ray.io/cluster"
NODE_TYPE_LABEL = "ray.io/node-type"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # set by Kubernetes on every namespace
# The operator's pods as the kuberay-operator chart labels them.
OPERATOR_LABELS = {"app.kubernetes.io/name": "kuberay-operator"}


class RayNetworkPolicyChart(Chart):
    """Ingress rules for every pod of the RayCluster `config.ray.cluster_name`."""

    def __init__(self, scope: Construct, id: str, *, config: AppConfig) -> None:
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
