"""The GCS store: ElastiCache in the private subnets, TLS, encryption, an AUTH token CloudFormation never
holds in plain text, reachable only from the nodes, and its password copied into Kubernetes by our handler."""

import json

import pytest

from config import load_config
from stacks.components.k8s_secret import VPC_ENI_ACTIONS
from tests.stacks.test_teardown_order import Graph, manifest_of, of_type
from tests.support.apps import synth_app


def resources(template: dict, kind: str) -> dict[str, dict]:
    return {rid: r for rid, r in template["Resources"].items() if r["Type"] == kind}


def one(template: dict, kind: str) -> dict:
    found = resources(template, kind)
    assert len(found) == 1, found
    return next(iter(found.values()))


@pytest.fixture(scope="module")
def store(templates) -> dict:
    return templates["GcsStore"]


def test_replication_group_is_encrypted_authenticated_and_multi_az(store):
    props = one(store, "AWS::ElastiCache::ReplicationGroup")["Properties"]
    assert props["Engine"] == "valkey" and props["EngineVersion"] == "7.2"
    assert props["TransitEncryptionEnabled"] is True
    assert props["AtRestEncryptionEnabled"] is True
    assert "Fn::GetAtt" in props["KmsKeyId"]
    assert props["NumCacheClusters"] == 2 and props["MultiAZEnabled"] and props["AutomaticFailoverEnabled"]
    # The token is a dynamic reference to the generated secret: resolved by CloudFormation for ElastiCache.
    token = json.dumps(props["AuthToken"])
    assert "{{resolve:secretsmanager:" in token
    secret_id = next(iter(resources(store, "AWS::SecretsManager::Secret")))
    assert secret_id in token


def test_the_token_is_generated_and_never_in_any_template(templates, store):
    secret = one(store, "AWS::SecretsManager::Secret")["Properties"]
    assert "SecretString" not in secret
    generate = secret["GenerateSecretString"]
    # ElastiCache accepts 16-128 printable characters with only !&#$^<>- as punctuation: none are generated.
    assert 16 <= generate["PasswordLength"] <= 128 and generate["ExcludePunctuation"] is True
    for name, template in templates.items():
        if name != "GcsStore":
            assert "resolve:secretsmanager" not in json.dumps(template), name


def test_store_sits_in_the_private_subnets(templates, store):
    subnets = one(store, "AWS::ElastiCache::SubnetGroup")["Properties"]["SubnetIds"]
    network = templates["Network"]
    private = {
        rid
        for rid, r in resources(network, "AWS::EC2::Subnet").items()
        if {"Key": "aws-cdk:subnet-type", "Value": "Private"} in r["Properties"]["Tags"]
    }
    referenced = {ref for ref in private if ref in json.dumps(subnets)}
    assert referenced == private and len(private) == 2


def test_only_the_node_security_group_reaches_the_store_port(templates, store):
    group = one(store, "AWS::EC2::SecurityGroup")["Properties"]
    # Inline rules and separate ingress resources (CDK makes one for a group in another stack).
    ingress = group.get("SecurityGroupIngress", []) + [
        r["Properties"] for r in resources(store, "AWS::EC2::SecurityGroupIngress").values()
    ]
    assert len(ingress) == 1
    rule = ingress[0]
    assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 6380, 6380)
    node_group = next(iter(resources(templates["Network"], "AWS::EC2::SecurityGroup")))
    assert node_group in json.dumps(rule["SourceSecurityGroupId"])
    assert "CidrIp" not in rule
    # No outbound: the store answers connections, it never opens any.
    assert group["SecurityGroupEgress"][0]["CidrIp"] == "255.255.255.255/32"
    props = one(store, "AWS::ElastiCache::ReplicationGroup")["Properties"]
    assert props["Port"] == 6380


def test_the_secret_reaches_kubernetes_by_arn_only(templates):
    ray = templates["Ray"]
    props = one(ray, "Custom::KubernetesSecretFromSecretsManager")["Properties"]
    assert set(props) == {"ServiceToken", "ClusterName", "SecretArn", "Namespace", "Name", "Key"}
    assert (props["Namespace"], props["Name"], props["Key"]) == ("ray", "ray-cluster-gcs-store", "password")
    # The handler's role reads this one secret, describes this one cluster, and manages its VPC interfaces.
    policies = [
        s
        for r in resources(ray, "AWS::IAM::Policy").values()
        for s in r["Properties"]["PolicyDocument"]["Statement"]
        if "secretsmanager:GetSecretValue" in json.dumps(s)
    ]
    assert len(policies) == 1 and "*" not in json.dumps(policies[0]["Resource"]).replace("-*", "")
    entry = one(ray, "AWS::EKS::AccessEntry")["Properties"]
    # No EKS access policy (AmazonEKSEditPolicy would give every object in the namespace): a group whose
    # RBAC Role is checked below.
    assert "AccessPolicies" not in entry
    assert entry["KubernetesGroups"] == ["ray-cluster-gcs-store-secret-writer"]
    statements = [
        s
        for r in resources(ray, "AWS::IAM::Policy").values()
        for s in r["Properties"]["PolicyDocument"]["Statement"]
    ]
    assert any(set(s["Action"]) == set(VPC_ENI_ACTIONS) and s["Resource"] == "*" for s in statements)


