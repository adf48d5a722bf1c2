"""Build the AppConfig from cdk.json/-c context and an optional YAML file, with readable errors."""

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from .app import AppConfig

# Context keys that belong to CDK itself: feature flags, CLI settings and cached lookups (which contain ':'),
# and the keys the CLI writes into cdk.context.json (`cdk acknowledge`, `cdk cli-telemetry`).
_CDK_KEY_PREFIXES = ("@", "aws:", "aws-cdk:", "cdk", "$")
_CDK_KEYS = frozenset({"acknowledged-issue-numbers", "cli-telemetry"})
CONFIG_FILE_KEY = "config"


class ConfigError(Exception):
    """Invalid configuration: one line per problem, each naming the field, the value and what is allowed."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def read_config_file(path: str) -> Any:
    """The YAML file's values; any problem reading or parsing it is one ConfigError line."""
    where = f"{CONFIG_FILE_KEY} = {path!r}"
    try:
        text = Path(path).read_bytes().decode("utf-8")
        return yaml.safe_load(text)
    except OSError as error:
        raise ConfigError([f"{where}: cannot read it: {error.strerror or error}"]) from None
    except UnicodeDecodeError as error:
        raise ConfigError([f"{where}: not UTF-8 text (byte {error.start}): save the file as UTF-8"]) from None
    except yaml.YAMLError as error:
        detail = " ".join(str(error).split())  # one line, whatever the parser's layout
        raise ConfigError([f"{where}: not valid YAML: {detail}"]) from None


def load_config(context: Mapping[str, Any], file_values: Mapping[str, Any] | None = None) -> AppConfig:
    """Defaults, overlaid by the YAML file, overlaid by context keys (`-c network.az_count=3`)."""
    if file_values is not None and not isinstance(file_values, Mapping):
        raise ConfigError(
            [f"config file: the top level must be a mapping of sections, not {type(file_values).__name__}"]
        )
    merged: dict[str, Any] = _deep_copy(file_values or {})
    for key, value in context.items():
        if _is_app_key(key):
            _set_path(merged, key.split("."), _parse(value))
    try:
        return AppConfig.model_validate(merged)
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None


def _is_app_key(key: str) -> bool:
    return (
        key != CONFIG_FILE_KEY
        and key not in _CDK_KEYS
        and ":" not in key
        and not key.startswith(_CDK_KEY_PREFIXES)
    )


def _parse(value: Any) -> Any:
    """`-c` delivers strings: accept JSON for lists, mappings and null; pydantic coerces the scalars."""
    if isinstance(value, str) and (value[:1] in "[{" or value == "null") and value:
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _set_path(tree: dict[str, Any], path: list[str], value: Any) -> None:
    for part in path[:-1]:
        child = tree.get(part)
        if not isinstance(child, dict):
            child = tree[part] = {}
        tree = child
    tree[path[-1]] = value


def _deep_copy(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _deep_copy(value) if isinstance(value, Mapping) else value for key, value in values.items()}


def _describe(error: ValidationError) -> list[str]:
    items = error.errors(include_url=False)
    lines = []
    for item in items:
        if item["type"] == "too_short" and _has_nested_error(item["loc"], items):
            continue  # a list emptied by its own invalid items: those items are the real problem
        loc = item["loc"]
        # A bad mapping key: name the mapping and say it is the key (pydantic's location ends in "[key]").
        where = f"{_dotted(loc[:-2])} key" if loc[-1:] == ("[key]",) else _dotted(loc)
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            allowed = ", ".join(sorted(_model_at(item["loc"][:-1]).model_fields))
            message = f"unknown key; allowed keys here: {allowed}"
        # A section-level check names its fields in the message; echoing the whole section is noise.
        value = "" if isinstance(item["input"], Mapping) else f" = {item['input']!r}"
        lines.extend(f"{where}{value}: {line}" if where else line for line in message.splitlines())
    return lines


def _has_nested_error(loc: tuple[int | str, ...], items: list[Any]) -> bool:
    return any(len(other["loc"]) > len(loc) and other["loc"][: len(loc)] == loc for other in items)


def _dotted(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel]:
    """The model class that a validation error's location points into (to list its keys)."""
    model: Any = AppConfig
    for part in loc:
        if isinstance(part, int):
            continue
        annotation = model.model_fields[part].annotation
        model = next((arg for arg in getattr(annotation, "__args__", ()) if _is_model(arg)), annotation)
    return model


def _is_model(candidate: Any) -> bool:
    return isinstance(candidate, type) and issubclass(candidate, BaseModel)
