"""Score every image of a dataset with a model (or read a predictions file) into one table.

Per image: cross-entropy loss of the given label, probabilities, predicted class, confidence, margin,
self-confidence (probability of the given label), entropy (entropy_nats), and the penultimate embedding when one
can be had. One unreadable image gives a row with ``error`` set, never a crash. Results are cached in
the workspace keyed by (model file hash, preprocessing, image files) so reopening is instant.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
import zipfile
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from . import gpu_decode
from ..paths import resolve_inside
from .preprocess import Preprocess, image_to_pixels, load_image_file, normalize_batch

log = logging.getLogger(__name__)

SCORES_DIR = "scores"
CACHE_VERSION = 4   # 4: TorchScript models without an embed method give embeddings; 3: centre crop from its box
PROB_PREFIX = "prob_"


class ScoringCancelled(RuntimeError):
    """Raised when the cancel flag/callback fires during scoring."""


class PredictionsError(ValueError):
    """A predictions file that cannot be used; one-line message."""


# --------------------------------------------------------------------------------------------
# Runtime settings: a pure function so every device branch can be tested without that device
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RuntimeSettings:
    device_type: str
    num_workers: int
    pin_memory: bool
    non_blocking: bool
    use_amp: bool
    amp_dtype: str | None        # "float16" / "bfloat16" / None
    batch_size: int
    decoder: str = "auto"        # JPEG decoding: "auto" | "pillow" | "gpu" (gpu_decode.plan_decoder)

    def loader_kwargs(self) -> dict:
        kw = {"num_workers": self.num_workers, "pin_memory": self.pin_memory}
        if self.num_workers > 0:
            kw["prefetch_factor"] = 4
            kw["persistent_workers"] = False
        return kw


def _usable_cpus() -> int:
    """Cores this process may run on (a container's CPU set, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def runtime_settings(device_type: str, *, n_cpus: int | None = None, workers: int | None = None,
                     amp: bool | None = None, batch_size: int | None = None,
                     max_batch: int | None = None, decoder: str = "auto") -> RuntimeSettings:
    """Loader/precision settings for a device type ("cuda", "mps", "cpu").

    CUDA: pinned memory + non-blocking copies, float16 autocast, batch 128, and a decode worker on every
    core but one (JPEG decoding on the CPU is what limits a GPU: bench/bench_scoring.py).
    MPS: workers, no pinning, no autocast, batch 64. CPU: float32, batch 32, decode workers only when
    there are cores to spare beyond torch's own threads (more than 4 cores). ``decoder``: "auto" decodes JPEGs on
    the GPU (nvJPEG) when it can, "pillow" never, "gpu" asks for it (gpu_decode.plan_decoder).
    """
    n_cpus = n_cpus if n_cpus is not None else _usable_cpus()
    if device_type == "cuda":
        default_workers, pin, non_blocking, default_amp, dtype, default_bs = min(32, max(1, n_cpus - 1)), True, True, True, "float16", 128
    elif device_type == "mps":
        default_workers, pin, non_blocking, default_amp, dtype, default_bs = min(4, max(0, n_cpus - 1)), False, False, False, None, 64
    else:
        # torch already uses every core for the forward pass; a decode worker only pays off with cores to
        # spare (measured on 2 cores: 0 workers 92% of the bare forward, 1 worker 84%; bench/bench_scoring.py)
        default_workers = min(4, n_cpus // 4) if n_cpus > 4 else 0
        pin, non_blocking, default_amp, dtype, default_bs = False, False, False, None, 32
    use_amp = default_amp if amp is None else (bool(amp) and device_type == "cuda")
    bs = int(batch_size or default_bs)
    if max_batch:
        bs = min(bs, int(max_batch))
    return RuntimeSettings(device_type=device_type, num_workers=default_workers if workers is None else max(0, int(workers)),
                           pin_memory=pin, non_blocking=non_blocking, use_amp=use_amp,
                           amp_dtype=dtype if use_amp else None, batch_size=max(1, bs),
                           decoder=str(decoder or "auto").lower())


def autocast_context(settings: RuntimeSettings):
    if not settings.use_amp:
        return nullcontext()
    import torch
    return torch.autocast(device_type=settings.device_type, dtype=getattr(torch, settings.amp_dtype))


# --------------------------------------------------------------------------------------------
# Result
# --------------------------------------------------------------------------------------------

@dataclass
class ScoreResult:
    table: pd.DataFrame                 # one row per image (see build_table)
    probs: np.ndarray                   # (n_images, n_classes) float32, NaN rows for errors
    class_names: list[str]
    embeddings: np.ndarray | None = None   # (n_images, dim) float32, NaN rows for errors
    logits: np.ndarray | None = None
    source: dict = field(default_factory=dict)
    from_cache: bool = False
    elapsed_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    def prob_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.probs, columns=[PROB_PREFIX + c for c in self.class_names])

    def to_frame(self) -> pd.DataFrame:
        """The table plus one ``prob_<class>`` column per class (what scores.parquet holds)."""
        return pd.concat([self.table.reset_index(drop=True), self.prob_frame()], axis=1)


def _softmax(logits: np.ndarray) -> np.ndarray:
    """Row softmax; rows with any NaN stay NaN."""
    logits = np.asarray(logits, dtype=np.float64)
    out = np.full(logits.shape, np.nan)
    ok = np.isfinite(logits).all(axis=1)
    if ok.any():
        z = logits[ok] - logits[ok].max(axis=1, keepdims=True)
        e = np.exp(z)
        out[ok] = e / e.sum(axis=1, keepdims=True)
    return out


# a model that has failed on this many images one at a time, and worked on none, fails on everything
GIVE_UP_AFTER_FAILURES = 256
OUTPUTS_ARE_PROBABILITIES = ("the model's outputs are already probabilities (every row in 0..1, summing to 1): used "
                             "as they are, not passed through another softmax")
NAN_OUTPUT = ("the model returned NaN or inf for this image: check the preprocessing's mean and std, and the model "
              "on this input")


def model_probabilities(logits: np.ndarray, errors: list) -> tuple[np.ndarray, list[str]]:
    """Probabilities from a model's outputs: a softmax, unless every finite row already is a probability
    distribution (a model exported with its final softmax). Rows with NaN/inf outputs get NAN_OUTPUT as their
    error (``errors`` is updated in place)."""
    logits = np.asarray(logits, dtype=np.float64)
    finite = np.isfinite(logits).all(axis=1)
    for i in np.flatnonzero(~finite):
        if not errors[i]:
            errors[i] = NAN_OUTPUT
    # with 2 classes a few logit rows can happen to lie on the simplex: ask for several rows there
    enough = finite.sum() >= (8 if logits.shape[1] == 2 else 1)
    if enough and logits.shape[1] >= 2 and looks_like_probabilities(logits[finite], tol=1e-3):
        probs = np.where(finite[:, None], np.clip(logits, 0.0, None), np.nan)
        return (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32), [OUTPUTS_ARE_PROBABILITIES]
    return _softmax(logits).astype(np.float32), []


