"""The batch pipeline: run a model over every image file of a dataset (or reopen its saved outputs).

Files are decoded by a DataLoader (or on the GPU by nvJPEG), normalised on the device, and run through the model;
the task (``tasks.get_task``) turns the raw outputs into the scores table. One unreadable image gives a row with
``error`` set, never a crash; a model failing on one image costs that image only. Results are cached in the
workspace (``cache``), keyed by (model file hash, preprocessing, image files).
"""
from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from . import gpu_decode
from .. import storage
from ..paths import resolve_inside
from .cache import files_key, load_cache, save_cache, score_cache_key
from .preprocess import Preprocess, image_to_pixels, load_image_file, normalize_batch
from .runtime import RuntimeSettings, autocast_context, runtime_settings
from .table import ScoreResult, image_frame
from .tasks import Task, get_task


class ScoringCancelled(RuntimeError):
    """Raised when the cancel flag/callback fires during scoring."""


# a model that has failed on this many images one at a time, and worked on none, fails on everything
GIVE_UP_AFTER_FAILURES = 256


class ImageFiles:
    """torch-style dataset: (uint8 pixels (C, H, W), position, error) per image; errors never raise.

    The pixels are normalised on the model's device (``normalize_batch``): 4x fewer bytes through the
    loader's queue, the pinned buffer and the host-to-device copy than float32.

    ``raw_jpeg`` (GPU decoding): items are (payload, position, error, is_jpeg); a JPEG the GPU can decode arrives as
    its file bytes (``gpu_decode.read_payload``), anything else as the Pillow path's pixels."""

    def __init__(self, root: Path | str, image_ids: Sequence[str], spec: Preprocess, raw_jpeg: bool = False):
        self.root = root if storage.is_remote(root) else Path(root)    # a URL root is read through storage
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


