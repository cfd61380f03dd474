"""Every command's --help shows its text whole: rich markup must not eat a ``[key]``.

Typer renders help with rich, where ``[key]`` or ``[[bus]]`` is a markup tag and
vanishes unless written ``\\[key]``. A config section named in a help text is
exactly what a person needs to see, so each bracketed word of every help text is
looked for in the rendered page.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from edge_agent.cli import app as edge_agent
from hub.cli import app as meterhub
from simulators.cli import app as meter_sim

BRACKETED = re.compile(r"(?<!\\)\[[^\]\s]*\]+")
BOX = re.compile(r"[│╭╮╰╯─┃]")


def commands(app: typer.Typer) -> list[tuple[list[str], Any]]:
    """Every command of ``app`` with the words that call it."""
    found: list[tuple[list[str], Any]] = []

    def walk(command: Any, path: list[str]) -> None:
        found.append((path, command))
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return found


def help_texts(command: Any) -> list[str]:
    """The command's first paragraph (what its page shows), its options' help and defaults."""
    texts = [(command.help or "").split("\n\n")[0]]
    for param in command.params:
        texts.append(getattr(param, "help", None) or "")
        if isinstance(getattr(param, "show_default", None), str):
            texts.append(param.show_default)
    return texts


ALL = [(name, app, path, command) for name, app in
       (("edge-agent", edge_agent), ("meterhub", meterhub), ("meter-sim", meter_sim))
       for path, command in commands(app)]


@pytest.mark.parametrize(("name", "app", "path", "command"), ALL,
                         ids=[" ".join([n, *p]) or n for n, _, p, _ in ALL])
def test_bracketed_words_survive_the_help_page(name, app, path, command):
    shown = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"},
                               terminal_width=200)
    assert shown.exit_code == 0, shown.output
    page = " ".join(BOX.sub(" ", shown.output).split())
    wanted = Counter(word for text in help_texts(command) for word in BRACKETED.findall(text))
    for word, times in wanted.items():
        assert page.count(word) >= times, f"{name} {' '.join(path)} --help lost {word!r}"
