"""Which format of a bundle this machine should run: the host file of ``bench --select``.

``edgecnn bench BUNDLE --select`` times every format that passed parity (the manifest's
verification) on this machine and writes the choice per batch size to a small JSON file
in the user's config directory, never into the bundle (a shipped or installed bundle is
read-only and shared by machines)::

    $XDG_CONFIG_HOME/edgecnn/hosts/<machine fingerprint>/<manifest sha256>.json
    (<manifest sha256>.threads-N.json for runs with N > 1 intra-op threads)

The machine fingerprint covers the CPU, the core count and the versions of the
inference packages, so a new CPU or an upgraded runtime does not inherit an old choice.
The runtime's default format follows the file when present (``--format`` still wins).
A choice holds for the thread count it was timed with: formats scale differently with
threads (LiteRT's XNNPACK and ONNX Runtime's int8 kernels do), so a run with
``--threads 2`` follows a choice timed with 2 threads, never the 1-thread one.
Where there is none, the runtime's first start of the bundle writes it after a short
measurement of its own (``selection.first_start_selection``; ``EDGECNN_SELECT=off`` skips
it and runs the bundle's default).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import logging
import os
import platform
import re
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

from .bundle import MANIFEST, Bundle, sha256_file
from .errors import InputError
from .formats import model_format, preferred

HOST_FILE_FORMAT = "edgecnn-host-selection"
# Formats within this share of the fastest count as equally fast; the one needing fewer
# packages is chosen then.
TIE_SHARE = 0.05
# onnxruntime is always installed (the base runtime); a format's own runtime package comes
# from the format table
BASE_PACKAGE = "onnxruntime"
_log = logging.getLogger(__name__)


def packages_for(fmt: str) -> tuple[str, ...]:
    """The packages a format needs to run here: the base runtime plus its own."""
    package = model_format(fmt).package
    return (BASE_PACKAGE,) if package == BASE_PACKAGE else (BASE_PACKAGE, package)


def missing_packages(fmt: str) -> list[str]:
    """The format's runtime package when it is not installed (looked up, not imported: a
    camera run that will run ONNX does not load LiteRT to find that out)."""
    row = model_format(fmt)
    try:
        found = importlib.util.find_spec(row.module) is not None
    except (ImportError, ValueError):   # a finder that refuses it, a broken install
        found = False
    return [] if found else [row.package]


def config_dir() -> Path:
    """$XDG_CONFIG_HOME/edgecnn/hosts; a relative XDG_CONFIG_HOME is ignored, as the XDG
    base directory rules say (it would follow the working folder)."""
    base = os.environ.get("XDG_CONFIG_HOME", "")
    if not os.path.isabs(base):
        base = str(Path.home() / ".config")
    return Path(base) / "edgecnn" / "hosts"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    """What the fingerprint is made of (also written into the host file)."""
    return {"cpu": _cpu_model(), "cores": os.cpu_count(), "arch": platform.machine(),
            "system": platform.system(),
            "packages": {p: _version(p) for p in ("onnxruntime", "ai-edge-litert")}}


def fingerprint(info: dict[str, Any] | None = None) -> str:
    text = json.dumps(info or machine(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def host_file(bundle: Bundle, threads: int = 1) -> Path:
    """This machine's host file of ``bundle`` for runs with ``threads`` intra-op threads."""
    name = sha256_file(bundle.path / MANIFEST)
    return config_dir() / fingerprint() / (f"{name}.json" if threads == 1
                                          else f"{name}.threads-{threads}.json")


def choose(times_ms: dict[str, float]) -> str:
    """The fastest format, or, among those within TIE_SHARE of it, the one needing the
    fewest packages (then the faster)."""
    fastest = min(times_ms.values())
    close = [f for f, t in times_ms.items() if t <= fastest * (1 + TIE_SHARE)]
    return min(close, key=lambda f: (len(packages_for(f)), times_ms[f]))


def write_selection(bundle: Bundle, selection: dict[str, Any]) -> Path:
    """Write ``selection`` (from ``selection.py``) as this machine's host file for the
    thread count it was timed with."""
    path = host_file(bundle, _threads(selection) or 1)
    bundle_dir = bundle.path.resolve()
    if path.resolve().is_relative_to(bundle_dir):
        raise InputError(f"the host file {path} would be inside the bundle {bundle_dir}; "
                         "set XDG_CONFIG_HOME to a folder outside it")
    data = {"format": HOST_FILE_FORMAT, "version": 1, **selection,
            "manifest_sha256": sha256_file(bundle.path / MANIFEST),
            "fingerprint": fingerprint(), "machine": machine()}
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # a file of its own: two runs starting at once each measure and write whole files
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise InputError(f"cannot write the host file {path}: {exc.strerror}") from None
    return path


