"""Scoring on a Ray cluster: ``score ROOT --model F --cluster local:N | auto | ray://HOST:PORT | HOST:PORT``.

The same chain as the local path, with the model's raw outputs made on the cluster: ``cluster_outputs`` stands in for
``model.pipeline.model_outputs`` (``score_dataset(..., outputs=...)``), so the cache key, the score cache, the scores
table and everything ``model.triage`` makes from it are the local path's. The connection (``--cluster`` values,
joining or starting Ray, its errors) is the scan's: ``engine.parse_cluster`` / ``engine.connected`` / ``ClusterError``.

The unit of work, of a retry and of a resumed run is a **block**: ``rows_per_block`` consecutive image ids. On the
cluster (Ray Data, streaming, with back-pressure between the stages), one row per block still to score (in at most
``max_input_tables`` tables: at 1e8 images, not 390,625 objects put by the driver):

1. ``decode_block`` (``map_batches`` tasks, one CPU each): the local pipeline's own per-file code
   (``pipeline.ImageFiles``: resolve inside the root, Pillow decode, ``image_to_pixels``) on the block's images,
   their uint8 pixels as one buffer, an error text instead for a bad file;
2. ``ModelWorker`` actors run the model on the block (in batches of the run's batch size): ``num_gpus=1`` each when
   the cluster has GPUs, else CPU actors (half the cluster's CPUs, the rest decode). The model file travels once
   through the object store. The actor writes the block's outputs (image_id, error, logits, embedding) as one
   Parquet **part**, ``<parts>/part-<first row>-<key>.parquet``, and returns only a small record (block, rows, part
   name); the driver never receives the outputs through Ray. A worker that cannot see the parts folder (a node
   without the workspace mounted) returns its part's bytes instead and the driver writes it.
3. the driver assembles the outputs from the parts, one part at a time in row order, into the arrays the score cache
   takes: logits (N, C) in memory; embeddings (N, D) in memory up to ``embeddings_in_memory_bytes``, above it in a
   memory-mapped ``embeddings.npy`` beside the parts (at 1e8 images x 2,048 floats: 819 GB on disk, not in RAM).
   The score cache keeps that file as its embeddings (not copied into ``outputs.npz``) and removes the parts once
   the outputs are saved (``model.cache.save_cache``): the outputs sit on disk once.

Resume: a part's key hashes the run (model, preprocessing, image files, embeddings; the score cache key) with the
block's image ids and the settings that can change its numbers (device kind, batch size), so a re-run after an
interruption (Ctrl-C, a cancel, a lost driver) reuses every finished part and scores only the missing blocks, and a
changed model, setting or file list never reuses a stale part (``<parts>`` sits under the cache key's folder, and
the part's own key checks again). Retries: a decode task whose worker dies is re-run (``max_retries``), a model
actor that dies is restarted and its block re-run (``max_restarts``, ``max_task_retries``), finitely, so a block that
kills every worker it meets stops the run with one error instead of looping.

Pixels are always decoded by Pillow here (the decoder in the key is "pillow"). Ray is imported only by this module's
functions, so ``score`` without ``--cluster`` never imports it. Workers read ROOT by its path: on a cluster of
several machines, ROOT must be mounted at the same path on every worker (or be a bucket URL).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..model.cache import EMBEDDINGS_FILE, PARTS_DIR   # the parts folder and the memory-mapped embeddings: the cache's
from .engine import ClusterError, connected, parse_cluster

__all__ = ["CLUSTER_OPTIONS", "ClusterError", "cluster_outputs", "cluster_scoring", "connected", "parse_cluster"]

# defaults, as data: a caller may override any of them (``cluster_outputs(..., options={...})``)
CLUSTER_OPTIONS = {
    "rows_per_block": 256,        # image ids per block: the unit of decode work, of a retry and of a resumed run
    "model_batch_size": None,     # images per model call (None: runtime_settings' batch for the device)
    "model_workers": None,        # model actors (None: one per GPU, else half the cluster's CPUs, at least 1)
    "cpus_per_model_worker": 1,   # CPU actors: CPUs (and torch threads) each
    "max_retries": 3,             # a decode task whose worker died is re-run this many times
    "max_restarts": 3,            # a model actor that died is restarted this many times ...
    "max_task_retries": 3,        # ... and the block it was scoring re-run this many times
    "embeddings_in_memory_bytes": 4 * 2**30,   # above: the assembled embeddings are a memory-mapped .npy
    "workers_write_parts": True,  # False: every part comes back to the driver, which writes it
    "max_input_tables": 4096,     # the blocks to score go to Ray in at most this many tables (a decode task each)
}

PART_VERSION = 1                            # in every part's key: a change of the part's layout reads none again

# what one decode task reserves (a Ray resource, not a limit): its block of pixels (256 x 224 x 224 x 3 = 38.5 MB),
# the full-size images being decoded, and headroom
DECODE_TASK_MEMORY_BYTES = 256 * 2**20
# Test-only hook: seconds each decode task and each model call sleeps, so that a test can kill a worker mid-block.
BLOCK_DELAY_S = 0.0


@contextmanager
def _quiet_data(ray):
    """Ray Data's progress bars, start lines and logged tracebacks off for the ``with`` block: a failure is one
    ClusterError."""
    quiet = logging.getLogger("ray.data")
    level = quiet.level
    try:
        from ray.data import DataContext    # imported before the level is set: it sets up its own loggers
        quiet.setLevel(logging.CRITICAL)
        ctx = DataContext.get_current()
        ctx.enable_progress_bars = False
        if hasattr(ctx, "print_on_execution_start"):
            ctx.print_on_execution_start = False
        yield ray
    finally:
        quiet.setLevel(level)


def check_cluster(spec: str) -> str:
    """``spec`` if it is a --cluster value of a known form, else ClusterError naming it and the forms."""
    try:
        parse_cluster(spec)
    except ValueError as exc:
        raise ClusterError(str(exc)) from None
    return spec


def decode_batch(batch: dict, root: str, spec) -> dict:
    """Decode stage (CPU workers): ``{"pos", "image_id"}`` -> ``{"pos", "pixels" (n, C, H, W) uint8, "error"}`` by
    the local pipeline's ``ImageFiles`` (a bad file: blank pixels and its error text, never an exception)."""
    from ..model.pipeline import ImageFiles
    files = ImageFiles(root, [str(v) for v in batch["image_id"]], spec)
    items = [files[i] for i in range(len(files))]
    return {"pos": np.asarray(batch["pos"], dtype=np.int64),
            "pixels": np.stack([item[0] for item in items]) if items else np.zeros((0, *spec.input_shape), np.uint8),
            "error": np.array([item[2] for item in items], dtype=object)}


