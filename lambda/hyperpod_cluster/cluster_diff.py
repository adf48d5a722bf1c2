"""Turn an old and a new CreateCluster request into what UpdateCluster and tagging can apply.

Pure functions over already-coerced requests, so the update rules are testable without a client.
"""

from __future__ import annotations

from typing import Any

from cfn_coerce import item_label

# Fields HyperPod fixes at creation. ClusterName is handled apart: a new name means a new cluster.
CREATE_ONLY_TOP = ("VpcConfig", "Orchestrator")
CREATE_ONLY_GROUP = ("InstanceType", "ExecutionRole", "ThreadsPerCore")
# Applied by other means (tagging) or not part of the UpdateCluster request body.
NOT_UPDATED = {"ClusterName", "Tags", "InstanceGroups", "InstanceGroupsToDelete", *CREATE_ONLY_TOP}


class CreateOnlyChangeError(ValueError):
    """The new properties change a field that only a new cluster can take."""


def create_only_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Paths of create-only fields whose value differs, e.g. `InstanceGroups[workers].InstanceType`."""
    changes = [path for key in CREATE_ONLY_TOP for path in _diff(old.get(key), new.get(key), key)]
    old_groups = _groups(old)
    for name, group in _groups(new).items():
        if name not in old_groups:
            continue  # a new group may have any type and role.
        for key in CREATE_ONLY_GROUP:
            prefix = f"InstanceGroups[{name}].{key}"
            changes += _diff(old_groups[name].get(key), group.get(key), prefix)
    return changes


def describe_create_only(old: dict[str, Any], new: dict[str, Any], paths: list[str]) -> str:
    """An error message that names the fields and says what a user can do about them."""
    fields = ", ".join(paths)
    return (
        f"Cannot update HyperPod cluster {old.get('ClusterName')!r}: {fields} "
        "is create-only. Rename the cluster (ClusterName) to replace it with a new one, "
        "or restore the old value."
    )


def update_request(
    old: dict[str, Any], new: dict[str, Any], update_members: set[str]
) -> tuple[dict[str, Any] | None, list[str]]:
    """The UpdateCluster request (None if nothing to update) and the top-level keys it cannot unset.

    Only new or changed groups are sent: an unchanged group needs no update, and sending it
    would only widen what the service has to reconcile.
    """
    request: dict[str, Any] = {}
    old_groups, new_groups = _groups(old), _groups(new)
    changed = [group for name, group in new_groups.items() if old_groups.get(name) != group]
    if changed:
        request["InstanceGroups"] = changed
    removed = [name for name in old_groups if name not in new_groups]
    if removed:
        request["InstanceGroupsToDelete"] = removed
    unset = []
    for key in sorted(update_members - NOT_UPDATED):
        if key in new and new[key] != old.get(key):
            request[key] = new[key]
        elif key in old and key not in new:
            unset.append(key)  # UpdateCluster has no way to clear a setting; it keeps its value.
    if not request:
        return None, unset
    return {"ClusterName": new["ClusterName"], **request}, unset


def tag_changes(old: dict[str, Any], new: dict[str, Any]) -> tuple[list[dict[str, str]], list[str]]:
    """Tags to add or overwrite, and tag keys to delete."""
    old_tags = {tag["Key"]: tag["Value"] for tag in old.get("Tags", [])}
    new_tags = {tag["Key"]: tag["Value"] for tag in new.get("Tags", [])}
    to_add = [{"Key": k, "Value": v} for k, v in new_tags.items() if old_tags.get(k) != v]
    to_delete = [k for k in old_tags if k not in new_tags]
    return to_add, to_delete


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
