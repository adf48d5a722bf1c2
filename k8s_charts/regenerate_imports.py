"""Regenerate what the project derives from the KubeRay CRDs: typed classes and the tests' schemas.

Usage (from the repository root, run by path: importing the k8s_charts package needs what this makes):
    .venv/bin/python k8s_charts/regenerate_imports.py                   # download the pinned release
    .venv/bin/python k8s_charts/regenerate_imports.py --crd-dir DIR     # a local copy of the same files
    .venv/bin/python k8s_charts/regenerate_imports.py --schemas-only    # skip `cdk8s import` (no Node)

Either way every CRD file must have the sha256 pinned below: a local copy is the same release or nothing.

Outputs, both committed:
- `k8s_charts/imports/`: typed classes from `cdk8s import`. Only the v1 version of the two CRDs we use is
  imported: v1alpha1 and RayService/RayCronJob would double the generated module and its import time for
  classes nothing may use. For the same reason the RayJob's `rayClusterSpec` and `submitterPodTemplate` are
  left out of the typed classes: this app's RayJob always targets the existing RayCluster through
  `clusterSelector`, and those two fields (a second copy of the whole RayCluster and pod schemas) were more
  than half of the classes and of every synth's import time. Likewise the pod templates' `initContainers`
  and `ephemeralContainers` (two more copies of the container schema, a third of what remained): no chart
  sets them (KubeRay adds its own init container), and Kubernetes refuses ephemeral containers in a
  template anyway. Type a field again by taking it out of UNTYPED_FIELDS.
- `k8s_charts/crd_schemas/<group>_<version>_<Kind>.json`: the complete `openAPIV3Schema` of each v1 kind,
  `description` annotations stripped (a third of the size, no meaning for validation). The tests validate
  every synthesized manifest against these, so a clone needs nothing beside itself.
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
KUBERAY_VERSION = "v1.7.0"
# The operator's generated CRDs at the release tag (the Helm chart's crds/ holds byte-identical copies).
CRD_URL = (
    f"https://raw.githubusercontent.com/ray-project/kuberay/{KUBERAY_VERSION}/ray-operator/config/crd/bases/"
)
# sha256 of each file at tag v1.7.0 (commit 59d663aeec13760646da3db9c1cf8cfe883e30b7).
CRD_SHA256 = {
    "ray.io_rayclusters.yaml": "c44704442eef0c6721ad40c1d66782c8bd3fdab9d3344306a5820910a679baa1",
    "ray.io_rayjobs.yaml": "01a5cf3b17c1769fda44af7e82debcd98722f0c27b9ab84d084681c6649121f5",
}
# Paths below each CRD's `spec` (a list's items are "*"), left out of the typed classes only.
_UNUSED_POD_FIELDS = ("initContainers", "ephemeralContainers")
UNTYPED_FIELDS: dict[str, tuple[tuple[str, ...], ...]] = {
    "RayJob": (("rayClusterSpec",), ("submitterPodTemplate",)),
    "RayCluster": tuple(
        (*group, "template", "spec", field)
        for group in (("headGroupSpec",), ("workerGroupSpecs", "*"))
        for field in _UNUSED_POD_FIELDS
    ),
}
API_VERSION = "v1"
IMPORTS = ROOT / "k8s_charts" / "imports"
SCHEMAS = ROOT / "k8s_charts" / "crd_schemas"


class CrdError(SystemExit):
    """A CRD source that is missing or not the pinned release: stop with one line, no traceback."""


def read_crds(crd_dir: Path | None) -> dict[str, bytes]:
    """The pinned CRD files' bytes, from crd_dir or downloaded, each checked against its sha256."""
    crds = {}
    for name, expected in CRD_SHA256.items():
        data = _read_local(crd_dir / name) if crd_dir else _download(CRD_URL + name)
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected:
            source = crd_dir / name if crd_dir else CRD_URL + name
            raise CrdError(f"{source}: sha256 {actual} is not KubeRay {KUBERAY_VERSION}'s {expected}")
        crds[name] = data
    return crds


