"""Text a device sent us, made fit to be shown: the one place device strings are cleaned.

Reasons and details travel to the status page, the CLI (a terminal), reports, logs and
Prometheus-adjacent JSON. What a device puts in them — an HTTP or SIP reason phrase, a
Server header, a Location, a certificate's names, the start of a garbage answer — is
untrusted bytes: any encoding, ANSI escapes that recolour or clear a terminal, NULs and
bells, right-to-left overrides that make text read backwards, or megabytes of it. Every
probe passes such strings through :func:`device_text` before they reach a reason or a
detail; the probe's own words need no cleaning.

Must not: raise, whatever the input; return anything with a control or format character.
"""

from __future__ import annotations

import re
import unicodedata

#: Default cap, in characters: a reason is one line in a table cell, not a document.
#: Callers quoting something longer-lived (a Location, a Server header) pass their own.
LIMIT = 120

# ANSI/VT escape sequences (CSI "ESC [ ... m", OSC "ESC ] ... BEL", two-character
# escapes) and their 8-bit C1 forms: removed whole, so no "[31m" stays behind.
_ESCAPES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b\]|\x9d)[^\x07\x1b\x9c]{0,256}(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -~]?"
)
_SPACES = re.compile(r"\s+")
_REPLACEMENTS = re.compile("\ufffd{2,}")


def device_text(raw: bytes | str, limit: int = LIMIT, *, marked: bool = False) -> str:
    """``raw`` as one clean line of at most ``limit`` characters ("…" marks a cut).

    Bytes are decoded as UTF-8 (what SIP mandates and what devices mostly send), bytes
    that are not UTF-8 becoming one U+FFFD per run; escape sequences are removed, control
    and format characters dropped (tabs and line breaks first become spaces), whitespace
    collapsed, and the text put in NFC so that Vietnamese diacritics sent decomposed look
    the same as composed ones and a cut never separates a letter from its mark.

    ``marked``: what was removed leaves a U+FFFD behind. For quoting a malformed value
    ("bad Content-Length …"), where silently dropping "\x1b[2J" from "\x1b[2J9" would
    show a "9" that looks fine; a reason phrase or a name reads better without marks.
    """
    limit = max(1, limit)
    mark = "\ufffd" if marked else ""
    # Bound the work before doing any: nothing past a few times the cap can be shown.
    raw = raw[: limit * 8 + 64]
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    text = _ESCAPES.sub(mark, text)
    text = _SPACES.sub(" ", text)
    text = "".join(mark if unicodedata.category(c).startswith("C") else c for c in text)
    text = unicodedata.normalize("NFC", text)
    text = _REPLACEMENTS.sub("\ufffd", _SPACES.sub(" ", text)).strip()
    if len(text) > limit:
        cut = limit - 1
        while cut > 0 and unicodedata.combining(text[cut]):  # keep a mark with its letter
            cut -= 1
        text = text[:cut].rstrip() + "…"
    return text


def latin1_text(value: str, limit: int = LIMIT, *, marked: bool = False) -> str:
    """:func:`device_text` of a header value that was decoded as ISO-8859-1 (as HTTP
    heads are, byte for byte): its bytes are taken back and decoded as UTF-8."""
    return device_text(value.encode("iso-8859-1", errors="replace"), limit, marked=marked)
