"""Errors a user can cause. The CLI prints their one-line message and exits 2."""


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
