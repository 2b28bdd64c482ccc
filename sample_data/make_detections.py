"""Detector outputs for the sample data's COCO boxes, with planted annotation errors (issue 13).

Called by make_sample_data.py (which writes annotations.json, detections.json and PLANTED.csv), so that one
seeded run remakes everything byte-identically. Not a trained detector: the predictions are SIMULATED from
the true drawn boxes with a detector's usual noise (edges jittered by ~4 % of the box size, confidences
0.55-0.99, 4 % of objects found only at low confidence and 1 % not at all, 3 % extra wrong-class boxes at lower
confidence, 5 % duplicate boxes, about 0.3 background boxes per image mostly below 0.4).

Then annotation errors of each kind are planted into the annotations, on the extra (not the main) objects,
(the predictions keep seeing the truth):
- missing_box: an annotated object's box is removed (its image keeps its main object's box);
- badly_placed_box: a box is moved by half its width and a fifth of its height;
- wrong_box_class: a box is given another common class;
- spurious_box: a box is added on plain background, away from every object.
"""
from __future__ import annotations

import numpy as np

DETECTION_SEED = 13013
N_PER_KIND = 3
KINDS = ("missing_box", "badly_placed_box", "wrong_box_class", "spurious_box")
COMMON_CATEGORY_IDS = (1, 2, 3, 4)


def _iou(a, b) -> float:
    iw = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def _predict(truth: list[dict], images: dict, rng) -> list[dict]:
    """Simulated detector output (COCO results) for the true boxes, in image order."""
    out = []
    by_image: dict[int, list[dict]] = {}
    for a in truth:
        by_image.setdefault(a["image_id"], []).append(a)
    for img_id, (w_img, h_img) in images.items():
        for a in by_image.get(img_id, []):
            x, y, w, h = a["bbox"]
            u = rng.random()
            if u < 0.01:
                continue                                   # not found at all
            score = rng.uniform(0.05, 0.4) if u < 0.05 else rng.uniform(0.55, 0.99)
            j = rng.normal(0.0, 0.04, 4) * [w, h, w, h]
            box = [x + j[0], y + j[1], max(2.0, w + j[2]), max(2.0, h + j[3])]
            out.append({"image_id": img_id, "category_id": a["category_id"], "bbox": box, "score": score})
            if rng.random() < 0.03:
                other = int(rng.choice([c for c in COMMON_CATEGORY_IDS if c != a["category_id"]]))
                out.append({"image_id": img_id, "category_id": other, "bbox": box,
                            "score": score * rng.uniform(0.3, 0.6)})
            if rng.random() < 0.05:
                k = rng.normal(0.0, 0.1, 4) * [w, h, w, h]
                out.append({"image_id": img_id, "category_id": a["category_id"],
                            "bbox": [box[0] + k[0], box[1] + k[1], max(2.0, box[2] + k[2]), max(2.0, box[3] + k[3])],
                            "score": score * rng.uniform(0.2, 0.6)})
        for _ in range(rng.poisson(0.3)):
            bw, bh = rng.uniform(12, 60, 2)
            out.append({"image_id": img_id, "category_id": int(rng.choice(COMMON_CATEGORY_IDS)),
                        "bbox": [rng.uniform(0, w_img - bw), rng.uniform(0, h_img - bh), bw, bh],
                        "score": 0.7 * rng.beta(2, 6)})
    for r in out:
        r["bbox"] = [round(float(v), 2) for v in r["bbox"]]
        r["score"] = round(float(r["score"]), 4)
    return out


def _free_spot(boxes: list, w_img: float, h_img: float, rng, margin: float = 8.0):
    for _ in range(200):
        bw, bh = rng.uniform(28, 48, 2)
        cand = [rng.uniform(2, w_img - bw - 2), rng.uniform(2, h_img - bh - 2), bw, bh]
        grown = [cand[0] - margin, cand[1] - margin, bw + 2 * margin, bh + 2 * margin]
        if all(_iou(grown, b) == 0.0 for b in boxes):
            return [round(v, 1) for v in cand]
    return None


def plant_and_predict(coco: dict, avoid: set[str]) -> tuple[dict, list[dict], list[tuple[str, str]]]:
    """(annotations with planted errors, simulated predictions from the truth, PLANTED rows).

    ``coco`` is the true COCO dict; images whose file_name is in ``avoid`` (already planted for something
    else) and non-JPEG files are not planted on. The planted rows are (image_id, check) with the check names
    of inspect_core.detection.errors.CHECKS."""
    rng = np.random.default_rng(DETECTION_SEED)
    known = {c["id"] for c in coco["categories"]}
    images = {e["id"]: (e["width"], e["height"]) for e in coco["images"]}
    names = {e["id"]: e["file_name"] for e in coco["images"]}
    # the truth the detector sees: real categories, real area, one box per repeated listing
    truth, seen = [], set()
    for a in coco["annotations"]:
        key = (a["image_id"], tuple(a["bbox"]))
        if a["category_id"] in known and a["bbox"][2] > 0 and a["bbox"][3] > 0 and key not in seen:
            seen.add(key)
            truth.append(a)
    predictions = _predict(truth, images, rng)
    anns = [dict(a, bbox=list(a["bbox"])) for a in coco["annotations"]]
    per_image: dict[int, list[dict]] = {}
    for a in anns:
        per_image.setdefault(a["image_id"], []).append(a)
    eligible = [i for i in sorted(images) if names[i].endswith(".jpg") and names[i] not in avoid
                and len(per_image.get(i, [])) >= 2
                and all(a["category_id"] in known and a["bbox"][2] > 0 for a in per_image[i])]
    chosen = rng.choice(eligible, size=N_PER_KIND * len(KINDS), replace=False)
    planted, drop = [], set()
    for n, img_id in enumerate(chosen.tolist()):
        kind = KINDS[n // N_PER_KIND]
        boxes = per_image[img_id]
        w_img, h_img = images[img_id]
        # the largest box is the image's main object (its folder label): errors go on the extra objects
        main = max(boxes, key=lambda a: a["bbox"][2] * a["bbox"][3])
        extras = [a for a in boxes if a is not main]
        target = extras[int(rng.integers(0, len(extras)))]
        if kind == "missing_box":
            drop.add(target["id"])
        elif kind == "badly_placed_box":
            x, y, w, h = target["bbox"]
            dx = 0.5 * w if x + w / 2 < w_img / 2 else -0.5 * w
            dy = 0.2 * h if y + h / 2 < h_img / 2 else -0.2 * h
            target["bbox"] = [round(min(max(x + dx, 0.0), w_img - w), 1), round(min(max(y + dy, 0.0), h_img - h), 1),
                              w, h]
        elif kind == "wrong_box_class":
            target["category_id"] = int(rng.choice([c for c in COMMON_CATEGORY_IDS if c != target["category_id"]]))
        else:
            spot = _free_spot([a["bbox"] for a in boxes], w_img, h_img, rng)
            assert spot is not None, f"no free spot on {names[img_id]}"
            anns.append({"id": 0, "image_id": img_id, "category_id": int(rng.choice(COMMON_CATEGORY_IDS)),
                         "bbox": spot, "area": 0.0, "iscrowd": 0})
        planted.append((names[img_id], kind))
    anns = [a for a in anns if a["id"] not in drop]
    anns.sort(key=lambda a: (a["image_id"], a["id"] == 0))
    for k, a in enumerate(anns, start=1):
        a["id"] = k
        a["area"] = round(a["bbox"][2] * a["bbox"][3], 2)
    return dict(coco, annotations=anns), predictions, sorted(planted)