def forward_pixels(model, pixels: np.ndarray, errors: Sequence[str], settings, tap):
    """The model on decoded pixels: ``(logits (n, C) float32, embeddings (n, D) float32 or None, errors)``. Rows with
    an error are NaN. A batch the model raises on is run one image at a time, so an image the model cannot take costs
    that image only (as in ``pipeline.model_outputs``); mixed precision that fails falls back to float32."""
    import torch

    from ..model.pipeline import _forward_batch
    from ..model.preprocess import normalize_batch
    from ..model.runtime import RuntimeSettings
    n = len(pixels)
    logits = np.full((n, len(model.spec.class_names)), np.nan, dtype=np.float32)
    emb_all = None
    errors = [str(e or "") for e in errors]
    good = np.nonzero([not e for e in errors])[0]

    def store(rows, out, emb):
        nonlocal emb_all
        logits[rows] = out
        if emb is not None:
            if emb_all is None:
                emb_all = np.full((n, emb.shape[1]), np.nan, dtype=np.float32)
            if emb.shape[1] == emb_all.shape[1]:
                emb_all[rows] = emb

    for start in range(0, len(good), settings.batch_size):
        rows = good[start:start + settings.batch_size]
        x = normalize_batch(torch.from_numpy(np.ascontiguousarray(pixels[rows])).to(model.device), model.spec)
        try:
            store(rows, *_forward_batch(model, x, settings, tap))
            continue
        except Exception:  # noqa: BLE001 - retried below
            if settings.use_amp:
                settings = RuntimeSettings(**{**settings.__dict__, "use_amp": False, "amp_dtype": None})
                try:
                    store(rows, *_forward_batch(model, x, settings, tap))
                    continue
                except Exception:  # noqa: BLE001
                    pass
        for k, row in enumerate(rows):
            try:
                store(rows[k:k + 1], *_forward_batch(model, x[k:k + 1], settings, tap))
            except Exception as exc:  # noqa: BLE001
                errors[row] = f"the model failed on this image: {' '.join(str(exc).split())[-160:]}"
    return logits, emb_all, errors


