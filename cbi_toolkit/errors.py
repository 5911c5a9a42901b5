"""Errors a user can cause. The CLI prints their one-line message and exits 2."""

import re

#: C0/C1 control codes, DEL and the Unicode bidi/format controls a terminal acts on
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def safe_text(text: str) -> str:
    """``text`` on one line with every control code shown as an escape
    (``\\x1b``), so a message never moves the cursor, recolours or rewrites
    the terminal."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


class CbiError(Exception):
    """Base class: a problem the user can fix (spec, data, credentials, sink)."""

    exit_code = 2


class SpecError(CbiError):
    """The spec file is malformed or invalid."""


class DataError(CbiError):
    """Input data is missing, malformed or fails a validation rule."""


class SourceError(CbiError):
    """A data source could not be read or fetched."""


class SinkError(CbiError):
    """A forecast sink could not be written or read."""


class ArtifactError(CbiError):
    """A run folder or saved model is missing, incomplete or tampered with."""


class StorageError(CbiError):
    """The file system refused a write (full, read-only, not a folder)."""