def _threads(data: dict) -> int | None:
    """The intra-op thread count a selection was timed with (files of older versions
    say none: they were timed with 1)."""
    threads = data.get("threads", 1)
    return threads if isinstance(threads, int) and not isinstance(threads, bool) else None


def select_command(threads: int = 1) -> str:
    """The command that times the formats for runs with ``threads``."""
    return "edgecnn bench BUNDLE --select" + (f" --threads {threads}" if threads != 1 else "")


# what was said of which host file (as it was then: its time and size): once, not once
# per source and batch size of a run; said again once the file changed
_WARNED: set[tuple] = set()


def _said(path: Path, what: str) -> bool:
    """Whether ``what`` was said of the file at ``path`` as it is now (and note it)."""
    try:
        stat = path.stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size, what)
    except OSError:
        key = (str(path), None, None, what)
    if key in _WARNED:
        return True
    _WARNED.add(key)
    return False


def _ignore(path: Path, reason: str, *args) -> None:
    text = reason % args
    if not _said(path, text):
        _log.warning("ignoring %s: %s", path, text)


def read_selection(bundle: Bundle, threads: int = 1) -> tuple[dict[str, Any], Path] | None:
    """This machine's host file for ``bundle`` at ``threads`` and its path, or None (none,
    or unreadable: then a warning, once per process, and the bundle's own default)."""
    path = host_file(bundle, threads)
    try:
        if not path.is_file():   # EACCES on a folder above it is raised, not False
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        # (JSONDecodeError is a ValueError; nesting past the parser's depth a RecursionError)
        _ignore(path, "it cannot be read (%s); run '%s' again", exc, select_command(threads))
        return None
    if not isinstance(data, dict) or data.get("format") != HOST_FILE_FORMAT:
        _ignore(path, "not an edgecnn host selection file")
        return None
    if _threads(data) != threads:
        said = data.get("threads", 1)
        _ignore(path, "it holds a choice timed with %s, not %d intra-op thread%s; run '%s' "
                "again", f"{said!r} intra-op threads" if _threads(data) is None else
                f"{said} intra-op thread{'s' if said != 1 else ''}", threads,
                "s" if threads != 1 else "", select_command(threads))
        return None
    choices = choices_by_batch(data)
    if not choices:
        _ignore(path, "it records no choice of format per batch size")
        return None
    return data, path


def other_choices(bundle: Bundle, threads: int) -> list[int]:
    """The thread counts other than ``threads`` with a host file for ``bundle`` here: a
    run that finds none for its own can say a choice exists for another."""
    name = sha256_file(bundle.path / MANIFEST)
    named = re.compile(re.escape(name) + r"(?:\.threads-(\d+))?\.json")   # as host_file
    try:
        matches = [named.fullmatch(path.name) for path in host_file(bundle).parent.iterdir()]
    except OSError:
        return []
    return sorted(count for m in matches if m and (count := int(m.group(1) or 1)) != threads)


def choices_by_batch(data: dict) -> dict[int, str]:
    """{batch size: chosen format} of a host file's data; entries of another shape (an
    edited file) are left out."""
    batches = data.get("batches")
    if not isinstance(batches, dict):
        return {}
    return {int(k): row["chosen"] for k, row in batches.items()
            if isinstance(k, str) and k.isascii() and k.isdigit() and 0 < len(k) < 7
            and isinstance(row, dict) and isinstance(row.get("chosen"), str)}


