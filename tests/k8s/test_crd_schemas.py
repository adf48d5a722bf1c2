"""The committed KubeRay schemas are what `make imports` makes from the pinned CRDs; nothing else is read."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO
from tests.support.k8s_validation import default_crd_dir

SCRIPT = REPO / "k8s_charts" / "regenerate_imports.py"


@pytest.fixture(scope="module")
def regen():
    """The generator as a module, loaded by path: importing the k8s_charts package would load the charts."""
    spec = importlib.util.spec_from_file_location("regenerate_imports", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _crd(kind: str, versions: list[str]) -> dict:
    schema = {
        "type": "object",
        "description": "top",
        "properties": {
            "spec": {
                "type": "object",
                "description": "the spec",
                "properties": {"description": {"type": "string", "description": "a field named description"}},
            }
        },
    }
    return {
        "kind": "CustomResourceDefinition",
        "spec": {
            "group": "ray.io",
            "names": {"kind": kind},
            "versions": [{"name": v, "schema": {"openAPIV3Schema": schema}} for v in versions],
        },
    }


def test_schemas_keep_a_property_named_description_and_drop_the_annotations(regen, tmp_path: Path) -> None:
    crds = regen.v1_crds({"x.yaml": json.dumps(_crd("RayThing", ["v1alpha1", "v1"])).encode()})
    schemas = regen.validation_schemas(crds)
    assert list(schemas) == ["ray.io_v1_RayThing.json"]  # v1 only
    regen.write_schemas(schemas, tmp_path / "out")
    written = json.loads((tmp_path / "out" / "ray.io_v1_RayThing.json").read_text())
    assert written == {
        "type": "object",
        "properties": {"spec": {"type": "object", "properties": {"description": {"type": "string"}}}},
    }


def test_a_crd_file_that_is_not_the_pinned_release_is_refused(regen, tmp_path: Path) -> None:
    for name in regen.CRD_SHA256:
        (tmp_path / name).write_text("kind: CustomResourceDefinition\n")
    with pytest.raises(SystemExit, match=r"sha256 [0-9a-f]{64} is not KubeRay v1\.7\.0's"):
        regen.read_crds(tmp_path)


def test_a_missing_crd_dir_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--schemas-only", "--crd-dir", str(tmp_path / "no")],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip().startswith("cannot read ")
    assert "Traceback" not in done.stderr


def test_the_pinned_url_names_the_release_tag(regen) -> None:
    assert regen.CRD_URL.startswith("https://raw.githubusercontent.com/ray-project/kuberay/v1.7.0/")


def test_committed_schemas_are_complete_strippable_and_nothing_else(regen) -> None:
    files = sorted(path.name for path in default_crd_dir().iterdir())
    assert files == ["ray.io_v1_RayCluster.json", "ray.io_v1_RayJob.json"]
    for name in files:
        schema = json.loads((default_crd_dir() / name).read_text())
        # Already stripped: stripping again changes nothing (the generator's output is a fixed point).
        assert regen.without_descriptions(schema) == schema
    job = json.loads((default_crd_dir() / "ray.io_v1_RayJob.json").read_text())
    # The full schema, unlike the typed classes, keeps the fields the charts never build.
    assert {"rayClusterSpec", "submitterPodTemplate"} <= set(job["properties"]["spec"]["properties"])


# The folder beside a developer's checkout, spelled in parts so that this file does not name it whole.
BESIDE = "../" + "shared"


def test_no_file_the_build_or_tests_run_reads_beside_the_checkout() -> None:
    grep = subprocess.run(
        ["git", "-C", str(REPO), "grep", "-l", "-e", BESIDE, "-e", 'parent / "shared"', "--", "."],
        capture_output=True,
        text=True,
        check=False,
    )
    assert grep.returncode in (0, 1), grep.stderr  # 1: no match
    tracked = grep.stdout.split()
    # This file names the strings it searches for; nothing else may.
    assert [path for path in tracked if path != "tests/k8s/test_crd_schemas.py"] == []
