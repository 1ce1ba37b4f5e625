"""The bundle manifest ``edgecnn.json``: its typed file entries and its one validating loader.

A manifest comes from whoever wrote the bundle folder, so nothing in it is trusted: the
bytes are size- and depth-limited before JSON sees them, and every value the runtime uses
is type- and range-checked here. Each breach is a BundleError naming the key path
(``files.onnx-int8.file: expected a string, found 7``). ``FileEntry`` is read and written
here, so reader and writer cannot drift (``edgecnn.export.manifest`` builds entries with it).

Layout (``format: edgecnn-bundle``, ``version: 1``)::

    {"format": "edgecnn-bundle", "version": 1, "created": "...Z",
     "spec": {InputSpec}, "labels": [...], "task": "neu" | null,
     "files": {"onnx-int8": {FileEntry}, ...},
     "options": {format: {option: value}, "thresholds": {"max_drop_pp", "min_agreement"}},
     "calibration": {...}, "source_model": {"path", "sha256", "architecture", ...},
     "tools": {package: version}, "verification": {format: {...}}}

``task`` is the training task (how ``edgecnn parity`` / ``eval`` read data for this model).
"""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from .errors import BundleError, SpecError
from .formats import FORMATS
from .spec import MAX_SAMPLE_RATE, InputSpec

BUNDLE_FORMAT = "edgecnn-bundle"
BUNDLE_VERSION = 1
MAX_JSON_BYTES = 4 << 20      # a manifest is ~10 kB; blame and fallback lists stay far below
MAX_JSON_DEPTH = 32           # a manifest nests 6 deep
MAX_IMAGE_SIDE = 4096         # model input side in pixels
MAX_WINDOW = 1 << 22          # signal window in samples
MAX_NPERSEG = 1 << 15
MAX_LABELS = 10_000
MAX_FILE_BYTES = 1 << 31
_SHA256 = re.compile(r"[0-9a-f]{64}")
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*+"', re.DOTALL)   # possessive: no backtracking


# ----------------------------------------------------------------------------- JSON

def parse_json(data: bytes, where: str) -> Any:
    """JSON from untrusted bytes: size and nesting depth checked before parsing."""
    if len(data) > MAX_JSON_BYTES:
        raise BundleError(f"{where} is {len(data)} bytes; at most {MAX_JSON_BYTES} are read")
    depth = json_depth(data)
    if depth > MAX_JSON_DEPTH:
        raise BundleError(f"{where} nests {depth} levels deep; at most {MAX_JSON_DEPTH} "
                          "are accepted")
    try:
        return json.loads(data.decode("utf-8"), object_pairs_hook=_no_repeated_keys)
    except _RepeatedKey as exc:
        raise BundleError(f"{where} names the key {exc} twice in one object; a manifest "
                          "must say each thing once (readers differ in which one wins)") \
            from None
    except UnicodeDecodeError as exc:
        raise BundleError(f"{where} is not UTF-8 text: {exc}") from None
    except json.JSONDecodeError as exc:
        raise BundleError(f"{where} is not readable JSON: {exc}") from None
    except (ValueError, RecursionError):   # an integer of thousands of digits
        raise BundleError(f"{where} is not readable JSON: it holds a number of more than "
                          f"{sys.get_int_max_str_digits()} digits") from None


class _RepeatedKey(ValueError):
    pass


def _no_repeated_keys(pairs: list[tuple[str, Any]]) -> dict:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _RepeatedKey(repr(key))
            seen.add(key)
    return result


def json_depth(data: bytes) -> int:
    """Deepest bracket nesting, strings ignored (no recursion, linear time: each string is
    matched once from its opening quote, and an unterminated one ends the scan, where the
    parser then refuses the file; a regex search for strings tried every quote again and
    took minutes on 100 kB of backslashed quotes)."""
    parts, position = [], 0
    while True:
        quote = data.find(b'"', position)
        if quote < 0:
            parts.append(data[position:])
            break
        parts.append(data[position:quote])
        string = _STRING.match(data, quote)
        if string is None:
            break
        position = string.end()
    bare = np.frombuffer(b"".join(parts), dtype=np.uint8)
    steps = (np.isin(bare, (ord("["), ord("{"))).astype(np.int32)
             - np.isin(bare, (ord("]"), ord("}"))))
    return int(np.cumsum(steps).max(initial=0))


# ----------------------------------------------------------------------------- checks

def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:40] + "...")
    return {dict: "an object", list: "a list"}.get(type(value), type(value).__name__)


def fail(key: str, message: str) -> BundleError:
    return BundleError(f"{key}: {message}")


