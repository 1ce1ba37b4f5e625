"""``edgecnn service install CONFIG``: a systemd unit that runs ``edgecnn serve CONFIG``.

The unit is the template shipped in ``deploy/systemd/edgecnn.service`` with the config's
absolute path, the dedicated user and the absolute path of this ``edgecnn`` filled in
(Restart=on-failure, output to the journal, ``serve --check`` before each start).
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

from .errors import InputError

TEMPLATE = Path(__file__).resolve().parent / "systemd" / "edgecnn.service"
UNIT_DIR = Path("/etc/systemd/system")
UNIT_NAME = "edgecnn.service"


def edgecnn_executable() -> Path:
    """The absolute path of the ``edgecnn`` command of this installation."""
    beside = Path(sys.executable).parent / "edgecnn"
    if beside.is_file():
        return beside.absolute()
    found = shutil.which("edgecnn")
    if found is None:
        raise InputError("cannot find the edgecnn command (not beside "
                         f"{sys.executable} nor on PATH)")
    return Path(found).absolute()


def render_unit(config, user: str = "edgecnn", executable=None) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", user):
        raise InputError(f"--user must be a system user name (lower case); found {user!r}")
    config = Path(config).absolute()
    executable = Path(executable) if executable else edgecnn_executable()
    for path in (config, executable):
        if re.search(r"[\s\"'\\]", str(path)):
            raise InputError(f"systemd paths must not hold blanks, quotes or backslashes; "
                             f"found {str(path)!r}")
    # systemd expands %h, %n ... in unit lines, and $NAME in Exec lines: a literal % is
    # written %%, a literal $ (Exec lines) $$
    lines = []
    for line in TEMPLATE.read_text(encoding="utf-8").splitlines(keepends=True):
        def fill(path: Path) -> str:
            text = str(path).replace("%", "%%")
            return text.replace("$", "$$") if line.startswith("Exec") else text
        lines.append(line.replace("@CONFIG@", fill(config)).replace("@USER@", user)
                     .replace("@EDGECNN@", fill(executable)))
        if line.startswith("Environment=PYTHONUNBUFFERED"):
            lines.extend(_trust_environment())
    return "".join(lines)


PRIVATE_TMP = (Path("/tmp"), Path("/var/tmp"))   # the unit's PrivateTmp=yes hides these


def private_tmp_paths(config) -> list[str]:
    """The unit runs with PrivateTmp=yes: the service sees its own empty /tmp and
    /var/tmp, so a config, bundle, key, video or log there would be missing (or written
    where nobody looks, and deleted at the stop). Each such path, named."""
    logging = config.logging
    named = [("the config", config.path), *(("a trusted key", k) for k in config.trusted_keys),
             ("--log", logging.log), ("--sqlite", logging.sqlite), ("--json", logging.json_path)]
    mqtt = getattr(config, "mqtt", None)
    if mqtt is not None:   # a spool there loses the events it keeps at every stop
        named += [("the MQTT spool", mqtt.spool), ("the MQTT CA", mqtt.ca),
                  ("the MQTT client certificate", mqtt.cert), ("the MQTT key", mqtt.key)]
    for bundle, plan in config.sources:
        label = plan.source.name or str(plan.source.source)
        named.append((f"{label}'s bundle", bundle))
        if isinstance(plan.source.source, (str, Path)):
            named.append((f"{label}'s source", plan.source.source))
        named.append((f"{label}'s snapshots", getattr(plan.source, "snapshots", None)))
    hidden = []
    for what, value in named:
        if not isinstance(value, (str, Path)) or not str(value):
            continue
        path = Path(value)
        if not path.is_absolute() and not path.exists():
            continue            # a shipped bundle's name, a camera index, a URL
        path = path.absolute()
        if any(path == tmp or tmp in path.parents for tmp in PRIVATE_TMP):
            hidden.append(f"{what} {path}")
    return hidden


def _trust_environment() -> list[str]:
    """EDGECNN_TRUSTED_KEYS of the installing shell, carried into the unit (absolute
    paths): the service must require the signatures the install was checked under."""
    import os

    from .signing import TRUST_ENV

    value = os.environ.get(TRUST_ENV, "").strip()
    if not value:
        return []
    keys = [str(Path(item).absolute()) for item in value.split(os.pathsep) if item.strip()]
    for key in keys:
        if re.search(r"[\s\"'\\%$]", key):
            raise InputError(f"{TRUST_ENV} paths in a systemd unit must not hold blanks, "
                             f"quotes, backslashes, % or $; found {key!r}")
    return [f"Environment={TRUST_ENV}={os.pathsep.join(keys)}\n"]


def install_unit(config, *, user: str = "edgecnn", unit_dir=None,
                 dry_run: bool = False) -> tuple[Path, str]:
    """Write the unit (unless ``dry_run``); (unit path, unit text). The caller checks the
    config first (``edgecnn service install`` does)."""
    text = render_unit(config, user)
    path = Path(unit_dir or UNIT_DIR) / UNIT_NAME
    if not dry_run:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot write {path}: {exc.strerror} (run as root, or give "
                             "--unit-dir)") from None
    return path, text
