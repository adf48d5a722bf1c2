"""The configuration reference is generated from the model, and the model documents every field."""

import typing

from pydantic import BaseModel

from config import AppConfig
from config.types import Rule
from scripts import config_reference


def _models(model: type[BaseModel]) -> list[type[BaseModel]]:
    found = [model]
    for field in model.model_fields.values():
        for nested in config_reference._models(field.annotation):
            found += [m for m in _models(nested) if m not in found]
    return found


def test_committed_configuration_reference_is_current():
    assert config_reference.OUTPUT.read_text() == config_reference.render(), (
        "docs/CONFIGURATION.md is stale: run `make config-docs`"
    )


def test_every_field_has_a_description():
    missing = [
        f"{model.__name__}.{name}"
        for model in _models(AppConfig)
        for name, field in model.model_fields.items()
        if not field.description
    ]
    assert missing == []


def test_every_string_field_has_a_rule():
    """A str field is a Literal, a rule type from config/types.py, or checked by a named validator."""

    def has_str(annotation) -> bool:
        return annotation is str or any(has_str(arg) for arg in typing.get_args(annotation))

    unchecked = [
        f"{model.__name__}.{name}"
        for model in _models(AppConfig)
        for name, field in model.model_fields.items()
        if has_str(field.annotation)
        and not any(isinstance(meta, Rule) for meta in field.metadata)
        and not config_reference.rules(field.annotation)
        and not config_reference._field_rules(model, name, field)
    ]
    assert unchecked == []
