"""A model of CloudFormation's custom-resource protocol, driving the real HyperPod handler against moto.

Every sequence of stack operations up to a bounded length is played: deploys (create, in-place update,
rename), stack deletes, and the ways a deploy ends (success, another resource failing while this one is still
in progress, another resource failing after it completed), with the faults a real account meets (a lost
CreateCluster response, a cluster that fails while creating). The model sends what CloudFormation and the CDK
Provider framework send on each path: invented physical ids for abandoned creates, rollback updates with
swapped properties, cleanup-phase deletes of replaced clusters, and the framework's own answer for the Delete
that follows a failed on_event. After each sequence: every cluster that exists is the one the stack
references, a referenced cluster exists, and no rollback or cleanup failed.

moto keeps the clusters and their tags. What moto lacks is added in `_World`, as the service behaves:
clusters pass through Creating (DeleteCluster refused meanwhile) and Updating, UpdateCluster changes the
targets, and faults are injected into CreateCluster.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from moto import mock_aws
from moto.sagemaker.models import sagemaker_backends

ACCOUNT, REGION = "123456789012", "us-east-1"
STACK_NAME, LOGICAL_ID = "RayHyperPod", "HyperPodCluster"
STACK_ID = (
    f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{STACK_NAME}/1f2e3d4c-5b6a-7980-a1b2-c3d4e5f60718"
)
INVENTED_ID = f"{STACK_NAME}-{LOGICAL_ID}-1AB2C3D4E5F6G"  # CloudFormation's id for an abandoned Create
FAILED_CREATE_MARKER = "AWSCDK::CustomResourceProviderFramework::CREATE_FAILED"
MAX_POLLS = 12  # is_complete calls before the model calls a request stuck (the world settles in 2-3)
SEQUENCE_LENGTH = 4


# --- the service --------------------------------------------------------------------------------------


@dataclass
class _World:
    """moto's SageMaker with the lifecycle moto skips: statuses that take a poll to settle, and faults."""

    client: Any
    lose_create_response: bool = False  # the next CreateCluster goes through, its answer never comes back
    fail_next_cluster: bool = False  # the next created cluster ends Failed instead of InService
    failing: set[str] = field(default_factory=set)

    @property
    def clusters(self) -> dict[str, Any]:
        return sagemaker_backends[ACCOUNT][REGION].clusters

    def create_cluster(self, **request: Any) -> Any:
        answer = self.client.create_cluster(**request)
        name = request["ClusterName"]
        self.clusters[name].status = "Creating"
        if self.fail_next_cluster:
            self.fail_next_cluster = False
            self.failing.add(name)
        if self.lose_create_response:
            self.lose_create_response = False
            raise ReadTimeoutError(endpoint_url=f"https://api.sagemaker.{REGION}.amazonaws.com")
        return answer

    def describe_cluster(self, **request: Any) -> Any:
        answer = self.client.describe_cluster(**request)
        cluster = self.clusters[request["ClusterName"]]
        if cluster.status in ("Creating", "Updating"):  # settles by the next poll
            failed = request["ClusterName"] in self.failing
            cluster.status = "Failed" if failed else "InService"
            cluster.failure_message = "Insufficient capacity" if failed else ""
        return answer

    def delete_cluster(self, **request: Any) -> Any:
        cluster = self.clusters.get(request["ClusterName"])
        if cluster is not None and cluster.status == "Creating":
            raise ClientError(
                {"Error": {"Code": "ConflictException", "Message": "Cluster is Creating"}}, "DeleteCluster"
            )
        return self.client.delete_cluster(**request)

    def update_cluster(self, **request: Any) -> Any:
        self.client.meta.service_model.operation_model("UpdateCluster")  # a member the model has
        cluster = self.clusters[request["ClusterName"]]
        for group in request.get("InstanceGroups", []):
            live = next(
                g for g in cluster.instance_groups if g["InstanceGroupName"] == group["InstanceGroupName"]
            )
            live["TargetCount"] = live["CurrentCount"] = group["InstanceCount"]
        cluster.status = "Updating"
        return {"ClusterArn": cluster.arn}

    def __getattr__(self, operation: str) -> Any:
        return getattr(self.client, operation)  # describe, tags, meta: moto as is


