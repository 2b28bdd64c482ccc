"""Near duplicates, duplicate groups, conflicting labels and split leakage on real photos, per size band:
precision and recall of the shipped rule beside the old one, on the same sets.

    .venv/bin/python bench/bench_realdata.py          # builds bench/.data/realdata_<band> once, scans, evaluates
    .venv/bin/python bench/bench_realdata.py --sheet  # and draws flagged false pairs: bench/out/realdata_false_pairs.png

The sets (seeded, bench/photos.py): every real photograph available offline (the 20 scikit-image ships that
need no download, plus scikit-learn's china and flower), cut per photo into distinct images that look alike
(a 3x3 grid of tiles; four more tiles offset by half a tile, so each overlaps its neighbours by half: same
scene, different shot; the whole photo; a 6x6 grid of tiles, each a zoomed quarter of a 3x3 tile; the two
flattest tiles of an 8x8 grid: sky, page, dark field), each resized to the band's size (32x32, 64x64, 192x144,
800x600; pixel-identical results kept once). Each distinct image gets one edited copy, the
edits cycling through JPEG re-encode, resize (50-90%), crop (2-5% per side), colour shift, all four at once,
and a left-right flip. A fifth band is scikit-learn's 8x8 handwritten digits (400 distinct digits, many of
one class alike) with one re-encoded or upscaled copy of every third. Labels: ten classes drawn at random
per distinct image (so alike images carry different labels, as in a real dataset); the copy carries its
original's label, except every seventh copy, whose label is flipped (the planted conflicting labels). Splits:
train or test at random (80/20).

Truth: a pair is a true near duplicate when both images come from the same distinct image. Recall counts the
copies made by the five non-flip edits (a mirror image is a different picture to the descriptor; flips are
reported on their own row). Groups: a group is pure when all its members come from one distinct image; "within
the rule of its representative": every member forms an accepted pair with the group's representative.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

HERE = Path(__file__).resolve().parent

from photos import EDIT_KINDS, edit_as, sample_photos  # noqa: E402

BANDS = {"8px digits": None, "32px": (32, 32), "64px": (64, 64), "192px": (192, 144), "800px": (800, 600)}
N_CLASSES = 10
FLIP_LABEL_EVERY = 7
# the rule as shipped before issue 9: one cut for every image, the pHash branch everywhere, connected groups
OLD_RULE = {"size_bands": [{"max_short_side_px": None, "cuts": [[0.95, 64], [0.75, 12]]}], "near_threshold": 0.95,
            "low_information": None, "same_picture": None, "group_max_images": 50}


def _distinct_images(photos, size) -> list[Image.Image]:
    out = []
    for im in photos:
        w, h = im.size
        for gx in range(3):
            for gy in range(3):
                out.append(im.crop((gx * w // 3, gy * h // 3, (gx + 1) * w // 3, (gy + 1) * h // 3)))
        for gx in range(2):
            for gy in range(2):   # offset by half a tile: overlaps its four grid neighbours by half
                x0, y0 = w // 6 + gx * w // 3, h // 6 + gy * h // 3
                out.append(im.crop((x0, y0, x0 + w // 3, y0 + h // 3)))
        out.append(im)
        for gx in range(6):
            for gy in range(6):  # a quarter of a grid tile: the same content, zoomed (distinct, alike)
                out.append(im.crop((gx * w // 6, gy * h // 6, (gx + 1) * w // 6, (gy + 1) * h // 6)))
        g = np.asarray(im.convert("L"), np.float32)
        tiles = [(g[gy * h // 8:(gy + 1) * h // 8, gx * w // 8:(gx + 1) * w // 8].std(), gx, gy)
                 for gx in range(8) for gy in range(8)]
        for _, gx, gy in sorted(tiles)[:2]:
            out.append(im.crop((gx * w // 8, gy * h // 8, (gx + 1) * w // 8, (gy + 1) * h // 8)))
    seen, distinct = set(), []
    for t in out:
        t = t.resize(size, Image.Resampling.BILINEAR)
        if t.tobytes() not in seen:  # flat tiles (a black sky) can come out pixel-identical: keep one
            seen.add(t.tobytes())
            distinct.append(t)
    return distinct


def _digits() -> list[Image.Image]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return [Image.fromarray((d.images[k] * 255 / 16).astype(np.uint8)).convert("RGB") for k in range(400)], \
        [str(int(t)) for t in d.target[:400]]


def build(band: str, folder: Path) -> Path:
    """Write the band's set as root/<split>/<label>/<name>; the name starts with the distinct image's id."""
    if (folder / ".made").exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    rng = np.random.default_rng(11)
    if BANDS[band] is None:
        bases, labels = _digits()
        copies = [(k, ("jpeg", "upscale")[k // 3 % 2]) for k in range(0, len(bases), 3)]
    else:
        bases = _distinct_images(sample_photos(), BANDS[band])
        labels = [f"c{int(rng.integers(N_CLASSES))}" for _ in bases]
        copies = [(k, EDIT_KINDS[k % len(EDIT_KINDS)]) for k in range(len(bases))]
    ext = ".png" if max(bases[0].size) <= 64 else ".jpg"

    def save(im, label, name):
        split = "test" if rng.random() < 0.2 else "train"
        p = folder / split / label / f"{name}{ext}"
        p.parent.mkdir(parents=True, exist_ok=True)
        im.save(p, **({"quality": 95} if ext == ".jpg" else {}))

    for k, (im, label) in enumerate(zip(bases, labels)):
        save(im, label, f"d{k:04d}")
    for n, (k, kind) in enumerate(copies):
        im = bases[k]
        im = im.resize((16, 16), Image.Resampling.BILINEAR) if kind == "upscale" else edit_as(im, kind, rng)
        label = labels[k]
        if n % FLIP_LABEL_EVERY == FLIP_LABEL_EVERY - 1:
            others = sorted(set(labels) - {label})
            label = others[int(rng.integers(len(others)))]
        save(im, label, f"d{k:04d}_{kind}")
    (folder / ".made").touch()
    return folder


def scanned(band: str):
    """The band's set scanned by the real scan: (images table, descriptors)."""
    import inspect_core

    root = build(band, HERE / ".data" / f"realdata_{band.replace(' ', '_')}")
    ws = tempfile.mkdtemp(prefix="bench-ws-")
    try:
        res = inspect_core.scan(root, workspace=ws)
    finally:
        shutil.rmtree(ws, ignore_errors=True)
    return res.images.reset_index(drop=True), res.desc


