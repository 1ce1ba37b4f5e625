"""Every command's help explains every option and ends with examples of that command."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from edgecnn.cli import cli
from edgecnn.tasks import TASKS


def _commands(command: click.Command, path=("edgecnn",)):
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _commands(sub, (*path, name))


COMMANDS = list(_commands(cli))


def test_the_walk_sees_every_command():
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"edgecnn train", "edgecnn export", "edgecnn parity", "edgecnn bench",
            "edgecnn run camera", "edgecnn run vibration", "edgecnn events summary",
            "edgecnn demo", "edgecnn models", "edgecnn eval"} <= names


@pytest.mark.parametrize("path,command", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_option_has_help_and_the_command_an_example(path, command):
    undocumented = [param.opts[0] for param in command.params
                    if isinstance(param, click.Option) and not (param.help or "").strip()]
    assert undocumented == [], f"{' '.join(path)}: options without help: {undocumented}"
    shown = CliRunner().invoke(cli, [*path[1:], "--help"], terminal_width=200)
    assert shown.exit_code == 0, shown.output
    tail = shown.output.rstrip().split("Examples:")
    assert len(tail) == 2, f"{' '.join(path)} --help shows no examples"
    examples = [line.strip() for line in tail[1].splitlines() if line.strip()]
    assert 1 <= len(examples) <= 2
    assert all(line.startswith(" ".join(path)) for line in examples), examples


def test_task_dependent_defaults_come_from_the_task_table():
    shown = CliRunner().invoke(cli, ["train", "--help"], terminal_width=400).output
    epochs = next(line for line in shown.splitlines() if line.strip().startswith("--epochs"))
    for name in ("mnist", "cwru", "lecture-npz"):
        assert f"{name} {TASKS[name].epochs}" in epochs
    assert f"images/neu {TASKS['neu'].epochs}" in epochs
    size = next(line for line in shown.splitlines() if "--image-size" in line)
    assert f"mnist {TASKS['mnist'].image.width}" in size and "cwru" not in size


def test_float_first_help_names_the_shipped_neu_setting():
    from edgecnn.deploy.bundle import Bundle

    shown = " ".join(CliRunner().invoke(cli, ["export", "--help"]).output.split())
    float_nodes = Bundle.open("neu").manifest["files"]["onnx-int8"].get("float_nodes") or []
    assert f"Default 0; the shipped NEU bundle uses {len(float_nodes)}." in shown


def test_a_usage_error_is_one_line_with_exit_2_naming_the_help(tmp_path, capsys):
    import pytest

    from edgecnn.cli import main

    for argv, says in ((["export", str(tmp_path), "--out", str(tmp_path / "b"), "--calib",
                         str(tmp_path / "nowhere")], "error: Invalid value for '--calib'"),
                       (["trian"], "error: No such command 'trian'"),
                       (["eval"], "error: Missing argument 'MODEL'")):
        with pytest.raises(SystemExit) as ended:
            main(argv)
        err = capsys.readouterr().err
        assert ended.value.code == 2
        assert err.startswith(says) and err.count("\n") == 1, err
        assert "--help)" in err


def test_log_lines_that_name_their_kind_are_not_prefixed_twice():
    import logging

    from edgecnn.cli import _LogLine

    def line(message):
        return _LogLine().format(logging.LogRecord("edgecnn.data", logging.WARNING, "", 0,
                                                   message, (), None))

    assert line("NOTE: 2 class(es) left out") == "NOTE: 2 class(es) left out"
    assert line("note: 3 mask file(s) left out") == "note: 3 mask file(s) left out"
    assert line("skipping x.jpg: truncated") == "WARNING: skipping x.jpg: truncated"
