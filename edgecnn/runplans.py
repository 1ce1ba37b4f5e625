"""From the option values of `edgecnn run camera|vibration` (click's parameter names) to
the typed RunPlans and Logging: one place for the command line and for every source table
of an `edgecnn serve` config file, so an option means the same in both.

A command line may name several sources (``--source`` repeated, ``NAME=SOURCE``); the
per-source options (``PER_SOURCE``) then hold one value for all or one per source. A
config table is one source: its per-source keys are single values.
"""

from __future__ import annotations

from dataclasses import dataclass

# option -> parser of one value; the options that may differ from source to source
PER_SOURCE = {"roi": "roi", "tiles": "tiles", "grid": "grid", "hop": "int",
              "sample_rate": "float", "channel": "str"}
# the options that make the run's Logging (its sinks and storage policy)
LOGGING_PARAMS = ("log", "sqlite", "fsync", "rotate_mb", "json_path", "sqlite_keep_days",
                  "on_storage_error")


@dataclass(frozen=True)
class RunSettings:
    """Everything `run camera|vibration` was told, typed: one plan per source, the shared
    sinks, the live page, the MQTT URL and the trusted keys."""

    plans: list
    logging: object
    http: object | None = None
    mqtt: str | None = None
    trusted_keys: tuple[str, ...] = ()


def _parser(kind: str):
    from edgecnn.deploy.errors import InputError
    from edgecnn.deploy.tiles import parse_grid, parse_roi, parse_tiles

    def number(cast, option):
        def parse(text):
            try:
                return cast(text)
            except (TypeError, ValueError):
                raise InputError(f"{option} takes a {'whole ' if cast is int else ''}number; "
                                 f"found {text!r}") from None
        return parse

    return {"roi": parse_roi, "tiles": parse_tiles, "grid": parse_grid,
            "int": number(int, "--hop"), "float": number(float, "--sample-rate"),
            "str": str}[kind]


def runtime_settings(kind: str, params: dict, names=None) -> RunSettings:
    """The RunSettings of `run camera|vibration` parameters (click's names; ``sources``
    and the per-source options are tuples as the repeatable options give them).
    ``names``: the sources' names when they come from elsewhere (a config table)."""
    from edgecnn.deploy.errors import InputError
    from edgecnn.deploy.plans import (
        check_live_sources_once,
        check_unique_names,
        named_source,
        per_source,
    )

    p = dict(params)
    named = [named_source(v) for v in p.pop("sources")]
    if names is not None:
        named = [(name, text) for name, (_, text) in zip(names, named)]
    check_unique_names([name or text for name, text in named])
    check_live_sources_once([text for _, text in named])
    n = len(named)
    if p.get("show") and n > 1:
        raise InputError(f"--show previews one source; found {n} --source options")
    if kind == "vibration" and sum(1 for _, text in named if text == "-") > 1:
        raise InputError("stdin (-) can feed one --source only")
    values = {key: per_source(p.pop(key), n, "--" + key.replace("_", "-"), _parser(parse))
              for key, parse in PER_SOURCE.items() if key in p}
    plans = []
    for i, (name, text) in enumerate(named):
        one = {**p, "source": text, **{key: v[i] for key, v in values.items()}}
        plans.append(runtime_plan(kind, one, name))
    return RunSettings(plans, logging_options(p), _http(p), p.get("mqtt"),
                       tuple(p.get("trusted_keys") or ()))


def runtime_plan(kind: str, p: dict, name: str | None = None):
    """The RunPlan of one source; ``p`` holds click's names with parsed per-source
    values (``roi`` a Region, ``hop`` an int ...) and ``source`` the source text."""
    from edgecnn.deploy.decisions import parse_class_threshold
    from edgecnn.deploy.engine import EngineOptions
    from edgecnn.deploy.options import Decisions, Limits, ModelOptions, RunPlan
    from edgecnn.deploy.reconnect import Backoff

    backoff = Backoff(connect_timeout=p["connect_timeout"], stall_seconds=p["stall_seconds"])
    source = (_camera_source if kind == "camera" else _vibration_source)(p, name, backoff)
    return RunPlan(kind, source,
                   ModelOptions(p["fmt"], EngineOptions(threads=p["threads"],
                                                        spinning=p["spinning"])),
                   Decisions(p["min_count"], p["threshold"],
                             dict(parse_class_threshold(t) for t in p["class_threshold"]),
                             tuple(p["ignore_class"]), p["probabilities"]),
                   Limits(p["duration"], p["max_items"]))


def logging_options(p: dict):
    from edgecnn.deploy.options import Logging
    from edgecnn.deploy.storage import StorageOptions

    return Logging(p["log"], p["sqlite"], p["fsync"], p["rotate_mb"], p["json_path"],
                   StorageOptions(on_error=p["on_storage_error"],
                                  sqlite_keep_days=p["sqlite_keep_days"]))


def _http(p: dict):
    if not p.get("http_listen"):
        return None
    from edgecnn.deploy.httpview import HttpOptions

    return HttpOptions(p["http_listen"], p.get("http_token"))


def _camera_source(p: dict, name, backoff):
    from edgecnn.deploy.faults import FaultConfig
    from edgecnn.deploy.options import CameraSource

    return CameraSource(p["source"], roi=p["roi"], tiles=p["tiles"], grid=p["grid"],
                        realtime=p["realtime"],
                        faults=FaultConfig(frozen_frames=p["frozen_frames"]),
                        snapshots=p["snapshots"], snapshots_max_mb=p["snapshots_max_mb"],
                        snapshots_keep_days=p["snapshots_keep_days"], show=p["show"],
                        backoff=backoff, name=name)


def _vibration_source(p: dict, name, backoff):
    from edgecnn.deploy.options import VibrationSource
    from edgecnn.deploy.vibration import SignalChecks

    return VibrationSource(p["source"], hop=p["hop"], sample_rate=p["sample_rate"],
                           channel=p["channel"], realtime=p["realtime"],
                           checks=SignalChecks(clip_level=p["clip_level"]), backoff=backoff,
                           name=name)
