"""Checks: each one fires on a tiny dataset planted to trigger it, and only on the planted image."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageEnhance, ImageFilter

import inspect_core
from inspect_core.checks import REGISTRY, all_check_names, family_of, register

SIZE = (128, 96)  # (width, height) of the normal images
N_NORMAL = 20


def levelled(im: Image.Image, brightness: float) -> Image.Image:
    """The image shifted so that its mean grey level is ``brightness`` (0..1); its contrast is kept."""
    a = np.asarray(im, dtype=np.float32)
    grey = a @ np.array([0.299, 0.587, 0.114], np.float32)
    return Image.fromarray(np.clip(a - grey.mean() + brightness * 255.0, 0, 255).astype(np.uint8))


def normal_images(root: Path, textured, n: int = N_NORMAL, folder: str = "a", size=SIZE, seed0: int = 0,
                  levels=(0.38, 0.52)):
    """``n`` textured images; each is levelled to a seeded mean brightness in ``levels`` (None: as drawn,
    which spreads from about 0.25 to 0.65, like real photos)."""
    (root / folder).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed0 + 12345)
    for k in range(n):
        im = textured(seed0 + k, size)
        if levels is not None:
            im = levelled(im, rng.uniform(*levels))
        im.save(root / folder / f"n{k:02d}.jpg", quality=90)


def found(result, check: str) -> list[str]:
    return sorted(result.issues(check)["image_id"])


def scan(root, **kw):
    return inspect_core.scan(root, workers=1, **kw)


def test_normal_images_have_no_findings(tmp_path, textured):
    """The baseline every planted test below relies on: twenty normal images, nothing to report."""
    normal_images(tmp_path / "ds", textured)
    result = scan(tmp_path / "ds")
    assert result.findings.empty, result.findings.to_string()


# ----------------------------------------------------------------------------- property outliers

def _arr(im: Image.Image) -> np.ndarray:
    return np.asarray(im, dtype=np.float32)


def _u8(a: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


PLANTS = {
    "dark": lambda t: _u8(_arr(t(500, SIZE)) * 0.15),
    "overexposed": lambda t: _u8(255 - (255 - _arr(t(501, SIZE))) * 0.12),
    "low_contrast": lambda t: _u8(128 + (_arr(t(502, SIZE)) - _arr(t(502, SIZE)).mean()) * 0.15),
    "blurry": lambda t: t(503, SIZE).filter(ImageFilter.GaussianBlur(4)),
    "low_information": lambda t: _u8(np.where(np.arange(SIZE[0])[None, :, None] < 64, 90, 100)
                                     * np.ones((SIZE[1], 1, 3))),
    "odd_size": lambda t: t(505, (512, 384)),
    "odd_aspect_ratio": lambda t: t(506, (256, 48)),  # the same pixel count as 128 x 96
    "grayscale": lambda t: t(507, SIZE, colour=False),
}


@pytest.mark.parametrize("check", sorted(PLANTS))
def test_property_outlier_is_flagged_alone(tmp_path, textured, check):
    root = tmp_path / "ds"
    normal_images(root, textured)
    PLANTS[check](textured).save(root / "a" / "planted.jpg", quality=92)
    result = scan(root)
    assert found(result, check) == ["a/planted.jpg"]
    f = result.issues(check).iloc[0]
    assert f["family"] == "property" and f["score"] > 0
    assert re.search(r"\d", f["detail"]), f["detail"]
    assert result.images.set_index("image_id").loc["a/planted.jpg", f"is_{check}"]
    assert int(result.images[f"is_{check}"].sum()) == 1


@pytest.mark.parametrize("check", ["dark", "overexposed"])
def test_exposure_outlier_is_flagged_among_photos_of_natural_brightness(tmp_path, textured, check):
    root = tmp_path / "ds"
    normal_images(root, textured, levels=None)  # brightness 0.25 .. 0.65, median 0.42
    PLANTS[check](textured).save(root / "a" / "planted.jpg", quality=92)
    result = scan(root)
    assert found(result, check) == ["a/planted.jpg"]


def test_property_thresholds_adapt_uniformly_dark_dataset_is_not_all_flagged(tmp_path, textured):
    root = tmp_path / "ds"
    root.joinpath("a").mkdir(parents=True)
    for k in range(N_NORMAL):
        _u8(_arr(textured(k, SIZE)) * 0.35).save(root / "a" / f"d{k:02d}.jpg", quality=90)
    result = scan(root)
    assert found(result, "dark") == []


def test_property_detail_names_value_cut_and_how(tmp_path, textured):
    root = tmp_path / "ds"
    normal_images(root, textured)
    PLANTS["dark"](textured).save(root / "a" / "planted.jpg", quality=92)
    result = scan(root)
    value = result.images.set_index("image_id").loc["a/planted.jpg", "brightness"]
    detail = result.issues("dark")["detail"].iloc[0]
    assert f"brightness {value:.3f}" in detail
    assert "cut" in detail and "median" in detail and "robust sd" in detail


# ----------------------------------------------------------------------------- duplicates, leakage, labels

def near_copy(im: Image.Image) -> Image.Image:
    """Crop 3% on each side, resize to 90%, shift brightness and colour: re-encoded by the caller."""
    w, h = im.size
    dx, dy = round(w * 0.03), round(h * 0.03)
    out = im.crop((dx, dy, w - dx, h - dy))
    out = out.resize((round(w * 0.9), round(h * 0.9)), Image.Resampling.LANCZOS)
    out = ImageEnhance.Brightness(out).enhance(1.1)
    return ImageEnhance.Color(out).enhance(1.2)


def test_exact_duplicates_same_bytes_and_same_pixels(tmp_path, textured):
    root = tmp_path / "ds"
    normal_images(root, textured)
    shutil.copy(root / "a" / "n03.jpg", root / "a" / "copy_of_n03.jpg")
    pic = textured(600, SIZE)
    pic.save(root / "a" / "pic.png")
    pic.save(root / "a" / "pic.bmp")
    result = scan(root)
    f = result.issues("exact_duplicate").set_index("image_id")
    assert sorted(f.index) == ["a/copy_of_n03.jpg", "a/n03.jpg", "a/pic.bmp", "a/pic.png"]
    assert (f["score"] == 1.0).all()
    assert f.loc["a/n03.jpg", "group_id"] == f.loc["a/copy_of_n03.jpg", "group_id"]
    assert f.loc["a/pic.png", "group_id"] == f.loc["a/pic.bmp", "group_id"] != f.loc["a/n03.jpg", "group_id"]
    assert "same bytes" in f.loc["a/n03.jpg", "detail"] and "a/copy_of_n03.jpg" in f.loc["a/n03.jpg", "detail"]
    assert "same pixels" in f.loc["a/pic.bmp", "detail"]
    assert found(result, "near_duplicate") == []  # an exact pair is not also near


def test_near_duplicate_after_crop_resize_colour_shift_and_reencode(tmp_path, textured):
    root = tmp_path / "ds"
    normal_images(root, textured)
    original = textured(700, (320, 240))
    original.save(root / "a" / "orig.jpg", quality=92)
    near_copy(original).save(root / "a" / "edited.jpg", quality=70)
    result = scan(root)
    f = result.issues("near_duplicate").set_index("image_id")
    assert sorted(f.index) == ["a/edited.jpg", "a/orig.jpg"]
    assert pd.notna(f.loc["a/orig.jpg", "group_id"])
    assert f.loc["a/orig.jpg", "group_id"] == f.loc["a/edited.jpg", "group_id"]
    assert 0.75 <= f.loc["a/orig.jpg", "score"] < 1.0
    assert "a/edited.jpg" in f.loc["a/orig.jpg", "detail"] and "cosine" in f.loc["a/orig.jpg", "detail"]
    pairs = result.pairs
    assert len(pairs) == 1 and pairs["kind"].iloc[0] == "near"
    assert {pairs["image_id_a"].iloc[0], pairs["image_id_b"].iloc[0]} == {"a/orig.jpg", "a/edited.jpg"}
    assert found(result, "split_leakage") == [] and found(result, "conflicting_labels") == []


def test_split_leakage_and_conflicting_labels(tmp_path, textured):
    root = tmp_path / "ds"
    normal_images(root, textured, n=12, folder="train/cat")
    normal_images(root, textured, n=12, folder="train/dog", seed0=50)
    normal_images(root, textured, n=4, folder="test/cat", seed0=80)
    normal_images(root, textured, n=4, folder="test/dog", seed0=90)
    original = textured(701, (320, 240))
    original.save(root / "train" / "cat" / "orig.jpg", quality=92)
    near_copy(original).save(root / "test" / "dog" / "leaked.jpg", quality=75)
    # the same picture, only re-encoded, filed under another label
    second = textured(702, (320, 240))
    second.save(root / "train" / "cat" / "orig2.jpg", quality=92)
    second.save(root / "test" / "dog" / "reencoded.jpg", quality=70)
    shutil.copy(root / "train" / "dog" / "n00.jpg", root / "train" / "cat" / "same_split_copy.jpg")
    result = scan(root)
    assert found(result, "split_leakage") == ["test/dog/leaked.jpg", "test/dog/reencoded.jpg", "train/cat/orig.jpg",
                                              "train/cat/orig2.jpg"]
    # the cropped, resized and colour-shifted copy is a near duplicate (it leaks), but not close enough to be
    # called the same picture, so its other label is not called wrong
    assert found(result, "conflicting_labels") == ["test/dog/reencoded.jpg", "train/cat/orig2.jpg",
                                                   "train/cat/same_split_copy.jpg", "train/dog/n00.jpg"]
    leak = result.issues("split_leakage").set_index("image_id")
    assert leak.loc["train/cat/orig.jpg", "group_id"] == leak.loc["test/dog/leaked.jpg", "group_id"]
    assert "test/dog/leaked.jpg" in leak.loc["train/cat/orig.jpg", "detail"]
    assert "train" in leak.loc["train/cat/orig.jpg", "detail"] and "test" in leak.loc["train/cat/orig.jpg", "detail"]
    conflict = result.issues("conflicting_labels").set_index("image_id")
    assert "'dog'" in conflict.loc["train/cat/same_split_copy.jpg", "detail"]
    assert "'cat'" in conflict.loc["train/cat/same_split_copy.jpg", "detail"]


def test_missing_and_unknown_labels(tmp_path, textured):
    root = tmp_path / "ds"
    normal_images(root, textured, n=10, folder="train/cat")
    normal_images(root, textured, n=10, folder="train/dog", seed0=30)
    textured(300, SIZE).save(root / "train" / "loose.jpg")
    (root / "train" / "cta").mkdir()
    textured(301, SIZE).save(root / "train" / "cta" / "typo.jpg")
    (root / "classes.txt").write_text("cat\ndog\n")
    result = scan(root)
    assert found(result, "missing_label") == ["train/loose.jpg"]
    assert found(result, "unknown_label") == ["train/cta/typo.jpg"]
    assert "'cta'" in result.issues("unknown_label")["detail"].iloc[0]


def test_unknown_label_in_a_manifest_and_empty_label(tmp_path, textured):
    root = tmp_path / "ds"
    normal_images(root, textured, n=4)
    (root / "classes.txt").write_text("cat\ndog\n")
    (root / "manifest.csv").write_text("path,label\na/n00.jpg,cat\na/n01.jpg,dog\na/n02.jpg,horse\na/n03.jpg,\n")
    result = scan(root)
    assert found(result, "unknown_label") == ["a/n02.jpg"]
    assert found(result, "missing_label") == ["a/n03.jpg"]


# ----------------------------------------------------------------------------- annotations

def coco(images, annotations, categories):
    return json.dumps({"images": images, "annotations": annotations, "categories": categories})


def test_every_annotation_check_and_box_statistics(tmp_path, textured):
    root = tmp_path / "ds"
    normal_images(root, textured, n=8)  # 128 x 96 each
    names = [f"a/n{k:02d}.jpg" for k in range(8)]
    images = [{"id": k, "file_name": n} for k, n in enumerate(names)] + [{"id": 99, "file_name": "a/gone.jpg"}]
    boxes = [
        (0, 1, [10, 10, 20, 30]),     # n00: fine
        (0, 2, [60, 40, 32, 24]),     # n00: fine, other category
        (1, 1, [100, 10, 50, 20]),    # n01: sticks out on the right (150 > 128)
        (2, 1, [10, 10, 0, 20]),      # n02: zero width
        (3, 7, [10, 10, 20, 20]),     # n03: category 7 is not in the list
        (4, 1, [10, 10, 40, 40]),     # n04: duplicates (IoU 0.906)
        (4, 1, [11, 11, 40, 40]),
        (5, 1, [10, 10, 40, 40]),     # n05: IoU 0.509: two objects side by side, not a duplicate
        (5, 1, [23, 10, 40, 40]),
        (6, 1, [10, 10, 40, 40]),     # n06: IoU 0.906 but different categories: not a duplicate
        (6, 2, [11, 11, 40, 40]),
        (99, 1, [1, 1, 5, 5]),        # a/gone.jpg: no such image
        # n07: no boxes
    ]
    annotations = [{"id": k + 1, "image_id": i, "category_id": c, "bbox": b} for k, (i, c, b) in enumerate(boxes)]
    (root / "annotations.json").write_text(coco(images, annotations, [{"id": 1, "name": "cat"},
                                                                       {"id": 2, "name": "dog"}]))
    result = scan(root)
    got = {c: found(result, c) for c in ("box_outside_image", "box_degenerate", "box_unknown_category",
                                         "box_missing_image", "box_duplicate", "no_boxes")}
    assert got == {"box_outside_image": ["a/n01.jpg"], "box_degenerate": ["a/n02.jpg"],
                   "box_unknown_category": ["a/n03.jpg"], "box_missing_image": ["a/gone.jpg"],
                   "box_duplicate": ["a/n04.jpg"], "no_boxes": ["a/n07.jpg"]}
    detail = result.issues("box_duplicate")["detail"].iloc[0]
    assert "IoU 0.91" in detail
    assert "128 x 96" in result.issues("box_outside_image")["detail"].iloc[0]

    img = result.images.set_index("image_id")
    area = SIZE[0] * SIZE[1]
    assert img.loc[names, "n_boxes"].tolist() == [2, 1, 1, 1, 2, 2, 2, 0]
    np.testing.assert_allclose(img.loc["a/n00.jpg", "box_area_frac_mean"], (600 / area + 768 / area) / 2)
    np.testing.assert_allclose(img.loc["a/n00.jpg", "box_area_frac_min"], 600 / area)
    np.testing.assert_allclose(img.loc["a/n04.jpg", "box_area_frac_mean"], 1600 / area)
    assert np.isnan(img.loc["a/n07.jpg", "box_area_frac_mean"])
    assert img.loc[names, "n_box_classes"].tolist() == [2, 1, 1, 1, 1, 1, 2, 0]

    # per-box flags: one bool column per box-level check, true on exactly the planted boxes
    ann = result.annotations.set_index("ann_id").sort_index()
    flags = {c: sorted(ann.index[ann[c].astype(bool)].tolist())
             for c in ("is_box_outside_image", "is_box_degenerate", "is_box_unknown_category", "is_box_duplicate")}
    assert flags == {"is_box_outside_image": [3], "is_box_degenerate": [4], "is_box_unknown_category": [5],
                     "is_box_duplicate": [6, 7]}


def test_duplicate_boxes_sharing_an_annotation_id(tmp_path, textured):
    root = tmp_path / "coco"
    (root / "images").mkdir(parents=True)
    for n in ("a", "b"):
        textured(ord(n), (64, 48)).save(root / "images" / f"{n}.jpg")
    annotations = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [5, 5, 20, 20]},
                   {"id": 1, "image_id": 1, "category_id": 1, "bbox": [5, 5, 20, 20]},
                   {"id": 7, "image_id": 2, "category_id": 1, "bbox": [5, 5, 20, 20]},
                   {"id": 7, "image_id": 2, "category_id": 1, "bbox": [30, 30, 10, 10]}]
    (root / "annotations.json").write_text(coco([{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}],
                                                annotations, [{"id": 1, "name": "t"}]))
    result = scan(root)
    assert found(result, "box_duplicate") == ["images/a.jpg"]
    assert result.annotations["is_box_duplicate"].astype(bool).tolist() == [True, True, False, False]


def test_box_malformed_in_yolo(tmp_path, textured):
    root = tmp_path / "yolo"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for k in range(3):
        textured(k, (64, 64)).save(root / "images" / f"i{k}.jpg")
    (root / "labels" / "i0.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (root / "labels" / "i1.txt").write_text("0 0.5 0.5\nzero 0.1 0.1 0.1 0.1\n0 0.5 0.5 0.25 0.25\n")
    (root / "labels" / "i2.txt").write_text("5 0.5 0.5 0.5 0.5\n")
    (root / "data.yaml").write_text("names: [thing]\n")
    result = scan(root)
    assert found(result, "box_malformed") == ["images/i1.jpg"]
    assert "line 1" in result.issues("box_malformed")["detail"].iloc[0]
    assert found(result, "box_unknown_category") == ["images/i2.jpg"]
    assert result.images.set_index("image_id")["n_boxes"].to_dict() == {
        "images/i0.jpg": 1, "images/i1.jpg": 1, "images/i2.jpg": 1}
    np.testing.assert_allclose(result.images.set_index("image_id").loc["images/i1.jpg", "box_area_frac_mean"],
                               0.0625)


# ----------------------------------------------------------------------------- balance

def tiny_images(root: Path, folder: str, n: int, seed0: int):
    (root / folder).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed0)
    for k in range(n):
        Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(root / folder / f"{k:03d}.png")


def test_class_imbalance_rare_class_and_weights(tmp_path):
    root = tmp_path / "ds"
    counts = {"big": 40, "mid": 20, "tiny": 3}
    for s, (c, n) in enumerate(counts.items()):
        tiny_images(root, f"train/{c}", n, seed0=s)
    result = scan(root)
    assert found(result, "class_imbalance") == [""]
    imb = result.issues("class_imbalance").iloc[0]
    assert imb["family"] == "balance"
    np.testing.assert_allclose(imb["score"], 40 / 3)
    assert "'big' has 40" in imb["detail"] and "'tiny' 3" in imb["detail"]
    rare = result.issues("rare_class")
    assert len(rare) == 1 and "'tiny' has 3 images" in rare["detail"].iloc[0]
    assert found(result, "split_mismatch") == []

    table = result.balance.set_index("class")
    n_total, n_classes = sum(counts.values()), len(counts)
    expected = {c: n_total / (n_classes * n) for c, n in counts.items()}
    np.testing.assert_allclose([table.loc[c, "suggested_class_weight"] for c in counts], list(expected.values()))
    assert table["n_train"].to_dict() == counts
    np.testing.assert_allclose(table.loc["big", "share"], 40 / 63)


def test_split_mismatch_and_weights_from_train(tmp_path):
    root = tmp_path / "ds"
    layout = {"train/a": 20, "train/b": 20, "val/a": 18, "val/b": 2, "test/a": 10, "test/b": 10}
    for s, (folder, n) in enumerate(layout.items()):
        tiny_images(root, folder, n, seed0=10 + s)
    result = scan(root)
    assert found(result, "class_imbalance") == []
    mismatch = result.issues("split_mismatch")
    assert len(mismatch) == 1
    np.testing.assert_allclose(mismatch["score"].iloc[0], 0.5 * (abs(0.5 - 0.9) + abs(0.5 - 0.1)))
    assert mismatch["detail"].iloc[0].startswith("val vs train")
    table = result.balance.set_index("class")
    assert table[["n_train", "n_val", "n_test", "n_images"]].to_dict("index") == {
        "a": {"n_train": 20, "n_val": 18, "n_test": 10, "n_images": 48},
        "b": {"n_train": 20, "n_val": 2, "n_test": 10, "n_images": 32}}
    np.testing.assert_allclose(table["suggested_class_weight"].tolist(), [40 / (2 * 20), 40 / (2 * 20)])


def test_balanced_dataset_has_no_balance_findings(tmp_path):
    root = tmp_path / "ds"
    for s, c in enumerate(["a", "b", "c"]):
        tiny_images(root, f"train/{c}", 12, seed0=20 + s)
        tiny_images(root, f"val/{c}", 4, seed0=30 + s)
    result = scan(root)
    assert result.issues("balance").empty


# ----------------------------------------------------------------------------- registry and evidence

def test_registering_a_family_or_a_check_twice_is_an_error():
    before = {f: dict(s.checks) for f, s in REGISTRY.items()}
    with pytest.raises(ValueError, match="integrity"):
        register("integrity", {"brand_new_check": "x"})(lambda ctx: [])
    with pytest.raises(ValueError, match="'dark'"):
        register("brand_new_family", {"dark": "again"})(lambda ctx: [])
    assert {f: dict(s.checks) for f, s in REGISTRY.items()} == before


def test_registry_covers_the_contract():
    contract = {
        "integrity": {"empty_file", "unreadable", "truncated", "decompression_bomb", "format_mismatch",
                      "path_outside_root", "missing_file"},
        "duplicate": {"exact_duplicate", "near_duplicate"},
        "leakage": {"split_leakage"},
        "label": {"missing_label", "unknown_label", "conflicting_labels"},
        "annotation": {"box_outside_image", "box_degenerate", "box_unknown_category", "box_missing_image",
                       "box_duplicate", "no_boxes"},
        "balance": {"class_imbalance", "rare_class", "split_mismatch"},
        "property": {"dark", "overexposed", "low_contrast", "blurry", "low_information", "odd_size",
                     "odd_aspect_ratio", "grayscale"},
    }
    for family, checks in contract.items():
        assert checks <= set(REGISTRY[family].checks), family
        for c in checks:
            assert family_of(c) == family
            assert REGISTRY[family].checks[c].strip()
    names = all_check_names()
    assert len(names) == len(set(names))


def test_every_finding_names_its_evidence(tmp_path, textured):
    """One dataset with many planted problems: every finding has a non-empty detail; property and balance
    findings quote a number."""
    root = tmp_path / "ds"
    normal_images(root, textured, n=16, folder="train/cat")
    normal_images(root, textured, n=4, folder="test/cat", seed0=40)
    tiny = root / "train" / "dog"
    tiny.mkdir()
    textured(800, SIZE).save(tiny / "d0.jpg")
    PLANTS["dark"](textured).save(root / "train" / "cat" / "dark.jpg")
    PLANTS["odd_size"](textured).save(root / "train" / "cat" / "big.jpg")
    PLANTS["blurry"](textured).save(root / "train" / "cat" / "soft.jpg")
    shutil.copy(root / "train" / "cat" / "n01.jpg", root / "test" / "cat" / "copy.jpg")
    (root / "train" / "cat" / "empty.jpg").write_bytes(b"")
    textured(801, SIZE).save(root / "train" / "nolabel.jpg")
    result = scan(root)
    checks = set(result.findings["check"])
    assert {"dark", "odd_size", "blurry", "exact_duplicate", "split_leakage", "empty_file", "missing_label",
            "rare_class", "class_imbalance"} <= checks, checks
    for f in result.findings.itertuples(index=False):
        assert isinstance(f.detail, str) and len(f.detail.strip()) > 5, f
        if f.family in ("property", "balance"):
            assert re.search(r"\d", f.detail), f
        assert family_of(f.check) == f.family


def test_near_duplicates_of_real_photos_under_single_edits(tmp_path, textured):
    """Each edit the issue names, alone, on four real photos: every edited copy pairs with its original and
    with nothing else; a mirrored photo is a different picture."""
    from skimage import data

    def crop(im, per_side):
        w, h = im.size
        dx, dy = round(w * per_side), round(h * per_side)
        return im.crop((dx, dy, w - dx, h - dy))

    edits = {
        "resize50": lambda im: im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS),
        "crop5": lambda im: crop(im, 0.025),   # 5% of each side's length, split over both ends
        "corner95": lambda im: im.crop((0, 0, round(im.width * 0.95), round(im.height * 0.95))),
        "jpeg30": lambda im: im,
        "brighter": lambda im: ImageEnhance.Brightness(im).enhance(1.3),
        "desaturated": lambda im: ImageEnhance.Color(im).enhance(0.5),
        "grey": lambda im: im.convert("L").convert("RGB"),
    }
    root = tmp_path / "ds"
    normal_images(root, textured)
    photos = {"astronaut": data.astronaut(), "coffee": data.coffee(), "chelsea": data.chelsea(),
              "rocket": data.rocket()}
    expected = set()
    for name, pixels in photos.items():
        im = Image.fromarray(pixels).resize((320, 240), Image.Resampling.LANCZOS)
        im.save(root / "a" / f"{name}.jpg", quality=92)
        im.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(root / "a" / f"{name}_mirrored.jpg", quality=92)
        for edit, fn in edits.items():
            fn(im).save(root / "a" / f"{name}_{edit}.jpg", quality=30 if edit == "jpeg30" else 85)
            expected.add(frozenset({f"a/{name}.jpg", f"a/{name}_{edit}.jpg"}))
    result = scan(root)
    found = {frozenset({p.image_id_a, p.image_id_b}) for p in result.pairs.itertuples(index=False)}
    originals = {frozenset({a, b}) for a, b in map(tuple, found) if any(a == f"a/{n}.jpg" or b == f"a/{n}.jpg"
                                                                         for n in photos)}
    assert expected - found == set(), f"missed: {sorted(map(sorted, expected - found))}"
    assert originals - expected == set(), f"false pairs: {sorted(map(sorted, originals - expected))}"
    mirrored = {f"a/{n}_mirrored.jpg" for n in photos}
    assert not any(pair & mirrored for pair in found)
    # edited copies of one photo form one group
    dup = result.issues("near_duplicate")
    for name in photos:
        ids = [f"a/{name}.jpg"] + [f"a/{name}_{e}.jpg" for e in edits]
        groups = dup.set_index("image_id").reindex(ids)["group_id"]
        assert groups.notna().all() and groups.nunique() == 1, name


def test_many_copies_form_one_exact_group_and_no_near_pairs(tmp_path, textured):
    root = tmp_path / "ds"
    normal_images(root, textured, n=8)
    textured(900, (32, 24)).save(root / "a" / "orig.png")
    data = (root / "a" / "orig.png").read_bytes()
    n_copies = 600
    for k in range(n_copies):
        (root / "a" / f"copy{k:04d}.png").write_bytes(data)
    result = scan(root)
    f = result.issues("exact_duplicate")
    assert sorted(f["image_id"]) == sorted(["a/orig.png"] + [f"a/copy{k:04d}.png" for k in range(n_copies)])
    # 601 copies are too many for one screen: the representative's copies are split into groups of at most
    # 50 images, each holding the representative, and the split is stated
    assert f["group_id"].notna().all() and f["group_id"].nunique() == 13
    assert f["detail"].str.contains("of 13 (the representative's duplicates are split)", regex=False).all()
    grouped = result.pairs[result.pairs["to_representative"]]
    counts = pd.concat([grouped["image_id_a"], grouped["image_id_b"]]).value_counts()
    assert len(grouped) == n_copies and counts.iloc[0] == n_copies  # one representative, in every pair
    assert grouped.groupby("group_id").size().max() == 49
    assert result.issues("near_duplicate").empty
    assert len(result.pairs) <= 2 * n_copies


def test_listed_class_without_images_is_rare(tmp_path):
    root = tmp_path / "ds"
    for s, c in enumerate(["a", "b"]):
        tiny_images(root, f"train/{c}", 12, seed0=40 + s)
    (root / "classes.txt").write_text("a\nb\nghost\n")
    result = scan(root)
    rare = result.issues("rare_class")
    assert len(rare) == 1 and "'ghost' has 0 images" in rare["detail"].iloc[0]
    assert result.balance.set_index("class").loc["ghost", "n_images"] == 0
    assert found(result, "unknown_label") == []
