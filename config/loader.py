"""Build the AppConfig from cdk.json/-c context and an optional YAML file, with readable errors.

The input is hostile until validated: a file is read up to a size limit, YAML is parsed with YAML 1.2's
plain scalars (no `on`/`yes` booleans, no octal or sexagesimal integers), duplicate keys are refused, and
the parsed document is bounded in depth and in the values its anchors and aliases expand to, before anything
is built from it. Every value an error echoes is shortened.
"""

import json
import os
import re
import reprlib
import stat
from collections.abc import Mapping
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from .app import AppConfig
from .types import template_marker

# Context keys that belong to CDK itself: feature flags, CLI settings and cached lookups (which contain ':'),
# and the keys the CLI writes into cdk.context.json (`cdk acknowledge`, `cdk cli-telemetry`).
_CDK_KEY_PREFIXES = ("@", "aws:", "aws-cdk:", "cdk", "$")
_CDK_KEYS = frozenset({"acknowledged-issue-numbers", "cli-telemetry"})
# Context lookups cache their answers under `<provider>:<query>` (aws-cdk-lib cloud-assembly-schema,
# ContextProvider values, plus `plugin`). Any other key with ':' is a typo of a dotted config key
# (`eks:version` for `eks.version`) and must not be silently ignored.
_CDK_LOOKUP_PROVIDERS = frozenset(
    {
        "ami",
        "availability-zones",
        "hosted-zone",
        "ssm",
        "vpc-provider",
        "endpoint-service-availability-zones",
        "load-balancer",
        "load-balancer-listener",
        "security-group",
        "key-provider",
        "cc-api-provider",
        "plugin",
    }
)
CONFIG_FILE_KEY = "config"
# Bounds on what the loader accepts. The default config file is ~2 KB and the largest sensible one a few
# tens of KB: 1 MiB leaves room and keeps `-c config=/dev/zero` from filling memory.
MAX_FILE_BYTES = 2**20
# Sections nest 4 deep (hyperpod.instance_groups[0].taints[0]); 32 is far beyond any valid file.
MAX_DEPTH = 32
# Values a document may expand to through anchors and aliases: a 260-byte alias bomb expands to 10^9.
MAX_VALUES = 100_000
# An error line echoes at most this much of a value (an 8 MB value must not become an 8 MB line).
MAX_SHOWN = 120
MAX_LINE = 600
_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = _SHORT.maxlong = MAX_SHOWN
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = 8
_SHORT.maxlevel = 3


class ConfigError(Exception):
    """Invalid configuration: one line per problem, each naming the field, the value and what is allowed."""

    def __init__(self, problems: list[str]) -> None:
        problems = [shorten_line(problem) for problem in problems]
        super().__init__("\n".join(problems))
        self.problems = problems


def shown(value: Any) -> str:
    """`repr(value)`, shortened: never longer than MAX_SHOWN + 3 characters, whatever the value's size."""
    text = _SHORT.repr(value)
    return text if len(text) <= MAX_SHOWN else f"{text[: MAX_SHOWN - 20]}...{text[-17:]}"


def shorten_line(line: str) -> str:
    return line if len(line) <= MAX_LINE else f"{line[: MAX_LINE - 20]}... ({len(line)} characters)"


# --- YAML ---------------------------------------------------------------------------------------------------
class _StrictLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema scalars and duplicate keys refused."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *defaults` may repeat keys on purpose: the explicit one wins, as YAML says
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in first_line:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"duplicate key {shown(key)} on line {line} (first on line {first_line[key]}): YAML "
                        "would keep only the last; merge the two",
                        key_node.start_mark,
                    )
                first_line[key] = line
            except TypeError:
                pass  # an unhashable key: SafeLoader's own check reports it
        return super().construct_mapping(node, deep=deep)


