"""FSx, the cluster software and the Ray objects as deployed: properties, schemas and teardown order."""

import json
from pathlib import Path

import pytest
from aws_cdk.assertions import Match, Template

from config import load_config
from tests.conftest import synth_app
from tests.k8s_validation import default_crd_dir, validate_k8s_objects


def test_static_file_system_is_persistent_2_in_the_compute_subnet(templates):
    storage = Template.from_json(templates["Storage"])
    storage.has_resource(
        "AWS::FSx::FileSystem",
        {
            "Properties": {
                "FileSystemType": "LUSTRE",
                "FileSystemTypeVersion": "2.15",
                "StorageCapacity": 1200,
                "LustreConfiguration": {
                    "DeploymentType": "PERSISTENT_2",
                    "PerUnitStorageThroughput": 250,
                    "DataCompressionType": "LZ4",
                },
                "SubnetIds": [Match.any_value()],
                "SecurityGroupIds": [Match.any_value()],
            },
            "DeletionPolicy": "Delete",
        },
    )


@pytest.mark.parametrize(
    ("chart", "version", "namespace"),
    [("kuberay-operator", "1.7.0", "kuberay"), ("aws-fsx-csi-driver", "1.17.0", "kube-system")],
)
def test_platform_pins_chart_versions_and_never_waits_for_nodes(templates, chart, version, namespace):
    platform = Template.from_json(templates["Platform"])
    platform.has_resource_properties(
        "Custom::AWSCDK-EKS-HelmChart",
        {"Chart": chart, "Version": version, "Namespace": namespace, "Wait": Match.absent()},
    )


def test_kuberay_namespace_is_a_manifest_not_created_by_helm(templates):
    platform = Template.from_json(templates["Platform"])
    (operator,) = platform.find_resources(
        "Custom::AWSCDK-EKS-HelmChart", {"Properties": {"Chart": "kuberay-operator"}}
    ).values()
    assert "CreateNamespace" not in operator["Properties"]
    (namespace_id,) = operator["DependsOn"]
    manifest = json.dumps(platform.find_resources("Custom::AWSCDK-EKS-KubernetesResource")[namespace_id])
    assert '\\"kind\\":\\"Namespace\\"' in manifest and "kuberay" in manifest


def test_csi_controller_runs_as_its_irsa_service_account(templates):
    platform = Template.from_json(templates["Platform"])
    (driver,) = platform.find_resources(
        "Custom::AWSCDK-EKS-HelmChart", {"Properties": {"Chart": "aws-fsx-csi-driver"}}
    ).values()
    values = json.loads(driver["Properties"]["Values"])
    assert values["controller"]["serviceAccount"] == {"create": False, "name": "fsx-csi-controller-sa"}
    # IRSA: the role trusts the cluster's OIDC provider for exactly this service account (the condition is
    # built by a CfnJson resource because its key contains the provider's URL).
    conditions = json.dumps(platform.find_resources("Custom::AWSCDKCfnJson"))
    assert ':sub\\":\\"system:serviceaccount:kube-system:fsx-csi-controller-sa' in conditions
    platform.has_resource_properties(
        "AWS::IAM::Role",
        {
            "AssumeRolePolicyDocument": {
                "Statement": [Match.object_like({"Action": "sts:AssumeRoleWithWebIdentity"})]
            }
        },
    )


def _actions(action: str | list[str]) -> list[str]:
    return [action] if isinstance(action, str) else action


def csi_statements(template: dict) -> list[dict]:
    """The statements of the CSI controller role's policies (the IRSA role of fsx-csi-controller-sa)."""
    resources = template["Resources"]
    (role_id,) = [
        name
        for name, res in resources.items()
        if res["Type"] == "AWS::IAM::Role" and name.startswith("FsxCsiControllerServiceAccountRole")
    ]
    return [
        statement
        for res in resources.values()
        if res["Type"] == "AWS::IAM::Policy" and {"Ref": role_id} in res["Properties"]["Roles"]
        for statement in res["Properties"]["PolicyDocument"]["Statement"]
    ]


def test_static_mode_grants_the_csi_controller_only_the_describe_it_polls(templates):
    assert csi_statements(templates["Platform"]) == [
        {"Action": "fsx:DescribeFileSystems", "Effect": "Allow", "Resource": "*"}
    ]


def test_dynamic_csi_role_acts_only_on_file_systems_carrying_the_deployment_tag(dynamic_app):
    stacks, _ = dynamic_app
    statements = csi_statements(Template.from_stack(stacks.platform).to_json())
    tag = "ray-on-hyperpod/deployment"
    by_actions = {json.dumps(sorted(_actions(s["Action"]))): s for s in statements}
    create = by_actions['["fsx:CreateFileSystem", "fsx:TagResource"]']
    assert create["Condition"] == {"StringEquals": {f"aws:RequestTag/{tag}": "ray-hyperpod"}}
    change = by_actions['["fsx:DeleteFileSystem", "fsx:UpdateFileSystem"]']
    assert change["Condition"] == {"StringEquals": {f"aws:ResourceTag/{tag}": "ray-hyperpod"}}
    # Every statement that may write is conditioned on the tag or names one exact role.
    unconditioned = [s for s in statements if "Condition" not in s]
    assert all(
        action.split(":")[1].startswith("Describe") for s in unconditioned for action in _actions(s["Action"])
    )
    (linked,) = [s for s in statements if s["Action"] == "iam:CreateServiceLinkedRole"]
    assert linked["Condition"] == {"StringEquals": {"iam:AWSServiceName": "fsx.amazonaws.com"}}
    assert json.dumps(linked["Resource"]).endswith(
        ':role/aws-service-role/fsx.amazonaws.com/AWSServiceRoleForAmazonFSx"]]}'
    )


