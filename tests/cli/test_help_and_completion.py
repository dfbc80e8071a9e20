"""Every option says what it does, and completion comes from the same tree (issue #17)."""

from __future__ import annotations

import argparse
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from labledger.cli.completion import bash_script, words
from labledger.cli.main import build_parser, run


def _actions(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, argparse.Action]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _actions(child, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction | argparse._VersionAction):
            yield path, action


def test_every_option_and_argument_has_help() -> None:
    missing = [
        f"{path} {'/'.join(action.option_strings) or action.dest}"
        for path, action in _actions(build_parser(), "labledger")
        if not action.help
    ]
    assert missing == []


def test_every_read_verb_takes_format() -> None:
    reads = [
        "read",
        "read-all",
        "streams",
        "verify",
        "runs",
        "runs show",
        "runs compare",
        "runs reap",
        "doctor",
        "anchor",
        "project status",
        "project run",
        "audit",
        "catalog",
        "keys",
        "replay",
        "dream baselines",
        "dream report",
        "toolgen leaderboard",
        "toolgen rates",
        "toolgen epochs",
        "esper seeds",
        "esper nonces",
        "esper telemetry-check",
    ]
    table = words(build_parser())
    assert [v for v in reads if "--format" not in table[f"labledger {v}"]] == []


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completion_completes_verbs_subverbs_and_options(tmp_path: Path) -> None:
    script = tmp_path / "labledger.bash"
    script.write_text(bash_script(build_parser()))

    def complete(*typed: str) -> list[str]:
        words_ = " ".join(f"'{w}'" for w in ("labledger", *typed))
        probe = (
            f"source {script}; COMP_WORDS=({words_}); COMP_CWORD={len(typed)}; "
            '_labledger; printf "%s\\n" "${COMPREPLY[@]}"'
        )
        done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True)
        return done.stdout.split()

    assert complete("ru") == ["runs"]
    assert complete("runs", "") == sorted(words(build_parser())["labledger runs"])
    assert complete("runs", "compare", "--f") == ["--format"]
    assert "--format" in complete("--db", "sqlite:///x.db", "read-all", "--")


def test_completion_verb_prints_scripts(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["completion", "bash"]) == 0
    assert "complete -F _labledger labledger" in capsys.readouterr().out
    assert run(["completion", "zsh"]) == 0
    assert capsys.readouterr().out.startswith("autoload -U +X bashcompinit")
    assert run(["completion", "fish"]) == 2
