"""Image folders as they come: nested class folders, masks beside images, degenerate files,
mixed sizes and aspect ratios (one fit policy in the spec, applied by the runtime)."""

import dataclasses
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecnn.data.images import is_mask, load_image_folder
from edgecnn.deploy.errors import DataError, SpecError
from edgecnn.deploy.preprocess import fit_image, preprocess_image
from edgecnn.deploy.spec import ImageSpec, InputSpec
from edgecnn.training import choose_fit, choose_interpolation

NEU = Path(__file__).resolve().parents[1] / "calibration_data" / "neu"


def _neu(cls, n):
    return [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in sorted((NEU / cls).glob("*.jpg"))[:n]]


def _tiles(root: Path, n=3) -> Path:
    """The magnetic-tile layout: MT_<class>/Imgs/<name>.jpg with <name>.png masks beside."""
    for cls, source in (("MT_Blowhole", "pitted_surface"), ("MT_Free", "patches")):
        folder = root / cls / "Imgs"
        folder.mkdir(parents=True)
        for i, image in enumerate(_neu(source, n)):
            cv2.imwrite(str(folder / f"exp1_num_{i}.jpg"), image[:, :120])  # not square
            cv2.imwrite(str(folder / f"exp1_num_{i}.png"), (image > 128).astype(np.uint8) * 255)
    return root


def test_nested_class_folders_are_found_and_masks_left_out_with_a_note(tmp_path, caplog):
    root = _tiles(tmp_path / "tiles")
    with caplog.at_level(logging.INFO, logger="edgecnn.data"):
        samples = load_image_folder(root)
    assert samples.class_names == ("MT_Blowhole", "MT_Free")
    assert len(samples) == 6 and samples.skipped == []
    assert all(source.endswith(".jpg") for source in samples.sources)
    assert "6 mask file(s) left out" in caplog.text
    assert "MT_Blowhole/Imgs/exp1_num_0.png" in caplog.text


def test_mask_rule():
    assert is_mask(Path("a/crack_12_mask.png"), set())
    assert is_mask(Path("a/crack_12_GT.jpg"), set())
    assert is_mask(Path("a/x.png"), {"x.jpg", "x.png"})
    assert not is_mask(Path("a/x.png"), {"x.png", "y.jpg"})
    assert not is_mask(Path("a/x.jpg"), {"x.jpg", "x.png"})
    for name in ("c_1-mask.png", "c_1.mask.png", "c_1 mask.png", "c_1-GT.png", "c_1.seg.png"):
        assert is_mask(Path("a") / name, set()), name
    assert is_mask(Path("a/mask_c_1.png"), {"c_1.jpg", "mask_c_1.png"})
    assert not is_mask(Path("a/mask_3.png"), {"mask_3.png"})        # no image it masks
    for name in ("masked_7.jpg", "gtx.png", "pitted_surface_3.jpg", "unmasked.png"):
        assert not is_mask(Path("a") / name, set()), name


def _classes(root: Path, names=("crazing", "patches"), n=3) -> Path:
    for cls in names:
        (root / cls).mkdir(parents=True)
        for i, image in enumerate(_neu(cls, n)):
            cv2.imwrite(str(root / cls / f"{cls}_{i}.jpg"), image)
    return root


def test_a_photo_named_like_a_label_stays_a_sample_and_a_label_mask_is_left_out(tmp_path):
    # "-label" names a mask as often as a photograph of a product's label: the pixels say
    root = _classes(tmp_path / "d", n=4)
    photo = cv2.imread(str(sorted((root / "crazing").glob("*.jpg"))[0]), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(root / "crazing" / "bottle-label.jpg"), photo)
    mask = (photo > 128).astype(np.uint8) * 255
    cv2.imwrite(str(root / "crazing" / "bottle_label.png"), mask)
    cv2.imwrite(str(root / "patches" / "scan annotation.jpg"), mask)     # a JPEG mask
    samples = load_image_folder(root)
    assert "crazing/bottle-label.jpg" in samples.sources
    assert "crazing/bottle_label.png" not in samples.sources
    assert samples.counts() == {"crazing": 5, "patches": 4}


