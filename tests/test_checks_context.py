"""The near-duplicate rule of checks/context.py on real photos (scikit-image's, cut small): no false near pairs
among distinct tiny near-uniform crops, conflicting labels only from the same picture, the cut named in the
evidence, and the threshold as part of the scan's reuse key."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from inspect_core import scan
from inspect_core.checks.context import MIRROR_RULE, NEAR_RULE, CheckContext, near_rule

# the rule shipped before issue 9: one cut for every size, no pHash clause on the strong branch
OLD_RULE = {"size_bands": [{"max_short_side_px": None, "cuts": [[0.95, 64], [0.75, 12]]}], "near_threshold": 0.95,
            "low_information": None, "same_picture": None}


def flattest_tiles(name: str, n: int, side_px: int = 32) -> list[Image.Image]:
    """The ``n`` flattest tiles of an 8x8 grid over a scikit-image photo (sky, background), at side_px."""
    from skimage import data

    im = Image.fromarray(getattr(data, name)()).convert("RGB")
    w, h = im.size
    g = np.asarray(im.convert("L"), np.float32)
    tiles = sorted((g[y * h // 8:(y + 1) * h // 8, x * w // 8:(x + 1) * w // 8].std(), x, y)
                   for x in range(8) for y in range(8))
    return [im.crop((x * w // 8, y * h // 8, (x + 1) * w // 8, (y + 1) * h // 8))
            .resize((side_px, side_px), Image.Resampling.BILINEAR) for _, x, y in tiles[:n]]


@pytest.fixture(scope="module")
def sky_dataset(tmp_path_factory):
    """48 distinct 32x32 near-uniform crops (six flattest tiles of eight photos; sky of camera and rocket),
    labelled by photo."""
    root = tmp_path_factory.mktemp("sky") / "ds"
    for name in ["hubble_deep_field", "moon", "page", "rocket", "astronaut", "coffee", "chelsea", "camera"]:
        (root / name).mkdir(parents=True)
        for k, tile in enumerate(flattest_tiles(name, 6)):
            tile.save(root / name / f"t{k}.png")
    return root


def test_distinct_tiny_near_uniform_crops_make_no_near_pairs(sky_dataset, tmp_path):
    result = scan(sky_dataset, workspace=tmp_path)
    assert len(result.images) == 48 and result.images["width_px"].eq(32).all()
    assert result.pairs.empty
    assert result.issues("near_duplicate").empty and result.issues("conflicting_labels").empty
    # the old rule pairs sky crops of camera and rocket (cosine >= 0.95, pHash 24-32 bits apart): this set
    # tells the rules apart
    old = CheckContext(images=result.images, desc=result.desc, annotations=pd.DataFrame(), classes=[],
                       has_image_labels=True, has_boxes=False, near_rule=OLD_RULE).pairs
    assert len(old) >= 5
    assert (old["label_a"] != old["label_b"]).any()  # the old rule called a label wrong on these


def test_conflicting_labels_only_for_the_same_picture(tmp_path):
    """A photo filed again under another label as an exact copy and as a JPEG re-encode: conflicting labels,
    naming both images and both labels. An overlapping but different crop of it and the sky crops under other
    labels: no conflicting labels."""
    from skimage import data

    photo = Image.fromarray(data.coffee()).convert("RGB")          # 600 x 400
    root = tmp_path / "ds"
    for label in ("cup", "plate", "sky"):
        (root / label).mkdir(parents=True)
    base = photo.crop((0, 0, 300, 200))
    base.save(root / "cup" / "coffee.png")
    base.save(root / "plate" / "exact_copy.png")
    base.save(root / "plate" / "reencoded.jpg", quality=60)
    photo.crop((150, 100, 450, 300)).save(root / "plate" / "overlapping_crop.png")  # half of it overlaps
    for k, tile in enumerate(flattest_tiles("camera", 3) + flattest_tiles("rocket", 3)):
        tile.save(root / ("sky" if k < 3 else "cup") / f"sky{k}.png")
    result = scan(root, workspace=tmp_path / "ws")
    conflicts = result.issues("conflicting_labels").set_index("image_id")
    assert sorted(conflicts.index) == ["cup/coffee.png", "plate/exact_copy.png", "plate/reencoded.jpg"]
    detail = conflicts.loc["plate/reencoded.jpg", "detail"]
    for text in ("'cup/coffee.png'", "'plate/reencoded.jpg'", "'cup'", "'plate'", "same picture", "cosine"):
        assert text in detail, (text, detail)
    assert "overlapping_crop" not in " ".join(conflicts["detail"])
    pairs = result.pairs
    # coffee ~ exact copy (exact), coffee ~ re-encode (near: exact copies are searched once, by their first copy)
    assert sorted(map(sorted, pairs.loc[pairs["same_picture"], ["image_id_a", "image_id_b"]].to_numpy().tolist())) \
        == [["cup/coffee.png", "plate/exact_copy.png"], ["cup/coffee.png", "plate/reencoded.jpg"]]


def test_near_duplicate_evidence_names_the_cut_and_its_size_band(tmp_path):
    from skimage import data

    root = tmp_path / "ds" / "a"
    root.mkdir(parents=True)
    photo = Image.fromarray(data.astronaut()).convert("RGB").resize((320, 320), Image.Resampling.BILINEAR)
    photo.save(root / "big.png")
    photo.resize((240, 240), Image.Resampling.BILINEAR).save(root / "big_resized.jpg", quality=80)
    small = photo.resize((32, 32), Image.Resampling.BILINEAR)
    small.save(root / "small.png")
    small.save(root / "small_reencoded.jpg", quality=70)
    result = scan(tmp_path / "ds", workspace=tmp_path / "ws")
    near = result.issues("near_duplicate").set_index("image_id")
    assert "cut for short side over 48 px" in near.loc["a/big_resized.jpg", "detail"]
    assert "cut for short side 13-48 px" in near.loc["a/small_reencoded.jpg", "detail"]
    # a pair is held to the band of its smaller image: the 32 px copy and the 320 px original
    pair = result.pairs.set_index(["image_id_a", "image_id_b"])
    assert "cut for short side 13-48 px" in pair.loc[("a/big.png", "a/small.png"), "why"]
    # one group, every member paired with its representative and its score to it stated
    assert result.pairs["group_id"].eq(0).all()
    assert near["detail"].str.contains("representative").all()


def test_near_threshold_moves_every_cosine_cut_and_is_part_of_the_reuse_key(tmp_path):
    rule = near_rule(0.97)
    assert rule["near_threshold"] == 0.97 and [0.97, 16] in rule["size_bands"][-1]["cuts"]
    scale = 0.03 / (1 - NEAR_RULE["near_threshold"])   # every cut's distance to 1, halved
    lax = NEAR_RULE["size_bands"][1]["cuts"][-1][0]
    assert rule["size_bands"][1]["cuts"][-1][0] == pytest.approx(1 - (1 - lax) * scale, abs=1e-4)
    assert all(c == 1.0 for b in near_rule(1.0)["size_bands"] for c, _ in b["cuts"])
    assert near_rule() == NEAR_RULE and near_rule() is not NEAR_RULE
    with pytest.raises(ValueError):
        near_rule(1.5)
    from skimage import data

    root = tmp_path / "ds" / "a"
    root.mkdir(parents=True)
    photo = Image.fromarray(data.chelsea()).convert("RGB").resize((300, 200), Image.Resampling.BILINEAR)
    photo.save(root / "cat.png")
    photo.crop((6, 4, 294, 196)).save(root / "cat_cropped.jpg", quality=85)
    ws = tmp_path / "ws"
    default = scan(tmp_path / "ds", workspace=ws)
    assert len(default.issues("near_duplicate")) == 2
    assert float(default.pairs["score"].iloc[0]) < 0.999
    strict = scan(tmp_path / "ds", workspace=ws, near_threshold=0.999)
    assert not strict.summary["reused_saved_scan"]
    assert strict.issues("near_duplicate").empty
    assert strict.summary["near_rule"]["near_threshold"] == 0.999
    again = scan(tmp_path / "ds", workspace=ws, near_threshold=0.999)
    assert again.summary["reused_saved_scan"] and again.issues("near_duplicate").empty
    back = scan(tmp_path / "ds", workspace=ws)
    assert not back.summary["reused_saved_scan"] and len(back.issues("near_duplicate")) == 2


def test_cli_near_threshold_reaches_the_scan(tmp_path, capsys):
    import json

    from inspect_core.cli import main

    root = tmp_path / "ds" / "a"
    root.mkdir(parents=True)
    for k, tile in enumerate(flattest_tiles("camera", 2)):
        tile.save(root / f"t{k}.png")
    out = tmp_path / "out"
    assert main(["scan", str(tmp_path / "ds"), "--workspace", str(tmp_path / "ws"), "--out", str(out),
                 "--near-threshold", "0.97"]) == 0
    rule = json.loads((out / "summary.json").read_text())["near_rule"]
    assert rule["near_threshold"] == 0.97
    assert main(["scan", str(tmp_path / "ds"), "--workspace", str(tmp_path / "ws"), "--near-threshold", "1.5"]) == 2
    assert "near threshold 1.5" in capsys.readouterr().err


def test_a_mirrored_copy_is_a_near_duplicate_named_as_a_mirror(tmp_path):
    """A left-right mirrored copy of a real photo is found by the rule with the mirror search (MIRROR_RULE), its
    evidence says so and it is not the same picture; the default rule (no mirror search) does not pair them."""
    from skimage import data

    root = tmp_path / "ds"
    (root / "a").mkdir(parents=True)
    photo = Image.fromarray(data.astronaut()).convert("RGB").resize((160, 160))
    photo.save(root / "a" / "photo.png")
    photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(root / "a" / "mirrored.png")
    Image.fromarray(data.coffee()).convert("RGB").resize((160, 120)).save(root / "a" / "other.png")
    res = scan(root, workspace=tmp_path / "ws")
    assert res.pairs.empty                                   # the default rule: no mirror search
    ctx = CheckContext(images=res.images, desc=res.desc, annotations=pd.DataFrame(), classes=["a"],
                       has_image_labels=True, has_boxes=False, near_rule={**near_rule(), "mirror": MIRROR_RULE})
    pairs = ctx.pairs
    assert {frozenset(p) for p in pairs[["image_id_a", "image_id_b"]].to_numpy().tolist()} == {
        frozenset(("a/photo.png", "a/mirrored.png"))}
    assert pairs["why"].str.startswith("mirror image").all() and not pairs["same_picture"].any()
    moved = near_rule(0.97, base={**NEAR_RULE, "mirror": MIRROR_RULE})
    assert moved["mirror"]["cosine"] > MIRROR_RULE["cosine"]
