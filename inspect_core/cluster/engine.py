"""The scan's per-file read on a Ray cluster: the same pure per-chunk function as the local pool
(``filescan.scan_chunk``), run as Ray tasks, each finished chunk kept as a Parquet partition in the workspace.

    rows, desc = read_files(root, image_ids, ws, "local:2")    # what scanner._read_files returns

Why Ray tasks (``ray.remote(max_retries=...)``) and not ``ray.data.from_items(chunks).map_batches(...)``:
- retries: a task whose worker process dies (killed, out of memory, node lost) is re-run by Ray up to
  ``RETRIES["max_retries"]`` times; only that chunk is read again. Ray Data retries too, but a failed block fails the
  whole streaming pipeline once its retries are spent; here a chunk that still fails is read in the driver (as the
  local pool does) and the scan goes on.
- back-pressure: at most ``in_flight_per_cpu`` x the cluster's CPUs chunks are submitted at once (``ray.wait``),
  so the object store holds a bounded number of results whatever the dataset size.
- reuse: each chunk's result is written by the driver as ``<ws>/cluster_parts/<key>.parquet`` the moment it arrives,
  key = a hash of the chunk's paths, sizes, mtimes and filescan's cache tag. A re-run (after a crash, a Ctrl-C,
  or with the file cache gone) reads those partitions and submits only the rest. Ray Data's writers name their
  files themselves and would need a second pass to map them back to chunks.
- sketches: each task also returns the property sketches of its rows (``sketch.property_sketches``), kept in its
  partition's Parquet metadata; the driver sums them (``ReadParts.sketch``) for the statistics step.
The driver writes the partitions (not the workers). The global steps (cluster/steps.py) then send the partitions'
paths, not their columns: their tasks read the files, so a workspace on a file system the nodes share saves the
driver's memory (where a worker cannot open them, the steps send the columns). Workers need the dataset (a shared
file system or object storage) and Ray with the libraries of ``requirements-cluster.txt``; inspect_core itself is
uploaded by the driver (``runtime_env``).
"""
from __future__ import annotations

import hashlib
import logging
import os
import socket
import time
import zlib
from collections import deque
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..loader_base import DatasetError

log = logging.getLogger(__name__)

PARTS_DIR = "cluster_parts"
SKETCH_KEY = b"inspect_core.property_sketches"     # a partition's sketch (zlib'd JSON) in its Parquet metadata
# Task size and retries as data (callers may override). A task reads ``chunks_per_task`` of the local pool's
# chunks (scanner._chunks, 96 files each but for the tail): about 300 files keep Ray's per-task cost (1-5 ms)
# under 1% of a task's read time. Each chunk is read by itself, exactly as the local pool reads it: the statistics
# of a stack of images can differ in the last bit with the stack's make-up (BLAS blocking), and one changed pHash
# bit can change a finding, so the cluster reads the same stacks as a local scan with ``local_workers`` workers
# (None: this machine's cores, the local scan's default). Retries re-run a task whose worker died.
RETRIES = {"max_retries": 3, "in_flight_per_cpu": 2, "chunks_per_task": 3, "local_workers": None,
           "connect_timeout_s": 5.0, "ship_package": True}
# Test-only hook: seconds each task sleeps before reading, so that a test can kill a worker mid-chunk.
CHUNK_DELAY_S = 0.0
TASK_NAME = "inspect_core_read_chunk"        # the worker's process title while it reads (ray::<name>)

Progress = Callable[[int, int], None]


class ClusterError(DatasetError):
    """The Ray cluster cannot be reached or started; the message names the address and what to do."""


def parse_cluster(spec: str) -> tuple[str, object]:
    """``"local:N"`` -> ("local", N); ``"auto"`` -> ("auto", None); ``"ray://HOST:PORT"`` -> ("client", (host, port));
    ``"HOST:PORT"`` (a head node's GCS address, for a driver on a cluster node) -> ("gcs", (host, port)).
    ValueError (a usage error) for anything else."""
    spec = str(spec).strip()
    usage = (f"--cluster '{spec}': give local:N (a Ray on this machine with N worker CPUs), auto (the Ray cluster "
             "this machine belongs to), ray://HOST:PORT (Ray Client) or HOST:PORT (the head node's GCS address)")
    if spec == "auto":
        return "auto", None
    if spec.startswith("local:"):
        try:
            n = int(spec[6:])
        except ValueError:
            raise ValueError(usage) from None
        if n < 1:
            raise ValueError(usage)
        return "local", n
    kind, rest = ("client", spec[6:]) if spec.startswith("ray://") else ("gcs", spec)
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in host:
        raise ValueError(usage)
    return kind, (host.strip("[]"), int(port))


