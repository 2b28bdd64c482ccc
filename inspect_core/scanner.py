"""The scan: load, read every file once (in parallel, cached by path/size/mtime), run the checks, save.

    result = scan("path/to/dataset")          # ScanResult
    result.images, result.findings, result.pairs, result.balance, result.summary
"""
from __future__ import annotations

import json
import logging
import multiprocessing
import os
import stat
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from . import filescan, storage
from .checks import REGISTRY, all_check_names, family_of, registry_key
from .checks.annotation import BOX_CHECKS
from .checks.balance import balance_table
from .checks.context import CheckContext, near_rule
from .limits import LIMITS
from .loaders import Dataset, DatasetError, load_dataset
from .paths import is_within
from .schema import FINDING_COLUMNS, finding_frame, issue_column
from .workspace import workspace_dir

log = logging.getLogger(__name__)

CACHE_FILE = "filecache.parquet"
SCAN_DIR = "scan"
IN_PROCESS_MAX = 300            # below this many files to read, worker processes cost more than they save
CHUNK_FILES = 96
CACHE_SLICE_ROWS = 65536

Progress = Callable[[int, int], None]

BOX_STAT_COLUMNS = ("n_boxes", "box_area_frac_mean", "box_area_frac_min", "box_area_frac_max", "n_box_classes")
DERIVED_COLUMNS = ("aspect_ratio", "n_findings")
META_PREFIX = "meta_"


def scan_columns() -> set[str]:
    """Every column the scan adds to the images table: per-file signals, box statistics, derived columns and
    one issue column per check. Dataset metadata never takes one of these names (``namespace_metadata``)."""
    return ({*signal_columns(), *BOX_STAT_COLUMNS, *DERIVED_COLUMNS,
             *(issue_column(c) for c in all_check_names())} - {"image_id"})


