"""Finding the line of a TOML key, so every configuration error can name PATH:LINE.

tomllib gives values, not positions. This walks the source once and records the line of
every table header and every ``key =`` assignment under its full path, with array-of-table
indexes, e.g. ("sites", 12, "address") -> 87. It understands what the inventory uses:
[table], [[array]], dotted keys and inline tables on one line. For anything fancier it
falls back to the nearest enclosing key or header, which still points the user at the
right block.

Lines are counted the way TOML counts them: only "\n" ends a line. (str.splitlines also
breaks at form feed, \x1c-\x1e, \x85, U+2028 and U+2029, which TOML allows inside strings
and comments: counting those would name lines past the end of the file.)

It also holds what messages need to show user text safely: a key as TOML would write it,
and where a document that tomllib could not even parse is too deep or too long a number.
"""

from __future__ import annotations

import re

# Where a value is: its path of keys, array-of-tables indexes included ("sites", 12, "id").
Loc = tuple[str | int, ...]

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
        self.lines: dict[Loc, int] = {}
        array_counts: dict[Loc, int] = {}
        current: Loc = ()
        in_multiline: str | None = None
        for number, line in enumerate(toml_lines(text), start=1):
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

    def line_of(self, path: Loc) -> int:
        """The line of ``path`` or of its nearest recorded ancestor; 1 if nothing matches."""
        probe = tuple(path)
        while probe:
            if probe in self.lines:
                return self.lines[probe]
            probe = probe[:-1]
        return 1


def toml_lines(text: str) -> list[str]:
    """The lines of a TOML document, split only at "\n" (a "\r" before it is dropped)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the text ends with a newline: no line after it
    return [line.removesuffix("\r") for line in lines]


def line_count(text: str) -> int:
    """The number of the last line (at least 1, so an empty file still has a line 1)."""
    return max(len(toml_lines(text)), 1)


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def toml_key(part: str | int) -> str:
    """One part of a field path: a bare key as is, an index as [N], any other key quoted
    as a TOML basic string, so a key holding a newline cannot start a forged line."""
    if isinstance(part, int):
        return f"[{part}]"
    if _BARE_KEY.fullmatch(part):
        return part
    return '"' + "".join(_escape(char) for char in part) + '"'


_SHORT_ESCAPES = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r",
                  '"': '\\"', "\\": "\\\\"}


def _escape(char: str) -> str:
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    if char.isprintable():
        return char
    code = ord(char)
    return f"\\u{code:04X}" if code <= 0xFFFF else f"\\U{code:08X}"


# Skipped: strings (basic, literal, both multi-line) and comments; counted: brackets that
# open or close an array or inline table, and runs of digits.
_TOKEN = re.compile(
    r'"""(?:\\.|[^\\])*?"""'  # multi-line basic string
    r"|'{3}.*?'{3}"  # multi-line literal string
    r'|"(?:\\.|[^"\\\n])*"'  # basic string
    r"|'[^'\n]*'"  # literal string
    r"|#[^\n]*"  # comment
    r"|(?P<open>[\[{])|(?P<close>[\]}])|(?P<digits>[0-9][0-9_]*)",
    re.DOTALL,
)


def deepest_nesting(text: str) -> tuple[int, int]:
    """(depth, line): the deepest nesting of arrays and inline tables and the first line
    that reaches it. For a document tomllib gave up on with RecursionError."""
    depth = deepest = 0
    line_at = 1
    for match in _TOKEN.finditer(text):
        if match.group("open"):
            depth += 1
            if depth > deepest:
                deepest, line_at = depth, text.count("\n", 0, match.start()) + 1
        elif match.group("close"):
            depth = max(depth - 1, 0)
    return deepest, line_at


def longest_number(text: str) -> tuple[int, int]:
    """(digits, line) of the longest run of digits outside strings and comments. For a
    document tomllib refused because an integer was too long to convert."""
    longest, line_at = 0, 1
    for match in _TOKEN.finditer(text):
        digits = match.group("digits")
        if digits:
            count = len(digits) - digits.count("_")
            if count > longest:
                longest, line_at = count, text.count("\n", 0, match.start()) + 1
    return longest, line_at
