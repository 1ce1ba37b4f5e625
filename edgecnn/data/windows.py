"""Vibration recordings -> labelled windows of raw samples at the task's sample rate.

Files are read with the runtime's ``read_recording`` and cut with its ``resample`` and
``cut_windows``, so a window in training is exactly what the line-side stream produces.
Spectrograms are not made here: training applies the InputSpec (whose normalisation is
fitted on these windows) later.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgecnn.data.assemble import (
    SkipLog,
    finish,
    log,
    natural_key,
    note_lost_classes,
    relative_name,
    resolve_classes,
)
from edgecnn.data.recording_labels import (
    CWRU_CLASSES,
    MANIFEST_NAME,
    CwruRule,
    ManifestRule,
    PatternRule,
)
from edgecnn.data.samples import LabelledSamples
from edgecnn.deploy.errors import DataError, InputError, SourceError
from edgecnn.deploy.preprocess import (
    MAX_RESAMPLE,
    check_samples,
    cut_windows,
    resample,
    window_starts,
)
from edgecnn.deploy.recordings import RECORDING_SUFFIXES, read_recording
from edgecnn.deploy.spec import DEFAULT_CHANNEL, InputSpec, SignalSpec

LabelRule = CwruRule | ManifestRule | PatternRule


def make_label_rule(rule, root) -> LabelRule:
    """``"cwru"``, ``"manifest"`` (``labels.csv`` in root) or a rule object -> rule object."""
    if isinstance(rule, (CwruRule, ManifestRule, PatternRule)):
        return rule
    if rule == "cwru":
        return CwruRule()
    if rule == "manifest":
        return ManifestRule(Path(root) / MANIFEST_NAME)
    raise InputError(f"label rule must be 'cwru', 'manifest', a ManifestRule or a PatternRule; "
                     f"found {rule!r}")


def find_recordings(root: Path, exclude=()) -> list[Path]:
    """Every recording file under ``root`` (or ``root`` itself), hidden files excluded."""
    if root.is_file():
        return [root]
    excluded = {Path(p).resolve() for p in exclude}
    found = []
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.is_file() and path.suffix.lower() in RECORDING_SUFFIXES \
                and path.resolve() not in excluded:
            found.append(path)
    return sorted(found, key=lambda p: natural_key(p.relative_to(root).as_posix()))


# The vibration defaults are set at this rate (4096-sample windows, 256-sample segments).
NOMINAL_RATE = 12000.0
# One rig's recordings lie within this factor of each other (CWRU: 12 and 48 kHz); beyond
# it one is mislabelled (a rate typed in kHz is 1000x off), not resampled.
MAX_RATE_SPREAD = MAX_RESAMPLE
FLOAT32_MAX = float(np.finfo(np.float32).max)
# Fewest samples a derived window may hold: below it there is no spectrogram to learn from
# (a rate given in kHz gives 16-sample windows)
MIN_WINDOW = 64


def _power_of_two(value: float) -> int:
    return int(2 ** round(np.log2(max(value, 1.0))))


def spec_for_rate(spec: SignalSpec, rate: float, window_length: int | None = None) -> SignalSpec:
    """``spec`` (set for NOMINAL_RATE) at another sample rate, by one rule: keep the window's
    duration and the spectrogram's time and frequency resolution, so that the same shaft turns
    and the same Hz per bin reach the model and the extra bands of a faster rate are kept.
    window_length and nperseg scale with the rate (rounded to the nearest power of two),
    noverlap keeps its share of nperseg. 12 kHz: 4096/256/32; 48 kHz: 16384/1024/128;
    51.2 kHz: 16384/1024/128. An explicit ``window_length`` wins over the rule."""
    ratio = float(rate) / NOMINAL_RATE
    nperseg = max(16, _power_of_two(spec.nperseg * ratio))
    noverlap = int(round(spec.noverlap * nperseg / spec.nperseg))
    window = window_length or max(nperseg, _power_of_two(spec.window_length * ratio))
    if window_length is None and window < MIN_WINDOW:
        raise DataError(f"at {rate:g} Hz the default {spec.window_length / NOMINAL_RATE:.2f} s "
                        f"windows hold {window} samples, fewer than {MIN_WINDOW}: is the rate "
                        "given in kHz? Rates are in Hz; for a slow sensor give "
                        f"--window-length N (at least {MIN_WINDOW})")
    return replace(spec, sample_rate=float(rate), window_length=int(window), nperseg=nperseg,
                   noverlap=min(noverlap, nperseg - 1))


def measurement_stride(spec: SignalSpec) -> int:
    """Window step for measuring a folder (eval, parity): a quarter window, the loaders'
    default, so a 10 s recording gives enough windows for per-class figures."""
    return max(1, spec.window_length // 4)


def data_sample_rate(rates) -> float:
    """The rate a task that follows its data trains at: the lowest rate among the files
    (no recording is upsampled, every window holds the same bands); a note names the files
    resampled down and the frequency above which their content is lost."""
    counts = Counter(float(r) for r in rates)
    if not counts:
        raise DataError("no readable recording states a sample rate")
    chosen = min(counts)
    if max(counts) / chosen > MAX_RATE_SPREAD:
        listed = ", ".join(f"{n} at {r:g} Hz" for r, n in sorted(counts.items()))
        raise DataError(f"the recordings' sample rates differ {max(counts) / chosen:.0f}-fold "
                        f"({listed}): expected one rig's rates, within {MAX_RATE_SPREAD}x "
                        "of each other; is one given in kHz? Rates are in Hz")
    if len(counts) > 1:
        others = ", ".join(f"{n} at {r:g} Hz" for r, n in sorted(counts.items()) if r != chosen)
        log.warning("note: the recordings have %d sample rates; training at the lowest, %g Hz "
                    "(%s resampled: content above %g Hz is dropped)", len(counts), chosen,
                    others, chosen / 2)
    return chosen


def probe_sample_rates(root, label_rule, channel: str | int = "DE",
                       sample_rate: float | None = None) -> list[float]:
    """Sample rate of every labelled, readable recording under ``root`` (each file read once
    with the runtime's reader; unreadable ones are left to the loader to report)."""
    root = Path(root)
    base = root if root.is_dir() else root.parent
    rule = make_label_rule(label_rule, base)
    exclude = [base / MANIFEST_NAME] + ([rule.path] if isinstance(rule, ManifestRule) else [])
    rates = []
    for path in find_recordings(root, exclude):
        rel = relative_name(base, path)
        if rule.label(rel) is None:
            continue
        try:
            rates.append(read_recording(path, channel=channel,
                                        sample_rate=rule.sample_rate(rel) or sample_rate)
                         .sample_rate)
        except (SourceError, InputError):
            continue
    return rates


def load_recordings(root, signal_spec: SignalSpec | InputSpec, stride: int,
                    label_rule="cwru", labels: tuple[str, ...] | None = None,
                    channel: str | int = DEFAULT_CHANNEL,
                    sample_rate: float | None = None) -> LabelledSamples:
    """Windows (float32, N x window_length) from every recording under ``root``.

    Each file is resampled from its own rate to ``signal_spec.sample_rate`` and cut every
    ``stride`` samples; ``positions`` are window starts at the task rate, ``sources`` the
    file paths relative to root. ``sample_rate`` is used for files that do not state their
    rate (a manifest's sample_rate column takes precedence). Files that cannot be read or
    labelled are warned about and counted in ``.skipped``.
    """
    spec = signal_spec.signal if isinstance(signal_spec, InputSpec) else signal_spec
    if not isinstance(spec, SignalSpec):
        raise InputError(f"load_recordings needs a signal spec; found {type(signal_spec).__name__}")
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride <= 0:
        raise InputError(f"window stride must be a positive integer; found {stride!r}")
    root = Path(root)
    if not root.exists():
        raise DataError(f"recording folder {root} does not exist")
    base = root if root.is_dir() else root.parent
    rule = make_label_rule(label_rule, base)
    exclude = [base / MANIFEST_NAME] + ([rule.path] if isinstance(rule, ManifestRule) else [])
    files = find_recordings(root, exclude)
    skips = SkipLog(base)

    labelled = []
    for path in files:
        rel = relative_name(base, path)
        label = rule.label(rel)
        if label is None:
            skips.skip(path, f"cannot tell its class: expected {rule.expects}")
        else:
            labelled.append((path, rel, label))
    if isinstance(rule, ManifestRule):
        rule.check_unambiguous()
        for entry in rule.unmatched():
            skips.skip(base / entry, f"listed in {rule.path.name} but no such recording "
                                     f"under {base}")
    preferred = CWRU_CLASSES if isinstance(rule, CwruRule) else ()
    if labels is not None:  # a class the model does not know fails before any reading
        resolve_classes({label for _, _, label in labelled}, labels, root)

    windows, label_names, sources, positions, used = [], [], [], [], []
    task_rate = float(spec.sample_rate)
    dropped, raised, flat = Counter(), Counter(), []
    for path, rel, label in labelled:
        file_rate = rule.sample_rate(rel)
        try:
            recording = read_recording(
                path, channel=channel, sample_rate=file_rate if file_rate else sample_rate,
                rate_from=rule.path.name if file_rate and isinstance(rule, ManifestRule)
                else "--sample-rate")
            signal = resample(recording.samples, recording.sample_rate, task_rate)
        except (SourceError, InputError) as exc:   # this file's: skipped and counted
            skips.skip(path, str(exc))
            continue
        bad = check_samples(recording.samples)
        if bad["nan"] or bad["inf"]:
            skips.skip(path, f"holds {bad['nan']} NaN and {bad['inf']} infinite samples")
            continue
        largest = float(np.abs(recording.samples).max())
        if largest > FLOAT32_MAX:   # windows are float32: these would be infinite
            skips.skip(path, f"holds values up to {largest:.3g}, beyond float32's "
                             f"{FLOAT32_MAX:.3g}: expected sensor readings")
            continue
        if len(recording.samples) and float(np.ptp(recording.samples)) == 0.0:
            if labels is None:   # as images: nothing to learn from
                skips.skip(path, f"is one flat value ({float(recording.samples[0]):g}) "
                                 "throughout (a dead or disconnected sensor?): expected a "
                                 "vibration signal")
                continue
            flat.append(rel)     # a fair input to measure on, but said
        if recording.sample_rate > task_rate * (1 + 1e-6):
            dropped[recording.sample_rate] += 1
        elif recording.sample_rate < task_rate * (1 - 1e-6):
            raised[recording.sample_rate] += 1
        starts = window_starts(len(signal), spec.window_length, stride)
        if len(starts) == 0:
            skips.skip(path, f"too short: {len(signal)} samples at {task_rate:g} Hz, one window "
                             f"needs {spec.window_length}")
            continue
        windows.append(cut_windows(signal, spec.window_length, stride).astype(np.float32))
        label_names.extend([label] * len(starts))
        positions.append(starts)
        sources.extend([rel] * len(starts))
        used.append(path)

    files_per_class = Counter(label for _, _, label in labelled)
    note_lost_classes({name: f"{n} file(s), none usable" for name, n in files_per_class.items()},
                      set(label_names))
    for rate, n in sorted(dropped.items()):
        log.warning("NOTE: %d recording(s) at %g Hz are resampled to the model's %g Hz: "
                    "everything above %g Hz is dropped%s", n, rate, task_rate, task_rate / 2,
                    " (the vibration task trains at the data's own rate)"
                    if isinstance(rule, CwruRule) else "")
    for rate, n in sorted(raised.items()):
        log.warning("NOTE: %d recording(s) at %g Hz are resampled up to the model's %g Hz: "
                    "the model's band above %g Hz stays empty in them, so they may score "
                    "lower than recordings at its own rate", n, rate, task_rate, rate / 2)
    if flat:
        log.warning("NOTE: %d recording(s) are one flat value throughout (a dead or "
                    "disconnected sensor?), scored as they are: %s", len(flat),
                    ", ".join(flat[:3]))
    items = (np.concatenate(windows) if windows
             else np.zeros((0, spec.window_length), dtype=np.float32))
    # Classes come from what was loaded: a class whose files all failed is not a class.
    class_names, index = resolve_classes(set(label_names), labels, root, preferred)
    samples = LabelledSamples(
        "signal", items, [index[name] for name in label_names], class_names, sources,
        np.concatenate(positions) if positions else np.zeros(0, dtype=np.int64),
        skips.skipped, sample_rate=task_rate)
    return finish(samples, root, used, labels)