def decode_block(batch, root: str, spec, delay_s: float = 0.0):
    """Decode stage (CPU workers): one row per block ``{"block", "part", "image_ids"}`` -> the same with ``"pixels"``
    (the block's uint8 (n, C, H, W) pixels as bytes) and ``"errors"`` by ``decode_batch`` (a bad file: blank pixels and
    its error text, never an exception)."""
    import pyarrow as pa
    if delay_s:
        time.sleep(delay_s)
    out = {"block": [], "part": [], "image_ids": [], "pixels": [], "errors": []}
    for block, part, ids in zip(batch.column("block").to_pylist(), batch.column("part").to_pylist(),
                                batch.column("image_ids").to_pylist()):
        decoded = decode_batch({"pos": np.arange(len(ids)), "image_id": ids}, root, spec)
        out["block"].append(block)
        out["part"].append(part)
        out["image_ids"].append(ids)
        out["pixels"].append(np.ascontiguousarray(decoded["pixels"], dtype=np.uint8).tobytes())
        out["errors"].append([str(e or "") for e in decoded["error"]])
    return pa.table({"block": pa.array(out["block"], pa.int64()), "part": pa.array(out["part"], pa.string()),
                     "image_ids": pa.array(out["image_ids"], pa.list_(pa.string())),
                     "pixels": pa.array(out["pixels"], pa.large_binary()),
                     "errors": pa.array(out["errors"], pa.list_(pa.string()))})


def part_table(image_ids: Sequence[str], errors: Sequence[str | None], logits: np.ndarray, emb: np.ndarray | None):
    """One block's outputs as the Arrow table of its part: ``image_id``, ``error`` (null: scored), ``logits``
    fixed-size list of float32 and, when the model gave embeddings, ``embedding`` (fixed-size list of float32)."""
    import pyarrow as pa
    n = len(image_ids)
    logits = np.ascontiguousarray(logits, dtype=np.float32).reshape(n, -1)
    cols = {"image_id": pa.array([str(i) for i in image_ids], pa.string()),
            "error": pa.array([e or None for e in errors], pa.string()),
            "logits": pa.FixedSizeListArray.from_arrays(pa.array(logits.reshape(-1)), logits.shape[1])}
    if emb is not None:
        emb = np.ascontiguousarray(emb, dtype=np.float32).reshape(n, -1)
        cols["embedding"] = pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), emb.shape[1])
    return pa.table(cols)


# A part lives until its run's outputs are assembled: written plain (no dictionary, statistics or compression: float
# outputs gain little from them), 6 ms a 256 x 2,048-float block against 32 ms with pyarrow's defaults, 14 % larger
PART_WRITE_OPTIONS = {"use_dictionary": False, "write_statistics": False, "compression": "none"}


def write_part(path: Path, table) -> None:
    """``table`` as the Parquet file ``path``, atomically (a part is whole or absent, whoever is killed when)."""
    import pyarrow.parquet as pq
    tmp = path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.tmp")
    try:
        pq.write_table(table, tmp, **PART_WRITE_OPTIONS)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def binary_rows(column):
    """Each value of a (large_)binary Arrow column as a read-only uint8 array over the column's own buffer: no copy
    (``to_pylist`` copied each block's 38.5 MB of pixels into a Python bytes object: 24 ms a block in the model actor,
    whose one CPU bounds a GPU's throughput)."""
    import pyarrow as pa
    if not (pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type)):
        raise TypeError(f"binary_rows reads a binary or large_binary column, not {column.type}")
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    for arr in chunks:
        width = np.int64 if pa.types.is_large_binary(arr.type) else np.int32
        offsets = np.frombuffer(arr.buffers()[1], dtype=width)[arr.offset:arr.offset + len(arr) + 1]
        values = arr.buffers()[2]
        for k in range(len(arr)):
            start, end = int(offsets[k]), int(offsets[k + 1])
            yield np.frombuffer(values, np.uint8, count=end - start, offset=start) if end > start else \
                np.empty(0, np.uint8)


