"""Scoring on a Ray cluster: ``score ROOT --model FILE --cluster local:N | auto | ray://HOST:PORT``.

The same chain as the local path, with the model's raw outputs made on the cluster: ``cluster_outputs`` stands in for
``model.pipeline.model_outputs`` (``score_dataset(..., outputs=...)``), so the cache key, the score cache, the scores
table and everything ``model.triage`` makes from it are the local path's.

On the cluster (Ray Data, streaming, with back-pressure between the stages):

1. the image ids, in blocks of ``rows_per_block``, go through ``decode_batch`` (``map_batches`` tasks, one CPU
   each): the local pipeline's own per-file code (``pipeline.ImageFiles``: resolve inside the root, Pillow decode,
   ``image_to_pixels``), one uint8 array per image, an error text instead for a bad file;
2. ``ModelWorker`` actors run the model: ``num_gpus=1`` each when the cluster has GPUs (one actor per GPU), else
   CPU actors (``num_cpus`` each, half the cluster's CPUs in all, the rest decode). The model file travels once
   through the object store, so workers need the package, not the file;
3. the driver gathers the Arrow blocks (position, error, logits, embedding), writes them as Parquet partitions
   beside the score cache (``<workspace>/scores/<key>/parts/``) and puts the rows back in the dataset's order.

Pixels are always decoded by Pillow here (the decoder in the key is "pillow"). Ray is imported only by this module's
functions, so ``score`` without ``--cluster`` never imports it. Workers read ROOT by its path: on a cluster of
several machines, ROOT must be mounted at the same path on every worker.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

CLUSTER_FORMS = "local:N (a Ray started here with N CPUs), auto (the running Ray cluster), or ray://HOST:PORT"

# defaults, as data: a caller may override any of them (``cluster_outputs(..., options={...})``)
CLUSTER_OPTIONS = {
    "rows_per_block": 256,        # image ids per input block (the unit of decode work and of a retry)
    "decode_batch_size": 32,      # images per decode call
    "model_batch_size": None,     # images per model call (None: runtime_settings' batch for the device)
    "model_workers": None,        # model actors (None: one per GPU, else half the cluster's CPUs, at least 1)
    "cpus_per_model_worker": 1,   # CPU actors: CPUs (and torch threads) each
    "write_parquet": True,        # the gathered outputs as Parquet partitions beside the score cache
}


# what one decode task reserves (a Ray resource, not a limit): its batch of pixels (32 x 224 x 224 x 3 = 4.8 MB), the
# full-size images being decoded, and headroom
DECODE_TASK_MEMORY_BYTES = 256 * 2**20


class ClusterError(RuntimeError):
    """The cluster cannot be used: a --cluster value of the wrong form, an address that does not answer, Ray not
    installed. The message names the value and what to do."""


def parse_cluster(spec: str) -> dict:
    """``{"kind": "local", "num_cpus": N}``, ``{"kind": "auto"}`` or ``{"kind": "remote", "address": "ray://h:p"}``;
    ClusterError naming the value for anything else."""
    text = str(spec or "").strip()
    m = re.fullmatch(r"local:(\d{1,4})", text)
    if m and int(m.group(1)) >= 1:
        return {"kind": "local", "num_cpus": int(m.group(1))}
    if text == "auto":
        return {"kind": "auto"}
    m = re.fullmatch(r"ray://([A-Za-z0-9.\-_]+|\[[0-9A-Fa-f:]+\]):(\d{1,5})", text)
    if m and 0 < int(m.group(2)) < 65536:
        return {"kind": "remote", "address": text}
    raise ClusterError(f"--cluster {text!r} is not a cluster address; give {CLUSTER_FORMS}")


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ClusterError("--cluster needs Ray: pip install 'dataset-inspector[cluster]' (or -r "
                           "requirements-cluster.txt)") from None
    return ray


@contextmanager
def connected(spec: str):
    """Ray connected to the cluster ``spec`` for the ``with`` block (yields the ray module). A Ray already started in
    this process is used as it is; one started here is shut down at the end. ClusterError when it cannot connect."""
    where = parse_cluster(spec)
    ray = _import_ray()
    started = False
    if not ray.is_initialized():
        kwargs = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
        if where["kind"] == "local":
            # workers import inspect_core from where this process does, and a --factory module from this folder
            import inspect_core
            package_parent = str(Path(inspect_core.__file__).resolve().parents[1])
            path = os.pathsep.join(p for p in (package_parent, os.getcwd(), os.environ.get("PYTHONPATH", "")) if p)
            kwargs.update(num_cpus=where["num_cpus"], runtime_env={"env_vars": {"PYTHONPATH": path}})
        else:
            kwargs["address"] = "auto" if where["kind"] == "auto" else where["address"]
        try:
            ray.init(**kwargs)
        except Exception as exc:  # noqa: BLE001 - Ray raises ConnectionError, ValueError, RuntimeError...
            detail = " ".join(str(exc).split())[:240]
            raise ClusterError(f"could not connect to the Ray cluster {spec}: {detail}; start it (ray start --head) "
                               f"or check the address ({CLUSTER_FORMS})") from None
        started = True
    quiet = logging.getLogger("ray.data")
    level = quiet.level
    try:
        from ray.data import DataContext    # imported before the level is set: it sets up its own loggers
        quiet.setLevel(logging.CRITICAL)    # Ray Data's progress lines and tracebacks: a failure is one ClusterError
        ctx = DataContext.get_current()
        ctx.enable_progress_bars = False
        if hasattr(ctx, "print_on_execution_start"):
            ctx.print_on_execution_start = False
        yield ray
    finally:
        quiet.setLevel(level)
        if started:
            ray.shutdown()


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


class ModelWorker:
    """Model stage (a Ray actor): loads the model once from the file bytes in the object store, then turns decode
    batches into Arrow tables ``pos, error, logits list<float32>, embedding list<float32>`` (empty list: none)."""

    def __init__(self, model_ref: list, file_name: str, spec, kind: str, factory: str | None, device: str,
                 embeddings: bool, batch_size: int | None, n_threads: int):
        import ray
        import torch

        from ..model.models import load_model
        from ..model.pipeline import _EmbeddingTap
        from ..model.runtime import runtime_settings
        if device == "cpu":
            torch.set_num_threads(max(1, int(n_threads)))
        self.folder = tempfile.mkdtemp(prefix="di-model-")
        path = Path(self.folder) / file_name
        path.write_bytes(ray.get(model_ref[0]))
        self.model = load_model(path, spec, factory=factory, device=device, kind=kind)
        self.tap = _EmbeddingTap(self.model.module) if embeddings else None
        self.settings = runtime_settings(self.model.device.type, batch_size=batch_size,
                                         max_batch=self.model.max_batch, decoder="pillow")

    def __call__(self, batch: dict):
        import pyarrow as pa
        logits, emb, errors = forward_pixels(self.model, batch["pixels"], list(batch["error"]), self.settings,
                                             self.tap)
        n = len(logits)
        emb_rows = [[] for _ in range(n)] if emb is None else list(emb)
        return pa.table({
            "pos": pa.array(np.asarray(batch["pos"], dtype=np.int64)),
            "error": pa.array([e or None for e in errors], type=pa.string()),
            "logits": pa.array(list(logits), type=pa.list_(pa.float32())),
            "embedding": pa.array(emb_rows, type=pa.list_(pa.float32())),
        })


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


def _gather(tables, n: int, n_classes: int):
    """Arrow blocks from the model stage -> (logits (n, C), embeddings (n, D) or None, errors) in row order."""
    logits = np.full((n, n_classes), np.nan, dtype=np.float32)
    errors: list[str | None] = [None] * n
    emb = None
    for t in tables:
        pos = t.column("pos").to_numpy()
        for p, e in zip(pos.tolist(), t.column("error").to_pylist()):
            errors[p] = e or None
        lg = t.column("logits").combine_chunks()
        logits[pos] = np.asarray(lg.flatten().to_numpy(zero_copy_only=False), np.float32).reshape(len(pos), n_classes)
        em = t.column("embedding").combine_chunks()
        lengths = np.asarray(em.value_lengths().to_numpy(zero_copy_only=False))
        have = lengths > 0
        if have.any():
            d = int(lengths[have][0])
            if emb is None:
                emb = np.full((n, d), np.nan, dtype=np.float32)
            values = np.asarray(em.flatten().to_numpy(zero_copy_only=False), np.float32)
            same = have & (lengths == d)
            if same.all():
                emb[pos] = values.reshape(len(pos), d)
            else:       # a row whose width differs (never from one model) is left NaN, as the local path does
                starts = np.r_[0, np.cumsum(lengths)[:-1]]
                for k in np.nonzero(same)[0]:
                    emb[pos[k]] = values[starts[k]:starts[k] + d]
    return logits, emb, errors


def cluster_outputs(model, root, image_ids: Sequence[str], *, settings, cluster: str, embeddings: bool = True,
                    progress: Callable[[int, int], None] | None = None, cancel=None,
                    parquet_dir: Path | str | None = None, options: dict | None = None):
    """``pipeline.model_outputs`` on a Ray cluster: ``(logits (N, C), embeddings (N, D) or None, errors, notes)``.

    ``cluster``: local:N | auto | ray://HOST:PORT (``parse_cluster``). ``parquet_dir``: where the gathered blocks
    are written as ``part-NNNNN.parquet`` (emptied first; None: not written). ``options`` override CLUSTER_OPTIONS.
    Raises ClusterError when the cluster cannot be used, ScoringCancelled when ``cancel`` fires, and the model's
    error when it fails on every image (as the local path does)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..model.pipeline import GIVE_UP_AFTER_FAILURES, ScoringCancelled, _is_cancelled
    opts = {**CLUSTER_OPTIONS, **(options or {})}
    n, n_classes = len(image_ids), len(model.spec.class_names)
    if n == 0:
        return np.zeros((0, n_classes), np.float32), None, [], []
    t0 = time.perf_counter()
    out_dir = Path(parquet_dir) if parquet_dir is not None and opts["write_parquet"] else None
    if out_dir is not None:
        shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.mkdir(parents=True, exist_ok=True)
    with connected(cluster) as ray:
        import ray.data
        place = _placement(ray, opts)
        ids = pa.table({"pos": pa.array(np.arange(n, dtype=np.int64)), "image_id": pa.array(list(map(str, image_ids)))})
        step = max(1, int(opts["rows_per_block"]))
        blocks = [ids.slice(s, step) for s in range(0, n, step)]
        model_ref = [ray.put(Path(model.path).read_bytes())]
        ds = ray.data.from_arrow(blocks)
        ds = ds.map_batches(decode_batch, fn_kwargs={"root": str(root), "spec": model.spec},
                            batch_size=int(opts["decode_batch_size"]), batch_format="numpy",
                            num_cpus=place["decode_cpus"], memory=DECODE_TASK_MEMORY_BYTES)
        # the memory reservation also keeps Ray Data from fusing decoding into the model actors when both ask for the
        # same CPUs (one process would then decode and run the model in turn, and the other CPUs would idle)
        # the workers' device decides the default batch (128 on a GPU, as locally), not this process's
        from ..model.runtime import runtime_settings
        batch_size = opts["model_batch_size"] or runtime_settings(place["device"], max_batch=model.max_batch).batch_size
        ds = ds.map_batches(
            ModelWorker, batch_size=int(batch_size), batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=place["concurrency"]), num_cpus=place["num_cpus"],
            num_gpus=place["num_gpus"],
            fn_constructor_kwargs={"model_ref": model_ref, "file_name": Path(model.path).name, "spec": model.spec,
                                   "kind": model.kind, "factory": model.factory, "device": place["device"],
                                   "embeddings": embeddings, "batch_size": int(batch_size),
                                   "n_threads": max(1, int(place["num_cpus"]))})
        tables, done = [], 0
        try:
            for k, table in enumerate(ds.iter_batches(batch_size=None, batch_format="pyarrow")):
                if _is_cancelled(cancel):
                    raise ScoringCancelled("scoring cancelled")
                tables.append(table)
                if out_dir is not None:
                    pq.write_table(table, out_dir / f"part-{k:05d}.parquet")
                done += table.num_rows
                if progress is not None:
                    progress(done, n)
        except ray.exceptions.RayError as exc:
            # a worker that cannot import the package or load the model, a node lost beyond Ray's retries
            last = [ln for ln in str(exc).splitlines() if ln.strip()][-1:] or [type(exc).__name__]
            why = re.sub(r"^[\w.]+\.(\w+(Error|Exception)): ", r"\1: ", " ".join(last[0].split()))[:240]
            raise ClusterError(f"scoring on the Ray cluster {cluster} failed: {why}; "
                               "is dataset-inspector[cluster] installed on every worker, with ROOT at the same "
                               "path?") from None
    logits, emb, errors = _gather(tables, n, n_classes)
    failed = [e for e in errors if e and e.startswith("the model failed")]
    scored = sum(1 for e in errors if not e)
    if scored == 0 and failed and len(failed) >= min(n, GIVE_UP_AFTER_FAILURES):
        raise RuntimeError(failed[0])
    notes = [f"scored on the Ray cluster {cluster}: {place['concurrency']} model worker(s) on "
             f"{'GPU' if place['num_gpus'] else 'CPU'}, Pillow decoding on CPU workers, "
             f"{time.perf_counter() - t0:.1f} s"]
    if embeddings and emb is None and scored:
        from ..model.models import EMBEDDING_HOWTO
        notes.append("no embeddings, so the embedding near-duplicate and outlier sections are empty: the model gave "
                     f"no penultimate features; to get them, {EMBEDDING_HOWTO}")
    return logits, emb, errors, notes


def cluster_scoring(cluster: str, workspace: Path | str | None = None, options: dict | None = None) -> Callable:
    """The ``outputs`` function for ``pipeline.score_dataset`` (``scoring_options={"outputs": ...}``) that scores on
    ``cluster``; with a workspace, the gathered outputs are written as Parquet beside the score cache."""
    parse_cluster(cluster)      # a value of the wrong form fails here, before any model is run

    def outputs(model, root, image_ids, *, settings, embeddings=True, progress=None, cancel=None):
        parquet_dir = None
        if workspace is not None:
            from ..model.cache import SCORES_DIR, files_key, score_cache_key
            key = score_cache_key(model.cache_key(), model.spec, files_key(root, image_ids), embeddings, "pillow")
            parquet_dir = Path(workspace) / SCORES_DIR / key / "parts"
        return cluster_outputs(model, root, image_ids, settings=settings, cluster=cluster, embeddings=embeddings,
                               progress=progress, cancel=cancel, parquet_dir=parquet_dir, options=options)

    return outputs