def _read_local(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise CrdError(f"cannot read {path}: {error.strerror}") from None


def _download(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:  # a fixed https URL
            return response.read()
    except OSError as error:
        raise CrdError(f"cannot download {url}: {error} (or pass --crd-dir with a local copy)") from None


def v1_crds(crds: dict[str, bytes]) -> list[dict[str, Any]]:
    """Each CRD with every version but v1 removed."""
    result = []
    for name, data in crds.items():
        for crd in yaml.load_all(data, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
            if not crd:
                continue
            crd["spec"]["versions"] = [v for v in crd["spec"]["versions"] if v["name"] == API_VERSION]
            if not crd["spec"]["versions"]:
                raise CrdError(f"{name}: no {API_VERSION} version")
            result.append(crd)
    return result


def validation_schemas(crds: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """File name -> the kind's openAPIV3Schema without descriptions, for the committed schema directory."""
    schemas = {}
    for crd in crds:
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = without_descriptions(version["schema"]["openAPIV3Schema"])
            schemas[schema_file_name(group, version["name"], kind)] = schema
    return schemas


def schema_file_name(group: str, version: str, kind: str) -> str:
    return f"{group}_{version}_{kind}.json"


def without_descriptions(schema: Any) -> Any:
    """A copy without `description` annotations; a property that happens to be named `description` stays."""
    if isinstance(schema, list):
        return [without_descriptions(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    copy = {}
    for key, value in schema.items():
        if key == "description" and isinstance(value, str):
            continue
        if key == "properties" and isinstance(value, dict):
            copy[key] = {name: without_descriptions(prop) for name, prop in value.items()}
        else:
            copy[key] = without_descriptions(value)
    return copy


def write_schemas(schemas: dict[str, dict[str, Any]], output: Path) -> None:
    shutil.rmtree(output, ignore_errors=True)
    output.mkdir(parents=True)
    for name, schema in schemas.items():
        # Sorted and indented: a new KubeRay release shows up as a readable diff.
        (output / name).write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")


def typed_crds(crds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The CRDs for `cdk8s import`: the fields no chart builds are dropped (see the module docstring)."""
    typed = json.loads(json.dumps(crds))
    for crd in typed:
        spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        for path in UNTYPED_FIELDS.get(crd["spec"]["names"]["kind"], ()):
            parent = spec
            for part in path[:-1]:
                parent = parent["items"] if part == "*" else parent["properties"][part]
            del parent["properties"][path[-1]]
    return typed


def cdk8s_import(crd_file: Path, output: Path) -> None:
    bin_dir = ROOT / "node_modules" / ".bin"
    # node_modules/.bin first: cdk8s and jsii must run on the pinned Node 22, not the system's Node.
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    command = [str(bin_dir / "cdk8s"), "import", "--no-save", "--check-upgrade=false"]
    command += ["--language", "python", "--output", str(output), str(crd_file)]
    subprocess.run(command, check=True, env=env, cwd=output.parent)


def write_imports(crds: list[dict[str, Any]], output: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        crd_file = Path(tmp) / "ray-v1.yaml"
        crd_file.write_text(yaml.safe_dump_all(typed_crds(crds)))
        generated = Path(tmp) / "imports"
        cdk8s_import(crd_file, generated)
        # cdk8s writes io/ray/__init__.py only: the parents must be packages for k8s_charts.imports.io.ray.
        for package in (generated, generated / "io"):
            (package / "__init__.py").write_text('"""Generated by k8s_charts/regenerate_imports.py."""\n')
        shutil.rmtree(output, ignore_errors=True)
        shutil.copytree(generated, output)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--crd-dir", type=Path, help="a local copy of the CRD files (default: download)")
    parser.add_argument("--schemas-only", action="store_true", help="write crd_schemas/ only")
    args = parser.parse_args()
    crds = v1_crds(read_crds(args.crd_dir))
    write_schemas(validation_schemas(crds), SCHEMAS)
    print(f"wrote {SCHEMAS.relative_to(ROOT)}")
    if not args.schemas_only:
        write_imports(crds, IMPORTS)
        print(f"wrote {IMPORTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
