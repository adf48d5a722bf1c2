"""A one-screen summary of a cloud assembly: stacks, HyperPod instance groups, FSx and the estimated price.

`--plan deploy|destroy` also says what `make deploy` creates or `make destroy` deletes and asks for a typed
`yes` (unless `--yes`). Everything is read from the synthesized templates and manifests, so the summary shows
what would be deployed, whatever config produced it.
"""

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run by path (`python scripts/summary.py`)

import prices

FSX_CSI_DRIVER = "fsx.csi.aws.com"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"


@dataclass(frozen=True)
class InstanceGroup:
    name: str
    instance_type: str
    count: int
    autoscaled_max: int | None = None  # opt-in autoscaling: Karpenter adds up to this many nodes when busy
    training_plan: bool = False  # runs on a SageMaker training plan: paid up front, not by the hour

    @property
    def hourly(self) -> float | None:
        if self.training_plan:
            return 0.0  # the plan's price, paid when it was bought; on-demand rates do not apply
        each = prices.instance_hourly(self.instance_type)
        return None if each is None else each * self.count

    @property
    def busy_extra_hourly(self) -> float | None:
        """What the autoscaled group adds while every node Ray may ask for runs."""
        each = prices.instance_hourly(self.instance_type)
        return None if each is None else each * (self.autoscaled_max or 0)

    @property
    def label(self) -> str:
        plan = " (training plan: prepaid, not in the hourly total)" if self.training_plan else ""
        return f"{self.name}: {self.instance_type} x {self.count}{plan}" + _autoscaled(self)


@dataclass(frozen=True)
class FileSystem:
    mode: str  # static: CloudFormation owns it; dynamic: the CSI driver creates it from a claim
    capacity_gib: int
    deployment_type: str
    throughput_per_tib: int

    @property
    def hourly(self) -> float | None:
        return prices.fsx_hourly(self.capacity_gib, self.throughput_per_tib)


@dataclass(frozen=True)
class CacheNodes:
    """The GCS store's ElastiCache replication group: a primary and its replicas."""

    node_type: str
    count: int

    @property
    def hourly(self) -> float | None:
        each = prices.cache_node_hourly(self.node_type)
        return None if each is None else each * self.count


@dataclass(frozen=True)
class Plan:
    stacks: dict[str, str]  # artifact id -> stack name, in deploy order
    region: str | None
    instance_groups: list[InstanceGroup]
    file_systems: list[FileSystem]
    eks_clusters: int
    nat_gateways: int
    cache_nodes: list[CacheNodes] = field(default_factory=list)

    def hourly_lines(self) -> list[tuple[str, float | None]]:
        lines: list[tuple[str, float | None]] = [(g.label, g.hourly) for g in self.instance_groups]
        lines += [
            (
                f"FSx for Lustre {fs.capacity_gib} GiB {fs.deployment_type} {fs.throughput_per_tib} MB/s/TiB "
                f"({fs.mode})",
                fs.hourly,
            )
            for fs in self.file_systems
        ]
        lines += [(f"ElastiCache (GCS store): {c.node_type} x {c.count}", c.hourly) for c in self.cache_nodes]
        lines.append(
            (f"EKS control plane x {self.eks_clusters}", self.eks_clusters * prices.EKS_CLUSTER_HOURLY_USD)
        )
        lines.append(
            (f"NAT gateway x {self.nat_gateways}", self.nat_gateways * prices.NAT_GATEWAY_HOURLY_USD)
        )
        return lines

    @property
    def hourly_total(self) -> float:
        return sum(price for _, price in self.hourly_lines() if price is not None)

    @property
    def busy_hourly_total(self) -> float:
        """The total while every autoscaled group runs its most nodes (equal to the total without any)."""
        extra = (g.busy_extra_hourly for g in self.instance_groups if g.autoscaled_max)
        return self.hourly_total + sum(price for price in extra if price is not None)


def _autoscaled(group: InstanceGroup) -> str:
    return "" if group.autoscaled_max is None else f" idle (autoscaled 0-{group.autoscaled_max})"


def stacks(assembly: Path) -> dict[str, dict]:
    """Stack artifact id -> its manifest entry, in the manifest's (dependency) order."""
    manifest = json.loads((assembly / "manifest.json").read_text())
    return {
        name: artifact
        for name, artifact in manifest["artifacts"].items()
        if artifact["type"] == "aws:cloudformation:stack"
    }


def templates(assembly: Path) -> dict[str, dict]:
    return {
        stack_id: json.loads((assembly / artifact["properties"]["templateFile"]).read_text())
        for stack_id, artifact in stacks(assembly).items()
    }


