"""Heavy libraries imported on first use, so that loading a spec (``cbi-run --check``)
does not pay for pandas and requests it never calls.

``pd = lazy_import("pandas")`` binds a module object at once and runs the library's own
import the first time an attribute is read (`importlib.util.LazyLoader`); modules that
annotate with the library import it for real under ``TYPE_CHECKING``."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def lazy_import(name: str) -> ModuleType:
    """The module ``name``: the real one if already imported, else a lazy one."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module
