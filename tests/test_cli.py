"""CLI tests: ``ser-cli analyze`` through click's CliRunner, and the documented-command check."""

from __future__ import annotations

import fcntl
import importlib
import json
import re
from pathlib import Path

import click
import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from ser_cli import cli, reports
import signals

README = Path(__file__).resolve().parents[1] / "README.md"
analyze_module = importlib.import_module("ser_cli.analysis")


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("in").mkdir()
    sf.write("in/a.wav", signals.vowel(150.0, duration_s=1.0, seed=4), 16000)
    sf.write("in/b.wav", np.concatenate([signals.tone(300.0, 1.5), signals.noise(1.5)]), 16000)
    return tmp_path


def _analyze(*args):
    return CliRunner().invoke(cli.main, ["analyze", *args])


def test_analyze_writes_reports_exit_0(workdir, tiny_model):
    result = _analyze("in", "-o", "out", "--model", str(tiny_model), "--batch-size", "4")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""  # reports go to files, messages to stderr
    assert "2 files ok, 0 failed" in result.stderr
    rows = json.loads(Path("out/utterances.json").read_text())
    assert [r["file"] for r in rows] == ["in/a.wav", "in/b.wav"]
    summary = json.loads(Path("out/summary.json").read_text())
    assert summary["settings"]["batch_size"] == 4
    assert summary["command"]  # the command line of the process
    again = _analyze("in", "-o", "out", "--model", str(tiny_model), "--batch-size", "4", "-q")
    assert again.exit_code == 0 and again.stderr == ""
    assert json.loads(Path("out/summary.json").read_text())["this_run"]["resumed_skipped"] == 2


def test_analyze_default_out_is_ser_out(workdir, tiny_model):
    result = _analyze("in/a.wav", "--model", str(tiny_model), "-q")
    assert result.exit_code == 0, result.output
    assert Path("ser-out/utterances.csv").exists()


def test_analyze_partial_failure_exits_3(workdir, tiny_model):
    Path("in/broken.wav").write_bytes(b"RIFF\x00\x00")
    result = _analyze("in", "-o", "out", "--model", str(tiny_model), "-q")
    assert result.exit_code == cli.EXIT_PARTIAL == 3, result.output
    rows = json.loads(Path("out/utterances.json").read_text())
    assert [r["status"] for r in rows] == ["ok", "ok", "error"]
    assert rows[2]["error"].startswith("in/broken.wav: ")


def test_analyze_usage_and_fatal_errors(workdir, tiny_model):
    assert _analyze("nowhere/", "--model", str(tiny_model)).exit_code == 2
    assert _analyze("in", "--batch-size", "0", "--model", str(tiny_model)).exit_code == 2
    Path("bad.pt").write_text("not a model")
    result = _analyze("in", "-o", "out", "--model", "bad.pt")
    assert result.exit_code == 1
    assert "bad.pt" in result.stderr and "Traceback" not in result.output


def test_analyze_refuses_a_locked_out(workdir, tiny_model):
    Path("out").mkdir()
    with open(Path("out", reports.LOCK_NAME), "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = _analyze("in", "-o", "out", "--model", str(tiny_model))
    assert result.exit_code == 1
    assert "another ser-cli analyze is writing" in result.stderr


def test_analyze_ctrl_c_exits_130_with_resume_hint(workdir, tiny_model, monkeypatch):
    def interrupted(self, batch):
        raise KeyboardInterrupt

    monkeypatch.setattr(analyze_module._Scorer, "__call__", interrupted)
    result = _analyze("in", "-o", "out", "--model", str(tiny_model), "-q")
    assert result.exit_code == 130
    assert "run the same command again to resume" in result.stderr
    assert json.loads(Path("out/summary.json").read_text())["this_run"]["interrupted"]


def _commands(group: click.Group, prefix: str = "ser-cli"):
    for name, command in sorted(group.commands.items()):
        path = f"{prefix} {name}"
        yield path, command
        if isinstance(command, click.Group):
            yield from _commands(command, path)


def test_every_command_has_help_ending_with_an_example_and_is_in_readme():
    """Each help text ends with an ``Example:`` block that runs the command itself, and the
    README mentions each command (the sqlite-utils tests/test_docs.py check)."""
    readme = README.read_text()
    commands = [("ser-cli", cli.main), *_commands(cli.main)]
    assert {"ser-cli analyze", "ser-cli bench analyze"} <= {p for p, _ in commands}
    problems = []
    for path, command in commands:
        text = (command.help or "").strip()
        tail = re.split(r"\n\s*Example:\s*\n", text)
        if len(tail) < 2 or not tail[-1].strip():
            problems.append(f"{path}: help does not end with an 'Example:' block")
            continue
        examples = [line.strip() for line in tail[-1].splitlines() if line.strip()]
        runnable = path if isinstance(command, click.Command) and not isinstance(
            command, click.Group) else "ser-cli"
        if not all(e.startswith(runnable) for e in examples):
            problems.append(f"{path}: example {examples!r} does not run {runnable!r}")
        if path != "ser-cli" and not isinstance(command, click.Group) and path not in readme:
            problems.append(f"{path}: not mentioned in README.md")
    assert not problems, "\n".join(problems)


def test_option_help_shows_percent_signs_once():
    """click prints option help as written (no %-formatting), so an argparse habit like ``%%``
    would show doubled in ``--help``."""
    doubled = [f"{path} {param.opts[-1]}" for path, command in [("ser-cli", cli.main), *_commands(cli.main)]
               for param in command.params if "%%" in (getattr(param, "help", None) or "")]
    assert not doubled, doubled
