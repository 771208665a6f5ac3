"""Problems found in one inventory file, each as ``PATH:LINE: field: message``.

Every check of the loader reports the same way: through an ``Issue`` callback, with the
location of the value (its path of keys, ``("sites", 12, "parent")``) and a message in
the technician's words. ``IssueLog`` is the one collector behind it: it finds the line
the key is written on and keeps errors (the file is rejected) apart from warnings (it
loads, and they are shown). Checks that also serve the API (``events.build_event``) take
the bare callback, so the API can collect its problems its own way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bridgemon.config_source import Loc, SourceMap, toml_key

Issue = Callable[[Loc, str], None]


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    path: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.field}: " if self.field else ""
        return _one_line(f"{self.path}:{self.line}: {where}{self.message}")


def _one_line(text: str) -> str:
    """Messages quote user values with repr(); this is the guarantee behind that: no
    character that any reader (str.splitlines, a terminal, a log) takes for a line break
    or a control code gets out raw, so one issue is always exactly one line."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


class ConfigError(Exception):
    """Every problem found in one configuration file: by line, each once, and on one line
    in the order they were found (a set would order them by string hashes, which Python
    salts per process: the same file would read differently from run to run)."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = sorted(dict.fromkeys(issues), key=lambda issue: (issue.path, issue.line))
        super().__init__("\n".join(str(issue) for issue in self.issues))


def dotted(loc: Iterable[str | int]) -> str:
    """The field as messages show it: ``sites[12].checks.web``, odd keys quoted."""
    out = ""
    for part in loc:
        key = toml_key(part)
        out += f".{key}" if out and not isinstance(part, int) else key
    return out


class IssueLog:
    """The errors and warnings of one file, in the order they were found (ConfigError
    sorts them by line and keeps that order within a line)."""

    def __init__(self, path: str, source: SourceMap) -> None:
        self.path = path
        self.source = source
        self.errors: list[ConfigIssue] = []
        self.warnings: list[ConfigIssue] = []

    def line_of(self, loc: Loc) -> int:
        return self.source.line_of(loc)

    def error(self, loc: Loc, message: str) -> None:
        """An ``Issue``: the file cannot be used."""
        self.errors.append(self._at(loc, message))

    def warn(self, loc: Loc, message: str) -> None:
        """Worth showing, not worth refusing the file for."""
        self.warnings.append(self._at(loc, message))

    def _at(self, loc: Loc, message: str) -> ConfigIssue:
        return ConfigIssue(self.path, self.line_of(loc), dotted(loc), message)
