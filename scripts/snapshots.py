"""Template snapshots with asset hashes masked, and the baselines `make diff` feeds to `cdk diff --template`.

Masking keeps a Lambda code change from rewriting every snapshot: the code diff shows that change, the
snapshot diff shows infrastructure changes only. For `cdk diff`, each masked value is filled back in from the
current template at the same path, so that only real differences are reported.
"""

import argparse
import json
import re
import shutil
from pathlib import Path
from typing import Any

HASH = re.compile(r"[0-9a-f]{64}")
MASK = "<asset-hash>"


def mask(node: Any) -> Any:
    """The template with every asset hash (64 hex characters) replaced by a fixed marker."""
    if isinstance(node, dict):
        return {key: mask(value) for key, value in node.items()}
    if isinstance(node, list):
        return [mask(value) for value in node]
    if isinstance(node, str):
        return HASH.sub(MASK, node)
    return node


def unmask_like(snapshot: Any, current: Any) -> Any:
    """The snapshot with masked strings taken from `current` where the same path still holds a string."""
    if isinstance(snapshot, dict) and isinstance(current, dict):
        return {key: unmask_like(value, current.get(key)) for key, value in snapshot.items()}
    if isinstance(snapshot, list) and isinstance(current, list) and len(snapshot) == len(current):
        return [unmask_like(old, new) for old, new in zip(snapshot, current, strict=True)]
    if isinstance(snapshot, str) and MASK in snapshot and isinstance(current, str):
        return current if mask(current) == snapshot else snapshot
    return snapshot


def templates(assembly: Path) -> dict[str, Path]:
    manifest = json.loads((assembly / "manifest.json").read_text())
    return {
        name: assembly / artifact["properties"]["templateFile"]
        for name, artifact in manifest["artifacts"].items()
        if artifact["type"] == "aws:cloudformation:stack"
    }


def render(template: Any) -> str:
    return json.dumps(template, indent=1, sort_keys=True) + "\n"


def update(assembly: Path, snapshots: Path) -> None:
    if snapshots.exists():
        shutil.rmtree(snapshots)
    snapshots.mkdir(parents=True)
    for stack, path in templates(assembly).items():
        masked = mask(json.loads(path.read_text()))
        (snapshots / f"{stack}.template.json").write_text(render(masked))
        print(f"wrote {snapshots / stack}.template.json")


def prepare_diff(assembly: Path, snapshots: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for stack, path in templates(assembly).items():
        snapshot_file = snapshots / f"{stack}.template.json"
        baseline = json.loads(snapshot_file.read_text()) if snapshot_file.exists() else {}
        current = json.loads(path.read_text())
        (out / f"{stack}.template.json").write_text(render(unmask_like(baseline, current)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("update")
    up.add_argument("assembly", type=Path)
    up.add_argument("snapshots", type=Path)
    prep = sub.add_parser("prepare-diff")
    prep.add_argument("assembly", type=Path)
    prep.add_argument("snapshots", type=Path)
    prep.add_argument("out", type=Path)
    args = parser.parse_args()
    if args.command == "update":
        update(args.assembly, args.snapshots)
    else:
        prepare_diff(args.assembly, args.snapshots, args.out)


if __name__ == "__main__":
    main()
