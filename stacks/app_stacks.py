"""Compose every stack of the app from one AppConfig, wiring each stack's typed outputs into the next."""

from dataclasses import dataclass

import aws_cdk as cdk

from config import AppConfig

from .eks import EksStack
from .network import NetworkStack


@dataclass(frozen=True)
class AppStacks:
    network: NetworkStack
    eks: EksStack

    def all(self) -> list[cdk.Stack]:
        return [self.network, self.eks]


def build_stacks(app: cdk.App, config: AppConfig) -> AppStacks:
    """Every stack, named `<prefix>-<part>`, in the given environment (or environment-agnostic)."""
    env = cdk.Environment(account=config.env.account, region=config.env.region)

    def name(part: str) -> dict:
        return {"stack_name": f"{config.prefix}-{part}", "env": env}

    network = NetworkStack(app, "Network", config=config.network, **name("network"))
    eks = EksStack(app, "Eks", config=config.eks, network=network, **name("eks"))
    stacks = AppStacks(network=network, eks=eks)
    for stack in stacks.all():
        for key, value in config.tags.items():
            cdk.Tags.of(stack).add(key, value)
    return stacks
