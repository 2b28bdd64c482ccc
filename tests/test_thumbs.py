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
    assert abs(arr2[80, 5] - [0, 255, 0]).max() <= 8    # 100x50 is enlarged to fill the tile's width ...
    assert abs(arr2[20, 80] - 242).max() <= 8           # ... and keeps its shape: grey bands above and below
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


def _bounded(fn, timeout_s: float = 10.0):
    """Run ``fn`` in a daemon thread; fail (instead of hanging the suite) if it does not return in time."""
    import threading
    box: dict = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            box["error"] = exc
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout_s)
    assert not t.is_alive(), "call blocked (opened a FIFO?)"
    if "error" in box:
        raise box["error"]
    return box["value"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this OS")
def test_fifo_named_jpg_gets_a_placeholder_never_a_hang(root, tmp_path):
    from inspect_core.thumbs import NotRegularFileError, open_reduced
    os.mkfifo(root / "cls" / "pipe.jpg")
    t = _bounded(lambda: thumbnail(root, "cls/pipe.jpg", tmp_path / "ws"))
    assert not t.ok and t.reason == "not a regular file"
    img, scale, reason = _bounded(lambda: display_image(root, "cls/pipe.jpg"))
    assert img is None and reason == "not a regular file"
    with pytest.raises(NotRegularFileError):
        _bounded(lambda: open_reduced(root / "cls" / "pipe.jpg", 64))
    assert display_image(root, "cls")[2] == "not a regular file"  # a folder is not opened either


def test_open_reduced_returns_the_file_size(root):
    from inspect_core.thumbs import open_reduced
    img, size = open_reduced(root / "cls" / "big.jpg", 100)
    assert size == (640, 480) and max(img.size) <= 100


def test_thumbnail_cache_writes_from_threads_do_not_collide(root, tmp_path, monkeypatch):
    """Sessions are threads of one process: concurrent writers of one thumbnail must not share a temp file."""
    import threading
    from inspect_core import thumbs as T
    names: list[str] = []
    real_replace = os.replace
    barrier = threading.Barrier(4)

    def slow_replace(src, dst):
        names.append(os.path.basename(src))
        return real_replace(src, dst)
    real_open = T.open_reduced

    def open_together(path, side):  # all four have missed the cache before any writes it
        barrier.wait(10)
        return real_open(path, side)
    monkeypatch.setattr(T.os, "replace", slow_replace)
    monkeypatch.setattr(T, "open_reduced", open_together)
    ws = tmp_path / "ws"
    results = []

    def work():
        results.append(thumbnail(root, "cls/big.jpg", ws))
    threads = [threading.Thread(target=work) for _ in range(4)]
    [t.start() for t in threads]
    [t.join(20) for t in threads]
    assert all(r.ok for r in results) and len(results) == 4
    assert len(names) == 4 and len(set(names)) == 4  # every writer had its own temp name
    assert not list((ws / "thumbs").rglob("*.tmp"))


def test_display_image_opens_the_file_once(root, monkeypatch):
    from inspect_core import thumbs as T
    opened = []
    real_open = T.Image.open

    def counting(fp, *a, **kw):
        opened.append(str(fp))
        return real_open(fp, *a, **kw)
    monkeypatch.setattr(T.Image, "open", counting)
    img, scale, reason = display_image(root, "cls/big.jpg", max_side_px=320)
    assert reason is None and img.size == (320, 240) and scale == pytest.approx(0.5)
    assert len(opened) == 1


def test_small_image_is_enlarged_with_visible_pixels(tmp_path):
    root = tmp_path / "data"
    (root / "cls").mkdir(parents=True)
    arr = np.zeros((32, 32, 3), dtype=np.uint8)
    arr[::2, ::2] = 255                                   # a 1-pixel checkerboard-like grid
    Image.fromarray(arr).save(root / "cls" / "tiny.png")
    t = thumbnail(root, "cls/tiny.png", tmp_path / "ws", size_px=128)
    out = np.asarray(_open(t.data).convert("L"), dtype=int)
    assert out.shape == (128, 128)                        # fills the tile: 4x
    # nearest-neighbour: each source pixel is a 4x4 block (JPEG blurs the block edges a little)
    assert out[1, 1] > 200 and out[1, 5] < 60 and out[5, 1] < 60 and out[9, 9] > 200
