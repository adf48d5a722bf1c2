"""Opt-in autoscaling's configuration: what AWS's HyperPod autoscaling pages rule out is a config error of
one line each, naming the field, the value and what is allowed. The example turns it on; the default is
off."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from config import ConfigError, load_config
from tests.support import REPO

EXAMPLE = yaml.safe_load((REPO / "examples" / "autoscaling.yaml").read_text())


def _workers(values: dict[str, Any]) -> dict[str, Any]:
    return values["hyperpod"]["instance_groups"][1]


def _extra_groups(count: int) -> Callable[[dict[str, Any]], None]:
    types = [
        *("ml.g5.xlarge", "ml.g5.2xlarge", "ml.g5.4xlarge", "ml.g5.8xlarge", "ml.g5.12xlarge"),
        *("ml.g5.16xlarge", "ml.p4d.24xlarge", "ml.p4de.24xlarge", "ml.p5.4xlarge", "ml.trn1.32xlarge"),
    ]

    def add(values: dict[str, Any]) -> None:
        values["hyperpod"]["instance_groups"] += [
            {"name": f"auto{i}", "instance_type": types[i], "count": 0, "autoscale_max_count": 1}
            for i in range(count)
        ]

    return add


CASES = [
    (
        lambda v: _workers(v).update(deep_health_checks=["InstanceStress"]),
        "hyperpod.instance_groups[1]: deep_health_checks ['InstanceStress'] on autoscaled instance group "
        "'workers' (autoscale_max_count=4): HyperPod autoscaling does not support them",
    ),
    (
        lambda v: _workers(v).update(
            training_plan_arn="arn:aws:sagemaker:us-west-2:123456789012:training-plan/p"
        ),
        "hyperpod.instance_groups[1]: training_plan_arn on autoscaled instance group 'workers' "
        "(autoscale_max_count=4): HyperPod autoscaling supports on-demand capacity only",
    ),
    (
        lambda v: _workers(v).update(count=2),
        "hyperpod.instance_groups[1]: count=2 on autoscaled instance group 'workers' "
        "(autoscale_max_count=4): HyperPod's Karpenter scales an autoscaled group from 0",
    ),
    (_extra_groups(10), "hyperpod: 11 autoscaled instance groups"),
    (
        lambda v: v["ray"]["worker_groups"][0].update(replicas=4, min_replicas=4),
        "ray.worker_groups[0] on autoscaled instance group 'workers' is fixed-size (replicas=4, "
        "min_replicas=4, max_replicas=4)",
    ),
    (
        lambda v: v["ray"]["autoscaling"].update(enabled=False),
        "ray.worker_groups[0] runs on autoscaled instance group 'workers' but ray.autoscaling.enabled is "
        "false",
    ),
    (
        lambda v: v["ray"]["worker_groups"][0].update(max_replicas=5),
        "ray.worker_groups[0].max_replicas=5 exceeds the 4 nodes of instance group 'workers'",
    ),
    (
        lambda v: v["hyperpod"].update(node_provisioning_mode=None),
        "hyperpod: node_provisioning_mode=None with autoscaled groups ['workers']: HyperPod autoscaling "
        "needs Continuous provisioning",
    ),
    (
        lambda v: v["hyperpod"].update(node_recovery="None"),
        "hyperpod: node_recovery=None with autoscaled groups ['workers']: HyperPod autoscaling needs "
        "Automatic node recovery",
    ),
    (
        lambda v: v["hyperpod"]["instance_groups"][0].update(instance_type="ml.p5.48xlarge"),
        "share instance types ['ml.p5.48xlarge'] with another group",
    ),
    (
        lambda v: v["hyperpod"]["instance_groups"][0].update(count=0, autoscale_max_count=1),
        # The head's own rule speaks first: a group at 0 nodes can never hold it.
        "ray.head.instance_group 'head' has count 0: the Ray head needs one node of it",
    ),
]


@pytest.mark.parametrize(("mutate", "expected"), CASES)
def test_what_the_docs_rule_out_is_one_clear_line(mutate: Callable[[dict], None], expected: str) -> None:
    values = copy.deepcopy(EXAMPLE)
    mutate(values)
    with pytest.raises(ConfigError) as caught:
        load_config({}, values)
    lines = str(caught.value).splitlines()
    matching = [line for line in lines if expected in line]
    assert len(matching) == 1, lines


def test_the_example_turns_it_on_and_the_default_leaves_it_off() -> None:
    assert [g.name for g in load_config({}, EXAMPLE).hyperpod.autoscaled_groups] == ["workers"]
    assert load_config({}).hyperpod.autoscaled_groups == ()
