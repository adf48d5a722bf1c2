"""The Ray GCS's external store: an ElastiCache for Valkey replication group only the Ray nodes reach.

Private subnets, TLS in transit, encryption at rest with the app's rotating key, and an AUTH token that
Secrets Manager generates: the template carries only a `{{resolve:secretsmanager:...}}` reference, which
CloudFormation resolves for ElastiCache without recording the value.
"""

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticache as elasticache
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from config.gcs import ELASTICACHE_PORT, GcsFaultToleranceConfig

from ..nag import acknowledge
from .keys import encryption_key

# ElastiCache AUTH tokens: 16-128 printable characters; of the punctuation only !&#$^<>- is allowed, so
# the generated token uses letters and digits only (64 of them: ~380 bits).
TOKEN_LENGTH = 64


class GcsStore(Construct):
    """`secret` (the store's password), and with `store: elasticache` the replication group: `endpoint`
    (the primary's name, stable across failovers). With `store: in_cluster` only the secret is made here
    (the store is a pod, k8s_charts/gcs.py)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: GcsFaultToleranceConfig,
        vpc: ec2.IVpc,
        node_security_group: ec2.ISecurityGroup,
    ) -> None:
        super().__init__(scope, construct_id)
        self.secret = secretsmanager.Secret(
            self,
            "AuthToken",
            description="AUTH token of the Ray GCS store (ElastiCache for Valkey)",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=TOKEN_LENGTH, exclude_punctuation=True, include_space=False
            ),
            # The token protects a store that `cdk destroy` deletes too: nothing is left to protect.
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        self.endpoint: str | None = None
        if config.elasticache:
            self._replication_group(config, vpc, node_security_group)
        acknowledge(
            self.secret,
            "AwsSolutions-SMG4",
            "Rotating an ElastiCache AUTH token takes ModifyReplicationGroup (ROTATE, then SET) and a "
            "restart of the Ray head to pick up the new Kubernetes Secret; doing that unattended would "
            "restart a training cluster, so rotation is an operator's step (docs/gcs-fault-tolerance.md).",
        )

    def _replication_group(
        self, config: GcsFaultToleranceConfig, vpc: ec2.IVpc, node_security_group: ec2.ISecurityGroup
    ) -> None:
        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=vpc,
            description="Ray GCS store: the Valkey port from the node security group only",
            allow_all_outbound=False,
        )
        # Ray pods take VPC addresses in the node security group (VPC CNI without security groups for pods).
        self.security_group.add_ingress_rule(
            node_security_group, ec2.Port.tcp(ELASTICACHE_PORT), "Ray head (GCS) to its store"
        )
        subnet_group = elasticache.CfnSubnetGroup(
            self,
            "Subnets",
            description="Private subnets of the Ray GCS store",
            subnet_ids=vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS).subnet_ids,
        )
        replicas = config.replicas
        self.replication_group = elasticache.CfnReplicationGroup(
            self,
            "ReplicationGroup",
            replication_group_description="Ray GCS fault tolerance",
            engine="valkey",
            engine_version=config.engine_version,
            cache_node_type=config.node_type,
            num_cache_clusters=1 + replicas,
            # A replica in another AZ takes over if the primary's node or AZ fails; the endpoint stays.
            automatic_failover_enabled=replicas > 0,
            multi_az_enabled=replicas > 0,
            port=ELASTICACHE_PORT,
            cache_subnet_group_name=subnet_group.ref,
            security_group_ids=[self.security_group.security_group_id],
            transit_encryption_enabled=True,
            at_rest_encryption_enabled=True,
            kms_key_id=encryption_key(self, "Key", "Ray GCS store at rest").key_arn,
            auth_token=self.secret.secret_value.unsafe_unwrap(),  # a dynamic reference, not the value
            auto_minor_version_upgrade=True,
        )
        self.replication_group.apply_removal_policy(cdk.RemovalPolicy.DESTROY)
        self.endpoint = self.replication_group.attr_primary_end_point_address
        if replicas == 0:
            acknowledge(
                self.replication_group,
                "AwsSolutions-AEC4",
                "gcs_fault_tolerance.replicas=0 was chosen for cost: the store has no standby in another AZ.",
            )
