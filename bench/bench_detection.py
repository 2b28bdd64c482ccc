"""Detection triage benchmarks (issue 13).

    .venv/bin/python bench/bench_detection.py speed [--images 100000] [--boxes 20] [--repeat 3]
    .venv/bin/python bench/bench_detection.py compare [--seed 0] [--out bench/results/detection]
    .venv/bin/python bench/bench_detection.py sample [--out bench/results/detection]
    .venv/bin/python bench/bench_detection.py page [--images 100000] [--boxes 20] [--repeat 3] [--result-cache F]
    .venv/bin/python bench/bench_detection.py page --browser [--repeat 3] [--result-cache F]

``speed``: matching (per-box TIDE table) + COCO metrics on a synthetic set of N images x B annotated boxes
(5 classes) with about as many predictions (the boxes jittered, 5 % wrong class, background boxes), timed
per stage; the median of ``--repeat`` runs.

``page``: the Detection triage section's first render (``inspect_core.ui.detection_triage.render``, server time
under ``streamlit.testing.v1.AppTest``) on the ``speed`` set's DetectionResult (computed once, not timed): the
first run of the page with an empty cache (the per-result view is prepared then), a rerun (the confidence
slider moved), the first filter (error type missing_box: the per-box codes are built then), and the first run
of a new session once the view is cached (as after triage, which prepares it); the median of ``--repeat`` fresh sessions. The 12 worst images are written as 1200 x 1200 JPEGs so
that the grid draws real images with their boxes. ``page --browser``: the same set in the app itself, in chromium,
timed from click to paint (``bench/bench_detection_browser.py``).

``compare``: a REAL annotated image set built from photos scikit-image ships (coins, human_mitosis,
page, hubble_deep_field; no download): each photo's objects are segmented by a classic pipeline (Otsu or local
threshold, small-object removal, labelled regions), their bounding boxes are the annotations, and each photo is
cut into overlapping tiles (one image each; boxes clipped, boxes cut below half their area dropped). The class
is the photo's (coin / letter / star). Predictions are SIMULATED from the true boxes with detector-like noise
(edge jitter ~5 % of the box size; confidence 1 - e with e log-uniform in 0.002-0.5, so about 58 % of the boxes
score >= 0.95 as a trained detector's do; 3 % found only faintly, 2 % missed; 3 % wrong-class extras at half
the confidence; about 0.3 background boxes per image mostly below 0.4). Errors are then injected into the annotations at known rates (missing:
a box removed; shifted: moved by 40-60 % of its width; swapped: another class), and inspect_core's annotation
errors and cleanlab 2.9's ``cleanlab.object_detection.filter.find_label_issues`` (fed the same predictions
with per-class probabilities) are scored per error kind: precision and recall of the flagged images among the
images with an injected error of that kind (cleanlab flags images, not boxes; our per-box findings are mapped
to their images the same way). A contact sheet of tiles with their boxes is written for a look by eye.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inspect_core.detection.errors import annotation_errors
from inspect_core.detection.match import Boxes, match_boxes
from inspect_core.detection.metrics import coco_metrics

BOX = ["box_x_px", "box_y_px", "box_w_px", "box_h_px"]


# ----------------------------------------------------------------------------- speed

def synthetic_large(n_images: int, n_boxes: int, seed: int = 0, n_classes: int = 5):
    rng = np.random.default_rng(seed)
    n = n_images * n_boxes
    img = np.repeat(np.arange(n_images), n_boxes)
    w, h = rng.uniform(8, 200, n), rng.uniform(8, 200, n)
    x, y = rng.uniform(0, 1000, n), rng.uniform(0, 1000, n)
    cat = rng.integers(0, n_classes, n)
    ann = pd.DataFrame({"ann_id": np.arange(n), "image_id": img, "category": cat, "box_x_px": x, "box_y_px": y,
                        "box_w_px": w, "box_h_px": h})
    found = rng.random(n) < 0.9
    j = rng.normal(0, 0.06, (n, 4)) * np.c_[w, h, w, h]
    pcat = np.where(rng.random(n) < 0.05, rng.integers(0, n_classes, n), cat)
    pred = pd.DataFrame({"image_id": img, "category": pcat, "box_x_px": x + j[:, 0], "box_y_px": y + j[:, 1],
                         "box_w_px": np.maximum(2, w + j[:, 2]), "box_h_px": np.maximum(2, h + j[:, 3]),
                         "score": rng.uniform(0.3, 1.0, n)})[found]
    m = n // 10
    bg = pd.DataFrame({"image_id": rng.integers(0, n_images, m), "category": rng.integers(0, n_classes, m),
                       "box_x_px": rng.uniform(0, 1000, m), "box_y_px": rng.uniform(0, 1000, m),
                       "box_w_px": rng.uniform(8, 100, m), "box_h_px": rng.uniform(8, 100, m),
                       "score": rng.uniform(0.0, 0.6, m)})
    pred = pd.concat([pred, bg], ignore_index=True)
    pred.insert(0, "pred_id", np.arange(len(pred)))
    # image ids and categories as text, as the library gets them
    for df in (ann, pred):
        df["image_id"] = "img_" + df["image_id"].astype(str).str.zfill(6) + ".jpg"
        df["category"] = "class_" + df["category"].astype(str)
    return ann, pred


def cmd_speed(args) -> int:
    ann, pred = synthetic_large(args.images, args.boxes)
    print(f"{args.images:,} images, {len(ann):,} annotations, {len(pred):,} predictions")
    rows = []
    for _ in range(args.repeat):
        t, c = [time.perf_counter()], [time.process_time()]

        def tick(t=t, c=c):
            t.append(time.perf_counter())
            c.append(time.process_time())
        b = Boxes(ann, pred)
        tick()
        ga, pa = match_boxes(ann, pred, boxes=b)
        tick()
        m = coco_metrics(ann, pred, boxes=b)
        tick()
        e = annotation_errors(ann, pred, boxes=b, matched=(ga, pa))
        tick()
        # wall time, and CPU time (the wall time of a quiet machine: the code is single-threaded numpy)
        rows.append({"pairs_s": t[1] - t[0], "match_tide_s": t[2] - t[1], "metrics_s": t[3] - t[2],
                     "match_plus_metrics_s": t[3] - t[0], "annotation_errors_s": t[4] - t[3],
                     "match_plus_metrics_cpu_s": c[3] - c[0], "total_cpu_s": c[4] - c[0]})
    med = pd.DataFrame(rows).median()
    print(med.round(2).to_string())
    print(f"mAP {m.ap():.4f}  AP50 {m.ap(0.5):.4f}  TP {int(pa['is_tp'].sum()):,}  "
          f"annotation errors {len(e):,}")
    return 0


# ----------------------------------------------------------------------------- page

def synthetic_result(n_images: int, n_boxes: int):
    """The DetectionResult of ``synthetic_large`` (the chain of ``triage_detections`` without a dataset)."""
    from inspect_core.detection.errors import image_error_scores
    from inspect_core.detection.metrics import confusion_matrix
    from inspect_core.detection.triage import DEFAULTS, DetectionResult
    from inspect_core.schema import finding_frame
    ann, pred = synthetic_large(n_images, n_boxes)
    b = Boxes(ann, pred)
    ga, pa = match_boxes(ann, pred, boxes=b)
    m = coco_metrics(ann, pred, boxes=b)
    e = annotation_errors(ann, pred, boxes=b, matched=(ga, pa))
    ids = pd.Series(sorted(set(ann["image_id"])), dtype="str")
    per_image = image_error_scores(ids, e, pa, ga, DEFAULTS["tide_weight"])
    summary = {"n_images": len(ids), "n_annotations": len(ann), "n_predictions": len(pred),
               "categories": sorted(set(ann["category"])), "metrics": m.summary(), "params": dict(DEFAULTS)}
    return DetectionResult(annotations=ga, predictions=pa, images=per_image, errors=e, metrics=m,
                           problems=finding_frame([]), summary=summary,
                           confusion=confusion_matrix(ann, pred, DEFAULTS["confusion_min_score"]))


def _page_script():
    import sys

    from inspect_core.ui import detection_triage
    held = sys.modules["bench_detection_page_input"]
    detection_triage.render(held.scan, None, result=held.result)


def load_result(n_images: int, n_boxes: int, result_cache: str | None):
    """The ``synthetic_result``, read from the pickle ``result_cache`` when there, else built (and pickled there)."""
    import pickle
    cache = Path(result_cache) if result_cache else None
    if cache is not None and cache.exists():
        result = pickle.loads(cache.read_bytes())
        assert len(result.images) == n_images, f"{cache} holds another size; delete it"
        return result
    result = synthetic_result(n_images, n_boxes)
    if cache is not None:
        cache.write_bytes(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
    return result


def cmd_page(args) -> int:
    import json
    import tempfile
    import types

    import streamlit as st
    from PIL import Image
    from streamlit.testing.v1 import AppTest
    if args.browser:
        from bench_detection_browser import browser_bench
        return browser_bench(args)
    t0 = time.perf_counter()
    result = load_result(args.images, args.boxes, args.result_cache)
    print(f"{args.images:,} images, {len(result.annotations):,} annotations, {len(result.predictions):,} "
          f"predictions; result built or read in {time.perf_counter() - t0:.1f} s (not timed below)")
    tmp = Path(tempfile.mkdtemp(prefix="bench_det_page_"))
    root = tmp / "data"
    root.mkdir()
    for image_id in result.images["image_id"].head(12):
        Image.new("RGB", (1200, 1200), (120, 130, 140)).save(root / image_id, quality=90)
    images = pd.DataFrame({"image_id": result.images["image_id"], "width_px": 1200.0, "height_px": 1200.0})
    held = types.ModuleType("bench_detection_page_input")
    held.result = result
    held.scan = types.SimpleNamespace(dataset=types.SimpleNamespace(root=root, has_boxes=True, format="coco"),
                                      images=images, fingerprint="bench", workspace=tmp / "ws")
    sys.modules[held.__name__] = held
    rows = []

    def timed_run(app) -> tuple[float, float]:
        """(wall s, CPU s) of one run of ``app`` (AppTest runs the script in a thread of this process)."""
        t, c = time.perf_counter(), time.process_time()
        app.run()
        return time.perf_counter() - t, time.process_time() - c
    for _ in range(args.repeat):
        st.cache_resource.clear()
        result.__dict__.pop("_di_view", None)        # the view a render keeps on the result: built again
        st.cache_data.clear()
        at = AppTest.from_function(_page_script, default_timeout=600)
        first, first_cpu = timed_run(at)
        assert not at.exception, at.exception
        n_tiles = sum(len(json.loads(g.proto.json)["tiles"]) for g in at.get("bidi_component"))   # tile_grid
        at.slider(key="di_det_min_score").set_value(0.5)
        rerun, rerun_cpu = timed_run(at)
        at.multiselect(key="di_det_f_tag").set_value(["missing_box"])
        first_filter, filter_cpu = timed_run(at)
        n_match = next(str(x.value) for x in at.text if "images match" in str(x.value))
        again = AppTest.from_function(_page_script, default_timeout=600)   # a new session, the view cached
        new_session, new_cpu = timed_run(again)
        rows.append({"first_render_s": first, "rerun_s": rerun, "first_filter_s": first_filter,
                     "new_session_s": new_session, "first_render_cpu_s": first_cpu, "rerun_cpu_s": rerun_cpu,
                     "first_filter_cpu_s": filter_cpu, "new_session_cpu_s": new_cpu, "tiles": n_tiles})
    print(f"after the filter: {n_match}")
    med = pd.DataFrame(rows).median()
    print(med.round(3).to_string())
    return 0


# ----------------------------------------------------------------------------- real image set

def _segment(photo: str):
    """(grey image float 0..1, list of boxes xywh px) from a classic segmentation of a scikit-image photo."""
    import skimage.data as skd
    from scipy import ndimage as ndi
    from skimage import color, filters, measure

    if photo == "coins":
        # scikit-image's own coins example: Sobel elevation, markers at the dark and bright ends, watershed
        from skimage.segmentation import watershed
        raw = skd.coins()
        g = raw.astype(float) / 255
        markers = np.zeros_like(raw)
        markers[raw < 30], markers[raw > 150] = 1, 2
        mask = ndi.binary_fill_holes(watershed(filters.sobel(raw), markers) == 2)
        min_area, max_area = 300, 8000
    elif photo == "page":
        g = skd.page().astype(float) / 255
        mask = g < filters.threshold_local(g, 35, offset=0.05)      # dark letters on a light page
        min_area, max_area = 15, 800
    else:  # hubble_deep_field
        g = color.rgb2gray(skd.hubble_deep_field())
        mask = g > filters.threshold_otsu(g) * 1.2
        min_area, max_area = 25, 5000
    boxes = []
    for r in measure.regionprops(measure.label(mask)):
        if min_area <= r.area <= max_area:
            y0, x0, y1, x1 = r.bbox
            boxes.append([float(x0), float(y0), float(x1 - x0), float(y1 - y0)])
    return g, boxes


def real_tiles(tile_px: int = 128, stride_px: int = 32):
    """Tiles of three real photos with their segmented boxes: (images {image_id: grey array}, annotations)."""
    images, rows = {}, []
    for photo, cls in (("coins", "coin"), ("page", "letter"), ("hubble_deep_field", "star")):
        g, boxes = _segment(photo)
        b = np.array(boxes)
        h_img, w_img = g.shape
        for ty in range(0, h_img - tile_px + 1, stride_px):
            for tx in range(0, w_img - tile_px + 1, stride_px):
                x0 = np.clip(b[:, 0] - tx, 0, tile_px)
                y0 = np.clip(b[:, 1] - ty, 0, tile_px)
                x1 = np.clip(b[:, 0] + b[:, 2] - tx, 0, tile_px)
                y1 = np.clip(b[:, 1] + b[:, 3] - ty, 0, tile_px)
                keep = (x1 - x0) * (y1 - y0) >= 0.5 * b[:, 2] * b[:, 3]
                if not keep.any():
                    continue
                image_id = f"{photo}/{ty:04d}_{tx:04d}.png"
                images[image_id] = g[ty:ty + tile_px, tx:tx + tile_px]
                for k in np.nonzero(keep)[0]:
                    rows.append({"image_id": image_id, "category": cls, "box_x_px": x0[k], "box_y_px": y0[k],
                                 "box_w_px": x1[k] - x0[k], "box_h_px": y1[k] - y0[k]})
    ann = pd.DataFrame(rows)
    ann.insert(0, "ann_id", np.arange(len(ann)))
    return images, ann


def contact_sheet(images: dict, ann: pd.DataFrame, path: Path, n: int = 18, seed: int = 0):
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    ids = sorted(images)
    pick = [ids[i] for i in rng.choice(len(ids), size=min(n, len(ids)), replace=False)]
    cols, size = 6, 160
    sheet = Image.new("RGB", (cols * size, ((len(pick) + cols - 1) // cols) * size), "white")
    for k, image_id in enumerate(pick):
        g = images[image_id]
        im = Image.fromarray((np.clip(g, 0, 1) * 255).astype(np.uint8)).convert("RGB")
        d = ImageDraw.Draw(im)
        for r in ann[ann["image_id"] == image_id].itertuples():
            d.rectangle([r.box_x_px, r.box_y_px, r.box_x_px + r.box_w_px, r.box_y_px + r.box_h_px], outline=(255, 0, 0))
        sheet.paste(im.resize((size, size), Image.NEAREST), ((k % cols) * size, (k // cols) * size))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, quality=85)


def findings_sheet(images: dict, ann: pd.DataFrame, pred: pd.DataFrame, errs: pd.DataFrame, path: Path, n: int = 12):
    """The top findings, one tile each: annotations red, predictions >= 0.5 green, the finding's box yellow,
    the check written under it."""
    from PIL import Image, ImageDraw

    cols, size = 4, 256
    top = errs.head(n)
    sheet = Image.new("RGB", (cols * size, ((len(top) + cols - 1) // cols) * (size + 14)), "white")
    scale = size / 128
    for k, f in enumerate(top.itertuples()):
        im = Image.fromarray((np.clip(images[f.image_id], 0, 1) * 255).astype(np.uint8)).convert("RGB")
        im = im.resize((size, size), Image.NEAREST)
        d = ImageDraw.Draw(im)

        def rect(x, y, w, h, colour, d=d):
            d.rectangle([x * scale, y * scale, (x + w) * scale, (y + h) * scale], outline=colour)
        for r in ann[ann["image_id"] == f.image_id].itertuples():
            rect(r.box_x_px, r.box_y_px, r.box_w_px, r.box_h_px, (255, 0, 0))
        for r in pred[(pred["image_id"] == f.image_id) & (pred["score"] >= 0.5)].itertuples():
            rect(r.box_x_px, r.box_y_px, r.box_w_px, r.box_h_px, (0, 255, 0))
        rect(f.box_x_px, f.box_y_px, f.box_w_px, f.box_h_px, (255, 255, 0))
        x0, y0 = (k % cols) * size, (k // cols) * (size + 14)
        sheet.paste(im, (x0, y0))
        ImageDraw.Draw(sheet).text((x0 + 2, y0 + size), f"{f.check} {f.score:.2f}", fill=(0, 0, 0))
    sheet.save(path, quality=85)


def simulate_predictions(ann: pd.DataFrame, classes: list[str], rng) -> tuple[pd.DataFrame, dict]:
    """Detector-like predictions from the true boxes, with a probability vector per box (for cleanlab)."""
    rows, probs = [], []
    k = len(classes)
    for r in ann.itertuples():
        u = rng.random()
        if u < 0.02:
            continue
        # a trained detector's confidence: log-uniform error mass 0.002-0.5 (about 58 % of boxes >= 0.95)
        conf = rng.uniform(0.05, 0.4) if u < 0.05 else 1.0 - np.exp(rng.uniform(np.log(0.002), np.log(0.5)))
        j = rng.normal(0, 0.05, 4) * [r.box_w_px, r.box_h_px, r.box_w_px, r.box_h_px]
        box = [r.box_x_px + j[0], r.box_y_px + j[1], max(2.0, r.box_w_px + j[2]), max(2.0, r.box_h_px + j[3])]
        c = classes.index(r.category)
        p = np.full(k, (1 - conf) / (k - 1))
        p[c] = conf
        rows.append((r.image_id, r.category, *box, conf))
        probs.append(p)
        if rng.random() < 0.03:
            o = int(rng.choice([i for i in range(k) if i != c]))
            q = np.full(k, 0.0)
            q[o], q[c] = conf * 0.5, 1 - conf * 0.5
            rows.append((r.image_id, classes[o], *box, conf * 0.5))
            probs.append(q)
    for image_id in ann["image_id"].unique():
        for _ in range(rng.poisson(0.3)):
            bw, bh = rng.uniform(5, 30, 2)
            c = int(rng.integers(0, k))
            s = 0.7 * rng.beta(2, 6)
            q = np.full(k, (1 - s) / (k - 1))
            q[c] = s
            rows.append((image_id, classes[c], *rng.uniform(0, 128 - 30, 2), bw, bh, s))
            probs.append(q)
    pred = pd.DataFrame(rows, columns=["image_id", "category", *BOX, "score"])
    pred.insert(0, "pred_id", np.arange(len(pred)))
    return pred, np.array(probs)


def inject(ann: pd.DataFrame, classes: list[str], rates: dict, rng) -> tuple[pd.DataFrame, dict]:
    """Annotations with errors at known rates: {kind: set of image_ids}. One error per image at most."""
    ann = ann.copy()
    images = rng.permutation(np.sort(ann["image_id"].unique()))
    n = {k: round(r * len(images)) for k, r in rates.items()}
    start, truth, drop = 0, {}, []
    for kind, count in n.items():
        chosen = images[start:start + count]
        start += count
        truth[kind] = set(chosen)
        for image_id in chosen:
            rows = ann.index[ann["image_id"] == image_id]
            i = int(rng.choice(rows))
            if kind == "missing":
                drop.append(i)
            elif kind == "shifted":
                w, h = ann.at[i, "box_w_px"], ann.at[i, "box_h_px"]
                ann.at[i, "box_x_px"] += rng.choice([-1, 1]) * rng.uniform(0.4, 0.6) * w
                ann.at[i, "box_y_px"] += rng.choice([-1, 1]) * rng.uniform(0.1, 0.3) * h
            else:
                ann.at[i, "category"] = str(rng.choice([c for c in classes if c != ann.at[i, "category"]]))
    return ann.drop(index=drop).reset_index(drop=True), truth


OUR_KIND = {"missing": "missing_box", "shifted": "badly_placed_box", "swapped": "wrong_box_class"}


def _cleanlab_inputs(ann: pd.DataFrame, pred: pd.DataFrame, probs: np.ndarray, classes: list[str], ids: list[str]):
    labels, predictions = [], []
    for image_id in ids:
        a = ann[ann["image_id"] == image_id]
        xyxy = np.c_[a["box_x_px"], a["box_y_px"], a["box_x_px"] + a["box_w_px"], a["box_y_px"] + a["box_h_px"]]
        labels.append({"bboxes": xyxy.astype(np.float32).reshape(-1, 4),
                       "labels": np.array([classes.index(c) for c in a["category"]], dtype=int)})
        sel = (pred["image_id"] == image_id).to_numpy()
        p = pred[sel]
        per_class = np.empty(len(classes), dtype=object)     # one (M, 5) array per class, never stacked
        for k, c in enumerate(classes):
            q = p[p["category"] == c]
            per_class[k] = np.c_[q["box_x_px"], q["box_y_px"], q["box_x_px"] + q["box_w_px"],
                                 q["box_y_px"] + q["box_h_px"], q["score"]].astype(np.float32).reshape(-1, 5)
        predictions.append(per_class)
    return labels, predictions


def _pr(flagged: set, truth: set, other_truth: set) -> tuple[float, float]:
    """Image-level precision and recall for one error kind; images with an error of another kind are left out
    of the precision's denominator (a tool that does not name the kind is not charged for them)."""
    tp = len(flagged & truth)
    considered = flagged - other_truth
    return (tp / len(considered) if considered else float("nan")), (tp / len(truth) if truth else float("nan"))


