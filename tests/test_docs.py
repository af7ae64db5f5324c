"""The README documents every command and option the CLI has (so neither can rot alone)."""

from __future__ import annotations

from pathlib import Path

import click

from archiver import config
from archiver.cli import cli

README = (Path(__file__).parent.parent / "README.md").read_text()


def walk(group: click.Group, prefix: str = "archiver") -> list[tuple[str, click.Command]]:
    found = []
    for name, command in group.commands.items():
        path = f"{prefix} {name}"
        if isinstance(command, click.Group):
            found += walk(command, path)
        else:
            found.append((path, command))
    return found


def test_every_command_and_option_is_in_the_readme() -> None:
    missing = []
    for path, command in walk(cli):
        if f"`{path}" not in README:
            missing.append(path)
        for param in command.params:
            for opt in getattr(param, "opts", []):
                if opt.startswith("--") and opt not in README:
                    missing.append(f"{path} {opt}")
    assert missing == []


def test_readme_opens_with_the_two_commands() -> None:
    block = README.split("```sh", 1)[1].split("```", 1)[0]
    assert "pip install . && archiver demo" in block
    assert "python -m pip install '.[test]' && python -m pytest -q" in block


def readme_settings_table() -> list[list[str]]:
    """The rows of the table under "## Settings", each a list of its cells."""
    section = README.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines[2:]]


def test_the_readme_settings_table_is_the_declaration() -> None:
    """Every setting, in order, with its description, env var, flag and default as declared."""
    declared = [[d.help, f"`{d.env}`", f"`{d.flag}`", d.shown_default] for d in config.DECLARED]
    assert readme_settings_table() == declared