class ModelWorker:
    """Model stage (a Ray actor): loads the model once from the file bytes in the object store, then scores decoded
    blocks and writes each one's outputs as its Parquet part (``part_table``) into ``parts_dir``; returns one small
    record per block: ``block, rows, part`` (the file name) and ``data`` (the part's Parquet bytes only when this
    node cannot see ``parts_dir``: the driver then writes it)."""

    def __init__(self, model_ref: list, file_name: str, spec, kind: str, factory: str | None, device: str,
                 embeddings: bool, batch_size: int | None, n_threads: int, parts_dir: str, marker: str,
                 write_parts: bool = True, delay_s: float = 0.0):
        import torch

        from ..model.models import load_model
        from ..model.pipeline import _EmbeddingTap
        from ..model.runtime import runtime_settings
        if device == "cpu":
            torch.set_num_threads(max(1, int(n_threads)))
        data = model_ref[0]
        if not isinstance(data, bytes):     # an object reference (on the cluster); bytes in a test
            import ray
            data = ray.get(data)
        self.folder = tempfile.mkdtemp(prefix="di-model-")
        path = Path(self.folder) / file_name
        path.write_bytes(data)
        self.model = load_model(path, spec, factory=factory, device=device, kind=kind)
        self.tap = _EmbeddingTap(self.model.module) if embeddings else None
        self.settings = runtime_settings(self.model.device.type, batch_size=batch_size,
                                         max_batch=self.model.max_batch, decoder="pillow")
        self.parts_dir = Path(parts_dir)
        # the driver's marker file seen from here: the parts folder is shared with the driver (else: send the bytes)
        self.write = bool(write_parts) and (self.parts_dir / marker).is_file()
        self.delay_s = float(delay_s)

    def __call__(self, batch):
        import pyarrow as pa
        records = {"block": [], "rows": [], "part": [], "data": []}
        small = {name: batch.column(name).to_pylist() for name in ("block", "part", "image_ids", "errors")}
        for r, flat in enumerate(binary_rows(batch.column("pixels"))):
            if self.delay_s:
                time.sleep(self.delay_s)
            ids = small["image_ids"][r]
            pixels = flat.reshape(len(ids), *self.model.spec.input_shape)
            logits, emb, errors = forward_pixels(self.model, pixels, small["errors"][r], self.settings, self.tap)
            table = part_table(ids, errors, logits, emb)
            name = small["part"][r]
            data = None
            if self.write:
                write_part(self.parts_dir / name, table)
            else:
                import pyarrow.parquet as pq
                sink = pa.BufferOutputStream()
                pq.write_table(table, sink, **PART_WRITE_OPTIONS)
                data = sink.getvalue().to_pybytes()
            for k, v in (("block", small["block"][r]), ("rows", len(ids)), ("part", name), ("data", data)):
                records[k].append(v)
        return pa.table({"block": pa.array(records["block"], pa.int64()), "rows": pa.array(records["rows"], pa.int64()),
                         "part": pa.array(records["part"], pa.string()),
                         "data": pa.array(records["data"], pa.large_binary())})


