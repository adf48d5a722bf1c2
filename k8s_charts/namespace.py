"""A namespace as its own manifest, so that deleting the manifest (cdk destroy) deletes the namespace too."""

from cdk8s import Chart
from cdk8s_plus_28 import k8s
from constructs import Construct


class NamespaceChart(Chart):
    """Helm's create_namespace would create it outside CloudFormation and leave it behind on destroy."""

    def __init__(self, scope: Construct, id: str, *, name: str) -> None:
        super().__init__(scope, id)
        self.namespace_name = name
        k8s.KubeNamespace(self, "namespace", metadata=k8s.ObjectMeta(name=name))
