"""What every answer of the web app carries for browsers, and the rule that keeps web pages
from acting on the daemon.

- Headers: ``nosniff``, ``X-Frame-Options: DENY``, no referrer to other sites,
  ``Server: bridgemon`` without versions, and a Content-Security-Policy. JSON and text
  answers get one that allows nothing; an HTML page gets one that allows exactly its own
  inline styles, by their hashes, and no inline script, so injected markup can neither
  run nor restyle the page. The technicians' pages load one stylesheet and one script
  from the daemon (``'self'``: static/ in the package) and nothing else.
- Cross-site requests: a page open in a browser on the monitoring host can send a POST to
  127.0.0.1 (a plain HTML form needs no permission), and the browser says where it came
  from. Any state-changing request that a browser marks as coming from another site, or
  from a page whose host is a name rather than an address (DNS rebinding makes a foreign
  page same-origin with a name), is refused. The name rule holds only while the pages are
  open to anyone who reaches them (no ``[[web.users]]``): with users, a rebinding page has
  neither the session cookie nor its CSRF token (auth.py), and the daemon is meant to be
  reached by name (its certificate's, or a reverse proxy's).
"""

from __future__ import annotations

import base64
import hashlib
import html
import ipaddress
import re

from aiohttp import web

from bridgemon.cooperative import Steps, drain

# Set by auth.py's middleware: host names are fine in Origin (users are configured).
NAMED_HOSTS_OK: web.RequestKey[bool] = web.RequestKey("bridgemon_named_hosts_ok")

STRICT_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

_STYLE_BLOCK = re.compile(r"<style\b[^>]*>(.*?)</style\s*>", re.IGNORECASE | re.DOTALL)
_STYLE_ATTR = re.compile(r"""\sstyle\s*=\s*(?:"([^"]*)"|'([^']*)')""", re.IGNORECASE)
_MATCHES_PER_STEP = 200


def _hash(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


def html_policy(page: str, *, own_files: bool = False) -> str:
    """The CSP of one HTML page: its own ``<style>`` blocks and ``style`` attributes, by
    hash, nothing else. Computed from the page sent, so it cannot drift from a template.

    ``own_files``: the technicians' pages, which load their stylesheet and their one script
    (live updates) from the daemon itself (``'self'``), and fetch their live parts from it;
    still no inline script, so injected markup cannot run."""
    return drain(html_policy_steps(page, own_files=own_files))


def html_policy_steps(page: str, *, own_files: bool = False) -> Steps[str]:
    """``html_policy`` pausing every few hundred matches (see cooperative.py): on a
    12,000-site page one ``findall`` of the style attributes held the loop for 4 ms."""
    sources: list[str] = []
    for count, match in enumerate(_STYLE_BLOCK.finditer(page), 1):
        sources.append(_hash(match.group(1)))
        if count % _MATCHES_PER_STEP == 0:
            yield
    attributes: set[str] = set()
    for count, match in enumerate(_STYLE_ATTR.finditer(page), 1):
        attributes.add(html.unescape(match.group(1) or match.group(2) or ""))
        if count % _MATCHES_PER_STEP == 0:
            yield
    if attributes:
        # Hashes of style attributes count only with 'unsafe-hashes' (CSP level 3).
        sources.append("'unsafe-hashes'")
        sources.extend(_hash(value) for value in sorted(attributes))
    if own_files:
        sources.insert(0, "'self'")
    style = " ".join(dict.fromkeys(sources)) or "'none'"
    scripts = "script-src 'self'; connect-src 'self'; " if own_files else ""
    return (f"default-src 'none'; style-src {style}; {scripts}form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'")


async def add_security_headers(_request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: runs after aiohttp filled in its defaults, before headers go."""
    headers = response.headers
    headers["Server"] = "bridgemon"
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    # Not "no-referrer": with it Chromium sends "Origin: null" on a page's own form posts,
    # which the same-site rule below must refuse. "same-origin" still tells other sites
    # nothing.
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("Content-Security-Policy", STRICT_CSP)


def _address_or_localhost(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def cross_site(request: web.Request) -> str | None:
    """Why this state-changing request is refused as coming from a web page of another
    site, or None. Clients that are not browsers (curl, scripts) send neither header."""
    fetch_site = request.headers.get("Sec-Fetch-Site", "").strip().lower()
    if fetch_site not in ("", "same-origin", "none"):
        return f"a browser sent it from another site (Sec-Fetch-Site: {fetch_site})"
    origin = request.headers.get("Origin")
    if origin is None:
        return None
    try:
        own = request.url.origin()
        host = request.url.host
    except ValueError:
        return "the request's Host header is not valid"
    if origin.strip().lower() != str(own).lower():
        return f"a browser sent it from another origin ({origin[:100]!r}, not {str(own)!r})"
    if not request.get(NAMED_HOSTS_OK, False) and not _address_or_localhost(host):
        return "a browser sent it from a page named by host name, not by address"
    return None