def test_mask_folders_beside_the_classes_are_left_out_but_a_class_named_mask_stays(
        tmp_path, caplog):
    root = _classes(tmp_path / "d")
    binary = (_neu("crazing", 1)[0] > 128).astype(np.uint8) * 255
    for folder in ("GT/crazing", "masks"):
        (root / folder).mkdir(parents=True)
        cv2.imwrite(str(root / folder / "crazing_0.png"), binary)
    with caplog.at_level(logging.INFO, logger="edgecnn.data"):
        samples = load_image_folder(root)
    assert samples.class_names == ("crazing", "patches") and len(samples) == 6
    assert "GT/, masks/ beside the class folders" in caplog.text
    # photographs in a folder called "mask" (a PPE set: mask / no_mask): a class
    photos = _classes(tmp_path / "ppe", names=("crazing", "patches"))
    (photos / "patches").rename(photos / "mask")
    assert load_image_folder(photos).class_names == ("crazing", "mask")


def test_an_anomaly_detection_layout_is_refused_naming_the_split_with_classes(tmp_path):
    root = tmp_path / "bottle"
    _classes(root / "train", names=("crazing",))
    _classes(root / "test", names=("crazing", "patches"))
    (root / "ground_truth" / "patches").mkdir(parents=True)
    with pytest.raises(DataError, match=r"holds the splits test/ \(crazing, patches\), "
                                        r"train/ \(crazing\), not classes.*--data .*test"):
        load_image_folder(root)


def test_one_wrapping_folder_is_explained(tmp_path):
    _tiles(tmp_path / "outer" / "dataset")
    with pytest.raises(DataError, match=r"holds one folder 'dataset'.*--data"):
        load_image_folder(tmp_path / "outer")


def test_degenerate_images_are_refused_naming_the_file(tmp_path):
    for cls in ("scratches", "patches"):
        (tmp_path / cls).mkdir()
        for i, image in enumerate(_neu(cls, 2)):
            cv2.imwrite(str(tmp_path / cls / f"{i}.jpg"), image)
    cv2.imwrite(str(tmp_path / "scratches" / "dot.png"), np.full((1, 1), 7, np.uint8))
    cv2.imwrite(str(tmp_path / "patches" / "blank.png"), np.full((64, 64), 90, np.uint8))
    samples = load_image_folder(tmp_path)
    reasons = {s.path: s.reason for s in samples.skipped}
    assert len(samples) == 4
    dot = reasons["scratches/dot.png"]
    assert "1x1 pixels" in dot and "dot.png" in dot
    assert "one flat value (90)" in reasons["patches/blank.png"]


def test_linked_folders_are_walked_once_and_lost_classes_named(tmp_path, caplog):
    import os

    root = tmp_path / "data"
    store = tmp_path / "nas" / "scratches"
    for day in ("day1", "day2"):  # a class folder that is a link to a folder of sub-folders
        (store / day).mkdir(parents=True)
        for i, image in enumerate(_neu("scratches", 2)):
            cv2.imwrite(str(store / day / f"{i}.jpg"), image)
    (root / "crazing").mkdir(parents=True)
    for i, image in enumerate(_neu("crazing", 3)):
        cv2.imwrite(str(root / "crazing" / f"{i}.jpg"), image)
    os.symlink(root / "crazing", root / "crazing" / "again")       # a loop
    os.symlink(root / "crazing" / "0.jpg", root / "crazing" / "copy.jpg")
    os.symlink(tmp_path / "gone.jpg", root / "crazing" / "gone.jpg")  # broken
    os.symlink(store, root / "scratches")
    (root / "crazing" / "notes.txt").write_text("shift 2")  # left out without a word
    (root / "crazing" / "scan.gif").write_bytes(b"GIF89a")
    cv2.imwrite(str(root / "crazing" / "extra.webp"), _neu("crazing", 4)[3])
    (root / "patches").mkdir()
    cv2.imwrite(str(root / "patches" / "a_mask.png"), np.zeros((32, 32), np.uint8))
    (root / "pitted").mkdir()
    (root / "pitted" / "0.jpg").write_bytes(b"not a picture")
    (root / "empty").mkdir()
    with caplog.at_level(logging.WARNING, logger="edgecnn.data"):
        samples = load_image_folder(root)
    assert samples.counts() == {"crazing": 4, "scratches": 4}  # 3 + the .webp; 2 days x 2
    assert "1 file(s) reached a second time through a link" in caplog.text
    assert "1 broken link(s) left out" in caplog.text
    assert "1 file(s) of formats not read left out (.gif 1)" in caplog.text
    assert ("NOTE: 3 class(es) left out, no usable sample: empty (no image files), "
            "patches (1 mask file(s) only), pitted (1 file(s), none usable)") in caplog.text


