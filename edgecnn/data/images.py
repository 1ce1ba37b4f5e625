"""Defect images in class sub-folders (``root/<class>/*.jpg``) or named ``<class>_<n>.jpg``.

The flat naming is NEU's; both layouts may be mixed in one folder. A class folder may hold
its images in sub-folders at any depth (``MT_Blowhole/Imgs/*.jpg``): the class is the
folder directly under the root. Segmentation masks stored beside the images are not
samples (see ``is_mask``); they are skipped with one note. Images smaller than
MIN_IMAGE_SIDE pixels on a side, and training images of one flat value, are refused,
naming the file.

Images are decoded with the runtime's ``decode_image`` and kept uint8 at their native size,
so training and the line-side camera loop start from identical pixels; the InputSpec resizes
and normalises later. 16-bit PNG/TIFF files are brought to 8 bits by one bit depth: the
model's (ImageSpec.bit_depth) when it has one, else found from the files' largest value
(``choose_bit_depth``) and noted.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from edgecnn.data.assemble import (
    SkipLog,
    empty_positions,
    finish,
    log,
    natural_key,
    note_lost_classes,
    relative_name,
    resolve_classes,
)
from edgecnn.data.recording_labels import MANIFEST_NAME
from edgecnn.data.samples import LabelledSamples
from edgecnn.deploy.errors import DataError, InputError
from edgecnn.deploy.preprocess import (
    IMAGE_SUFFIXES,
    bit_depth_for,
    decode_image,
    read_image,
    to_8bit,
)
from edgecnn.deploy.spec import COLOR_MODES

# NEU: "rolled-in_scale_12" -> "rolled-in_scale"; the class name may hold "-" and "_".
_FLAT_NAME = re.compile(r"^(?P<label>.+?)_(?P<number>\d+)$")
_JPEG_START, _JPEG_END = b"\xff\xd8", b"\xff\xd9"
_PNG_START, _PNG_END = b"\x89PNG", b"IEND\xaeB`\x82"
# Mask rule: a file whose stem ends in one of these words after "_", "-", "." or a space
# (case-insensitive: x_mask, x-GT, x.mask, "x mask"), one that starts with mask/gt/seg and
# a separator followed by the stem of an image beside it (mask_x.png beside x.jpg), or a
# .png/.bmp/.tif with the same stem as a .jpg/.jpeg beside it (the magnetic-tile layout).
_MASK_END = re.compile(r"[_\-. ](masks?|gt|seg)$")
# names that mark a mask only as often as a photograph (of a product's label, say): a
# mask only when its pixels are one too (``_mask_pixels``)
_MAYBE_MASK_END = re.compile(r"[_\-. ](labels?|annotations?)$")
_MASK_START = re.compile(r"^(masks?|gt|seg)[_\-. ](?P<rest>.+)$")
# ... and every image in a sub-folder of a class folder with one of these names
MASK_FOLDERS = frozenset({"mask", "masks", "gt", "ground_truth", "groundtruth",
                          "ground-truth", "label", "labels", "annotation", "annotations",
                          "segmentation", "segmentations", "seg"})
# Folders an operating system or a NAS adds to a share: never classes, left out quietly
# (as hidden entries are): Synology thumbnails, a Mac zip's resource forks, Windows bins.
SYSTEM_FOLDERS = frozenset({"@eadir", "__macosx", "$recycle.bin", "#recycle", "@recycle",
                            "system volume information", "#snapshot", "@tmp"})
# Folder names that are a dataset's splits, not classes
SPLIT_FOLDERS = frozenset({"train", "training", "test", "testing", "val", "valid",
                           "validation", "dev", "holdout"})
MIN_IMAGE_SIDE = 8
# Files beside images that are plainly not pictures (notes, labels, annotations): left out
# without a word; any other suffix is named in a note (a .gif or a camera's raw file).
DOCUMENT_SUFFIXES = (".txt", ".md", ".csv", ".json", ".xml", ".yaml", ".yml", ".ini", ".db",
                     ".log", ".pdf")


def flat_class_name(file_name: str) -> str | None:
    """Class of a flat-named file (``pitted_surface_3.jpg`` -> ``pitted_surface``), else None."""
    match = _FLAT_NAME.match(Path(file_name).stem)
    return match.group("label") if match else None


def is_mask(path: Path, siblings: set[str]) -> bool:
    """Is ``path`` a segmentation mask rather than a sample? ``siblings``: lower-case file
    names in its folder."""
    stem = path.stem.lower()
    if _MASK_END.search(stem):
        return True
    if _MAYBE_MASK_END.search(stem) and _mask_pixels(path):
        return True
    start = _MASK_START.match(stem)
    if start and any(f"{start.group('rest')}{ext}" in siblings for ext in IMAGE_SUFFIXES):
        return True
    return path.suffix.lower() in (".png", ".bmp", ".tif", ".tiff") and any(
        f"{stem}{ext}" in siblings for ext in (".jpg", ".jpeg"))


def _mask_pixels(path: Path) -> bool:
    """Whether an image's pixels are a mask's: a few label values (0/255, or class
    numbers 0..7), or, saved as JPEG, nearly all pixels at black or white."""
    try:
        image = decode_image(path, "gray")
    except InputError:
        return False
    if image.dtype != np.uint8:
        return len(np.unique(image)) <= 8
    counts = np.bincount(image.ravel(), minlength=256)
    if np.count_nonzero(counts) <= 8:
        return True
    return (counts[:9].sum() + counts[247:].sum()) >= 0.98 * image.size


def _ignored_folder(name: str) -> bool:
    """Hidden and system folders (see SYSTEM_FOLDERS): not data."""
    return name.startswith(".") or name.lower() in SYSTEM_FOLDERS


class _Walk:
    """What a walk over a dataset folder met besides samples: masks, files that are not
    images, broken links, and files reached twice (through links), each noted once."""

    def __init__(self, root: Path):
        self.root = root
        self.masks: list[Path] = []
        self.others: Counter = Counter()      # suffix -> files of formats not read
        self.broken: list[Path] = []
        self.twice: list[Path] = []
        self._seen: set[str] = set()          # real paths of the files taken
        self._dirs: set[str] = set()          # real paths of the folders walked

    def files(self, directory: Path, masks: bool = False) -> list[Path]:
        """The image files directly in ``directory``, masks and repeats left out
        (``masks``: the folder holds masks only, e.g. ``<class>/ground_truth``)."""
        files = []
        for path in directory.iterdir():
            if path.name.startswith(".") or path.is_dir():
                continue
            if not path.exists():
                self.broken.append(path)
            elif not path.is_file():          # a pipe or device: reading it may never end
                self.others["(not a regular file)"] += 1
            elif path.suffix.lower() in IMAGE_SUFFIXES:
                files.append(path)
            elif path.suffix.lower() not in DOCUMENT_SUFFIXES:
                self.others[path.suffix.lower() or "(no suffix)"] += 1
        names = {p.name.lower() for p in files}
        taken = []
        for path in sorted(files, key=lambda p: natural_key(p.name)):
            if masks or is_mask(path, names):
                self.masks.append(path)
                continue
            real = os.path.realpath(path)
            if real in self._seen:
                self.twice.append(path)
                continue
            self._seen.add(real)
            taken.append(path)
        return taken

    def images_in(self, folder: Path) -> list[Path]:
        """Image files under ``folder`` at any depth, through linked folders (each real
        folder once, so a link loop ends), hidden entries and masks left out."""
        found = []
        for directory, subfolders, _ in os.walk(folder, followlinks=True):
            subfolders[:] = sorted(d for d in subfolders if not _ignored_folder(d))
            real = os.path.realpath(directory)
            if real in self._dirs:
                subfolders[:] = []
                continue
            self._dirs.add(real)
            inside = Path(directory).relative_to(folder).parts
            found.extend(self.files(Path(directory), masks=any(
                part.lower() in MASK_FOLDERS for part in inside)))
        return sorted(found, key=lambda p: natural_key(p.relative_to(folder).as_posix()))

    def notes(self) -> None:
        root = self.root
        if self.masks:
            examples = ", ".join(relative_name(root, p) for p in self.masks[:3])
            log.warning("note: %d mask file(s) left out (names ending mask/gt/label after _, "
                        "-, . or a space, mask_<image>, a PNG or TIFF beside a JPEG of the "
                        "same name, or in a masks/ or ground_truth/ folder), e.g. %s",
                        len(self.masks), examples)
        if self.others:
            kinds = ", ".join(f"{suffix} {n}" for suffix, n in self.others.most_common())
            log.warning("note: %d file(s) of formats not read left out (%s); images are %s",
                        sum(self.others.values()), kinds, " ".join(IMAGE_SUFFIXES))
        if self.broken:
            log.warning("note: %d broken link(s) left out, e.g. %s", len(self.broken),
                        relative_name(root, self.broken[0]))
        if self.twice:
            log.warning("note: %d file(s) reached a second time through a link, counted once, "
                        "e.g. %s", len(self.twice), relative_name(root, self.twice[0]))


def find_labelled_images(root: Path, skips: SkipLog,
                         held: dict[str, str] | None = None) -> list[tuple[Path, str]]:
    """(file, class) pairs: files under ``root/<class>/`` (any depth) take the folder's name,
    files directly in ``root`` take the class from their flat name. Unlabelled files are
    skipped; masks, other files and repeats are left out with one note each. ``held``
    receives what each class folder without a single image holds."""
    if _labels_manifest(root / MANIFEST_NAME):
        return _manifest_images(root, skips)
    found: list[tuple[Path, str]] = []
    nested: list[str] = []
    walk = _Walk(root)
    flat = walk.files(root)
    folders = [entry for entry in sorted(root.iterdir(), key=lambda p: natural_key(p.name))
               if entry.is_dir() and not _ignored_folder(entry.name)]
    _refuse_splits(root, folders)
    mask_folders = [entry for entry in folders if _holds_masks(entry, len(folders))]
    if mask_folders:
        log.warning("note: %s beside the class folders of %s hold(s) masks (black-and-white "
                    "images), not a class: left out; rename the folder if it is a class",
                    ", ".join(f"{entry.name}/" for entry in mask_folders), root)
    for entry in folders:
        if entry in mask_folders:
            continue
        masks_before = len(walk.masks)
        images = walk.images_in(entry)
        if not images and held is not None:
            masks = len(walk.masks) - masks_before
            held[entry.name] = f"{masks} mask file(s) only" if masks else "no image files"
        if any(path.parent != entry for path in images):
            nested.append(entry.name)
        found.extend((path, entry.name) for path in images)
    strays: Counter = Counter()     # flat classes beside class folders that have none
    names = {entry.name for entry in folders}
    for entry in flat:
        label = flat_class_name(entry.name)
        if label is None:
            skips.skip(entry, "cannot tell its class: expected a class sub-folder or a "
                              "file named <class>_<number>" + entry.suffix)
        else:
            found.append((entry, label))
            if folders and label not in names:
                strays[label] += 1
    if nested:
        log.warning("note: class folders with images in sub-folders (class = the folder "
                    "under %s): %s", root, ", ".join(nested))
    if strays:
        log.warning("note: %d file(s) at the top of %s, beside its class folders, make "
                    "class(es) of their own by their names: %s; if they are no class, move "
                    "them out of the data", sum(strays.values()), root,
                    ", ".join(f"{name!r} {n}" for name, n in sorted(strays.items())))
    elif not folders and len(found) > 0:
        by_name = Counter(label for _, label in found)
        log.warning("note: no class folders in %s: classes taken from the file names "
                    "(<class>_<number>): %s; sort the files into class folders, or label "
                    "them in a %s (file,label) if that is not their class", root,
                    ", ".join(f"{name!r} {n}" for name, n in sorted(by_name.items())[:8])
                    + (" ..." if len(by_name) > 8 else ""), MANIFEST_NAME)
    walk.notes()
    return found


def _labels_manifest(path: Path) -> bool:
    """Whether ``path`` is a label manifest: a CSV whose header names the columns file and
    label (another CSV of that name, say a measurement table, is no reason to stop
    reading the class folders)."""
    if not path.is_file():
        return False
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as handle:
            for line in handle:
                if line.strip() and not line.lstrip().startswith("#"):
                    cells = {c.strip().strip('"').lower() for c in re.split(r"[,;\t]", line)}
                    return {"file", "label"} <= cells
    except OSError:
        return False
    return False


def _manifest_images(root: Path, skips: SkipLog) -> list[tuple[Path, str]]:
    """(file, class) pairs from the ``labels.csv`` (``file,label``) in ``root``, as a
    labelling tool exports it: every image under ``root`` it names, by its path there (or
    its bare name where that is unique); an image it does not name is skipped."""
    from edgecnn.data.recording_labels import ManifestRule

    rule = ManifestRule(root / MANIFEST_NAME, root)
    if any(rate is not None for _, rate in rule.entries.values()):
        raise DataError(f"{root / MANIFEST_NAME} gives sample rates: that is a recordings "
                        "manifest; images take file,label")
    walk = _Walk(root)
    found = []
    for path in walk.images_in(root):
        label = rule.label(relative_name(root, path))
        if label is None:
            skips.skip(path, f"not labelled: {MANIFEST_NAME} has no row for it")
        else:
            found.append((path, label))
    rule.check_unambiguous()
    missing = rule.unmatched()
    if missing:
        log.warning("note: %d row(s) of %s name no image under %s, e.g. %s", len(missing),
                    MANIFEST_NAME, root, ", ".join(missing[:3]))
    log.warning("note: classes from %s: %d image(s) in %d class(es)", root / MANIFEST_NAME,
                len(found), len({label for _, label in found}))
    walk.notes()
    return found


def _holds_masks(folder: Path, folders: int) -> bool:
    """A folder named like a mask folder (GT/, masks/ ...) beside other class folders whose
    first images are black-and-white (two grey values at most): segmentation masks. A class
    that happens to be called "mask" holds photographs, and stays a class."""
    if folders < 2 or folder.name.lower() not in MASK_FOLDERS:
        return False
    sample = []
    for directory, subfolders, files in os.walk(folder):
        subfolders[:] = sorted(d for d in subfolders if not _ignored_folder(d))
        sample += [Path(directory) / f for f in sorted(files)
                   if Path(f).suffix.lower() in IMAGE_SUFFIXES and not f.startswith(".")]
        if len(sample) >= 3:
            break
    if not sample:
        return False
    for path in sample[:3]:
        try:
            image = decode_image(path, "gray")
        except InputError:
            return False
        if len(np.unique(image)) > 2:
            return False
    return True


def _refuse_splits(root: Path, folders: list[Path]) -> None:
    """A root whose folders are a dataset's splits (train/, test/ ...), each with the same
    class folders in it, is one level too high: the model would learn train from test."""
    splits = [entry for entry in folders if entry.name.lower() in SPLIT_FOLDERS]
    if len(splits) < 2:
        return
    inner = [{p.name for p in entry.iterdir() if p.is_dir() and not _ignored_folder(p.name)}
             for entry in splits]
    shared = set.intersection(*inner)
    if len(shared) < 2 and all(entry.name.lower() in SPLIT_FOLDERS | MASK_FOLDERS
                               for entry in folders):
        # only splits (and masks) at the top, a class in one split missing from the other:
        # an anomaly-detection layout (MVTec AD: train/good; test/good, test/<defect>)
        held = ", ".join(f"{entry.name}/ ({', '.join(sorted(classes)[:4]) or 'no folders'})"
                         for entry, classes in zip(splits, inner))
        richest = max(zip(splits, inner), key=lambda pair: len(pair[1]))[0]
        raise DataError(f"{root} holds the splits {held}, not classes: expected the class "
                        f"folders directly under --data (an anomaly-detection layout, whose "
                        f"training split holds good images only, does not train a "
                        f"classifier); e.g. --data {richest} to train on its classes")
    if len(shared) >= 2:
        names = ", ".join(entry.name for entry in splits)
        # the training split first: train on it, evaluate on the others
        splits.sort(key=lambda entry: not entry.name.lower().startswith("train"))
        others = " or ".join(str(entry) for entry in splits[1:])
        raise DataError(f"{root} holds the splits {names}, each with class folders "
                        f"({', '.join(sorted(shared)[:6])}): expected the classes directly "
                        f"under --data; train with --data {splits[0]}, and give {others} "
                        "to eval or parity")


def explain_layout(root: Path) -> str:
    """A hint for a folder where no class could be found: what the layout looks like."""
    folders = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if len(folders) == 1:
        inner = [p.name for p in folders[0].iterdir() if p.is_dir()]
        if len(inner) >= 2:
            return (f"; {root} holds one folder {folders[0].name!r} with sub-folders "
                    f"{', '.join(sorted(inner)[:5])}: if those are the classes, pass "
                    f"--data {folders[0]}")
    return ("; expected class sub-folders (root/<class>/[...]/*.jpg) or files named "
            "<class>_<number>.jpg")


def check_image(image: np.ndarray, path: Path, training: bool = True) -> None:
    """Refuse images that cannot show a defect: tiny, or (for training) one flat value. A
    flat picture is a fair input to measure on (a covered lens, a test card for int8
    ranges), but nothing to learn a class from."""
    if min(image.shape[:2]) < MIN_IMAGE_SIDE:
        raise InputError(f"{path} is {image.shape[1]}x{image.shape[0]} pixels: expected at "
                         f"least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE}")
    if training and int(image.max()) == int(image.min()):
        raise InputError(f"{path} is one flat value ({int(image.min())}) everywhere: expected "
                         "a picture")


def choose_bit_depth(max_value: int, files: int) -> tuple[int, str]:
    """(bit depth, reason) for 16-bit training files whose largest value is ``max_value``,
    by one written rule: the smallest camera depth (8, 10, 12, 14, 16 bits) that holds it.
    A set of dark 16-bit pictures can read as fewer bits than it has (``--bit-depth``)."""
    bits = bit_depth_for(max_value)
    return bits, (f"{files} 16-bit image file(s), largest value {max_value}: read as "
                  f"{bits}-bit data, x255/{(1 << bits) - 1} to 8 bits")


def images_to_8bit(items: list, bit_depth: int | None, training: bool,
                   given: bool = False) -> int | None:
    """Bring the 16-bit images among ``items`` to uint8 in place, all by one bit depth:
    ``bit_depth`` (``given`` by --bit-depth, or the model's), else found from their largest
    value. Returns the depth used (None when every image was 8-bit)."""
    wide = [i for i, image in enumerate(items) if image.dtype == np.uint16]
    if not wide:
        return None
    largest = max(int(items[i].max()) for i in wide)
    if bit_depth is None:
        bit_depth, reason = choose_bit_depth(largest, len(wide))
        log.warning("note: %s (as the same camera's 8-bit frames show it; %s)", reason,
                    "--bit-depth overrides" if training else "the model was trained on "
                    "8-bit files")
    elif bit_depth_for(largest) <= bit_depth - 2:
        log.warning("note: %d 16-bit image file(s) look like %d-bit data (largest value %d) "
                    "but are read as %d-bit data, %s: %dx darker than %s", len(wide),
                    bit_depth_for(largest), largest, bit_depth,
                    "as --bit-depth gives" if given else "the model's",
                    1 << (bit_depth - bit_depth_for(largest)),
                    "they look" if given else "its training files")
    top = (1 << bit_depth) - 1
    beyond = sum(int(items[i].max()) > top for i in wide)
    if beyond:
        log.warning("note: %d of the 16-bit images hold values above %d, the top of %d-bit "
                    "data (largest %d): those pixels read as 255", beyond, top, bit_depth,
                    largest)
    for i in wide:
        items[i] = to_8bit(items[i], bit_depth)
    return bit_depth


def load_image_folder(root, color: str = "gray",
                      labels: tuple[str, ...] | None = None,
                      bit_depth: int | None = None,
                      depth_given: bool = False,
                      size: tuple[int, int] | None = None) -> LabelledSamples:
    """Load a folder of labelled images as uint8 arrays in ``color`` (gray, bgr or rgb).

    Unreadable, truncated or non-image files are warned about, skipped and counted in
    ``.skipped``. ``labels`` (evaluating a model) fixes the class order. ``bit_depth``: the
    bits of data in 16-bit files (the model's, or ``depth_given`` by --bit-depth); None
    finds it from the files. ``size``: the model's input (width, height); an image many
    times larger is kept as a smaller working copy (``working_copy``).
    """
    root = Path(root)
    if color not in COLOR_MODES:
        raise InputError(f"image colour must be one of {', '.join(COLOR_MODES)}; found {color!r}")
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist or is not a folder")
    skips = SkipLog(root)
    held: dict[str, str] = {}
    candidates = find_labelled_images(root, skips, held)
    if labels is not None:  # a class the model does not know fails before any decoding
        resolve_classes({label for _, label in candidates}, labels, root)

    items, label_names, sources, used = [], [], [], []
    features: list[dict | None] = []
    shrunk = _Shrunk()
    with _JpegCheck() as jpeg:
        for path, label in candidates:
            try:
                _require_complete(path)
                image = jpeg.decode(path, color)
                check_image(image, path, training=labels is None)
            except InputError as exc:
                skips.skip(path, str(exc))
                continue
            native = None
            if image.dtype == np.uint8:   # 16-bit files: once they are 8-bit, below
                image, native = working_copy(image, size, shrunk)
            items.append(image)
            features.append(native)
            label_names.append(label)
            sources.append(relative_name(root, path))
            used.append(path)
    if not items and not skips.skipped:
        raise DataError(f"no usable samples found in {root}: no images{explain_layout(root)}")
    files_per_class = Counter(label for _, label in candidates)
    named = {**held, **{name: f"{n} file(s), none usable"
                        for name, n in files_per_class.items()}}
    if labels is None and len(set(label_names)) == 1:
        lost = sorted(set(named) - set(label_names))
        why = (f": the other class(es) have no usable image: "
               f"{', '.join(f'{name} ({named[name]})' for name in lost)}" if lost
               else explain_layout(root))
        raise DataError(f"{root} holds only one class with usable images "
                        f"({label_names[0]}); a classifier needs at least two{why}")
    wide = [i for i, image in enumerate(items) if image.dtype == np.uint16]
    depth = images_to_8bit(items, bit_depth, training=labels is None, given=depth_given)
    for i in wide:
        items[i], features[i] = working_copy(items[i], size, shrunk)
    shrunk.note(size)
    note_lost_classes(named, set(label_names))
    if labels is None:
        _note_lookalike_classes(set(label_names))
    if color == "gray" and labels is None:
        _note_colour(root, used)
    # Classes come from what was decoded: a class whose files all failed is not a class.
    class_names, index = resolve_classes(set(label_names), labels, root)
    samples = LabelledSamples("image", items, [index[name] for name in label_names],
                              class_names, sources,
                              empty_positions(len(items)), skips.skipped, bit_depth=depth,
                              native_features=features if shrunk.count else None)
    return finish(samples, root, used, labels)


# An image more than SHRINK_ABOVE times the model input along its tighter side is kept at
# WORKING_SCALE times the input instead (area averaging): a folder of 20-MP camera images
# at native size would take 20 MB or more each, for a model that sees 128 x 128.
SHRINK_ABOVE = 8
WORKING_SCALE = 4


class _JpegCheck:
    """libjpeg tells of a corrupt JPEG (bytes zeroed or flipped inside the picture) only by
    a line on stderr ("Corrupt JPEG data: premature end of data segment"), and OpenCV still
    returns the picture, garbled from there on. While a loader decodes a JPEG it listens on
    stderr: such a file is refused (skipped and counted), anything else said is passed on."""

    SIGNS = ("Corrupt JPEG data", "Premature end of JPEG", "Bogus", "Invalid JPEG")

    def __enter__(self) -> "_JpegCheck":
        self._file = tempfile.TemporaryFile()
        return self

    def __exit__(self, *exc) -> None:
        self._file.close()

    def decode(self, path: Path, color: str) -> np.ndarray:
        if path.suffix.lower() not in (".jpg", ".jpeg", ".jpe", ".jfif"):
            return decode_image(path, color)
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):     # no stderr to listen on (a detached process)
            return decode_image(path, color)
        self._file.seek(0)
        self._file.truncate()
        try:
            os.dup2(self._file.fileno(), 2)
            try:
                image = decode_image(path, color)
            finally:
                os.dup2(saved, 2)
                said = self._said()      # also when the decode failed
        finally:
            os.close(saved)
        lines = [line.strip() for line in said.splitlines() if line.strip()]
        bad = next((line for line in lines if line.startswith(self.SIGNS)
                    and not _BENIGN_JPEG.search(line)), None)
        if bad is not None:
            raise InputError(f"{path} is a corrupt JPEG (the decoder says: {bad[:120]})")
        return image

    def _said(self) -> str:
        """What was written to stderr during the decode; passed on but for the decoder's
        corrupt-data lines, which the skip note then gives (another thread may have said
        something meanwhile: the descriptor is the process's)."""
        self._file.seek(0)
        said = self._file.read().decode("utf-8", "replace")
        rest = "".join(line for line in said.splitlines(keepends=True)
                       if not (line.strip().startswith(self.SIGNS)
                               and not _BENIGN_JPEG.search(line)))
        if rest:
            sys.stderr.write(rest)
        return said


# libjpeg's warning about stray bytes between the header's segments (before a table, a
# frame header, an APPn/COM segment or the scan): the picture decodes whole, as many
# cameras and exporters write it. Before an RSTn or the end marker they are left over
# from entropy-coded data that did not decode as written: a corrupt picture.
_BENIGN_JPEG = re.compile(r"extraneous bytes before marker 0x(c[0-9a-f]|d[abcdef]|e[0-9a-f]|fe)\b",
                          re.IGNORECASE)

class _Shrunk:
    """The images a load kept as working copies, for one note."""

    def __init__(self) -> None:
        self.count = 0
        self.example: tuple[tuple[int, int], tuple[int, int]] | None = None

    def note(self, size) -> None:
        if self.count:
            (w, h), (sw, sh) = self.example
            log.warning("images: %d image(s) more than %dx the %dx%d input kept at %dx it for "
                        "training and measuring (area averaging; e.g. %dx%d -> %dx%d), to "
                        "save memory; source health is measured at native size, and the "
                        "runtime resizes frames from native size", self.count, SHRINK_ABOVE,
                        size[0], size[1], WORKING_SCALE, w, h, sw, sh)


def working_copy(image: np.ndarray, size: tuple[int, int] | None,
                 shrunk: _Shrunk | None = None) -> tuple[np.ndarray, dict | None]:
    """(image, None), or for an image more than SHRINK_ABOVE times the model input
    ``size`` (width, height) along its tighter side: (a copy WORKING_SCALE times the input
    along that side, area averaged, same aspect ratio; the source-health features of the
    native image, which measure sensor pixels and must not come from the copy)."""
    if size is None:
        return image, None
    h, w = image.shape[:2]
    factor = min(w / (WORKING_SCALE * size[0]), h / (WORKING_SCALE * size[1]))
    if factor <= SHRINK_ABOVE / WORKING_SCALE:
        return image, None
    import cv2

    from edgecnn.deploy.health import image_features

    native = image_features(image, size)
    target = (max(1, round(w / factor)), max(1, round(h / factor)))
    copy = cv2.resize(image, target, interpolation=cv2.INTER_AREA)
    if shrunk is not None:
        shrunk.count += 1
        shrunk.example = shrunk.example or ((w, h), target)
    return copy, native


# Mean HSV saturation (0-255) above which images count as colour: JPEG chroma noise of a
# gray picture stays below 5; a visibly tinted or coloured picture is well above 20.
COLOUR_SATURATION = 20.0
_COLOUR_PROBES = 24


def colour_share(paths: list[Path]) -> float:
    """Share of up to _COLOUR_PROBES evenly picked images whose mean saturation is colour."""
    import cv2

    if not paths:
        return 0.0
    step = max(1, len(paths) // _COLOUR_PROBES)
    probes = paths[::step][:_COLOUR_PROBES]
    coloured = 0
    for path in probes:
        image = read_image(path, "bgr")
        if image.ndim == 3 and image.shape[2] >= 3:
            saturation = cv2.cvtColor(image[..., :3], cv2.COLOR_BGR2HSV)[..., 1]
            coloured += float(saturation.mean()) > COLOUR_SATURATION
    return coloured / len(probes)


def _note_colour(root: Path, used: list[Path]) -> None:
    """Training in gray (the default) throws colour away: say so when the images carry it."""
    share = colour_share(used)
    if share >= 0.5:
        log.warning("note: %.0f %% of the images probed in %s are in colour; the model is "
                    "trained in gray (the task's default). If colour tells the classes apart, "
                    "train with --color bgr", share * 100, root)


def _note_lookalike_classes(names: set[str]) -> None:
    """Class names that differ only by case or surrounding spaces (``Crack``, ``crack``,
    ``scratch `` beside ``scratch``) are different classes to the model: said once."""
    groups: dict[str, list[str]] = {}
    for name in sorted(names):
        groups.setdefault(name.strip().lower(), []).append(name)
    alike = [" and ".join(repr(n) for n in group) for group in groups.values()
             if len(group) > 1]
    if alike:
        log.warning("note: class names that differ only by case or spaces are separate "
                    "classes: %s; rename the folders if they are one", "; ".join(alike))


def _require_complete(path: Path) -> None:
    """Refuse truncated JPEG/PNG files: some decoders return them half grey without error.
    Data after the end (a camera's or an editor's trailer, padding) is no truncation."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read image {path}: {exc.strerror or exc}") from None
    if data.startswith(_JPEG_START) and data.rfind(_JPEG_END) <= _jpeg_scan_start(data):
        raise InputError(f"{path} is a truncated JPEG (no end-of-image marker after its "
                         "image data)")
    if data.startswith(_PNG_START) and data.rfind(_PNG_END) < 8:
        raise InputError(f"{path} is a truncated PNG (no IEND chunk)")


def _jpeg_scan_start(data: bytes) -> int:
    """Where a JPEG's image data begins (its first start-of-scan marker), walking the
    segments before it by their lengths, so an end marker inside them (an EXIF
    thumbnail's) is not taken for the picture's own."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return pos
        marker = data[pos + 1]
        if marker == 0xFF:              # fill byte
            pos += 1
            continue
        if marker == 0xDA:              # start of scan: entropy-coded data follows
            return pos
        if 0xD0 <= marker <= 0xD8 or marker == 0x01:   # markers without a length
            pos += 2
            continue
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
    return len(data)