def namespace_metadata(images: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """The loader's images table with every metadata column named like a scan column renamed to
    ``meta_<name>`` (``meta_<name>_2``... when that is taken too), and the renames {new: old}. A manifest column
    ``format`` or ``is_blurry`` thus neither breaks the scan nor is overwritten by it."""
    reserved = scan_columns()
    taken = {str(c) for c in images.columns}
    renames: dict[str, str] = {}
    for c in images.columns:
        if str(c) in reserved:
            new, k = f"{META_PREFIX}{c}", 2
            while new in taken or new in reserved:
                new, k = f"{META_PREFIX}{c}_{k}", k + 1
            taken.add(new)
            renames[new] = str(c)
    if not renames:
        return images, {}
    out = images.rename(columns={old: new for new, old in renames.items()})
    return out, renames


def _renames_note(renames: dict[str, str]) -> str:
    shown = ", ".join(f"{old} -> {new}" for new, old in list(renames.items())[:8])
    more = f" and {len(renames) - 8} more" if len(renames) > 8 else ""
    return f"metadata columns named like scan columns were renamed: {shown}{more}"


@dataclass
class ScanResult:
    dataset: Dataset
    workspace: Path
    images: pd.DataFrame
    findings: pd.DataFrame
    pairs: pd.DataFrame
    annotations: pd.DataFrame
    balance: pd.DataFrame
    summary: dict
    fingerprint: str
    desc: np.ndarray = field(repr=False, default=None)

    @property
    def root(self) -> Path:
        return self.dataset.root

    def issues(self, check_or_family: str) -> pd.DataFrame:
        """Findings of one check or of a whole family."""
        f = self.findings
        return f[(f["check"] == check_or_family) | (f["family"] == check_or_family)]

    def save(self, out_dir: Path | str) -> Path:
        """Write images.parquet, findings.parquet/.csv, pairs.parquet, annotations.parquet, balance.parquet,
        summary.json into ``out_dir`` (never inside the dataset)."""
        out = Path(out_dir)
        if is_within(out, self.root):
            raise DatasetError(f"refusing to write into the dataset folder ({out}); choose an output folder outside it")
        out.mkdir(parents=True, exist_ok=True)
        _write_parquet(self.images, out / "images.parquet")
        _write_parquet(self.findings, out / "findings.parquet")
        from .export import safe_csv_bytes
        (out / "findings.csv").write_bytes(safe_csv_bytes(self.findings))   # paths, labels: never formulas
        _write_parquet(self.pairs, out / "pairs.parquet")
        _write_parquet(self.annotations, out / "annotations.parquet")
        _write_parquet(self.balance, out / "balance.parquet")
        (out / "summary.json").write_text(json.dumps(self.summary, indent=2, default=str))
        return out


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    tmp = _tmp_name(path)
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def _tmp_name(path: Path) -> Path:
    """A temporary name of this writer's own: two scans of one dataset at once must not share one."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


# ----------------------------------------------------------------------------- file cache

_FILESCAN_HASH = None


def _cache_tag() -> str:
    """What a cached file row depends on besides the file: the code that reads files (a hash of filescan.py,
    so a change there is never a manual version bump to forget) and the file-size cap (a file over the cap is
    cached as file_too_large; raising the cap must read it)."""
    global _FILESCAN_HASH
    if _FILESCAN_HASH is None:
        import hashlib
        _FILESCAN_HASH = hashlib.blake2b(Path(filescan.__file__).read_bytes(), digest_size=8).hexdigest()
    return f"{_FILESCAN_HASH}:{LIMITS['max_file_bytes']}"


def signal_columns() -> list[str]:
    """The per-file columns a file's row holds (filescan's signals), in order."""
    return [*filescan.TEXT_COLUMNS, *filescan.NUMERIC_COLUMNS, *filescan.BOOL_COLUMNS]


def _read_cache(ws: Path) -> tuple[pd.DataFrame, np.ndarray] | None:
    path = ws / CACHE_FILE
    if not path.is_file():
        return None
    try:
        table = pq.read_table(path)
        meta = table.schema.metadata or {}
        if meta.get(b"scan_version") != _cache_tag().encode():
            return None
        desc_col = table.column("desc").combine_chunks()
        desc = np.frombuffer(desc_col.buffers()[1], dtype=np.int8).reshape(-1, filescan.DESC_DIM)[: len(desc_col)]
        missing = [c for c in signal_columns() if c not in table.column_names]
        if missing:
            # rows cached before a signal existed would give it as NaN: those files are read again
            log.info("the scan cache lacks %s: reading its files again", ", ".join(missing))
            return None
        df = table.select(signal_columns()).to_pandas()
        return df, desc.copy()
    except Exception as exc:  # noqa: BLE001 - a damaged cache is rebuilt, never fatal
        log.warning("ignoring unreadable scan cache %s: %s", path, exc)
        return None


def _write_cache(ws: Path, rows: pd.DataFrame, desc: np.ndarray) -> None:
    keep = ~rows["error_kind"].isin(["missing_file", "path_outside_root"]).to_numpy()
    tmp = _tmp_name(ws / CACHE_FILE)
    writer = None
    positions = np.nonzero(keep)[0]
    try:
        # in slices, so that no second full copy of the table exists at once
        for s0 in range(0, max(len(positions), 1), CACHE_SLICE_ROWS):
            part = positions[s0:s0 + CACHE_SLICE_ROWS]
            table = pa.Table.from_pandas(rows.iloc[part].reset_index(drop=True), preserve_index=False)
            d = np.ascontiguousarray(desc[part])
            table = table.append_column("desc", pa.FixedSizeBinaryArray.from_buffers(
                pa.binary(filescan.DESC_DIM), len(d), [None, pa.py_buffer(d.tobytes())]))
            table = table.replace_schema_metadata({"scan_version": _cache_tag()})
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table)
        writer.close()
        writer = None
        os.replace(tmp, ws / CACHE_FILE)
    finally:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)          # nothing left behind when the write failed


def _write_cache_logged(ws: Path, rows: pd.DataFrame, desc: np.ndarray) -> None:
    """_write_cache for a background thread: a cache that cannot be written costs only a slower next scan."""
    try:
        _write_cache(ws, rows, desc)
    except Exception as exc:  # noqa: BLE001
        log.warning("could not write the scan cache in %s: %s", ws, exc)


def _stat_all(root: Path, image_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Size and mtime of each file; -1 (never a cache hit) for files missing, outside the root, or not regular.
    A remote root: size and version stamp from its listing (one LIST for the whole dataset, no request per file)."""
    sizes = np.full(len(image_ids), -1, np.int64)
    mtimes = np.zeros(len(image_ids), np.int64)
    if storage.is_remote(root):
        return storage.listed_versions(root, image_ids)
    root_s = str(root)
    dir_cache: dict = {}
    for k, i in enumerate(image_ids):
        try:
            path = filescan.inside_root(root_s, i, dir_cache)
            if path is None:
                continue
            st = os.stat(path)
            if stat.S_ISREG(st.st_mode):
                sizes[k], mtimes[k] = st.st_size, st.st_mtime_ns
        except (OSError, ValueError):
            pass
    return sizes, mtimes


