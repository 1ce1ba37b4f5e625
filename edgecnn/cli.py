"""The ``edgecnn`` command: a thin click layer over library functions.

Each command parses options, calls one library function and prints its result. Heavy
imports (TensorFlow, tf2onnx) happen inside the commands, so ``edgecnn --help`` and the
runtime start fast. EdgecnnError subclasses become one clean line on stderr and the
documented exit code: 0 ok, 1 check failed, 2 usage or input error.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edgecnn import __version__
from edgecnn.deploy.errors import EdgecnnError
from edgecnn.deploy.spec import DEFAULT_CHANNEL

EXIT_CODES_HELP = "Exit codes: 0 ok, 1 check failed, 2 usage or input error."


def examples(*lines: str) -> str:
    """A command's epilog: its example lines, kept as written (click's \\b)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


def per_task(field: str, kinds=("image", "signal"), otherwise: str | None = None) -> str:
    """``[default: per task: images/neu 60, mnist 15, ...]`` for a training option, from the
    task table (edgecnn.tasks), so the help never disagrees with what training does.
    ``field`` is a TaskDefaults attribute or ``image.x`` / ``signal.x``; tasks without a
    value are "others" (``otherwise``)."""
    from edgecnn.tasks import TASK_LIST, TASKS

    names = {task.name: [task.name, *task.aliases] for task in TASK_LIST if task.kind in kinds}
    values = []
    for group in names.values():
        section, _, attribute = field.rpartition(".")
        task = TASKS[group[0]]
        source = getattr(task, section) if section else task
        value = getattr(source, attribute, None) if source is not None else None
        if value is not None:
            values.append(("/".join(group), f"{value:g}" if isinstance(value, float) else value))
    tail = f", others {otherwise}" if otherwise else ""
    if len({value for _, value in values}) == 1 and not otherwise:
        return f"[default: {values[0][1]} for every task]"
    return "[default: per task: " + ", ".join(f"{n} {v}" for n, v in values) + tail + "]"


@click.group(help=f"Edge CNNs for industrial inspection. {EXIT_CODES_HELP}",
             epilog=examples("edgecnn models",
                             "edgecnn demo --out demo-output"))
@click.version_option(__version__, prog_name="edgecnn")
def cli() -> None:
    pass


# ----------------------------------------------------------------------------- training
# (train, eval) -- edgecnn.training / edgecnn.evaluation

def _loader_options(f):
    """Options shared by every command that reads recordings or pickles."""
    f = click.option("--channel", default=DEFAULT_CHANNEL, show_default=True,
                     help="Recording channel (CWRU key suffix, CSV column or array index); eval, "
                          "parity and export read the model's own unless given.")(f)
    f = click.option("--sample-rate", type=float, default=None,
                     help="Sample rate of recordings that do not state their own.")(f)
    f = click.option("--label-pattern", default=None,
                     help="Regex with a (?P<label>...) group, matched on file names.")(f)
    f = click.option("--manifest", type=click.Path(dir_okay=False), default=None,
                     help="CSV of file,label[,sample_rate] for recordings.")(f)
    f = click.option("--allow-pickle", is_flag=True,
                     help="Allow .pkl datasets (pickles can run code: only your own files).")(f)
    return f


def _bit_depth_option(f):
    """--bit-depth: what training found from the files is the model's (eval, parity and
    export read by it); given, it wins, e.g. for dark 16-bit pictures that read as fewer
    bits than the camera has."""
    return click.option(
        "--bit-depth", type=click.Choice(["8", "10", "12", "14", "16"]), default=None,
        callback=lambda ctx, param, value: None if value is None else int(value),
        help="Images: bits of data in 16-bit PNG/TIFF files (12 for a Mono12 camera); "
             "they are scaled to 8 bits by it. [default: training: the smallest depth "
             "that holds the files' largest value; eval, parity, export: the model's]")(f)


def _given_loader_options(options: dict) -> dict:
    """The loader options the user actually set (defaults dropped)."""
    return {name: value for name, value in options.items()
            if value not in (None, False) and not (name == "channel" and value == DEFAULT_CHANNEL)}


def _writable(ctx, param, value):
    """Click callback of --json FILE: a path that cannot be written fails before the work
    (an hour of training), not after it. Probed by opening it; a probe file is removed."""
    if not value:
        return value
    import os

    from edgecnn.deploy.errors import InputError

    path = Path(value)
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)   # as writing it would
        with open(path, "a", encoding="utf-8"):
            pass
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot write --{param.name.replace('_path', '')} {value}: "
                         f"{getattr(exc, 'strerror', None) or exc}") from None
    if not existed:
        os.unlink(path)
    return value


