"""Create and delete order, read from the synthesized templates and the assembly's stack dependencies.

CloudFormation deletes a resource before everything it depends on (DependsOn, Ref, GetAtt), and the CDK CLI
destroys a stack before the stacks it depends on. So "A is deleted before B" holds when B is reachable from A
in the dependency graph of resources, with a stack's resources depending on all of its dependency stacks.
"""

import json
import re
from collections.abc import Callable
from functools import cache

import pytest

from config import load_config
from tests.support.apps import synth_app

Node = tuple[str, str]  # (stack id, logical id)


def _references(node: object) -> set[str]:
    text = json.dumps(node)
    return set(re.findall(r'"Ref": "([^"]+)"', text)) | set(re.findall(r'"Fn::GetAtt": \["([^"]+)"', text))


class Graph:
    def __init__(self, assembly) -> None:
        self.templates = {stack.id: stack.template for stack in assembly.stacks}
        self.stack_deps = {
            stack.id: {dep.id for dep in stack.dependencies if dep.id in self.templates}
            for stack in assembly.stacks
        }

    @cache  # noqa: B019 (one graph per session; the cache dies with it)
    def depends_on(self, node: Node) -> frozenset[Node]:
        """Everything `node` transitively depends on (so is deleted after it)."""
        stack, logical_id = node
        resource = self.templates[stack]["Resources"][logical_id]
        resources = self.templates[stack]["Resources"]
        direct = {(stack, dep) for dep in resource.get("DependsOn", [])}
        direct |= {(stack, ref) for ref in _references(resource.get("Properties", {})) if ref in resources}
        direct |= {(dep, rid) for dep in self.stack_deps[stack] for rid in self.templates[dep]["Resources"]}
        result = set(direct)
        for child in direct:
            result |= self.depends_on(child)
        return frozenset(result)

    def find(self, predicate: Callable[[dict], bool]) -> Node:
        matches = [
            (stack, rid)
            for stack, template in self.templates.items()
            for rid, resource in template["Resources"].items()
            if predicate(resource)
        ]
        assert len(matches) == 1, matches
        return matches[0]


def manifest_of(kind: str) -> Callable[[dict], bool]:
    return lambda r: (
        r["Type"] == "Custom::AWSCDK-EKS-KubernetesResource"
        and f'\\"kind\\":\\"{kind}\\"' in json.dumps(r["Properties"].get("Manifest"))
    )


def helm(chart: str) -> Callable[[dict], bool]:
    return lambda r: r["Type"] == "Custom::AWSCDK-EKS-HelmChart" and r["Properties"].get("Chart") == chart


def of_type(kind: str) -> Callable[[dict], bool]:
    return lambda r: r["Type"] == kind


@pytest.fixture(scope="module")
def graph(assembly) -> Graph:
    return Graph(assembly)


@pytest.fixture(scope="module")
def dynamic_graph(tmp_path_factory) -> Graph:
    config = load_config({"storage.mode": "dynamic", "ray.job.enabled": "true"})
    return Graph(synth_app(config, tmp_path_factory.mktemp("order"))[1])


ORDER = [  # (deleted first, deleted later, why)
    (manifest_of("RayCluster"), helm("kuberay-operator"), "the operator removes the RayCluster's finalizers"),
    (manifest_of("RayCluster"), manifest_of("PersistentVolumeClaim"), "running pods hold the claim"),
    (manifest_of("PersistentVolumeClaim"), helm("aws-fsx-csi-driver"), "the driver deletes a dynamic volume"),
    (manifest_of("RayCluster"), of_type("Custom::HyperPodCluster"), "Ray pods drain before nodes go"),
    (helm("kuberay-operator"), of_type("AWS::EKS::Cluster"), "Helm needs the API server"),
    (manifest_of("PersistentVolumeClaim"), of_type("Custom::HyperPodCluster"), "unmount before nodes go"),
    (of_type("Custom::HyperPodCluster"), of_type("AWS::EKS::Cluster"), "HyperPod is orchestrated by EKS"),
    (
        of_type("Custom::HyperPodCluster"),
        (
            lambda r: (
                r["Type"] == "Custom::AWSCDK-EKS-HelmChart"
                and r["Properties"].get("Release") == "hyperpod-dependencies"
            )
        ),
        "its agents stay until nodes are gone",
    ),
]


@pytest.mark.parametrize(("first", "later", "why"), ORDER, ids=[why for _, _, why in ORDER])
@pytest.mark.parametrize("graph_fixture", ["graph", "dynamic_graph"])
def test_deleted_before(request, graph_fixture, first, later, why):
    g: Graph = request.getfixturevalue(graph_fixture)
    a, b = g.find(first), g.find(later)
    assert b in g.depends_on(a), f"{a} must be deleted before {b}: {why}"
    assert a not in g.depends_on(b), f"cycle between {a} and {b}"


def test_dynamic_file_systems_are_swept_after_the_csi_driver_and_the_claim(dynamic_graph):
    sweep = dynamic_graph.find(of_type("Custom::FsxCleanup"))
    for first in (helm("aws-fsx-csi-driver"), manifest_of("PersistentVolumeClaim")):
        assert sweep in dynamic_graph.depends_on(dynamic_graph.find(first))


def test_supervisor_job_goes_before_its_cluster(dynamic_graph):
    """The default runner: created after the RayCluster (its head and token Secret), deleted before it."""
    job, cluster = dynamic_graph.find(manifest_of("Job")), dynamic_graph.find(manifest_of("RayCluster"))
    assert cluster in dynamic_graph.depends_on(job)
    assert job not in dynamic_graph.depends_on(cluster)
    assert not any(manifest_of("RayJob")(r) for r in dynamic_graph.templates["Ray"]["Resources"].values())


def test_ray_job_goes_before_its_cluster(tmp_path_factory):
    config = load_config({"ray.job.enabled": "true", "ray.job.runner": "rayjob"})
    graph = Graph(synth_app(config, tmp_path_factory.mktemp("rayjob"))[1])
    job, cluster = graph.find(manifest_of("RayJob")), graph.find(manifest_of("RayCluster"))
    assert cluster in graph.depends_on(job)


def test_static_file_system_waits_only_for_the_network(graph):
    """Created in parallel with EKS and HyperPod, not queued behind them (issue 4, deploy time)."""
    fs = graph.find(of_type("AWS::FSx::FileSystem"))
    assert {stack for stack, _ in graph.depends_on(fs)} == {"Network"}


def test_platform_charts_wait_only_for_eks(graph):
    for chart in ("kuberay-operator", "aws-fsx-csi-driver"):
        stacks = {stack for stack, _ in graph.depends_on(graph.find(helm(chart)))}
        assert stacks <= {"Network", "Eks", "Platform"}, (chart, stacks)
