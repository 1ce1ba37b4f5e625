"""The one error family of edgecnn.

Every error a user can cause is an ``EdgecnnError`` with a message that names what was
expected and what was found. The CLI turns these into one clean line and the documented
exit code; anything else is a bug and keeps its traceback.
"""


class EdgecnnError(Exception):
    """Base class. ``exit_code`` is what the CLI exits with (2 = usage/input error)."""

    exit_code = 2


class InputError(EdgecnnError):
    """Bad user input: a path, an option value, a file that is not what it should be."""


class DataError(InputError):
    """A dataset that cannot be used (empty, one class, unknown layout)."""


class SpecError(InputError):
    """An InputSpec that is invalid or does not fit the data or model."""


class BundleError(InputError):
    """A model directory or bundle that is missing, of the wrong kind, or tampered with."""


class SourceError(InputError):
    """A camera, video, stream or recording that cannot be opened or read."""


class ConnectTimeout(SourceError):
    """A live source that did not come up within --connect-timeout (it may later)."""


class StoppedWaiting(SourceError):
    """A stop (SIGTERM, SIGINT) came while a live source was still being waited for."""


class StorageError(EdgecnnError):
    """The disk refused events or snapshots and the run was told to stop on that."""


class CheckFailed(EdgecnnError):
    """A check ran and its result is below the threshold (e.g. int8 parity). Exit code 1."""

    exit_code = 1


def unknown_name(what: str, name, valid, error: type[EdgecnnError] = InputError,
                 cutoff: float = 0.6) -> EdgecnnError:
    """``unknown <what> 'x'; did you mean ...? valid <what>s: ...`` for a closed vocabulary."""
    import difflib

    valid = list(valid)
    close = difflib.get_close_matches(str(name), valid, n=3, cutoff=cutoff)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    return error(f"unknown {what} {name!r}; {hint}valid {what}s: {', '.join(valid)}")
