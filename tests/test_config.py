"""Settings come from one declaration each: flag, else environment variable, else default."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from click.testing import CliRunner

from archiver.cli import cli
from archiver.cli.common import build_settings
from archiver.config import DECLARED, Declared, Settings, settings_from_env
from archiver.errors import ConfigError

SECRET = "SENTINEL-HELP-KEY-77c1"

# for each kind of setting: an environment variable's text, its value, and a flag's value, all
# three unlike the default
GIVEN: dict[str, tuple[str, Any, Any]] = {
    "api_url": ("http://127.0.0.1:9/", "http://127.0.0.1:9/", "http://127.0.0.1:8/"),
    "database_url": ("sqlite:///env.db", "sqlite:///env.db", "sqlite:///flag.db"),
    "status_map": ("archived=succeeded", {"archived": "succeeded"}, {"rejected": "failed"}),
}


def given(declared: Declared) -> tuple[str, Any, Any]:
    if declared.name in GIVEN:
        return GIVEN[declared.name]
    if declared.parse is int:
        return "7", 7, 9
    if declared.parse is float:
        return "0.25", 0.25, 0.75
    return "from-env", "from-env", "from-flag"


def commands(group: Any = cli, prefix: str = "") -> dict[str, Any]:
    found = {}
    for name, command in group.commands.items():
        path = f"{prefix}{name}"
        if hasattr(command, "commands"):
            found.update(commands(command, f"{path} "))
        else:
            found[path] = command
    return found


def help_of(path: str, env: dict[str, str] | None = None) -> str:
    result = CliRunner().invoke(cli, [*path.split(), "-h"], env=env)
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())  # click wraps lines at spaces only


@pytest.mark.parametrize("declared", DECLARED, ids=lambda d: d.name)
def test_flag_else_environment_else_default(
    declared: Declared, monkeypatch: pytest.MonkeyPatch
) -> None:
    for other in DECLARED:
        monkeypatch.delenv(other.env, raising=False)
    text, value, flagged = given(declared)
    assert declared.default not in (value, flagged)
    assert getattr(Settings(), declared.name) == declared.default
    assert getattr(build_settings(), declared.name) == declared.default
    monkeypatch.setenv(declared.env, text)
    assert getattr(settings_from_env(), declared.name) == value
    assert getattr(build_settings(), declared.name) == value
    assert getattr(build_settings(**{declared.name: flagged}), declared.name) == flagged


def test_every_setting_has_its_own_env_var_and_flag_and_a_command_that_takes_it() -> None:
    assert [f.name for f in dataclasses.fields(Settings)] == [d.name for d in DECLARED]
    assert len({d.env for d in DECLARED}) == len({d.flag for d in DECLARED}) == len(DECLARED)
    known = set(commands())
    for declared in DECLARED:
        assert declared.commands - {"*"} <= known, declared.name
        assert any(declared.takes(path) for path in known)


@pytest.mark.parametrize("path", sorted(commands()))
def test_a_commands_setting_flags_are_those_declared_for_it(path: str) -> None:
    command = commands()[path]
    flags = {opt for param in command.params for opt in getattr(param, "opts", [])}
    settings_flags = {d.flag for d in DECLARED} & flags
    # simulate serves a fake API: it reads no settings
    expected = set() if path == "simulate" else {d.flag for d in DECLARED if d.takes(path)}
    assert settings_flags == expected


@pytest.mark.parametrize("path", ["sync", "run", "ingest", "report cost"])
def test_help_shows_each_settings_env_var_and_declared_default_but_no_secret(path: str) -> None:
    env = {d.env: given(d)[0] for d in DECLARED} | {"PIXXEL_API_KEY": SECRET}
    shown = help_of(path, env)
    for declared in (d for d in DECLARED if d.takes(path)):
        extra = f"[env var: {declared.env}; default: {declared.shown_default}]"
        assert " ".join(extra.split()) in shown, declared.name
    assert SECRET not in shown


def test_sync_help_shows_the_defaults_as_written() -> None:
    shown = help_of("sync")
    assert "ARCHIVER_RATE_LIMIT; default: 20]" in shown
    assert "ARCHIVER_BACKOFF_BASE; default: 0.5]" in shown
    assert "ARCHIVER_SETTLE_WINDOW; default: 86400]" in shown


@pytest.mark.parametrize(
    ("var", "text"),
    [
        ("ARCHIVER_BACKOFF_BASE", "-1"),
        ("ARCHIVER_POLL_JITTER", "1.5"),
        ("ARCHIVER_PAUSE_AFTER", "three"),
        ("ARCHIVER_STATUS_MAP", "archived"),
    ],
)
def test_a_bad_environment_value_is_a_config_error(var: str, text: str) -> None:
    with pytest.raises(ConfigError):
        settings_from_env({var: text})


def test_a_bad_flag_value_is_refused_by_the_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIXXEL_API_KEY", SECRET)
    for args in (["--poll-jitter", "2"], ["--backoff-max", "-1"], ["--status-map", "x"]):
        result = CliRunner().invoke(cli, ["sync", *args])
        assert result.exit_code == 2, (args, result.output)
        assert args[0] in result.output and SECRET not in result.output
