"""Shared helpers of the model-side tests: the sample dataset with its shipped model, a solid-colour dataset with a
classifier whose answers are known, and small modules that misbehave on purpose. Imported by the test modules;
the ``sample_*`` functions are what their fixtures return (each computed once per test process)."""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import nn

from inspect_core.loaders import load_dataset
from inspect_core.model import pipeline
from inspect_core.model.models import LoadedModel, load_model
from inspect_core.model.preprocess import Preprocess, read_preprocess
from inspect_core.sample_model import make_model

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_data"
MODEL_DIR = SAMPLE / "model"
SHAPES = ["circle", "square", "triangle", "star", "hexagon"]     # the sample model's classes
COLOURS = ("red", "green", "blue")                                # ColourNet's classes


# -- the sample dataset and its shipped model ------------------------------------------------------
@functools.cache
def sample_dataset():
    return load_dataset(SAMPLE)


@functools.cache
def sample_spec():
    return read_preprocess(MODEL_DIR / "model.preprocess.json")


@functools.cache
def sample_reference():
    """The sample model's scores, and a 'good model' predictions frame: 0.96 on the given label."""
    dataset, spec = sample_dataset(), sample_spec()
    res = pipeline.score_dataset(load_model(MODEL_DIR / "model.pt2", spec), SAMPLE, dataset.images, workers=0)
    labelled = dataset.images[dataset.images["label"].isin(SHAPES)]
    probs = np.full((len(labelled), 5), 0.01)
    probs[np.arange(len(labelled)), [SHAPES.index(v) for v in labelled["label"]]] = 0.96
    good = pd.DataFrame(probs, columns=SHAPES)
    good.insert(0, "image_id", labelled["image_id"].to_numpy())
    return res, good


class FailsOnBright(nn.Module):
    """The sample model, raising on any batch with a bright input (like a model with a shape or range check)."""
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        if bool((x.mean(dim=(1, 2, 3)) > 0.3).any()):
            raise RuntimeError("boom: unsupported input")
        return self.m(x)


def _inner():
    m = make_model()
    m.load_state_dict(torch.load(MODEL_DIR / "model_state.pt", weights_only=True))
    return m.eval()


def _save(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


# -- solid colours and a classifier that knows them -------------------------------------------------
def _spec(**kw) -> Preprocess:
    base = {"input_size": [16, 12], "class_names": list(COLOURS), "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
    return Preprocess.from_dict({**base, **kw})


class ColourNet(nn.Module):
    """Logits = mean of each channel * 10: a 'classifier' whose answer is known for solid colours."""

    def __init__(self):
        super().__init__()
        self.body = nn.Identity()
        self.head = nn.Linear(3, 3)
        with torch.no_grad():
            self.head.weight.copy_(torch.eye(3) * 10)
            self.head.bias.zero_()

    def forward(self, x):
        return self.head(self.body(x).mean(dim=(2, 3)))


def _colour_dataset(root: Path, n_per_class: int = 4, flipped: int = 1):
    """Solid-colour images under root/<class>/; the first ``flipped`` of each class are filed under the next class."""
    rows = []
    colours = {"red": (230, 20, 20), "green": (20, 230, 20), "blue": (20, 20, 230)}
    names = list(colours)
    for ci, cls in enumerate(names):
        for i in range(n_per_class):
            filed = names[(ci + 1) % 3] if i < flipped else cls
            (root / filed).mkdir(parents=True, exist_ok=True)
            image_id = f"{filed}/{cls}_{i}.png"
            Image.new("RGB", (40, 30), colours[cls]).save(root / image_id)
            rows.append({"image_id": image_id, "label": filed, "split": "train", "true": cls})
    (root / "red" / "broken.png").write_bytes(b"not an image")
    rows.append({"image_id": "red/broken.png", "label": "red", "split": "train", "true": "red"})
    return pd.DataFrame(rows)


def _loaded(module, spec) -> LoadedModel:
    module.eval()
    return LoadedModel(module=module, kind="state_dict", path=Path("colour.pt"), file_sha256="abc",
                       device=torch.device("cpu"),
                       spec=spec, factory="x:y")


# -- label noise and models that break batch independence ------------------------------------------
def _synthetic(n=2000, n_classes=4, noise=0.1, seed=0):
    rng = np.random.default_rng(seed)
    true = rng.integers(0, n_classes, n)
    logits = rng.normal(0, 1.0, (n, n_classes))
    logits[np.arange(n), true] += 2.5
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    given = true.copy()
    flip = rng.random(n) < noise
    given[flip] = (true[flip] + rng.integers(1, n_classes, flip.sum())) % n_classes
    return probs, given, true, flip


class BNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.bn(self.conv(x)).mean(dim=(2, 3)))


class MixNet(nn.Module):
    """Mixes examples across the batch (subtracts the batch mean): a bug the check must catch."""

    def forward(self, x):
        m = x.mean(dim=(2, 3))
        return (m - m.mean(0, keepdim=True))[:, :3]


def planted_box_errors_found(out: Path) -> tuple[set, set]:
    """(planted, found): the box errors ``sample_data/PLANTED.csv`` lists, as (image_id, check), and those among the top
    2 x planted rows of ``out / "detection_errors.csv"`` (what ``score`` writes). Checks that every box-error kind is
    planted, so a short list cannot pass by itself."""
    from inspect_core.detection.errors import CHECKS
    planted = pd.read_csv(SAMPLE / "PLANTED.csv", keep_default_na=False)
    planted = planted.loc[planted["check"].isin(CHECKS)]
    want = set(zip(planted["image_id"], planted["check"]))
    assert len(want) >= 8 and {c for _, c in want} == set(CHECKS)
    top = pd.read_csv(Path(out) / "detection_errors.csv").head(2 * len(want))
    return want, want & set(zip(top["image_id"], top["check"]))
