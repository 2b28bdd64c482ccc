"""The shipped sample_data/ is what its seeded script makes, and its planted problems are really there.

Everything is read from the files themselves (PLANTED.csv, annotations.json, classes.txt, the images).
"""
from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
from PIL import Image

import inspect_core

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_data"
SCRIPT = SAMPLE / "make_sample_data.py"
OWNED = ["train", "val", "test", "annotations.json", "detections.json", "classes.txt", "PLANTED.csv", "README.md"]
MAX_BYTES = 15 * 1024 * 1024

# check names from the inspect_core contract (family -> checks), plus the model-triage label
CONTRACT_CHECKS = {
    "integrity": ["empty_file", "unreadable", "truncated", "decompression_bomb", "format_mismatch",
                  "path_outside_root", "missing_file"],
    "duplicate": ["exact_duplicate", "near_duplicate"],
    "leakage": ["split_leakage"],
    "label": ["missing_label", "unknown_label", "conflicting_labels"],
    "annotation": ["box_outside_image", "box_degenerate", "box_unknown_category", "box_missing_image",
                   "box_duplicate", "no_boxes"],
    "balance": ["class_imbalance", "rare_class", "split_mismatch"],
    "property": ["dark", "overexposed", "low_contrast", "blurry", "low_information", "odd_size",
                 "odd_aspect_ratio", "grayscale"],
}
# found through a model, not by the scan: mislabeled images, and the detection triage's annotation errors
MODEL_CHECKS = {"mislabeled", "missing_box", "badly_placed_box", "wrong_box_class", "spurious_box"}
ALLOWED_CHECKS = {c for checks in CONTRACT_CHECKS.values() for c in checks} | MODEL_CHECKS
NOT_ON_DISK = {"box_missing_image", "path_outside_root", "missing_file"}
# files whose bytes are not a readable image on purpose
BROKEN_FILE = {"empty_file", "unreadable", "truncated"}
# annotation entries that are wrong on purpose
BROKEN_BOXES = {"box_outside_image", "box_degenerate", "box_unknown_category", "box_duplicate", "no_boxes",
                "box_missing_image", "path_outside_root"}


def owned_files(root: Path) -> dict[str, str]:
    """sha256 of every file the script owns under root, by POSIX relative path."""
    out = {}
    for name in OWNED:
        p = root / name
        paths = [p] if p.is_file() else sorted(x for x in p.rglob("*") if x.is_file())
        for f in paths:
            out[f.relative_to(root).as_posix()] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def planted() -> dict[str, set[str]]:
    rows = list(csv.DictReader(open(SAMPLE / "PLANTED.csv", newline="", encoding="utf-8")))
    assert rows and set(rows[0]) == {"image_id", "check"}
    by_id: dict[str, set[str]] = {}
    for r in rows:
        by_id.setdefault(r["image_id"], set()).add(r["check"])
    return by_id


@pytest.fixture(scope="module")
def classes() -> list[str]:
    return [c for c in (SAMPLE / "classes.txt").read_text(encoding="utf-8").splitlines() if c.strip()]