# --- CloudFormation and the Provider framework -----------------------------------------------------------


class RollbackFailedError(AssertionError):
    """A rollback or cleanup request failed: the stack ends in *_ROLLBACK_FAILED or leaves a cluster."""


@dataclass
class _Stack:
    """What CloudFormation knows of the custom resource: its physical id and properties, or nothing."""

    handler: ModuleType
    physical: str | None = None
    properties: dict[str, Any] | None = None
    requests: int = 0

    def event(
        self, kind: str, properties: dict[str, Any], physical: str | None, old: dict | None = None
    ) -> dict:
        self.requests += 1
        event = {
            "RequestType": kind,
            "RequestId": f"request-{self.requests}",
            "StackId": STACK_ID,
            "LogicalResourceId": LOGICAL_ID,
            "ResourceType": "Custom::HyperPodCluster",
            "ResourceProperties": {"ServiceToken": "token", "ServiceTimeout": "3600", **properties},
        }
        if physical is not None:
            event["PhysicalResourceId"] = physical
        if old is not None:
            event["OldResourceProperties"] = {"ServiceToken": "token", **old}
        return event

    def start(self, event: dict[str, Any]) -> dict[str, Any]:
        """The framework's onEvent: the handler's answer merged into the event, or the framework's own."""
        if event["RequestType"] == "Delete" and event.get("PhysicalResourceId") == FAILED_CREATE_MARKER:
            return {**event, "Skipped": True}  # answered by the framework: the handler never sees it
        answer = self.handler.on_event(event, None)
        if event["RequestType"] == "Delete":
            assert answer["PhysicalResourceId"] == event["PhysicalResourceId"], "the framework refuses this"
        return {**event, **answer}

    def finish(self, started: dict[str, Any]) -> str:
        """The framework's waiter: is_complete until done; the physical id CloudFormation is told."""
        if started.get("Skipped"):
            return started["PhysicalResourceId"]
        for _ in range(MAX_POLLS):
            if self.handler.is_complete(started, None)["IsComplete"]:
                return started["PhysicalResourceId"]
        raise AssertionError(f"{started['RequestType']} never completed")

    def run(self, event: dict[str, Any]) -> str:
        return self.finish(self.start(event))

    def must(self, event: dict[str, Any]) -> str:
        """A request CloudFormation does not retry (rollback, cleanup): failure is a finding."""
        try:
            return self.run(event)
        except Exception as err:
            raise RollbackFailedError(
                f"{event['RequestType']} {event.get('PhysicalResourceId')}: {err}"
            ) from err

    def deploy(self, properties: dict[str, Any], fate: str) -> None:
        """One stack deploy that sets the resource to `properties`, ending as `fate` says."""
        if self.physical is None:
            self._create(properties, fate)
        elif properties != self.properties:
            self._update(properties, fate)

    def destroy(self) -> None:
        if self.physical is not None:
            assert self.properties is not None
            self.must(self.event("Delete", self.properties, self.physical))
        self.physical = self.properties = None

    def _create(self, properties: dict[str, Any], fate: str) -> None:
        event = self.event("Create", properties, None)
        try:
            started = self.start(event)
        except Exception:
            self.must(self.event("Delete", properties, FAILED_CREATE_MARKER))  # rollback of a failed create
            return
        if fate in ("abandon", "destroy_during"):
            # Another resource failed (or the stack is being deleted) while this Create still ran:
            # CloudFormation stops waiting and deletes what it never heard of, under an id it invents.
            self.must(self.event("Delete", properties, INVENTED_ID))
            return
        try:
            physical = self.finish(started)
        except Exception:
            self.must(self.event("Delete", properties, started["PhysicalResourceId"]))
            return
        if fate == "later_failure":
            self.must(self.event("Delete", properties, physical))  # rollback deletes what the deploy created
            return
        self.physical, self.properties = physical, properties

    def _update(self, properties: dict[str, Any], fate: str) -> None:
        assert self.physical is not None and self.properties is not None
        old_physical, old_properties = self.physical, self.properties
        event = self.event("Update", properties, old_physical, old_properties)
        physical = None
        try:
            started = self.start(event)
            if fate not in ("abandon", "destroy_during"):
                physical = self.finish(started)
        except Exception:
            physical = None
        if physical is None or fate == "later_failure":
            # Rollback: the old properties back, on the id CloudFormation holds (the new one, if it heard).
            current = physical or old_physical
            back = self.must(self.event("Update", old_properties, current, properties))
            if back != current:
                self.must(self.event("Delete", properties, current))  # cleanup of the rolled-back replacement
            self.physical = back
            if fate == "destroy_during":
                self.destroy()
            return
        if physical != old_physical:
            self.must(
                self.event("Delete", old_properties, old_physical)
            )  # cleanup phase: the replaced cluster
        self.physical, self.properties = physical, properties


