"""Regenerate calibration_data/ from the real datasets (NEU, CWRU, MNIST).

    python calibration_data/make_calibration_data.py /path/to/shared/datasets

The samples are chosen deterministically, so running this again gives the same samples
(the .mat headers carry a creation date, the rest is byte-identical). It also rewrites
README.md, so the sample ranges documented there always match the files. Not part of the
edgecnn package: it is never imported by it.
"""

from __future__ import annotations

import argparse
import gzip
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import scipy.io

HERE = Path(__file__).resolve().parent

NEU_PER_CLASS = 20
MNIST_PER_CLASS = 50
CLIP_SECONDS = 2.5
CWRU_CLASSES = ("normal", "IR007", "IR014", "IR021", "B007", "B014", "B021",
                "OR007@6", "OR014@6", "OR021@6")
_CWRU_FAULT = re.compile(r"^12k_Drive_End_(?P<label>.+)_(?P<load>\d)_(?P<number>\d+)\.mat$")
_NEU_NUMBER = re.compile(r"_(\d+)$")


def pick_neu(source: Path, target: Path) -> list[str]:
    """20 images per class, evenly spaced over the class's files in numeric order."""
    lines = []
    for class_dir in sorted(p for p in (source / "train").iterdir() if p.is_dir()):
        files = sorted(class_dir.glob("*.jpg"),
                       key=lambda p: int(_NEU_NUMBER.search(p.stem).group(1)))
        chosen = [files[(i * len(files)) // NEU_PER_CLASS] for i in range(NEU_PER_CLASS)]
        out = target / class_dir.name
        out.mkdir(parents=True, exist_ok=True)
        for path in chosen:
            shutil.copyfile(path, out / path.name)
        numbers = ", ".join(_NEU_NUMBER.search(p.stem).group(1) for p in chosen)
        lines.append(f"| `neu/{class_dir.name}/` | {len(chosen)} files, `train/{class_dir.name}/"
                     f"{class_dir.name}_<n>.jpg` with n = {numbers} |")
    return lines


def pick_cwru(source: Path, target: Path) -> list[str]:
    """One 2.5 s clip per class from the end of a recording, motor loads rotating 0, 1, 2.

    Only the drive-end channel and the RPM are kept (under their original key names), and
    the file is zlib-compressed, to keep the shipped data small.
    """
    by_class: dict[str, dict[int, Path]] = {}
    for path in source.glob("*.mat"):
        if path.name.startswith("normal_"):
            label, load = "normal", int(path.name.split("_")[1])
        else:
            match = _CWRU_FAULT.match(path.name)
            if not match:
                continue
            label, load = match.group("label"), int(match.group("load"))
        by_class.setdefault(label, {})[load] = path
    target.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, label in enumerate(CWRU_CLASSES):
        loads = by_class[label]
        # IR007/014/021 from loads 0/1/2, B from 1/2/0, OR from 2/0/1: every load per size.
        wanted = (i - 1) // 3 + (i - 1) % 3 if label != "normal" else 0
        wanted %= 3
        path = loads[wanted] if wanted in loads else loads[min(loads)]
        rate = 48000 if path.name.startswith("normal") else 12000
        length = int(CLIP_SECONDS * rate)
        names = [name for name, _, _ in scipy.io.whosmat(str(path))]
        de_key = next(name for name in names if name.endswith("_DE_time"))
        rpm_keys = [name for name in names if name.endswith("RPM")]
        data = scipy.io.loadmat(str(path), variable_names=[de_key, *rpm_keys])
        signal = data[de_key]
        start = len(signal) - length
        clip = {de_key: np.ascontiguousarray(signal[start:], dtype=np.float64)}
        clip.update({key: data[key] for key in rpm_keys})
        scipy.io.savemat(str(target / path.name), clip, do_compression=True, oned_as="column")
        rpm = int(np.asarray(data[rpm_keys[0]]).ravel()[0]) if rpm_keys else "?"
        lines.append(f"| `cwru/{path.name}` | {label} | {rate // 1000} kHz | {rpm} rpm | "
                     f"`{de_key}` samples {start}-{len(signal) - 1} of {len(signal)} "
                     f"(last {CLIP_SECONDS:g} s) |")
    return lines


def pick_mnist(source: Path, target: Path) -> str:
    """The first 50 training images of each digit, in their original order."""
    with gzip.open(source / "train-images-idx3-ubyte.gz", "rb") as handle:
        images_raw = handle.read()
    with gzip.open(source / "train-labels-idx1-ubyte.gz", "rb") as handle:
        labels_raw = handle.read()
    count, rows, cols = (int.from_bytes(images_raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(3))
    images = np.frombuffer(images_raw, np.uint8, offset=16).reshape(count, rows, cols)
    labels = np.frombuffer(labels_raw, np.uint8, offset=8)
    chosen = np.sort(np.concatenate([np.flatnonzero(labels == d)[:MNIST_PER_CLASS]
                                     for d in range(10)]))
    target.mkdir(parents=True, exist_ok=True)
    header = (2051).to_bytes(4, "big") + b"".join(v.to_bytes(4, "big")
                                                  for v in (len(chosen), rows, cols))
    _write_gzip(target / "calib-images-idx3-ubyte.gz", header + images[chosen].tobytes())
    header = (2049).to_bytes(4, "big") + len(chosen).to_bytes(4, "big")
    _write_gzip(target / "calib-labels-idx1-ubyte.gz", header + labels[chosen].tobytes())
    return (f"{len(chosen)} digits ({MNIST_PER_CLASS} of each) from training-set indices "
            f"{chosen[0]}-{chosen[-1]}:\nthe first {MNIST_PER_CLASS} occurrences of every "
            "digit, in their original order")


def _write_gzip(path: Path, payload: bytes) -> None:
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw,
                                                mtime=0) as handle:
        handle.write(payload)


README = """# calibration_data: small real samples shipped with edgecnn

Real data, cut from the public datasets below, small enough to ship (< 4 MB). Uses: int8
calibration and parity checks when no dataset is at hand, the demo, and the tests. These
are training-set samples: never report accuracy on them as a test score.

Regenerate (deterministic choice of samples) with:

    python calibration_data/make_calibration_data.py /path/to/shared/datasets

where the folder holds `neu/train/<class>/*.jpg`, `cwru/*.mat` and
`mnist/train-{{images-idx3,labels-idx1}}-ubyte.gz`. The script also rewrites this README.

## neu/ - NEU surface defect database (6 classes, 200x200 grayscale JPEG)

{neu_count} images per class, copied unchanged (3-channel JPEG, grayscale content), chosen
evenly over each class's files sorted by number. Load with `edgecnn.data.load_image_folder`
(or task `images`/`neu`).

| folder | files |
|---|---|
{neu}

Source: NEU-DET images from `siddhartamukherjee/NEU-DET-Steel-Surface-Defect-Detection`
(commit 351bee2). Licence: distributed by Northeastern University (K. Song, Y. Yan) for
research use, no formal licence stated. Cite: K. Song and Y. Yan, "A noise robust method
based on completed local binary patterns for hot-rolled steel strip surface defects",
Applied Surface Science 285 (2013) 858-864; Y. He, K. Song, Q. Meng, Y. Yan, "An End-to-end
Steel Surface Defect Detection Approach via Fusing Multiple Hierarchical Features", IEEE
Trans. Instrumentation and Measurement 69(4) (2020) 1493-1504.

## cwru/ - Case Western Reserve University bearing data (10 classes)

One {clip:g} s clip per class, taken from the end of the recording, motor loads rotating
over 0, 1, 2 HP across classes (the healthy baseline exists here only at 0 HP). Each file
keeps the original file name (so the `cwru` label rule reads its class) and key names:
the drive-end accelerometer `X<nnn>_DE_time` (float64, in g, an N x 1 column as in the
source) and `X<nnn>RPM`. The fan-end and base channels are left out and the files are
zlib-compressed MATLAB 5 files, to stay small. The 12k files are sampled at 12 000 Hz
(30 000 samples); `normal_0_97.mat` is at its native 48 000 Hz (120 000 samples), so a
12 kHz task resamples it.

| file | class | rate | speed | samples (0-based, inclusive) |
|---|---|---|---|---|
{cwru}

Source: CWRU Bearing Data Center files via `yyxyz/CaseWesternReserveUniversityData`
(commit b19e5a7e). `normal_0_97.mat` there holds the first 75 % of the original
recording, so its "end" here is the end of that copy. Licence: published by Case Western
Reserve University for free research use (https://engineering.case.edu/bearingdatacenter),
no formal licence stated. Cite: Case Western Reserve University Bearing Data Center; and
W. A. Smith, R. B. Randall, "Rolling element bearing diagnostics using the Case Western
Reserve University data: A benchmark study", Mechanical Systems and Signal Processing
64-65 (2015) 100-131.

## mnist/ - MNIST handwritten digits

`calib-images-idx3-ubyte.gz` + `calib-labels-idx1-ubyte.gz`: valid IDX files (magic 2051 /
2049, 28x28 uint8). Load with `edgecnn.data.load_mnist` (task `mnist`). They hold:

{mnist}.

Source: the standard MNIST training set (`train-images-idx3-ubyte.gz`,
`train-labels-idx1-ubyte.gz`). Licence: CC BY-SA 3.0 (Y. LeCun, C. Cortes, C. J. C. Burges).
Cite: Y. LeCun, L. Bottou, Y. Bengio, P. Haffner, "Gradient-based learning applied to
document recognition", Proceedings of the IEEE 86(11) (1998) 2278-2324.

## make_calibration_data.py

The script that made all of the above (numpy and scipy only).
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", type=Path, help="folder holding neu/, cwru/ and mnist/")
    args = parser.parse_args(argv)
    source = args.datasets
    for sub in ("neu/train", "cwru", "mnist"):
        if not (source / sub).is_dir():
            print(f"error: {source / sub} is not a folder", file=sys.stderr)
            return 2
    for sub in ("neu", "cwru", "mnist"):
        if (HERE / sub).exists():
            shutil.rmtree(HERE / sub)
    neu = pick_neu(source / "neu", HERE / "neu")
    cwru = pick_cwru(source / "cwru", HERE / "cwru")
    mnist = pick_mnist(source / "mnist", HERE / "mnist")
    (HERE / "README.md").write_text(README.format(neu="\n".join(neu), neu_count=NEU_PER_CLASS,
                                                  cwru="\n".join(cwru), clip=CLIP_SECONDS,
                                                  mnist=mnist))
    total = sum(p.stat().st_size for p in HERE.rglob("*") if p.is_file())
    print(f"wrote {HERE} ({total / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