@pytest.fixture(scope="module")
def coco() -> dict:
    return json.loads((SAMPLE / "annotations.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def image_files() -> list[str]:
    return sorted(p.relative_to(SAMPLE).as_posix() for s in ("train", "val", "test")
                  for p in (SAMPLE / s).rglob("*") if p.is_file())


def grey_stats(path: Path) -> tuple[float, float]:
    """(mean, std) of the grey levels in 0..255."""
    im = Image.open(path)
    if im.mode.startswith("I;16"):
        g = np.asarray(im, dtype=np.float64) / 257
    else:
        g = np.asarray(im.convert("RGB").convert("L"), dtype=np.float64)
    return float(g.mean()), float(g.std())


def test_regenerating_gives_byte_identical_tree_and_spares_other_files(tmp_path):
    keep = tmp_path / "model" / "keep.txt"
    keep.parent.mkdir()
    keep.write_text("owned by someone else")
    stale = tmp_path / "train" / "stale.jpg"
    stale.parent.mkdir()
    stale.write_bytes(b"old")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    fresh = owned_files(tmp_path)
    committed = owned_files(SAMPLE)
    assert sorted(fresh) == sorted(committed)
    differing = [k for k in fresh if fresh[k] != committed[k]]
    assert not differing, f"regenerated files differ from the committed ones: {differing[:5]}"
    assert keep.read_text() == "owned by someone else"   # model/ is not the script's
    assert not stale.exists()                              # what it owns is rewritten from scratch


def test_total_size_is_small():
    total = sum(p.stat().st_size for p in SAMPLE.rglob("*")
                if p.is_file() and "model" not in p.relative_to(SAMPLE).parts)
    assert 0 < total < MAX_BYTES


def test_check_names_are_contract_names(planted):
    checks = {c for cs in planted.values() for c in cs}
    assert checks <= ALLOWED_CHECKS, checks - ALLOWED_CHECKS
    try:
        from inspect_core.checks import all_check_names
    except ImportError:  # registry not there yet: the contract list above is the reference
        return
    assert checks - MODEL_CHECKS <= set(all_check_names())


def test_every_planted_image_exists_except_the_ones_planted_missing(planted):
    for image_id, checks in planted.items():
        if image_id == "":
            assert checks <= set(CONTRACT_CHECKS["balance"]), checks  # dataset-level rows only
            continue
        rel = PurePosixPath(image_id)
        on_disk = ".." not in rel.parts and (SAMPLE / rel).is_file()
        if checks & NOT_ON_DISK:
            assert not on_disk, image_id
        else:
            assert on_disk, f"{image_id} is listed in PLANTED.csv but missing"


def test_every_family_is_planted(planted):
    checks = {c for cs in planted.values() for c in cs}
    for family, names in CONTRACT_CHECKS.items():
        assert checks & set(names), f"no planted {family} problem"
    assert "mislabeled" in checks


def test_integrity_plants_are_broken_and_everything_else_opens(planted, image_files):
    opened = 0
    for image_id in image_files:
        checks = planted.get(image_id, set())
        path = SAMPLE / image_id
        if "empty_file" in checks:
            assert path.stat().st_size == 0
            continue
        if checks & {"unreadable", "truncated"}:
            with pytest.raises(OSError):   # Pillow's UnidentifiedImageError is an OSError too
                with Image.open(path) as im:
                    im.load()
            if "truncated" in checks:  # it starts like a JPEG but stops early
                assert path.read_bytes()[:2] == b"\xff\xd8" and not path.read_bytes().endswith(b"\xff\xd9")
            continue
        with Image.open(path) as im:
            im.load()
            fmt = im.format
        expected = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".gif": "GIF"}[path.suffix.lower()]
        assert (fmt != expected) == ("format_mismatch" in checks), image_id
        opened += 1
    assert opened > 0.9 * len(image_files)


def test_duplicate_and_leakage_plants(planted):
    exact = [i for i, c in planted.items() if "exact_duplicate" in c]
    assert len(exact) >= 2
    assert len({(SAMPLE / i).read_bytes() for i in exact}) == 1
    near = [i for i, c in planted.items() if "near_duplicate" in c]
    assert len(near) == 2
    a, b = (PurePosixPath(i) for i in near)
    assert (SAMPLE / a).read_bytes() != (SAMPLE / b).read_bytes()
    for i in near:
        assert {"split_leakage", "conflicting_labels"} <= planted[i]
    assert a.parts[0] != b.parts[0] and a.parent.name != b.parent.name  # other split, other label
    # visually close: compare on a common small grid
    ga, gb = (np.asarray(Image.open(SAMPLE / p).convert("L").resize((32, 24)), dtype=np.float64) for p in (a, b))
    assert np.abs(ga - gb).mean() < 20
    # and genuinely different from an unrelated image of the same split as a
    other = next(p for p in sorted((SAMPLE / a.parent).glob("*.jpg")) if p.name != a.name
                 and not planted.get(p.relative_to(SAMPLE).as_posix()))
    go = np.asarray(Image.open(other).convert("L").resize((32, 24)), dtype=np.float64)
    assert np.abs(ga - go).mean() > np.abs(ga - gb).mean() * 1.5


def test_label_plants(planted, classes, image_files):
    for image_id, checks in planted.items():
        parts = PurePosixPath(image_id).parts
        if "missing_label" in checks:
            assert len(parts) == 2 and parts[0] in ("train", "val", "test")
        if "unknown_label" in checks:
            assert len(parts) == 3 and parts[1] not in classes
    folders = {PurePosixPath(i).parts[1] for i in image_files if len(PurePosixPath(i).parts) == 3}
    assert set(classes) <= folders
    unknown = folders - set(classes)
    assert unknown
    for i in image_files:
        parts = PurePosixPath(i).parts
        if len(parts) == 3 and parts[1] in unknown:
            assert "unknown_label" in planted.get(i, set()), i


def test_rare_class_is_the_smallest(planted, classes, image_files):
    assert "rare_class" in planted[""]
    counts = Counter(PurePosixPath(i).parts[1] for i in image_files if len(PurePosixPath(i).parts) == 3)
    per_class = sorted(counts[c] for c in classes)
    assert per_class[0] * 5 < per_class[1], counts  # one class is much rarer than all others


def test_annotations_are_valid_coco_except_planted_entries(coco, classes, planted, image_files):
    assert {"images", "annotations", "categories"} <= set(coco)
    cats = {c["id"]: c["name"] for c in coco["categories"]}
    assert sorted(cats.values()) == sorted(classes) and len(cats) == len(coco["categories"])
    image_ids = [im["id"] for im in coco["images"]]
    assert len(set(image_ids)) == len(image_ids)
    file_names = [im["file_name"] for im in coco["images"]]
    assert len(set(file_names)) == len(file_names)
    ann_ids = [a["id"] for a in coco["annotations"]]
    assert len(set(ann_ids)) == len(ann_ids)
    by_image = defaultdict(list)
    for a in coco["annotations"]:
        assert a["image_id"] in set(image_ids)
        assert len(a["bbox"]) == 4 and all(isinstance(v, (int, float)) for v in a["bbox"])
        by_image[a["image_id"]].append(a)

    seen = defaultdict(set)  # check -> image ids where the planted problem was found in the json
    for im in coco["images"]:
        name, checks = im["file_name"], planted.get(im["file_name"], set())
        boxes = by_image[im["id"]]
        rel = PurePosixPath(name)
        exists = ".." not in rel.parts and (SAMPLE / rel).is_file()
        if not exists:
            seen["path_outside_root" if ".." in rel.parts else "box_missing_image"].add(name)
            assert checks & NOT_ON_DISK, f"{name} has no file but is not planted"
            continue
        if not checks & BROKEN_FILE:
            with Image.open(SAMPLE / rel) as f:
                assert (im["width"], im["height"]) == f.size, name
        keys = [tuple(a["bbox"]) + (a["category_id"],) for a in boxes]
        for a in boxes:
            x, y, w, h = a["bbox"]
            if a["category_id"] not in cats:
                seen["box_unknown_category"].add(name)
            elif w <= 0 or h <= 0:
                seen["box_degenerate"].add(name)
            elif x < 0 or y < 0 or x + w > im["width"] or y + h > im["height"]:
                seen["box_outside_image"].add(name)
        if len(set(keys)) < len(keys):
            seen["box_duplicate"].add(name)
        if not boxes:
            seen["no_boxes"].add(name)
    for check in BROKEN_BOXES:
        expected = {i for i, c in planted.items() if check in c}
        assert expected, f"nothing planted for {check}"
        assert seen[check] == expected, (check, seen[check] ^ expected)
    # every readable image in the folders has an image entry
    assert set(image_files) <= set(file_names)


def test_main_box_matches_folder_label_unless_mislabeled(coco, classes, planted):
    cats = {c["id"]: c["name"] for c in coco["categories"]}
    by_image = defaultdict(list)
    for a in coco["annotations"]:
        by_image[a["image_id"]].append(a)
    n_checked = 0
    for im in coco["images"]:
        parts = PurePosixPath(im["file_name"]).parts
        checks = planted.get(im["file_name"], set())
        good = [a for a in by_image[im["id"]] if a["category_id"] in cats and min(a["bbox"][2:]) > 0]
        if len(parts) != 3 or parts[1] not in classes or not good or checks & {"box_outside_image"}:
            continue
        main = max(good, key=lambda a: a["bbox"][2] * a["bbox"][3])
        assert (cats[main["category_id"]] != parts[1]) == ("mislabeled" in checks), im["file_name"]
        n_checked += 1
    assert n_checked > 0.8 * len(coco["images"])


def test_property_plants_stand_out(planted, image_files):
    readable = {}
    for i in image_files:
        if planted.get(i, set()) & BROKEN_FILE:
            continue
        readable[i] = grey_stats(SAMPLE / i)
    normal = [v for i, v in readable.items() if not planted.get(i)]
    means = np.array([m for m, _ in normal])
    stds = np.array([s for _, s in normal])

    def only(check):
        ids = [i for i, c in planted.items() if check in c]
        assert len(ids) >= 1, check
        return ids

    for i in only("dark"):
        assert readable[i][0] < means.min() - 20
    for i in only("overexposed"):
        assert readable[i][0] > means.max() + 20
    for i in only("low_contrast"):
        assert readable[i][1] < stds.min() / 2
    for i in only("grayscale"):
        assert Image.open(SAMPLE / i).mode in ("L", "I;16", "I;16B", "I")
    sizes = Counter(Image.open(SAMPLE / i).size for i in readable)
    common_size = sizes.most_common(1)[0][0]
    for i in only("odd_size"):
        w, h = Image.open(SAMPLE / i).size
        assert w * h > 1.5 * common_size[0] * common_size[1] or w * h < common_size[0] * common_size[1] / 2
        assert max(w / h, h / w) > 4 and "odd_aspect_ratio" in planted[i]
    for i in only("blurry"):
        g = np.asarray(Image.open(SAMPLE / i).convert("L"), dtype=np.float64)
        lap = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4 * g[1:-1, 1:-1]
        assert lap.var() < 10
    for i in only("low_information"):
        g = np.asarray(Image.open(SAMPLE / i).convert("L"))
        p = np.bincount(g.ravel(), minlength=256) / g.size
        assert -(p[p > 0] * np.log2(p[p > 0])).sum() < 3


# ----------------------------------------------------------------------------------- golden: the scan
# Scanning the shipped sample_data/ finds every planted problem, and nothing unplanted beyond a short list.
# Found by the scan but not planted, and right: the planted low-contrast image is also nearly uniform.
EXPECTED_UNPLANTED = {("test/square/square_0074.jpg", "low_information")}


def planted_scan_rows() -> set[tuple[str, str]]:
    with open(SAMPLE / "PLANTED.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and set(rows[0]) == {"image_id", "check"}
    return {(r["image_id"], r["check"]) for r in rows if r["check"] not in MODEL_CHECKS}


def test_sample_data_scan_finds_exactly_what_was_planted(tmp_path):
    result = inspect_core.scan(SAMPLE, workspace=tmp_path / "ws")
    found = set(zip(result.findings["image_id"], result.findings["check"]))
    want = planted_scan_rows()
    missed = sorted(want - found)
    extra = sorted(found - want - EXPECTED_UNPLANTED)
    assert not missed and not extra, (
        f"planted but not found: {missed}\nfound but not planted: "
        + "\n".join(f"  {i} {c}: {result.findings.set_index(['image_id', 'check']).loc[(i, c), 'detail']}"
                    for i, c in extra))
    assert EXPECTED_UNPLANTED <= found, f"stated extras no longer found: {sorted(EXPECTED_UNPLANTED - found)}"


def test_sample_data_groups_and_summary(tmp_path):
    result = inspect_core.scan(SAMPLE, workspace=tmp_path / "ws", workers=1)
    s = result.summary
    assert s["format"] == "folder" and s["has_boxes"] and s["has_image_labels"]
    assert s["n_images"] == len(result.images) == result.images["image_id"].nunique()
    assert s["n_findings"] == len(result.findings)
    assert sum(s["findings_per_family"].values()) == len(result.findings)
    # the planted cross-split near duplicate is one group, shared by its leakage and label findings
    pair = {"train/circle/circle_0031.jpg", "test/square/square_0080.jpg"}
    for check in ("near_duplicate", "split_leakage", "conflicting_labels"):
        f = result.issues(check)
        f = f[f["image_id"].isin(pair)]
        assert set(f["image_id"]) == pair, check
        assert f["group_id"].notna().all() and f["group_id"].nunique() == 1, check
    exact = result.issues("exact_duplicate")
    assert exact["group_id"].nunique() == 1 and len(exact) == 2