def _core_schema_resolvers() -> dict[str, list[tuple[str, re.Pattern[str]]]]:
    """SafeLoader's implicit resolvers with bool, int and float replaced by YAML 1.2's core schema.

    YAML 1.1 reads `on`, `yes`, `off`, `no` as booleans (then 1 or 0 in an integer field: `ebs_volume_gb: on`
    gave 1 GB), `010` as 8 and `1:30` as 90. Under the core schema they stay strings, which a number field
    refuses and a boolean field reads as pydantic does.
    """
    replaced = {"tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"}
    resolvers = {
        first: [(tag, regex) for tag, regex in entries if tag not in replaced]
        for first, entries in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    core = [
        ("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), "tTfF"),
        ("tag:yaml.org,2002:int", re.compile(r"^[-+]?[0-9]+$"), "-+0123456789"),
        (
            "tag:yaml.org,2002:float",
            re.compile(
                r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
            ),
            "-+0123456789.",
        ),
    ]
    for tag, regex, firsts in core:
        for first in firsts:
            resolvers.setdefault(first, []).append((tag, regex))
    return resolvers


_StrictLoader.yaml_implicit_resolvers = _core_schema_resolvers()
# Decimal only: SafeConstructor would read `010` as octal 8 and strip `_` (YAML 1.1).
_StrictLoader.add_constructor(
    "tag:yaml.org,2002:int", lambda loader, node: int(loader.construct_scalar(node), 10)
)


def _check_shape(node: yaml.Node) -> None:
    """Refuse a document that nests too deeply, refers to itself, or expands past MAX_VALUES values."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()

    def size(current: yaml.Node, depth: int) -> int:
        if depth > MAX_DEPTH:
            line = current.start_mark.line + 1
            raise _ShapeError(f"nested more than {MAX_DEPTH} levels deep (line {line})")
        if id(current) in on_path:
            line = current.start_mark.line + 1
            raise _ShapeError(f"an alias on line {line} refers to a value that contains it")
        if id(current) in sizes:
            return sizes[id(current)]
        on_path.add(id(current))
        children: list[yaml.Node] = []
        if isinstance(current, yaml.SequenceNode):
            children = current.value
        elif isinstance(current, yaml.MappingNode):
            children = [part for pair in current.value for part in pair]
        total = 1
        for child in children:
            total += size(child, depth + 1)
            if total > MAX_VALUES:
                raise _ShapeError(
                    f"expands to more than {MAX_VALUES} values through anchors and aliases (line "
                    f"{current.start_mark.line + 1}); write the values out"
                )
        on_path.discard(id(current))
        sizes[id(current)] = total
        return total

    size(node, 0)


class _ShapeError(Exception):
    pass


def parse_yaml(text: str) -> Any:
    """One YAML document, parsed strictly and bounded (see the module docstring); raises yaml.YAMLError or
    _ShapeError."""
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_shape(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def read_config_file(path: str) -> Any:
    """The YAML file's values; any problem reading or parsing it is one ConfigError line."""
    where = f"{CONFIG_FILE_KEY} = {shown(path)}"
    try:
        text = _read_bounded(path).decode("utf-8")
        return parse_yaml(text)
    except OSError as error:
        raise ConfigError([f"{where}: cannot read it: {error.strerror or error}"]) from None
    except UnicodeDecodeError as error:
        raise ConfigError([f"{where}: not UTF-8 text (byte {error.start}): save the file as UTF-8"]) from None
    except yaml.YAMLError as error:
        detail = " ".join(str(error).split())  # one line, whatever the parser's layout
        raise ConfigError([f"{where}: not valid YAML: {detail}"]) from None
    except _ShapeError as error:
        raise ConfigError([f"{where}: {error}"]) from None
    except RecursionError:
        raise ConfigError([f"{where}: nested too deeply to parse (at most {MAX_DEPTH} levels)"]) from None


def _read_bounded(path: str) -> bytes:
    """At most MAX_FILE_BYTES of a regular file: a device, a FIFO or a huge file is refused, not read."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(descriptor, "rb") as file:
        mode = os.fstat(file.fileno()).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(21, "Is a directory")
        if not stat.S_ISREG(mode):
            raise OSError(0, "not a regular file (a device, pipe or socket)")
        data = file.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise OSError(0, f"larger than {MAX_FILE_BYTES} bytes; a config file is a few KB")
    return data


def load_config(context: Mapping[str, Any], file_values: Mapping[str, Any] | None = None) -> AppConfig:
    """Defaults, overlaid by the YAML file, overlaid by context keys (`-c network.az_count=3`)."""
    if file_values is not None and not isinstance(file_values, Mapping):
        raise ConfigError(
            [f"config file: the top level must be a mapping of sections, not {type(file_values).__name__}"]
        )
    problems = _shape_problems("config file", file_values)
    merged: dict[str, Any] = {} if problems else _deep_copy(file_values or {})
    for key, value in context.items():
        if _is_cdk_key(key):
            continue
        if ":" in key:
            problems.append(
                f"context key {shown(key)}: not a config key (those are dotted paths such as eks.version) "
                "and not one of CDK's own"
            )
            continue
        parsed = _parse(value)
        shape = _shape_problems(shown(key), parsed)
        problems += shape
        if not shape:
            _set_path(merged, key.split("."), parsed)
    if problems:
        raise ConfigError(problems)
    try:
        config = AppConfig.model_validate(merged)
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None
    markup = list(_markup_problems(config.model_dump(), ()))
    if markup:
        raise ConfigError(markup)
    return config


def _is_cdk_key(key: str) -> bool:
    provider, colon, _ = key.partition(":")
    return (
        key == CONFIG_FILE_KEY
        or key in _CDK_KEYS
        or key.startswith(_CDK_KEY_PREFIXES)
        or (bool(colon) and provider in _CDK_LOOKUP_PROVIDERS)
    )


def _parse(value: Any) -> Any:
    """`-c` delivers strings: accept JSON for lists, mappings and null; pydantic coerces the scalars."""
    if isinstance(value, str) and (value[:1] in "[{" or value == "null") and value:
        try:
            return json.loads(value)
        except (json.JSONDecodeError, RecursionError):
            return value  # the field then reports the text it got
    return value


def _shape_problems(where: str, value: Any) -> list[str]:
    """Why a value built in Python (a `-c` JSON value, a caller's mapping) exceeds the loader's bounds."""
    seen = 0
    stack: list[tuple[Any, int, frozenset[int]]] = [(value, 0, frozenset())]
    while stack:
        current, depth, path = stack.pop()
        seen += 1
        if depth > MAX_DEPTH:
            return [f"{where}: nested more than {MAX_DEPTH} levels deep"]
        if seen > MAX_VALUES:
            return [f"{where}: more than {MAX_VALUES} values"]
        if isinstance(current, Mapping | list | tuple):
            if id(current) in path:
                return [f"{where}: contains itself"]
            children = [*current.keys(), *current.values()] if isinstance(current, Mapping) else current
            stack.extend((child, depth + 1, path | {id(current)}) for child in children)
    return []


def _markup_problems(value: Any, loc: tuple[int | str, ...]) -> Any:
    """Every string in the validated config that CDK or CloudFormation would read as template markup.

    The free-text types refuse these already (config/types.py `free_text`); this pass also covers a field
    added later with a plain `str`, so that no config string can become template structure.
    """
    if isinstance(value, str):
        marker = template_marker(value)
        if marker:
            yield (
                f"{_dotted(loc)} = {shown(value)}: contains {marker!r}, which CDK or CloudFormation would "
                "read as template markup (a token or a dynamic reference), not as text"
            )
    elif isinstance(value, Mapping):
        for key, child in value.items():
            yield from _markup_problems(key, (*loc, "key"))
            yield from _markup_problems(child, (*loc, str(key)))
    elif isinstance(value, list | tuple):
        for index, child in enumerate(value):
            yield from _markup_problems(child, (*loc, index))


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
        value = "" if isinstance(item["input"], Mapping) else f" = {shown(item['input'])}"
        lines.extend(f"{where}{value}: {line}" if where else line for line in message.splitlines())
    return lines


def _has_nested_error(loc: tuple[int | str, ...], items: list[Any]) -> bool:
    return any(len(other["loc"]) > len(loc) and other["loc"][: len(loc)] == loc for other in items)


def _dotted(loc: tuple[int | str, ...]) -> str:
    text = ""
    for raw in loc:
        part = raw if isinstance(raw, int) or len(raw) <= 64 else shown(raw)
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
