"""Which file systems the cleanup deletes: pure decisions on `DescribeFileSystems` output, no AWS call."""

from __future__ import annotations

from typing import Any

# Already on its way out; asking again would fail with a BadRequest and gain nothing.
DELETING = "DELETING"


def tagged(file_systems: list[dict[str, Any]], key: str, value: str) -> list[dict[str, Any]]:
    """The file systems, in any lifecycle, that carry tag key=value (exactly; other values are others')."""
    wanted = {"Key": key, "Value": value}
    return [fs for fs in file_systems if wanted in fs.get("Tags", [])]


def to_delete(file_systems: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The file systems that still need a DeleteFileSystem call: every lifecycle but DELETING.

    A FAILED file system can be deleted too, and a CREATING one is what a late PVC left: any of them would
    outlive the stack otherwise. FSx's refusal, if it gives one, fails the resource with its reason.
    """
    return [fs for fs in file_systems if fs["Lifecycle"] != DELETING]
