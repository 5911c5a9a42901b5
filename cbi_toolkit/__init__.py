"""cbi_toolkit: declarative forecasting of commodity futures prices.

``import cbi_toolkit as cbi``: ``cbi.load_spec``, ``cbi.load_data``, ``cbi.build_pipeline``,
``cbi.evaluate``, ``cbi.fit``, ``cbi.forecast`` (see :mod:`cbi_toolkit.api`). They are
imported on first use, so ``import cbi_toolkit.spec`` stays light.
"""

from cbi_toolkit.errors import CbiError

__version__ = "0.1.0"
_API = ("build_pipeline", "evaluate", "fit", "forecast", "load_data", "load_spec")
__all__ = ["CbiError", "__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from cbi_toolkit import api

        return getattr(api, name)
    raise AttributeError(f"module 'cbi_toolkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
