"""Finding the line of a TOML key, so every configuration error can name PATH:LINE.

tomllib gives values, not positions. This walks the source once and records the line of
every table header and every ``key =`` assignment under its full path, with array-of-table
indexes, e.g. ("sites", 12, "address") -> 87. It understands what the inventory uses:
[table], [[array]], dotted keys and inline tables on one line. For anything fancier it
falls back to the nearest enclosing key or header, which still points the user at the
right block.
"""

from __future__ import annotations

import re

Path = tuple[str | int, ...]

_BARE = r"[A-Za-z0-9_-]+"
_KEY = rf'(?:{_BARE}|"(?:[^"\\]|\\.)*"|\'[^\']*\')'
_DOTTED = rf"{_KEY}(?:\s*\.\s*{_KEY})*"
_HEADER = re.compile(rf"^\s*(\[\[?)\s*({_DOTTED})\s*\]\]?\s*(?:#.*)?$")
_ASSIGN = re.compile(rf"^\s*({_DOTTED})\s*=")
_INLINE_KEY = re.compile(rf"[{{,]\s*({_DOTTED})\s*=")
_KEY_PART = re.compile(_KEY)


def _split(dotted: str) -> list[str]:
    parts = []
    for match in _KEY_PART.finditer(dotted):
        part = match.group(0)
        if part[:1] in "\"'":
            part = part[1:-1]
        parts.append(part)
    return parts


class SourceMap:
    """Line numbers (1-based) of the keys and headers of one TOML document."""

    def __init__(self, text: str) -> None:
        self.lines: dict[Path, int] = {}
        array_counts: dict[Path, int] = {}
        current: Path = ()
        in_multiline: str | None = None
        for number, line in enumerate(text.splitlines(), start=1):
            if in_multiline is not None:
                if line.count(in_multiline) % 2 == 1:
                    in_multiline = None
                continue
            header = _HEADER.match(line)
            if header:
                parts = _split(header.group(2))
                resolved: list[str | int] = []
                for i, part in enumerate(parts):
                    resolved.append(part)
                    is_last = i == len(parts) - 1
                    key = tuple(resolved)
                    if header.group(1) == "[[" and is_last:
                        index = array_counts.get(key, 0)
                        array_counts[key] = index + 1
                        resolved.append(index)
                    elif key in array_counts:
                        resolved.append(array_counts[key] - 1)
                current = tuple(resolved)
                self.lines.setdefault(current, number)
                continue
            assign = _ASSIGN.match(line)
            if not assign:
                continue
            path = current + tuple(_split(assign.group(1)))
            for end in range(len(current) + 1, len(path) + 1):  # a.b.c = 1 also defines a, a.b
                self.lines.setdefault(path[:end], number)
            rest = line[assign.end() :]
            for quote in ('"""', "'''"):
                if rest.count(quote) % 2 == 1:
                    in_multiline = quote
            if rest.lstrip().startswith("{"):
                for inner in _INLINE_KEY.finditer(rest):
                    self.lines.setdefault(path + tuple(_split(inner.group(1))), number)

    def line_of(self, path: Path) -> int:
        """The line of ``path`` or of its nearest recorded ancestor; 1 if nothing matches."""
        probe = tuple(path)
        while probe:
            if probe in self.lines:
                return self.lines[probe]
            probe = probe[:-1]
        return 1
