"""Shared base for every configuration section."""

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A frozen, strict-keyed configuration section.

    Unknown keys are errors (a typo must never be silently ignored), and sections are immutable so that a
    construct cannot change what another construct was configured with.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


# The values CloudWatch Logs accepts for a retention period (PutRetentionPolicy).
LOG_RETENTION_DAYS = frozenset(
    {1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653}
)


def check_log_retention(days: int) -> int:
    """Reject a retention CloudWatch Logs would refuse at deploy time."""
    if days not in LOG_RETENTION_DAYS:
        raise ValueError(f"must be one of {', '.join(map(str, sorted(LOG_RETENTION_DAYS)))}")
    return days
