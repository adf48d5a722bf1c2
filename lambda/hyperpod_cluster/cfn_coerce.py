"""Restore the types CloudFormation flattens to strings, guided by botocore's service model.

CloudFormation passes every scalar in a custom resource's properties as a string ("4", "true").
Rather than keep a list of numeric field names in step with the API, walk the operation's input
shape: the model already knows which members are integers, floats or booleans.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from typing import Any

from botocore.model import Shape
from botocore.validate import validate_parameters

_INTEGER = re.compile(r"[+-]?\d+")


class ConfigError(ValueError):
    """A property value the API model cannot accept; the message names the field path."""


def coerce(value: Any, shape: Shape, path: str) -> Any:
    """Return `value` converted to what `shape` expects; raise ConfigError naming `path` if it cannot be."""
    convert = _CONVERTERS.get(shape.type_name)
    # strings, timestamps and blobs are passed as CloudFormation sent them.
    return convert(value, shape, path) if convert else value


def coerce_request(params: dict[str, Any], shape: Shape, root: str) -> dict[str, Any]:
    """Coerce a whole request and validate it against the model, so errors surface before any call."""
    request = coerce(params, shape, root)
    # botocore's validator checks required members, types and minimums (not patterns or enums).
    validate_parameters(request, shape)
    return request


def item_label(item: Any, index: int) -> str:
    """Name a list element by its instance group name or tag key, else by its index.

    `InstanceGroups[workers]` tells a user which group is wrong; `InstanceGroups[1]` makes them count.
    """
    if isinstance(item, dict):
        for key in ("InstanceGroupName", "Key"):
            if isinstance(item.get(key), str):
                return item[key]
    return str(index)


def _coerce_structure(value: Any, shape: Shape, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: expected an object, got {_show(value)}")
    members = shape.members
    result = {}
    for key, item in value.items():
        if key not in members:
            raise ConfigError(_unknown_member(key, members, path))
        result[key] = coerce(item, members[key], f"{path}.{key}")
    return result


def _coerce_list(value: Any, shape: Shape, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise ConfigError(f"{path}: expected a list, got {_show(value)}")
    return [coerce(item, shape.member, f"{path}[{item_label(item, i)}]") for i, item in enumerate(value)]


def _coerce_map(value: Any, shape: Shape, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: expected an object, got {_show(value)}")
    return {key: coerce(item, shape.value, f"{path}.{key}") for key, item in value.items()}


def _to_int(value: Any, shape: Shape, path: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        return int(value)
    raise ConfigError(f"{path}: expected an integer, got {_show(value)}")


def _to_float(value: Any, shape: Shape, path: str) -> float:
    if not isinstance(value, bool):
        try:
            return float(value)
        except (TypeError, ValueError):
            pass
    raise ConfigError(f"{path}: expected a number, got {_show(value)}")


def _to_bool(value: Any, shape: Shape, path: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ConfigError(f'{path}: expected a boolean ("true" or "false"), got {_show(value)}')


_CONVERTERS: dict[str, Callable[[Any, Shape, str], Any]] = {
    "structure": _coerce_structure,
    "list": _coerce_list,
    "map": _coerce_map,
    "integer": _to_int,
    "long": _to_int,
    "float": _to_float,
    "double": _to_float,
    "boolean": _to_bool,
}


def _unknown_member(key: str, members: dict[str, Shape], path: str) -> str:
    close = difflib.get_close_matches(key, members, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"known members: {', '.join(sorted(members))}"
    return f"{path}: unknown member {key!r}; {hint}"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
