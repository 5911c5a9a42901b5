"""The BigQuery client both the BigQuery source and the BigQuery sink use: credentials from
the standard Google auth chain (anonymous for an emulator), bounded retries, and client and
network exceptions turned into one-line toolkit errors. ``google-cloud-bigquery`` is imported
on first use so that loading a spec stays fast."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

from cbi_toolkit.errors import CbiError

if TYPE_CHECKING:
    from google.cloud import bigquery

_SCOPES = ["https://www.googleapis.com/auth/bigquery"]


def retry_policy(deadline_s: float):
    """The client's default retry predicate (5xx, 429 rate limits, network) with a bounded
    deadline instead of the default ten minutes."""
    from google.cloud.bigquery.retry import DEFAULT_RETRY

    return DEFAULT_RETRY.with_deadline(deadline_s).with_delay(
        initial=0.25, maximum=min(4.0, deadline_s), multiplier=2.0)


def make_client(project: str, location: str | None, api_endpoint: str | None, error: type,
                label: str) -> bigquery.Client:
    """A client with credentials from the standard auth chain (anonymous for an emulator)."""
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError
    from google.cloud import bigquery

    try:
        credentials, _ = google.auth.default(scopes=_SCOPES)
    except DefaultCredentialsError as exc:
        if not api_endpoint:
            raise error(f"{label}: no usable Google credentials ({_first_line(exc)[:120]}); "
                        "run `gcloud auth application-default login` or set "
                        "GOOGLE_APPLICATION_CREDENTIALS to a service-account key file") from None
        from google.auth.credentials import AnonymousCredentials

        credentials = AnonymousCredentials()
    options = {"api_endpoint": api_endpoint} if api_endpoint else None
    return bigquery.Client(project=project, credentials=credentials, location=location,
                           client_options=options)


def explain(exc: BaseException, endpoint: str | None) -> tuple[str, str]:
    """(what went wrong, what to do) for a client exception, each one line."""
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc

    where = endpoint or "BigQuery"
    if isinstance(exc, gexc.RetryError):
        if exc.cause is None:
            return (f"gave up after retrying ({_first_line(exc)})",
                    f"check the network and that {where} is reachable, then run again")
        what, todo = explain(exc.cause, endpoint)
        return f"{what}, still failing when the retry deadline ran out", todo
    if isinstance(exc, auth_exc.RefreshError):
        return (f"credentials rejected ({_first_line(exc)})",
                "run `gcloud auth application-default login` or renew the service-account key")
    if isinstance(exc, auth_exc.GoogleAuthError):
        return (f"credentials problem ({_first_line(exc)})",
                "check GOOGLE_APPLICATION_CREDENTIALS or run `gcloud auth application-default "
                "login`")
    reason = ""
    with contextlib.suppress(AttributeError, IndexError, KeyError, TypeError):
        reason = exc.errors[0]["reason"]
    message = _first_line(exc)
    if isinstance(exc, gexc.TooManyRequests) or reason in ("quotaExceeded", "rateLimitExceeded"):
        return (f"quota or rate limit exceeded ({message})",
                "wait and run again, or raise the project's BigQuery quota")
    if isinstance(exc, gexc.Forbidden | gexc.Unauthorized):
        return (f"permission denied ({message})",
                "grant the credentials roles/bigquery.dataEditor on the dataset and "
                "roles/bigquery.jobUser on the project (see docs/bigquery.md)")
    if isinstance(exc, gexc.NotFound) and "location" in message.lower():
        return (f"not found in this location ({message})",
                "set the spec's location to the dataset's location")
    if isinstance(exc, gexc.NotFound):
        return (f"not found ({message})", "check project, dataset and table names")
    if isinstance(exc, gexc.GoogleAPICallError):
        return (message, "fix the cause named above and run again")
    import requests

    if isinstance(exc, ConnectionError | TimeoutError | requests.exceptions.RequestException):
        errno = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(exc))
        detail = errno.group(1).strip() if errno else message
        return (f"cannot reach {where} ({detail})",
                f"check the network and that {where} is up, then run again")
    return (message, "fix the cause named above and run again")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def _is_client_error(exc: BaseException) -> bool:
    import requests
    from google.api_core.exceptions import GoogleAPIError
    from google.auth.exceptions import GoogleAuthError

    return isinstance(exc, GoogleAPIError | GoogleAuthError | ConnectionError | TimeoutError
                      | requests.exceptions.RequestException)


@contextlib.contextmanager
def translated(error: type, label: str, endpoint: str | None, hint: str = "") -> Iterator[None]:
    """Turn client and network exceptions into a one-line ``error`` naming ``label``."""
    try:
        yield
    except CbiError:
        raise
    except Exception as exc:
        if not _is_client_error(exc):
            raise
        what, todo = explain(exc, endpoint)
        raise error(f"{label}: {what}; {todo}{hint}") from None
