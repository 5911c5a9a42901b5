"""The union of source configs a spec's ``data:`` list accepts, keyed by ``kind``."""

from __future__ import annotations

from cbi_toolkit.sources.files import FileSource

# New source kinds join this union (use Annotated[A | B, Field(discriminator="kind")]).
SourceConfig = FileSource

__all__ = ["SourceConfig"]