def _object(value: Any, key: str) -> dict:
    if not isinstance(value, dict):
        raise fail(key, f"expected an object, found {_kind(value)}")
    return value


def _list(value: Any, key: str, most: int = MAX_LABELS) -> list:
    if not isinstance(value, list):
        raise fail(key, f"expected a list, found {_kind(value)}")
    if len(value) > most:
        raise fail(key, f"at most {most} items are accepted; found {len(value)}")
    return value


def _string(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise fail(key, f"expected a string, found {_kind(value)}")
    try:                  # JSON's \ud800 escapes: text that no log or topic can hold
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise fail(key, f"{value!r} is not valid Unicode text (a lone surrogate)") from None
    return value


def _integer(value: Any, key: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail(key, f"expected a whole number, found {_kind(value)}")
    if not low <= value <= high:
        shown = str(value) if len(str(value)) <= 40 else str(value)[:40] + "..."
        raise fail(key, f"{shown} is out of bounds ({low} to {high})")
    return value


def _number(value: Any, key: str, low: float | None = None,
            high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise fail(key, f"expected a number, found {_kind(value)}")
    try:
        finite = math.isfinite(value)
    except OverflowError:   # an int beyond any float
        finite = False
    if not finite:
        raise fail(key, f"expected a finite number, found {str(value)[:40]}")
    if (low is not None and not value > low) or (high is not None and not value <= high):
        raise fail(key, f"{value} is out of bounds (above {low} up to {high})")
    return value


def _optional(data: dict, key: str, where: str, check, *args):
    value = data.get(key)
    return None if value is None else check(value, f"{where}.{key}" if where else key, *args)


def check_file_name(value: Any, key: str) -> str:
    """A file name relative to the bundle folder that cannot leave it (no '..', no root)."""
    name = _string(value, key)
    if not PurePosixPath(name).parts or "\x00" in name or "\\" in name or len(name) > 255:
        raise fail(key, f"{_kind(name)} is not a usable file name")
    path = PurePosixPath(name)
    if path.is_absolute() or re.match(r"[A-Za-z]:", name):
        raise fail(key, f"{name!r} is an absolute path; a bundle names files inside its "
                        "own folder only; refused")
    if ".." in path.parts:
        raise fail(key, f"{name!r} leads out of the bundle folder ('..'); refused")
    return name


# ----------------------------------------------------------------------------- entries

@dataclass(frozen=True)
class TensorInfo:
    """A model input or output: name, dtype, shape (None/str = any), int8 scale/zero point."""

    name: str
    dtype: str
    shape: tuple[int | str | None, ...]
    scale: float | None = None
    zero_point: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}
        if self.scale is not None:
            out.update(scale=self.scale, zero_point=self.zero_point)
        return out

    @classmethod
    def from_dict(cls, data: Any, key: str) -> "TensorInfo":
        data = _object(data, key)
        shape = tuple(_list(data.get("shape"), f"{key}.shape", 8))
        for i, dim in enumerate(shape):
            if dim is not None and not isinstance(dim, str):
                _integer(dim, f"{key}.shape[{i}]", 0, 1 << 31)
        return cls(name=_string(data.get("name"), f"{key}.name"),
                   dtype=_string(data.get("dtype"), f"{key}.dtype"), shape=shape,
                   scale=_optional(data, "scale", key, _number),
                   zero_point=_optional(data, "zero_point", key, _integer, -(1 << 31),
                                        1 << 31))


@dataclass(frozen=True)
class FileEntry:
    """One model file of a bundle: what it is, its sha256, and its tensors."""

    file: str
    format: str
    precision: str
    sha256: str
    size: int | None = None
    inputs: tuple[TensorInfo, ...] = ()
    outputs: tuple[TensorInfo, ...] = ()
    quantization: dict[str, Any] | None = None
    float_nodes: tuple[str, ...] = field(default=())

    @property
    def classes(self) -> int | None:
        """The output width the manifest states, if it states one."""
        dim = self.outputs[0].shape[-1] if self.outputs and self.outputs[0].shape else None
        return dim if isinstance(dim, int) else None

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "format": self.format, "precision": self.precision,
                "sha256": self.sha256, "size": self.size,
                "inputs": [t.to_dict() for t in self.inputs],
                "outputs": [t.to_dict() for t in self.outputs],
                "quantization": self.quantization, "float_nodes": list(self.float_nodes)}

    @classmethod
    def from_dict(cls, data: Any, name: str) -> "FileEntry":
        """Validate ``files.<name>``; ``name`` must be a known format."""
        key = f"files.{name}"
        data = _object(data, key)
        row = FORMATS[name]
        fmt = data.get("format", name)
        if fmt != name:
            raise fail(f"{key}.format", f"expected {name!r} (the entry's key), found "
                                        f"{_kind(fmt)}")
        precision = data.get("precision", row.precision)
        if precision != row.precision:
            raise fail(f"{key}.precision", f"a {name} file is {row.precision}; found "
                                           f"{_kind(precision)}")
        sha = _string(data.get("sha256"), f"{key}.sha256")
        if not _SHA256.fullmatch(sha):
            raise fail(f"{key}.sha256", f"expected 64 lowercase hex digits, found {_kind(sha)}")
        tensors = {part: tuple(TensorInfo.from_dict(t, f"{key}.{part}[{i}]")
                               for i, t in enumerate(_list(data.get(part, []),
                                                           f"{key}.{part}", 64)))
                   for part in ("inputs", "outputs")}
        nodes = _list(data.get("float_nodes") or [], f"{key}.float_nodes")
        for i, node in enumerate(nodes):
            _string(node, f"{key}.float_nodes[{i}]")
        return cls(file=check_file_name(data.get("file"), f"{key}.file"), format=name,
                   precision=precision, sha256=sha,
                   size=_optional(data, "size", key, _integer, 0, MAX_FILE_BYTES),
                   inputs=tensors["inputs"], outputs=tensors["outputs"],
                   quantization=_optional(data, "quantization", key, _object),
                   float_nodes=tuple(nodes))


# ----------------------------------------------------------------------------- manifest

@dataclass(frozen=True)
class Manifest:
    """A validated manifest: the JSON as read, its InputSpec and its typed file entries."""

    data: dict[str, Any]
    spec: InputSpec
    files: dict[str, FileEntry]


def parse_manifest(raw: bytes, where: str) -> Manifest:
    """THE manifest loader: bytes -> validated Manifest, or a BundleError naming the key."""
    data = parse_json(raw, where)
    try:
        return validate_manifest(data)
    except BundleError as exc:
        raise BundleError(f"bundle manifest {where}: {exc}") from None


def validate_manifest(data: Any) -> Manifest:
    if not isinstance(data, dict):
        raise BundleError(f"expected a JSON object at the top level, found {_kind(data)}")
    if data.get("format") != BUNDLE_FORMAT:
        found = data.get("format", "no 'format' key")
        raise BundleError(f"not an edgecnn bundle manifest (expected format "
                          f"{BUNDLE_FORMAT!r}, found {found!r}); a training model directory "
                          "is exported with 'edgecnn export'")
    version = data.get("version")
    if version != BUNDLE_VERSION or isinstance(version, bool):
        if isinstance(version, str):
            shown = f"the text {version[:20]!r}, not a number"
        elif isinstance(version, int) and abs(version) > 10 ** 12:
            shown = "a number of more than 12 digits"
        else:
            shown = repr(version)[:40]
        raise BundleError(f"bundle version {shown} is not supported (this edgecnn reads "
                          f"version {BUNDLE_VERSION})")
    spec = check_spec(data.get("spec"))
    if data.get("labels") is not None and data["labels"] != list(spec.labels):
        raise fail("labels", f"{_kind(data['labels'])} differs from spec.labels")
    _optional(data, "task", "", _string)
    for key in ("options", "calibration", "source_model", "tools", "verification"):
        _optional(data, key, "", _object)
    source = data.get("source_model") or {}
    _optional(source, "path", "source_model", _string)
    files = _object(data.get("files"), "files")
    if not files:
        raise fail("files", "lists no model files")
    default = _optional(data, "default_format", "", _string)
    if default is not None and default not in files:
        raise fail("default_format", f"{_kind(default)} is not one of the bundle's files "
                                     f"({', '.join(files)})")
    for name, check in (data.get("verification") or {}).items():
        check = _object(check, f"verification.{name}")
        if "passed" in check and not isinstance(check["passed"], bool):
            raise fail(f"verification.{name}.passed", f"expected true or false, found "
                                                      f"{_kind(check['passed'])}")
        for i, failure in enumerate(_optional(check, "failures", f"verification.{name}",
                                              _list) or []):
            _string(failure, f"verification.{name}.failures[{i}]")
    if data.get("health") is not None:
        check_health(data["health"], spec)
    for name in files:
        if name not in FORMATS:
            raise fail(f"files.{name}", f"unknown model format; known formats: "
                                        f"{', '.join(FORMATS)}")
    entries = {name: FileEntry.from_dict(entry, name) for name, entry in files.items()}
    for name, entry in entries.items():
        if entry.classes is not None and entry.classes != spec.num_classes:
            raise fail(f"files.{name}.outputs[0].shape", f"the model has {entry.classes} "
                       f"outputs but the manifest lists {spec.num_classes} labels")
    return Manifest(data=data, spec=spec, files=entries)


HEALTH_FEATURES = {"image": ("mean", "std", "sharpness", "noise", "saturated"),
                   "signal": ("rms", "crest", "kurtosis", "hum", "flatness")}


def check_health(value: Any, spec: InputSpec) -> dict:
    """The source-health envelope (``deploy/health.py``): of the spec's kind, its limits
    rules on known features with finite bounds, a sane model size or sample rate; a bad
    one would crash the run or silently switch a check off."""
    health = _object(value, "health")
    kind = health.get("kind")
    if kind != spec.kind:
        raise fail("health.kind", f"expected {spec.kind!r} (the spec's kind), found "
                                  f"{_kind(kind)}")
    limits = _object(health.get("limits"), "health.limits")
    for name, rule in limits.items():
        key = f"health.limits.{name}"
        if not isinstance(rule, dict):       # a per-frame threshold (black_level ...)
            _number(rule, key)
            continue
        feature = _string(rule.get("feature"), f"{key}.feature")
        if feature not in HEALTH_FEATURES[kind]:
            raise fail(f"{key}.feature", f"{_kind(feature)} is not one of "
                                         f"{', '.join(HEALTH_FEATURES[kind])}")
        if "below" not in rule and "above" not in rule:
            raise fail(key, "expected a 'below' or an 'above' bound")
        for bound in ("below", "above"):
            _optional(rule, bound, key, _number)
    if kind == "image":
        size = _list(health.get("size"), "health.size", 2)
        if len(size) != 2:
            raise fail("health.size", f"expected [width, height], found {len(size)} items")
        for i, side in enumerate(size):
            _integer(side, f"health.size[{i}]", 1, MAX_IMAGE_SIDE)
    else:
        _number(health.get("sample_rate"), "health.sample_rate", 0, MAX_SAMPLE_RATE)
    return health


_IMAGE = {"height": (_integer, 1, MAX_IMAGE_SIDE), "width": (_integer, 1, MAX_IMAGE_SIDE),
          "color": (_string,), "interpolation": (_string,), "scale": (_number,),
          "layout": (_string,)}
_SIGNAL = {"sample_rate": (_number, 0, MAX_SAMPLE_RATE),
           "window_length": (_integer, 1, MAX_WINDOW), "nperseg": (_integer, 1, MAX_NPERSEG),
           "noverlap": (_integer, 0, MAX_NPERSEG), "detrend": (_string,),
           "scaling": (_string,), "mode": (_string,), "transform": (_string,),
           "eps": (_number,), "mean": (_number,), "std": (_number,)}


def check_spec(value: Any) -> InputSpec:
    """The manifest's InputSpec: types and sane sizes first, then InputSpec's own rules."""
    spec = _object(value, "spec")
    labels = _list(spec.get("labels"), "spec.labels")
    for i, label in enumerate(labels):
        if len(_string(label, f"spec.labels[{i}]")) > 256:
            raise fail(f"spec.labels[{i}]", "a label of more than 256 characters")
    kind = spec.get("kind")
    if not isinstance(kind, str):
        raise fail("spec.kind", f"expected \"image\" or \"signal\", found {_kind(kind)}")
    rules = {"image": _IMAGE, "signal": _SIGNAL}.get(kind, {})
    section = spec.get(kind) if rules else None
    if rules:
        section = _object(section, f"spec.{kind}")
        for key, (check, *bounds) in rules.items():
            if key in section:
                check(section[key], f"spec.{kind}.{key}", *bounds)
        for key in ("mean", "std") if kind == "image" else ():
            for i, v in enumerate(_list(section.get(key, []), f"spec.image.{key}", 4)):
                _number(v, f"spec.image.{key}[{i}]")
        if kind == "signal":
            _signal_extras(section)
    try:
        return InputSpec.from_dict(spec)
    except SpecError as exc:
        raise fail("spec", str(exc)) from None


def _signal_extras(section: dict) -> None:
    window = section.get("window", "hann")
    if not isinstance(window, str):
        window = _list(window, "spec.signal.window", 4)
        if not window or not isinstance(window[0], str):
            raise fail("spec.signal.window", f"expected a window name first, found "
                                             f"{_kind(window[0] if window else None)}")
        for i, v in enumerate(window[1:], 1):
            _number(v, f"spec.signal.window[{i}]")
    channel = section.get("channel")
    if channel is not None and (not isinstance(channel, (str, int)) or isinstance(channel, bool)):
        raise fail("spec.signal.channel", f"expected a string, found {_kind(channel)}")