def _as_text(values) -> pd.api.extensions.ExtensionArray:
    """A column as pandas strings: each value as ``str(value)``, missing values as <NA>. (A categorical column
    gives its categories' values: ``np.asarray`` alone would turn integer categories into floats.)"""
    objects = values.astype(object) if isinstance(values, pd.Series) else values
    return pd.array(np.asarray(objects, dtype=object), dtype="string")


def _id_texts(values) -> list[str]:
    """image_ids as ``str(value)`` each (a missing id: "nan" / "<NA>" / "None", as ``str`` gives), in C loops."""
    objects = values.astype(object) if isinstance(values, pd.Series) else values
    return np.asarray(objects, dtype=object).astype(str).tolist()


def build_table(images: pd.DataFrame, probs: np.ndarray, class_names: Sequence[str],
                errors: Sequence[str | None] | None = None) -> pd.DataFrame:
    """Per-image metrics from probabilities. ``images`` has image_id, label, split (in the row order of probs)."""
    n, n_classes = probs.shape
    class_names = list(class_names)
    labels = _as_text(images["label"]) if "label" in images else pd.array([None] * n, dtype="string")
    splits = _as_text(images["split"]) if "split" in images else pd.array([None] * n, dtype="string")
    index = {c: i for i, c in enumerate(class_names)}            # a repeated name: its last position
    found = pd.Index(list(index)).get_indexer(labels)             # vectorised: 1,000,000 labels in ~0.1 s
    label_idx = np.where(found >= 0, np.asarray(list(index.values()), dtype=np.int64)[np.clip(found, 0, None)], -1)
    ok = np.isfinite(probs).all(axis=1)
    safe = np.where(ok[:, None], probs, 1.0 / max(n_classes, 1))
    pred = safe.argmax(axis=1)
    top2 = -np.sort(-safe, axis=1)[:, :2] if n_classes >= 2 else np.concatenate([safe, np.zeros((n, 1))], axis=1)
    confidence = top2[:, 0]
    margin = top2[:, 0] - top2[:, 1]
    eps = 1e-12
    entropy = -(safe * np.log(np.clip(safe, eps, 1.0))).sum(axis=1)
    has_label = label_idx >= 0
    self_conf = np.where(has_label, safe[np.arange(n), np.clip(label_idx, 0, None)], np.nan)
    loss = np.where(has_label, -np.log(np.clip(self_conf, eps, 1.0)), np.nan)
    # margin of the given label against the best other class (negative = model prefers another class)
    masked = safe.copy()
    masked[np.arange(n), np.clip(label_idx, 0, None)] = -np.inf
    best_other = masked.max(axis=1) if n_classes >= 2 else np.zeros(n)
    label_margin = np.where(has_label, self_conf - best_other, np.nan)
    err = list(errors) if errors is not None else [None] * n
    table = pd.DataFrame({
        "image_id": images["image_id"].astype("string").to_numpy(),
        "label": labels,
        "split": splits,
        "pred_label": pd.array(np.asarray(class_names, dtype=object)[pred], dtype="string"),
        "pred_index": pred.astype(np.int64),
        "label_index": label_idx,
        "confidence": confidence.astype(np.float64),
        "margin": margin.astype(np.float64),
        "self_confidence": self_conf.astype(np.float64),
        "label_margin": label_margin.astype(np.float64),
        "loss": loss.astype(np.float64),
        "entropy_nats": entropy.astype(np.float64),
        "correct": pd.arrays.BooleanArray(pred == label_idx, label_idx < 0),
        "error": pd.array(err, dtype="string"),
    })
    bad = ~ok
    if bad.any():
        for col in ("confidence", "margin", "self_confidence", "label_margin", "loss", "entropy_nats"):
            table.loc[bad, col] = np.nan
        table.loc[bad, "pred_label"] = pd.NA
        table.loc[bad, "pred_index"] = -1
        table.loc[bad, "correct"] = pd.NA
        missing_err = bad & table["error"].isna().to_numpy()
        table.loc[missing_err, "error"] = "no score"
    return table


# --------------------------------------------------------------------------------------------
# Dataset for the loader
# --------------------------------------------------------------------------------------------

class ImageFiles:
    """torch-style dataset: (uint8 pixels (C, H, W), position, error) per image; errors never raise.

    The pixels are normalised on the model's device (``normalize_batch``): 4x fewer bytes through the
    loader's queue, the pinned buffer and the host-to-device copy than float32.

    ``raw_jpeg`` (GPU decoding): items are (payload, position, error, is_jpeg); a JPEG the GPU can decode arrives as
    its file bytes (``gpu_decode.read_payload``), anything else as the Pillow path's pixels."""

    def __init__(self, root: Path | str, image_ids: Sequence[str], spec: Preprocess, raw_jpeg: bool = False):
        self.root = Path(root)
        self.image_ids = list(image_ids)
        self.spec = spec
        self.raw_jpeg = raw_jpeg
        self.blank = np.zeros(spec.input_shape, dtype=np.uint8)

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, i: int):
        image_id = self.image_ids[i]
        path = resolve_inside(self.root, image_id)
        if path is None:
            return self._item(self.blank, i, "path outside the dataset root; not opened")
        try:
            if self.raw_jpeg:
                payload, is_jpeg = gpu_decode.read_payload(path, self.spec)
                return payload, i, "", is_jpeg
            arr = image_to_pixels(load_image_file(path), self.spec)
            return arr, i, ""
        except Exception as exc:  # noqa: BLE001 - one bad file never stops a run
            return self._item(self.blank, i, gpu_decode.error_text(exc))

    def _item(self, arr, i: int, error: str):
        return (arr, i, error, False) if self.raw_jpeg else (arr, i, error)


def _collate(items):
    import torch
    arrays, idx, errors = zip(*items)
    return torch.from_numpy(np.stack(arrays)), torch.as_tensor(idx, dtype=torch.long), list(errors)


def _collate_raw(items):
    """GPU decoding: every payload (JPEG bytes or pixels) in ONE flat uint8 tensor (one shared-memory block per batch
    through the loader, whatever the batch size) + each payload's shape; ``_split_raw`` undoes it."""
    import torch
    payloads, idx, errors, is_jpeg = zip(*items)
    flat = torch.from_numpy(np.concatenate([p.reshape(-1) for p in payloads]))
    shapes = [tuple(p.shape) for p in payloads]
    return flat, shapes, torch.as_tensor(idx, dtype=torch.long), list(errors), list(is_jpeg)


def _split_raw(flat, shapes):
    import torch
    parts = torch.split(flat, [int(np.prod(s)) for s in shapes])
    return [part.reshape(shape) for part, shape in zip(parts, shapes)]


