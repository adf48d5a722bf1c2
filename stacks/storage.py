"""The shared FSx for Lustre file system, owned by CloudFormation so that `cdk destroy` deletes it."""

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_fsx as fsx
from constructs import Construct

from config import StorageConfig
from k8s_charts.storage import StaticFileSystem


class StorageStack(cdk.Stack):
    """PERSISTENT_2 Lustre in the compute subnet. It needs only the network, so with `--concurrency` it is
    created while EKS and HyperPod come up (FSx takes 10-15 minutes) instead of after them."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StorageConfig,
        vpc: ec2.IVpc,
        compute_subnet: ec2.ISubnet,
        node_security_group: ec2.ISecurityGroup,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.file_system = fsx.LustreFileSystem(
            self,
            "FileSystem",
            vpc=vpc,
            # The subnet HyperPod nodes use: Lustre traffic stays inside one AZ (no cross-AZ latency or cost).
            vpc_subnet=compute_subnet,
            # Immutable view: the group already admits Lustre traffic from itself (NetworkStack); a mutable
            # one would get a second, overlapping rule from this construct.
            security_group=ec2.SecurityGroup.from_security_group_id(
                self, "NodeSecurityGroup", node_security_group.security_group_id, mutable=False
            ),
            storage_capacity_gib=config.capacity_gib,
            file_system_type_version=fsx.FileSystemTypeVersion.V_2_15,
            lustre_configuration=fsx.LustreConfiguration(
                deployment_type=fsx.LustreDeploymentType.PERSISTENT_2,
                per_unit_storage_throughput=config.throughput_per_tib,
                data_compression_type=fsx.LustreDataCompressionType(config.data_compression),
            ),
            # Checkpoints live here: static mode deletes them with the stack (nothing is left behind).
            # Copy what you need to S3 before `cdk destroy`.
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        cdk.CfnOutput(self, "FileSystemId", value=self.file_system.file_system_id)

    @property
    def static_file_system(self) -> StaticFileSystem:
        """What the static PersistentVolume needs (CloudFormation tokens until deploy)."""
        return StaticFileSystem(
            file_system_id=self.file_system.file_system_id,
            dns_name=self.file_system.dns_name,
            mount_name=self.file_system.mount_name,
        )
