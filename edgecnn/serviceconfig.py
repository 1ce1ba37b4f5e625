"""The service's config file: one TOML file for a line's cameras and sensors.

Every ``[[camera]]`` / ``[[vibration]]`` table is one source: the long names of the
``edgecnn run camera`` / ``run vibration`` options with ``_`` (``min_frames``, ``roi``,
``class_threshold`` as a table, ``ignore_class`` as a list ...), plus ``name`` (required,
unique: the source in events, topics and logs) and ``bundle``. ``[run]`` holds the shared
options (``log``, ``sqlite``, ``fsync``, ``rotate_mb``, ``json``) and defaults for any
source key; ``[mqtt]`` the fields of ``MqttOptions``; ``[http]`` ``listen`` and ``token``.

The allowed keys, their types and their meaning come from the click options of the two
run commands and ``edgecnn.runplans.runtime_settings`` builds each RunPlan, so a new run
option is a config key the moment it exists. Relative paths are relative to the config's
folder.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from edgecnn.deploy.errors import InputError, unknown_name
from edgecnn.deploy.options import RUN_KINDS, Logging, RunPlan
from edgecnn.runplans import LOGGING_PARAMS, PER_SOURCE, logging_options, runtime_settings

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
SECTIONS = ("camera", "vibration", "run", "mqtt", "http")
HTTP_KEYS = ("listen", "token")
# CLI-only ([mqtt] and [http] are tables of their own here)
NOT_CONFIG = {"quiet", "mqtt", "http_listen", "http_token", "show"}
# [run]-wide only: the sinks and storage policy of the whole service, the trusted keys
LOGGING_FIELDS = set(LOGGING_PARAMS) | {"trusted_keys"}


@dataclass(frozen=True)
class ServiceConfig:
    path: Path
    sources: list[tuple[str, RunPlan]]     # (bundle, plan), in file order
    logging: Logging
    mqtt: Any = None                       # MqttOptions | None
    http: dict | None = None
    text: str = ""
    trusted_keys: tuple[str, ...] = ()

    def where(self, source: int, key: str | None = None) -> str:
        """``FILE line N: [[camera]] #2 key 'k'`` of the ``source``-th source."""
        kind = self.sources[source][1].kind
        index = sum(plan.kind == kind for _, plan in self.sources[:source])
        where = _Where(self.path, self.text, kind, index)
        return str(where.error(key, "")).rstrip(": ")


def key_line(text: str, table: str, index: int, key: str | None = None) -> int | None:
    """1-based line of ``key`` in the ``index``-th ``[[table]]`` (or in ``[table]``) of a
    TOML text, or of the table's header when ``key`` is None; None when not found
    (tomllib gives no line numbers for keys)."""
    header = re.compile(r"\s*(\[\[?)\s*([^\]]+?)\s*\]")
    assign = re.compile(rf"""\s*["']?{re.escape(key)}["']?\s*=""") if key else None
    seen: dict[str, int] = {}
    here = False
    for number, line in enumerate(text.splitlines(), 1):
        match = header.match(line)
        if match:
            name = match.group(2).strip("\"'")
            seen[name] = seen.get(name, -1) + 1
            here = name == table and (match.group(1) == "[" or seen[name] == index)
            if here and key is None:
                return number
            if not here and name == f"{table}.{key}" and seen.get(table) == index:
                return number                   # [camera.class_threshold] sub-table
        elif here and assign is not None and assign.match(line):
            return number
    return None


class _Where:
    """Names file, line and key in every error about one table."""

    def __init__(self, path: Path, text: str, table: str, index: int):
        self.path, self.text, self.table, self.index = path, text, table, index
        self.label = f"[[{table}]] #{index + 1}" if table in RUN_KINDS else f"[{table}]"

    def error(self, key: str | None, message: str) -> InputError:
        line = key_line(self.text, self.table, self.index, key)
        at = f" line {line}" if line else ""
        what = f" key {key!r}" if key else ""
        return InputError(f"{self.path}{at}: {self.label}{what}: {message}")


