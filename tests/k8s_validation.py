"""Validate synthesized Kubernetes objects offline, as strictly as an API server would.

Core kinds are checked against the Kubernetes JSON schemas of the cluster's version (kubernetes-validate,
strict: unknown fields are errors). `ray.io` kinds are checked against the `openAPIV3Schema` of the matching
version in KubeRay's CRDs, made strict the same way (an API server with fieldValidation=Strict rejects
unknown fields; a lenient one silently drops them, which hides typos). Any other kind is an error, so
that nothing passes unchecked.
"""

import re
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
# libyaml parses the 4 MB of CRDs in about a second; the pure-Python loader takes fifteen.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# A CRD file starts with its group and names (controller-gen layout): enough to index without parsing it.
_CRD_GROUP = re.compile(r"^  group: (\S+)$", re.MULTILINE)
_CRD_KIND = re.compile(r"^  names:\n(?:    .*\n)*?    kind: (\w+)$", re.MULTILINE)
KUBERAY_VERSION = "v1.7.0"


def default_crd_dir() -> Path:
    """The KubeRay CRDs in ../shared beside the checkout (data only: never copied into the project)."""
    return REPO_ROOT.parent / "shared" / f"kuberay-{KUBERAY_VERSION}" / "crds"


def validate_k8s_objects(objects: Iterable[Mapping[str, Any]], eks_version: str, crd_dir: Path) -> int:
    """Validate every object; raise AssertionError listing every problem. Returns how many were checked.

    An empty input is an error too: a check that sees nothing must not pass.
    """
    objects = list(objects)
    if not objects:
        raise AssertionError("no Kubernetes objects to validate")
    problems = [problem for obj in objects for problem in object_problems(obj, eks_version, crd_dir)]
    if problems:
        raise AssertionError("invalid Kubernetes objects:\n" + "\n".join(problems))
    return len(objects)


def object_problems(obj: Mapping[str, Any], eks_version: str, crd_dir: Path) -> list[str]:
    """The reasons `obj` would be rejected (empty when it is valid)."""
    where = f"{obj.get('kind')} {obj.get('metadata', {}).get('name')!r} ({obj.get('apiVersion')})"
    group = str(obj.get("apiVersion", "")).rpartition("/")[0]
    if group.endswith("ray.io"):
        return [f"{where}: {message}" for message in _crd_problems(obj, crd_dir)]
    try:
        kubernetes_validate.validate(dict(obj), eks_version, strict=True)
    except kubernetes_validate.ValidationError as error:
        return [f"{where}: {'.'.join(map(str, error.path))}: {error.message}"]
    except (
        kubernetes_validate.SchemaNotFoundError,
        kubernetes_validate.utils.VersionNotSupportedError,
    ) as error:
        return [f"{where}: {error.message}"]
    return []


def _crd_problems(obj: Mapping[str, Any], crd_dir: Path) -> list[str]:
    group, _, version = str(obj["apiVersion"]).partition("/")
    schema = crd_schema(crd_dir.resolve(), group, version, str(obj.get("kind")))
    if schema is None:
        return [f"no CRD in {crd_dir} defines this kind and version"]
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(dict(obj)), key=lambda error: list(error.absolute_path))
    return [f"{'.'.join(map(str, error.absolute_path))}: {error.message}" for error in errors]


@cache
def crd_schema(crd_dir: Path, group: str, version: str, kind: str) -> dict[str, Any] | None:
    """The strict openAPIV3Schema of group/version kind, or None when no CRD in crd_dir defines it."""
    path = _crd_files(crd_dir).get((group, kind))
    if path is None:
        return None
    for crd in _load_yaml(path):
        if crd and crd.get("kind") == "CustomResourceDefinition" and crd["spec"]["names"]["kind"] == kind:
            for crd_version in crd["spec"]["versions"]:
                if crd_version["name"] == version:
                    return strict_schema(crd_version["schema"]["openAPIV3Schema"])
    return None


@cache
def _crd_files(crd_dir: Path) -> dict[tuple[str, str], Path]:
    """(group, kind) -> CRD file, read from each file's head so that only the needed files are parsed."""
    if not crd_dir.is_dir():
        raise FileNotFoundError(
            f"KubeRay CRDs not found at {crd_dir} (expected ../shared beside the checkout)"
        )
    files = {}
    for path in sorted(crd_dir.glob("*.yaml")):
        head = path.read_text()[:4000]
        group, kind = _CRD_GROUP.search(head), _CRD_KIND.search(head)
        if group and kind:
            files[(group.group(1), kind.group(1))] = path
    if not files:
        raise FileNotFoundError(f"no CustomResourceDefinitions in {crd_dir}")
    return files


def _load_yaml(path: Path) -> list[Any]:
    return list(yaml.load_all(path.read_text(), Loader=_YAML_LOADER))


def strict_schema(schema: Any) -> Any:
    """A copy of a structural schema in which objects with declared properties reject unknown ones."""
    if isinstance(schema, list):
        return [strict_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {key: strict_schema(value) for key, value in schema.items()}
    if (
        "properties" in strict
        and "additionalProperties" not in strict
        and not strict.get("x-kubernetes-preserve-unknown-fields")
    ):
        strict["additionalProperties"] = False
    return strict
