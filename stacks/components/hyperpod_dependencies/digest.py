"""The chart digest, defined once and computed two ways: in Python (`chart_digest`, for a local chart at
synth) and as a shell line (`DIGEST_COMMAND`, in the buildspec), so that a user can reproduce it too."""

import hashlib
import os
from pathlib import Path

# The chart digest, as a shell pipeline run in the chart directory: sha256 over the `sha256sum` lines
# ("<hex>  ./<path>") of every regular file, sorted by path bytes. `chart_digest` computes the same in
# Python; a user can reproduce it with these standard tools.
DIGEST_COMMAND = (
    "find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum | sha256sum | cut -d' ' -f1"
)


def chart_digest(directory: Path) -> str:
    """The chart directory's digest, exactly as DIGEST_COMMAND computes it (symbolic links are skipped)."""
    lines = []
    for root, _dirs, files in os.walk(directory):
        for name in files:
            path = Path(root, name)
            if path.is_symlink():
                continue
            relative = "./" + path.relative_to(directory).as_posix()
            if any(char in relative for char in "\\\n\r"):
                # sha256sum escapes such names; no chart needs them, so refuse rather than mimic.
                raise ValueError(f"{path}: a backslash or line break in a file name is not supported")
            lines.append((os.fsencode(relative), f"{_file_sha256(path)}  {relative}\n".encode()))
    manifest = b"".join(line for _key, line in sorted(lines))
    return hashlib.sha256(manifest).hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