def _run_options(kind: str) -> dict[str, Any]:
    """Config key -> click option of ``edgecnn run <kind>``."""
    import click

    from edgecnn.cli_runtime import run_camera_command, run_vibration_command

    command = run_camera_command if kind == "camera" else run_vibration_command
    keys = {}
    for param in command.params:
        if isinstance(param, click.Option):
            long = next(o for o in param.opts if o.startswith("--"))
            keys[long[2:].replace("-", "_")] = param
    return keys


def _typed(param, value, where: _Where, key: str):
    """A TOML value checked against the click option's type and converted like the CLI."""
    import click

    def wrong(expected: str):
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        return where.error(key, f"must be {expected}; found {type(value).__name__} {shown}")

    if param.multiple and param.name in ("sources", *PER_SOURCE):
        # one source per table: a single value (as on a command line with one --source)
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise wrong("a single value")
        return (str(value),)
    if param.multiple:
        if isinstance(value, dict) and "=" in (param.metavar or ""):
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                       for v in value.values()):
                raise wrong("a table of NAME = number")
            return tuple(f"{k}={v}" for k, v in value.items())
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise wrong("a list of strings" + (" or a table" if "=" in (param.metavar or "")
                                               else ""))
        return tuple(value)
    if param.is_flag:
        if not isinstance(value, bool):
            raise wrong("true or false")
        return value
    if isinstance(value, bool):
        name = param.type.name
        raise wrong(f"{'an' if name[:1] in 'aeiou' else 'a'} {name}")
    if isinstance(param.type, click.types.IntParamType):
        if not isinstance(value, int):
            raise wrong("an integer")
        return value
    if isinstance(param.type, click.types.FloatParamType):
        if not isinstance(value, (int, float)):
            raise wrong("a number")
        try:
            return float(value)
        except OverflowError:
            raise wrong("a number a float can hold") from None
    if not isinstance(value, str):
        raise wrong("a string")
    if "\0" in value:
        raise wrong("a string without NUL characters")
    try:
        return param.type.convert(value, param, None)
    except click.BadParameter as exc:
        raise where.error(key, exc.message) from None


def _relative(base: Path, value: str, must_exist: bool = False) -> str:
    if not str(value).strip():   # "" would be the config's own folder
        raise InputError("is empty: expected a path (a relative one is taken from the "
                         "config's folder)")
    path = Path(value).expanduser()
    if path.is_absolute():
        return str(path)
    candidate = base / path
    return str(candidate) if candidate.exists() or not must_exist else value


def _file_source(base: Path, value, where) -> str:
    """A file source taken from the config's folder, and there: a missing file fails
    ``serve --check`` (systemd's ExecStartPre), not the service's start."""
    from edgecnn.deploy.frames import source_kind

    text = str(value).strip()
    if text == "-" or source_kind(text) != "file":
        return value
    path = Path(text).expanduser()
    path = path if path.is_absolute() else base / path
    if not path.exists():
        raise where.error("source", f"{path} does not exist (a relative path is taken from "
                                    "the config's folder)")
    return str(path)


def _defaults(kind: str) -> dict:
    """Every option's default as ``edgecnn run <kind>`` itself sees it (click's names)."""
    from edgecnn.cli_runtime import run_camera_command, run_vibration_command

    command = run_camera_command if kind == "camera" else run_vibration_command
    with command.make_context(kind, ["BUNDLE", "--source", "SOURCE"]) as ctx:
        params = dict(ctx.params)
    del params["bundle"]
    return params


def _values(table: dict, options: dict, where: _Where, base: Path) -> dict:
    """The click-named values of ``table``'s keys (paths made relative to ``base``)."""
    import click

    values = {}
    for key, value in table.items():
        if key in ("name", "bundle", "show"):   # show: false only (``_check_keys``)
            continue
        param = options[key]
        value = _typed(param, value, where, key)
        try:
            if isinstance(param.type, click.Path) and value is not None:
                value = _relative(base, value)
            elif param.name == "trusted_keys" and value:   # key files, as every path here
                value = tuple(_relative(base, str(item)) for item in value)
        except InputError as exc:
            raise where.error(key, str(exc)) from None
        values[param.name] = value
    return values


