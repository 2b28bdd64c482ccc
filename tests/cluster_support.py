"""Shared by the cluster tests (test_cluster_scan.py, test_cluster_dups.py): one local Ray of 2 worker CPUs per
test session, and datasets of real photo crops with planted exact and near duplicates.

Ray is imported only inside the fixture, so collecting these tests costs nothing when they are left out."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
PHOTOS = ("astronaut", "camera", "coffee", "chelsea", "rocket", "coins", "moon", "page", "text", "immunohistochemistry",
          "hubble_deep_field", "motorcycle_left", "grass", "gravel", "brick", "colorwheel")


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray with 2 worker CPUs for the whole session (shut down at its end); scans given any ``cluster``
    reuse it (``engine.connected``). Reused, not restarted, when another module's fixture started it."""
    ray = pytest.importorskip("ray")
    started = False
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
                 object_store_memory=200 * 2**20, runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
        started = True
    yield ray
    if started:
        ray.shutdown()


def photos() -> list[np.ndarray]:
    """skimage.data's photos (no download) as RGB uint8 arrays."""
    from skimage import data
    out = []
    for name in PHOTOS:
        try:
            a = np.asarray(getattr(data, name)())
        except Exception:  # noqa: BLE001 - a photo that needs a download (pooch) is skipped
            continue
        if a.ndim == 2:
            a = np.repeat(a[:, :, None], 3, axis=2)
        out.append(np.ascontiguousarray(a[:, :, :3]).astype(np.uint8))
    return out


