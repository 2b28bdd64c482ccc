"""Model embeddings as near-duplicate evidence on real photos: pixel rule alone, model alone, merged (issues 9, 16).

    .venv/bin/python bench/bench_embed_dups.py       # every band, both models; raw: bench/results/embed_dups.json
    .venv/bin/python bench/bench_embed_dups.py --sheet         # and draws pairs only the model finds: bench/out/
    .venv/bin/python bench/bench_embed_dups.py --speed 100000  # the model evidence on N x 512 synthetic embeddings

The sets are bench_realdata.py's (real photos cut into 1,130 look-alike distinct images at 32, 64, 192x144 and
800x600 px, each with one edited copy: JPEG, resize, crop, colour, all four, mirror; and 8x8 digits). Truth: a pair
is true when both images come from one distinct image. Recall counts the five non-mirror edits (as
bench_realdata.py does); mirrors are reported apart (the pixel rule finds none of them).

The models (no download is possible, so no ImageNet network; honest about what each is):
- ``sample``: the CNN that ships in sample_data/model (trained on the synthetic shapes of sample_data, 5 classes),
  scored through the app's own pipeline (``score_dataset``: its preprocessing, its embedding tap = the input of
  its last linear layer). A model trained on another domain, as a user's model often is for part of its data.
- ``random``: a randomly initialised CNN (seeded; three conv layers, global average pool, 128-d): the baseline
  that says how much of the evidence is the architecture rather than training.
Embeddings are cached in bench/.data/embed_<band>_<model>.npy.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from bench_realdata import BANDS, build, scanned
from PIL import Image

HERE = Path(__file__).resolve().parent

MODELS = ("sample", "random")


def _band_root(band: str) -> Path:
    return build(band, HERE / ".data" / f"realdata_{band.replace(' ', '_')}")


def random_cnn_embeddings(root: Path, image_ids, side_px: int = 64, seed: int = 0) -> np.ndarray:
    import torch

    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(64, 128, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    net.eval()
    out = []
    with torch.no_grad():
        for s in range(0, len(image_ids), 256):
            batch = [np.asarray(Image.open(root / iid).convert("RGB").resize((side_px, side_px),
                                                                             Image.Resampling.BILINEAR), np.float32)
                     for iid in image_ids[s:s + 256]]
            x = (torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2) / 255.0 - 0.5) / 0.25
            out.append(net(x).numpy())
    return np.concatenate(out).astype(np.float32)


def sample_model_embeddings(root: Path, images: pd.DataFrame) -> np.ndarray:
    from inspect_core.model.models import load_model
    from inspect_core.model.preprocess import read_preprocess
    from inspect_core.model.pipeline import score_dataset

    model_dir = HERE.parent / "sample_data" / "model"
    model = load_model(model_dir / "model.pt2", read_preprocess(model_dir / "model.preprocess.json"))
    res = score_dataset(model, root, images[["image_id", "label", "split"]], workers=0, use_cache=False)
    assert res.embeddings is not None, "the sample model gave no embeddings"
    order = pd.Series(np.arange(len(res.table)), index=res.table["image_id"].astype(str))
    return res.embeddings[order.loc[images["image_id"].astype(str)].to_numpy()]


def embeddings_for(band: str, model: str, images: pd.DataFrame) -> np.ndarray:
    path = HERE / ".data" / f"embed_{band.replace(' ', '_')}_{model}.npy"
    ids_path = path.with_suffix(".ids.json")
    ids = images["image_id"].astype(str).tolist()
    if path.is_file() and ids_path.is_file() and json.loads(ids_path.read_text()) == ids:
        return np.load(path)
    root = _band_root(band)
    emb = sample_model_embeddings(root, images) if model == "sample" else random_cnn_embeddings(root, ids)
    np.save(path, emb)
    ids_path.write_text(json.dumps(ids))
    return emb


class Truth:
    def __init__(self, images: pd.DataFrame):
        name = images["image_id"].str.rsplit("/", n=1).str[1].str.split(".").str[0]
        self.ident = name.str.split("_").str[0].to_numpy()
        self.kind = name.str.split("_").str[1].fillna("").to_numpy()
        self.n_copies = int(((self.kind != "") & (self.kind != "flip")).sum())
        self.n_flips = int((self.kind == "flip").sum())

    def score(self, a: np.ndarray, b: np.ndarray) -> dict:
        true = self.ident[a] == self.ident[b]
        copy_kind = np.where(self.kind[a] != "", self.kind[a], self.kind[b])
        found = true & (copy_kind != "flip") & (copy_kind != "")
        return {"pairs": len(a), "true": int(true.sum()),
                "precision": float(true.mean()) if len(a) else 1.0,
                "recall": float(found.sum() / max(self.n_copies, 1)),
                "mirror_recall": float((true & (copy_kind == "flip")).sum() / max(self.n_flips, 1)),
                "_true": true, "_found_keys": set((np.minimum(a, b) * 10**7 + np.maximum(a, b))[found].tolist())}


def evaluate_band(band: str, images: pd.DataFrame, desc: np.ndarray, emb: np.ndarray, thresholds=None) -> dict:
    from types import SimpleNamespace

    from inspect_core.checks.context import CheckContext, near_rule
    from inspect_core.model import embed_dups

    truth = Truth(images)
    rule = near_rule()
    ctx = CheckContext(images=images, desc=desc, annotations=pd.DataFrame(), classes=sorted(images["label"].unique()),
                       has_image_labels=True, has_boxes=False, near_rule=rule)
    pix = ctx.pairs
    scan = SimpleNamespace(images=images, desc=desc, pairs=pix.drop(columns=["a", "b"]),
                           summary={"near_rule": rule}, findings=pd.DataFrame(columns=["check"]), fingerprint=band)
    t0 = time.perf_counter()
    model_pairs = embed_dups.model_duplicate_pairs(scan, images["image_id"].tolist(), emb, thresholds)
    model_s = time.perf_counter() - t0
    merged = embed_dups.merged_duplicate_pairs(scan, model_pairs)
    out = {}
    for name, p in (("pixels", pix), ("model", model_pairs), ("merged", merged)):
        r = truth.score(p["a"].to_numpy(np.int64), p["b"].to_numpy(np.int64))
        if name != "pixels":
            # leakage and conflicting labels as the merged findings would raise them
            sa, sb = p["split_a"].astype(str).to_numpy(), p["split_b"].astype(str).to_numpy()
            cross = sa != sb
            r["leak_pairs"] = int(cross.sum())
            r["leak_precision"] = float(r["_true"][cross].mean()) if cross.any() else 1.0
        out[name] = r
    only = model_pairs[~np.isin(model_pairs["a"].to_numpy() * 10**7 + model_pairs["b"].to_numpy(),
                                (pix["a"].to_numpy() * 10**7 + pix["b"].to_numpy()))]
    only_true = truth.ident[only["a"].to_numpy()] == truth.ident[only["b"].to_numpy()]
    cal = model_pairs.attrs["calibration"]
    res = {k: {kk: v for kk, v in r.items() if not kk.startswith("_")} for k, r in out.items()}
    res["recall_gained"] = res["merged"]["recall"] - res["pixels"]["recall"]
    res["model_only_pairs"] = len(only)
    res["model_only_true"] = int(only_true.sum())
    res["calibration"] = {"typical": cal.typical, "distance_cap": cal.distance_cap}
    res["model_s"] = round(model_s, 3)
    res["_only"] = only.assign(true=only_true)
    return res


def sheet(rows, path: Path, cell_px: int = 112) -> None:
    from PIL import ImageDraw

    img = Image.new("RGB", (cell_px * 2 + 300, cell_px * max(len(rows), 1)), "white")
    draw = ImageDraw.Draw(img)
    for r, (band, model, ida, idb, dist, pcos, true) in enumerate(rows):
        root = _band_root(band)
        for c, iid in enumerate((ida, idb)):
            im = Image.open(root / iid).convert("RGB")
            im = im.resize((cell_px - 4, cell_px - 4), Image.Resampling.NEAREST if max(im.size) < 64
                           else Image.Resampling.BILINEAR)
            img.paste(im, (c * cell_px + 2, r * cell_px + 2))
        draw.text((2 * cell_px + 6, r * cell_px + 6),
                  f"{band} / {model}\n{ida.rsplit('/', 1)[1]}\n{idb.rsplit('/', 1)[1]}\nmodel distance {dist:.4f}\n"
                  f"tiny-image cosine {pcos:.3f}\n{'TRUE' if true else 'false'}", fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def speed(n: int, dims: int = 512, runs: int = 3) -> None:
    """Time the model evidence on bench_knn's synthetic embeddings (clusters shaped like a network's, 0.1% planted
    copies), images without pixel pairs: the kNN (inverted file above knn.EXACT_MAX_ROWS), the calibrated cut and
    the findings made from the pairs."""
    from types import SimpleNamespace

    from bench_knn import synthetic

    from inspect_core.model import embed_dups

    emb, planted, _ = synthetic(n, dims)
    ids = [f"img{k:07d}.jpg" for k in range(n)]
    rng = np.random.default_rng(0)
    images = pd.DataFrame({"image_id": ids, "split": np.where(rng.random(n) < 0.2, "test", "train"),
                           "label": rng.integers(0, 10, n).astype(str),
                           "phash": rng.integers(-2**62, 2**62, n, dtype=np.int64)})
    scan = SimpleNamespace(images=images, desc=None, pairs=pd.DataFrame(), summary={},
                           findings=pd.DataFrame(columns=["check"]), fingerprint="speed")
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        mp = embed_dups.model_duplicate_pairs(scan, ids, emb)
        t1 = time.perf_counter()
        f = embed_dups.merged_duplicate_findings(scan, mp)
        times.append((t1 - t0, time.perf_counter() - t1))
    med = np.median(np.array(times), axis=0)
    found = {frozenset((int(a), int(b))) for a, b in zip(mp["a"], mp["b"])}
    print(f"{n:,} x {dims}: model pairs {med[0]:.2f} s, merged findings {med[1]:.2f} s (median of {runs}); "
          f"{len(mp):,} pairs, planted copies found {len(found & planted)}/{len(planted)}, {len(f):,} findings",
          flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sheet", action="store_true", help="draw pairs only the model finds (bench/out/)")
    ap.add_argument("--speed", type=int, default=0, help="time the model evidence on N x 512 synthetic embeddings")
    ap.add_argument("--runs", type=int, default=3, help="--speed: runs (the median is printed)")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--set", action="append", default=[], help="a threshold, e.g. --set ratio_max=0.2")
    args = ap.parse_args()
    if args.speed:
        speed(args.speed, runs=args.runs)
        return
    thresholds = {k: float(v) for k, v in (s.split("=", 1) for s in args.set)} or None
    results, samples = {}, []
    rng = np.random.default_rng(0)
    for band in BANDS:
        images, desc = scanned(band)
        for model in args.models.split(","):
            emb = embeddings_for(band, model, images)
            r = evaluate_band(band, images, desc, emb, thresholds)
            only = r.pop("_only")
            if len(only):
                pick = np.r_[np.flatnonzero(~only["true"].to_numpy())[:3],
                             rng.permutation(np.flatnonzero(only["true"].to_numpy()))[:2]]
                for k in pick:
                    o = only.iloc[int(k)]
                    samples.append((band, model, o["image_id_a"], o["image_id_b"], float(o["model_distance"]),
                                    float(o["pixel_cosine"]), bool(o["true"])))
            results.setdefault(band, {})[model] = r
            p, m, g = r["pixels"], r["model"], r["merged"]
            print(f"{band:11s} {model:6s} pixels P {p['precision']:.3f} R {p['recall']:.3f} | model P "
                  f"{m['precision']:.3f} R {m['recall']:.3f} mirror {m['mirror_recall']:.3f} | merged P "
                  f"{g['precision']:.3f} R {g['recall']:.3f} mirror {g['mirror_recall']:.3f} | gained "
                  f"{r['recall_gained']:+.3f}, model-only pairs {r['model_only_pairs']} "
                  f"({r['model_only_true']} true) | leaks P {g['leak_precision']:.3f} | "
                  f"cap {r['calibration']['distance_cap']:.4f} | {r['model_s']:.2f} s", flush=True)
    (HERE / "results").mkdir(exist_ok=True)
    from inspect_core.model.embed_dups import embed_rule
    (HERE / "results" / "embed_dups.json").write_text(json.dumps({"rule": embed_rule(thresholds), "bands": results},
                                                                 indent=2, default=float))
    if args.sheet:
        sheet(samples[:24], HERE / "out" / "embed_dups_model_only.png")


if __name__ == "__main__":
    main()
