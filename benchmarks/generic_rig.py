"""A generic vibration rig from the CWRU recordings: one variable per .mat file (named
``vib``, the drive-end channel), file names that say nothing, labels and sample rates in
``labels.csv`` -- the layout the ``vibration`` task reads (``edgecnn train --help``).

    python benchmarks/generic_rig.py ../shared/datasets OUT

writes OUT/48k (the 48 kHz faults and the 48 kHz normal recording, 0 HP: a time split),
OUT/speed-train (12 kHz faults at 0 and 1 HP, 1797/1772 rpm, plus the 48 kHz normal) and
OUT/speed-test (12 kHz faults at 2 HP, 1750 rpm: an operating speed training never saw).
"""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

import numpy as np
import scipy.io as sio


def drive_end(path: Path) -> np.ndarray:
    data = sio.loadmat(path)
    key = next(k for k in data if k.endswith("_DE_time"))
    return np.asarray(data[key], np.float64).ravel()


def label(name: str) -> str:
    if name.startswith("normal"):
        return "normal"
    return re.search(r"Drive_End_([A-Z]+\d{3})", name).group(1)


def rate(path: Path) -> int:
    return 48000 if path.name.startswith(("48k", "normal")) else 12000


def load(path: Path) -> int:
    return int(re.search(r"_(\d)_\d+\.mat$", path.name).group(1))


def write(out: Path, files) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for path in files:
        name = f"rec_{len(rows):02d}.mat"
        sio.savemat(out / name, {"vib": drive_end(path)})
        rows.append((name, label(path.name), rate(path)))
    with open(out / "labels.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "label", "sample_rate"])
        writer.writerows(rows)
    print(f"{out}: {len(rows)} recordings, classes {sorted({r[1] for r in rows})}")


def main(argv=None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        sys.exit(__doc__)
    datasets, out = Path(args[0]), Path(args[1])
    normal = datasets / "cwru" / "normal_0_97.mat"
    twelve = sorted((datasets / "cwru").glob("12k_*.mat"))
    write(out / "48k", [*sorted((datasets / "cwru48k").glob("*.mat")), normal])
    write(out / "speed-train", [*(f for f in twelve if load(f) in (0, 1)), normal])
    write(out / "speed-test", [f for f in twelve if load(f) == 2])


if __name__ == "__main__":
    main()