def _check_reachable(spec: str, host: str, port: int, timeout_s: float) -> None:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ClusterError(
            f"cannot reach the Ray cluster at {spec} ({exc.strerror or exc}); start its head node there "
            f"(`ray start --head --port=6379 --ray-client-server-port=10001`), check the host and port, or scan "
            f"on this machine with --cluster local:N (or without --cluster)") from None


def _package_path() -> str:
    """The folder holding this inspect_core, for the PYTHONPATH of a local Ray's workers: they import the same
    code as the driver, checked out or installed."""
    return str(Path(__file__).resolve().parents[2])


def runtime_env(kind: str) -> dict:
    """What the workers run with: a local Ray's (this machine's) import this very inspect_core through PYTHONPATH;
    a separate cluster's get it uploaded (``py_modules``: the package folder, about 1 MB, unpacked on each node),
    so that its nodes need only Ray and the libraries (``requirements-cluster.txt``), not this code at this path."""
    if kind == "local":
        return {"env_vars": {"PYTHONPATH": _package_path()}}
    return {"py_modules": [str(Path(__file__).resolve().parents[1])]} if RETRIES["ship_package"] else {}


def _auto_address() -> str:
    """``--cluster auto``: the cluster ``RAY_ADDRESS`` names (checked reachable first: Ray would wait minutes for
    a closed port), else the one this machine runs (Ray's "auto")."""
    address = os.environ.get("RAY_ADDRESS", "").strip()
    if not address or address == "auto":
        return "auto"
    try:
        _, (host, port) = parse_cluster(address)
    except (ValueError, TypeError):
        raise ClusterError(f"--cluster auto: RAY_ADDRESS={address!r} is not HOST:PORT (a head node's GCS address) "
                           "or ray://HOST:PORT; set it to one, or unset it on a cluster node") from None
    _check_reachable(f"{address} (RAY_ADDRESS, --cluster auto)", host, port, RETRIES["connect_timeout_s"])
    return address