def _connected_groups(n: int, a: np.ndarray, b: np.ndarray) -> pd.DataFrame:
    """The old grouping (connected components of the pairs), for the old rule's figures."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    _, comp = connected_components(coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n)), directed=False)
    in_pair = np.zeros(n, bool)
    in_pair[a], in_pair[b] = True, True
    node = np.nonzero(in_pair)[0]
    degree = np.bincount(np.r_[a, b], minlength=n)
    df = pd.DataFrame({"node": node, "group_id": comp[node], "degree": degree[node]})
    # the old groups had no representative: take the member with most pairs
    rep = df.sort_values(["degree", "node"], ascending=[False, True]).drop_duplicates("group_id")
    df["representative"] = df["group_id"].map(rep.set_index("group_id")["node"])
    return df


def evaluate(images: pd.DataFrame, desc: np.ndarray, rule: dict, chain_groups: bool = False) -> dict:
    """Precision and recall of one rule on one scanned set (see the module docstring for the truth)."""
    from inspect_core.checks.context import CheckContext

    name = images["image_id"].str.rsplit("/", n=1).str[1].str.split(".").str[0]
    ident = name.str.split("_").str[0].to_numpy()
    kind = name.str.split("_").str[1].fillna("").to_numpy()
    ctx = CheckContext(images=images, desc=desc, annotations=pd.DataFrame(), classes=sorted(images["label"].unique()),
                       has_image_labels=True, has_boxes=False, near_rule=rule)
    pairs = ctx.pairs
    a, b = pairs["a"].to_numpy(np.int64), pairs["b"].to_numpy(np.int64)
    true = ident[a] == ident[b]
    copy_kind = np.where(kind[a] != "", kind[a], kind[b])
    copies = kind != ""
    n_copies = int((copies & (kind != "flip")).sum())
    found = true & (copy_kind != "flip")
    res = {"n_images": int(len(images)), "n_distinct": int((~copies).sum()), "pairs_flagged": int(len(pairs)),
           "pairs_true": int(true.sum()), "pair_precision": float(true.mean()) if len(pairs) else 1.0,
           "pair_recall": float(found.sum() / max(n_copies, 1)),
           "recall_per_edit": {k: round(float((true & (copy_kind == k)).sum() / max((kind == k).sum(), 1)), 3)
                               for k in sorted(set(kind) - {""})},
           "false_pairs_per_million_compared": float((~true).sum() / (len(images) * (len(images) - 1) / 2) * 1e6)}
    # groups
    groups = _connected_groups(len(images), a, b) if chain_groups else ctx.groups
    linked = set(zip(a.tolist(), b.tolist())) | set(zip(b.tolist(), a.tolist()))
    n_groups = n_pure = n_within = 0
    for _, g in groups.groupby("group_id"):
        nodes, rep = g["node"].to_numpy(), int(g["representative"].iloc[0])
        n_groups += 1
        n_pure += len(set(ident[nodes])) == 1
        n_within += all(int(m) == rep or (int(m), rep) in linked for m in nodes)
    res.update({"groups": n_groups, "group_purity": n_pure / max(n_groups, 1),
                "groups_within_rule_of_representative": n_within / max(n_groups, 1),
                "largest_group_images": int(groups.groupby("group_id").size().max()) if n_groups else 0})
    # conflicting labels: the pairs the label check raises them from
    la, lb = pairs["label_a"].astype(str), pairs["label_b"].astype(str)
    conflict = pairs["same_picture"].to_numpy() & (la != lb).to_numpy()
    label_of = dict(zip(ident[~copies], images["label"].to_numpy()[~copies]))
    planted = copies & (kind != "flip") & (images["label"].to_numpy() != np.array([label_of.get(i) for i in ident]))
    planted_found = set(np.where(copies[a], a, b)[conflict & true].tolist())   # the copy's row of each true conflict
    res.update({"conflict_pairs": int(conflict.sum()),
                "conflict_precision": float(true[conflict].mean()) if conflict.any() else 1.0,
                "conflict_recall": len(planted_found & set(np.nonzero(planted)[0].tolist())) / max(int(planted.sum()), 1),
                "planted_label_flips": int(planted.sum())})
    sa, sb = pairs["split_a"].astype(str).to_numpy(), pairs["split_b"].astype(str).to_numpy()
    cross = sa != sb
    res.update({"leak_pairs": int(cross.sum()), "leak_precision": float(true[cross].mean()) if cross.any() else 1.0})
    res["_false"] = [(int(x), int(y), float(s), int(d)) for x, y, s, d, t in
                     zip(a, b, pairs["score"], pairs["phash_distance"], true) if not t]
    return res


def contact_sheet(samples, path: Path, cell_px: int = 112) -> None:
    """Flagged false pairs side by side (both images and the pair's cosine / pHash distance), one pair a row."""
    from PIL import ImageDraw

    sheet = Image.new("RGB", (cell_px * 2 + 260, cell_px * max(len(samples), 1)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (band, root, ida, idb, s, d) in enumerate(samples):
        for c, iid in enumerate((ida, idb)):
            im = Image.open(root / iid).convert("RGB")
            im.thumbnail((cell_px - 4, cell_px - 4), Image.Resampling.NEAREST if max(im.size) < 64 else
                         Image.Resampling.BILINEAR)
            if max(im.size) < cell_px // 2:
                im = im.resize((im.size[0] * (cell_px - 4) // max(im.size), im.size[1] * (cell_px - 4) // max(im.size)),
                               Image.Resampling.NEAREST)
            sheet.paste(im, (c * cell_px + 2, r * cell_px + 2))
        draw.text((2 * cell_px + 6, r * cell_px + 6), f"{band}\n{ida.rsplit('/', 1)[1]}\n{idb.rsplit('/', 1)[1]}\n"
                  f"cosine {s:.3f}\npHash distance {d}", fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def mirror_cost(n: int) -> None:
    """What the mirror search adds to the N-signature search of bench_neardup.py: ``run_million`` (the rule
    without the mirror search) timed between runs of ``neardup.mirror_pairs`` on N such signatures, so that both
    see about the same load; the ratio is the figure to carry to a quiet machine."""
    import time

    from bench_neardup import run_million, smooth_descriptors

    from inspect_core import neardup
    from inspect_core.checks import context

    desc = smooth_descriptors(n, np.random.default_rng(1))
    cut = context.MIRROR_RULE

    def mirror_s() -> float:
        t0 = time.perf_counter()
        neardup.mirror_pairs(desc, cut["cosine"], cut["phash_max"])
        return time.perf_counter() - t0

    before = [mirror_s(), mirror_s()]
    r = run_million(n, 1)                               # the default rule: no mirror search
    after = [mirror_s(), mirror_s()]
    m = float(np.median(before + after))
    print(json.dumps({"n": n, "pairs_without_mirror_s": r["median_s"], "mirror_search_s": before + after,
                      "mirror_median_s": m, "added_share": m / r["median_s"],
                      "planted_found": r["planted_found"]}), flush=True)


def main() -> None:
    from inspect_core.checks.context import near_rule

    ap = argparse.ArgumentParser()
    ap.add_argument("--sheet", action="store_true", help="draw flagged false pairs of the new rule")
    ap.add_argument("--near-threshold", type=float, default=None, help="evaluate the rule at this cut")
    ap.add_argument("--mirror", action="store_true", help="the new rule with the mirror search (MIRROR_RULE)")
    ap.add_argument("--mirror-cost", type=int, default=0,
                    help="time the N-signature search (bench_neardup.py million) without and with the mirror search")
    args = ap.parse_args()
    if args.mirror_cost:
        mirror_cost(args.mirror_cost)
        return
    from inspect_core.checks.context import MIRROR_RULE, NEAR_RULE

    new_rule = near_rule(args.near_threshold, base={**NEAR_RULE, "mirror": MIRROR_RULE} if args.mirror else None)
    rules = {"old": (OLD_RULE, True), "new": (new_rule, False)}
    out, samples = {}, []
    rng = np.random.default_rng(0)
    for band in BANDS:
        images, desc = scanned(band)
        root = HERE / ".data" / f"realdata_{band.replace(' ', '_')}"
        for name, (rule, chain) in rules.items():
            r = evaluate(images, desc, rule, chain)
            false = r.pop("_false")
            if name == "new" and false:
                # the false pairs the label check would use first (same picture), then a random few
                first = [f for f in false if f[2] >= rule["same_picture"]["cosine"]
                         and f[3] <= rule["same_picture"]["phash_max"]]
                rest = [false[k] for k in rng.choice(len(false), min(5, len(false)), replace=False)]
                for x, y, s, d in (first + rest)[:8]:
                    samples.append((band, root, images["image_id"][x], images["image_id"][y], s, d))
            out.setdefault(band, {})[name] = r
            print(f"{band:11s} {name:4s} pairs {r['pairs_flagged']:5d} precision {r['pair_precision']:.3f} "
                  f"recall {r['pair_recall']:.3f} | groups {r['groups']:4d} pure {r['group_purity']:.3f} "
                  f"within-rep {r['groups_within_rule_of_representative']:.3f} largest {r['largest_group_images']:4d} | "
                  f"conflicts {r['conflict_pairs']:4d} precision {r['conflict_precision']:.3f} "
                  f"recall {r['conflict_recall']:.3f} | leaks {r['leak_pairs']:4d} precision {r['leak_precision']:.3f}",
                  flush=True)
    res_dir = HERE / "results"
    res_dir.mkdir(exist_ok=True)
    (res_dir / "realdata.json").write_text(json.dumps({"near_rule": rules["new"][0], "old_rule": OLD_RULE,
                                                       "bands": out}, indent=2))
    if args.sheet:
        contact_sheet(samples, HERE / "out" / "realdata_false_pairs.png")


if __name__ == "__main__":
    main()
