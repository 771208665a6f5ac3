"""What every technician's page shares: the templates, the static files, Vietnamese
formats of numbers, times and durations, and the page/live-parts rendering.

Each page is a context built from a Snapshot on the loop a slice at a time or, for the
small ones, in a worker thread (pages.py; cooperative.py says why), rendered
whole for a browser, or as its live parts only (``data-live`` elements, swapped in place
by static/live.js) for the JSON the page polls. Both from the same part templates, so a
live update can never show something the page itself would not.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from importlib import resources
from typing import Any, Generic, TypeVar

import jinja2

from bridgemon import __version__
from bridgemon.cooperative import Steps, drain
from bridgemon.events import ZONE
from bridgemon.inventory import Inventory

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("bridgemon.web", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def compile_templates() -> None:
    """Compile every page template now, while the daemon starts, not at a first request:
    compiling the overview's templates held the loop ~20 ms, beside the engine."""
    for name in _ENV.list_templates(extensions=["j2"]):
        _ENV.get_template(name)


LIVE_EVERY = 10.0  # seconds between two live updates of an open page

# name -> (body, media type): a handful of small files, read once at import, so serving
# one never touches the disk (nor the loop) and its URL carries its hash (cached forever).
_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
STATIC: dict[str, tuple[bytes, str]] = {
    entry.name: (entry.read_bytes(), _TYPES[entry.name[entry.name.rindex("."):]])
    for entry in resources.files("bridgemon.web").joinpath("static").iterdir()
    if entry.name[entry.name.rfind("."):] in _TYPES
}
_STATIC_URLS = {name: f"/static/{name}?v={hashlib.sha256(body).hexdigest()[:12]}"
                for name, (body, _type) in STATIC.items()}


def static(name: str) -> str:
    return _STATIC_URLS[name]


def render_page(template: str, context: Mapping[str, Any]) -> str:
    return drain(render_page_steps(template, context))


def render_parts(names: Iterable[str], context: Mapping[str, Any]) -> dict[str, str]:
    return drain(render_parts_steps(names, context))


def render_page_steps(template: str, context: Mapping[str, Any]) -> Steps[str]:
    """``render_page`` pausing after each piece jinja2 produces (see cooperative.py)."""
    chunks: list[str] = []
    for chunk in _ENV.get_template(template).generate(**_common(context)):
        chunks.append(chunk)
        yield
    return "".join(chunks)


def render_parts_steps(names: Iterable[str], context: Mapping[str, Any]
                       ) -> Steps[dict[str, str]]:
    full = _common(context)
    parts: dict[str, str] = {}
    for name in names:
        chunks: list[str] = []
        for chunk in _ENV.get_template(f"parts/{name}.html.j2").generate(**full):
            chunks.append(chunk)
            yield
        parts[name] = "".join(chunks)
    return parts


def _common(context: Mapping[str, Any]) -> dict[str, Any]:
    return {"static": static, "version": __version__,
            "live_every": int(LIVE_EVERY * 1000), **context}


# -- words and numbers -----------------------------------------------------------------


def vn(number: float | None, digits: int = 1) -> str:
    """Vietnamese decimal comma: 12,5."""
    return "—" if number is None else f"{number:.{digits}f}".replace(".", ",")


def clock(timestamp: float, with_year: bool = False) -> str:
    """A moment as Vietnamese read it, in the province's time zone: 14:05 27/11."""
    shape = "%H:%M %d/%m/%Y" if with_year else "%H:%M %d/%m"
    return datetime.fromtimestamp(timestamp, ZONE).strftime(shape)


def ago(seconds: float) -> str:
    """How long, in words: "dưới 1 phút", "12 phút", "3 giờ 5 phút", "2 ngày 4 giờ". No
    seconds: a page whose live parts changed only by those would be sent again at every
    poll (see pages.py, ``seen``)."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return "dưới 1 phút"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} phút"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} giờ {minutes} phút" if minutes else f"{hours} giờ"
    days, hours = divmod(hours, 24)
    return f"{days} ngày {hours} giờ" if hours else f"{days} ngày"


_DIALLED = re.compile(r"\s*(\+?[\d\s().-]+)")  # the number before any words ("máy lẻ 12")


def tel(phone: str | None) -> str | None:
    """A phone number as a ``tel:`` link wants it (digits and a leading +), or None."""
    match = _DIALLED.match(phone or "")
    if match is None:
        return None
    number = match.group(1)
    digits = ("+" if number.startswith("+") else "") + re.sub(r"\D", "", number)
    return digits if len(digits.lstrip("+")) >= 3 else None


def fold(text: str) -> str:
    """Lower case without diacritics, so "tam ky" finds "Thành phố Tam Kỳ"."""
    decomposed = unicodedata.normalize("NFD", text.lower().replace("đ", "d"))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


T = TypeVar("T")


class PerInventory(Generic[T]):
    """A table derived from an inventory, built once per inventory, a slice of sites at a
    time on the loop (``build`` yields between slices: see cooperative.py); a reload's new
    inventory replaces it. Two pages asking at once may both build it: the same table."""

    def __init__(self, build: Callable[[Inventory], Steps[T]]) -> None:
        self._build = build
        self._cached: tuple[Inventory, T] | None = None

    def steps(self, inventory: Inventory) -> Steps[T]:
        cached = self._cached
        if cached is not None and cached[0] is inventory:
            return cached[1]
        table = yield from self._build(inventory)
        self._cached = (inventory, table)
        return table

    def get(self, inventory: Inventory) -> T:
        return drain(self.steps(inventory))