def make_crops_folder(root: Path, n: int, seed: int = 0, n_exact: int = 100, n_near: int = 100) -> dict:
    """``n`` small PNGs (32-64 px a side) cut from real photos into 10 class folders, of which ``n_exact`` are byte
    copies and ``n_near`` are near copies (one pixel-row crop and a brightness shift) of other files. Returns the
    planted {"exact": [(a, b)], "near": [(a, b)]} image_id pairs."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    pics = photos()
    n_orig = n - n_exact - n_near
    ids = []
    for k in range(n_orig):
        pic = pics[k % len(pics)]
        side = int(rng.integers(32, 65))
        span = int(rng.integers(side, min(pic.shape[0], pic.shape[1], 3 * side)))
        y0, x0 = (int(rng.integers(0, pic.shape[0] - span)), int(rng.integers(0, pic.shape[1] - span)))
        im = Image.fromarray(pic[y0:y0 + span, x0:x0 + span]).resize((side, side), Image.Resampling.BILINEAR)
        image_id = f"c{k % 10}/{k:05d}.png"
        (root / image_id).parent.mkdir(parents=True, exist_ok=True)
        im.save(root / image_id, compress_level=1)
        ids.append(image_id)
    planted = {"exact": [], "near": []}
    for k in range(n_exact):
        src = ids[int(rng.integers(0, n_orig))]
        dst = f"c{k % 10}/copy_{k:05d}.png"
        shutil.copyfile(root / src, root / dst)
        planted["exact"].append((src, dst))
    for k in range(n_near):
        src = ids[int(rng.integers(0, n_orig))]
        a = np.asarray(Image.open(root / src).convert("RGB")).astype(np.int16)
        near = np.clip(a[1:] + 6, 0, 255).astype(np.uint8)
        dst = f"c{k % 10}/near_{k:05d}.png"
        Image.fromarray(near).save(root / dst, compress_level=1)
        planted["near"].append((src, dst))
    return planted


def make_photo_copies_folder(root: Path) -> None:
    """skimage.data photos (256 px), each with edited copies: half size, JPEG q40, a 6% crop, brightened; byte
    copies of two; and 16 tiles of every photo as distinct look-alikes. Copies of every third photo sit in another
    class (conflicting labels)."""
    import io

    from PIL import Image
    pics = photos()
    for n, a in enumerate(pics):
        im = Image.fromarray(a)
        im = im.resize((256, max(32, round(256 * im.height / im.width))), Image.Resampling.BILINEAR)
        cls, copy_cls = f"p{n:02d}", f"p{(n + 1) % len(pics):02d}" if n % 3 == 0 else f"p{n:02d}"
        (root / cls).mkdir(parents=True, exist_ok=True)
        (root / copy_cls).mkdir(parents=True, exist_ok=True)
        im.save(root / cls / f"photo{n}.png")
        im.resize((128, im.height // 2), Image.Resampling.BILINEAR).save(root / copy_cls / f"half{n}.png")
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=40)
        (root / copy_cls / f"jpeg{n}.jpg").write_bytes(buf.getvalue())
        w, h = im.size
        im.crop((w * 3 // 100, h * 3 // 100, w - w * 3 // 100, h - h * 3 // 100)).save(root / copy_cls / f"crop{n}.png")
        Image.fromarray(np.clip(np.asarray(im).astype(int) + 18, 0, 255).astype(np.uint8)).save(
            root / copy_cls / f"bright{n}.png")
        if n < 2:
            shutil.copyfile(root / cls / f"photo{n}.png", root / copy_cls / f"bytes{n}.png")
        for t in range(16):
            y, x = divmod(t, 4)
            tile = im.crop((x * w // 4, y * h // 4, (x + 1) * w // 4, (y + 1) * h // 4)).resize((64, 64))
            tile.save(root / cls / f"tile{n}_{t}.png")


def crop_descriptors(n: int, seed: int = 0, near_every: int = 20) -> dict:
    """Scan signals of ``n`` crops of real photos made in memory (no files): each a random square crop (24 to 128 px
    a side) sampled to 32x32 grey (nearest pixel); every ``near_every``-th is instead an edited copy of an earlier
    crop (shifted 1 pixel down, brightness changed by up to 12 levels). Returns desc (n, 256) int8 and phash (n,)
    int64 as the scan makes them (filescan.descriptor_batch, phash_batch), cuts (the default near rule's, for
    images over 48 px) and the planted near-copy pairs (earlier, later)."""
    from PIL import Image

    from inspect_core.checks.context import near_cuts, near_rule
    from inspect_core.filescan import descriptor_batch, phash_batch
    rng = np.random.default_rng(seed)
    grey = [np.asarray(Image.fromarray(p).convert("L"), np.float32) for p in photos()]
    pic = rng.integers(0, len(grey), n)
    side = np.array([min(g.shape) for g in grey])[pic]
    span = rng.integers(24, np.minimum(128, side) + 1)
    y0 = (rng.random(n) * (np.array([grey[p].shape[0] for p in pic]) - span + 1)).astype(np.int64)
    x0 = (rng.random(n) * (np.array([grey[p].shape[1] for p in pic]) - span + 1)).astype(np.int64)
    shift = np.zeros(n, np.float32)
    planted = []
    for k in range(near_every, n, near_every):          # an edited copy of an earlier crop
        src = int(rng.integers(0, k))
        pic[k], span[k], x0[k] = pic[src], span[src], x0[src]
        y0[k] = min(y0[src] + 1, grey[pic[src]].shape[0] - span[src])
        shift[k] = rng.uniform(-12, 12)
        planted.append((src, k))
    steps = np.arange(32)[None, :] * span[:, None] // 32
    g32 = np.empty((n, 32, 32), np.float32)
    for p in range(len(grey)):
        rows = np.nonzero(pic == p)[0]
        g32[rows] = grey[p][(y0[rows, None] + steps[rows])[:, :, None], (x0[rows, None] + steps[rows])[:, None, :]]
    g32 = np.clip(g32 + shift[:, None, None], 0, 255)
    images = pd.DataFrame({"width_px": np.full(n, 64), "height_px": np.full(n, 64)})
    cos, ph, _, _ = near_cuts(images, near_rule())
    return {"desc": descriptor_batch(g32), "phash": phash_batch(g32).astype(np.int64), "cuts": (cos, ph),
            "planted": planted}


def ray_worker_pids(title: str) -> list[int]:
    """PIDs of the Ray worker processes whose title (``ray::<what they run now>``) starts with ``title``: the tests
    that kill a worker mid-scan or mid-score pick their victim by it."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "cmdline").read_bytes().startswith(f"ray::{title}".encode()):
                    out.append(int(d.name))
            except OSError:
                pass
    return out
