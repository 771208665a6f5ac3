"""What bridgemon's bodies are: the media types of the API, /metrics, the status page and
each test-run report format, with the file extension a saved report gets.

Every text bridgemon writes is UTF-8; a type that is text is sent with that charset said.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST

CHARSET = "utf-8"
JSON = "application/json"
HTML = "text/html"
CSV = "text/csv"
TEXT = "text/plain"
# The Prometheus text exposition, as the client library we render with names it (the
# version parameter follows the library).
METRICS = CONTENT_TYPE_LATEST

# Report format -> (media type, file extension). The formats are bridgemon.report's.
REPORTS: dict[str, tuple[str, str]] = {
    "table": (TEXT, "txt"),
    "json": (JSON, "json"),
    "csv": (CSV, "csv"),
    "html": (HTML, "html"),
}


def with_charset(media_type: str) -> str:
    """The Content-Type header of a UTF-8 body of ``media_type``."""
    return f"{media_type}; charset={CHARSET}"


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether a request's ``Accept-Encoding`` takes gzip (``q=0`` refuses it)."""
    for part in accept_encoding.split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() in ("gzip", "*"):
            return params.replace(" ", "").lower() not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False
