"""The namespace and the FSx volume: static (pre-bound PV) and dynamic (StorageClass) provisioning."""

import cdk8s
import pytest

from config import load_config
from k8s_charts import NamespaceChart, StorageChart
from tests.k8s.scenarios import DYNAMIC_FS, STATIC_FS, Synth


def test_namespace_is_its_own_object(synths: dict[str, Synth]) -> None:
    assert synths["defaults"].manifests["namespace"] == [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": "ray",
                "labels": {
                    "pod-security.kubernetes.io/enforce": "baseline",
                    "pod-security.kubernetes.io/warn": "restricted",
                    "pod-security.kubernetes.io/audit": "restricted",
                },
            },
        }
    ]


def test_namespace_chart_exposes_its_name() -> None:
    assert NamespaceChart(cdk8s.Testing.app(), "ns", name="training").namespace_name == "training"


def test_static_volume_points_at_the_file_system(synths: dict[str, Synth]) -> None:
    volume = synths["defaults"].one("PersistentVolume")["spec"]
    assert volume["csi"] == {
        "driver": "fsx.csi.aws.com",
        "volumeHandle": STATIC_FS.file_system_id,
        "volumeAttributes": {"dnsname": STATIC_FS.dns_name, "mountname": STATIC_FS.mount_name},
    }
    assert volume["capacity"] == {"storage": "1200Gi"}
    assert volume["accessModes"] == ["ReadWriteMany"]
    assert volume["persistentVolumeReclaimPolicy"] == "Retain"
    assert volume["mountOptions"] == ["flock"]
    assert volume["storageClassName"] == ""
    assert volume["claimRef"] == {"namespace": "ray", "name": "fsx-claim"}


def test_static_claim_binds_the_volume_by_name(synths: dict[str, Synth]) -> None:
    result = synths["defaults"]
    claim = result.one("PersistentVolumeClaim")
    assert claim["metadata"] == {"name": "fsx-claim", "namespace": "ray"}
    assert claim["spec"]["volumeName"] == result.one("PersistentVolume")["metadata"]["name"]
    assert claim["spec"]["storageClassName"] == ""
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim["spec"]["resources"] == {"requests": {"storage": "1200Gi"}}
    assert "StorageClass" not in {obj["kind"] for obj in result.manifests["storage"]}


def test_dynamic_storage_class_creates_persistent_2(synths: dict[str, Synth]) -> None:
    result = synths["dynamic_storage"]
    storage_class = result.one("StorageClass")
    assert storage_class["metadata"] == {"name": "fsx-sc"}
    assert storage_class["provisioner"] == "fsx.csi.aws.com"
    assert storage_class["parameters"] == {
        "subnetId": DYNAMIC_FS.subnet_id,
        "securityGroupIds": DYNAMIC_FS.security_group_id,
        "deploymentType": "PERSISTENT_2",
        "perUnitStorageThroughput": "250",
        "dataCompressionType": "LZ4",
        "fileSystemTypeVersion": "2.15",
    }
    assert storage_class["mountOptions"] == ["flock"]
    assert storage_class["reclaimPolicy"] == "Delete"
    assert "PersistentVolume" not in {obj["kind"] for obj in result.manifests["storage"]}


def test_dynamic_claim_requests_the_capacity(synths: dict[str, Synth]) -> None:
    claim = synths["dynamic_storage"].one("PersistentVolumeClaim")
    assert claim["metadata"] == {"name": "fsx-claim", "namespace": "ray"}
    assert claim["spec"]["storageClassName"] == "fsx-sc"
    assert claim["spec"]["resources"] == {"requests": {"storage": "4800Gi"}}
    assert "volumeName" not in claim["spec"]


@pytest.mark.parametrize(
    ("mode", "inputs"),
    [
        ("static", {"dynamic": DYNAMIC_FS}),
        ("static", {}),
        ("dynamic", {"static": STATIC_FS}),
        ("static", {"static": STATIC_FS, "dynamic": DYNAMIC_FS}),
    ],
)
def test_inputs_must_match_the_mode(mode: str, inputs: dict) -> None:
    storage = load_config({"storage.mode": mode}).storage
    with pytest.raises(ValueError, match=f"storage.mode is '{mode}'"):
        StorageChart(cdk8s.Testing.app(), "storage", storage=storage, namespace="ray", **inputs)
