"""The score cache: a model's raw outputs on a dataset's image files, saved in the workspace.

Keyed by (model file hash, preprocessing, image files, embeddings, JPEG decoder) so reopening is instant; the
embedding kNN findings are kept beside the scores they come from.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING
from collections.abc import Sequence

import numpy as np
import pandas as pd

from . import gpu_decode
from .. import storage
from ..paths import resolve_inside
from .preprocess import Preprocess

if TYPE_CHECKING:
    from .table import ScoreResult

SCORES_DIR = "scores"
# A cluster run (cluster/score.py) writes its block outputs as Parquet parts into <key>/PARTS_DIR (removed once the
# outputs are saved here) and, above its memory limit, its embeddings as the memory-mapped <key>/EMBEDDINGS_FILE,
# which the cache then keeps as they are instead of copying them into outputs.npz.
PARTS_DIR = "parts"
EMBEDDINGS_FILE = "embeddings.npy"
CACHE_VERSION = 4   # 4: TorchScript models without an embed method give embeddings; 3: centre crop from its box


def files_key(root: Path | str, image_ids: Sequence[str]) -> str:
    """Fingerprint of the image files: ids + sizes + mtimes (a changed file changes the key)."""
    digest = hashlib.sha256()
    remote = storage.is_remote(root)
    for image_id in image_ids:
        path = resolve_inside(root, image_id)
        try:
            if remote and path is not None:      # an object: its size and version stamp (ETag)
                version = storage.remote_version(root, image_id)
                stamp = f"{version.size_bytes}:{version.stamp}"
            else:
                st = path.stat() if path is not None else None
                stamp = f"{st.st_size}:{st.st_mtime_ns}" if st else "outside"
        except (OSError, ValueError):
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


def _is_file(array, path: Path) -> bool:
    """Whether ``array`` is a memory map of the file ``path``."""
    name = getattr(array, "filename", None)
    return isinstance(array, np.memmap) and name is not None and Path(name).resolve() == path.resolve()


def save_cache(workspace: Path | str, key: str, image_ids, logits, embeddings, errors, meta: dict) -> Path:
    """Save one scored result under ``<workspace>/scores/<key>/``. Embeddings memory-mapped from that folder's
    EMBEDDINGS_FILE stay there (flushed, not copied); a cluster run's parts are removed once the outputs are in."""
    folder = _cache_dir(workspace, key)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"logits": np.asarray(logits, dtype=np.float32)}
    mapped = folder / EMBEDDINGS_FILE
    if _is_file(embeddings, mapped):
        embeddings.flush()
    else:
        if embeddings is not None:
            arrays["embeddings"] = np.asarray(embeddings, dtype=np.float32)
        mapped.unlink(missing_ok=True)           # a stale one from an earlier run of this key
    tmp = folder / f"outputs.{os.getpid()}.{threading.get_ident()}.tmp.npz"    # one per writer
    np.savez(tmp, **arrays)
    os.replace(tmp, folder / "outputs.npz")
    (folder / "rows.json").write_text(json.dumps({"image_ids": list(image_ids), "errors": list(errors)}))
    (folder / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
    shutil.rmtree(folder / PARTS_DIR, ignore_errors=True)     # the outputs are saved: the parts are not needed
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
        if embeddings is None and (folder / EMBEDDINGS_FILE).is_file():
            embeddings = np.load(folder / EMBEDDINGS_FILE, mmap_mode="r", allow_pickle=False)
        image_ids, errors = list(rows["image_ids"]), list(rows["errors"])
        if not isinstance(meta, dict) or logits.ndim != 2 or len(image_ids) != len(logits) \
                or len(errors) != len(image_ids) or (embeddings is not None and len(embeddings) != len(logits)):
            return None
    except (OSError, ValueError, KeyError, TypeError, EOFError, AttributeError, IndexError, zipfile.BadZipFile):
        return None
    return image_ids, logits, embeddings, errors, meta


# The embedding checks' findings, kept beside the scores they come from: the kNN takes about a minute at
# 1,000,000 images, so it runs once per scored result, not once per app session. Versioned with the search.
# v2: the near-duplicate pairs by the calibrated cut (embed_dups.ratio_candidates), was a fixed distance <= 0.001
FINDINGS_FILES = ("embedding_duplicates.v2.parquet", "embedding_outliers.v2.parquet")


def embedding_findings_cached(result: ScoreResult, workspace: Path | str | None):
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

