"""cbi_toolkit: declarative forecasting of commodity futures prices."""

from cbi_toolkit.errors import CbiError

__version__ = "0.1.0"
__all__ = ["CbiError", "__version__"]
