"""Print a one-screen summary of a cloud assembly: where the templates are, stacks and resource counts."""

import argparse
import json
from collections import Counter
from pathlib import Path


def stacks(assembly: Path) -> dict[str, dict]:
    """Stack artifact id -> its manifest entry, in the manifest's (dependency) order."""
    manifest = json.loads((assembly / "manifest.json").read_text())
    return {
        name: artifact
        for name, artifact in manifest["artifacts"].items()
        if artifact["type"] == "aws:cloudformation:stack"
    }


def summarize(assembly: Path) -> str:
    lines = [f"Templates: {assembly.resolve()}/<stack>.template.json"]
    manifests = assembly / "manifests"
    if manifests.is_dir():
        lines.append(
            f"Kubernetes manifests: {manifests.resolve()}/ ({len(list(manifests.glob('*.yaml')))} files)"
        )
    lines.append(f"{'stack':<12} {'name':<28} {'resources':>9}  top types")
    for stack_id, artifact in stacks(assembly).items():
        template = json.loads((assembly / artifact["properties"]["templateFile"]).read_text())
        types = Counter(resource["Type"] for resource in template.get("Resources", {}).values())
        top = ", ".join(f"{kind.split('::', 1)[1]} {count}" for kind, count in types.most_common(3))
        name = artifact["properties"].get("stackName", stack_id)
        lines.append(f"{stack_id:<12} {name:<28} {sum(types.values()):>9}  {top}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("assembly", type=Path)
    parser.add_argument("--stack-ids", action="store_true", help="print only the stack ids, one line")
    args = parser.parse_args()
    print(" ".join(stacks(args.assembly)) if args.stack_ids else summarize(args.assembly))


if __name__ == "__main__":
    main()
