"""FSx, the cluster software and the Ray objects as deployed: properties, schemas and teardown order."""

import json
from pathlib import Path

import pytest
from aws_cdk.assertions import Match, Template

from config import load_config
from config.capacity import cpu_millis, memory_mib, node_allocatable, ray_pod_capacity
from stacks.components.hyperpod_cluster import PROPERTY as HYPERPOD_PROPERTY
from stacks.components.hyperpod_cluster import RESOURCE_TYPE as HYPERPOD_RESOURCE
from tests.support.apps import synth_app
from tests.support.k8s_validation import default_crd_dir, validate_k8s_objects


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
    values = json.loads(_joined(driver["Properties"]["Values"]))
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
    objects = _all_k8s_objects(stacks)
    text = json.dumps(objects)
    assert "LoadBalancer" not in text and "NodePort" not in text
    # The one Service of the app's own is the GCS store's DNS alias (ExternalName): it points out of the
    # cluster and exposes nothing in it.
    exposing = [o for o in objects if o["kind"] in ("Ingress", "Gateway", "Service")]
    assert [(o["kind"], o["spec"].get("type")) for o in exposing] == [("Service", "ExternalName")]
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
    assert "jobs/supervisor.py" in files  # the supervisor Job runs it from the image
    # CDK keeps the .dockerignore in the staged context; everything else is the Dockerfile, the job and
    # its supervisor.
    outside = [f for f in files if f not in {".dockerignore", "docker/ray/Dockerfile", "jobs/supervisor.py"}]
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


# --- every Ray pod fits the node it selects, computed from the synthesized templates ------------------


def _manifest_objects(template: dict) -> list[dict]:
    """The Kubernetes objects of every KubernetesManifest in a template. The manifest is JSON, joined
    with CloudFormation tokens (the image URI): each token becomes a placeholder string."""
    objects = []
    for resource in template["Resources"].values():
        if resource["Type"] != "Custom::AWSCDK-EKS-KubernetesResource":
            continue
        objects += json.loads(_joined(resource["Properties"]["Manifest"]))
    return objects


def _joined(value: str | dict) -> str:
    """A JSON property that may be an Fn::Join with CloudFormation tokens: each token becomes TOKEN."""
    if isinstance(value, str):
        return value
    return "".join(part if isinstance(part, str) else "TOKEN" for part in value["Fn::Join"][1])


def _hyperpod_groups(template: dict) -> list[dict]:
    (cluster,) = [r for r in template["Resources"].values() if r["Type"] == HYPERPOD_RESOURCE]
    return cluster["Properties"][HYPERPOD_PROPERTY]["InstanceGroups"]


def _selected_group(groups: list[dict], selector: dict) -> dict:
    """The instance group whose nodes carry every label of the pod's nodeSelector."""
    matching = [
        g
        for g in groups
        if selector.get("sagemaker.amazonaws.com/instance-group-name") == g["InstanceGroupName"]
        and selector.get("node.kubernetes.io/instance-type") == g["InstanceType"]
    ]
    assert len(matching) == 1, (selector, groups)
    return matching[0]


def ray_pods_and_nodes(templates: dict) -> list[tuple[str, dict, dict, int]]:
    """(group name, requests, selected HyperPod group, pods at most) for the head and each worker group."""
    (cluster,) = [o for o in _manifest_objects(templates["Ray"]) if o["kind"] == "RayCluster"]
    groups = _hyperpod_groups(templates["HyperPod"])
    head = cluster["spec"]["headGroupSpec"]
    pods = [("head", head["template"]["spec"], 1)]
    pods += [
        (w["groupName"], w["template"]["spec"], w["maxReplicas"]) for w in cluster["spec"]["workerGroupSpecs"]
    ]
    result = []
    for name, pod, count in pods:
        (container,) = pod["containers"]
        assert container["resources"]["requests"] == container["resources"]["limits"]  # Guaranteed
        result.append(
            (name, container["resources"]["requests"], _selected_group(groups, pod["nodeSelector"]), count)
        )
    return result


def assert_every_ray_pod_fits(templates: dict) -> list[str]:
    report = []
    used: set[str] = set()
    for name, requests, group, count in ray_pods_and_nodes(templates):
        # One Ray pod per node: no two Ray groups on one instance group, no more pods than nodes.
        assert group["InstanceGroupName"] not in used
        used.add(group["InstanceGroupName"])
        assert count <= group["InstanceCount"]
        node = node_allocatable(group["InstanceType"], group["ThreadsPerCore"])
        room = ray_pod_capacity(group["InstanceType"], group["ThreadsPerCore"])
        cpu, memory = cpu_millis(str(requests["cpu"])), memory_mib(str(requests["memory"]))
        assert cpu <= room.cpu_millis < node.cpu_millis, (name, cpu, room)
        assert memory <= room.memory_mib < node.memory_mib, (name, memory, room)
        assert requests.get("nvidia.com/gpu", 0) <= node.gpus
        assert requests.get("vpc.amazonaws.com/efa", 0) <= node.efa
        report.append(
            f"{name} on {group['InstanceType']} (ThreadsPerCore {group['ThreadsPerCore']}): "
            f"allocatable {node.cpu_millis}m/{node.memory_mib}Mi, "
            f"for Ray {room.cpu_millis}m/{room.memory_mib}Mi, "
            f"requested {cpu}m/{memory:.0f}Mi, GPUs {requests.get('nvidia.com/gpu', 0)}/{node.gpus}, "
            f"EFA {requests.get('vpc.amazonaws.com/efa', 0)}/{node.efa}"
        )
    return report