def _columns_to_table(cols: dict) -> pa.Table:
    """A chunk's columns as an Arrow table: compact at once (the workers' Python string lists are freed),
    and 100x cheaper than a pandas frame per chunk (0.1 ms vs 13 ms for 96 rows, measured)."""
    data = {c: pa.array(cols[c], type=pa.string()) for c in filescan.TEXT_COLUMNS}
    for c in (*filescan.NUMERIC_COLUMNS, *filescan.BOOL_COLUMNS):
        data[c] = cols[c]
    return pa.table(data)


def _chunks(image_ids: list[str], n_workers: int) -> list[list[str]]:
    """Chunks of CHUNK_FILES paths, shrinking towards the end (to a quarter) so that the workers finish
    together: with equal chunks one worker could be left reading a whole chunk alone."""
    out, k, n = [], 0, len(image_ids)
    while k < n:
        left = n - k
        size = max(CHUNK_FILES // 4, min(CHUNK_FILES, left // (2 * max(1, n_workers))))
        out.append(image_ids[k:k + size])
        k += size
    return out


def _read_files(root: Path, image_ids: list[str], workers: int | None, progress: Progress | None,
                done_before: int, total: int, cluster: str | None = None, ws: Path | None = None,
                stats: dict | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    if cluster is not None:     # the same chunks on a Ray cluster (inspect_core/cluster/engine.py)
        from .cluster import engine
        return engine.read_files(root, image_ids, ws, cluster, progress, done_before, total, stats, workers)
    root_s = str(root)
    chunks = _chunks(image_ids, workers if workers is not None else (os.cpu_count() or 1))
    results: list[tuple[int, pa.Table, np.ndarray]] = []

    def keep(k: int, cols: dict) -> None:
        results.append((k, _columns_to_table(cols), cols["desc"]))
    done = done_before
    n_workers = workers if workers is not None else (os.cpu_count() or 1)
    if len(image_ids) <= IN_PROCESS_MAX or n_workers <= 1:
        with filescan.one_blas_thread():
            for k, chunk in enumerate(chunks):
                keep(k, filescan.scan_chunk(root_s, chunk))
                done += len(chunk)
                if progress:
                    progress(done, total)
    else:
        # fork on Linux: workers start in milliseconds (spawn cost about 1.5 s more per 2,000-image scan,
        # bench/bench_scan.py); they run only filescan (numpy + Pillow), never torch or Streamlit code.
        ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        if ctx.get_start_method() == "fork":
            filescan.warm_up()          # forked workers inherit what it imports and builds
        with ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx, initializer=filescan.worker_init) as pool:
            futures = {pool.submit(filescan.scan_chunk, root_s, chunk): k for k, chunk in enumerate(chunks)}
            for fut in as_completed(futures):
                # pop: a future holds its chunk's raw result (Python lists) for as long as it is referenced
                k = futures.pop(fut)
                try:
                    keep(k, fut.result())
                except Exception as exc:  # noqa: BLE001 - a worker that died: read that chunk here
                    log.warning("worker failed on chunk %d (%s); reading it in-process", k, exc)
                    keep(k, filescan.scan_chunk(root_s, chunks[k]))
                done += len(chunks[k])
                if progress:
                    progress(done, total)
    results.sort(key=lambda t: t[0])
    if not results:
        empty = filescan.scan_chunk(root_s, [])
        return _columns_to_table(empty).to_pandas(), empty["desc"]
    desc = np.concatenate([r[2] for r in results])
    table = pa.concat_tables([r[1] for r in results])
    results.clear()
    return table.to_pandas(), desc


def read_all_files(root: Path, image_ids: list[str], ws: Path, workers: int | None = None,
                   progress: Progress | None = None, cache_in_background: bool = False, cluster: str | None = None
                   ) -> tuple[pd.DataFrame, np.ndarray, dict]:
    """Per-file rows for ``image_ids`` (same order), reading only files new or changed since the cached scan.

    The file cache is written before returning, or, with ``cache_in_background``, by a thread returned in
    the stats under "cache_writer" (the caller joins it)."""
    cached = _read_cache(ws)
    total = len(image_ids)
    if cached is None:
        # a cold scan: every listed path goes to the readers, which report missing, outside-the-root and
        # non-regular paths themselves (without opening them); no stat pass is needed to find cache hits
        hit = np.zeros(total, bool)
        todo, not_files = list(image_ids), []
        order = None
    else:
        sizes, mtimes = _stat_all(root, image_ids)
        want = pd.DataFrame({"image_id": pd.Series(image_ids, dtype="str"), "file_size_bytes": sizes,
                             "mtime_ns": mtimes})
        cdf, _ = cached
        key = cdf[["image_id", "file_size_bytes", "mtime_ns"]].copy()
        key["_pos"] = np.arange(len(key))
        m = want.merge(key, on=["image_id", "file_size_bytes", "mtime_ns"], how="left")
        hit_pos = m["_pos"].fillna(-1).to_numpy(np.int64)
        hit = (hit_pos >= 0) & (sizes >= 0)
        # missing, outside-the-root and non-regular paths are never read (read_file reports them without opening)
        todo = [i for i, h, size in zip(image_ids, hit, sizes) if not h and size >= 0]
        not_files = [i for i, size in zip(image_ids, sizes) if size < 0]
        # rows come back as: cache hits, then files read, then paths that are not files
        order = np.concatenate([np.nonzero(hit)[0], np.nonzero(~hit & (sizes >= 0))[0], np.nonzero(sizes < 0)[0]])
    if progress:
        progress(int(hit.sum()), total)
    t0 = time.perf_counter()
    part_stats: dict = {}
    new_rows, new_desc = _read_files(root, todo + not_files, workers if len(todo) else 1, progress,
                                     int(hit.sum()), total, cluster if len(todo) else None, ws, part_stats)
    read_s = time.perf_counter() - t0
    # files actually read (a cold scan also sends missing and outside-the-root paths to the readers)
    n_read = int(new_rows["content_hash"].notna().sum()) - part_stats.get("files_from_partitions", 0)
    if cached is not None and hit.any():
        cdf, cdesc = cached
        merged = pd.concat([cdf.iloc[hit_pos[hit]], new_rows], ignore_index=True)
        merged_desc = np.concatenate([cdesc[hit_pos[hit]], new_desc])
    else:
        merged, merged_desc = new_rows, new_desc
    cached = new_rows = new_desc = None
    if order is None or np.array_equal(order, np.arange(len(order))):  # in listing order already: no copy
        rows, desc = merged, merged_desc
    else:
        inv = np.empty_like(order)
        inv[order] = np.arange(len(order))
        rows = merged.iloc[inv].reset_index(drop=True)
        desc = merged_desc[inv]
    del merged, merged_desc
    stats = {"files_read": n_read, "files_from_cache": int(hit.sum()), "read_s": round(read_s, 3), **part_stats}
    if len(todo):
        if cache_in_background:
            # the cache is written while the checks run (Arrow and Parquet work outside the GIL)
            writer = threading.Thread(target=_write_cache_logged, args=(ws, rows, desc), name="scan-cache-writer")
            writer.start()
            stats["cache_writer"] = writer
        else:
            _write_cache(ws, rows, desc)
    return rows, desc, stats


# ----------------------------------------------------------------------------- assembling

def _boxes_to_px(ds: Dataset, images: pd.DataFrame) -> pd.DataFrame:
    ann = ds.annotations.copy()
    if not ds.boxes_normalised or ann.empty:
        return ann
    size = images.set_index("image_id")[["width_px", "height_px"]]
    w = ann["image_id"].map(size["width_px"]).astype(float)
    h = ann["image_id"].map(size["height_px"]).astype(float)
    ann["box_x_px"] *= w
    ann["box_w_px"] *= w
    ann["box_y_px"] *= h
    ann["box_h_px"] *= h
    return ann


def box_stats(images: pd.DataFrame, ann: pd.DataFrame) -> pd.DataFrame:
    """Per-image box statistics: n_boxes, box area as a fraction of the image (mean, min, max), n_box_classes."""
    out = pd.DataFrame({"image_id": images["image_id"]})
    if ann.empty:
        for c in BOX_STAT_COLUMNS:
            out[c] = 0 if c.startswith("n_") else np.nan
        return out.drop(columns="image_id")
    size = images.set_index("image_id")
    area_img = (ann["image_id"].map(size["width_px"]).astype(float)
                * ann["image_id"].map(size["height_px"]).astype(float))
    frac = (ann["box_w_px"].clip(lower=0) * ann["box_h_px"].clip(lower=0)) / area_img.where(area_img > 0)
    g = ann.assign(frac=frac).groupby("image_id")
    stats = pd.DataFrame({
        "n_boxes": g.size(),
        "box_area_frac_mean": g["frac"].mean(),
        "box_area_frac_min": g["frac"].min(),
        "box_area_frac_max": g["frac"].max(),
        "n_box_classes": g["category_id"].nunique(),
    })
    out = out.join(stats, on="image_id")
    out["n_boxes"] = out["n_boxes"].fillna(0).astype(int)
    out["n_box_classes"] = out["n_box_classes"].fillna(0).astype(int)
    return out.drop(columns="image_id")


def run_checks(ctx: CheckContext, extra: pd.DataFrame | None = None, done_elsewhere: dict | None = None
               ) -> pd.DataFrame:
    """Every registered family's findings on ``ctx``, with ``extra`` (the loader's problems) first.
    ``done_elsewhere``: {family: (a findings frame made elsewhere, the rest of the family to run here: fn(ctx) or
    None)}, for a cluster scan whose per-row checks ran on the workers (cluster/rowchecks.py); those families are
    not run here on every row, their findings take the family's place in the same order."""
    frames = [] if extra is None or extra.empty else [extra]
    done_elsewhere = done_elsewhere or {}
    for spec in REGISTRY.values():
        if spec.family in done_elsewhere:
            found, rest = done_elsewhere[spec.family]
            more = rest(ctx) if rest is not None else []
            parts = [f for f in (found, finding_frame(more) if more else None) if f is not None and len(f)]
            df = finding_frame(pd.concat(parts, ignore_index=True)) if parts else None
        else:
            rows = spec.fn(ctx)
            df = finding_frame(rows) if rows else None
        if df is not None:
            df["family"] = spec.family
            frames.append(df)
    if not frames:
        return finding_frame([])
    findings = pd.concat(frames, ignore_index=True)
    findings["family"] = [f if isinstance(f, str) and f != "<NA>" else (family_of(c) or "")
                          for f, c in zip(findings["family"], findings["check"])]
    # one row per (image, check): several problems of one kind on one image (three malformed label lines)
    # are merged, keeping every detail and the highest score
    dup = findings.duplicated(["image_id", "check"], keep=False)
    if dup.any():
        merged = (findings[dup].groupby(["image_id", "check"], sort=False)
                  .agg(family=("family", "first"), score=("score", "max"),
                       detail=("detail", lambda d: "; ".join(dict.fromkeys(d.astype(str)))),
                       group_id=("group_id", "first")).reset_index())
        findings = pd.concat([findings[~dup], merged], ignore_index=True)
    return finding_frame(findings.sort_values(["family", "check", "image_id"]).reset_index(drop=True))


def _fingerprint(images: pd.DataFrame, findings: pd.DataFrame) -> str:
    cols = [c for c in ("image_id", "label", "split", "file_size_bytes", "mtime_ns") if c in images]
    h1 = int(pd.util.hash_pandas_object(images[cols], index=False).sum()) & ((1 << 64) - 1)
    h2 = int(pd.util.hash_pandas_object(findings[["image_id", "check"]], index=False).sum()) & ((1 << 64) - 1)
    return f"{h1:016x}{h2:016x}"


def _code_version() -> str:
    """A hash of the code that decides findings besides the registered checks (``registry_key`` covers those):
    a saved scan made by other code is not reused."""
    import hashlib

    h = hashlib.blake2b(digest_size=8)
    here = Path(__file__).resolve().parent
    for p in sorted([here / "filescan.py", here / "neardup.py", here / "scanner.py", here / "limits.py",
                     here / "storage.py", *here.glob("loader*.py"), *(here / "cluster").glob("*.py"),
                     *(here / "checks").glob("*.py")]):
        h.update(p.read_bytes())
    return h.hexdigest()


_CODE_VERSION = None


def _input_fingerprint(ds: Dataset, rows: pd.DataFrame, rule: dict) -> str:
    global _CODE_VERSION
    if _CODE_VERSION is None:
        _CODE_VERSION = _code_version()
    parts = [_CODE_VERSION, registry_key(), json.dumps(rule, sort_keys=True), ds.format, json.dumps(ds.classes),
             str(ds.has_boxes), str(ds.has_image_labels), json.dumps(LIMITS, sort_keys=True)]
    for df in (ds.images, rows[["file_size_bytes", "mtime_ns"]], ds.annotations, ds.problems):
        if len(df):
            parts.append(f"{int(pd.util.hash_pandas_object(df.astype('str'), index=False).sum()) & ((1 << 64) - 1):x}")
        parts.append(str(len(df)))
    return "-".join(parts)


def scan(root, format: str = "auto", manifest=None, boxes=None, workspace=None, workers: int | None = None,
         progress: Progress | None = None, near_threshold: float | None = None, cluster: str | None = None
         ) -> ScanResult:
    """Load the dataset at ``root``, read every new or changed file once, run every check, save the result
    in the workspace and return it. ``workspace`` is the base folder for workspaces (default: the user's cache).
    ``near_threshold``: the near-duplicate cosine cut for images over 48 px (checks.context.near_rule; the
    other cuts move with it); None keeps the default, set for precision. ``cluster``: read the files and find the
    pairs and statistics on Ray ("local:N", "auto", "ray://HOST:PORT"; inspect_core/cluster/) instead of here."""
    t0 = time.perf_counter()
    ds = load_dataset(root, format=format, manifest=manifest, boxes=boxes)
    ds.images, renames = namespace_metadata(ds.images)
    ds.images.attrs["metadata_renames"] = renames
    ws = workspace_dir(ds.root, workspace)
    image_ids = ds.images["image_id"].tolist()
    if cluster is not None:     # one Ray session for the read and the global steps (inspect_core/cluster/steps.py)
        from .cluster.steps import ClusterSteps
        cluster = ClusterSteps(cluster)
    cache_writer = None
    try:
        *read, read_stats = read_all_files(ds.root, image_ids, ws, workers, progress, cache_in_background=True,
                                           cluster=cluster)           # read = [rows, desc], a list
        del image_ids  # a Python string per image (about 80 MB a million)
        cache_writer = read_stats.pop("cache_writer", None)
        return _check_and_save(ds, ws, read, read_stats, t0, near_rule(near_threshold), cluster)
    finally:
        if cache_writer is not None:
            cache_writer.join()
        if cluster is not None:
            cluster.close()


def _check_and_save(ds: Dataset, ws: Path, read: list, read_stats: dict, t0: float, rule: dict,
                    steps=None) -> ScanResult:
    """The second half of ``scan``: run the checks on the rows read, save and return the result. ``read`` is
    [rows, desc], emptied here so that the rows table is freed once it has become part of ``images``.
    ``steps``: a cluster scan's global steps (cluster.steps.ClusterSteps: pairs and statistics made on Ray)."""
    rows, desc = read
    read.clear()
    filescan.release_freed_memory()
    input_fp = _input_fingerprint(ds, rows, rule)
    if read_stats["files_read"] == 0:
        # nothing on disk changed since the saved scan: its findings still hold
        prev = load_scan(ws)
        if prev is not None and prev.summary.get("input_fingerprint") == input_fp:
            prev.dataset = ds
            prev.desc = desc
            prev.summary.update(read_stats, reused_saved_scan=True,
                                elapsed_s=round(time.perf_counter() - t0, 3))
            return prev
    images = pd.concat([ds.images.reset_index(drop=True), rows.drop(columns=["image_id"])], axis=1)
    del rows  # the per-file rows now live in images only (memory: one copy of the table, not three)
    images["aspect_ratio"] = images["width_px"] / images["height_px"].where(images["height_px"] > 0)
    ann = _boxes_to_px(ds, images)
    for name, column in box_stats(images, ann).items():
        images[name] = column.to_numpy()
    ctx = CheckContext(images=images, desc=desc, annotations=ann, classes=ds.classes,
                       has_image_labels=ds.has_image_labels, has_boxes=ds.has_boxes, near_rule=rule,
                       pair_source=steps, column_stats=steps.column_stats(images) if steps else None)
    # a cluster scan: the per-row checks ran on the workers, each on its partitions' rows (cluster/rowchecks.py)
    findings = run_checks(ctx, ds.problems, steps.row_findings(images, ctx) if steps else None)
    filescan.release_freed_memory()
    per_image = findings[findings["image_id"] != ""]
    for name in [c for spec in REGISTRY.values() if not spec.dataset_level for c in spec.checks]:
        images[issue_column(name)] = images["image_id"].isin(per_image.loc[per_image["check"] == name, "image_id"])
    images["n_findings"] = images["image_id"].map(per_image["image_id"].value_counts()).fillna(0).astype(int)
    pairs = ctx.pairs.drop(columns=["a", "b"])
    if ds.has_boxes and len(ann):
        ann = pd.concat([ann, ctx.box_flags[[issue_column(c) for c in BOX_CHECKS]]], axis=1)
    balance = balance_table(images, ds.classes) if ds.has_image_labels else pd.DataFrame()
    elapsed = time.perf_counter() - t0
    summary = {
        "root": str(ds.root), "format": ds.format, "workspace": str(ws),
        "n_images": int(len(images)), "n_classes": len(ds.classes), "classes": ds.classes,
        "splits": {str(k): int(v) for k, v in images["split"].value_counts(dropna=False).items()},
        "n_boxes": int(len(ann)), "has_image_labels": ds.has_image_labels, "has_boxes": ds.has_boxes,
        "n_findings": int(len(findings)), **(steps.summary() if steps else {}),
        "findings_per_family": {k: int(v) for k, v in findings["family"].value_counts().items()},
        "findings_per_check": {k: int(v) for k, v in findings["check"].value_counts().items()},
        "n_duplicate_pairs": int(len(pairs)), **read_stats, "elapsed_s": round(elapsed, 3),
        "reused_saved_scan": False, "input_fingerprint": input_fp, "near_rule": rule,
        "notes": ([_renames_note(ds.images.attrs["metadata_renames"])]
                  if ds.images.attrs.get("metadata_renames") else []),
    }
    result = ScanResult(dataset=ds, workspace=ws, images=images, findings=findings, pairs=pairs,
                        annotations=ann, balance=balance, summary=summary,
                        fingerprint=_fingerprint(images, findings), desc=desc)
    result.save(ws / SCAN_DIR)
    (ws / SCAN_DIR / "dataset.json").write_text(json.dumps({
        "root": str(ds.root), "format": ds.format, "classes": ds.classes,
        "has_image_labels": ds.has_image_labels, "has_boxes": ds.has_boxes,
        "box_categories": ds.box_categories, "fingerprint": result.fingerprint,
        "dataset_columns": list(ds.images.columns),
        "metadata_renames": ds.images.attrs.get("metadata_renames", {})}))
    from .lazy_kept import prepare_saved_scan   # a big scan: what the app's pages need over every row, made now
    try:
        prepare_saved_scan(ws, findings=result.findings)   # the findings in hand, not read back
    except Exception as exc:   # the scan stands; the app's pages compute on demand instead
        log.warning("preparing the app's data for the big scan in %s failed: %s", ws, exc)
    return result


def load_scan(workspace: Path | str, lazy: bool | None = None) -> ScanResult | None:
    """The last scan saved in a workspace folder (as returned by workspace_dir), or None. From
    ``lazy_table.LAZY_MIN_ROWS`` rows on (or ``lazy=True``) its images table stays on disk, memory-mapped, and is
    read into pandas only when ``images`` is asked for (``lazy_table.LazyScanResult``)."""
    from .lazy_table import read_saved_scan
    return read_saved_scan(Path(workspace), SCAN_DIR, lazy)


__all__ = ["scan", "load_scan", "ScanResult", "read_all_files", "box_stats", "run_checks", "FINDING_COLUMNS"]