def _check_keys(table: dict, allowed, where: _Where) -> None:
    for key in table:
        if key not in allowed:
            if key == "show" and where.table in ("run", *RUN_KINDS):
                if table[key] is False:   # off, as a service always is
                    continue
                raise where.error(key, "a service has no screen: the preview window is for "
                                       "a desk run (edgecnn run camera --show); [http] "
                                       "serves a live page")
            if where.table != "run" and _run_wide(key):
                raise where.error(key, f"{key!r} is set for the whole service: it belongs "
                                       "in [run]")
            raise where.error(key, str(unknown_name("key", key, sorted(allowed))))


def _run_wide(key: str) -> bool:
    """A [run]-only key (the sinks, storage and trust of the whole service)."""
    param = _run_options("camera").get(key)
    return param is not None and param.name in LOGGING_FIELDS


def load_config(path) -> ServiceConfig:
    """Read and check a service config; every error names file, line and key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM from Windows Notepad is fine
        data = tomllib.loads(text)
    except FileNotFoundError:
        raise InputError(f"config file {path} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read config file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise InputError(f"{path}: not a service config: its values are nested too deep "
                         "to read") from None
    base = path.resolve().parent
    for key, value in data.items():
        is_list = key in RUN_KINDS
        line = key_line(text, key, 0) or next(
            (n for n, l in enumerate(text.splitlines(), 1)
             if re.match(rf"\s*{re.escape(key)}\s*=", l)), None)
        at = f"{path} line {line}" if line else str(path)
        if key not in SECTIONS:
            raise InputError(f"{at}: {unknown_name('table', key, SECTIONS)}")
        if not isinstance(value, list if is_list else dict):
            raise InputError(f"{at}: '{key}' must be " + (
                f"[[{key}]] tables (one per source)" if is_list else f"a [{key}] table"))
    options = {kind: _run_options(kind) for kind in RUN_KINDS}
    source_keys = {kind: {k for k, p in opts.items()
                          if p.name not in NOT_CONFIG | LOGGING_FIELDS} | {"name", "bundle"}
                   for kind, opts in options.items()}
    logging_keys = {k for k, p in options["camera"].items() if p.name in LOGGING_FIELDS}

    run = data.get("run", {})
    run_where = _Where(path, text, "run", 0)
    shared = (source_keys["camera"] | source_keys["vibration"]) - {"name", "source"}
    _check_keys(run, logging_keys | shared, run_where)
    logging_params = _values({k: v for k, v in run.items() if k in logging_keys},
                             options["camera"], run_where, base)
    sources, names = [], {}
    for kind in RUN_KINDS:
        for index, table in enumerate(data.get(kind, [])):
            where = _Where(path, text, kind, index)
            _check_keys(table, source_keys[kind], where)
            name = table.get("name")
            if name in names:
                raise where.error("name", f"duplicate name {name!r} (also {names[name]})")
            names[name] = where.label
            defaults = {k: v for k, v in run.items() if k in source_keys[kind]}
            sources.append(_source(kind, table, defaults, logging_params, options[kind],
                                   where, run, run_where, base))
    if not sources:
        raise InputError(f"{path}: no [[camera]] or [[vibration]] table: nothing to run")
    present = [kind for kind in RUN_KINDS if data.get(kind)]
    for key in run:   # a default that no source takes would be silently ignored
        if key not in logging_keys and not any(key in source_keys[k] for k in present):
            takers = [k for k in RUN_KINDS if key in source_keys[k]]
            raise run_where.error(key, f"is a default for [[{takers[0]}]] sources only, and "
                                       f"this config has none (a [[{present[0]}]] takes "
                                       f"{_counterpart(key, source_keys[present[0]])})")
    logging_all = {**_defaults("camera"), **logging_params}
    return ServiceConfig(path, sources, logging_options(logging_all),
                         _mqtt(data, path, text, base), _http(data, path, text), text,
                         tuple(logging_all.get("trusted_keys") or ()))


def _counterpart(key: str, keys) -> str:
    """The other kind's name of a per-kind key (min_frames <-> min_windows) where ``keys``
    (that kind's) has one, else 'other keys'."""
    for a, b in (("frames", "windows"), ("windows", "frames")):
        other = f"{key[:-len(a)]}{b}"
        if key.endswith(f"_{a}") and other in keys:
            return f"'{other}'"
    return "other keys"


def _source(kind, table, defaults, logging_params, options, where, run, run_where, base):
    """(bundle, RunPlan) of one [[camera]] / [[vibration]] table."""
    name = table.get("name")
    if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name):
        raise where.error("name" if "name" in table else None,
                          "needs a 'name' of 1-64 letters, digits, '.', '_' or '-' (the "
                          f"source in events, topics and logs); found {name!r}"
                          + (f" ({len(name)} characters)" if isinstance(name, str) and
                             len(name) > 64 else ""))
    bundle = table.get("bundle", defaults.get("bundle"))
    if not isinstance(bundle, str):
        raise where.error("bundle" if "bundle" in table else None,
                          f"needs a 'bundle' (a path or a shipped name); found {bundle!r}")
    if "source" not in table:   # the --source option: one per table
        raise where.error(None, "needs a 'source' (a camera, video, URL or recording)")
    if isinstance(table["source"], str) and not table["source"].strip():
        raise where.error("source", "is empty: expected a camera, video, URL or recording "
                                    "(a relative path is taken from the config's folder)")
    params = {**_defaults(kind), **_values(defaults, options, run_where, base),
              **_values(table, options, where, base), **logging_params}
    params["sources"] = (_file_source(base, params["sources"][0], where),)
    try:
        plan, = runtime_settings(kind, params, names=[name]).plans
    except InputError as exc:   # the parsers name the option: --roi, --tiles ...
        # the first option named that this table sets, else one [run] sets (a default or
        # the service's log), else the table
        keys = [m.replace("-", "_") for m in re.findall(r"--([a-z][a-z-]*)", str(exc))]
        key = next((k for k in keys if k in table), None)
        if key is None and (key := next((k for k in keys if k in run), None)) is not None:
            raise run_where.error(key, str(exc)) from None
        raise where.error(key, str(exc)) from None
    from edgecnn.deploy.bundle import shipped_bundles

    if bundle in shipped_bundles():   # a bare shipped name means it here too (./neu: a folder)
        return bundle, plan
    try:
        return _relative(base, bundle, must_exist=True), plan
    except InputError as exc:
        raise where.error("bundle" if "bundle" in table else None, str(exc)) from None