def cmd_compare(args) -> int:
    out = Path(args.out)
    t0 = time.perf_counter()
    images, ann_true = real_tiles()
    classes = sorted(ann_true["category"].unique())
    contact_sheet(images, ann_true, out / "contact_sheet.jpg")
    print(f"real set: {len(images):,} tiles, {len(ann_true):,} boxes ({ann_true['category'].value_counts().to_dict()}), "
          f"built in {time.perf_counter() - t0:.1f} s; contact sheet {out / 'contact_sheet.jpg'}")
    rng = np.random.default_rng(args.seed)
    pred, probs = simulate_predictions(ann_true, classes, rng)
    rates = {"missing": 0.05, "shifted": 0.05, "swapped": 0.05}
    ann, truth = inject(ann_true, classes, rates, rng)
    ids = sorted(images)
    # ours
    t = time.perf_counter()
    errs = annotation_errors(ann, pred)
    ours_s = time.perf_counter() - t
    findings_sheet(images, ann, pred, errs, out / "findings_sheet.jpg")
    # cleanlab
    from cleanlab.object_detection.filter import find_label_issues
    from cleanlab.object_detection.rank import get_label_quality_scores  # noqa: F401

    labels, predictions = _cleanlab_inputs(ann, pred, probs, classes, ids)
    t = time.perf_counter()
    issues = find_label_issues(labels, predictions, return_indices_ranked_by_score=False)
    cl_s = time.perf_counter() - t
    cl_flagged = {ids[i] for i in np.nonzero(issues)[0]}
    ours_any = set(errs["image_id"])
    rows = []
    all_truth = set().union(*truth.values())
    for kind, truth_ids in truth.items():
        others = all_truth - truth_ids
        mine = set(errs.loc[errs["check"] == OUR_KIND[kind], "image_id"])
        p, r = _pr(mine, truth_ids, others)
        pa, ra = _pr(ours_any, truth_ids, others)
        pc, rc = _pr(cl_flagged, truth_ids, others)
        rows.append({"kind": kind, "n_injected": len(truth_ids), "ours_precision": p, "ours_recall": r,
                     "ours_any_precision": pa, "ours_any_recall": ra, "cleanlab_precision": pc, "cleanlab_recall": rc})
    p_any, r_any = _pr(ours_any, all_truth, set())
    p_cl, r_cl = _pr(cl_flagged, all_truth, set())
    # the three kinds injected here, without spurious_box (a kind not injected, and cleanlab has no counterpart)
    ours_three = set(errs.loc[errs["check"].isin(OUR_KIND.values()), "image_id"])
    p_three, r_three = _pr(ours_three, all_truth, set())
    by_check = errs.assign(injected=errs["image_id"].isin(all_truth)).groupby("check")["injected"].agg(["size", "sum"])
    table = pd.DataFrame(rows)
    print(table.round(3).to_string(index=False))
    print(f"any kind: ours precision {p_any:.3f} recall {r_any:.3f} ({len(ours_any)} images flagged); cleanlab "
          f"precision {p_cl:.3f} recall {r_cl:.3f} ({len(cl_flagged)} images flagged)")
    print(f"ours, missing/badly placed/wrong class only: precision {p_three:.3f} recall {r_three:.3f} "
          f"({len(ours_three)} images flagged)")
    print("our findings per check (size) and how many fall on an image with an injected error (sum):")
    print(by_check.to_string())
    print(f"time: ours {ours_s:.2f} s, cleanlab find_label_issues {cl_s:.2f} s")
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps({"per_kind": rows, "ours_any": [p_any, r_any],
                                                  "cleanlab_any": [p_cl, r_cl], "ours_three_kinds": [p_three, r_three], "ours_s": ours_s,
                                                  "cleanlab_s": cl_s}, indent=1))
    return 0


