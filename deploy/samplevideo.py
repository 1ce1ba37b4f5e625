"""A sample line video made from labelled images, for demos and benchmarks.

``make_sample_video`` turns a folder of class sub-folders (e.g. calibration_data/neu)
into an .avi that plays a few images of each class in turn, each held for a few frames,
so ``edgecnn run camera`` has something real to watch without a camera. The video is
lossless (FFV1; MJPG only where OpenCV cannot write FFV1): JPEG re-compression changes
pixels enough to flip a borderline image (NEU pitted_surface_1.jpg reads as inclusion at
0.55 after MJPG, pitted_surface at 0.89 as stored), and the demo should show the images as
they are.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .errors import InputError
from .preprocess import IMAGE_SUFFIXES, read_image

CODECS = ("FFV1", "MJPG")  # lossless first


def sample_video_images(image_dir, per_class: int = 3) -> list[Path]:
    """The images of the sample video, in play order: ``per_class`` of each class
    sub-folder of ``image_dir`` (sorted), classes in turn. Image k fills frames
    ``k * hold`` to ``(k + 1) * hold - 1``."""
    image_dir = Path(image_dir)
    classes = sorted(p for p in image_dir.iterdir() if p.is_dir()) if image_dir.is_dir() \
        else []
    files_by_class = [sorted(f for f in c.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
                      [:per_class] for c in classes]
    return [files[i] for i in range(per_class) for files in files_by_class if i < len(files)]


def make_sample_video(out, image_dir, per_class: int = 3, hold: int = 4,
                      fps: float = 25.0, size: tuple[int, int] | None = None) -> Path:
    """Write ``out`` (.avi, lossless FFV1, else MJPG): the images of
    ``sample_video_images(image_dir, per_class)``, each shown for ``hold`` frames.

    ``size`` (width, height) resizes every image; default: the first image's size.
    Returns the path; raises InputError when there is nothing to put in the video.
    """
    order = sample_video_images(image_dir, per_class)
    if not order:
        raise InputError(f"expected class folders of images in {image_dir}; found none")
    if per_class < 1 or hold < 1 or fps <= 0:
        raise InputError("per_class and hold must be >= 1 and fps positive")
    first = read_image(order[0])
    width, height = size or (first.shape[1], first.shape[0])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for codec in CODECS:
        writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*codec), fps,
                                 (width, height))
        if writer.isOpened():
            break
    else:
        raise InputError(f"cannot write a video to {out} (tried {', '.join(CODECS)})")
    try:
        for path in order:
            image = read_image(path)
            if image.shape[:2] != (height, width):
                image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
            frame = np.ascontiguousarray(image)
            for _ in range(hold):
                writer.write(frame)
    finally:
        writer.release()
    return out
