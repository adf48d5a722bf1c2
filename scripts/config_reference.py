"""Write docs/CONFIGURATION.md from the config model: every field, type, default, description and rule.

The model (config/) is the one source; this page is generated so that it cannot drift from it
(tests/config/test_config_reference.py fails when the committed page is stale). Run `make config-docs`.
"""

import argparse
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from config import AppConfig  # noqa: E402 (after the path)
from config.types import Rule  # noqa: E402 (after the path)

OUTPUT = REPO / "docs" / "CONFIGURATION.md"
HEADER = """# Configuration reference

Generated from the config model by `make config-docs` (scripts/config_reference.py); do not edit by hand.

Set a value in a YAML file passed with `-c config=path.yaml`, or on the command line with a dotted key,
e.g. `cdk synth -c network.az_count=3` (lists and mappings as JSON). Command-line keys override the file,
which overrides these defaults. An invalid value stops synth with one `config error:` line naming the field,
the value and what is allowed.
"""


def type_name(annotation: Any) -> str:  # noqa: PLR0911 (one return per kind of type)
    """A short, readable name for a field's type (Annotated rule types show the rule's type name)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(arg) for arg in args)
    if origin is typing.Literal:
        return " \\| ".join(json.dumps(arg) for arg in args)
    if origin is tuple:
        return f"list of {type_name(args[0])}"
    if origin is dict:
        return f"mapping of {type_name(args[0])} to {type_name(args[1])}"
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    return getattr(annotation, "__name__", str(annotation))


def rules(annotation: Any) -> list[str]:
    """The rules attached to a type and to the types inside it (list items, mapping keys and values)."""
    found = [meta.text for meta in getattr(annotation, "__metadata__", ()) if isinstance(meta, Rule)]
    for arg in typing.get_args(annotation):
        found += [text for text in rules(arg) if text not in found]
    return found


def default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if isinstance(value, BaseModel):
        return "see below"
    if isinstance(value, tuple) and value and isinstance(value[0], BaseModel):
        return "see below"
    return f"`{json.dumps(value, default=str)}`"


def section(model: type[BaseModel], path: str, seen: list[tuple[str, type[BaseModel]]]) -> list[str]:
    lines = [f"## `{path or 'top level'}`", ""]
    if model.__doc__ and model.__doc__ is not BaseModel.__doc__:
        lines += [" ".join(model.__doc__.split()), ""]
    lines += ["| Key | Type | Default | Description | Rule |", "|---|---|---|---|---|"]
    for name, field in model.model_fields.items():
        key = f"{path}.{name}" if path else name
        rule = "; ".join(_field_rules(model, name, field))
        description = (field.description or "").replace("|", "\\|")
        row = [f"`{key}`", type_name(field.annotation), default(field), description, rule.replace("|", "\\|")]
        lines.append("| " + " | ".join(row) + " |")
        for nested in _models(field.annotation):
            seen.append((f"{key}[]" if typing.get_origin(field.annotation) is tuple else key, nested))
    return [*lines, ""]


def _field_rules(model: type[BaseModel], name: str, field: FieldInfo) -> list[str]:
    """Rules of the field's own type, of the types inside it, its bounds, and its validators."""
    found = [meta.text for meta in field.metadata if isinstance(meta, Rule)] + rules(field.annotation)
    words = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<", "min_length": "at least", "max_length": "at most"}
    found += [
        f"{words[key]} {getattr(meta, key)}"
        for meta in field.metadata
        for key in words
        if getattr(meta, key, None) is not None
    ]
    validators = model.__pydantic_decorators__.field_validators.values()
    found += [
        f"checked by `{model.__module__}.{model.__name__}.{validator.cls_var_name}`"
        for validator in validators
        if name in validator.info.fields
    ]
    return found


def _models(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in typing.get_args(annotation) for model in _models(arg)]


def render() -> str:
    lines = [HEADER]
    queue: list[tuple[str, type[BaseModel]]] = [("", AppConfig)]
    while queue:
        path, model = queue.pop(0)
        found: list[tuple[str, type[BaseModel]]] = []
        lines += section(model, path, found)
        queue += found
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed page differs")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not OUTPUT.is_file() or OUTPUT.read_text() != text:
            print(f"{OUTPUT.relative_to(REPO)} is stale: run `make config-docs`", file=sys.stderr)
            sys.exit(1)
        return
    OUTPUT.parent.mkdir(exist_ok=True)
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT.relative_to(REPO)}")


if __name__ == "__main__":
    main()