def read_plan(assembly: Path) -> Plan:
    artifacts = stacks(assembly)
    resources = [r for t in templates(assembly).values() for r in t.get("Resources", {}).values()]
    types = Counter(resource["Type"] for resource in resources)
    regions = {artifact.get("environment", "").rpartition("/")[2] for artifact in artifacts.values()}
    region = next(iter(regions)) if len(regions) == 1 else None
    return Plan(
        stacks={stack_id: a["properties"].get("stackName", stack_id) for stack_id, a in artifacts.items()},
        region=None if region in (None, "unknown-region") else region,
        instance_groups=_with_autoscaling(
            [group for r in resources for group in _instance_groups(r.get("Properties", {}))],
            assembly / "manifests",
        ),
        file_systems=_static_file_systems(resources) + _dynamic_file_systems(assembly / "manifests"),
        eks_clusters=types["AWS::EKS::Cluster"],
        nat_gateways=types["AWS::EC2::NatGateway"],
        cache_nodes=[
            CacheNodes(r["Properties"]["CacheNodeType"], int(r["Properties"].get("NumCacheClusters", 1)))
            for r in resources
            if r["Type"] == "AWS::ElastiCache::ReplicationGroup"
        ],
    )


def _instance_groups(properties: Any) -> Iterator[InstanceGroup]:
    """HyperPod instance groups anywhere in a resource's properties (the custom resource nests them)."""
    if isinstance(properties, dict):
        for key, value in properties.items():
            if key == "InstanceGroups" and isinstance(value, list):
                for group in value:
                    yield InstanceGroup(
                        group["InstanceGroupName"],
                        group["InstanceType"],
                        int(group["InstanceCount"]),
                        training_plan=bool(group.get("TrainingPlanArn")),
                    )
            else:
                yield from _instance_groups(value)
    elif isinstance(properties, list):
        for item in properties:
            yield from _instance_groups(item)


def _manifest_objects(manifests: Path) -> list[dict]:
    return [o for path in sorted(manifests.glob("*.yaml")) for o in yaml.safe_load_all(path.read_text()) if o]


def _with_autoscaling(groups: list[InstanceGroup], manifests: Path) -> list[InstanceGroup]:
    """Groups at 0 whose instance type a Karpenter NodePool offers, with the most nodes Ray can ask for: the
    maxReplicas of the worker groups that select that type (one Ray worker pod per node)."""
    objects = _manifest_objects(manifests) if manifests.is_dir() else []
    offered = {
        value
        for o in objects
        if o.get("kind") == "NodePool"
        for requirement in o["spec"]["template"]["spec"].get("requirements", [])
        if requirement["key"] == INSTANCE_TYPE_LABEL
        for value in requirement.get("values", [])
    }
    most: Counter[str] = Counter()
    for cluster in (o for o in objects if o.get("kind") == "RayCluster"):
        for worker in cluster["spec"].get("workerGroupSpecs", []):
            selected = worker["template"]["spec"].get("nodeSelector", {}).get(INSTANCE_TYPE_LABEL)
            if selected in offered:
                most[selected] += int(worker.get("maxReplicas", 0))
    return [
        InstanceGroup(g.name, g.instance_type, g.count, most[g.instance_type])
        if g.count == 0 and g.instance_type in offered
        else g
        for g in groups
    ]


def _static_file_systems(resources: list[dict]) -> list[FileSystem]:
    found = []
    for resource in resources:
        if resource["Type"] == "AWS::FSx::FileSystem":
            props = resource["Properties"]
            lustre = props.get("LustreConfiguration", {})
            found.append(
                FileSystem(
                    "static",
                    int(props["StorageCapacity"]),
                    lustre.get("DeploymentType", "?"),
                    int(lustre.get("PerUnitStorageThroughput", 0)),
                )
            )
    return found


def _dynamic_file_systems(manifests: Path) -> list[FileSystem]:
    """StorageClasses of the FSx CSI driver and the claims that make it create a file system each."""
    objects = [
        o for path in sorted(manifests.glob("*.yaml")) for o in yaml.safe_load_all(path.read_text()) if o
    ]
    classes = {
        o["metadata"]["name"]: o["parameters"]
        for o in objects
        if o.get("kind") == "StorageClass" and o.get("provisioner") == FSX_CSI_DRIVER
    }
    found = []
    for claim in (o for o in objects if o.get("kind") == "PersistentVolumeClaim"):
        params = classes.get(claim["spec"].get("storageClassName", ""))
        if params is not None:
            size = str(claim["spec"]["resources"]["requests"]["storage"])
            found.append(
                FileSystem(
                    "dynamic",
                    int(size.removesuffix("Gi")),
                    params.get("deploymentType", "?"),
                    int(params.get("perUnitStorageThroughput", 0)),
                )
            )
    return found


