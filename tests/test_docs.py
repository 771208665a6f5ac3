"""The README and docs/ as a newcomer reads them: commands that parse, links that resolve."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from bridgemon.cli import build_parser
from tests.conftest import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")),
        *sorted((REPO / "docs" / "vi").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def console_commands(text: str) -> list[str]:
    """Every ``$ bridgemon …`` line of the ```console blocks, without its comment."""
    commands = []
    for block in re.findall(r"```console\n(.*?)```", text, re.S):
        for line in block.splitlines():
            if line.startswith("$ bridgemon "):
                commands.append(line[2:].split("  #")[0].strip())
    return commands


def test_every_bridgemon_command_in_the_readme_parses() -> None:
    commands = console_commands((REPO / "README.md").read_text(encoding="utf-8"))
    # every command but lab (its own parser; indented blocks, as root) is shown at least once
    assert {shlex.split(command)[1] for command in commands} >= {
        "run", "check-config", "sites", "test", "probe", "history", "report"}
    for command in commands:
        argv = shlex.split(command)[1:]
        try:
            build_parser().parse_args(argv)
        except SystemExit as exc:  # argparse's way of refusing
            pytest.fail(f"README command does not parse (exit {exc.code}): {command}")


def test_the_first_look_puts_bridgemon_on_path_before_using_it() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    first_look = text.split("## A first look", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in first_look.splitlines() if line.startswith("$ ")]
    assert lines[0].startswith("$ . .venv/bin/activate"), lines[0]


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.name)
def test_docs_link_only_to_files_the_repository_has(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    assert "../shared" not in text and "DESIGN.md" not in text
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path = (doc.parent / target).resolve()
        assert path.is_relative_to(REPO), f"{doc}: {target} leaves the repository"
        assert path.exists(), f"{doc}: {target} does not exist"


def test_the_ci_script_says_it_is_for_ci_machines_only() -> None:
    script = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "CI machines only" in script and "never on a monitoring" in readme


def test_the_vietnamese_runbook_has_every_alert_and_the_readme_links_both_guides() -> None:
    import yaml

    rules = yaml.safe_load((REPO / "deploy" / "prometheus" / "rules" /
                            "bridgemon-alerts.yml").read_text(encoding="utf-8"))
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]
              if "alert" in rule}
    runbook = (REPO / "docs" / "vi" / "so-tay-van-hanh.md").read_text(encoding="utf-8")
    sections = dict(re.findall(r"^## (\w+)\n(.*?)(?=^## |\Z)", runbook, re.M | re.S))
    assert set(sections) == alerts
    for name, text in sections.items():
        assert "**Ý nghĩa.**" in text and "**Cần làm.**" in text, name
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "(docs/vi/bat-dau-nhanh.md)" in readme and "(docs/vi/so-tay-van-hanh.md)" in readme