def _to_host(value):
    """Tensors inside a model's non-tensor output (a detector's list of dicts per image) -> numpy on the host."""
    if hasattr(value, "detach"):
        value = value.detach()
        return (value.float() if value.is_floating_point() else value).cpu().numpy()
    if isinstance(value, dict):
        return {k: _to_host(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_host(v) for v in value]
    return value


def _fetch_batch(logits, emb):
    """Device outputs -> float32 numpy (logits (n, C), embeddings (n, D) or None when their shape is off). A task
    whose model gives one object per image (a detector's dicts, ``tasks.detection``) gets that list on the host."""
    if isinstance(logits, (list, tuple)):
        return _to_host(logits), None
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
        nonlocal emb_all, logits_all
        if fetched is None:
            return
        rows_good, out, emb = fetched
        if isinstance(out, list):               # one object per image (a detector): an object array of them
            if logits_all.dtype != object:
                logits_all = np.full(n, None, dtype=object)
            for pos, item in zip(rows_good, out):
                logits_all[pos] = item
            return
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


def _from_cache(workspace, key: str, frame: pd.DataFrame, image_ids: list[str], spec: Preprocess, source: dict,
                t0: float, task: Task) -> ScoreResult | None:
    cached = load_cache(workspace, key)
    if cached is None or cached[0] != image_ids:
        return None
    _, logits, emb, errors, meta = cached
    errors = [e or None for e in errors]
    table, probs, output_notes, target_notes = task.from_outputs(frame, logits, spec.class_names, errors)
    notes = [n for n in meta.get("notes", []) if n not in output_notes] + output_notes
    notes += [n for n in target_notes if n not in notes]
    return ScoreResult(table=table, probs=probs, class_names=list(spec.class_names), embeddings=emb,
                       logits=logits, source={**source, **meta.get("source", {}), "cache_key": key},
                       from_cache=True, elapsed_s=time.perf_counter() - t0, notes=notes)


def cached_scores(model, root: Path | str, images: pd.DataFrame, workspace: Path | str,
                  embeddings: bool = True, decoder: str = "auto", task: str | Task = "classification"
                  ) -> ScoreResult | None:
    """The saved scores of this model on these image files, or None (never runs the model). ``decoder`` and
    ``task`` as for ``score_dataset``: the scores it would make are looked up (the decoder is part of the key)."""
    t0 = time.perf_counter()
    frame = image_frame(images)
    image_ids = [str(v) for v in frame["image_id"]]
    plan = gpu_decode.plan_decoder(decoder, model.device, model.spec)
    key = score_cache_key(model.cache_key(), model.spec, files_key(root, image_ids), embeddings, plan.name)
    source = {"kind": model.kind, "model_path": str(model.path), "model_sha256": model.file_sha256,
              "factory": model.factory, "device": str(model.device)}
    return _from_cache(workspace, key, frame, image_ids, model.spec, source, t0, get_task(task))


def score_dataset(model, root: Path | str, images: pd.DataFrame, *, workspace: Path | str | None = None,
                  batch_size: int | None = None, workers: int | None = None, amp: bool | None = None,
                  embeddings: bool = True, progress: Callable[[int, int], None] | None = None,
                  cancel=None, use_cache: bool = True, decoder: str = "auto",
                  task: str | Task = "classification", outputs: Callable | None = None) -> ScoreResult:
    """Score every row of ``images`` (image_id, label, split) with a ``LoadedModel``; ``task`` (a name in
    ``tasks.TASKS`` or a Task) turns the model's raw outputs into the scores table. ``progress(done, total)`` is
    called after each batch; ``cancel`` (an Event or a function returning True) raises ScoringCancelled.

    Cached under ``workspace/scores/<key>/`` when a workspace is given; a cache hit skips the model.
    ``decoder``: "auto" (nvJPEG on the model's GPU when torchvision has it, else Pillow), "pillow" or "gpu";
    ``result.source["decoder"]`` says which made the pixels ("pillow" or "nvjpeg").
    ``outputs``: what runs the model on a cache miss, called as ``model_outputs`` is (default ``model_outputs``;
    ``cluster.score.cluster_outputs`` runs it on a Ray cluster), so the key, the cache and the table are the same.
    """
    t0 = time.perf_counter()
    task = get_task(task)
    frame = image_frame(images)
    image_ids = [str(v) for v in frame["image_id"]]
    spec: Preprocess = model.spec
    key = None
    plan = gpu_decode.plan_decoder(decoder, model.device, spec)
    source = {"kind": model.kind, "model_path": str(model.path), "model_sha256": model.file_sha256,
              "factory": model.factory, "device": str(model.device), "decoder": plan.name}
    if workspace is not None and use_cache:
        key = score_cache_key(model.cache_key(), spec, files_key(root, image_ids), embeddings, plan.name)
        hit = _from_cache(workspace, key, frame, image_ids, spec, source, t0, task)
        if hit is not None:
            return hit
    settings = runtime_settings(model.device.type, workers=workers, amp=amp, batch_size=batch_size,
                                max_batch=model.max_batch, decoder=plan.name)
    logits, emb, errors, notes = (outputs or model_outputs)(model, root, image_ids, settings=settings,
                                                            embeddings=embeddings, progress=progress, cancel=cancel)
    notes = list(model.notes) + ([plan.note] if plan.note else []) + notes
    if plan.name == gpu_decode.NVJPEG:
        notes.append("JPEGs decoded on the GPU by nvJPEG (torchvision); their pixels may differ from Pillow's by a "
                     "rounding step")
    table, probs, output_notes, target_notes = task.from_outputs(frame, logits, spec.class_names, errors)
    notes += output_notes + target_notes
    elapsed = time.perf_counter() - t0
    source = {**source, "cache_key": key, "batch_size": settings.batch_size, "num_workers": settings.num_workers,
              "amp": settings.use_amp}
    if key is not None and logits.dtype != object:         # per-image objects (a detector's dicts) are not cached
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