def _placement(ray, options: dict) -> dict:
    """How the model actors are placed, from what the cluster has: one ``num_gpus=1`` actor per GPU, else CPU actors
    on half the CPUs (the other half decode)."""
    resources = ray.cluster_resources()
    n_gpus = int(resources.get("GPU", 0))
    if n_gpus >= 1:
        return {"device": "cuda", "num_gpus": 1, "num_cpus": 1, "decode_cpus": 1,
                "concurrency": int(options["model_workers"] or n_gpus)}
    n_cpus = int(resources.get("CPU", 1))
    if n_cpus < 2:          # one CPU: the model and the decoding share it (a whole CPU each would wait forever)
        return {"device": "cpu", "num_gpus": 0, "num_cpus": 0.5, "decode_cpus": 0.5, "concurrency": 1}
    per = max(1, int(options["cpus_per_model_worker"]))
    n = options["model_workers"] or max(1, (n_cpus // 2) // per)
    return {"device": "cpu", "num_gpus": 0, "num_cpus": per, "decode_cpus": 1, "concurrency": int(n)}


def plan_blocks(n: int, rows_per_block: int) -> list[tuple[int, int]]:
    """The blocks of a run: ``(first row, end row)`` of each ``rows_per_block`` consecutive rows."""
    step = max(1, int(rows_per_block))
    return [(s, min(s + step, n)) for s in range(0, n, step)]


def part_name(run_key: str, tag: str, start: int, image_ids: Sequence[str]) -> str:
    """A block's part file name: its first row and a hash of the run's key, the settings ``tag`` and its image ids."""
    h = hashlib.blake2b(digest_size=12)
    h.update(f"{PART_VERSION}\0{run_key}\0{tag}\0{start}".encode())
    for i in image_ids:
        h.update(b"\0" + str(i).encode("utf-8", "surrogateescape"))
    return f"part-{start:012d}-{h.hexdigest()}.parquet"


def _finished(path: Path, n_rows: int) -> bool:
    """Whether ``path`` is a whole part of ``n_rows`` rows (its name already hashes its image ids; parts are written
    atomically, so only the file's footer is read: a damaged part is scored again, never fatal)."""
    import pyarrow.parquet as pq
    if not path.is_file():
        return False
    try:
        return pq.read_metadata(path).num_rows == n_rows
    except Exception:  # noqa: BLE001 - unreadable: score the block again
        return False


def assemble(parts_dir: Path, names: Sequence[str], blocks: Sequence[tuple[int, int]], n_classes: int,
             emb_limit_bytes: float = float("inf"), emb_path: Path | None = None):
    """The parts, read one at a time in row order, into ``(logits (N, C) float32, embeddings (N, D) float32 or
    None, errors)``: what ``pipeline.model_outputs`` returns. Embeddings larger than ``emb_limit_bytes`` go to a
    memory-mapped ``emb_path`` (.npy) instead of memory. Rows of a part without embeddings (no image of the block
    scored) are NaN, as locally."""
    import pyarrow.parquet as pq
    n = blocks[-1][1] if blocks else 0
    d = None
    for name in names:                      # the embedding width, from the parts' schemas (no data read)
        schema = pq.read_schema(parts_dir / name)
        if "embedding" in schema.names:
            d = schema.field("embedding").type.list_size
            break
    logits = np.empty((n, n_classes), dtype=np.float32)
    emb = None
    if d is not None:
        if n * d * 4 > emb_limit_bytes and emb_path is not None:
            emb = np.lib.format.open_memmap(emb_path, mode="w+", dtype=np.float32, shape=(n, d))
        else:
            emb = np.empty((n, d), dtype=np.float32)
    errors: list[str | None] = [None] * n
    for name, (start, end) in zip(names, blocks):
        t = pq.read_table(parts_dir / name)
        if t.num_rows != end - start:
            raise ClusterError(f"the score part {parts_dir / name} holds {t.num_rows} rows, not {end - start}; "
                               "delete the folder and score again")
        logits[start:end] = _fixed_rows(t.column("logits"), n_classes)
        errors[start:end] = [e or None for e in t.column("error").to_pylist()]
        if emb is not None:
            if "embedding" in t.column_names and t.schema.field("embedding").type.list_size == d:
                emb[start:end] = _fixed_rows(t.column("embedding"), d)
            else:       # a block the model gave no embedding for (or of another width): NaN, as locally
                emb[start:end] = np.nan
        del t
    if isinstance(emb, np.memmap):
        emb.flush()
    return logits, emb, errors


def _fixed_rows(column, width: int) -> np.ndarray:
    values = column.combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return np.asarray(values, dtype=np.float32).reshape(-1, width)


def _ray_failure(cluster: str, exc: Exception) -> ClusterError:
    """A Ray error (a worker that cannot import the package or load the model, a node lost beyond the retries) as
    one line."""
    last = [ln for ln in str(exc).splitlines() if ln.strip()][-1:] or [type(exc).__name__]
    why = re.sub(r"^[\w.]+\.(\w+(Error|Exception)): ", r"\1: ", " ".join(last[0].split()))[:240]
    return ClusterError(f"scoring on the Ray cluster {cluster} failed: {why}; is dataset-inspector[cluster] installed "
                        "on every worker, with ROOT at the same path?")


def cluster_outputs(model, root, image_ids: Sequence[str], *, settings, cluster: str, embeddings: bool = True,
                    progress: Callable[[int, int], None] | None = None, cancel=None,
                    parquet_dir: Path | str | None = None, options: dict | None = None, run_key: str | None = None,
                    stats: dict | None = None):
    """``pipeline.model_outputs`` on a Ray cluster: ``(logits (N, C), embeddings (N, D) or None, errors, notes)``.

    ``cluster``: a --cluster value (``engine.parse_cluster``). ``parquet_dir``: the parts folder (kept: a re-run
    reuses its finished parts; None: a temporary folder, removed at the end). ``run_key``: what the parts were made
    for (the score cache key; None: computed here, as ``score_dataset`` computes it). ``options`` override
    CLUSTER_OPTIONS. ``stats`` (a dict) receives blocks, blocks_reused, blocks_scored, parts_sent_to_driver and
    embeddings_file (the memory-mapped .npy, or None). Raises ClusterError when the cluster cannot be used,
    ScoringCancelled when ``cancel`` fires (the finished parts stay for the next run), and the model's error when it
    fails on every image (as the local path does)."""
    from ..model.pipeline import GIVE_UP_AFTER_FAILURES, ScoringCancelled, _is_cancelled
    check_cluster(cluster)
    opts = {**CLUSTER_OPTIONS, **(options or {})}
    stats = {} if stats is None else stats
    image_ids = [str(i) for i in image_ids]
    n, n_classes = len(image_ids), len(model.spec.class_names)
    if n == 0:
        return np.zeros((0, n_classes), np.float32), None, [], []
    if _is_cancelled(cancel):
        raise ScoringCancelled("scoring cancelled")
    t0 = time.perf_counter()
    temporary = parquet_dir is None
    parts = Path(tempfile.mkdtemp(prefix="di-score-parts-")) if temporary else Path(parquet_dir)
    try:
        if run_key is None and not temporary:
            from ..model.cache import files_key, score_cache_key
            run_key = score_cache_key(model.cache_key(), model.spec, files_key(root, image_ids), embeddings, "pillow")
        parts.mkdir(parents=True, exist_ok=True)
        blocks = plan_blocks(n, opts["rows_per_block"])
        with connected(cluster) as ray, _quiet_data(ray):
            place = _placement(ray, opts)
            from ..model.runtime import runtime_settings      # the workers' device decides the default batch
            batch_size = int(opts["model_batch_size"]
                             or runtime_settings(place["device"], max_batch=model.max_batch).batch_size)
            tag = json.dumps([place["device"], batch_size, bool(embeddings)])
            names = [part_name(run_key or "", tag, s, image_ids[s:e]) for s, e in blocks]
            keep = set(names)
            # parts of other settings or files, writes cut short, markers of drivers gone (a run still going then has
            # its parts sent to its driver: slower, never wrong)
            for p in parts.iterdir():
                if p.is_file() and p.name not in keep and p.name.startswith(("part-", ".part-", ".driver-")):
                    p.unlink(missing_ok=True)
            todo = [k for k, (s, e) in enumerate(blocks) if not _finished(parts / names[k], e - s)]
            done = n - sum(blocks[k][1] - blocks[k][0] for k in todo)
            stats.update(blocks=len(blocks), blocks_reused=len(blocks) - len(todo), blocks_scored=0,
                         parts_sent_to_driver=0)
            if progress is not None and done:
                progress(done, n)
            if todo:
                _score_blocks(ray, model, root, image_ids, blocks, names, todo, parts, place, batch_size, embeddings,
                              opts, cluster, cancel, progress, done, n, stats)
        emb_path = None if temporary else parts.parent / EMBEDDINGS_FILE
        if emb_path is not None:
            emb_path.unlink(missing_ok=True)
        logits, emb, errors = assemble(parts, names, blocks, n_classes, opts["embeddings_in_memory_bytes"],
                                       emb_path if emb_path is not None else parts / EMBEDDINGS_FILE)
        # (in a temporary folder: mapped, then unlinked with the folder below; the mapping stays valid)
        stats["embeddings_file"] = str(emb_path) if isinstance(emb, np.memmap) and emb_path is not None else None
    finally:
        if temporary:
            shutil.rmtree(parts, ignore_errors=True)
    failed = [e for e in errors if e and e.startswith("the model failed")]
    scored = sum(1 for e in errors if not e)
    if scored == 0 and failed and len(failed) >= min(n, GIVE_UP_AFTER_FAILURES):
        raise RuntimeError(failed[0])
    notes = [f"scored on the Ray cluster {cluster}: {place['concurrency']} model worker(s) on "
             f"{'GPU' if place['num_gpus'] else 'CPU'}, Pillow decoding on CPU workers, "
             f"{time.perf_counter() - t0:.1f} s"]
    if stats["blocks_reused"]:
        notes.append(f"{stats['blocks_reused']} of {len(blocks)} blocks of {opts['rows_per_block']} images were "
                     "finished by an earlier, interrupted run: reused from their parts")
    if embeddings and emb is None and scored:
        from ..model.models import EMBEDDING_HOWTO
        notes.append("no embeddings, so the embedding near-duplicate and outlier sections are empty: the model gave "
                     f"no penultimate features; to get them, {EMBEDDING_HOWTO}")
    return logits, emb, errors, notes


def _pipeline(ray, model, root, inputs, model_ref, parts: Path, marker: str, place: dict, batch_size: int,
              embeddings: bool, opts: dict, cluster: str):
    """The Ray Data dataset: the blocks' ids -> decode tasks -> model actors (that write the parts) -> records."""
    ds = ray.data.from_arrow(inputs)
    ds = ds.map_batches(decode_block, fn_kwargs={"root": str(root), "spec": model.spec, "delay_s": BLOCK_DELAY_S},
                        batch_size=1, batch_format="pyarrow", num_cpus=place["decode_cpus"],
                        memory=DECODE_TASK_MEMORY_BYTES, max_retries=int(opts["max_retries"]))
    # the memory reservation also keeps Ray Data from fusing decoding into the model actors when both ask for the
    # same CPUs (one process would then decode and run the model in turn, and the other CPUs would idle)
    extra = {}
    if model.factory and parse_cluster(cluster)[0] == "local":
        # a --factory module in this folder: the local workers import it from here, as this process does
        import inspect_core
        path = [str(Path(inspect_core.__file__).resolve().parents[1]), os.getcwd(), os.environ.get("PYTHONPATH", "")]
        extra["runtime_env"] = {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in path if p)}}
    ds = ds.map_batches(
        ModelWorker, batch_size=1, batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=place["concurrency"]), num_cpus=place["num_cpus"],
        num_gpus=place["num_gpus"], max_restarts=int(opts["max_restarts"]),
        max_task_retries=int(opts["max_task_retries"]), **extra,
        fn_constructor_kwargs={"model_ref": model_ref, "file_name": Path(model.path).name, "spec": model.spec,
                               "kind": model.kind, "factory": model.factory, "device": place["device"],
                               "embeddings": embeddings, "batch_size": batch_size,
                               "n_threads": max(1, int(place["num_cpus"])), "parts_dir": str(parts),
                               "marker": marker,
                               "write_parts": bool(opts["workers_write_parts"]), "delay_s": BLOCK_DELAY_S})
    return ds


