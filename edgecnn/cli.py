"""The ``edgecnn`` command: a thin click layer over library functions.

Each command parses options, calls one library function and prints its result. Heavy
imports (TensorFlow, tf2onnx) happen inside the commands, so ``edgecnn --help`` and the
runtime start fast. EdgecnnError subclasses become one clean line on stderr and the
documented exit code: 0 ok, 1 check failed, 2 usage or input error.
"""

from __future__ import annotations

import sys

import click

from edgecnn import __version__
from edgecnn.deploy.errors import EdgecnnError

EXIT_CODES_HELP = "Exit codes: 0 ok, 1 check failed, 2 usage or input error."


@click.group(help=f"Edge CNNs for industrial inspection. {EXIT_CODES_HELP}")
@click.version_option(__version__, prog_name="edgecnn")
def cli() -> None:
    pass


# ----------------------------------------------------------------------------- training
# (train, eval) -- edgecnn.training / edgecnn.evaluation


# ----------------------------------------------------------------------------- export
# (export, parity) -- edgecnn.export


# ----------------------------------------------------------------------------- runtime
# (run camera, run vibration, events summary) -- edgecnn.deploy


# ----------------------------------------------------------------------------- tools
# (bench, models, demo)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the group, turning our errors into clean exits."""
    try:
        cli.main(args=argv, prog_name="edgecnn", standalone_mode=False)
    except EdgecnnError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    sys.exit(0)