def test_every_ray_pod_of_the_default_app_fits_its_node(templates):
    report = assert_every_ray_pod_fits(templates)
    assert len(report) == 2
    print("\n".join(report))


@pytest.fixture(scope="module")
def g5_app(tmp_path_factory):
    config = load_config(
        {
            "hyperpod.instance_groups": json.dumps(
                [
                    {"name": "head", "instance_type": "ml.m5.2xlarge", "count": 1},
                    {"name": "workers", "instance_type": "ml.g5.12xlarge", "count": 2},
                ]
            ),
            "ray.worker_groups": json.dumps([{"replicas": 2, "max_replicas": 2}]),
        }
    )
    return synth_app(config, tmp_path_factory.mktemp("g5"))


def test_every_ray_pod_of_two_g5_12xlarge_workers_fits_its_node(g5_app):
    _, assembly = g5_app
    templates = {stack.id: stack.template for stack in assembly.stacks}
    report = assert_every_ray_pod_fits(templates)
    print("\n".join(report))
    (worker,) = [r for r in ray_pods_and_nodes(templates) if r[0] == "gpu-workers"]
    assert worker[1]["nvidia.com/gpu"] == 4 and worker[1]["vpc.amazonaws.com/efa"] == 1


def test_the_fit_check_can_fail(templates):
    broken = json.loads(json.dumps(templates))
    (group,) = [g for g in _hyperpod_groups(broken["HyperPod"]) if g["InstanceGroupName"] == "workers"]
    group["InstanceType"] = "ml.g5.12xlarge"  # the manifests still ask for a p5's resources
    with pytest.raises(AssertionError):
        assert_every_ray_pod_fits(broken)


def test_ray_auth_secret_is_an_output(templates, default_app):
    stacks, _ = default_app
    outputs = Template.from_json(templates["Ray"]).find_outputs("*")
    assert outputs["RayAuthSecret"]["Value"] == stacks.ray.auth_secret_name == "ray-cluster"
    assert "get secret ray-cluster -o jsonpath='{.data.auth_token}'" in outputs["JobSubmitCommand"]["Value"]


def test_network_policies_are_applied_before_the_ray_cluster(templates):
    ray = templates["Ray"]["Resources"]
    (cluster_id,) = [k for k in ray if k.startswith("RayClusterManifest")]
    (policy_id,) = [k for k in ray if k.startswith("NetworkPolicyManifest")]
    assert policy_id in ray[cluster_id]["DependsOn"]
    policies = json.loads(_joined(ray[policy_id]["Properties"]["Manifest"]))
    assert [o["kind"] for o in policies] == ["NetworkPolicy"] * 5
    # The managed scraper's rule names the VPC's own range, from the network stack (a token at synth).
    (metrics,) = [o for o in policies if o["metadata"]["name"].endswith("-metrics")]
    assert metrics["spec"]["ingress"][0]["from"] == [{"ipBlock": {"cidr": "TOKEN"}}]
    # The Ray pods' egress leaves out the same range, and IMDS.
    (egress,) = [o for o in policies if o["metadata"]["name"].endswith("-ray-egress")]
    assert egress["spec"]["egress"][2]["to"] == [
        {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["TOKEN", "169.254.169.254/32"]}}
    ]


def test_vpc_cni_enforces_network_policies(templates):
    Template.from_json(templates["Eks"]).has_resource_properties(
        "AWS::EKS::Addon",
        {"AddonName": "vpc-cni", "ConfigurationValues": '{"enableNetworkPolicy":"true"}'},
    )


def test_csi_controller_region_is_explicit(templates):
    platform = Template.from_json(templates["Platform"])
    (driver,) = platform.find_resources(
        "Custom::AWSCDK-EKS-HelmChart", {"Properties": {"Chart": "aws-fsx-csi-driver"}}
    ).values()
    values = driver["Properties"]["Values"]
    assert json.loads(_joined(values))["controller"]["region"] == "TOKEN"
    assert {"Ref": "AWS::Region"} in values["Fn::Join"][1]


def test_the_supervisor_job_is_an_output_and_fits_beside_the_head(dynamic_app):
    """ray.job.enabled with the default runner: the Ray stack names the Job for `ops status`, and the head
    and the supervisor together fit what one node of the head's group leaves for pods."""
    stacks, assembly = dynamic_app
    templates = {stack.id: stack.template for stack in assembly.stacks}
    outputs = Template.from_json(templates["Ray"]).find_outputs("*")
    objects = _manifest_objects(templates["Ray"])
    (job,) = [o for o in objects if o["kind"] == "Job"]
    assert outputs["SupervisorJob"]["Value"] == stacks.ray.supervisor_job_name == job["metadata"]["name"]
    (head,) = [r for r in ray_pods_and_nodes(templates) if r[0] == "head"]
    _, requests, group, _ = head
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert (
        job["spec"]["template"]["spec"]["nodeSelector"]["sagemaker.amazonaws.com/instance-group-name"]
        == (group["InstanceGroupName"])
    )
    room = ray_pod_capacity(group["InstanceType"], group["ThreadsPerCore"])
    supervisor = container["resources"]["requests"]
    assert cpu_millis(str(requests["cpu"])) + cpu_millis(supervisor["cpu"]) <= room.cpu_millis
    assert memory_mib(str(requests["memory"])) + memory_mib(supervisor["memory"]) <= room.memory_mib
    assert container["image"] == "TOKEN"  # the Ray image, built at deploy like the RayCluster's


def test_without_the_job_there_is_no_supervisor(templates, default_app):
    stacks, _ = default_app
    assert stacks.ray.supervisor_job_name is None
    assert "SupervisorJob" not in Template.from_json(templates["Ray"]).find_outputs("*")
