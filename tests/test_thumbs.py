"""Thumbnails: cached once, placeholders for broken files, nothing outside the root, boxes drawn."""
from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

from inspect_core.thumbs import THUMB_SIZE_PX, display_image, draw_boxes, thumbnail, thumbnails


@pytest.fixture()
def root(tmp_path):
    r = tmp_path / "data"
    (r / "cls").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(r / "cls" / "big.jpg")
    Image.fromarray(np.arange(800, dtype=np.uint16).reshape(40, 20) * 80).save(r / "cls" / "deep.png")
    Image.new("RGBA", (30, 30), (255, 0, 0, 0)).save(r / "cls" / "alpha.png")
    (r / "cls" / "empty.jpg").write_bytes(b"")
    (r / "cls" / "text.jpg").write_bytes(b"this is not a jpeg at all")
    good = (r / "cls" / "big.jpg").read_bytes()
    (r / "cls" / "cut.jpg").write_bytes(good[: len(good) // 3])
    outside = tmp_path / "secret.jpg"
    Image.new("RGB", (10, 10), (0, 0, 255)).save(outside)
    os.symlink(outside, r / "cls" / "link.jpg")
    return r


def _open(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def test_thumbnail_made_once_and_cached(root, tmp_path):
    ws = tmp_path / "ws"
    t = thumbnail(root, "cls/big.jpg", ws)
    assert t.ok
    img = _open(t.data)
    assert img.format == "JPEG" and img.size == (THUMB_SIZE_PX, THUMB_SIZE_PX)
    arr = np.asarray(img.convert("RGB"), dtype=int)
    assert abs(arr[5, 80] - 242).max() <= 6          # 640x480 reduced to 160x120, centred: grey bands
    assert abs(arr[20:140].mean() - 127) < 20          # the noise image (mean grey 127) in the middle
    cached = list((ws / "thumbs").rglob("*.jpg"))
    assert len(cached) == 1
    mtime = cached[0].stat().st_mtime_ns
    assert thumbnail(root, "cls/big.jpg", ws).data == t.data
    assert cached[0].stat().st_mtime_ns == mtime  # served from cache, not rewritten
    # a changed file gets a new thumbnail
    Image.new("RGB", (100, 50), (0, 255, 0)).save(root / "cls" / "big.jpg")
    os.utime(root / "cls" / "big.jpg", ns=(mtime + 10**9, mtime + 10**9))
    t2 = thumbnail(root, "cls/big.jpg", ws)
    arr2 = np.asarray(_open(t2.data).convert("RGB"), dtype=int)
    assert abs(arr2[80, 80] - [0, 255, 0]).max() <= 8   # the new green image
    assert abs(arr2[80, 20] - 242).max() <= 8           # 100x50 is not enlarged: grey beside it
    assert len(list((ws / "thumbs").rglob("*.jpg"))) == 2


@pytest.mark.parametrize("image_id, reason", [
    ("cls/empty.jpg", "empty file"),
    ("cls/text.jpg", "not an image"),
    ("cls/cut.jpg", "truncated file"),
    ("cls/missing.jpg", "file missing"),
    ("../secret.jpg", "outside dataset root"),
    ("cls/link.jpg", "outside dataset root"),
    ("/etc/passwd", "outside dataset root"),
])
def test_placeholders(root, tmp_path, image_id, reason):
    t = thumbnail(root, image_id, tmp_path / "ws")
    assert not t.ok and t.reason == reason
    assert _open(t.data).size == (THUMB_SIZE_PX, THUMB_SIZE_PX)
    assert not (tmp_path / "ws" / "thumbs").exists()


def test_odd_modes_become_rgb(root, tmp_path):
    for image_id in ("cls/deep.png", "cls/alpha.png"):
        t = thumbnail(root, image_id, tmp_path / "ws")
        assert t.ok, image_id
        assert _open(t.data).mode == "RGB"
    # the transparent red square is shown on white
    px = _open(thumbnail(root, "cls/alpha.png", tmp_path / "ws").data).convert("RGB").getpixel((10, 10))
    assert min(px) > 240


def test_page_of_thumbnails_keeps_order(root, tmp_path):
    ids = ["cls/big.jpg", "cls/text.jpg", "cls/alpha.png", "../secret.jpg"]
    got = thumbnails(root, ids, tmp_path / "ws", workers=3)
    assert [t.ok for t in got] == [True, False, True, False]


def test_dataset_untouched(root, tmp_path):
    before = sorted(p.name for p in root.rglob("*"))
    thumbnails(root, ["cls/big.jpg", "cls/alpha.png"], tmp_path / "ws")
    assert sorted(p.name for p in root.rglob("*")) == before


def test_display_image_scale_and_boxes(root):
    img, scale, reason = display_image(root, "cls/big.jpg", max_side_px=320)
    assert reason is None and img.size == (320, 240) and scale == pytest.approx(0.5)
    assert display_image(root, "../secret.jpg")[2] == "outside dataset root"

    black = Image.new("RGB", (100, 80), (0, 0, 0))
    drawn = draw_boxes(black, [
        {"box_x_px": 20, "box_y_px": 20, "box_w_px": 40, "box_h_px": 30, "category": "cat"},
        {"box_x_px": 80, "box_y_px": 60, "box_w_px": 90, "box_h_px": 90, "flagged": True, "category": None},
        {"box_x_px": float("nan"), "box_y_px": 0, "box_w_px": 1, "box_h_px": 1},
    ], scale=1.0)
    arr = np.asarray(drawn)
    assert arr[40, 20].tolist() == [40, 200, 60]        # left edge of the ok box, green
    assert arr[45, 40].tolist() == [0, 0, 0]             # inside stays untouched
    assert arr[70, 80].tolist() == [230, 30, 30]         # flagged box clipped to the frame, red
    assert np.asarray(black).max() == 0                  # the input is not modified
    half = np.asarray(draw_boxes(black, [{"box_x_px": 20, "box_y_px": 20, "box_w_px": 40, "box_h_px": 30}],
                                 scale=0.5))
    assert half[15, 10].tolist() == [40, 200, 60]