@contextmanager
def connected(spec: str):
    """Ray connected for the duration: reuses a Ray this process already joined (a notebook, a test), else
    joins or starts the one ``spec`` names and leaves it again at the end."""
    kind, arg = parse_cluster(spec)
    try:
        import ray
    except ImportError:
        raise ClusterError(f"--cluster {spec} needs Ray: pip install 'dataset-inspector[cluster]'") from None
    if ray.is_initialized():
        yield ray
        return
    quiet = {"logging_level": logging.ERROR, "log_to_driver": False}
    try:
        if kind == "local":
            ray.init(num_cpus=arg, include_dashboard=False, **quiet, runtime_env=runtime_env(kind))
        elif kind == "auto":
            ray.init(address=_auto_address(), **quiet, runtime_env=runtime_env(kind))
        else:
            host, port = arg
            _check_reachable(spec, host, port, RETRIES["connect_timeout_s"])
            ray.init(address=spec if kind == "client" else f"{host}:{port}", **quiet, runtime_env=runtime_env(kind))
    except ClusterError:
        raise
    except Exception as exc:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ValueError...
        what = "start a local Ray" if kind == "local" else f"join the Ray cluster at {spec}"
        hint = ("is a cluster running on this machine (`ray start --head`)? or use --cluster local:N"
                if kind == "auto" else "check the address and that the same Ray version runs there"
                if kind != "local" else "see the Ray logs under /tmp/ray")
        if kind == "client" and "grpc" in str(exc).lower():
            hint = "Ray Client needs pip install 'ray[client]' (or run on a cluster node with --cluster auto)"
        elif kind != "local" and any(w in str(exc).lower() for w in ("auth", "token", "timeout")):
            hint += (", and when the cluster uses token authentication (`ray start`'s default), set "
                     "RAY_AUTH_MODE=token and RAY_AUTH_TOKEN to its token (or put it in ~/.ray/auth_token)")
        raise ClusterError(f"cannot {what}: {' '.join(str(exc).split())[:300]}; {hint}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


@dataclass
class ReadParts:
    """What a cluster read leaves for the global steps: per task (consecutive rows of the read), its partition file
    (None: not written) and its number of rows; the merged property sketches of the partitions written
    (``sketch.PropertySketches``); ``ids_digest`` of the files read, in order. The steps' tasks read the
    partitions' columns themselves; the driver keeps no per-row list (at 10^8 images a list of paths is 8 GB)."""
    paths: list
    n_rows: list
    sketch: object
    ids_digest: str


def ids_digest(ids) -> str:
    """An order-sensitive digest of a sequence of image ids (a list, an array, a pandas column): the steps check
    with it that the scanned table's rows are the read's, in order, without keeping the read's list."""
    hashed = pd.util.hash_pandas_object(pd.Series(np.asarray(ids, dtype=object), dtype=object), index=False)
    return hashlib.blake2b(hashed.to_numpy().tobytes(), digest_size=16).hexdigest()


class _SketchSum:
    """The partitions' sketches summed as they arrive, a batch at a time (``PropertySketches.merged``)."""

    def __init__(self, batch: int = 256):
        from .sketch import PropertySketches
        self._cls, self._batch, self._pending, self._total = PropertySketches, batch, [], PropertySketches()

    def add(self, sketch_json: str) -> None:
        self._pending.append(self._cls.from_json(sketch_json))
        if len(self._pending) >= self._batch:
            self.total()

    def total(self):
        if self._pending:
            self._total = self._cls.merged([self._total, *self._pending])
            self._pending = []
        return self._total


class Session:
    """One Ray connection for a whole cluster scan (the read and the global steps), made on first use (a scan whose
    files are all cached and whose steps have nothing to do never starts Ray) and left by ``close`` (``connected``).
    """

    def __init__(self, spec: str):
        parse_cluster(spec)                 # a usage error before anything is read
        self.spec = spec
        self._stack = ExitStack()
        self._ray = None
        self.read_parts: ReadParts | None = None      # set by read_files

    @property
    def ray(self):
        if self._ray is None:
            self._ray = self._stack.enter_context(connected(self.spec))
        return self._ray

    def close(self) -> None:
        self._ray = None
        self._stack.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextmanager
def _ray_of(cluster: str | Session):
    if isinstance(cluster, Session):
        yield cluster.ray
    else:
        with connected(cluster) as ray:
            yield ray


# ----------------------------------------------------------------------------- one chunk

def chunk_table(cols: dict) -> pa.Table:
    """A chunk's columns (``filescan.scan_chunk``) as one Arrow table, the descriptor as fixed-size binary:
    what a task returns and what a partition holds."""
    from .. import filescan
    data = {c: pa.array(cols[c], type=pa.string()) for c in filescan.TEXT_COLUMNS}
    for c in (*filescan.NUMERIC_COLUMNS, *filescan.BOOL_COLUMNS):
        data[c] = pa.array(cols[c])
    d = np.ascontiguousarray(cols["desc"], dtype=np.int8)
    data["desc"] = pa.FixedSizeBinaryArray.from_buffers(pa.binary(filescan.DESC_DIM), len(d),
                                                        [None, pa.py_buffer(d.tobytes())])
    return pa.table(data)


class RootNotVisible(RuntimeError):
    """A worker cannot see the dataset root: every file would read as missing."""


def read_chunk(root: str, chunks: list[list[str]], delay_s: float = 0.0) -> pa.Table:
    """The task body: its chunks read one by one, each exactly as the local pool reads it, as one table.
    Raises RootNotVisible when the root folder does not exist on this node (a path, not a bucket URL)."""
    from .. import filescan
    if "://" not in root and not os.path.isdir(root):
        raise RootNotVisible(f"the dataset root {root} is not a folder on Ray node {socket.gethostname()}; put the "
                             "dataset on a file system every node mounts at the same path, or in a bucket")
    if delay_s:
        time.sleep(delay_s)
    with filescan.one_blas_thread():
        return pa.concat_tables([chunk_table(filescan.scan_chunk(root, c)) for c in chunks])


def read_task(root: str, chunks: list[list[str]], delay_s: float = 0.0) -> tuple[pa.Table, str]:
    """The Ray task: ``read_chunk``'s table and its property sketches (``sketch.property_sketches``, as JSON),
    made while the rows are in the worker's memory: the driver merges sketches, it never re-splits the table."""
    table = read_chunk(root, chunks, delay_s)
    return table, table_sketch(table).to_json()


def table_sketch(table: pa.Table):
    """A read table's ``sketch.PropertySketches`` (the property check's values of its rows)."""
    from .sketch import FRAME_COLUMNS, property_sketches
    return property_sketches(table.select(list(FRAME_COLUMNS)).to_pandas())


def plan_tasks(image_ids: list[str], local_workers: int | None = None, chunks_per_task: int | None = None
               ) -> list[list[list[str]]]:
    """The tasks of a read: each a list of consecutive local chunks (``scanner._chunks``)."""
    from ..scanner import _chunks
    workers = local_workers or RETRIES["local_workers"] or os.cpu_count() or 1
    per = max(1, int(chunks_per_task or RETRIES["chunks_per_task"]))
    chunks = _chunks(image_ids, workers)
    return [chunks[k:k + per] for k in range(0, len(chunks), per)]


def chunk_key(image_ids: list[str], sizes: np.ndarray, mtimes: np.ndarray, tag: str) -> str:
    """The partition name of a chunk: changes when a path, a size, an mtime or filescan's code changes."""
    h = hashlib.blake2b(digest_size=16)
    h.update(tag.encode())
    for i, s, m in zip(image_ids, sizes.tolist(), mtimes.tolist()):
        h.update(f"\0{i}\0{s}\0{m}".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def _read_part(path: Path, n_rows: int) -> tuple[pa.Table, str] | None:
    """A finished partition and its sketch (JSON, from the file's metadata; made here for a partition without)."""
    try:
        table = pq.read_table(path)
        if table.num_rows != n_rows:
            return None
        sketch = (table.schema.metadata or {}).get(SKETCH_KEY)
        table = table.replace_schema_metadata(None)
        return table, (zlib.decompress(sketch).decode() if sketch else table_sketch(table).to_json())
    except Exception as exc:  # noqa: BLE001 - a damaged partition is read again, never fatal
        log.warning("ignoring unreadable partition %s: %s", path, exc)
        return None


def _write_part(path: Path, table: pa.Table, sketch_json: str) -> bool:
    """The partition with its sketch in the file's metadata (one file: the two cannot disagree); False when it
    could not be written (that chunk's rows are then sent by the driver to the steps)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(table.replace_schema_metadata({SKETCH_KEY: zlib.compress(sketch_json.encode(), 6)}), tmp)
        os.replace(tmp, path)
        return True
    except OSError as exc:       # a partition that cannot be written costs only a slower re-run
        log.warning("could not write partition %s: %s", path, exc)
        tmp.unlink(missing_ok=True)
        return False


def _drop_stale_parts(parts: Path, keep: set[str]) -> None:
    """Partitions of earlier reads are removed once a read completes: its rows are then in the file cache, and
    the folder would otherwise grow with every changed file."""
    for p in parts.glob("*.parquet"):
        if p.stem not in keep:
            p.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- the read

def read_files(root: Path, image_ids: list[str], ws: Path, cluster: str | Session, progress: Progress | None = None,
               done_before: int = 0, total: int | None = None, stats: dict | None = None,
               local_workers: int | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """Per-file rows and descriptors for ``image_ids`` (same order), read on the Ray cluster ``cluster`` (a spec, or
    the scan's ``Session``);
    chunks already in ``ws/cluster_parts`` are not read again. ``stats`` (a dict) receives files_from_partitions,
    partitions_written and chunks_read_in_driver. ``local_workers``: read the chunks of a local scan with that many
    workers (``plan_tasks``; None: the local default)."""
    from .. import filescan
    from ..scanner import _cache_tag, _stat_all
    total = len(image_ids) if total is None else total
    stats = {} if stats is None else stats
    parts = Path(ws) / PARTS_DIR
    parts.mkdir(parents=True, exist_ok=True)
    root_s = str(root)
    tasks = plan_tasks(image_ids, local_workers)
    chunks = [[i for c in t for i in c] for t in tasks]            # the files of each task, in order
    sizes, mtimes = _stat_all(root, image_ids)
    tag = _cache_tag()
    starts = np.cumsum([0] + [len(c) for c in chunks])
    keys = [chunk_key(c, sizes[starts[k]:starts[k + 1]], mtimes[starts[k]:starts[k + 1]],
                      f"{tag}:{[len(x) for x in tasks[k]]}") for k, c in enumerate(chunks)]
    tables: list[pa.Table | None] = [None] * len(chunks)      # each task's rows, without their descriptors
    desc = np.empty((int(starts[-1]), filescan.DESC_DIM), dtype=np.int8)    # every row's, copied in on arrival
    on_disk = [False] * len(chunks)
    sketches = _SketchSum()
    done = done_before
    from_parts = 0
    for k, key in enumerate(keys):
        path = parts / f"{key}.parquet"
        if path.is_file():
            found = _read_part(path, len(chunks[k]))
            if found is not None:
                table, sketch = found
                tables[k] = take_desc(table, desc[starts[k]:starts[k + 1]])
                del table
                on_disk[k] = True
                sketches.add(sketch)
                done += len(chunks[k])
                from_parts += len(tables[k].column("content_hash").drop_null())
    if progress and from_parts:
        progress(done, total)
    todo = [k for k, t in enumerate(tables) if t is None]
    written = in_driver = 0
    if todo:
        with _ray_of(cluster) as ray:
            task = ray.remote(num_cpus=1, max_retries=int(RETRIES["max_retries"]))(read_task).options(name=TASK_NAME)
            cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
            window = max(1, cpus * int(RETRIES["in_flight_per_cpu"]))
            pending: dict = {}
            queue = deque(todo)
            while queue or pending:
                while queue and len(pending) < window:       # back-pressure: a bounded number in flight
                    k = queue.popleft()
                    pending[task.remote(root_s, tasks[k], CHUNK_DELAY_S)] = k
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    k = pending.pop(ref)
                    try:
                        table, sketch = ray.get(ref)
                    except Exception as exc:  # noqa: BLE001 - retries spent: read this chunk here, as the pool does
                        cause = exc if isinstance(exc, RootNotVisible) else getattr(exc, "cause", None)
                        if isinstance(cause, RootNotVisible):     # every chunk would fail alike: stop, say why
                            raise ClusterError(str(cause)) from None
                        log.warning("chunk %d failed on the cluster (%s); reading it here", k, exc)
                        table, sketch = read_task(root_s, tasks[k])
                        in_driver += 1
                    on_disk[k] = _write_part(parts / f"{keys[k]}.parquet", table, sketch)
                    # a task's table lives in Ray's object store (zero-copy): the rows are copied out, so that the
                    # store frees it now, not when the whole read is gathered (it held every task's table, 10^8
                    # images: 40 GB pinned)
                    tables[k] = owned(take_desc(table, desc[starts[k]:starts[k + 1]]))
                    del table
                    if on_disk[k]:
                        sketches.add(sketch)
                    written += 1
                    done += len(chunks[k])
                    if progress:
                        progress(done, total)
    stats.update(files_from_partitions=from_parts, partitions_written=written, chunks_read_in_driver=in_driver)
    _drop_stale_parts(parts, set(keys))
    if isinstance(cluster, Session):             # for the global steps (cluster/steps.py): paths, not columns
        cluster.read_parts = ReadParts([str(parts / f"{key}.parquet") if d else None for key, d in zip(keys, on_disk)],
                                       [len(c) for c in chunks], sketches.total(), ids_digest(image_ids))
    if not tables:
        empty = filescan.scan_chunk(root_s, [])
        return chunk_table(empty).drop_columns(["desc"]).to_pandas(), empty["desc"]
    return gather(tables, desc)


def take_desc(table: pa.Table, out: np.ndarray) -> pa.Table:
    """Copies ``table``'s descriptors into ``out`` (its rows, in order) and returns the table without them: the read
    keeps each task's descriptors once, in the one array it returns, from the moment the task's table arrives."""
    from .. import filescan
    at = 0
    for chunk in table.column("desc").chunks:
        m = len(chunk)
        if m:
            raw = np.frombuffer(chunk.buffers()[1], dtype=np.int8, count=(chunk.offset + m) * filescan.DESC_DIM)
            out[at:at + m] = raw[chunk.offset * filescan.DESC_DIM:].reshape(m, filescan.DESC_DIM)
            at += m
    if at != len(out):
        raise ValueError(f"{at} descriptors for {len(out)} rows")
    return table.drop_columns(["desc"])


def owned(table: pa.Table) -> pa.Table:
    """A copy of ``table`` in this process's memory (a table from ``ray.get`` points into Ray's object store)."""
    return table.take(pa.array(np.arange(table.num_rows, dtype=np.int64)))


def gather(tables: list[pa.Table], desc: np.ndarray | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """The read's tables (emptied here) as one rows frame and one descriptor array. ``desc``: their descriptors,
    taken already (``take_desc``; the tables without them); else taken here, table by table (each copied once,
    straight into the array: not the whole column joined first and then copied again)."""
    from .. import filescan
    if desc is None:
        desc = np.empty((sum(t.num_rows for t in tables), filescan.DESC_DIM), dtype=np.int8)
        at = 0
        for k, t in enumerate(tables):
            tables[k] = take_desc(t, desc[at:at + t.num_rows])
            at += t.num_rows
    table = pa.concat_tables(tables)
    tables.clear()
    rows = table.to_pandas()
    return rows, desc
