"""Compare the live cluster (DescribeCluster) with the requested one: what is create-only, what to update.

Pure functions over already-coerced requests and DescribeCluster answers, so the update rules are testable
without a client. Decisions start from the live cluster, not from CloudFormation's old properties: a
rollback's properties describe what CloudFormation believes, the live cluster what is.
"""

from __future__ import annotations

from typing import Any

from cfn_coerce import item_label

# Fields HyperPod fixes at creation. ClusterName is handled apart: a new name means a new cluster.
# InstanceType
# is not here: UpdateCluster changes an existing group's instance type (HyperPod's update-cluster guide).
CREATE_ONLY_TOP = ("VpcConfig", "Orchestrator")
CREATE_ONLY_GROUP = ("ExecutionRole", "ThreadsPerCore")
# Group fields DescribeCluster echoes as they were requested; compared with the live cluster. A field the live
# answer leaves out is not compared (it cannot be told apart from "unchanged", and guessing would loop
# updates).
LIVE_GROUP_FIELDS = ("InstanceType", "LifeCycleConfig", "TrainingPlanArn", "InstanceStorageConfigs")
LIVE_TOP_FIELDS = ("NodeRecovery", "NodeProvisioningMode")
# Group fields with their own comparison, or none.
SPECIAL_GROUP_FIELDS = {"InstanceGroupName", "InstanceCount", "OnStartDeepHealthChecks", "KubernetesConfig"}
# Applied by other means (tagging) or not part of the UpdateCluster request body.
NOT_UPDATED = {"ClusterName", "Tags", "InstanceGroups", "InstanceGroupsToDelete", *CREATE_ONLY_TOP}
# HyperPod's managed Karpenter (opt-in): compared with the live cluster by autoscaling_update.
AUTOSCALING_KEYS = {"AutoScaling", "ClusterRole"}
AUTOSCALING_OFF = {"Mode": "Disable"}
AUTOSCALING_READY = "InService"


class CreateOnlyChangeError(ValueError):
    """The new properties change a field that only a new cluster can take."""


class AutoscalingChangeError(ValueError):
    """Autoscaling is switched on or off, and the handler's UpdateCluster cannot say so."""