def _is_cancelled(cancel) -> bool:
    if cancel is None:
        return False
    if hasattr(cancel, "is_set"):
        return bool(cancel.is_set())
    return bool(cancel())


# --------------------------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------------------------

def files_key(root: Path | str, image_ids: Sequence[str]) -> str:
    """Fingerprint of the image files: ids + sizes + mtimes (a changed file changes the key)."""
    digest = hashlib.sha256()
    for image_id in image_ids:
        path = resolve_inside(root, image_id)
        try:
            st = path.stat() if path is not None else None
            stamp = f"{st.st_size}:{st.st_mtime_ns}" if st else "outside"
        except OSError:
            stamp = "missing"
        digest.update(f"{image_id}\0{stamp}\n".encode())
    return digest.hexdigest()


def score_cache_key(model_key: str, spec: Preprocess, data_key: str, embeddings: bool,
                    decoder: str = gpu_decode.PILLOW) -> str:
    """Key of saved scores: model, preprocessing, image files, embeddings, and the JPEG decoder that made the pixels
    ("pillow" or "nvjpeg": their pixels differ by a rounding step)."""
    payload = json.dumps([CACHE_VERSION, model_key, spec.cache_key(), data_key, bool(embeddings), str(decoder)])
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def _cache_dir(workspace: Path | str, key: str) -> Path:
    return Path(workspace) / SCORES_DIR / key