# x86 CPUs whose int8 dot products do not saturate: ONNX Runtime's U8S8 kernels without
# them (AVX2, AVX-512 without VNNI) add pairs of products in int16 (vpmaddubsw), which
# 8-bit weights can overflow; 7-bit weights (export --reduce-range) cannot.
_EXACT_INT8_FLAGS = {"avx512_vnni", "avx_vnni", "amx_int8"}


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str] | None:
    """The CPU's feature flags (/proc/cpuinfo; elsewhere, as on Windows or macOS, the x86
    features numpy detects, in cpuinfo's names), None where neither tells."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:
        try:            # numpy 1.x
            from numpy.core._multiarray_umath import __cpu_features__ as features
        except ImportError:
            return None
    names = {"AVX512VNNI": "avx512_vnni", "AVX2": "avx2", "AVX512F": "avx512f", "FMA3": "fma",
             "AVX": "avx", "SSE42": "sse4_2"}
    return frozenset(names[k] for k, on in features.items() if on and k in names)


def int8_exact_here(entry: dict) -> str | None:
    """Why the model file of manifest ``entry`` would not compute here what export
    verified (None: it would): an onnx-int8 file with full 8-bit weights on an x86 CPU
    without VNNI."""
    quantization = entry.get("quantization") or {}
    if entry.get("format") != "onnx-int8" or quantization.get("reduce_range", True):
        return None
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return None
    flags = cpu_flags()
    if flags is not None and flags & _EXACT_INT8_FLAGS:
        return None
    if flags is None:      # cannot tell: what export verified is not assumed
        return ("this CPU's features cannot be read, and an onnx-int8 file with 8-bit "
                "weights computes exactly only with VNNI; export with --reduce-range for "
                "such CPUs")
    return ("its 8-bit weights can saturate ONNX Runtime's int8 kernels on this CPU "
            "(x86 without VNNI); export with --reduce-range for such CPUs")


def runnable(bundle: Bundle, fmt: str) -> bool:
    """Whether a run may pick ``fmt`` of ``bundle`` by itself: the bundle has it, it passed
    parity at export, its runtime is installed and it computes here what export verified."""
    record = (bundle.manifest.get("verification") or {}).get(fmt)
    return fmt in bundle.formats and isinstance(record, dict) and \
        record.get("passed") is True and not missing_packages(fmt) and \
        int8_exact_here(bundle.manifest["files"][fmt]) is None


def _runnable_default(bundle: Bundle) -> str:
    """The bundle's default format, or, where that one failed parity at export or would
    not compute here what export verified (``int8_exact_here``), the preferred format
    that passed parity and does (the default when none does)."""
    fmt = bundle.default_format()
    if runnable(bundle, fmt):
        return fmt
    record = (bundle.manifest.get("verification") or {}).get(fmt)
    why = int8_exact_here(bundle.manifest["files"].get(fmt, {}))
    if why is None and isinstance(record, dict) and record.get("passed") is False:
        why = "it failed parity at export"
    if why is None:    # no parity record (older bundles), or its runtime is missing
        return fmt
    for other in preferred(bundle.formats):
        if other != fmt and runnable(bundle, other):
            _log.warning("not running %s of %s by default: %s; running %s (--format %s "
                         "runs it anyway)", fmt, bundle.path, why, other, fmt)
            return other
    return fmt


def selected_format(bundle: Bundle, batch: int = 1, measure: bool = True, threads: int = 1
                    ) -> tuple[str, Path | None]:
    """The format to run at about ``batch`` items per inference with ``threads`` intra-op
    threads: the host file's choice for the nearest measured batch size when a run may
    pick it (``runnable``); without a usable host file and with ``measure``, this
    machine's own timing (``selection.first_start_selection``, which writes the host
    file); else the bundle's default (``_runnable_default``). Also the host file it came
    from (None: the default)."""
    found = read_selection(bundle, threads)
    again = found is None and present(host_file(bundle, threads))   # there, but ignored
    if found is not None:
        data, path = found
        choices = choices_by_batch(data)
        nearest = min(choices, key=lambda b: (abs(b - batch), b))
        if runnable(bundle, choices[nearest]):
            return choices[nearest], path
        again = True
        from .selection import measuring_off

        _log.warning("host file %s chose %r, which cannot run here or did not pass parity "
                     "at export; %s", path, choices[nearest],
                     "timing the formats again" if measure and not measuring_off()
                     else "not using it")
    if measure:
        from .selection import first_start_selection, measuring_off

        measured = first_start_selection(bundle, batch, again=again, threads=threads)
        if measured is not None:
            choices = choices_by_batch(measured)
            nearest = min(choices, key=lambda b: (abs(b - batch), b))
            if runnable(bundle, choices[nearest]):
                return choices[nearest], host_file(bundle, threads)
        others = other_choices(bundle, threads) if found is None and measuring_off() else []
        if others and not _said(host_file(bundle, threads), f"choices for {others}"):
            _log.warning("note: this machine's format choice for %s is for %s intra-op "
                         "thread%s, not %d: running its default ('%s' makes one for this "
                         "thread count)", bundle.path, " and ".join(map(str, others)),
                         "s" if others != [1] else "", threads, select_command(threads))
    return _runnable_default(bundle), None


def present(path: Path) -> bool:
    """Whether a file is at ``path`` (False where it cannot be looked at)."""
    try:
        return path.is_file()
    except OSError:
        return False


def would_time(bundle: Bundle, threads: int = 1) -> bool:
    """Whether a run's first start would time the formats (no usable host file for its
    thread count, timing on, and more than one format to choose from)."""
    from .selection import measuring_off, parity_passed

    found = read_selection(bundle, threads)
    if found is not None and any(runnable(bundle, fmt)
                                 for fmt in choices_by_batch(found[0]).values()):
        return False
    return not measuring_off() and len(parity_passed(bundle)[0]) >= 2