def test_the_handler_runs_in_the_private_subnets(templates):
    ray = templates["Ray"]
    functions = [
        r
        for r in resources(ray, "AWS::Lambda::Function").values()
        if r["Properties"].get("Handler") == "index.on_event"
    ]
    assert len(functions) == 1
    assert functions[0]["Properties"]["VpcConfig"]["SubnetIds"]


def test_teardown_removes_the_cluster_then_its_secret_and_service_then_the_store(assembly):
    graph = Graph(assembly)
    cluster = graph.find(manifest_of("RayCluster"))
    for later in (
        of_type("Custom::KubernetesSecretFromSecretsManager"),
        manifest_of("Service"),
        of_type("AWS::ElastiCache::ReplicationGroup"),
        of_type("AWS::SecretsManager::Secret"),
    ):
        node = graph.find(later)
        assert node in graph.depends_on(cluster), f"{cluster} must be deleted before {node}"
        assert cluster not in graph.depends_on(node)
    # The store needs only the network: created while EKS and HyperPod come up.
    store = graph.find(of_type("AWS::ElastiCache::ReplicationGroup"))
    assert {stack for stack, _ in graph.depends_on(store)} == {"Network", "GcsStore"}
    ray = graph.templates["Ray"]["Resources"]
    namespace = ("Ray", next(rid for rid, r in ray.items() if manifest_of("Namespace")(r)))
    assert namespace in graph.depends_on(graph.find(of_type("Custom::KubernetesSecretFromSecretsManager")))


@pytest.mark.parametrize(
    ("overrides", "stores"),
    [
        ({"gcs_fault_tolerance.store": "in_cluster"}, 0),
        ({"gcs_fault_tolerance.enabled": "false"}, None),
        ({"gcs_fault_tolerance.replicas": "0", "env.account": "123456789012", "env.region": "us-west-2"}, 1),
    ],
    ids=["in_cluster", "disabled", "no_replica_with_env"],
)
def test_other_modes_synthesize_with_cdk_nag(tmp_path, overrides, stores):
    _, assembly = synth_app(load_config(overrides), tmp_path)
    templates = {stack.id: stack.template for stack in assembly.stacks}
    if stores is None:
        assert "GcsStore" not in templates
        assert "gcsFaultToleranceOptions" not in json.dumps(templates["Ray"])
        return
    assert len(resources(templates["GcsStore"], "AWS::ElastiCache::ReplicationGroup")) == stores
    assert resources(templates["Ray"], "Custom::KubernetesSecretFromSecretsManager")


def _rbac_allows(rules: list[dict], verb: str, resource: str, name: str | None) -> bool:
    """Kubernetes RBAC's rule match for a core-group resource (no wildcards are used here)."""
    return any(
        "" in rule["apiGroups"]
        and resource in rule["resources"]
        and verb in rule["verbs"]
        and ("resourceNames" not in rule or name in rule["resourceNames"])
        for rule in rules
    )


def test_the_secret_writer_may_write_only_its_secret_and_its_own_logs(templates):
    ray = templates["Ray"]
    (objects,) = [
        json.loads(r["Properties"]["Manifest"])
        for r in resources(ray, "Custom::AWSCDK-EKS-KubernetesResource").values()
        if "secret-writer" in json.dumps(r["Properties"]["Manifest"])
    ]
    (role,) = [o for o in objects if o["kind"] == "Role"]
    (binding,) = [o for o in objects if o["kind"] == "RoleBinding"]
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == "ray"
    assert binding["subjects"] == [
        {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Group",
            "name": "ray-cluster-gcs-store-secret-writer",
        }
    ]
    rules, own = role["rules"], "ray-cluster-gcs-store"
    # What lambda/k8s_secret does: POST the collection, PUT or DELETE its Secret.
    for verb in ("create", "update", "delete"):
        assert _rbac_allows(rules, verb, "secrets", own if verb != "create" else None), verb
    for verb, resource, name in (
        ("get", "secrets", "other"),
        ("update", "secrets", "other"),
        ("delete", "secrets", "other"),
        ("list", "secrets", None),
        ("get", "pods", own),
        ("create", "pods", None),
    ):
        assert not _rbac_allows(rules, verb, resource, name), (verb, resource, name)
    writes_logs = [
        s
        for r in resources(ray, "AWS::IAM::Policy").values()
        for s in r["Properties"]["PolicyDocument"]["Statement"]
        if "logs:PutLogEvents" in s["Action"] and "GcsStoreSecretLogs" in json.dumps(s["Resource"])
    ]
    assert writes_logs
