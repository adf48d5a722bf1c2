"""A namespace as its own manifest, so that deleting the manifest (cdk destroy) deletes the namespace too.

Every namespace the app creates carries Pod Security admission labels
(https://kubernetes.io/docs/concepts/security/pod-security-admission/): `enforce` is the strictest Pod
Security Standard its pods meet (`namespace_pod_security` says which and why), `warn` and `audit` are
`restricted`, so that whatever falls short of it shows in `kubectl` warnings and the audit log. Without
them, anything able to create or patch a pod there (a Ray job driver through the autoscaler's Role, for
example) could ask for a privileged pod with the node's root file system.
"""

from typing import Literal

from cdk8s import Chart
from cdk8s_plus_28 import k8s
from constructs import Construct

from config import AppConfig

PodSecurityLevel = Literal["privileged", "baseline", "restricted"]
PSA_PREFIX = "pod-security.kubernetes.io"


def pod_security_labels(enforce: PodSecurityLevel) -> dict[str, str]:
    """Admission labels: enforce `enforce`, warn and audit on `restricted`. No `-version` label: the
    standards of the cluster's own Kubernetes version apply (the `latest` default)."""
    return {
        f"{PSA_PREFIX}/enforce": enforce,
        f"{PSA_PREFIX}/warn": "restricted",
        f"{PSA_PREFIX}/audit": "restricted",
    }


def namespace_pod_security(config: AppConfig) -> dict[str, PodSecurityLevel]:
    """The level each namespace the app creates enforces: the strictest its pods meet.

    - Ray: baseline. The Ray containers set no restricted securityContext (the image's user, no seccomp
      profile), and the FSx permission init container runs as root with CHOWN/DAC_OVERRIDE/FOWNER added,
      which baseline allows and restricted does not.
    - KubeRay operator: baseline. The operator chart's container context meets restricted (its values:
      runAsNonRoot, drop ALL, RuntimeDefault seccomp, no privilege escalation), but 1.7.0's rendered pod was
      not checked here, so the namespace warns on restricted rather than refusing the operator.
    - Monitoring: privileged while the DCGM exporter runs there (it mounts the kubelet's pod-resources
      hostPath and adds SYS_ADMIN for profiling counters: both outside baseline), baseline otherwise.
    """
    observability = config.observability
    dcgm = observability.enabled and observability.dcgm_exporter
    return {
        config.ray.namespace: "baseline",
        config.kuberay.namespace: "baseline",
        observability.namespace: "privileged" if dcgm else "baseline",
    }


class NamespaceChart(Chart):
    """Helm's create_namespace would create it outside CloudFormation and leave it behind on destroy."""

    def __init__(
        self, scope: Construct, id: str, *, name: str, enforce: PodSecurityLevel = "baseline"
    ) -> None:
        super().__init__(scope, id)
        self.namespace_name = name
        k8s.KubeNamespace(
            self, "namespace", metadata=k8s.ObjectMeta(name=name, labels=pod_security_labels(enforce))
        )
