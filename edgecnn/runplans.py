"""From the option values of `edgecnn run camera|vibration` (click's parameter names) to
the typed RunPlan and Logging: one place for the command line and for every source table
of an `edgecnn serve` config file, so an option means the same in both."""

from __future__ import annotations


def runtime_plan(kind: str, params: dict, name: str | None = None):
    """The (RunPlan, Logging) of `run camera|vibration` parameters (click's names)."""
    from edgecnn.deploy.decisions import parse_class_threshold
    from edgecnn.deploy.engine import EngineOptions
    from edgecnn.deploy.options import Decisions, Limits, Logging, ModelOptions, RunPlan

    p = dict(params)
    source = (_camera_source if kind == "camera" else _vibration_source)(p, name)
    plan = RunPlan(kind, source,
                   ModelOptions(p["fmt"], EngineOptions(threads=p["threads"],
                                                        spinning=p["spinning"])),
                   Decisions(p["min_count"], p["threshold"],
                             dict(parse_class_threshold(t) for t in p["class_threshold"]),
                             tuple(p["ignore_class"]), p["probabilities"]),
                   Limits(p["duration"], p["max_items"]))
    logging = Logging(p["log"], p["sqlite"], p["fsync"], p["rotate_mb"], p["json_path"])
    return plan, logging


def _camera_source(p: dict, name):
    from edgecnn.deploy.faults import FaultConfig
    from edgecnn.deploy.options import CameraSource
    from edgecnn.deploy.tiles import parse_grid, parse_roi, parse_tiles

    return CameraSource(p["source"], roi=parse_roi(p["roi"]) if p["roi"] else None,
                        tiles=parse_tiles(p["tiles"]) if p["tiles"] else None,
                        grid=parse_grid(p["grid"]) if p["grid"] else None,
                        realtime=p["realtime"],
                        faults=FaultConfig(frozen_frames=p["frozen_frames"]),
                        snapshots=p["snapshots"], show=p["show"], name=name)


def _vibration_source(p: dict, name):
    from edgecnn.deploy.options import VibrationSource
    from edgecnn.deploy.vibration import SignalChecks

    return VibrationSource(p["source"], hop=p["hop"], sample_rate=p["sample_rate"],
                           channel=p["channel"], realtime=p["realtime"],
                           checks=SignalChecks(clip_level=p["clip_level"]), name=name)
