"""Robustness report: accuracy under a fixed suite of camera / sensor changes.

Each cell of the suite is one family at one severity, applied in the raw domain with the
same primitives training augments with (``edgecnn.augment``), then preprocessed by the
model's InputSpec. For a bundle the chosen format and the float reference run side by side,
with top-1 agreement between them on the perturbed data. Cells marked "report only" lie
beyond the training range and are shown but not counted in mean and worst.

Image suite (native-size uint8 images, before the resize):
  gain x0.7 / x1.3, offset -25 / +25 grey levels, gamma 0.7 / 1.4, contrast x0.7,
  noise sigma 5 / 10, defocus sigma 0.8 / 1.2 (about a 3x3 / 5x5 Gaussian blur),
  motion blur 5 / 9 px, JPEG quality 50 / 30, rotation 5 degrees, zoom x1.2 / x0.85,
  shift 6 %.
Signal suite (raw windows, before the STFT):
  gain x0.5 / x2, DC offset 0.5 x RMS, white noise SNR 20 / 10 / 5 dB (0 dB report only),
  hum 50 Hz at 0.3 x RMS / 60 Hz at 1 x RMS (with harmonics), speed x0.97 / x1.03.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edgecnn.augment import ImageChange, SignalChange, apply_image, apply_signal
from edgecnn.batches import preprocess_items
from edgecnn.console import stderr_line
from edgecnn.deploy.errors import InputError

SMALL_CELL = 30  # fewer samples per cell than this: the report says the numbers are rough


@dataclass(frozen=True)
class Cell:
    family: str
    severity: str
    change: ImageChange | SignalChange
    summary: bool = True   # counted in mean and worst

    @property
    def name(self) -> str:
        return f"{self.family} {self.severity}"


IMAGE_SUITE = (
    Cell("gain", "x0.7", ImageChange(gain=0.7)),
    Cell("gain", "x1.3", ImageChange(gain=1.3)),
    Cell("offset", "-25", ImageChange(offset=-25)),
    Cell("offset", "+25", ImageChange(offset=25)),
    Cell("gamma", "0.7", ImageChange(gamma=0.7)),
    Cell("gamma", "1.4", ImageChange(gamma=1.4)),
    Cell("contrast", "x0.7", ImageChange(contrast=0.7)),
    Cell("noise", "sigma 5", ImageChange(noise=5)),
    Cell("noise", "sigma 10", ImageChange(noise=10)),
    Cell("defocus", "sigma 0.8", ImageChange(defocus=0.8)),
    Cell("defocus", "sigma 1.2", ImageChange(defocus=1.2)),
    Cell("motion", "5 px", ImageChange(motion=5, motion_angle=30)),
    Cell("motion", "9 px", ImageChange(motion=9, motion_angle=120)),
    Cell("jpeg", "q50", ImageChange(jpeg=50)),
    Cell("jpeg", "q30", ImageChange(jpeg=30)),
    Cell("rotate", "5 deg", ImageChange(angle=5)),
    Cell("zoom", "x1.2", ImageChange(scale=1.2)),
    Cell("zoom", "x0.85", ImageChange(scale=0.85)),
    Cell("shift", "6 %", ImageChange(dx=0.06, dy=-0.06)),
)
SIGNAL_SUITE = (
    Cell("gain", "x0.5", SignalChange(gain=0.5)),
    Cell("gain", "x2", SignalChange(gain=2.0)),
    Cell("dc", "0.5 rms", SignalChange(dc=0.5)),
    Cell("noise", "20 dB", SignalChange(snr_db=20)),
    Cell("noise", "10 dB", SignalChange(snr_db=10)),
    Cell("noise", "5 dB", SignalChange(snr_db=5)),
    Cell("noise", "0 dB", SignalChange(snr_db=0), summary=False),
    Cell("hum", "50 Hz 0.3 rms", SignalChange(hum=0.3, mains=50)),
    Cell("hum", "60 Hz 1 rms", SignalChange(hum=1.0, mains=60)),
    Cell("speed", "x0.97", SignalChange(speed=0.97)),
    Cell("speed", "x1.03", SignalChange(speed=1.03)),
)


def suite(kind: str, families=None) -> tuple[Cell, ...]:
    """The suite's cells for ``kind``, optionally only some families (names checked)."""
    cells = IMAGE_SUITE if kind == "image" else SIGNAL_SUITE
    if families in (None, "", ()):
        return cells
    names = [n.strip() for n in (families.split(",") if isinstance(families, str) else families)
             if n.strip()]
    valid = list(dict.fromkeys(c.family for c in cells))
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise InputError(f"unknown {kind} perturbation {', '.join(map(repr, unknown))}; "
                         f"valid: {', '.join(valid)}")
    return tuple(c for c in cells if c.family in names)


