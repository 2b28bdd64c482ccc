"""Train the small sample CNN on sample_data's train split and save it in every supported form.

    .venv/bin/python sample_data/train_sample_model.py            # writes sample_data/model/
    .venv/bin/python sample_data/train_sample_model.py --out DIR

Seeded and CPU-only (about 30-80 s on 2 idle cores). Training: AdamW + one-cycle LR, dihedral flips,
one random crop around each image's largest box (labelled with the IMAGE label, so label noise stays), and
after a warm-up the hardest 6% of each batch left out (small-loss selection), so planted label errors stay
high-loss instead of being memorised. Writes:
  model.ts.pt           TorchScript (torch.jit.save)
  model.pt2             torch.export program (dynamic batch size)
  model_state.pt        state dict; factory inspect_core.sample_model:make_model
  model.preprocess.json the preprocessing (input size, resize, mean/std, channel order, class names)
  training.json         what was trained (epochs, losses, accuracy per split, elapsed)
The model sees the images exactly as inspect_core.model.preprocess.image_to_array makes them, the same
function the app uses for scoring and for "what the model sees".
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from inspect_core.loaders import load_dataset  # noqa: E402
from inspect_core.paths import resolve_inside  # noqa: E402
from inspect_core.model.preprocess import Preprocess, image_to_array, load_image_file  # noqa: E402
from inspect_core.sample_model import make_model  # noqa: E402

SEED = 0
EPOCHS = 30
BATCH = 32
LR = 1e-2
WEIGHT_DECAY = 5e-4
CROPS = 1
WARMUP_EPOCHS = 8
DROP = 0.06


def make_spec(class_names: list[str]) -> Preprocess:
    return Preprocess(input_size=(96, 72), class_names=tuple(class_names), resize="stretch",
                      mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), channel_order="RGB", interpolation="bilinear")


def load_split(root: Path, ds, spec: Preprocess, split: str, crops_per_image: int = 0, seed: int = SEED):
    """(inputs, labels, image_ids) for one split; with ``crops_per_image`` > 0 also that many random 4:3 crops
    around each image's largest annotated box, labelled with the IMAGE label (so label noise stays)."""
    images = ds.images
    index = {c: i for i, c in enumerate(spec.class_names)}
    rng = np.random.default_rng(seed)
    boxes = ds.annotations.dropna(subset=["box_w_px", "box_h_px"])
    area = boxes["box_w_px"] * boxes["box_h_px"]
    largest = boxes.loc[area.groupby(boxes["image_id"]).idxmax()] if len(boxes) else boxes
    largest = largest.set_index("image_id")
    xs, ys, ids = [], [], []
    rows = images[(images["split"] == split) & images["label"].isin(list(spec.class_names))]
    for image_id, label in zip(rows["image_id"], rows["label"]):
        path = resolve_inside(root, image_id)
        if path is None:
            continue
        try:
            image = load_image_file(path)
            xs.append(image_to_array(image, spec))
        except Exception:  # noqa: BLE001 - planted broken files are skipped
            continue
        ys.append(index[label])
        ids.append(image_id)
        if crops_per_image and image_id in largest.index:
            bx, by, bw, bh = (float(largest.loc[image_id, c]) for c in ("box_x_px", "box_y_px", "box_w_px", "box_h_px"))
            width_px, height_px = image.size
            for _ in range(crops_per_image):
                crop_w = min(width_px, max(bw, bh * 4 / 3) * rng.uniform(1.3, 2.6))
                crop_h = min(height_px, crop_w * 3 / 4)
                left = rng.uniform(*sorted((np.clip(bx + bw - crop_w, 0, width_px - crop_w),
                                            np.clip(bx, 0, width_px - crop_w))))
                top = rng.uniform(*sorted((np.clip(by + bh - crop_h, 0, height_px - crop_h),
                                           np.clip(by, 0, height_px - crop_h))))
                crop = image.crop((round(left), round(top), round(left + crop_w), round(top + crop_h)))
                xs.append(image_to_array(crop, spec))
                ys.append(index[label])
                ids.append(image_id)
    return torch.from_numpy(np.stack(xs)), torch.tensor(ys), ids


