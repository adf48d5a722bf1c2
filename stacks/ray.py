"""What users work with: the Ray namespace, the /fsx claim, the RayCluster and (optionally) the job that
trains on it: a supervisor Job or a RayJob."""

from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_eks_v2 as eks
from constructs import Construct

from config import AppConfig
from k8s_charts.namespace import NamespaceChart, namespace_pod_security
from k8s_charts.network_policy import RayNetworkPolicyChart
from k8s_charts.ray_cluster import RayClusterChart
from k8s_charts.ray_job import RayJobChart
from k8s_charts.ray_supervisor import RaySupervisorChart
from k8s_charts.storage import DynamicFileSystem, StaticFileSystem, StorageChart

from .components.gcs_store import GcsStore
from .eks import ClusterAccess
from .gcs_store import apply_store_objects
from .kubernetes import ChartDeployer

REPO = Path(__file__).resolve().parents[1]
# The image build sees only the Dockerfile and the job: a small, reproducible build context.
IMAGE_CONTEXT_EXCLUDES = [
    "*",
    "!docker/ray/Dockerfile",
    "!jobs/fsdp_ray",
    "!jobs/supervisor.py",
    "**/__pycache__",
    "**/*.pyc",
]


class RayStack(cdk.Stack):
    """The user's Ray: namespace, /fsx claim, NetworkPolicies, RayCluster, the optional job (its supervisor
    Job or a RayJob) and the Ray image.
    Last to deploy and first to go: every operator, driver, store and node it needs outlives it."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AppConfig,
        cluster_access: ClusterAccess,
        file_system: StaticFileSystem | None,
        gcs_store: GcsStore | None = None,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        cluster = cluster_access.cluster
        self.deployer = ChartDeployer(self, cluster)
        k8s = self.deployer.app
        namespace = self.deployer.apply(
            "NamespaceManifest",
            NamespaceChart(
                k8s,
                "ray-namespace",
                name=config.ray.namespace,
                enforce=namespace_pod_security(config)[config.ray.namespace],
            ),
        )
        claim = self.deployer.apply("ClaimManifest", self._storage_chart(config, cluster_access, file_system))
        # The claim lives in the namespace; on destroy it goes first (a namespace deletion would race it).
        claim.node.add_dependency(namespace)
        image, image_key = self._image(config)
        cluster_chart = RayClusterChart(k8s, "ray-cluster", config=config, image=image)
        ray_cluster = self.deployer.apply("RayClusterManifest", cluster_chart)
        # Created after its claim; deleted before it, so the PVC is not held by running pods
        # (kubernetes.io/pvc-protection would keep the PVC, and a dynamic file system, alive).
        ray_cluster.node.add_dependency(claim)
        policies = self.deployer.apply(
            "NetworkPolicyManifest",
            RayNetworkPolicyChart(
                k8s, "ray-network-policy", config=config, scraper_cidr=cluster.vpc.vpc_cidr_block
            ),
        )
        # In place before the first Ray pod listens; removed after the last one is gone.
        ray_cluster.node.add_dependency(policies)
        policies.node.add_dependency(namespace)
        self.auth_secret_name = cluster_chart.auth_secret_name
        for part in (
            apply_store_objects(self, self.deployer, config, cluster_access, gcs_store) if gcs_store else ()
        ):
            part.node.add_dependency(namespace)  # Service and Secret live in the namespace
            ray_cluster.node.add_dependency(part)  # KubeRay's Redis cleanup on delete needs both
        self.supervisor_job_name: str | None = None
        if config.runs_supervisor:
            chart = RaySupervisorChart(
                k8s, "ray-supervisor", config=config, cluster=cluster_chart, image=image, image_key=image_key
            )
            job = self.deployer.apply("RaySupervisorManifest", chart)
            # It submits to the cluster's head with the token of the Secret KubeRay creates for the cluster:
            # created after both; on destroy it stops before the cluster goes, so it never resubmits a run
            # to a head that is being deleted.
            job.node.add_dependency(ray_cluster)
            self.supervisor_job_name = chart.job_name
            cdk.CfnOutput(self, "SupervisorJob", value=chart.job_name)
        elif config.ray.job.enabled:
            job = self.deployer.apply("RayJobManifest", RayJobChart(k8s, "ray-job", config=config))
            # The job submits to the running cluster; on destroy it stops before the cluster goes.
            job.node.add_dependency(ray_cluster)
        self._outputs(config, cluster, cluster_chart)

    def _storage_chart(
        self, config: AppConfig, cluster_access: ClusterAccess, file_system: StaticFileSystem | None
    ) -> StorageChart:
        k8s = self.deployer.app
        if file_system is not None:
            return StorageChart(
                k8s,
                "fsx-storage",
                storage=config.storage,
                namespace=config.ray.namespace,
                static=file_system,
            )
        dynamic = DynamicFileSystem(
            subnet_id=cluster_access.compute_subnet.subnet_id,
            security_group_id=cluster_access.node_security_group.security_group_id,
            tags=(config.dynamic_fsx_tag,),
        )
        return StorageChart(
            k8s, "fsx-storage", storage=config.storage, namespace=config.ray.namespace, dynamic=dynamic
        )

    def _image(self, config: AppConfig) -> tuple[str, str]:
        """The image URI (a deploy-time token when built here), and a synth-time string that changes
        with it."""
        if config.ray.image_uri:
            return config.ray.image_uri, config.ray.image_uri
        asset = ecr_assets.DockerImageAsset(
            self,
            "RayImage",
            directory=str(REPO),
            file="docker/ray/Dockerfile",
            build_args={"RAY_VERSION": config.ray.ray_version, "PYTHON_TAG": config.ray.python_tag},
            platform=ecr_assets.Platform.LINUX_AMD64,
            exclude=IMAGE_CONTEXT_EXCLUDES,
            ignore_mode=cdk.IgnoreMode.DOCKER,
        )
        return asset.image_uri, asset.asset_hash

    def _outputs(self, config: AppConfig, cluster: eks.ICluster, chart: RayClusterChart) -> None:
        cdk.CfnOutput(self, "ClusterName", value=cluster.cluster_name)
        cdk.CfnOutput(self, "RayNamespace", value=config.ray.namespace)
        cdk.CfnOutput(self, "RayHeadService", value=chart.head_service_name)
        # Created by KubeRay (token authentication); key `auth_token`. Clients send it as a bearer token.
        cdk.CfnOutput(self, "RayAuthSecret", value=chart.auth_secret_name)
        cdk.CfnOutput(
            self,
            "DashboardPortForward",
            value=f"kubectl -n {config.ray.namespace} port-forward svc/{chart.head_service_name} 8265:8265",
        )
        cdk.CfnOutput(
            self,
            "JobSubmitCommand",
            value=f"RAY_AUTH_MODE=token RAY_AUTH_TOKEN=$(kubectl -n {config.ray.namespace} get secret "
            f"{chart.auth_secret_name} -o jsonpath='{{.data.auth_token}}' | base64 -d) "
            "ray job submit --address http://127.0.0.1:8265 --working-dir jobs/fsdp_ray -- "
            f"python3 train.py --storage-path {config.storage.mount_path}/ray_results",
        )
