"""Shared base for every configuration section."""

import types
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator


class Section(BaseModel):
    """A frozen, strict-keyed configuration section.

    Unknown keys are errors (a typo must never be silently ignored), and sections are immutable so that a
    construct cannot change what another construct was configured with.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """A boolean is not a number: pydantic's lax mode would read `true` as 1 in an integer field (and
        YAML 1.1 read `on` and `yes` as true), so `count: yes` would deploy one node."""
        field = cls.model_fields.get(info.field_name or "")
        if isinstance(value, bool) and field is not None and _is_number(field.annotation):
            raise ValueError("must be a number, not a boolean")
        return value


def _is_number(annotation: Any) -> bool:
    """True for int, float, their Optional forms and Literals of numbers."""
    if annotation in (int, float):
        return True
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return all(isinstance(arg, int | float) and not isinstance(arg, bool) for arg in args)
    if origin in (typing.Union, types.UnionType):
        return any(_is_number(arg) for arg in args if arg is not type(None))
    return False
