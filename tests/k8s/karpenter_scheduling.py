"""Would Karpenter's HyperPod provider make a node for this pod? Computed from synthesized objects.

A pending pod leads to a NodeClaim only if a NodePool can describe a node the pod fits (Karpenter's
scheduling simulation, reduced to what the app uses):
- the NodePool's nodeClassRef names the HyperpodNodeClass, whose instance groups include one of the
  NodePool's instance types (the provider maps instance type to group);
- the NodePool's requirement keys are ones the HyperPod provider supports (AWS "Create a NodePool");
- every label the pod selects is one the NodePool defines (a requirement or a template label) with a value
  it allows: Karpenter cannot promise any other label on a node it has not made yet;
- the pod tolerates every taint the node will carry (NodePool template taints and the group's own);
- the pod's requests fit what one node of that instance type gives a pod (config/capacity.py), and the
  NodePool's limits leave room for max_replicas such nodes.
"""

from typing import Any

from config import InstanceGroupConfig
from config.capacity import cpu_millis, memory_mib, ray_pod_capacity
from k8s_charts.karpenter import GPU_RESOURCE, NODECLASS_GROUP, NODECLASS_KIND, SUPPORTED_REQUIREMENT_KEYS
from k8s_charts.ray_cluster import EFA_RESOURCE


def admission_problems(
    pod: dict[str, Any],
    *,
    nodepool: dict[str, Any],
    nodeclass: dict[str, Any],
    group: InstanceGroupConfig,
    max_replicas: int,
) -> list[str]:
    """Why the HyperPod provider would not make a node for `pod` from `nodepool` (empty: it would)."""
    template = nodepool["spec"]["template"]["spec"]
    requirements = {r["key"]: r for r in template["requirements"]}
    problems = _class_problems(template, nodeclass, requirements, group)
    problems += [
        f"NodePool requirement key {key!r} is not one the HyperPod provider supports"
        for key in requirements
        if key not in SUPPORTED_REQUIREMENT_KEYS
    ]
    labels = nodepool["spec"]["template"].get("metadata", {}).get("labels", {})
    problems += _selector_problems(pod, requirements, labels)
    problems += _taint_problems(pod, [*template.get("taints", []), *_group_taints(group)])
    problems += _resource_problems(pod, nodepool, group, max_replicas)
    return problems


def _class_problems(
    template: dict[str, Any],
    nodeclass: dict[str, Any],
    requirements: dict[str, Any],
    group: InstanceGroupConfig,
) -> list[str]:
    ref = template["nodeClassRef"]
    if (ref["group"], ref["kind"], ref["name"]) != (
        NODECLASS_GROUP,
        NODECLASS_KIND,
        nodeclass["metadata"]["name"],
    ):
        return [f"nodeClassRef {ref} does not name HyperpodNodeClass {nodeclass['metadata']['name']!r}"]
    if group.name not in nodeclass["spec"]["instanceGroups"]:
        return [f"HyperpodNodeClass does not list instance group {group.name!r}"]
    if not _allows(requirements.get("node.kubernetes.io/instance-type"), group.instance_type):
        return [f"NodePool does not allow {group.instance_type}, the type of group {group.name!r}"]
    return []


def _allows(requirement: dict[str, Any] | None, value: str) -> bool:
    if requirement is None or requirement["operator"] == "Exists":
        return True
    if requirement["operator"] == "In":
        return value in requirement["values"]
    if requirement["operator"] == "NotIn":
        return value not in requirement["values"]
    return False


def _selector_problems(
    pod: dict[str, Any], requirements: dict[str, Any], labels: dict[str, str]
) -> list[str]:
    problems = []
    selected = dict(pod.get("nodeSelector", {}))
    affinity = pod.get("affinity", {}).get("nodeAffinity", {})
    required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution", {})
    for term in required.get("nodeSelectorTerms", []):
        for expression in term.get("matchExpressions", []):
            if expression["operator"] == "In" and len(expression["values"]) == 1:
                selected[expression["key"]] = expression["values"][0]
            else:
                problems.append(f"node affinity {expression} is beyond this check: keep to single values")
    for key, value in selected.items():
        if key in labels:
            if labels[key] != value:
                problems.append(f"pod selects {key}={value}, the NodePool labels nodes {key}={labels[key]}")
        elif key not in requirements:
            problems.append(f"pod selects {key}={value}: no NodePool requirement or label defines {key!r}")
        elif not _allows(requirements[key], value):
            problems.append(f"pod selects {key}={value}, which the NodePool's requirement does not allow")
    return problems


def _group_taints(group: InstanceGroupConfig) -> list[dict[str, str]]:
    return [{"key": t.key, "value": t.value, "effect": t.effect} for t in group.taints]


def _taint_problems(pod: dict[str, Any], taints: list[dict[str, str]]) -> list[str]:
    tolerations = pod.get("tolerations", [])
    return [
        f"pod does not tolerate taint {taint}"
        for taint in taints
        if taint["effect"] in ("NoSchedule", "NoExecute")
        and not any(_tolerates(t, taint) for t in tolerations)
    ]


def _tolerates(toleration: dict[str, str], taint: dict[str, str]) -> bool:
    if toleration.get("effect") and toleration["effect"] != taint["effect"]:
        return False
    if toleration.get("operator") == "Exists":
        return toleration.get("key") in (None, taint["key"])
    return toleration.get("key") == taint["key"] and toleration.get("value", "") == taint.get("value", "")


def _resource_problems(
    pod: dict[str, Any],
    nodepool: dict[str, Any],
    group: InstanceGroupConfig,
    max_replicas: int,
) -> list[str]:
    room = ray_pod_capacity(group.instance_type, group.threads_per_core)
    requests: dict[str, Any] = {}
    for container in pod["containers"]:
        for name, value in container.get("resources", {}).get("requests", {}).items():
            requests[name] = value  # one Ray container per pod
    fits = {
        "cpu": cpu_millis(str(requests.get("cpu", "0"))) <= room.cpu_millis,
        "memory": memory_mib(str(requests.get("memory", "0"))) <= room.memory_mib,
        GPU_RESOURCE: int(requests.get(GPU_RESOURCE, 0)) <= room.gpus,
        EFA_RESOURCE: int(requests.get(EFA_RESOURCE, 0)) <= room.efa,
    }
    problems = [
        f"pod requests {name}={requests.get(name)}, more than one {group.instance_type} node gives a pod"
        for name, fit in fits.items()
        if not fit
    ]
    limits = nodepool["spec"].get("limits", {})
    if GPU_RESOURCE in limits and int(limits[GPU_RESOURCE]) < max_replicas * room.gpus:
        problems.append(
            f"NodePool limit {GPU_RESOURCE}={limits[GPU_RESOURCE]} is short of {max_replicas} nodes"
        )
    return problems