# --- the sequences ------------------------------------------------------------------------------------


def _properties(name: str, count: int) -> dict[str, Any]:
    """The resource's property as CloudFormation sends it: every number a string."""
    group = {
        "InstanceGroupName": "workers",
        "InstanceType": "ml.g5.8xlarge",
        "InstanceCount": str(count),
        "ExecutionRole": f"arn:aws:iam::{ACCOUNT}:role/hyperpod-execution",
        "ThreadsPerCore": "1",
        "LifeCycleConfig": {"SourceS3Uri": "s3://sagemaker-ray-lifecycle/", "OnCreate": "on_create.sh"},
    }
    return {
        "ClusterConfig": {
            "ClusterName": name,
            "InstanceGroups": [group],
            "VpcConfig": {"SecurityGroupIds": ["sg-0123456789abcdef0"], "Subnets": ["subnet-0a"]},
            "Orchestrator": {"Eks": {"ClusterArn": f"arn:aws:eks:{REGION}:{ACCOUNT}:cluster/ray-eks"}},
        }
    }


@dataclass(frozen=True)
class Step:
    """One stack operation: a deploy of (name, count) ending as `fate` with `fault` injected, or a destroy."""

    kind: str
    name: str = ""
    count: int = 0
    fate: str = ""
    fault: str = ""

    def __str__(self) -> str:
        if self.kind == "destroy":
            return "destroy"
        return f"deploy({self.name},{self.count},{self.fate},{self.fault})"


STEPS = [Step("destroy")] + [
    Step("deploy", name, count, fate, fault)
    for name, count in (("ray-a", 1), ("ray-a", 2), ("ray-b", 1))
    for fate in ("ok", "abandon", "later_failure", "destroy_during")
    for fault in ("none", "lost_response", "cluster_fails")
]


def _play(stack: _Stack, world: _World, step: Step) -> None:
    if step.kind == "destroy":
        stack.destroy()
        return
    world.lose_create_response = step.fault == "lost_response"
    world.fail_next_cluster = step.fault == "cluster_fails"
    stack.deploy(_properties(step.name, step.count), step.fate)
    if step.fate == "destroy_during" and stack.physical is not None:
        stack.destroy()
    world.lose_create_response = world.fail_next_cluster = False


def _orphans(stack: _Stack, world: _World) -> list[str]:
    """Clusters that exist but are not the one the stack references, and a reference to no cluster."""
    found = [name for name in world.clusters if name != stack.physical]
    if stack.physical is not None and stack.physical not in world.clusters:
        found.append(f"{stack.physical} (referenced, missing)")
    return found


@pytest.fixture
def world(handler: ModuleType, monkeypatch: pytest.MonkeyPatch) -> Iterator[_World]:
    with mock_aws():
        world = _World(boto3.client("sagemaker", region_name=REGION))
        monkeypatch.setattr(handler, "_client", lambda: world)
        monkeypatch.setattr(handler.random, "uniform", lambda low, high: low)  # retries without real sleeps
        yield world


Snapshot = tuple[str | None, dict[str, Any] | None, dict[str, Any], frozenset[str]]


def _snapshot(stack: _Stack, world: _World) -> Snapshot:
    return stack.physical, stack.properties, copy.deepcopy(world.clusters), frozenset(world.failing)


def _restore(snapshot: Snapshot, stack: _Stack, world: _World) -> None:
    stack.physical, stack.properties, clusters, failing = snapshot
    world.clusters.clear()
    world.clusters.update(copy.deepcopy(clusters))
    world.failing = set(failing)