def check_families(families) -> None:
    """Names of ``--perturbations`` that no suite has fail before any evaluation runs."""
    if families in (None, "", ()):
        return
    names = [n.strip() for n in (families.split(",") if isinstance(families, str) else families)
             if n.strip()]
    valid = list(dict.fromkeys(c.family for c in (*IMAGE_SUITE, *SIGNAL_SUITE)))
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise InputError(f"unknown perturbation {', '.join(map(repr, unknown))}; valid: "
                         f"{', '.join(valid)}")


def perturb(items, cell: Cell, kind: str, sample_rate: float = 1.0, seed: int = 0) -> list:
    """The raw samples changed as ``cell`` says (noise drawn from a per-cell seed)."""
    rng = np.random.default_rng([seed, zlib.crc32(cell.name.encode())])
    if kind == "image":
        return [apply_image(item, cell.change, rng) for item in items]
    return [apply_signal(item, cell.change, sample_rate, rng) for item in items]


def _removed_by_spec(cell: Cell, spec) -> bool:
    """A change the preprocessing takes out before the model sees it (a DC offset under
    the spectrogram's per-segment detrend): shown, but not counted in mean and worst,
    where it would only repeat the clean accuracy."""
    return (spec.kind == "signal" and isinstance(cell.change, SignalChange)
            and cell.family == "dc" and spec.signal.detrend != "none")


def run_suite(predictors: dict, items, labels, spec, *, families=None, reference=None,
              seed: int = 0, batch_size: int = 64,
              log: Callable[[str], None] = stderr_line) -> dict:
    """Accuracy of every predictor (name -> object with ``predict``) on every cell.

    ``reference`` names the float predictor that agreement is measured against.
    """
    cells = suite(spec.kind, families)
    labels = np.asarray(labels)
    rate = spec.signal.sample_rate if spec.kind == "signal" else 1.0
    names = list(predictors)
    rows = []
    for cell in (Cell("clean", "", ImageChange() if spec.kind == "image" else SignalChange()),
                 *cells):
        raw = items if cell.family == "clean" else perturb(items, cell, spec.kind, rate, seed)
        predicted = {}
        for start in range(0, len(raw), 512):  # bounded memory for long recordings
            tensors = preprocess_items(raw[start:start + 512], spec)
            for name, predictor in predictors.items():
                out = [predictor.predict(tensors[i:i + batch_size]).argmax(axis=1)
                       for i in range(0, len(tensors), batch_size)]
                predicted.setdefault(name, []).extend(np.concatenate(out).tolist())
        row = {"family": cell.family, "severity": cell.severity,
               "summary": cell.summary and not _removed_by_spec(cell, spec),
               "accuracy": {n: float(np.mean(np.asarray(predicted[n]) == labels))
                            for n in names}}
        if reference is not None:
            ref = np.asarray(predicted[reference])
            row["agreement"] = {n: float(np.mean(np.asarray(predicted[n]) == ref))
                                for n in names if n != reference}
        rows.append(row)
        log(f"robustness: {cell.name.strip():<22} " + "  ".join(
            f"{n} {row['accuracy'][n] * 100:6.2f} %" for n in names))
    counted = [r for r in rows[1:] if r["summary"]]
    result = {"kind": spec.kind, "formats": names, "reference": reference,
              "samples_per_cell": int(len(labels)), "clean": rows[0]["accuracy"],
              "cells": rows[1:], "mean": {}, "worst": {}}
    for n in names:
        # a selection of report-only cells (--perturbations dc on a spectrogram model)
        # has no mean or worst: None, shown as "-"
        values = [r["accuracy"][n] for r in counted]
        worst = int(np.argmin(values)) if values else None
        result["mean"][n] = float(np.mean(values)) if values else None
        result["worst"][n] = None if worst is None else {
            "accuracy": values[worst],
            "cell": f"{counted[worst]['family']} {counted[worst]['severity']}"}
    if reference is not None:
        result["clean_agreement"] = rows[0]["agreement"]
        # over the counted cells, as mean and worst are
        agreements = [a for r in counted for a in r["agreement"].values()]
        result["min_agreement"] = float(min(agreements)) if agreements else None
    if len(labels) < SMALL_CELL:
        result["note"] = (f"each cell rests on only {len(labels)} samples: one sample is "
                          f"{100 / max(len(labels), 1):.1f} pp")
    return result


