"""Load a custom-resource handler from `lambda/<name>/` as Lambda would run it.

In Lambda the handler's folder is the import root: `index.py` imports its siblings by their plain names
(`from cluster_diff import ...`). Tests reproduce that by putting the folder on `sys.path`. Every handler's
entry module is called `index`, so `index` is loaded under a name unique to its handler
(`<name>_index`); sibling modules keep their plain names, the same module objects `index` imports, so an
exception class a test names is the one the handler raises. Sibling names must therefore differ between
handlers; a clash is an error here rather than a test silently reading another handler's module.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

LAMBDA_DIR = Path(__file__).resolve().parents[2] / "lambda"
ENTRY = "index"


def load_handler(handler_dir_name: str, module: str = ENTRY) -> ModuleType:
    """`lambda/<handler_dir_name>/<module>.py`, imported once per test session with its folder importable."""
    directory = LAMBDA_DIR / handler_dir_name
    path = directory / f"{module}.py"
    if not path.is_file():
        raise FileNotFoundError(f"no handler module {path}")
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))
    if module != ENTRY:
        loaded = importlib.import_module(module)
    else:
        loaded = sys.modules.get(f"{handler_dir_name}_{ENTRY}") or _load_entry(handler_dir_name, path)
    if Path(loaded.__file__ or "").resolve() != path:
        raise ImportError(f"module {module!r} resolves to {loaded.__file__}, not {path}: rename one of them")
    return loaded


@contextlib.contextmanager
def fresh_handler(handler_dir_name: str, log_memory: str) -> Iterator[ModuleType]:
    """The handler's entry module with an empty client cache and an empty per-request log memory (the
    module-level dict named `log_memory`), as a new Lambda container starts; the cache is emptied again after,
    so no stubbed client outlives the test."""
    module = load_handler(handler_dir_name)
    real_client = module._client  # a test may replace the attribute with a stub until after this teardown
    real_client.cache_clear()
    getattr(module, log_memory).clear()
    yield module
    real_client.cache_clear()


def _load_entry(handler_dir_name: str, path: Path) -> ModuleType:
    name = f"{handler_dir_name}_{ENTRY}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    # Registered before it runs, as `import` does, so that its classes resolve their own module.
    sys.modules[name] = loaded
    try:
        spec.loader.exec_module(loaded)
    except BaseException:
        del sys.modules[name]
        raise
    return loaded