def _score_blocks(ray, model, root, image_ids, blocks, names, todo, parts: Path, place: dict, batch_size: int,
                  embeddings: bool, opts: dict, cluster: str, cancel, progress, done: int, n: int, stats: dict) -> None:
    """The Ray Data pipeline over the blocks ``todo``: decode tasks, then model actors that write the parts; the
    driver receives one small record per block."""
    import pyarrow as pa
    import ray.data

    from ..model.pipeline import ScoringCancelled, _is_cancelled
    marker = f".driver-{os.getpid()}-{time.time_ns()}"
    (parts / marker).touch()
    # the input: one row per block, in at most ``max_input_tables`` tables (each a Ray object the driver puts: at
    # 1e8 images, 390,625 blocks, one object per block would cost the driver minutes of puts)
    per = -(-len(todo) // max(1, int(opts["max_input_tables"])))
    inputs = []
    for g in range(0, len(todo), per):
        ks = todo[g:g + per]
        inputs.append(pa.table({
            "block": pa.array(ks, pa.int64()), "part": pa.array([names[k] for k in ks], pa.string()),
            "image_ids": pa.array([image_ids[blocks[k][0]:blocks[k][1]] for k in ks], pa.list_(pa.string()))}))
    model_ref = [ray.put(Path(model.path).read_bytes())]
    with warnings.catch_warnings():
        # Ray 2.60 takes max_retries / max_restarts / max_task_retries only as "ray_remote_args", which it warns
        # are to go in 2.64 (no named parameter yet); the pin is 2.60
        warnings.filterwarnings("ignore", message=".*ray_remote_args.* is deprecated")
        ds = _pipeline(ray, model, root, inputs, model_ref, parts, marker, place, batch_size, embeddings, opts,
                       cluster)
    batches = iter(ds.iter_batches(batch_size=None, batch_format="pyarrow"))
    finished: set[int] = set()
    try:
        for table in batches:
            for rec in table.to_pylist():
                if rec["block"] in finished:        # a block of a re-run decode task, scored again: counted once
                    continue
                finished.add(rec["block"])
                if rec["data"] is not None:         # a node that cannot see the parts folder sent the part
                    tmp = parts / f".{rec['part']}.driver.tmp"
                    tmp.write_bytes(rec["data"])
                    os.replace(tmp, parts / rec["part"])
                    stats["parts_sent_to_driver"] += 1
                stats["blocks_scored"] += 1
                done += int(rec["rows"])
                if progress is not None:
                    progress(done, n)
            if _is_cancelled(cancel):
                raise ScoringCancelled("scoring cancelled")
    except ray.exceptions.RayError as exc:
        raise _ray_failure(cluster, exc) from None
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()                 # a cancelled run stops its tasks and actors now
        (parts / marker).unlink(missing_ok=True)
    missing = [names[k] for k in todo if not (parts / names[k]).is_file()]
    if missing:
        raise ClusterError(f"{len(missing)} score part(s) the workers wrote are not in {parts} (e.g. {missing[0]}): "
                           "put the workspace on a file system every Ray node mounts at the same path, or pass "
                           "options={'workers_write_parts': False}")


def cluster_scoring(cluster: str, workspace: Path | str | None = None, options: dict | None = None,
                    stats: dict | None = None) -> Callable:
    """The ``outputs`` function for ``pipeline.score_dataset`` (``scoring_options={"outputs": ...}``) that scores on
    ``cluster``; with a workspace, each block's outputs are a Parquet part beside the score cache
    (``<workspace>/scores/<key>/parts/``), and a re-run after an interruption scores only the missing blocks.
    ``stats`` (a dict) receives ``cluster_outputs``' counts."""
    check_cluster(cluster)      # a value of the wrong form fails here, before any model is run

    def outputs(model, root, image_ids, *, settings, embeddings=True, progress=None, cancel=None):
        parquet_dir, key = None, None
        if workspace is not None:
            from ..model.cache import SCORES_DIR, files_key, score_cache_key
            key = score_cache_key(model.cache_key(), model.spec, files_key(root, image_ids), embeddings, "pillow")
            parquet_dir = Path(workspace) / SCORES_DIR / key / PARTS_DIR
        return cluster_outputs(model, root, image_ids, settings=settings, cluster=cluster, embeddings=embeddings,
                               progress=progress, cancel=cancel, parquet_dir=parquet_dir, options=options,
                               run_key=key, stats=stats)

    return outputs
