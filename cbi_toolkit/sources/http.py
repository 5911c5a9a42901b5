"""HTTP for the live sources: bounded retries with backoff, timeouts, and one-line
`SourceError`s that name the series.

Every connector downloads through :func:`get`. It retries connection errors,
timeouts, HTTP 429 and 5xx (``Retry-After`` honoured up to ``MAX_SLEEP``), refuses
a truncated body (fewer bytes than ``Content-Length``), an empty body, and HTML
where data was expected. Secrets in query parameters (``api_key``) never appear in
messages or logs: :func:`redact` masks them.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from cbi_toolkit.errors import SourceError
from cbi_toolkit.lazy import lazy_import

if TYPE_CHECKING:
    import requests
else:
    requests = lazy_import("requests")

log = logging.getLogger(__name__)

#: Attempts per request (first try included); ``CBI_HTTP_RETRIES`` overrides.
RETRIES = 4
#: First backoff in seconds, doubled per retry; ``CBI_HTTP_BACKOFF`` overrides (tests use 0).
BACKOFF = 1.0
#: Longest single wait, whatever ``Retry-After`` asks for.
MAX_SLEEP = 60.0
#: (connect, read) timeout in seconds; ``CBI_HTTP_TIMEOUT`` overrides both.
TIMEOUT = (10.0, 120.0)
USER_AGENT = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/124.0 Safari/537.36 cbi_toolkit")
SECRET_PARAMS = ("api_key", "apikey", "token", "crumb")
TRANSIENT = {429, 500, 502, 503, 504}


def redact(text: str) -> str:
    """Mask the values of secret query parameters (``api_key=...``) in a URL or message."""
    pattern = r"(?i)\b(" + "|".join(SECRET_PARAMS) + r")=[^&\s'\"]*"
    text = re.sub(pattern, r"\1=***", text)
    key = os.environ.get("FRED_API_KEY")
    return text.replace(key, "***") if key else text


class _RedactFilter(logging.Filter):
    """Masks secrets in records of the loggers that print request URLs (urllib3 at DEBUG)."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        masked = redact(msg)
        if masked != msg:
            record.msg, record.args = masked, ()
        return True


for _name in ("urllib3.connectionpool", "requests", __name__):
    logging.getLogger(_name).addFilter(_RedactFilter())


def _setting(name: str, default: float) -> float:
    value = os.environ.get(name)
    try:
        return float(value) if value not in (None, "") else default
    except ValueError:
        raise SourceError(f"{name}={value!r} is not a number") from None


def get(url: str, label: str, params: Mapping[str, str] | None = None,
        expect: str = "text", session: requests.Session | None = None) -> bytes:
    """GET ``url`` and return the body, or raise a one-line `SourceError` naming ``label``.

    ``expect`` is ``text`` (CSV/fixed width: HTML is refused), ``json`` or ``binary``.
    """
    retries = max(1, int(_setting("CBI_HTTP_RETRIES", RETRIES)))
    backoff = _setting("CBI_HTTP_BACKOFF", BACKOFF)
    t = _setting("CBI_HTTP_TIMEOUT", 0)
    timeout = (t, t) if t else TIMEOUT
    http = session or requests
    shown = redact(url)
    last = ""
    for attempt in range(1, retries + 1):
        try:
            resp = http.get(url, params=params, timeout=timeout,
                            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "gzip, deflate"})
        except requests.Timeout:
            last = "timed out"
        except requests.exceptions.ChunkedEncodingError:
            last = "broke off mid-download (partial body)"
        except requests.ConnectionError:
            last = "unreachable"
        except requests.RequestException as exc:
            last = f"request failed ({type(exc).__name__})"
        else:
            if resp.status_code in TRANSIENT:
                last = ("rate-limited (HTTP 429)" if resp.status_code == 429
                        else f"server error (HTTP {resp.status_code})")
                wait = _retry_after(resp) if resp.status_code == 429 else None
                if attempt < retries:
                    _sleep(wait if wait is not None else backoff * 2 ** (attempt - 1), label, last)
                continue
            if resp.status_code == 404:
                raise SourceError(f"{label}: not found at {shown} (HTTP 404); check the "
                                  "ticker/id/station and the source's base URL")
            if resp.status_code >= 400:
                raise SourceError(f"{label}: {shown} answered HTTP {resp.status_code}; "
                                  "check the id and credentials")
            return _check_body(resp, label, shown, expect)
        if attempt < retries:
            _sleep(backoff * 2 ** (attempt - 1), label, last)
    raise SourceError(f"{label}: {shown} {last} after {retries} attempts; "
                      "check the connection or try again later")


def _retry_after(resp: requests.Response) -> float | None:
    value = resp.headers.get("Retry-After", "")
    return float(value) if value.strip().isdigit() else None


def _sleep(seconds: float, label: str, why: str) -> None:
    seconds = min(max(seconds, 0.0), MAX_SLEEP)
    log.info("%s: %s; retrying in %.1fs", label, why, seconds)
    if seconds:
        time.sleep(seconds)


def _check_body(resp: requests.Response, label: str, shown: str, expect: str) -> bytes:
    body = resp.content
    declared = resp.headers.get("Content-Length")
    encoded = resp.headers.get("Content-Encoding", "identity") != "identity"
    if declared and declared.isdigit() and not encoded and len(body) < int(declared):
        raise SourceError(f"{label}: partial download from {shown} ({len(body)} of {declared} "
                          "bytes); try again")
    if not body.strip():
        raise SourceError(f"{label}: {shown} returned an empty body; the source has no data "
                          "for this request")
    head = body[:512].lstrip().lower()
    ctype = resp.headers.get("Content-Type", "").lower()
    if expect != "binary" and (head.startswith((b"<!doctype html", b"<html")) or "text/html" in ctype):
        raise SourceError(f"{label}: {shown} returned an HTML page instead of "
                          f"{'JSON' if expect == 'json' else 'data'}; the URL or the "
                          "provider's format changed")
    return body
