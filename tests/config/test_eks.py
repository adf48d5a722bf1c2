"""EKS add-on versions follow the cluster version; access is explicit and a public endpoint stays narrow."""

import json

import pytest

from config import ConfigError, load_config
from config.eks import ADDON_VERSIONS, SUPPORTED_EKS_VERSIONS


def problems(context: dict) -> list[str]:
    with pytest.raises(ConfigError) as error:
        load_config(context)
    return error.value.problems


def public(*cidrs: str, **extra: str) -> dict:
    return {
        "eks.endpoint_access": "public_and_private",
        "eks.public_access_cidrs": json.dumps(cidrs),
        **extra,
    }


def test_every_supported_version_has_a_table_row_whose_kube_proxy_is_that_minor() -> None:
    assert set(ADDON_VERSIONS) == set(SUPPORTED_EKS_VERSIONS)
    for version, row in ADDON_VERSIONS.items():
        assert row["kube-proxy"].startswith(f"v{version}."), (version, row)
        # Every supported version loads with its own row and nothing else.
        assert load_config({"eks.version": version}).eks.addon_versions == row


def test_changing_the_cluster_version_changes_its_add_ons() -> None:
    older = load_config({"eks.version": "1.32"}).eks.addon_versions
    newer = load_config({}).eks.addon_versions
    assert (older["kube-proxy"], newer["kube-proxy"]) == ("v1.32.9-eksbuild.2", "v1.33.5-eksbuild.2")
    assert (older["coredns"], newer["coredns"]) == ("v1.11.4-eksbuild.24", "v1.12.4-eksbuild.1")


def test_a_pin_overrides_one_add_on_and_keeps_the_rest_of_the_row() -> None:
    config = load_config({"eks.version": "1.32", "eks.addon_versions": '{"coredns": "v1.11.3-eksbuild.1"}'})
    assert config.eks.addon_versions == {**ADDON_VERSIONS["1.32"], "coredns": "v1.11.3-eksbuild.1"}


def test_a_pin_from_another_minor_is_one_error_whose_advice_works() -> None:
    wrong = {"eks.version": "1.32", "eks.addon_versions": '{"kube-proxy": "v1.33.5-eksbuild.2"}'}
    (problem,) = problems(wrong)
    assert problem == (
        "eks: addon_versions.kube-proxy = 'v1.33.5-eksbuild.2' does not match eks.version 1.32: "
        "kube-proxy must have the cluster's minor version; remove the pin to get v1.32.9-eksbuild.2, "
        "or pin a v1.32.x build"
    )
    # Following either piece of advice loads.
    assert load_config({"eks.version": "1.32"}).eks.addon_versions["kube-proxy"] == "v1.32.9-eksbuild.2"
    pinned = load_config(
        {"eks.version": "1.32", "eks.addon_versions": '{"kube-proxy": "v1.32.6-eksbuild.8"}'}
    )
    assert pinned.eks.addon_versions["kube-proxy"] == "v1.32.6-eksbuild.8"


def test_the_whole_internet_needs_the_explicit_opt_in() -> None:
    (problem,) = problems(public("0.0.0.0/0"))
    assert problem.startswith(
        "eks: public_access_cidrs = '0.0.0.0/0' opens the API server to the whole internet"
    )
    # The internet in two halves is the same thing.
    assert len(problems(public("0.0.0.0/1", "128.0.0.0/1"))) == 2
    config = load_config(public("0.0.0.0/0", **{"eks.allow_public_endpoint_from_anywhere": "true"}))
    assert [str(cidr) for cidr in config.eks.public_access_cidrs] == ["0.0.0.0/0"]


@pytest.mark.parametrize(
    "cidr", ["10.0.0.0/16", "172.20.1.0/24", "192.168.1.7/32", "100.64.0.0/10", "127.0.0.1/32"]
)
def test_private_ranges_are_refused_for_a_public_endpoint(cidr: str) -> None:
    (problem,) = problems(public("198.51.100.0/24", cidr))
    assert problem.startswith(f"eks: public_access_cidrs = '{cidr}' is a private range")


def test_the_opt_in_does_not_admit_private_ranges() -> None:
    (problem,) = problems(
        public("0.0.0.0/0", "10.0.0.0/8", **{"eks.allow_public_endpoint_from_anywhere": "true"})
    )
    assert "'10.0.0.0/8' is a private range" in problem


def test_a_narrow_public_range_loads() -> None:
    config = load_config(public("203.0.113.7/32"))
    assert config.eks.endpoint_access == "public_and_private"


def test_private_endpoint_takes_no_cidrs() -> None:
    (problem,) = problems({"eks.public_access_cidrs": '["198.51.100.0/24"]'})
    assert problem == "eks: public_access_cidrs is only used with endpoint_access=public_and_private"