def test_float_tiffs_are_refused_naming_what_they_hold(tmp_path):
    from edgecnn.deploy.errors import InputError
    from edgecnn.deploy.preprocess import read_image

    cv2.imwrite(str(tmp_path / "f.tiff"), np.random.default_rng(0).random((16, 16), np.float32))
    with pytest.raises(InputError, match="32-bit floating-point samples: expected an 8- or "
                                         "16-bit image"):
        read_image(tmp_path / "f.tiff", "gray")


def test_fit_policies_keep_or_cut_the_image():
    image = np.full((100, 300), 200, np.uint8)
    image[:, :30] = 10  # a dark band at the left edge
    letterbox = fit_image(image, ImageSpec(60, 60, fit="letterbox"))
    crop = fit_image(image, ImageSpec(60, 60, fit="crop"))
    stretch = fit_image(image, ImageSpec(60, 60))
    assert letterbox.shape == crop.shape == stretch.shape == (60, 60)
    assert letterbox[30, 0] == 10 and letterbox[0, 30] == pytest.approx(image.mean(), abs=2)
    assert crop.min() == 200  # the centre: the edge band is cut off
    assert stretch[0, 0] == 10 and stretch[0, 59] == 200
    tensor = preprocess_image(np.dstack([image] * 3), ImageSpec(60, 60, color="rgb",
                                                                  fit="letterbox"))
    assert tensor.shape == (60, 60, 3)


def test_old_specs_without_fit_stretch_and_new_ones_round_trip():
    old = {"version": 1, "kind": "image", "labels": ["a", "b"],
           "image": {"height": 32, "width": 32, "color": "gray"}}
    assert InputSpec.from_dict(old).image.fit == "stretch"
    new = InputSpec("image", ("a", "b"), image=ImageSpec(32, 32, fit="letterbox"))
    assert InputSpec.from_json(new.to_json()) == new
    with pytest.raises(SpecError, match="image fit"):
        ImageSpec(32, 32, fit="squash")


def test_fit_rule_stretches_near_square_sets_and_letterboxes_mixed_ones():
    spec = InputSpec("image", ("a", "b"), image=ImageSpec(128, 128))
    near = [np.zeros((128, 128)), np.zeros((122, 128)), np.zeros((130, 128))]  # X-SDD sizes
    assert choose_fit(near, spec)[0] == "stretch"
    mixed = near + [np.zeros((200, 105))]
    fit, reason = choose_fit(mixed, spec)
    assert fit == "letterbox" and "0.53" in reason


def test_images_over_twice_the_input_are_resized_by_area_so_thin_defects_survive():
    spec = InputSpec("image", ("a", "b"), image=ImageSpec(128, 128, interpolation="linear"))
    assert choose_interpolation(_neu("crazing", 3), spec) == ("linear", None)  # 200 px
    big = [np.zeros((400, 632), np.uint8)] * 3  # magnetic-tile sizes
    interpolation, reason = choose_interpolation(big, spec)
    assert interpolation == "area" and "4.9x the 128x128 input" in reason
    cubic = spec.replace(image=ImageSpec(128, 128, interpolation="cubic"))
    assert choose_interpolation(big, cubic) == ("cubic", None)  # the user's choice stays
    # why: a 1-pixel scratch across a 632-px picture, at 40 neighbouring columns
    shown = {"linear": [], "area": []}
    for column in range(100, 140):
        image = np.full((632, 632), 100, np.uint8)
        image[:, column] = 250
        for name in shown:
            tensor = preprocess_image(image, ImageSpec(128, 128, interpolation=name))
            shown[name].append(float(tensor.max()) * 255 - 100)
    assert np.mean(np.asarray(shown["linear"]) < 1) >= 0.5  # bilinear misses it
    assert min(shown["area"]) > 10                          # area always shows it


def _tinted(root: Path, tint) -> Path:
    """Two classes of real NEU pictures, written as colour JPEGs tinted by ``tint`` (B, G, R
    gains; (1, 1, 1) keeps them gray)."""
    for cls in ("crazing", "inclusion"):
        folder = root / cls
        folder.mkdir(parents=True)
        for i, image in enumerate(_neu(cls, 4)):
            bgr = np.clip(np.stack([image * g for g in tint], axis=-1), 0, 255).astype(np.uint8)
            cv2.imwrite(str(folder / f"{cls}_{i}.jpg"), bgr)
    return root