def create_only_changes(live: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Paths of create-only fields where the request differs from the live cluster, e.g.
    `InstanceGroups[workers].ExecutionRole`. A rollback to what the cluster already has yields none."""
    changes = [
        path
        for key in CREATE_ONLY_TOP
        if key in live and key in new
        for path in _diff(live[key], new[key], key)
    ]
    live_groups = _groups(live)
    for name, group in _groups(new).items():
        if name not in live_groups:
            continue  # a new group may have any role and threads per core.
        for key in CREATE_ONLY_GROUP:
            if key in live_groups[name]:
                changes += _diff(live_groups[name][key], group.get(key), f"InstanceGroups[{name}].{key}")
    return changes


def describe_create_only(name: str, paths: list[str]) -> str:
    """An error message that names the fields and says what a user can do about them."""
    return (
        f"Cannot update HyperPod cluster {name!r}: {', '.join(paths)} is create-only. Rename the cluster "
        "(hyperpod.cluster_name) to replace it with a new one, or restore the old value. Nothing was changed."
    )


def target_differences(live: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What a freshly created cluster lacks: a requested group, or a group's target count. Field echoes are
    not compared: a form the service normalizes must not hold a create for its whole budget."""
    live_groups = _groups(live)
    found = []
    for name, group in _groups(new).items():
        if name not in live_groups:
            found.append(f"InstanceGroups[{name}] missing")
        elif _target(live_groups[name]) != group.get("InstanceCount"):
            found.append(f"InstanceGroups[{name}].InstanceCount")
    return found


def live_differences(live: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What the live cluster still lacks of the request: groups to add or remove, counts, fields, settings."""
    live_groups, new_groups = _groups(live), _groups(new)
    found = [f"InstanceGroups[{n}] missing" for n in new_groups if n not in live_groups]
    found += [f"InstanceGroups[{n}] to delete" for n in live_groups if n not in new_groups]
    sized = karpenter_sizes(new)
    for name, group in new_groups.items():
        if name in live_groups:
            differences = _group_differences(live_groups[name], group, sized)
            found += [f"InstanceGroups[{name}].{f}" for f in differences]
    found += [key for key in LIVE_TOP_FIELDS if key in live and key in new and live[key] != new[key]]
    return found + _autoscaling_differences(live, new)


def karpenter_sizes(config: dict[str, Any]) -> bool:
    """With AutoScaling on, a group requested at 0 belongs to HyperPod's Karpenter: its live count follows
    the pending pods, so it is neither a difference to wait for nor one to "fix" (that would drain jobs)."""
    return config.get("AutoScaling", AUTOSCALING_OFF).get("Mode") == "Enable"


def _autoscaling_differences(live: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Autoscaling not yet as requested: its mode, or (when on) its status short of InService, before which
    HyperPod's Karpenter takes no NodeClass (the next stack applies one)."""
    if "AutoScaling" not in live:
        return []  # the answer does not show it (never enabled): compared with old properties on update
    wanted = new.get("AutoScaling", AUTOSCALING_OFF)["Mode"]
    current = live["AutoScaling"]
    if current.get("Mode") != wanted:
        return ["AutoScaling.Mode"]
    if wanted == "Enable" and current.get("Status") != AUTOSCALING_READY:
        return ["AutoScaling.Status"]
    return []


def autoscaling_update(
    live: dict[str, Any], old: dict[str, Any] | None, new: dict[str, Any]
) -> dict[str, Any]:
    """AutoScaling (and, when it turns on, ClusterRole) for UpdateCluster: turning autoscaling on or off on
    an existing cluster. The live answer decides; the old properties stand in when it does not report it.
    ClusterRole is sent only with the switch to Enable: the API refuses to change it while autoscaling is
    on."""
    wanted = new.get("AutoScaling", AUTOSCALING_OFF)
    if "AutoScaling" in live:
        current = live["AutoScaling"].get("Mode")
    else:
        current = (old or {}).get("AutoScaling", AUTOSCALING_OFF)["Mode"] if old is not None else None
    if current is None and wanted == AUTOSCALING_OFF:
        return {}  # adopting a cluster that never showed autoscaling: nothing to turn off
    if current == wanted["Mode"]:
        return {}
    update: dict[str, Any] = {"AutoScaling": dict(wanted)}
    if wanted["Mode"] == "Enable" and new.get("ClusterRole"):
        update["ClusterRole"] = new["ClusterRole"]
    return update


def update_request(
    live: dict[str, Any], old: dict[str, Any] | None, new: dict[str, Any], update_members: set[str]
) -> tuple[dict[str, Any] | None, list[str]]:
    """The UpdateCluster request that brings the live cluster to `new` (None if it already matches), and the
    top-level keys it cannot unset.

    Groups are sent when the live cluster differs in a field it reports, or when the old properties differ in
    one it does not report (storage, image): an unchanged group is never sent, since the service would have
    to reconcile it for nothing.
    """
    request: dict[str, Any] = {}
    live_groups, new_groups = _groups(live), _groups(new)
    old_groups = _groups(old or {})
    sized = karpenter_sizes(new)
    changed = [
        group
        for name, group in new_groups.items()
        if name not in live_groups
        or _group_differences(live_groups[name], group, sized)
        or _unreported(old_groups.get(name, group)) != _unreported(group)
    ]
    if changed:
        request["InstanceGroups"] = changed
    removed = [name for name in live_groups if name not in new_groups]
    if removed:
        request["InstanceGroupsToDelete"] = removed
    autoscaling = autoscaling_update(live, old, new)
    if autoscaling and not update_members >= AUTOSCALING_KEYS:
        raise AutoscalingChangeError(
            f"Cannot turn HyperPod autoscaling {autoscaling['AutoScaling']['Mode']!r} on cluster "
            f"{new['ClusterName']!r}: this SDK's UpdateCluster has no AutoScaling/ClusterRole. Update boto3 "
            "in the handler, or replace the cluster (hyperpod.cluster_name). Nothing was changed."
        )
    request |= autoscaling
    unset = []
    for key in sorted(update_members - NOT_UPDATED - AUTOSCALING_KEYS):
        if key in LIVE_TOP_FIELDS and key in live:
            current = live[key]
        elif old is not None:
            current = old.get(key)
        else:
            continue  # adopting, and the live answer does not show it: nothing to compare with
        if key in new and new[key] != current:
            request[key] = new[key]
        elif key not in new and current is not None:
            unset.append(key)  # UpdateCluster has no way to clear a setting; it keeps its value.
    if not request:
        return None, unset
    return {"ClusterName": new["ClusterName"], **request}, unset


def tag_changes(old: dict[str, Any] | None, new: dict[str, Any]) -> tuple[list[dict[str, str]], list[str]]:
    """Tags to add or overwrite, and tag keys to delete."""
    old_tags = {tag["Key"]: tag["Value"] for tag in (old or {}).get("Tags", [])}
    new_tags = {tag["Key"]: tag["Value"] for tag in new.get("Tags", [])}
    to_add = [{"Key": k, "Value": v} for k, v in new_tags.items() if old_tags.get(k) != v]
    to_delete = [k for k in old_tags if k not in new_tags]
    return to_add, to_delete


def _group_differences(live: dict[str, Any], new: dict[str, Any], karpenter_sized: bool = False) -> list[str]:
    found = []
    # TargetCount is what the service is working towards; CurrentCount lags while instances provision.
    if _target(live) != new.get("InstanceCount") and not (karpenter_sized and new.get("InstanceCount") == 0):
        found.append("InstanceCount")
    found += [key for key in LIVE_GROUP_FIELDS if key in live and not _same(live[key], new.get(key))]
    checks = live.get("OnStartDeepHealthChecks")
    if checks is not None and sorted(checks) != sorted(new.get("OnStartDeepHealthChecks", [])):
        found.append("OnStartDeepHealthChecks")
    kubernetes, wanted = live.get("KubernetesConfig") or {}, new.get("KubernetesConfig") or {}
    if "DesiredLabels" in kubernetes and kubernetes["DesiredLabels"] != wanted.get("Labels", {}):
        found.append("KubernetesConfig.Labels")
    if "DesiredTaints" in kubernetes and _taints(kubernetes["DesiredTaints"]) != _taints(
        wanted.get("Taints", [])
    ):
        found.append("KubernetesConfig.Taints")
    return found


def _target(live_group: dict[str, Any]) -> Any:
    return live_group.get("TargetCount", live_group.get("CurrentCount"))


def _same(live: Any, wanted: Any) -> bool:
    """Whether the live echo of a field is what was requested, up to the forms a service echo may take:
    an S3 URI with or without its trailing `/` (AWS's samples send none, this app sends one), members the
    live answer adds (service defaults, e.g. `RootVolume: false`) or leaves out. Lists compare in order."""
    if isinstance(live, dict) and isinstance(wanted, dict):
        return all(_same(live[key], value) for key, value in wanted.items() if key in live)
    if isinstance(live, list) and isinstance(wanted, list):
        return len(live) == len(wanted) and all(_same(a, b) for a, b in zip(live, wanted, strict=True))
    if isinstance(live, str) and isinstance(wanted, str) and wanted.startswith("s3://"):
        return live.rstrip("/") == wanted.rstrip("/")
    return bool(live == wanted)


def _unreported(group: dict[str, Any]) -> dict[str, Any]:
    """The group's fields that DescribeCluster does not echo back, or that are compared elsewhere."""
    skip = SPECIAL_GROUP_FIELDS | set(LIVE_GROUP_FIELDS) | set(CREATE_ONLY_GROUP)
    return {key: value for key, value in group.items() if key not in skip}


def _taints(taints: list[dict[str, str]]) -> list[tuple[str, str, str]]:
    return sorted((t.get("Key", ""), t.get("Value", ""), t.get("Effect", "")) for t in taints)


def _groups(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {group["InstanceGroupName"]: group for group in config.get("InstanceGroups", [])}


def _diff(old: Any, new: Any, path: str) -> list[str]:
    """Leaf paths where old and new differ; lists of plain values compare as sets (order is noise)."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new))
        return [p for k in keys for p in _diff(old.get(k), new.get(k), f"{path}.{k}")]
    if isinstance(old, list) and isinstance(new, list):
        if all(not isinstance(v, dict | list) for v in old + new):
            return [] if sorted(map(str, old)) == sorted(map(str, new)) else [path]
        if len(old) == len(new):
            pairs = zip(old, new, strict=True)
            return [p for i, (o, n) in enumerate(pairs) for p in _diff(o, n, f"{path}[{item_label(n, i)}]")]
    return [] if old == new else [path]