def _mqtt(data, path, text, base):
    table = data.get("mqtt")
    if table is None:
        return None
    from edgecnn.deploy.mqtt import MqttOptions

    where = _Where(path, text, "mqtt", 0)
    known = {f.name: f.type for f in fields(MqttOptions)}
    _check_keys(table, known, where)
    if "url" not in table:
        raise where.error(None, "needs a 'url' (mqtt://host:port/PREFIX)")
    values = {}
    for key, value in table.items():
        kind = known[key]
        number = "int" in kind or "float" in kind
        if isinstance(value, bool) or not isinstance(value, (int, float) if number else str) \
                or ("int" in kind and not isinstance(value, int)):
            expected = "an integer" if "int" in kind else "a number" if number else "a string"
            raise where.error(key, f"must be {expected}; found {type(value).__name__} "
                                   f"{value!r}")
        try:
            values[key] = _relative(base, value) if key in ("ca", "cert", "key", "spool") \
                else value
        except InputError as exc:
            raise where.error(key, str(exc)) from None
    try:
        return MqttOptions(**values)
    except InputError as exc:
        raise where.error("url" if "URL" in str(exc) else None, str(exc)) from None


def _http(data, path, text):
    table = data.get("http")
    if table is None:
        return None
    where = _Where(path, text, "http", 0)
    _check_keys(table, HTTP_KEYS, where)
    for key, value in table.items():
        if not isinstance(value, str):
            raise where.error(key, f"must be a string; found {type(value).__name__}")
    return dict(table)
