"""Compose every stack of the app from one AppConfig, wiring each stack's typed outputs into the next.

Create order (and, reversed, destroy order):
    network -> storage (static FSx; in parallel with EKS)
    network -> eks -> platform (HyperPod dependency chart, CSI driver, KubeRay operator)
                   -> hyperpod (HyperPod cluster) -> ray (claim, RayCluster, RayJob)
    opt-in autoscaling: hyperpod -> karpenter (HyperpodNodeClass, NodePools) -> ray
"""

import dataclasses
from dataclasses import dataclass

import aws_cdk as cdk

from config import AppConfig

from .eks import ClusterAccess, EksStack
from .gcs_store import GcsStoreStack
from .hyperpod import HyperPodStack
from .karpenter import KarpenterStack
from .network import NetworkStack
from .observability import ObservabilityStack
from .platform import PlatformStack
from .ray import RayStack
from .retention import retention
from .storage import StorageStack


@dataclass(frozen=True)
class AppStacks:
    network: NetworkStack
    storage: StorageStack | None
    eks: EksStack
    platform: PlatformStack
    hyperpod: HyperPodStack
    ray: RayStack
    observability: ObservabilityStack | None = None
    gcs_store: GcsStoreStack | None = None
    karpenter: KarpenterStack | None = None

    def all(self) -> list[cdk.Stack]:
        stacks = [self.network, self.storage, self.eks, self.platform, self.hyperpod, self.ray]
        stacks += [self.observability, self.gcs_store, self.karpenter]
        return [stack for stack in stacks if stack is not None]


def cluster_access_of(network: NetworkStack, eks: EksStack) -> ClusterAccess:
    """What stacks that run on the cluster need of the network and EKS stacks (here, where stacks meet)."""
    return ClusterAccess(
        cluster=eks.cluster,
        cluster_name=eks.cluster_name,
        private_subnets=network.private_subnets,
        node_security_group=network.node_security_group,
        compute_subnet=network.compute_subnet,
    )


def build_stacks(app: cdk.App, config: AppConfig) -> AppStacks:
    """Every stack, named `<prefix>-<part>`, in the given environment (or environment-agnostic)."""
    env = cdk.Environment(account=config.env.account, region=config.env.region)

    def name(part: str) -> dict:
        return {"stack_name": f"{config.prefix}-{part}", "env": env}

    # One retention for every log group of the app (config.log_retention_days).
    log_retention = retention(config.log_retention_days)
    network = NetworkStack(
        app, "Network", config=config.network, log_retention=log_retention, **name("network")
    )
    storage = None
    if config.storage.mode == "static":
        storage = StorageStack(
            app,
            "Storage",
            config=config.storage,
            vpc=network.vpc,
            compute_subnet=network.compute_subnet,
            node_security_group=network.node_security_group,
            **name("storage"),
        )
    eks = EksStack(
        app,
        "Eks",
        config=config.eks,
        vpc=network.vpc,
        private_subnets=network.private_subnets,
        node_security_group=network.node_security_group,
        cluster_name=f"{config.prefix}-eks",
        log_retention=log_retention,
        **name("eks"),
    )
    cluster_access = cluster_access_of(network, eks)
    platform = PlatformStack(app, "Platform", config=config, cluster=eks.cluster, **name("platform"))
    hyperpod = HyperPodStack(
        app, "HyperPod", config=config, cluster_access=cluster_access, **name("hyperpod")
    )
    # HyperPod requires its dependency chart before the cluster is created; the chart stays until the
    # cluster is gone.
    hyperpod.add_stack_dependency(platform)
    gcs = config.gcs_fault_tolerance
    gcs_store = None
    if gcs.enabled:
        gcs_store = GcsStoreStack(
            app,
            "GcsStore",
            config=config,
            vpc=network.vpc,
            node_security_group=network.node_security_group,
            **name("gcs-store"),
        )
    ray = RayStack(
        app,
        "Ray",
        config=config,
        cluster_access=cluster_access,
        file_system=storage.static_file_system if storage else None,
        gcs_store=gcs_store.store if gcs_store else None,
        **name("ray"),
    )
    if gcs_store:
        # The RayCluster and KubeRay's Redis cleanup job are gone before the store they use.
        ray.add_stack_dependency(gcs_store)
    # RayCluster needs the operator's CRDs and the claim needs the CSI driver; on destroy, every RayCluster
    # and PVC is gone before the operator and driver that handle their deletion.
    ray.add_stack_dependency(platform)
    # Ray pods run on HyperPod nodes: they are stopped (and /fsx unmounted) before the nodes go.
    ray.add_stack_dependency(hyperpod)
    karpenter = _karpenter(
        app, config=config, cluster_access=cluster_access, hyperpod=hyperpod, ray=ray, names=name("karpenter")
    )
    stacks = AppStacks(
        network=network, storage=storage, eks=eks, platform=platform, hyperpod=hyperpod, ray=ray,
        gcs_store=gcs_store, karpenter=karpenter,
    )  # fmt: skip
    if config.observability.enabled:
        # Needs only EKS: deploys while HyperPod provisions nodes; destroyed before the cluster it watches.
        stacks = dataclasses.replace(
            stacks,
            observability=ObservabilityStack(
                app, "Observability", config=config, cluster_access=cluster_access, **name("observability")
            ),
        )
    for stack in stacks.all():
        for key, value in config.tags.items():
            cdk.Tags.of(stack).add(key, value)
    return stacks


def _karpenter(
    app: cdk.App,
    *,
    config: AppConfig,
    cluster_access: ClusterAccess,
    hyperpod: HyperPodStack,
    ray: RayStack,
    names: dict,
) -> KarpenterStack | None:
    """The NodeClass and NodePools of opt-in autoscaling, or None when no group is autoscaled."""
    if not config.hyperpod.autoscaled_groups:
        return None
    karpenter = KarpenterStack(app, "Karpenter", config=config, cluster_access=cluster_access, **names)
    # Created once the cluster's autoscaling is InService (the HyperPod handler waits for it: the controller
    # and its CRDs come with it); deleted before the cluster, so Karpenter removes its nodes first.
    karpenter.add_stack_dependency(hyperpod)
    # Ray's worker pods are what ask for nodes: on destroy they are gone before the NodePools, so no new node
    # starts for a pod being deleted; on create the NodePools exist before the first pending worker.
    ray.add_stack_dependency(karpenter)
    return karpenter