def augment(xb: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Dihedral augmentation (the shapes' classes do not change under flips and quarter turns)."""
    flip_w = torch.rand(len(xb), generator=gen) < 0.5
    xb = torch.where(flip_w[:, None, None, None], xb.flip(3), xb)
    flip_h = torch.rand(len(xb), generator=gen) < 0.5
    xb = torch.where(flip_h[:, None, None, None], xb.flip(2), xb)
    if torch.rand(1, generator=gen).item() < 0.5:   # a quarter turn for the whole batch (non-square input)
        xb = xb.transpose(2, 3).flip(3)
    return xb


def evaluate(model, x, y) -> tuple[float, float]:
    model.eval()
    with torch.inference_mode():
        logits = model(x)
        loss = nn.functional.cross_entropy(logits, y).item()
        acc = (logits.argmax(1) == y).float().mean().item()
    return loss, acc


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(REPO / "sample_data"))
    parser.add_argument("--out", default=str(REPO / "sample_data" / "model"))
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    root = Path(args.root)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ds = load_dataset(root)
    spec = make_spec(list(ds.classes))
    x_full, y_full, _ = load_split(root, ds, spec, "train")
    x_train, y_train, _ = load_split(root, ds, spec, "train", crops_per_image=CROPS)
    evals = {s: load_split(root, ds, spec, s) for s in ("val", "test")}
    model = make_model(num_classes=len(spec.class_names))
    # init the head bias to the log class priors (the recipe's "init well")
    counts = torch.bincount(y_train, minlength=len(spec.class_names)).float() + 1.0
    with torch.no_grad():
        model.head.bias.copy_(torch.log(counts / counts.sum()))
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    steps = args.epochs * ((len(x_train) + BATCH - 1) // BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps)
    gen = torch.Generator().manual_seed(SEED)
    history = []
    init_loss, _ = evaluate(model, x_full, y_full)
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=gen)
        total = 0.0
        for start in range(0, len(order), BATCH):
            idx = order[start:start + BATCH]
            xb = x_train[idx]
            xb = augment(xb, gen)
            per_example = nn.functional.cross_entropy(model(xb), y_train[idx], reduction="none")
            if epoch >= WARMUP_EPOCHS:
                # small-loss selection (as in co-teaching): after a warm-up, the hardest DROP share of each
                # batch is left out of the update, so the model does not memorise label noise it cannot fit
                keep = max(1, int(round(len(per_example) * (1 - DROP))))
                per_example = per_example.sort().values[:keep]
            loss = per_example.mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        history.append(round(total / len(x_train), 4))
    model.eval()
    metrics = {"train": evaluate(model, x_full, y_full)}
    for split, (x, y, _) in evals.items():
        metrics[split] = evaluate(model, x, y)
    # save every form
    spec.save(out / "model.preprocess.json")
    torch.save(model.state_dict(), out / "model_state.pt")
    torch.jit.save(torch.jit.script(model), str(out / "model.ts.pt"))
    example = torch.zeros((2, *spec.input_shape))
    program = torch.export.export(model, (example,), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},))
    torch.export.save(program, str(out / "model.pt2"))
    elapsed = time.perf_counter() - t0
    info = {"seed": SEED, "epochs": args.epochs, "warmup_epochs": WARMUP_EPOCHS, "drop_hardest_share": DROP,
            "crops_per_image": CROPS, "batch_size": BATCH, "lr": LR, "weight_decay": WEIGHT_DECAY,
            "n_train": len(x_train), "init_loss": round(init_loss, 4), "train_loss_per_epoch": history,
            "eval_loss_acc": {k: [round(v[0], 4), round(v[1], 4)] for k, v in metrics.items()},
            "factory": "inspect_core.sample_model:make_model", "elapsed_s": round(elapsed, 1),
            "torch": torch.__version__}
    (out / "training.json").write_text(json.dumps(info, indent=1) + "\n")
    sys.stdout.write(json.dumps(info, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