def save_cache(workspace: Path | str, key: str, image_ids, logits, embeddings, errors, meta: dict) -> Path:
    folder = _cache_dir(workspace, key)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"logits": logits.astype(np.float32)}
    if embeddings is not None:
        arrays["embeddings"] = embeddings.astype(np.float32)
    tmp = folder / f"outputs.{os.getpid()}.{threading.get_ident()}.tmp.npz"    # one per writer
    np.savez(tmp, **arrays)
    os.replace(tmp, folder / "outputs.npz")
    (folder / "rows.json").write_text(json.dumps({"image_ids": list(image_ids), "errors": list(errors)}))
    (folder / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
    return folder


def load_cache(workspace: Path | str, key: str):
    folder = _cache_dir(workspace, key)
    """``(image_ids, logits, embeddings, errors, meta)`` from the cache, or None on a miss. A damaged
    cache (missing files or keys, wrong types, rows that do not match the arrays) is a miss, never a crash."""
    try:
        rows = json.loads((folder / "rows.json").read_text())
        meta = json.loads((folder / "meta.json").read_text())
        with np.load(folder / "outputs.npz", allow_pickle=False) as data:
            logits = data["logits"]
            embeddings = data["embeddings"] if "embeddings" in data.files else None
        image_ids, errors = list(rows["image_ids"]), list(rows["errors"])
        if not isinstance(meta, dict) or logits.ndim != 2 or len(image_ids) != len(logits) \
                or len(errors) != len(image_ids) or (embeddings is not None and len(embeddings) != len(logits)):
            return None
    except (OSError, ValueError, KeyError, TypeError, EOFError, AttributeError, IndexError, zipfile.BadZipFile):
        return None
    return image_ids, logits, embeddings, errors, meta


# The embedding checks' findings, kept beside the scores they come from: the kNN takes about a minute at
# 1,000,000 images, so it runs once per scored result, not once per app session. Versioned with the search.
FINDINGS_FILES = ("embedding_duplicates.v1.parquet", "embedding_outliers.v1.parquet")


def embedding_findings_cached(result: "ScoreResult", workspace: Path | str | None):
    """``sanity.embedding_findings`` of a scored result ``(near-duplicate pairs, outliers)``, None without
    embeddings. Read from the result's scores cache folder in ``workspace`` when saved there before; else
    computed and saved there (when that folder exists). A damaged file is computed again."""
    if result.embeddings is None:
        return None
    from .sanity import embedding_findings
    key = (result.source or {}).get("cache_key")
    folder = _cache_dir(workspace, key) if key and workspace is not None else None
    if folder is not None and all((folder / name).is_file() for name in FINDINGS_FILES):
        try:
            return tuple(pd.read_parquet(folder / name) for name in FINDINGS_FILES)
        except Exception:  # noqa: BLE001 - a damaged file (pyarrow raises several types): computed again
            pass
    found = embedding_findings(result.table["image_id"], result.embeddings)
    if folder is not None and folder.is_dir():
        try:
            for name, frame in zip(FINDINGS_FILES, found):
                tmp = folder / f"{name}.{os.getpid()}.{threading.get_ident()}.tmp"
                frame.to_parquet(tmp, index=False)
                os.replace(tmp, folder / name)
        except OSError:                 # a read-only workspace: shown, just not kept
            pass
    return found


# --------------------------------------------------------------------------------------------
# Model scoring
# --------------------------------------------------------------------------------------------

def graph_embedding_slot(module) -> dict | None:
    """For a torch.export / FX graph module: make the input of its last linear op observable.

    Inserts (once) a side-effect-free call after that input in the graph which stores the tensor in the
    returned dict under "value". None when the module is not an FX graph or has no linear op.
    """
    import torch
    graph = getattr(module, "graph", None)
    if graph is None or not hasattr(module, "recompile"):
        return None
    slot = getattr(module, "_di_embedding_slot", None)
    if slot is not None:
        return slot
    ops = {torch.ops.aten.linear.default: 0, torch.ops.aten.addmm.default: 1}
    last = None
    for node in graph.nodes:
        if node.op == "call_function" and node.target in ops:
            last = node
    if last is None:
        return None
    source = last.args[ops[last.target]]
    slot = {"value": None}

    def _store_embedding(x):
        slot["value"] = x.detach()
        return x

    with graph.inserting_after(source):
        graph.call_function(_store_embedding, (source,))
    module.recompile()
    module._di_embedding_slot = slot
    return slot


class _EmbeddingTap:
    """Captures the penultimate embedding during forward: the input of the last nn.Linear (eager modules,
    by a forward pre-hook), of the last linear op (torch.export programs), an ``embed`` method (TorchScript),
    or else the input of the last linear op of the scripted graph (``models.script_embedding_function``: the
    forward runs through it, once). ``why_none`` says why a module yields no embedding."""

    def __init__(self, module):
        from .models import embedding_layer, script_embedding_function
        self.value = None
        self.handle = None
        self.slot = None
        self.method = None
        self.forward_with_embedding = None
        self.why_none = ""
        layer = embedding_layer(module)
        if layer is not None:
            self.handle = layer.register_forward_pre_hook(self._hook)
            return
        try:
            self.slot = graph_embedding_slot(module)
        except Exception:  # noqa: BLE001 - embeddings are optional; never fail scoring for them
            self.slot = None
        if self.slot is None:
            self.method = getattr(module, "embed", None)
        if self.slot is None and self.method is None:
            self.forward_with_embedding, self.why_none = script_embedding_function(module)

    def _hook(self, _module, inputs):
        if inputs and hasattr(inputs[0], "detach"):
            self.value = inputs[0].detach()

    def reset(self):
        self.value = None
        if self.slot is not None:
            self.slot["value"] = None

    def captured(self):
        return self.slot["value"] if self.slot is not None else self.value

    def close(self):
        if self.handle is not None:
            self.handle.remove()


def _launch_batch(model, x, settings: RuntimeSettings, tap: _EmbeddingTap | None):
    """The forward pass, queued on the device: (logits, embedding or None), not yet copied to the host."""
    import torch

    from .models import logits_of
    if tap is not None:
        tap.reset()
    with torch.inference_mode(), autocast_context(settings):
        if tap is not None and tap.forward_with_embedding is not None:
            output, emb = tap.forward_with_embedding(x)
            return logits_of(output), emb
        logits = model.forward(x)
        emb = None
        if tap is not None:
            emb = tap.captured()
            if emb is None and tap.method is not None:
                emb = tap.method(x)
    return logits, emb


def _forward_batch(model, x, settings: RuntimeSettings, tap: _EmbeddingTap | None):
    return _fetch_batch(*_launch_batch(model, x, settings, tap))


def _fetch_batch(logits, emb):
    """Device outputs -> float32 numpy (logits (n, C), embeddings (n, D) or None when their shape is off)."""
    logits = logits.float().cpu().numpy()
    if emb is not None:
        emb = emb.float().reshape(emb.shape[0], -1).cpu().numpy()
        if emb.shape[0] != logits.shape[0]:
            emb = None
    return logits, emb


class _Launcher:
    """Queues forward passes and fetches each batch's outputs one batch later, so the main process prepares batch
    k + 1 (GPU JPEG decoding) while the device runs batch k. With a CUDA stream (GPU decoding) the model runs on
    it, apart from the decoder's work on the current stream; an event per batch says when its outputs are ready."""

    def __init__(self, stream=None):
        self.stream = stream
        self.pending = None          # (rows, logits, emb, event) of the queued batch

    def launch(self, rows, model, x, settings: RuntimeSettings, tap):
        """Queue one batch; returns the outputs of the batch queued before it (or None)."""
        if self.stream is None:
            logits, emb = _launch_batch(model, x, settings, tap)
            event = None
        else:
            import torch
            self.stream.wait_stream(torch.cuda.current_stream(x.device))
            x.record_stream(self.stream)
            with torch.cuda.stream(self.stream):
                logits, emb = _launch_batch(model, x, settings, tap)
                event = torch.cuda.Event()
                event.record(self.stream)
        previous, self.pending = self.pending, (rows, logits, emb, event)
        return self._fetch(previous)

    def flush(self):
        previous, self.pending = self.pending, None
        return self._fetch(previous)

    @staticmethod
    def _fetch(item):
        if item is None:
            return None
        rows, logits, emb, event = item
        if event is not None:
            event.synchronize()
        return (rows,) + _fetch_batch(logits, emb)


class _Prefetcher:
    """Runs ``prepare(batch)`` on each loader batch in a background thread, up to ``depth`` batches ahead: GPU JPEG
    decoding blocks its thread until the decoder is done, and the model's forward passes run meanwhile. On CUDA the
    thread works on its own stream; an event per batch orders the consumer's use after it."""

    def __init__(self, batches, prepare, stream=None, depth: int = 2, device=None):
        import queue
        import threading
        self.queue = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.stream = stream
        self.device = device
        self.thread = threading.Thread(target=self._run, args=(batches, prepare), daemon=True,
                                       name="di-gpu-decode")
        self.thread.start()

    def _run(self, batches, prepare) -> None:
        import torch
        try:
            with torch.cuda.stream(self.stream) if self.stream is not None else nullcontext():
                for batch in batches:
                    if self.stop.is_set():
                        return
                    out = prepare(batch)
                    event = None
                    if self.stream is not None:
                        event = torch.cuda.Event()
                        event.record(self.stream)
                    self._put(("item", out, event))
            self._put(("end", None, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            self._put(("error", exc, None))

    def _put(self, item) -> None:
        import queue
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def __iter__(self):
        import torch
        while True:
            kind, out, event = self.queue.get()
            if kind == "end":
                return
            if kind == "error":
                raise out
            if event is not None:
                current = torch.cuda.current_stream(self.device)
                current.wait_event(event)
                for t in out:
                    if isinstance(t, torch.Tensor) and t.is_cuda:
                        t.record_stream(current)
            yield out

    def close(self) -> None:
        import queue
        self.stop.set()
        try:
            while True:
                self.queue.get_nowait()
        except queue.Empty:
            pass
        self.thread.join(timeout=10)


# GPU decoding: workers only read file bytes (about 17,600 files/s on a 16-core H100 box); more than 6 only cost start-up
RAW_JPEG_WORKERS = 6


def model_outputs(model, root: Path | str, image_ids: Sequence[str], *, settings: RuntimeSettings,
                  embeddings: bool = True, progress: Callable[[int, int], None] | None = None,
                  cancel=None, decoder: str | None = None
                  ) -> tuple[np.ndarray, np.ndarray | None, list[str | None], list[str]]:
    """Run the model over image files. Returns (logits (N,C), embeddings (N,D) or None, errors, notes).

    ``decoder`` (default ``settings.decoder``): "auto" | "pillow" | "gpu" (or "nvjpeg"); see gpu_decode.plan_decoder.
    With nvJPEG the workers read file bytes and the main process decodes each batch on the model's GPU."""
    import torch
    from torch.utils.data import DataLoader

    n = len(image_ids)
    n_classes = len(model.spec.class_names)
    logits_all = np.full((n, n_classes), np.nan, dtype=np.float32)
    emb_all: np.ndarray | None = None
    errors: list[str | None] = [None] * n
    notes: list[str] = []
    if n == 0:
        return logits_all, None, errors, notes
    plan = gpu_decode.plan_decoder(decoder or settings.decoder, model.device, model.spec)
    if plan.note:
        notes.append(plan.note)
    raw = plan.decode is not None
    dataset = ImageFiles(root, image_ids, model.spec, raw_jpeg=raw)
    loader_kwargs = settings.loader_kwargs()
    if raw:
        loader_kwargs["num_workers"] = min(loader_kwargs["num_workers"], RAW_JPEG_WORKERS)
        if loader_kwargs["num_workers"] == 0:
            loader_kwargs.pop("prefetch_factor", None)
            loader_kwargs.pop("persistent_workers", None)
    loader = DataLoader(dataset, batch_size=settings.batch_size, shuffle=False,
                        collate_fn=_collate_raw if raw else _collate, **loader_kwargs)
    tap = _EmbeddingTap(model.module) if embeddings else None
    on_cuda = model.device.type == "cuda"
    launcher = _Launcher(torch.cuda.Stream(model.device) if raw and on_cuda else None)

    def prepare(batch):
        """GPU decoding of one loader batch (in the prefetch thread): (pixels, positions, errors, n_fallbacks)."""
        flat, shapes, idx, errs, is_jpeg = batch
        rows = idx.tolist()
        x, decode_errs, fell_back = gpu_decode.decode_batch(
            _split_raw(flat, shapes), is_jpeg, model.spec, model.device, plan.decode,
            path_of=lambda k: resolve_inside(root, image_ids[rows[k]]))
        return x, idx, [e or d for e, d in zip(errs, decode_errs)], fell_back

    batches = _Prefetcher(loader, prepare, torch.cuda.Stream(model.device) if on_cuda else None,
                          device=model.device if on_cuda else None) if raw else loader
    done = 0
    scored = 0
    failed_alone = 0
    n_fallback = 0

    def one_at_a_time(rows, xb, st) -> int:
        """Forward each image alone; an image the model raises on gets an error row. Returns how many worked."""
        n_ok = 0
        for k, pos in enumerate(rows):
            try:
                store((rows[k:k + 1],) + _forward_batch(model, xb[k:k + 1], st, tap))
                n_ok += 1
            except Exception as exc:  # noqa: BLE001
                errors[pos] = f"the model failed on this image: {' '.join(str(exc).split())[-160:]}"
        return n_ok

    def store(fetched) -> None:
        nonlocal emb_all
        if fetched is None:
            return
        rows_good, out, emb = fetched
        logits_all[rows_good] = out
        if emb is not None:
            if emb_all is None:
                emb_all = np.full((n, emb.shape[1]), np.nan, dtype=np.float32)
            if emb.shape[1] == emb_all.shape[1]:
                emb_all[rows_good] = emb

    try:
        for batch in batches:
            if _is_cancelled(cancel):
                raise ScoringCancelled("scoring cancelled")
            if raw:
                x, idx, errs, fell_back = batch
                n_fallback += fell_back
            else:
                x, idx, errs = batch
            idx = idx.numpy()
            good = np.array([not e for e in errs], dtype=bool)
            for pos, e in zip(idx, errs):
                if e:
                    errors[pos] = e
            if good.any():
                xb = x[torch.from_numpy(good).to(x.device)] if not good.all() else x
                xb = normalize_batch(xb.to(model.device, non_blocking=settings.non_blocking), model.spec)
                # GPU decoding: queue this batch, get the previous one's outputs; Pillow: run and fetch at once
                run = (lambda st: launcher.launch(idx[good], model, xb, st, tap)) if raw else \
                    (lambda st: (idx[good],) + _forward_batch(model, xb, st, tap))
                try:
                    fetched = run(settings)
                except Exception as exc:  # noqa: BLE001
                    fetched = None
                    if settings.use_amp:
                        # mixed precision is unsupported by this model: fall back to float32 for the rest
                        notes.append(f"mixed precision failed ({' '.join(str(exc).split())[:120]}); using float32")
                        settings = RuntimeSettings(**{**settings.__dict__, "use_amp": False, "amp_dtype": None})
                        try:
                            fetched = run(settings)
                        except Exception as again:  # noqa: BLE001
                            exc = again
                    if fetched is None:
                        # the model fails on this batch: score its images one at a time, so one image the model
                        # cannot take costs that image only (a model that fails on everything still stops here)
                        store(launcher.flush())
                        n_ok = one_at_a_time(idx[good], xb, settings)
                        failed_alone += int(good.sum()) - n_ok
                        scored += n_ok
                        if scored == 0 and failed_alone >= min(n, GIVE_UP_AFTER_FAILURES):
                            raise exc                            # the model fails on everything: say so once
                else:
                    scored += int(good.sum())
                store(fetched)
            done += len(idx)
            if progress is not None:
                progress(done, n)
        store(launcher.flush())
    finally:
        if raw:
            batches.close()
        if tap is not None:
            tap.close()
    if n_fallback:
        notes.append(f"{n_fallback} JPEG files nvJPEG could not decode were decoded with Pillow")
    if tap is not None and emb_all is None and scored:
        from .models import EMBEDDING_HOWTO
        why = tap.why_none or "the model gave no penultimate features"
        notes.append(f"no embeddings, so the embedding near-duplicate and outlier sections are empty: {why}; "
                     f"to get them, {EMBEDDING_HOWTO}")
    return logits_all, emb_all, errors, notes


def _image_frame(images: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in ("image_id", "label", "split") if c in images.columns]
    frame = images[cols].copy().reset_index(drop=True)
    for c in ("label", "split"):
        if c not in frame:
            frame[c] = pd.NA
    return frame


def _from_cache(workspace, key: str, frame: pd.DataFrame, image_ids: list[str], spec: Preprocess, source: dict,
                t0: float) -> ScoreResult | None:
    cached = load_cache(workspace, key)
    if cached is None or cached[0] != image_ids:
        return None
    _, logits, emb, errors, meta = cached
    errors = [e or None for e in errors]
    probs, prob_notes = model_probabilities(logits, errors)
    table = build_table(frame, probs, spec.class_names, errors)
    notes = [n for n in meta.get("notes", []) if n not in prob_notes] + prob_notes
    notes += [n for n in unknown_label_notes(frame, spec.class_names) if n not in notes]
    return ScoreResult(table=table, probs=probs, class_names=list(spec.class_names), embeddings=emb,
                       logits=logits, source={**source, **meta.get("source", {}), "cache_key": key},
                       from_cache=True, elapsed_s=time.perf_counter() - t0, notes=notes)


def cached_scores(model, root: Path | str, images: pd.DataFrame, workspace: Path | str,
                  embeddings: bool = True, decoder: str = "auto") -> ScoreResult | None:
    """The saved scores of this model on these image files, or None (never runs the model). ``decoder`` as for
    ``score_dataset``: the scores it would make are looked up (the decoder is part of the key)."""
    t0 = time.perf_counter()
    frame = _image_frame(images)
    image_ids = [str(v) for v in frame["image_id"]]
    plan = gpu_decode.plan_decoder(decoder, model.device, model.spec)
    key = score_cache_key(model.cache_key(), model.spec, files_key(root, image_ids), embeddings, plan.name)
    source = {"kind": model.kind, "model_path": str(model.path), "model_sha256": model.file_sha256,
              "factory": model.factory, "device": str(model.device)}
    return _from_cache(workspace, key, frame, image_ids, model.spec, source, t0)


def score_dataset(model, root: Path | str, images: pd.DataFrame, *, workspace: Path | str | None = None,
                  batch_size: int | None = None, workers: int | None = None, amp: bool | None = None,
                  embeddings: bool = True, progress: Callable[[int, int], None] | None = None,
                  cancel=None, use_cache: bool = True, decoder: str = "auto") -> ScoreResult:
    """Score every row of ``images`` (image_id, label, split) with a ``LoadedModel``.

    Cached under ``workspace/scores/<key>/`` when a workspace is given; a cache hit skips the model.
    ``decoder``: "auto" (nvJPEG on the model's GPU when torchvision has it, else Pillow), "pillow" or "gpu";
    ``result.source["decoder"]`` says which made the pixels ("pillow" or "nvjpeg").
    """
    t0 = time.perf_counter()
    frame = _image_frame(images)
    image_ids = [str(v) for v in frame["image_id"]]
    spec: Preprocess = model.spec
    key = None
    plan = gpu_decode.plan_decoder(decoder, model.device, spec)
    source = {"kind": model.kind, "model_path": str(model.path), "model_sha256": model.file_sha256,
              "factory": model.factory, "device": str(model.device), "decoder": plan.name}
    if workspace is not None and use_cache:
        key = score_cache_key(model.cache_key(), spec, files_key(root, image_ids), embeddings, plan.name)
        hit = _from_cache(workspace, key, frame, image_ids, spec, source, t0)
        if hit is not None:
            return hit
    settings = runtime_settings(model.device.type, workers=workers, amp=amp, batch_size=batch_size,
                                max_batch=model.max_batch, decoder=plan.name)
    logits, emb, errors, notes = model_outputs(model, root, image_ids, settings=settings, embeddings=embeddings,
                                               progress=progress, cancel=cancel)
    notes = list(model.notes) + ([plan.note] if plan.note else []) + notes
    if plan.name == gpu_decode.NVJPEG:
        notes.append("JPEGs decoded on the GPU by nvJPEG (torchvision); their pixels may differ from Pillow's by a "
                     "rounding step")
    probs, prob_notes = model_probabilities(logits, errors)
    notes += prob_notes + unknown_label_notes(frame, spec.class_names)
    table = build_table(frame, probs, spec.class_names, errors)
    elapsed = time.perf_counter() - t0
    source = {**source, "cache_key": key, "batch_size": settings.batch_size, "num_workers": settings.num_workers,
              "amp": settings.use_amp}
    if key is not None:
        try:
            save_cache(workspace, key, image_ids, logits, emb, [e or "" for e in errors],
                       {"source": source, "notes": notes, "elapsed_s": elapsed, "class_names": list(spec.class_names)})
        except OSError as exc:
            notes.append(f"could not write the score cache: {exc}")
    for i, e in enumerate(errors):
        if e == "":
            errors[i] = None
    return ScoreResult(table=table, probs=probs, class_names=list(spec.class_names), embeddings=emb, logits=logits,
                       source=source, from_cache=False, elapsed_s=elapsed, notes=notes)


# --------------------------------------------------------------------------------------------
# Predictions files (no model needed)
# --------------------------------------------------------------------------------------------

LIST_COLUMNS = ("probs", "probabilities", "pred_probs", "logits", "scores", "outputs")


def looks_like_probabilities(matrix: np.ndarray, tol: float = 5e-3) -> bool:
    """True when every finite row lies in [0, 1] and sums to 1 (within ``tol``); else treat as logits."""
    rows = matrix[np.isfinite(matrix).all(axis=1)]
    if rows.size == 0:
        return True
    if rows.min() < -1e-6 or rows.max() > 1 + 1e-6:
        return False
    return bool(np.all(np.abs(rows.sum(axis=1) - 1.0) <= tol))


# rows of probabilities written with a few decimals sum to 1 only roughly: 2 decimals over 5 classes, +-0.025
ROUNDED_SUM_TOL = 0.05


def detect_values(matrix: np.ndarray, source: str = "the values") -> str:
    """What a predictions matrix holds: "probabilities" (every finite row in 0..1, summing to 1 within the
    rounding of C values: max(ROUNDED_SUM_TOL, C x 0.005), so 2-decimal probabilities count), "percentages"
    (0..100, summing to 100 within 100 x that: integer percentages count), or "logits" (anything else).
    Rows in 0..1 that do not sum to 1 are refused: they are probabilities with a class missing, or per-class
    scores, and reading them as logits would be wrong. All-zero rows (placeholders) are left out of the test;
    they become missing predictions. Float error down to -1e-4 counts as 0."""
    rows = matrix[np.isfinite(matrix).all(axis=1)]
    rows = rows[np.abs(rows).sum(axis=1) > 0]
    if rows.size == 0:
        return "probabilities"
    tol = max(ROUNDED_SUM_TOL, rows.shape[1] * 0.005)
    sums = rows.sum(axis=1)
    lo, hi = float(rows.min()), float(rows.max())
    if lo >= -1e-4 and hi <= 1 + 1e-4:
        if np.all(np.abs(sums - 1.0) <= tol):
            return "probabilities"
        raise PredictionsError(
            f"{source} lie in 0..1 but their rows sum to {sums.min():.3g}..{sums.max():.3g}, not 1: if they are "
            "probabilities, a class column is missing (give one column per class); if they are logits, name the "
            "columns logit_<class>")
    if lo >= -1e-2 and hi <= 100 + 1e-2 and np.all(np.abs(sums - 100.0) <= 100 * tol):
        return "percentages"
    return "logits"


def to_probabilities(matrix: np.ndarray, kind: str = "auto", source: str = "the values") -> tuple[np.ndarray, str]:
    """(probabilities, 'probabilities' | 'percentages' | 'logits') from a predictions matrix; ``kind`` "auto"
    decides by ``detect_values``. Probabilities and percentages are renormalised so rows sum to 1 exactly."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if kind == "auto":
        kind = detect_values(matrix, source)
    if kind in ("probabilities", "percentages"):
        clipped = np.clip(matrix, 0.0, None)
        with np.errstate(invalid="ignore", divide="ignore"):
            probs = clipped / clipped.sum(axis=1, keepdims=True)
    elif kind == "logits":
        probs = _softmax(matrix)
    else:
        raise PredictionsError(f"unknown predictions kind {kind!r}; use auto, probabilities or logits")
    return probs.astype(np.float32), kind


def _parse_list_cell(value):
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    try:
        return [float(v) for v in value]
    except (TypeError, ValueError):
        return None


def _numeric_matrix(frame: pd.DataFrame, columns: list, file_name: str) -> np.ndarray:
    """The given columns as a float64 matrix; a cell that is not a number (text in a class column) is a
    PredictionsError naming the column, the row and the value. Empty cells are NaN (that row gets an error)."""
    out = np.empty((len(frame), len(columns)), np.float64)
    for k, c in enumerate(columns):
        col = frame[c]
        if isinstance(col, pd.DataFrame):
            raise PredictionsError(f"{file_name} has more than one column named {str(c)[:40]!r}")
        values = pd.to_numeric(col, errors="coerce") if not pd.api.types.is_numeric_dtype(col) else col
        bad = np.flatnonzero(values.isna().to_numpy() & col.notna().to_numpy() & (col.astype(str).str.strip() != "")
                             .to_numpy())
        if len(bad):
            from ..textsafe import safe_text
            raise PredictionsError(f"{file_name}: column {safe_text(str(c))[:40]!r} row {bad[0] + 2} holds "
                                   f"{safe_text(str(col.iloc[bad[0]]))[:40]!r}, not a number"
                                   f"{f' ({len(bad)} such cells)' if len(bad) > 1 else ''}; class columns hold "
                                   "probabilities or logits")
        out[:, k] = values.to_numpy(dtype=np.float64, na_value=np.nan)
    return out


def read_predictions(path: Path | str, *, class_names: Sequence[str] | None = None,
                     image_ids: Sequence[str] | None = None, kind: str = "auto",
                     dataset_classes: Sequence[str] | None = None):
    """Read a predictions file. Returns (image_ids, probabilities (N,C), class_names, kind_detected, notes).

    CSV/Parquet: an ``image_id`` column plus either one column per class (named as the class, or
    ``prob_<class>`` / ``logit_<class>``) or one list column (probs / logits / scores). NPY: an (N, C)
    array whose rows follow ``image_ids`` (the dataset's image order unless a list is given).
    ``class_names``: the model's classes in output order (all must have a column). Without them,
    ``dataset_classes`` (the dataset's labels) pick the class columns when the file has columns for them,
    and name the list column's values when their count matches; other numeric columns are ignored (a note
    names them); a dataset class without a column is an error when the values are probabilities.
    """
    notes: list[str] = []
    path = Path(path).expanduser()
    if path.is_dir():
        raise PredictionsError(f"predictions file {path} is a folder; give the CSV, Parquet or NPY file in it")
    if not path.is_file() and not path.exists():
        raise PredictionsError(f"predictions file {path} not found; check the path")
    from ..limits import check_input_file
    try:
        check_input_file(path, "predictions file", "max_table_bytes")   # a regular file, within the cap
    except ValueError as exc:
        raise PredictionsError(str(exc)) from None
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            # memory-mapped first: a header that claims more rows than the file holds fails here, before any
            # allocation (a 100-byte file must not ask for terabytes); the copy is then at most the file's size
            matrix = np.array(np.load(path, allow_pickle=False, mmap_mode="r"))
        except (ValueError, OSError, MemoryError):
            raise PredictionsError(f"{path.name} is not a plain numeric .npy array (save it with "
                                   "numpy.save(path, array_of_numbers))") from None
        if matrix.ndim != 2:
            raise PredictionsError(f"{path.name} holds shape {matrix.shape}; expected (n_images, n_classes) numbers")
        if not np.issubdtype(matrix.dtype, np.number) or matrix.dtype == np.bool_:
            raise PredictionsError(f"{path.name} holds {matrix.dtype} values; expected numbers (probabilities or "
                                   "logits), shape (n_images, n_classes)")
        if image_ids is None:
            raise PredictionsError(f"{path.name} is an .npy array: give the image_id order its rows follow")
        if len(image_ids) != matrix.shape[0]:
            raise PredictionsError(f"{path.name} has {matrix.shape[0]} rows but there are {len(image_ids)} image_ids; "
                                   "rows must follow the image_id order one to one")
        names = list(class_names or dataset_classes or []) or [str(i) for i in range(matrix.shape[1])]
        if len(names) != matrix.shape[1]:
            raise PredictionsError(f"{path.name} has {matrix.shape[1]} columns but there are {len(names)} classes")
        probs, kind = to_probabilities(matrix, kind, path.name)
        return [str(i) for i in image_ids], probs, names, kind, notes
    try:
        if suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        elif suffix in (".csv", ".tsv", ".txt"):
            frame = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
        else:
            raise PredictionsError(f"{path.name}: predictions must be .csv, .parquet or .npy")
    except PredictionsError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise PredictionsError(f"could not read predictions {path.name}: {' '.join(str(exc).split())[:160]}") from None
    if "image_id" not in frame.columns:
        raise PredictionsError(f"{path.name} has no image_id column")
    ids = _id_texts(frame["image_id"])
    list_col = next((c for c in frame.columns if str(c).lower() in LIST_COLUMNS), None)
    ignore = {"image_id", "label", "split", "given_label", "pred_label", "path"}
    num_cols = [c for c in frame.columns if c not in ignore and pd.api.types.is_numeric_dtype(frame[c])]

    def column_for(name: str):
        return next((c for c in (f"{PROB_PREFIX}{name}", f"logit_{name}", name) if c in frame.columns), None)
    by_dataset = {n: column_for(str(n)) for n in (dataset_classes or [])}
    by_dataset = {n: c for n, c in by_dataset.items() if c is not None}
    if class_names is None and len(by_dataset) >= 2:
        per_class = dict(by_dataset)
        # prob_<x> / logit_<x> columns are classes even when the dataset has no image of x (a model that knows
        # more classes): dropping them would renormalise the probabilities over a subset
        for c in num_cols:
            text = str(c)
            if c not in set(per_class.values()) and text.startswith((PROB_PREFIX, "logit_")):
                per_class[text.split("_", 1)[1]] = c
        others = [str(c) for c in num_cols if c not in set(per_class.values())]
        if others:
            notes.append(f"{len(others)} numeric columns that name no class of the dataset were ignored: "
                         f"{', '.join(others[:6])}{' ...' if len(others) > 6 else ''}")
        unmatched = [str(n) for n in dataset_classes if n not in per_class]
        if unmatched:
            values = _numeric_matrix(frame, list(per_class.values()), path.name)
            if not all(str(c).startswith("logit_") for c in per_class.values()) and kind != "logits" \
                    and detect_values_quietly(values) != "logits":
                raise PredictionsError(f"{path.name} has no column for classes {', '.join(unmatched[:6])}: give one "
                                       "probability column per class (prob_<class> or the class name)")
            notes.append(f"no column for classes {', '.join(unmatched[:6])}: their images count as unlabelled")
    elif class_names is None:
        inferred = [str(c) for c in num_cols if str(c).startswith((PROB_PREFIX, "logit_"))] or [str(c) for c in num_cols]
        per_class = {}
        for c in inferred:
            name = c[len(PROB_PREFIX):] if c.startswith(PROB_PREFIX) else c[len("logit_"):] if c.startswith("logit_") else c
            per_class[name] = c
    else:
        per_class = {}
        for name in class_names:
            for cand in (f"{PROB_PREFIX}{name}", f"logit_{name}", name):
                if cand in frame.columns:
                    per_class[name] = cand
                    break
        if len(per_class) != len(class_names):
            per_class = {}
    if per_class and (class_names is None or len(per_class) == len(class_names)) and len(per_class) >= 2:
        names = list(per_class)
        matrix = _numeric_matrix(frame, [per_class[n] for n in names], path.name)
        if kind == "auto" and all(str(per_class[n]).startswith("logit_") for n in names):
            kind = "logits"
    elif list_col is not None:
        rows = [_parse_list_cell(v) for v in frame[list_col]]
        width = max((len(r) for r in rows if r is not None), default=0)
        if width < 2:
            raise PredictionsError(f"{path.name}: column {list_col} holds no lists of per-class values")
        matrix = np.array([r if r is not None and len(r) == width else [np.nan] * width for r in rows], dtype=np.float64)
        names = list(class_names) if class_names else \
            list(dataset_classes) if dataset_classes and len(dataset_classes) == width else [str(i) for i in range(width)]
        if len(names) != width:
            raise PredictionsError(f"{path.name}: lists have {width} values but there are {len(names)} classes")
        if kind == "auto" and str(list_col).lower() == "logits":
            kind = "logits"
    else:
        missing = [n for n in (class_names or []) if not any(c in frame.columns for c in (n, PROB_PREFIX + n, "logit_" + n))]
        hint = f"; missing columns for classes: {', '.join(missing[:5])}" if missing else ""
        raise PredictionsError(f"{path.name}: no per-class columns and no probs/logits list column{hint}")
    probs, kind = to_probabilities(matrix, kind, path.name)
    return ids, probs, names, kind, notes


def detect_values_quietly(matrix: np.ndarray) -> str:
    """``detect_values``, with "mixed" instead of an error."""
    try:
        return detect_values(matrix)
    except PredictionsError:
        return "mixed"


def unknown_label_notes(frame: pd.DataFrame, class_names: Sequence[str]) -> list[str]:
    """A note when labelled images carry labels that are not among the model's classes (they get no loss)."""
    if "label" not in frame:
        return []
    labels = frame["label"].dropna().astype(str)
    unknown = labels[~labels.isin(set(map(str, class_names)))]
    if unknown.empty:
        return []
    names = unknown.value_counts().index.tolist()
    shown = ", ".join(names[:6]) + (" ..." if len(names) > 6 else "")
    if len(unknown) == len(labels):
        return [f"none of the {len(labels)} labelled images has a label among the model's classes "
                f"({', '.join(map(str, list(class_names)[:6]))}); the dataset's labels are {shown}: check the class "
                "names (in the model's output order) in the preprocessing or the predictions file"]
    many = len(unknown) != 1
    return [f"{len(unknown)} labelled image{'s have labels' if many else ' has a label'} the model has no class for "
            f"({shown}): {'they are' if many else 'it is'} scored but get{'' if many else 's'} no loss"]


def score_predictions(path: Path | str, images: pd.DataFrame, *, class_names: Sequence[str] | None = None,
                      kind: str = "auto", order: Sequence[str] | None = None,
                      dataset_classes: Sequence[str] | None = None) -> ScoreResult:
    """Score a dataset from a predictions file, aligning rows by image_id (no model needed).

    Images with no prediction get an error row; predictions for unknown image_ids are counted in notes.
    For .npy files the row order is ``order`` (default: ``images["image_id"]``).
    """
    t0 = time.perf_counter()
    frame = _image_frame(images)
    dataset_ids = _id_texts(frame["image_id"])
    ids, probs, names, kind, notes = read_predictions(path, class_names=class_names, image_ids=order or dataset_ids,
                                                      kind=kind, dataset_classes=dataset_classes)
    given = pd.Index(ids)
    first = ~given.duplicated(keep="first")                      # a repeated image_id: its first row is used
    unique_ids, unique_rows = given[first], np.flatnonzero(first)
    pos = unique_ids.get_indexer(pd.Index(dataset_ids))          # -1: no prediction for that image
    have = pos >= 0
    full = np.full((len(dataset_ids), len(names)), np.nan, dtype=np.float32)
    full[have] = probs[unique_rows[pos[have]]]
    errors = np.full(len(dataset_ids), None, dtype=object)
    errors[~have] = "no prediction for this image in the predictions file"
    errors[have & ~np.isfinite(full).all(axis=1)] = "prediction row has missing values"
    errors = errors.tolist()
    notes.append(f"values read as {kind}" + (" (divided by 100)" if kind == "percentages" else "")
                 + (" and renormalised to sum to 1" if kind != "logits" else ", turned into probabilities by softmax"))
    notes += unknown_label_notes(frame, names)
    extra = len(unique_ids) - len(np.unique(pos[have]))          # predicted ids that name no dataset image
    if extra:
        notes.append(f"{extra} predictions name image_ids not in the dataset (ignored)")
    if len(unique_ids) < len(ids):
        notes.append(f"{len(ids) - len(unique_ids)} duplicate image_id rows in the predictions file (first kept)")
    table = build_table(frame, full, names, errors)
    return ScoreResult(table=table, probs=full, class_names=list(names), source={"kind": "predictions",
                       "predictions_path": str(path), "values": kind}, elapsed_s=time.perf_counter() - t0, notes=notes)


# --------------------------------------------------------------------------------------------
# Summaries of a scores table
# --------------------------------------------------------------------------------------------

def confusion_matrix(table: pd.DataFrame, class_names: Sequence[str]) -> pd.DataFrame:
    """Counts: rows = given label, columns = predicted class (scored, labelled images only)."""
    names = list(class_names)
    ok = (table["label_index"] >= 0) & (table["pred_index"] >= 0)
    counts = np.zeros((len(names), len(names)), dtype=np.int64)
    np.add.at(counts, (table.loc[ok, "label_index"].to_numpy(dtype=np.int64),
                       table.loc[ok, "pred_index"].to_numpy(dtype=np.int64)), 1)
    frame = pd.DataFrame(counts, index=pd.Index(names, name="given"), columns=pd.Index(names, name="predicted"))
    return frame


def per_class_metrics(table: pd.DataFrame, class_names: Sequence[str]) -> pd.DataFrame:
    """Per given class: n_images, accuracy (recall), precision, mean_loss, median_loss, n_errors."""
    names = list(class_names)
    n_classes = len(names)
    y_all = table["label_index"].to_numpy(dtype=np.int64)
    p_all = table["pred_index"].to_numpy(dtype=np.int64)
    ok = (y_all >= 0) & (p_all >= 0)
    y, p = y_all[ok], p_all[ok]
    loss = pd.Series(table["loss"].to_numpy(dtype=np.float64)[ok])
    n_given = np.bincount(y, minlength=n_classes)[:n_classes]
    n_predicted = np.bincount(p, minlength=n_classes)[:n_classes]
    n_right = np.bincount(y[p == y], minlength=n_classes)[:n_classes]
    by_class = loss.groupby(y)
    with np.errstate(invalid="ignore", divide="ignore"):
        return pd.DataFrame({
            "class": names, "n_images": n_given.astype(np.int64),
            "accuracy": np.where(n_given > 0, n_right / n_given, np.nan),
            "precision": np.where(n_predicted > 0, n_right / n_predicted, np.nan),
            "mean_loss": by_class.mean().reindex(range(n_classes)).to_numpy(dtype=np.float64),
            "median_loss": by_class.median().reindex(range(n_classes)).to_numpy(dtype=np.float64),
            "n_errors": (n_given - n_right).astype(np.int64)})
