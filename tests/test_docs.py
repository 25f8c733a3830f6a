"""The documentation keeps up with the code: every setting and every command is described."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer.main

from kyso.cli import app
from kyso.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def _commands(group: typer.Typer, prefix: str = "") -> list[str]:
    click_group = typer.main.get_command(group)
    names = []
    for name, command in click_group.commands.items():  # type: ignore[attr-defined]
        if hasattr(command, "commands"):
            names += [f"{name} {sub}" for sub in command.commands]
        else:
            names.append(name)
    return sorted(prefix + n for n in names)


@pytest.mark.parametrize("field", sorted(Settings.model_fields))
def test_readme_configuration_table_lists_every_setting(field: str) -> None:
    assert f"`KYSO_{field.upper()}`" in (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("command", _commands(app))
def test_cli_reference_describes_every_command(command: str) -> None:
    assert f"`kyso {command}" in (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")


def test_quick_start_is_exactly_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quick_start = readme.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in quick_start.strip().splitlines()]
    assert commands == ["make run", "make test"]