def _writable_folder(ctx, param, value):
    """Click callback of an output folder (export --out): one that cannot be made fails
    before the model is loaded, naming the folder the user gave, not a staging path."""
    if not value:
        return value
    import os
    import tempfile

    from edgecnn.deploy.errors import InputError

    path = Path(value)
    ancestor = path if path.exists() else path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(f"cannot write --out {value}: {ancestor} is a file, not a folder")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".edgecnn-probe-", dir=ancestor))
    except OSError as exc:
        raise InputError(f"cannot write --out {value}: no folder can be made in {ancestor} "
                         f"({exc.strerror or exc})") from None
    return value


def _json_apart(json_path, reads=(), writes=()) -> None:
    """A --json file must not replace what the command reads (a bundle's or model
    directory's files, a data image) nor land in the folder it writes (export's bundle,
    train's model directory): refused before any work, naming the clash. ``reads``,
    ``writes``: (what, path) pairs; a bundle given by its shipped name is looked up."""
    if not json_path:
        return
    from edgecnn.deploy.bundle import resolve_bundle_path
    from edgecnn.deploy.errors import EdgecnnError, InputError
    from edgecnn.deploy.preprocess import IMAGE_SUFFIXES
    from edgecnn.deploy.recordings import RECORDING_SUFFIXES

    target = Path(json_path).resolve()

    def where(what, value):
        if value is None:
            return None
        path = Path(value)
        if not path.exists() and what == "bundle":
            try:
                path = resolve_bundle_path(str(value))
            except EdgecnnError:
                return None
        return path.resolve()

    for what, value in reads:
        folder = where(what, value)
        if folder is None or not target.exists() or not (
                target == folder or (folder.is_dir() and target.is_relative_to(folder))):
            continue
        # in a data folder only what the loaders read counts (an earlier --json there is
        # not data); every file of a bundle or model directory does
        read = target == folder or "data" not in what or \
            target.suffix.lower() in IMAGE_SUFFIXES + RECORDING_SUFFIXES
        if read:
            raise InputError(f"--json {json_path} would replace {target.name} of the {what} "
                             f"{value}: give the results a file outside it")
    for what, value in writes:
        folder = where(what, value)
        if folder is not None and (target == folder or target.is_relative_to(folder)):
            raise InputError(f"--json {json_path} lies in the {what} {value} that this command "
                             "writes: give the results a file outside it")


def _write_json(data: dict, path) -> None:
    if path:
        from edgecnn.report import write_json

        write_json(data, path)
        click.echo(f"results written to {path}")


def _trust_option(f):
    """--trusted-key: then a bundle must be signed by one of these keys (see `edgecnn sign`)."""
    return click.option("--trusted-key", "trusted_keys", multiple=True, metavar="PUB",
                        help="Only open bundles signed by this public key (repeatable; "
                             "adds to EDGECNN_TRUSTED_KEYS).")(f)


def _trust(trusted_keys):
    from edgecnn.deploy.signing import Trust

    return Trust.resolve(trusted_keys)



def _add_commands() -> None:
    """The commands live in modules by topic; they register on ``cli`` when imported."""
    import edgecnn.cli_models  # noqa: F401
    import edgecnn.cli_runtime  # noqa: F401
    import edgecnn.cli_tools  # noqa: F401
    from edgecnn.cli_service import serve_command, service_group

    cli.add_command(serve_command)
    cli.add_command(service_group)


_add_commands()


class _LogLine:
    """``LEVEL: message``, except for messages that say what they are themselves
    (``note: ...``, ``NOTE: ...``, ``warning: ...``): no "WARNING: NOTE:" doubling."""

    def format(self, record) -> str:
        message = record.getMessage()
        if message[:8].lower().startswith(("note:", "warning:")):
            return message
        return f"{record.levelname}: {message}"


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the group, turning our errors into clean exits."""
    import logging

    from edgecnn.tfquiet import quiet_tensorflow

    quiet_tensorflow()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LogLine())
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    try:
        cli.main(args=argv, prog_name="edgecnn", standalone_mode=False)
    except EdgecnnError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.UsageError as exc:
        # one line, as every other error: what was wrong and where the help is
        command = exc.ctx.command_path if exc.ctx is not None else "edgecnn"
        click.echo(f"error: {exc.format_message()} (see: {command} --help)", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except OSError as exc:
        if not exc.filename:             # not about a path the user gave: a bug, shown
            raise
        # an output the user named cannot be written (read-only, not a folder, /proc ...)
        click.echo(f"error: cannot write or read {exc.filename}: "
                   f"{exc.strerror or type(exc).__name__}", err=True)
        sys.exit(2)
    sys.exit(0)