def evaluate_robustness(model, data, *, fmt: str | None = None, families=None,
                        task: str | None = None, stride: int | None = None, threads: int = 1,
                        seed: int = 0, log: Callable[[str], None] = stderr_line,
                        trust=None, **loader_options) -> dict:
    """``edgecnn eval MODEL --data D --robustness``: the suite on labelled data."""
    from edgecnn.deploy.bundle import Bundle
    from edgecnn.evaluation import load_for_model, open_predictor
    from edgecnn.modeldir import is_model_dir

    predictor, spec, model_task, description = open_predictor(model, fmt, threads, trust)
    suite(spec.kind, families)  # unknown names fail before any data is read
    predictors, reference = {predictor.format: predictor}, None
    if not is_model_dir(model):
        from edgecnn.deploy.engine import EngineOptions, open_engine
        from edgecnn.deploy.formats import REFERENCES

        bundle = Bundle.open(model, trust)
        # the float reference of a bundle, as parity uses it
        reference = next((f for f in REFERENCES if f in bundle.formats), None)
        if reference is None or reference == predictor.format:
            reference = None
        else:
            float_engine = open_engine(bundle, reference, EngineOptions(threads=threads))
            predictors = {reference: float_engine, predictor.format: predictor}
    samples = load_for_model(spec, task or model_task, data, stride=stride, **loader_options)
    log(f"robustness of {description} on {len(samples)} samples from {data} "
        f"({len(suite(spec.kind, families))} cells, {len(samples)} samples each)")
    result = run_suite(predictors, samples.items, samples.labels, spec, families=families,
                       reference=reference, seed=seed, log=log)
    # (the files skipped are the clean evaluation's ``skipped_files``: the same data)
    result.update({"model": str(model), "data": str(data), "format": predictor.format,
                   "task": task or model_task})
    return result


def format_robustness(result: dict) -> str:
    names = result["formats"]
    head = f"{'perturbation':<24}" + "".join(f"{n:>12}" for n in names)
    if result.get("reference"):
        head += f"{'agreement':>11}"
    lines = [f"robustness suite, {result['samples_per_cell']} samples per cell", head]

    def line(label, values, agreement=None, mark=""):
        text = f"{label:<24}" + "".join(f"{values[n] * 100:11.2f}%" if values[n] is not None
                                        else f"{'-':>12}" for n in names)
        if agreement:
            text += f"{min(agreement.values()) * 100:10.2f}%"
        return text + mark

    lines.append(line("clean", result["clean"], result.get("clean_agreement")))
    for row in result["cells"]:
        lines.append(line(f"{row['family']} {row['severity']}", row["accuracy"],
                          row.get("agreement"), "" if row["summary"] else "  (report only)"))
    lines.append(line("mean", result["mean"]))
    worst = result["worst"]
    if any(worst[n] is None for n in names):
        lines.append(f"{'worst':<24}" + f"{'-':>12}" * len(names) +
                     "  (no counted cell in this selection)")
    else:
        lines.append(f"{'worst':<24}" + "".join(
            f"{worst[n]['accuracy'] * 100:11.2f}%" for n in names) +
            "  (" + ", ".join(f"{n}: {worst[n]['cell']}" for n in names) + ")")
    if result.get("note"):
        lines.append(f"note: {result['note']}")
    return "\n".join(lines)


def plot_robustness(result: dict, path: str | Path) -> Path:
    """Heat-map: one row per cell, one column per format (and the agreement)."""
    from edgecnn.report import _pyplot

    plt = _pyplot()
    names = result["formats"]
    rows = [("clean", result["clean"], result.get("clean_agreement"))] + [
        (f"{r['family']} {r['severity']}" + ("" if r["summary"] else " *"), r["accuracy"],
         r.get("agreement")) for r in result["cells"]]
    columns = list(names) + (["agreement"] if result.get("reference") else [])
    # a value not measured (an older result without the clean agreement) is blank, not 100
    matrix = np.array([[acc[n] for n in names] +
                       ([min(agree.values()) if agree else np.nan] if result.get("reference")
                        else []) for _, acc, agree in rows], dtype=float) * 100
    fig, ax = plt.subplots(figsize=(2.2 + 1.4 * len(columns), 1.2 + 0.32 * len(rows)))
    ax.imshow(matrix, cmap="RdYlGn", vmin=50, vmax=100, aspect="auto")
    ax.set_xticks(range(len(columns)), columns)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows])
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, "-" if np.isnan(value) else f"{value:.1f}", ha="center", va="center",
                fontsize=8)
    means = ", ".join(f"{n} mean {result['mean'][n] * 100:.1f} % worst "
                      f"{result['worst'][n]['accuracy'] * 100:.1f} %"
                      if result["worst"][n] is not None else f"{n}: no counted cell"
                      for n in names)
    ax.set_title(f"Robustness (n={result['samples_per_cell']} per cell)\n{means}", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
