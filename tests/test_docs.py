"""The README documents every command and option the CLI has (so neither can rot alone)."""

from __future__ import annotations

from pathlib import Path

import click

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


def test_every_setting_is_in_the_readme() -> None:
    from archiver.config import ENVIRONMENT

    assert [var for var, _ in ENVIRONMENT.values() if f"`{var}`" not in README] == []
