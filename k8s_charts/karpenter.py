"""HyperPod's managed Karpenter: the HyperpodNodeClass naming the autoscaled instance groups, and one
`karpenter.sh/v1` NodePool per group (opt-in: `hyperpod.instance_groups[].autoscale_max_count`).

The objects are written as plain dictionaries: Karpenter's NodePool is checked against its own CRD schema
(k8s_charts/crd_schemas_karpenter, from a pinned release) and the HyperpodNodeClass against the fields AWS
documents, in tests/k8s/test_k8s_karpenter.py.
"""

from typing import Any

from cdk8s import ApiObject, ApiObjectMetadata, Chart, JsonPatch
from constructs import Construct

from config import AppConfig, InstanceGroupConfig, instance_facts
from config.capacity import visible_cores

NODECLASS_GROUP = "karpenter.sagemaker.amazonaws.com"
NODECLASS_API = f"{NODECLASS_GROUP}/v1"
NODECLASS_KIND = "HyperpodNodeClass"
NODEPOOL_API = "karpenter.sh/v1"
# The requirement keys AWS documents for the HyperPod provider ("Create a NodePool", "Supported Labels for
# Karpenter HyperPod Provider"); it supports nothing else, so a NodePool or pod asking for another key
# would never get a node.
INSTANCE_TYPE_KEY = "node.kubernetes.io/instance-type"
ZONE_KEY = "topology.kubernetes.io/zone"
ARCH_KEY = "kubernetes.io/arch"
SUPPORTED_REQUIREMENT_KEYS = frozenset({INSTANCE_TYPE_KEY, ZONE_KEY, ARCH_KEY})
ARCHITECTURE = "amd64"  # the only one the provider supports ("no ARM support currently")
GPU_RESOURCE = "nvidia.com/gpu"
# Disruption chosen for training, not for web services:
# - WhenEmpty: Karpenter never evicts a running Ray worker to pack nodes tighter (WhenEmptyOrUnderutilized,
#   the default, would: one evicted rank stops the whole data-parallel job until it restarts from a
#   checkpoint). Nodes go only once Ray's autoscaler has removed their worker pod.
# - CONSOLIDATE_AFTER: an empty node waits this long before it goes, so that the next job of a burst (or
#   a worker pod Ray recreates) finds it still there instead of paying a new node's provisioning again;
#   Ray's own idle timeout (ray.autoscaling.idle_timeout_seconds) runs before it.
# - expireAfter Never: a node is never replaced on a timer under a multi-day run.
# - Budgets: every empty node may go at once; drifted nodes (a changed NodeClass) are not replaced while
#   they run work. HyperPod's node recovery, not Karpenter, replaces faulty nodes.
CONSOLIDATION_POLICY = "WhenEmpty"
CONSOLIDATE_AFTER = "2m"
EXPIRE_AFTER = "Never"
BUDGETS = ({"nodes": "100%", "reasons": ["Empty"]}, {"nodes": "0", "reasons": ["Drifted"]})


class KarpenterChart(Chart):
    """The cluster-scoped HyperpodNodeClass `nodeclass_name` and one NodePool per autoscaled group."""

    def __init__(self, scope: Construct, id: str, *, config: AppConfig) -> None:
        super().__init__(scope, id)
        groups = config.hyperpod.autoscaled_groups
        self.nodeclass_name = config.prefix
        self.nodepool_names = {group.name: nodepool_name(config, group) for group in groups}
        node_class = _object(self, "node-class", NODECLASS_API, NODECLASS_KIND, self.nodeclass_name)
        node_class.add_json_patch(JsonPatch.add("/spec", nodeclass_spec(groups)))
        for group in groups:
            pool = _object(
                self, f"node-pool-{group.name}", NODEPOOL_API, "NodePool", self.nodepool_names[group.name]
            )
            pool.add_json_patch(JsonPatch.add("/spec", nodepool_spec(group, self.nodeclass_name)))


def nodepool_name(config: AppConfig, group: InstanceGroupConfig) -> str:
    return f"{config.prefix}-{group.name}"


def nodeclass_spec(groups: tuple[InstanceGroupConfig, ...]) -> dict[str, Any]:
    # Each group's subnets must sit in one AZ (AWS docs): the app gives HyperPod one subnet, the compute one.
    return {"instanceGroups": [group.name for group in groups]}


def nodepool_spec(group: InstanceGroupConfig, nodeclass_name: str) -> dict[str, Any]:
    """One group's NodePool: its instance type only (the NodeClass maps type to group), its taints, and a
    ceiling of autoscale_max_count nodes expressed in resources every Karpenter v1 release limits."""
    template_spec: dict[str, Any] = {
        "nodeClassRef": {
            "group": NODECLASS_GROUP,
            "kind": NODECLASS_KIND,
            "name": nodeclass_name,
        },
        "requirements": [
            {"key": INSTANCE_TYPE_KEY, "operator": "In", "values": [group.instance_type]},
            {"key": ARCH_KEY, "operator": "In", "values": [ARCHITECTURE]},
        ],
        "expireAfter": EXPIRE_AFTER,
    }
    if group.taints:
        # HyperPod puts the group's taints on its nodes; Karpenter must know them to pick tolerating pods.
        template_spec["taints"] = [_taint(taint.key, taint.value, taint.effect) for taint in group.taints]
    return {
        "template": {"spec": template_spec},
        "disruption": {
            "consolidationPolicy": CONSOLIDATION_POLICY,
            "consolidateAfter": CONSOLIDATE_AFTER,
            "budgets": [dict(budget) for budget in BUDGETS],
        },
        "limits": nodepool_limits(group),
    }


def nodepool_limits(group: InstanceGroupConfig) -> dict[str, str]:
    """At most autoscale_max_count nodes: GPUs for a GPU group, else the cores a node shows."""
    facts = instance_facts(group.instance_type)
    nodes = group.max_nodes
    if facts.gpus:
        return {GPU_RESOURCE: str(nodes * facts.gpus)}
    return {"cpu": str(nodes * visible_cores(facts.vcpus, group.threads_per_core))}


def _taint(key: str, value: str, effect: str) -> dict[str, str]:
    return {"key": key, "effect": effect, **({"value": value} if value else {})}


def _object(chart: Chart, id: str, api_version: str, kind: str, name: str) -> ApiObject:
    return ApiObject(chart, id, api_version=api_version, kind=kind, metadata=ApiObjectMetadata(name=name))
