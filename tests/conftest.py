"""Shared test setup: every test gets its own empty cache folder (XDG_CACHE_HOME), so no test reads or
writes the user's real workspace and no test sees another test's scan cache.

Kept light on purpose: nothing heavy is imported at the top; helpers import numpy/Pillow when called.
"""
from __future__ import annotations

from pathlib import Path

import pytest


def pytest_collection_modifyitems(config, items):
    """Every test that drives a real browser (uses the ``browser`` fixture of browser_support.py) is marked
    ``browser``, so that ``pytest -m "not browser"`` leaves them all out, those written later too."""
    for item in items:
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    cache = tmp_path_factory.mktemp("xdg_cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache


@pytest.fixture(scope="module")
def cache_home(tmp_path_factory, request):
    """One XDG_CACHE_HOME for a whole test module (app page tests): the scans made once per module are seen
    by every test's app. A module opts in with ``pytestmark = pytest.mark.usefixtures("module_cache")``."""
    return tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1] + "_xdg")


@pytest.fixture()
def module_cache(_isolated_cache, cache_home, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_home))


@pytest.fixture(scope="module")
def sample_scan(cache_home):
    """sample_data scanned once per module into the module's cache folder (page tests)."""
    import streamlit as st

    import inspect_core
    st.cache_resource.clear()   # scans cached in this process by other test modules live in their workspaces
    return inspect_core.scan(Path(__file__).resolve().parents[1] / "sample_data",
                             workspace=cache_home / "dataset-inspector")


def _textured(seed: int, size=(64, 48), colour: bool = True):
    """A photo-like RGB image (size = (width, height)): smooth random noise, a gradient and a few shapes.
    Different seeds give visually different images; no two are near duplicates."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    width_px, height_px = size
    small = rng.integers(0, 256, (max(2, height_px // 8), max(2, width_px // 8), 3), dtype=np.uint8)
    base = Image.fromarray(small).resize((width_px, height_px), Image.Resampling.BICUBIC)
    a = np.asarray(base, dtype=np.float32)
    yy, xx = np.mgrid[0:height_px, 0:width_px]
    angle = rng.uniform(0, 2 * np.pi)
    grad = (np.cos(angle) * xx / width_px + np.sin(angle) * yy / height_px) * 80.0
    a = a * 0.7 + grad[..., None] + rng.normal(0, 6, a.shape)
    im = Image.fromarray(np.clip(a + 20, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for _ in range(3):
        x0, y0 = rng.integers(0, width_px * 3 // 4), rng.integers(0, height_px * 3 // 4)
        w, h = rng.integers(width_px // 8 + 1, width_px // 3 + 2), rng.integers(height_px // 8 + 1, height_px // 3 + 2)
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse([x0, y0, x0 + w, y0 + h], fill=fill)
        else:
            draw.rectangle([x0, y0, x0 + w, y0 + h], fill=fill)
    im = im.filter(ImageFilter.SMOOTH)
    if not colour:
        im = im.convert("L").convert("RGB")
    return im


@pytest.fixture()
def textured():
    """``textured(seed, size=(w, h), colour=True) -> PIL.Image``: a seeded, textured, photo-like image."""
    return _textured
