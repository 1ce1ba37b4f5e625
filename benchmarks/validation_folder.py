"""Copy the validation images ``edgecnn train`` held out for a model into a class-folder
tree, so ``edgecnn parity`` / ``eval`` / ``bench`` can be run on exactly that split.

    python benchmarks/validation_folder.py runs/neu ../shared/datasets/neu/train /tmp/neu-val
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from edgecnn.data import load_dataset
from edgecnn.deploy.errors import DataError
from edgecnn.modeldir import ModelDir
from edgecnn.splits import validation_split


def main(model_dir: str, data: str, out: str) -> int:
    source = ModelDir.open(model_dir)
    training = source.manifest.get("training") or {}
    if source.spec.kind != "image":
        raise DataError("only image models: recordings are split by time inside each file")
    samples = load_dataset(training["task"], data, source.spec, labels=source.spec.labels)
    _, val = validation_split(samples, training.get("val_fraction", 0.2), training.get("seed", 0))
    if training.get("val_samples") not in (None, len(val)):
        raise DataError(f"{data} gives {len(val)} validation images; training held out "
                        f"{training['val_samples']}: not the data the model was trained on")
    for i in val:
        target = Path(out) / source.spec.labels[samples.labels[i]] / Path(samples.sources[i]).name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(data) / samples.sources[i], target)
    print(f"{len(val)} validation images copied to {out}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    sys.exit(main(*sys.argv[1:]))