def test_colour_images_trained_in_gray_get_a_note(tmp_path, caplog):
    """Gray training drops colour: a folder of coloured pictures says so (and how to keep it);
    gray pictures stored as 3-channel JPEGs (NEU, X-SDD) do not."""
    with caplog.at_level(logging.INFO, logger="edgecnn.data"):
        load_image_folder(_tinted(tmp_path / "gray", (1.0, 1.0, 1.0)))
    assert "in colour" not in caplog.text
    with caplog.at_level(logging.INFO, logger="edgecnn.data"):
        load_image_folder(_tinted(tmp_path / "tinted", (0.3, 0.6, 1.2)))
    assert "100 % of the images probed" in caplog.text and "--color bgr" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="edgecnn.data"):
        load_image_folder(tmp_path / "tinted", color="bgr")
    assert "in colour" not in caplog.text


def _two_classes(root: Path, n=3) -> Path:
    for cls in ("crazing", "patches"):
        (root / cls).mkdir(parents=True)
        for i, image in enumerate(_neu(cls, n)):
            cv2.imwrite(str(root / cls / f"{i}.jpg"), image)
    return root


def test_mask_folders_tiff_masks_and_system_folders_are_not_samples(tmp_path, caplog):
    root = _two_classes(tmp_path / "raw")
    image = _neu("crazing", 1)[0]
    mask = (image > 128).astype(np.uint8) * 255
    for folder in ("crazing/masks", "patches/ground_truth/sub", "crazing/@eaDir/0.jpg",
                   "__MACOSX/patches"):
        (root / folder).mkdir(parents=True)
    cv2.imwrite(str(root / "crazing" / "masks" / "0.png"), mask)
    cv2.imwrite(str(root / "patches" / "ground_truth" / "sub" / "0.png"), mask)
    cv2.imwrite(str(root / "patches" / "1.tif"), mask)            # beside 1.jpg
    cv2.imwrite(str(root / "crazing" / "@eaDir" / "0.jpg" / "SYNOFILE_THUMB_S.jpg"), image)
    cv2.imwrite(str(root / "__MACOSX" / "patches" / "0.jpg"), image)
    with caplog.at_level(logging.WARNING, logger="edgecnn.data"):
        samples = load_image_folder(root)
    assert samples.class_names == ("crazing", "patches")
    assert sorted(samples.sources) == [f"{c}/{i}.jpg" for c in ("crazing", "patches")
                                       for i in range(3)]
    assert "3 mask file(s) left out" in caplog.text
    assert "__MACOSX" not in caplog.text and "eaDir" not in caplog.text


def test_split_folders_camera_files_and_lookalike_classes_are_named(tmp_path, caplog):
    for split in ("train", "test"):
        _two_classes(tmp_path / "set" / split)
    with pytest.raises(DataError, match=r"holds the splits test, train, each with class "
                                        r"folders \(crazing, patches\).*train with --data "
                                        r"\S*train, and give \S*test to eval"):
        load_image_folder(tmp_path / "set")
    root = _two_classes(tmp_path / "raw")
    image = _neu("crazing", 1)[0]
    cv2.imwrite(str(root / "IMG_0001.jpg"), image)
    cv2.imwrite(str(root / "IMG_0002.jpg"), image[::-1])
    (root / "Crazing ").mkdir()
    cv2.imwrite(str(root / "Crazing " / "0.jpg"), image[:, ::-1])
    with caplog.at_level(logging.WARNING, logger="edgecnn.data"):
        samples = load_image_folder(root)
    assert "IMG" in samples.class_names                   # as the flat rule says, but told
    assert "2 file(s) at the top of" in caplog.text and "'IMG' 2" in caplog.text
    assert "differ only by case or spaces are separate classes: 'Crazing ' and 'crazing'" \
        in caplog.text


