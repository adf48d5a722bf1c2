"""The Kubernetes manifests of a plan as readable YAML diffs (`make plan`).

`cdk diff` shows a changed manifest as one long JSON string; here each manifest the templates carry
(the `Manifest` property of the EKS Kubernetes resources) is rendered as YAML on both sides, deployed and
synthesized, and diffed line by line. CloudFormation tokens inside a manifest are shown as `${Ref:X}` or
`${GetAtt:X.Attr}` (the same on both sides unless they changed).
"""

import difflib
import json
from typing import Any

import yaml


def manifest_yaml(value: Any) -> str:
    """A Manifest property (a JSON list of objects, possibly inside Fn::Join with tokens) as YAML."""
    text = _text(value)
    try:
        objects = json.loads(text)
    except json.JSONDecodeError:
        return text + "\n"
    return yaml.safe_dump_all(objects if isinstance(objects, list) else [objects], sort_keys=False)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(_text(part) for part in parts)
    if isinstance(value, dict) and "Ref" in value:
        return f"${{Ref:{value['Ref']}}}"
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        target = value["Fn::GetAtt"]
        return f"${{GetAtt:{'.'.join(target) if isinstance(target, list) else target}}}"
    # Any other intrinsic, without the quotes that would end the JSON string it sits in.
    return "${" + json.dumps(value, sort_keys=True).replace('"', "").replace("\\", "") + "}"


def manifests(template: dict) -> dict[str, str]:
    """Logical id -> the manifest as YAML, for every resource of the template that applies one."""
    return {
        logical_id: manifest_yaml(resource["Properties"]["Manifest"])
        for logical_id, resource in (template.get("Resources") or {}).items()
        if "Manifest" in (resource.get("Properties") or {})
    }


def manifest_diffs(stack: str, deployed: dict, planned: dict) -> list[str]:
    """Unified YAML diffs of the manifests that a deploy adds, changes or removes in one stack."""
    old, new = manifests(deployed), manifests(planned)
    diffs = []
    for logical_id in sorted(old.keys() | new.keys()):
        before, after = old.get(logical_id, ""), new.get(logical_id, "")
        if before != after:
            lines = difflib.unified_diff(
                before.splitlines(keepends=True),
                after.splitlines(keepends=True),
                fromfile=f"{stack}/{logical_id} (deployed)",
                tofile=f"{stack}/{logical_id} (planned)",
            )
            diffs.append("".join(lines))
    return diffs