def _key(snapshot: Snapshot) -> str:
    """Everything the next step's outcome depends on: the handler keeps no state between invocations."""
    physical, properties, clusters, failing = snapshot
    live = {
        name: (c.status, c.instance_groups, sorted((t["Key"], t["Value"]) for t in c.tags), name in failing)
        for name, c in clusters.items()
    }
    return json.dumps([physical, properties, live], sort_keys=True, default=str)


def test_every_event_sequence_ends_with_no_orphan_cluster_and_no_failed_rollback(
    handler: ModuleType, world: _World, capsys: pytest.CaptureFixture[str]
) -> None:
    """Breadth-first over sequences of STEPS up to SEQUENCE_LENGTH. A step's outcome depends only on the
    state before it (stack reference + clusters), so each (state, step) is played once and the sequences
    through it are counted; the invariants are checked after every step, so every prefix is a sequence too."""
    began = time.monotonic()
    stack = _Stack(handler)
    frontier: dict[str, tuple[Snapshot, int]] = {"": (_snapshot(stack, world), 1)}
    played: dict[tuple[str, Step], tuple[str, Snapshot] | None] = {}
    explored, findings = 0, []
    for _ in range(SEQUENCE_LENGTH):
        following: dict[str, tuple[Snapshot, int]] = {}
        for key, (snapshot, paths) in frontier.items():
            for step in STEPS:
                if (key, step) not in played:
                    played[key, step] = _step_from(snapshot, stack, world, step, findings)
                    capsys.readouterr()  # the handler's log lines (one per state change): not kept
                explored += paths
                outcome = played[key, step]
                if outcome is not None:
                    after_key, after = outcome
                    following[after_key] = (after, following.get(after_key, (after, 0))[1] + paths)
        frontier = following
    with capsys.disabled():
        print(
            f"\nprotocol model: {explored} sequences (length <= {SEQUENCE_LENGTH}, {len(STEPS)} steps), "
            f"{len(played)} distinct (state, step) plays, {len(findings)} findings, "
            f"{time.monotonic() - began:.1f} s"
        )
    assert findings == []
    assert explored == sum(len(STEPS) ** n for n in range(1, SEQUENCE_LENGTH + 1))


def _step_from(
    snapshot: Snapshot, stack: _Stack, world: _World, step: Step, findings: list[str]
) -> tuple[str, Snapshot] | None:
    """Play `step` from `snapshot`; the state after it, or None (and a finding) if an invariant broke."""
    _restore(snapshot, stack, world)
    before = f"from {stack.physical or 'no resource'} with clusters {sorted(world.clusters)}"
    try:
        _play(stack, world, step)
    except RollbackFailedError as err:
        findings.append(f"{step} {before}: {err}")
        return None
    orphans = _orphans(stack, world)
    if orphans:
        findings.append(f"{step} {before}: left {orphans}")
        return None
    after = _snapshot(stack, world)
    return _key(after), after


def test_the_model_finds_the_orphan_the_old_handler_left(
    handler: ModuleType, world: _World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model is not blind: with the invented-id recognition switched off (the old behaviour), an
    abandoned Create leaves its cluster running with no stack."""
    monkeypatch.setattr(handler, "_is_invented_id", lambda event, name: False)
    stack = _Stack(handler)
    _play(stack, world, Step("deploy", "ray-a", 1, "abandon", "none"))
    assert _orphans(stack, world) == ["ray-a"]


def test_the_model_finds_the_orphan_of_an_abandoned_rename(
    handler: ModuleType, world: _World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the rollback's cleanup of a rename CloudFormation never heard the end of, the new cluster
    stays: CloudFormation sends no Delete for an id it was never told."""
    monkeypatch.setattr(handler, "_abandoned_replacement", lambda event, old: None)
    stack = _Stack(handler)
    _play(stack, world, Step("deploy", "ray-a", 1, "ok", "none"))
    _play(stack, world, Step("deploy", "ray-b", 1, "abandon", "none"))
    assert stack.physical == "ray-a"
    assert _orphans(stack, world) == ["ray-b"]
