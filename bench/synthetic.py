"""The synthetic scan the Gallery and Model triage benches share: N images with the scan's columns (20 imbalanced
classes, splits 80/10/10, 1% of each check planted), and their image files as hard links to 64 real 640x480 JPEGs
(cheap to make, real to decode). Imports nothing of Streamlit or ``inspect_core.ui``."""
from __future__ import annotations

import os
import shutil
import statistics
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
from PIL import Image

from inspect_core.paths import resolve_inside

CHECKS = {
    "integrity": ["empty_file", "unreadable", "truncated", "format_mismatch"],
    "duplicate": ["exact_duplicate", "near_duplicate"], "leakage": ["split_leakage"],
    "label": ["missing_label", "conflicting_labels"], "annotation": ["box_outside_image", "no_boxes"],
    "property": ["dark", "overexposed", "low_contrast", "blurry", "low_information", "odd_size",
                 "odd_aspect_ratio", "grayscale"],
}


# the columns of a scan's pairs table (ScanResult.pairs, pairs.parquet): the synthetic scan has no pairs
PAIR_COLUMNS = ["kind", "score", "why", "phash_distance", "image_id_a", "split_a", "label_a", "image_id_b",
                "split_b", "label_b", "same_picture", "group_id", "to_representative", "representative"]


def synthetic_scan(n: int, root: Path, workspace: Path, seed: int = 0):
    rng = np.random.default_rng(seed)
    classes = [f"class_{k:02d}" for k in range(20)]
    label = rng.choice(classes, n, p=np.linspace(2, 0.2, 20) / np.linspace(2, 0.2, 20).sum())
    split = rng.choice(["train", "val", "test"], n, p=[0.8, 0.1, 0.1])
    ids = [f"{s}/{c}/img_{i:06d}.jpg" for i, (s, c) in enumerate(zip(split, label))]
    images = pd.DataFrame({"image_id": pd.array(ids, dtype="string"), "label": pd.array(label, dtype="string"),
                           "split": pd.array(split, dtype="string")})
    images["file_size_bytes"] = rng.integers(5_000, 500_000, n)
    images["format"] = pd.array(["JPEG"] * n, dtype="string")
    images["width_px"] = rng.choice([640, 800, 1024, 320], n)
    images["height_px"] = rng.choice([480, 600, 768, 240], n)
    images["mode"] = pd.array(["RGB"] * n, dtype="string")
    for name in ("brightness", "contrast", "colourfulness", "entropy_bits", "blur_laplacian_var",
                 "box_area_frac_mean", "box_area_frac_min"):
        images[name] = rng.gamma(4.0, 0.1, n)
    images["aspect_ratio"] = images["width_px"] / images["height_px"]
    images["n_boxes"] = rng.poisson(2.0, n)
    images["n_box_classes"] = np.minimum(images["n_boxes"], rng.integers(1, 4, n))
    rows = []
    n_findings = np.zeros(n, dtype=np.int64)
    for fam, checks in CHECKS.items():
        for chk in checks:
            hit = rng.random(n) < 0.01
            images[f"is_{chk}"] = hit
            n_findings += hit
            idx = np.flatnonzero(hit)
            rows.append(pd.DataFrame({"image_id": images["image_id"].to_numpy()[idx], "check": chk,
                                      "family": fam, "score": rng.random(len(idx)), "detail": f"{chk} evidence",
                                      "group_id": pd.array([pd.NA] * len(idx), dtype="Int64")}))
    images["n_findings"] = n_findings
    findings = pd.concat(rows, ignore_index=True)
    ds = SimpleNamespace(root=root, format="folder", images=images[["image_id", "label", "split"]],
                         annotations=pd.DataFrame(columns=["image_id", "box_x_px", "box_y_px", "box_w_px",
                                                           "box_h_px"]),
                         classes=classes, has_image_labels=True, has_boxes=False,
                         path_of=lambda i: resolve_inside(root, i))
    return SimpleNamespace(dataset=ds, workspace=workspace, fingerprint=f"bench-{n}-{seed}", images=images,
                           findings=findings, annotations=ds.annotations, balance=pd.DataFrame(),
                           pairs=pd.DataFrame(columns=PAIR_COLUMNS), summary={"n_images": n})


def make_files(root: Path, image_ids, n_sources: int = 64) -> None:
    """Hard links to a few real JPEGs, one per image_id (cheap to make, real to decode)."""
    marker = root / ".complete"
    if marker.exists() and marker.read_text() == str(len(image_ids)):
        return
    shutil.rmtree(root, ignore_errors=True)
    src_dir = root.parent / (root.name + "_sources")
    src_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    sources = []
    for k in range(n_sources):
        p = src_dir / f"src_{k}.jpg"
        if not p.exists():
            arr = (rng.random((48, 64, 3)) * 255).astype(np.uint8)
            Image.fromarray(arr).resize((640, 480), Image.Resampling.BILINEAR).save(p, quality=90)
        sources.append(p)
    for k, iid in enumerate(image_ids):
        dst = root / iid
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.link(sources[k % n_sources], dst)
    marker.write_text(str(len(image_ids)))


def median_s(fn, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times
