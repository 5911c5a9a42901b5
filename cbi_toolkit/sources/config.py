"""The union of source configs a spec's ``data:`` list accepts, keyed by ``kind``."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from cbi_toolkit.sources.bigquery import BigQuerySource
from cbi_toolkit.sources.cftc import CftcSource
from cbi_toolkit.sources.files import FileSource
from cbi_toolkit.sources.fred import FredSource
from cbi_toolkit.sources.weather import WeatherSource
from cbi_toolkit.sources.yahoo import YahooSource

# New source kinds join this union.
SourceConfig = Annotated[
    FileSource | YahooSource | FredSource | CftcSource | WeatherSource | BigQuerySource,
    Field(discriminator="kind"),
]

__all__ = ["SourceConfig"]
