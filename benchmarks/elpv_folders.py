"""Class folders from the ELPV solar-cell set (Buerhop-Lutz et al.; 2624 electroluminescence
images of 300x300 px, labelled with the experts' defect probability 0, 1/3, 2/3 or 1), as
the ``elpv-dataset`` wheel on PyPI ships it -- a public set of the documented layout that
no recipe here was tuned on (four imbalanced classes, 57 % "functional").

    pip download elpv-dataset --no-deps -d /tmp/elpv-wheel
    python benchmarks/elpv_folders.py /tmp/elpv-wheel/elpv_dataset-*.whl /tmp/elpv-all
    python benchmarks/test_split.py /tmp/elpv-all /tmp/elpv-split 0.2
    edgecnn train --task images --data /tmp/elpv-split/train --out m
"""

from __future__ import annotations

import sys
import zipfile
from collections import Counter
from pathlib import Path

# defect probability in labels.csv -> class folder
LEVELS = {0.0: "functional", 1 / 3: "mild", 2 / 3: "likely", 1.0: "defective"}
DATA = "elpv_dataset/data/"


def level(text: str) -> str:
    value = float(text)
    for probability, name in LEVELS.items():
        if abs(value - probability) < 1e-6:
            return name
    raise SystemExit(f"labels.csv: expected a probability of 0, 1/3, 2/3 or 1; found {text}")


def unpack(wheel: Path, out: Path) -> Counter:
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} is not empty; give a new folder")
    counts: Counter = Counter()
    with zipfile.ZipFile(wheel) as archive:
        try:
            rows = archive.read(DATA + "labels.csv").decode().split("\n")
        except KeyError:
            raise SystemExit(f"{wheel}: expected {DATA}labels.csv (the elpv-dataset wheel)")
        for row in filter(None, (r.split() for r in rows)):
            image, probability = row[0], row[1]
            name = level(probability)
            target = out / name / Path(image).name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(DATA + image))
            counts[name] += 1
    return counts


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    counts = unpack(Path(argv[0]), Path(argv[1]))
    print(f"{sum(counts.values())} images: {dict(sorted(counts.items()))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