def test_images_with_data_after_their_end_are_read_and_truncated_ones_refused(tmp_path):
    root = _two_classes(tmp_path / "raw", n=2)
    jpeg = (root / "crazing" / "0.jpg").read_bytes()
    (root / "crazing" / "trailer.jpg").write_bytes(jpeg + b"camera trailer " * 150)
    png = cv2.imencode(".png", _neu("patches", 1)[0])[1].tobytes()
    (root / "patches" / "trailer.png").write_bytes(png + b"\x00" * 300 + b"metadata")
    # a JPEG cut inside its image data whose EXIF thumbnail still ends in FF D9
    thumb = cv2.imencode(".jpg", _neu("crazing", 1)[0][:16, :16])[1].tobytes()
    app1 = b"\xff\xe1" + (len(thumb) + 8).to_bytes(2, "big") + b"Exif\x00\x00" + thumb
    (root / "crazing" / "cut.jpg").write_bytes(jpeg[:2] + app1 + jpeg[2:len(jpeg) // 2])
    samples = load_image_folder(root)
    assert "crazing/trailer.jpg" in samples.sources and "patches/trailer.png" in samples.sources
    reasons = {s.path: s.reason for s in samples.skipped}
    assert list(reasons) == ["crazing/cut.jpg"] and "truncated JPEG" in reasons["crazing/cut.jpg"]


def test_a_class_whose_files_all_fail_is_named_when_one_class_is_left(tmp_path):
    root = _two_classes(tmp_path / "raw", n=2)
    for i in range(2):
        (root / "patches" / f"{i}.jpg").write_bytes(b"")
    with pytest.raises(DataError, match=r"only one class with usable images \(crazing\).*"
                                        r"no usable image: patches \(2 file\(s\), none usable\)"):
        load_image_folder(root)


def test_images_many_times_the_input_are_kept_as_working_copies_with_native_health(
        tmp_path, caplog):
    from edgecnn.data import load_dataset
    from edgecnn.deploy.health import fit_envelope, image_features
    from edgecnn.tasks import get_task

    spec = get_task("images").spec(("crazing", "patches"))
    spec = spec.replace(image=dataclasses.replace(spec.image, interpolation="area"))
    size = (spec.image.width, spec.image.height)
    root, natives = tmp_path / "big", []
    for cls in ("crazing", "patches"):
        (root / cls).mkdir(parents=True)
        for i, image in enumerate(_neu(cls, 2)):
            big = cv2.resize(image, (12 * size[0], 9 * size[1]), interpolation=cv2.INTER_CUBIC)
            cv2.imwrite(str(root / cls / f"{cls}_{i}.png"), big)
            natives.append(big)
    small = _neu("crazing", 1)[0]
    cv2.imwrite(str(root / "crazing" / "crazing_9.png"), small)    # native: 200x200
    with caplog.at_level(logging.INFO, logger="edgecnn.data"):
        samples = load_dataset("images", root, spec)
    assert "4 image(s) more than 8x the 128x128 input kept at 4x" in caplog.text
    shapes = [item.shape for item in samples.items]
    # the tighter side (height: 9x) at 4x the input, the aspect ratio kept
    assert shapes.count((4 * size[1], round(12 * size[0] * 4 / 9))) == 4
    assert (200, 200) in shapes
    by_source = dict(zip(samples.sources, range(len(samples))))
    for n, name in enumerate(["crazing/crazing_0.png", "crazing/crazing_1.png",
                              "patches/patches_0.png", "patches/patches_1.png"]):
        i = by_source[name]
        assert samples.native_features[i] == image_features(natives[n], size)
        # what the model sees differs from the native image's tensor by a grey level at most
        gap = np.abs(preprocess_image(samples.items[i], spec) - preprocess_image(natives[n], spec))
        assert gap.max() <= 1.0 / 255 + 1e-6
    assert samples.native_features[by_source["crazing/crazing_9.png"]] is None
    # the envelope measures sensor pixels at native size, not the copy's sharper ones
    envelope = fit_envelope(samples.items, spec, samples.labels, samples.native_features)
    copies = fit_envelope(samples.items, spec, samples.labels)
    assert envelope["features"]["sharpness"] != copies["features"]["sharpness"]
    assert envelope["features"]["sharpness"]["min"] == pytest.approx(min(
        image_features(img, size)["sharpness"] for img in [*natives, small]))
    assert len(samples.subset([0, 1]).native_features) == 2
    # a model that resizes bilinearly (or nearest) is measured on native images: its resize
    # of a copy would not be the runtime's resize of the native frame
    linear = spec.replace(image=dataclasses.replace(spec.image, interpolation="linear"))
    native = load_dataset("images", root, linear, labels=linear.labels)
    assert native.native_features is None
    assert sorted(i.shape for i in native.items) == sorted(n.shape for n in [*natives, small])
    assert load_dataset("images", root, linear, working_copies=True).native_features


def test_jpegs_corrupted_inside_the_picture_are_skipped_and_counted(tmp_path):
    # bytes zeroed or flipped inside the entropy-coded data, or a file cut and closed with
    # an end marker: OpenCV returns a picture (garbled from there on); libjpeg only says so
    root = _classes(tmp_path / "d", n=5)
    files = sorted((root / "crazing").glob("*.jpg"))[:3]
    raw = [bytearray(p.read_bytes()) for p in files]
    n = [len(r) for r in raw]
    raw[0][n[0] // 3:n[0] // 3 + 1024] = bytes(1024)
    for i in np.random.default_rng(0).integers(n[1] // 4, n[1] - 10, 20):
        raw[1][i] ^= 0xFF
    raw[2] = raw[2][:n[2] // 2] + b"\xff\xd9"
    for path, data in zip(files, raw):
        path.write_bytes(bytes(data))
        assert cv2.imdecode(np.frombuffer(bytes(data), np.uint8), 0) is not None
    samples = load_image_folder(root)
    assert samples.counts() == {"crazing": 2, "patches": 5}
    assert sorted(Path(s.path).name for s in samples.skipped) == sorted(p.name for p in files)
    assert all("is a corrupt JPEG (the decoder says: Corrupt JPEG data" in s.reason
               for s in samples.skipped)


def test_a_jpeg_with_stray_bytes_between_its_header_segments_is_kept(tmp_path, capfd):
    # libjpeg warns "Corrupt JPEG data: 2 extraneous bytes before marker 0xdb", yet the
    # picture decodes whole: many cameras and exporters write such files
    root = _classes(tmp_path / "d", n=5)
    path = sorted((root / "crazing").glob("*.jpg"))[0]
    raw = path.read_bytes()
    at = raw.index(b"\xff\xdb")
    path.write_bytes(raw[:at] + b"\x00\x00" + raw[at:])
    samples = load_image_folder(root)
    assert samples.counts() == {"crazing": 5, "patches": 5} and not samples.skipped
    assert "extraneous bytes before marker 0xdb" in capfd.readouterr().err


def test_names_that_are_not_utf8_load_and_a_class_so_named_is_refused_in_one_line(tmp_path):
    # a folder copied from a Windows share or a CP1252 zip: b"Bild \xe4.jpg"
    import os

    root = _classes(tmp_path / "d", n=3)
    first = sorted((root / "patches").glob("*.jpg"))[0]
    os.rename(first, os.fsencode(root / "patches") + b"/Bild \xe4.jpg")
    samples = load_image_folder(root)
    assert samples.counts() == {"crazing": 3, "patches": 3} and samples.fingerprint
    os.rename(root / "crazing", os.fsencode(root) + b"/Kratzer\xfc")
    with pytest.raises(DataError, match=r"class name\(s\) 'Kratzer\\xfc' are not UTF-8"):
        load_image_folder(root)


def test_a_flat_folder_labelled_by_labels_csv_takes_its_classes(tmp_path, caplog):
    # a labelling tool's export: camera-style names whose prefix is a date, not a class
    import logging

    root = tmp_path / "flat"
    root.mkdir()
    rows = ["file,label"]
    for i, image in enumerate(_neu("crazing", 3) + _neu("patches", 3)):
        name = f"cam1_2024010{1 + i % 2}_{i:04d}.jpg"
        cv2.imwrite(str(root / name), image)
        rows.append(f"{name},{'scratch' if i < 3 else 'ok'}")
    cv2.imwrite(str(root / "cam1_20240103_0099.jpg"), _neu("crazing", 1)[0])
    (root / "labels.csv").write_text("\n".join(rows + ["gone.jpg,ok"]) + "\n")
    with caplog.at_level(logging.WARNING, logger="edgecnn.data"):
        samples = load_image_folder(root)
    assert samples.counts() == {"ok": 3, "scratch": 3}
    assert [s.path for s in samples.skipped] == ["cam1_20240103_0099.jpg"]
    assert "1 row(s) of labels.csv name no image" in caplog.text
    # without it the names' prefixes are the classes, and a note says so
    (root / "labels.csv").write_text("time,temperature\n1,20\n")     # another CSV: ignored
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="edgecnn.data"):
        samples = load_image_folder(root)
    assert "classes taken from the file names" in caplog.text
    assert set(samples.class_names) == {"cam1_20240101", "cam1_20240102", "cam1_20240103"}
