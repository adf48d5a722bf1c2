"""NetworkPolicy semantics (https://kubernetes.io/docs/concepts/services-networking/network-policies/), both
directions: a connection opens only if the source pod's egress policies and the target pod's ingress
policies both allow it. A pod no policy of a direction selects is open in that direction; within one
direction the selecting policies' rules add up. Endpoints are (namespace, pod labels, IP address); an
endpoint outside the cluster (an AWS service, the managed scraper) has namespace None."""

from ipaddress import ip_address, ip_network
from typing import Any, NamedTuple


class Endpoint(NamedTuple):
    namespace: str | None  # None: not a pod (an address only)
    labels: dict[str, str]
    ip: str


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    expressions = selector.get("matchExpressions", [])
    assert not expressions, "matchExpressions are not evaluated here"
    return all(labels.get(key) == value for key, value in selector.get("matchLabels", {}).items())


def _peer_admits(peer: dict[str, Any], policy_ns: str, other: Endpoint) -> bool:
    """podSelector alone means the policy's namespace; ipBlock matches the address only (pods included,
    as with the VPC CNI, where pods have VPC addresses)."""
    if "ipBlock" in peer:
        block = peer["ipBlock"]
        address = ip_address(other.ip)
        excluded = any(address in ip_network(cidr) for cidr in block.get("except", []))
        return address in ip_network(block["cidr"]) and not excluded
    if other.namespace is None:
        return False
    if "namespaceSelector" in peer:
        if not _matches(peer["namespaceSelector"], {"kubernetes.io/metadata.name": other.namespace}):
            return False
    elif other.namespace != policy_ns:
        return False
    return _matches(peer.get("podSelector", {}), other.labels)


def _direction_allows(
    policies: list[dict[str, Any]], pod: Endpoint, other: Endpoint, port: int, protocol: str, *, kind: str
) -> bool:
    field, peers_key = ("ingress", "from") if kind == "Ingress" else ("egress", "to")
    if pod.namespace is None:
        return True  # outside the cluster: no NetworkPolicy applies
    selecting = [
        p
        for p in policies
        if p["metadata"]["namespace"] == pod.namespace
        and kind in p["spec"].get("policyTypes", ["Ingress"])
        and _matches(p["spec"]["podSelector"], pod.labels)
    ]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get(field, []):
            ports = [(p["port"], p.get("protocol", "TCP")) for p in rule.get("ports", [])]
            if ports and (port, protocol) not in ports:
                continue
            peers = rule.get(peers_key)
            if not peers or any(_peer_admits(peer, pod.namespace, other) for peer in peers):
                return True
    return False


def connects(
    policies: list[dict[str, Any]], source: Endpoint, target: Endpoint, port: int, protocol: str = "TCP"
) -> bool:
    """Whether `source` can open `port` on `target` under these policies."""
    return _direction_allows(policies, source, target, port, protocol, kind="Egress") and _direction_allows(
        policies, target, source, port, protocol, kind="Ingress"
    )