def cmd_sample(args) -> int:
    """Planted box errors of sample_data/: recall within the top 2 x planted, precision, and a sheet of the top
    findings on the real images (annotations red, predictions >= 0.3 green, the finding's box yellow)."""
    from PIL import Image, ImageDraw

    from inspect_core.detection import triage_detections
    from inspect_core.detection.errors import CHECKS

    root = Path(__file__).resolve().parents[1] / "sample_data"
    r = triage_detections(root, root / "detections.json")
    planted = pd.read_csv(root / "PLANTED.csv", keep_default_na=False)
    want = set(zip(*planted.loc[planted["check"].isin(CHECKS), ["image_id", "check"]].T.to_numpy()))
    found = set(zip(r.errors["image_id"], r.errors["check"]))
    top = set(zip(r.errors.head(2 * len(want))["image_id"], r.errors.head(2 * len(want))["check"]))
    print(f"planted {len(want)}; findings {len(r.errors)}; recall in the top {2 * len(want)}: "
          f"{len(want & top) / len(want):.3f}; precision over all findings: {len(want & found) / max(len(found), 1):.3f}")
    print(r.errors[["rank", "image_id", "check", "score"]].assign(
        planted=[(i, c) in want for i, c in zip(r.errors["image_id"], r.errors["check"])]).to_string(index=False))
    e = r.errors.head(18)
    cols, w_px, h_px = 6, 256, 206
    sheet = Image.new("RGB", (cols * w_px, ((len(e) + cols - 1) // cols) * h_px), "white")
    for k, f in enumerate(e.itertuples()):
        im = Image.open(root / f.image_id).convert("RGB")
        d = ImageDraw.Draw(im)
        for a in r.annotations[r.annotations["image_id"] == f.image_id].itertuples():
            d.rectangle([a.box_x_px, a.box_y_px, a.box_x_px + a.box_w_px, a.box_y_px + a.box_h_px], outline=(255, 0, 0))
        for p in r.predictions[(r.predictions["image_id"] == f.image_id) & (r.predictions["score"] >= 0.3)].itertuples():
            d.rectangle([p.box_x_px, p.box_y_px, p.box_x_px + p.box_w_px, p.box_y_px + p.box_h_px], outline=(0, 255, 0))
        d.rectangle([f.box_x_px - 2, f.box_y_px - 2, f.box_x_px + f.box_w_px + 2, f.box_y_px + f.box_h_px + 2],
                    outline=(255, 255, 0), width=2)
        x, y = (k % cols) * w_px, (k // cols) * h_px
        sheet.paste(im, (x, y))
        mark = "planted" if (f.image_id, f.check) in want else "not planted"
        ImageDraw.Draw(sheet).text((x + 2, y + 193), f"{f.rank} {f.check} {f.score:.2f} ({mark})", fill=(0, 0, 0))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sheet.save(out / "sample_findings.jpg", quality=85)
    print(f"sheet: {out / 'sample_findings.jpg'}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--images", type=int, default=100_000)
    s.add_argument("--boxes", type=int, default=20)
    s.add_argument("--repeat", type=int, default=3)
    c = sub.add_parser("compare")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--out", default="bench/results/detection")
    g = sub.add_parser("page")
    g.add_argument("--images", type=int, default=100_000)
    g.add_argument("--boxes", type=int, default=20)
    g.add_argument("--repeat", type=int, default=3)
    g.add_argument("--result-cache", default=None,
                   help="a pickle of the synthetic DetectionResult: read when there, else written (saves minutes)")
    g.add_argument("--browser", action="store_true",
                   help="the app in chromium instead (bench/bench_detection_browser.py): click to paint")
    g.add_argument("--out", default=None, help="with --browser: the Markdown table (default bench/results/...)")
    m = sub.add_parser("sample")
    m.add_argument("--out", default="bench/results/detection")
    args = ap.parse_args(argv)
    return {"speed": cmd_speed, "compare": cmd_compare, "sample": cmd_sample, "page": cmd_page}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
