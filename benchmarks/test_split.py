"""Split a class-folder image set into train/ and test/ folders of symlinks (stratified,
fixed seed), so a model can be scored on images that neither its training nor its
validation split ever saw -- how the X-SDD and NEU test figures in the README were made.

    python benchmarks/test_split.py ../shared/datasets/xsdd/train /tmp/xsdd-split 0.2
    edgecnn train --task images --data /tmp/xsdd-split/train --out m
    edgecnn export m --out b && edgecnn parity b --data /tmp/xsdd-split/test
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

SEED = 12345


def split(src: Path, out: Path, fraction: float) -> dict[str, dict[str, int]]:
    if not 0 < fraction < 1:
        raise SystemExit(f"test fraction must be between 0 and 1; found {fraction}")
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} is not empty; give a new folder")
    rng = random.Random(SEED)
    classes = sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise SystemExit(f"{src}: expected one sub-folder per class; found none")
    for folder in classes:
        files = sorted(f for f in folder.rglob("*") if f.is_file())
        rng.shuffle(files)
        k = round(len(files) * fraction)
        for i, f in enumerate(files):
            target = out / ("test" if i < k else "train") / folder.name / f.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(f.resolve())
    return {part: {c.name: sum(1 for _ in c.iterdir()) for c in sorted((out / part).iterdir())}
            for part in ("train", "test") if (out / part).is_dir()}


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    for part, counts in split(Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])).items():
        print(part, counts)
