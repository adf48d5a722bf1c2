"""Shared base for every configuration section."""

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A frozen, strict-keyed configuration section.

    Unknown keys are errors (a typo must never be silently ignored), and sections are immutable so that a
    construct cannot change what another construct was configured with.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