@pytest.fixture(scope="module")
def dynamic_app(tmp_path_factory):
    config = load_config(
        {"storage.mode": "dynamic", "ray.job.enabled": "true", "ray.autoscaling.enabled": "true"}
    )
    return synth_app(config, tmp_path_factory.mktemp("dynamic"))


def test_dynamic_mode_has_no_file_system_stack_and_a_scoped_csi_role(dynamic_app):
    stacks, assembly = dynamic_app
    assert stacks.storage is None and "Storage" not in {stack.id for stack in assembly.stacks}
    policies = json.dumps(Template.from_stack(stacks.platform).find_resources("AWS::IAM::Policy"))
    assert "fsx:CreateFileSystem" in policies and "fsx:DeleteFileSystem" in policies


def _all_k8s_objects(stacks) -> list[dict]:
    return [
        obj
        for stack in stacks.all()
        if hasattr(stack, "deployer")
        for chart in stack.deployer.charts.values()
        for obj in chart.to_json()
    ]


@pytest.mark.parametrize("app_fixture", ["default_app", "dynamic_app"])
def test_every_applied_object_validates_against_its_schema(request, app_fixture):
    stacks, _ = request.getfixturevalue(app_fixture)
    objects = _all_k8s_objects(stacks)
    kinds = sorted({obj["kind"] for obj in objects})
    assert "RayCluster" in kinds and "PersistentVolumeClaim" in kinds, kinds
    assert validate_k8s_objects(
        objects, stacks.eks.node.try_get_context("eks.version") or "1.33", default_crd_dir()
    ) == len(objects)


def test_dashboard_is_never_exposed_outside_the_cluster(default_app):
    stacks, _ = default_app
    text = json.dumps(_all_k8s_objects(stacks))
    assert "LoadBalancer" not in text and "NodePort" not in text and "Ingress" not in text
    assert '"serviceType": "ClusterIP"' in text


def test_ray_outputs_name_the_head_service(templates):
    outputs = Template.from_json(templates["Ray"]).find_outputs("*")
    assert outputs["RayHeadService"]["Value"] == "ray-cluster-head-svc"
    assert outputs["RayNamespace"]["Value"] == "ray"
    assert "port-forward svc/ray-cluster-head-svc 8265:8265" in outputs["DashboardPortForward"]["Value"]


def test_ray_image_is_built_from_the_pinned_version_and_a_minimal_context(assembly, default_config):
    (ray_stack,) = [stack for stack in assembly.stacks if stack.id == "Ray"]
    manifest = json.loads(Path(assembly.directory, f"{ray_stack.id}.assets.json").read_text())
    (image,) = manifest["dockerImages"].values()
    assert image["source"]["dockerBuildArgs"]["RAY_VERSION"] == default_config.ray.ray_version
    context = Path(assembly.directory, image["source"]["directory"])
    files = sorted(str(p.relative_to(context)) for p in context.rglob("*") if p.is_file())
    assert "docker/ray/Dockerfile" in files and "jobs/fsdp_ray/train.py" in files
    # CDK keeps the .dockerignore in the staged context; everything else is the Dockerfile and the job.
    outside = [f for f in files if f not in {".dockerignore", "docker/ray/Dockerfile"}]
    assert all(f.startswith("jobs/fsdp_ray/") for f in outside), files
    assert not any("__pycache__" in f for f in files)


def test_ray_cluster_version_matches_the_image(default_app, default_config):
    stacks, _ = default_app
    (cluster,) = [o for o in _all_k8s_objects(stacks) if o["kind"] == "RayCluster"]
    assert cluster["spec"]["rayVersion"] == default_config.ray.ray_version
    dockerfile = (Path(__file__).resolve().parents[2] / "docker/ray/Dockerfile").read_text()
    assert "FROM rayproject/ray:${RAY_VERSION}-${PYTHON_TAG}-gpu" in dockerfile


def test_dynamic_file_systems_carry_the_deployment_tag_that_teardown_deletes_by(dynamic_app):
    stacks, _ = dynamic_app
    (storage_class,) = [o for o in _all_k8s_objects(stacks) if o["kind"] == "StorageClass"]
    assert storage_class["parameters"]["extraTags"] == "ray-on-hyperpod/deployment=ray-hyperpod"
    platform = Template.from_stack(stacks.platform)
    platform.has_resource_properties(
        "Custom::FsxCleanup", {"TagKey": "ray-on-hyperpod/deployment", "TagValue": "ray-hyperpod"}
    )
    # Only file systems with that tag can be deleted by the cleanup role.
    platform.has_resource_properties(
        "AWS::IAM::Policy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Action": "fsx:DeleteFileSystem",
                                "Condition": {
                                    "StringEquals": {
                                        "aws:ResourceTag/ray-on-hyperpod/deployment": "ray-hyperpod"
                                    }
                                },
                            }
                        )
                    ]
                )
            }
        },
    )


def test_static_mode_has_no_cleanup_resource(templates):
    Template.from_json(templates["Platform"]).resource_count_is("Custom::FsxCleanup", 0)