def _money(value: float | None) -> str:
    return "unknown" if value is None else f"${value:,.2f}"


def price_table(plan: Plan) -> list[str]:
    lines = [f"  {'':<58} {'USD/hour':>12}"]
    lines += [f"  {label:<58} {_money(price):>12}" for label, price in plan.hourly_lines()]
    unknown = [label for label, price in plan.hourly_lines() if price is None]
    total = plan.hourly_total
    idle = " while idle" if any(g.autoscaled_max for g in plan.instance_groups) else ""
    lines.append(
        f"  {'Estimated total' + idle + (' (without the unknown lines)' if unknown else ''):<58} "
        f"{_money(total):>12}  (~{_money(total * 24)}/day)"
    )
    if idle:
        lines.append(
            f"  {'Busy (every autoscaled group at its most nodes)':<58} {_money(plan.busy_hourly_total):>12}"
        )
    where = plan.region or "an environment-agnostic app (region from your AWS profile)"
    note = "" if plan.region == prices.PRICE_REGION else f"; {where} may differ"
    lines.append(f"  On-demand list prices for {prices.PRICE_REGION}, {prices.PRICE_DATE}{note}.")
    lines.append(f"  Source: {prices.PRICE_SOURCE}.")
    return lines


def summarize(assembly: Path, config_name: str | None = None) -> str:
    lines = []
    if config_name:
        lines.append(f"Config: {config_name}")
    lines.append(f"Templates: {assembly.resolve()}/<stack>.template.json")
    manifests = assembly / "manifests"
    if manifests.is_dir():
        lines.append(
            f"Kubernetes manifests: {manifests.resolve()}/ ({len(list(manifests.glob('*.yaml')))} files)"
        )
    all_templates = templates(assembly)
    width = max(len("stack"), *map(len, all_templates))
    lines.append(f"{'stack':<{width}} {'name':<28} {'resources':>9}  top types")
    for stack_id, template in all_templates.items():
        types = Counter(resource["Type"] for resource in template.get("Resources", {}).values())
        top = ", ".join(f"{kind.split('::', 1)[1]} {count}" for kind, count in types.most_common(3))
        name = stacks(assembly)[stack_id]["properties"].get("stackName", stack_id)
        lines.append(f"{stack_id:<{width}} {name:<28} {sum(types.values()):>9}  {top}")
    lines.append("Instance groups, storage and estimated price:")
    lines += price_table(read_plan(assembly))
    return "\n".join(lines)


def destroy_notes(plan: Plan) -> list[str]:
    lines = ["make destroy deletes, dependents first: " + ", ".join(reversed(plan.stacks.values())) + "."]
    for fs in plan.file_systems:
        how = "by CloudFormation" if fs.mode == "static" else "by the FSx CSI driver and the cleanup resource"
        lines.append(
            f"It DELETES the FSx for Lustre file system ({fs.capacity_gib} GiB, {fs.mode}, {how}) with "
            "everything under /fsx, including the job's checkpoints: copy out what you want to keep first."
        )
    if plan.instance_groups:
        lines.append("It deletes the HyperPod cluster: its nodes and their local disks are gone.")
    return lines


def confirm(action: str, assume_yes: bool) -> None:
    """Ask for a typed `yes`; refuse without a terminal, where nobody could have read the plan."""
    if assume_yes:
        print(f"YES=1: {action} without asking.")
        return
    if not sys.stdin.isatty():
        raise SystemExit(f"Not asking without a terminal: run `make {action} YES=1` to {action} anyway.")
    answer = input(f"Type yes to {action}: ").strip().lower()
    if answer != "yes":
        raise SystemExit(f"Not confirmed: nothing was {'deployed' if action == 'deploy' else 'destroyed'}.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("assembly", type=Path)
    parser.add_argument("--stack-ids", action="store_true", help="print only the stack ids, one line")
    parser.add_argument("--config-name", help="which config produced the assembly (printed first)")
    parser.add_argument("--plan", choices=("deploy", "destroy"), help="say what happens, then ask")
    parser.add_argument("--yes", action="store_true", help="do not ask (YES=1)")
    args = parser.parse_args()
    if args.stack_ids:
        print(" ".join(stacks(args.assembly)))
        return
    print(summarize(args.assembly, args.config_name))
    if args.plan:
        plan = read_plan(args.assembly)
        if args.plan == "destroy":
            print("\n".join(destroy_notes(plan)))
        else:
            print(
                f"make deploy creates: {', '.join(plan.stacks.values())}; billing starts as each is created."
            )
        confirm(args.plan, args.yes)


if __name__ == "__main__":
    main()
