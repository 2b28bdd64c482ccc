"""The scan on Ray against the local pool, and the measured inputs of a plan for 100,000,000 images (issue 15).

    .venv/bin/python bench/bench_cluster.py --n 20000 --runs 3        # throughput + per-worker memory + bytes
    .venv/bin/python bench/bench_cluster.py --n 20000 --runs 3 --engines ray:2   # one engine (driver memory)
    .venv/bin/python bench/bench_cluster.py --sent WORKSPACE          # what the driver sends the exact/stats steps
    .venv/bin/python bench/bench_cluster.py --recall                  # banded near pairs vs the local path
    .venv/bin/python bench/bench_cluster.py --steps --n 20000 --runs 3   # the global steps on Ray vs here
    .venv/bin/python bench/bench_cluster.py --index 20000,200000 --runs 3   # the sharded index vs local, banding
    .venv/bin/python bench/bench_cluster.py --index 200000 --fit-only --runs 3   # its k-means fit: driver vs tasks

Throughput: N small PNGs (32-64 px crops of skimage.data photos, tests/cluster_support.py) made once; each engine
in its own process per run, the three interleaved run by run: the local pool (default workers), Ray with 1 worker
CPU (local:1) and with 2 (local:2); each run a cold scan in a fresh workspace (every file read, every check, saved).
Ray's start is timed apart; the scan reuses it. Reported: median wall time of the whole scan and of its read phase
(summary read_s), img/s, peak RSS of a Ray worker while reading (VmHWM of ray::<task> processes), peak RSS of the
driver (the scanning process), Parquet partition bytes per image, and a cluster scan's global steps (summary
global_steps times_s: exact duplicates, near duplicates, statistics).

--steps: the scan's global steps on a scanned folder (files cached), run by run interleaved in one process: the
duplicate pairs as a local scan finds them (checks/context.py: pandas groups, neardup.near_pairs) against a cluster
scan's (cluster/steps.py on a local Ray of 2 worker CPUs: hash shuffle, pHash banding; and the banding alone in
this process, banded_here), and the property check's
statistics (numpy on the whole column against sketches + brackets of 16 parts on Ray). Medians of --runs.

--index: near pairs on N crop descriptors made in memory (tests/cluster_support.crop_descriptors): the local
inverted-file index against the same index sharded (cluster/dups.near_pairs_sharded), in this process and on a
local Ray of 2 worker CPUs (checked identical every run), and banding at the rule's cut (up to 50,000: quadratic);
cells, pairs compared per image, bytes shuffled per image. First, at each N, the top-level k-means fit (the 8
passes of neardup.ivf_centers on the projected sample) with its assignment step on the driver against tasks on Ray
(dups.kmeans_assign, threshold forced to 0; centres checked identical every run), at the index's own shape (N /
1,000 centres on up to 65,536 sample rows) and at 4,096 centres on the same rows (1e8's 1e5 centres scaled down);
--fit-only stops there.

--recall: real photos with edited copies (tests/cluster_support.make_photo_copies_folder) and the 20k crops: near
pairs of the local path (neardup.near_pairs) against the banded path (cluster/dups.py) at Hamming cuts 3, 7, 11, 15
and the rule's own (22): recall of the local pairs, extra pairs, candidates compared, time.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def import_file(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_folder(base: Path, n: int) -> Path:
    root = base / f"crops_{n}"
    if not (base / f".made_{n}").exists():
        import_file(REPO / "tests" / "cluster_support.py").make_crops_folder(root, n, seed=3, n_exact=150, n_near=150)
        (base / f".made_{n}").write_text("")
    return root


class DriverProbe:
    """The driver's own resident memory through a scan: sampled every 10 ms (VmRSS) from a thread, and the peak within
    each phase (the read, the statistics, the per-row checks, the checks with the duplicate steps, the save, the
    app's preparation), the phases marked by wrapping the functions that run them. ``start()`` before a scan,
    ``report()`` after: {rss_before_mb, phases_peak_mb: {phase: MB}}; the whole run's peak is ru_maxrss."""

    PHASES = (("inspect_core.cluster.engine", "read_files", "read"),
              ("inspect_core.cluster.steps", "ClusterSteps.column_stats", "statistics"),
              ("inspect_core.cluster.steps", "ClusterSteps.row_findings", "row_checks"),
              ("inspect_core.scanner", "run_checks", "checks"),
              ("inspect_core.scanner", "ScanResult.save", "save"),
              ("inspect_core.lazy_kept", "prepare_saved_scan", "prepare"))

    def __init__(self):
        import importlib
        import threading
        self.samples, self.marks, self._stop = [], [], threading.Event()
        for module, attr, label in self.PHASES:
            owner = importlib.import_module(module)
            *path, name = attr.split(".")
            for part in path:
                owner = getattr(owner, part)
            if hasattr(owner, name):
                setattr(owner, name, self._marked(getattr(owner, name), label))
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _marked(self, fn, label):
        import functools

        @functools.wraps(fn)
        def run(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.marks.append((label, t0, time.perf_counter()))
        return run

    @staticmethod
    def rss_kb() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def _sample(self):
        while not self._stop.is_set():
            self.samples.append((time.perf_counter(), self.rss_kb()))
            time.sleep(0.01)

    def start(self) -> None:
        self.before_kb = self.rss_kb()
        self._thread.start()

    def report(self) -> dict:
        self._stop.set()
        self._thread.join()
        peaks: dict = {}
        for label, t0, t1 in self.marks:
            inside = [kb for t, kb in self.samples if t0 <= t <= t1]
            if inside:
                peaks[label] = max(peaks.get(label, 0.0), round(max(inside) / 1024, 1))
        return {"rss_before_mb": round(self.before_kb / 1024, 1), "phases_peak_mb": peaks}


def child(engine: str, root: str, runs: int) -> dict:
    """One engine's runs, in this process."""
    import resource
    import threading

    sys.path.insert(0, str(REPO))
    import inspect_core
    from inspect_core.cluster import engine as eng

    out = {"engine": engine, "runs": []}
    cluster = None
    if engine.startswith("ray"):
        import ray
        t = time.perf_counter()
        ray.init(num_cpus=int(engine.split(":")[1]), include_dashboard=False, logging_level="ERROR",
                 log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
        out["ray_start_s"] = round(time.perf_counter() - t, 2)
        cluster = "local:" + engine.split(":")[1]
    peak_kb = [0]
    stop = threading.Event()

    def watch():            # the largest resident set a reading Ray worker reached (VmHWM)
        while not stop.is_set():
            for d in Path("/proc").iterdir():
                if not d.name.isdigit():
                    continue
                try:
                    if (d / "cmdline").read_bytes().startswith(f"ray::{eng.TASK_NAME}".encode()):
                        for line in (d / "status").read_text().splitlines():
                            if line.startswith("VmHWM:"):
                                peak_kb[0] = max(peak_kb[0], int(line.split()[1]))
                except OSError:
                    pass
            time.sleep(0.2)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    probe = DriverProbe() if runs == 1 else None       # one run a process: its peaks are that run's
    for _ in range(runs):
        ws = Path(tempfile.mkdtemp(prefix="bench_cluster_ws_"))
        if probe:
            probe.start()
        t = time.perf_counter()
        r = inspect_core.scan(root, workspace=ws, cluster=cluster)
        total_s = time.perf_counter() - t
        if probe:
            out.update(probe.report())
        parts = list((r.workspace / eng.PARTS_DIR).glob("*.parquet"))
        out["runs"].append({"s": round(total_s, 2), "read_s": r.summary["read_s"], "n": r.summary["n_images"],
                            "files_read": r.summary["files_read"], "n_findings": int(len(r.findings)),
                            "parquet_bytes": sum(p.stat().st_size for p in parts),
                            "steps_s": r.summary.get("global_steps", {}).get("times_s", {})})
    stop.set()
    out["ray_worker_peak_rss_mb"] = round(peak_kb[0] / 1024, 1)
    out["driver_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    out["pool_worker_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
    if engine.startswith("ray"):
        import ray
        ray.shutdown()
    return out


def throughput(n: int, runs: int, base: Path, engines: tuple[str, ...] = ("local", "ray:1", "ray:2")) -> None:
    import os
    root = make_folder(base, n)
    print(f"{n} images; load average before {os.getloadavg()}")
    results = {e: {"engine": e, "runs": [], "ray_start_s": [], "ray_worker_peak_rss_mb": 0,
                   "pool_worker_peak_rss_mb": 0, "driver_peak_rss_mb": 0} for e in engines}
    for _ in range(runs):            # interleaved, one process per run: a change in the machine's load hits all three
        for engine in engines:
            proc = subprocess.run([sys.executable, __file__, "--child", engine, "--root", str(root), "--runs", "1"],
                                  capture_output=True, text=True, cwd=REPO)
            if proc.returncode:
                print(proc.stderr[-3000:])
                raise SystemExit(f"{engine} failed")
            one = json.loads(proc.stdout.strip().splitlines()[-1])
            res = results[engine]
            res["runs"] += one["runs"]
            if "ray_start_s" in one:
                res["ray_start_s"].append(one["ray_start_s"])
            for k in ("ray_worker_peak_rss_mb", "pool_worker_peak_rss_mb", "driver_peak_rss_mb"):
                res[k] = max(res[k], one[k])
            res.setdefault("driver_runs", []).append({"peak_mb": one["driver_peak_rss_mb"],
                                                      "before_scan_mb": one.get("rss_before_mb"),
                                                      "phases_peak_mb": one.get("phases_peak_mb", {})})
    results = list(results.values())
    base_read = None
    for res in results:
        s = statistics.median(r["s"] for r in res["runs"])
        rd = statistics.median(r["read_s"] for r in res["runs"])
        base_read = base_read or rd
        pq = res["runs"][-1]["parquet_bytes"] / n if res["engine"] != "local" else 0
        steps = {k: statistics.median(r["steps_s"].get(k, 0.0) for r in res["runs"])
                 for k in res["runs"][-1]["steps_s"]}
        print(f"{res['engine']:>6}: scan {s:.2f} s ({n / s:,.0f} img/s) of {[r['s'] for r in res['runs']]}; read "
              f"{rd:.2f} s ({n / rd:,.0f} img/s, x{rd / base_read:.2f} the local read) of "
              f"{[r['read_s'] for r in res['runs']]}; Ray start {res['ray_start_s'] or '-'} s; worker peak RSS "
              f"{res['ray_worker_peak_rss_mb'] or res['pool_worker_peak_rss_mb']} MB; driver peak RSS "
              f"{res['driver_peak_rss_mb']} MB; partitions {pq:.0f} B/img; findings {res['runs'][-1]['n_findings']}"
              + (f"; global steps (medians) {steps}" if steps else ""))
        runs_ = res["driver_runs"]
        added = [r["peak_mb"] - r["before_scan_mb"] for r in runs_ if r["before_scan_mb"] is not None]
        phases = {k: statistics.median(r["phases_peak_mb"].get(k, 0.0) for r in runs_)
                  for k in runs_[-1]["phases_peak_mb"]}
        print(f"    driver peak RSS per run {[r['peak_mb'] for r in runs_]} MB (median "
              f"{statistics.median(r['peak_mb'] for r in runs_)}); added during the scan "
              f"{[round(a, 1) for a in added]} MB (median {statistics.median(added) if added else '-'}); "
              f"peak within each phase (medians, MB) {phases}")
    print(f"load average after {os.getloadavg()}")


def sent(ws: Path) -> None:
    """What the driver hands the exact-duplicate and statistics tasks for one cluster scan's workspace ``ws``: the
    partition paths and row ranges (this branch) against the columns (before: the two hash columns as key lists,
    the property columns in 16 parts), each pickled as Ray pickles task arguments."""
    import pickle

    import numpy as np
    sys.path.insert(0, str(REPO))
    from inspect_core.cluster.engine import PARTS_DIR
    from inspect_core.cluster.sketch import FRAME_COLUMNS
    from inspect_core.scanner import load_scan
    r = load_scan(ws)
    img = r.images
    paths = sorted(str(p) for p in (ws / PARTS_DIR).glob("*.parquet"))
    now = len(pickle.dumps([(p, slice(0, 288)) for p in paths], protocol=5))
    keys = {"content_hash": img["content_hash"].where(img["file_size_bytes"].gt(0)),
            "pixel_hash": img["pixel_hash"].where(img["error_kind"].isna())}
    before_keys = sum(len(pickle.dumps(k.tolist(), protocol=5)) for k in keys.values())
    cols = list(FRAME_COLUMNS) + ["aspect_ratio"]
    before_stats = sum(len(pickle.dumps(img.iloc[p][cols], protocol=5))
                       for p in np.array_split(np.arange(len(img)), 16))
    n = len(img)
    print(f"{n} images, {len(paths)} partitions: now {now:,} B of paths and row ranges ({now / n:.1f} B/img); "
          f"before: hash keys {before_keys:,} B ({before_keys / n:.0f} B/img) + property columns {before_stats:,} B "
          f"({before_stats / n:.0f} B/img)")


def recall(base: Path) -> None:
    sys.path.insert(0, str(REPO))
    import numpy as np

    import inspect_core
    from inspect_core import neardup
    from inspect_core.checks.context import near_cuts, near_rule
    from inspect_core.cluster import dups
    support = import_file(REPO / "tests" / "cluster_support.py")
    photos_root = base / "photo_copies"
    if not photos_root.exists():
        support.make_photo_copies_folder(photos_root)
    for root in (photos_root, make_folder(base, 20000)):
        r = inspect_core.scan(root, workspace=base / "ws_recall")
        img, desc = r.images, r.desc
        cuts = near_cuts(img, near_rule())[:2]
        phash = img["phash"].to_numpy(np.int64)
        use = img["error_kind"].isna().to_numpy()
        t = time.perf_counter()
        li, lj, _ = neardup.near_pairs(desc, phash=phash, subset=use, cuts=cuts)
        local_s = time.perf_counter() - t
        local = set(zip(li.tolist(), lj.tolist()))
        dist = np.array([int(neardup.hamming64(phash[[a]], phash[[b]])[0]) for a, b in local])
        print(f"{root.name}: {int(use.sum())} images, {len(local)} local near pairs in {local_s:.2f} s; their pHash "
              f"distances: median {np.median(dist) if len(dist) else 0:.0f}, max {dist.max() if len(dist) else 0}")
        idx = np.nonzero(use)[0]
        for k in (3, 7, 11, 15, dups.rule_hamming_cut(cuts)):
            t = time.perf_counter()
            bi, bj, _ = dups.near_pairs_banded(desc, phash, cuts, subset=use, hamming_cut=k)
            s = time.perf_counter() - t
            all_bands = dups.bands(k)
            compared = sum(len(dups.band_candidates(phash, idx, b, all_bands, 64)[0]) for b in range(len(all_bands)))
            banded = set(zip(bi.tolist(), bj.tolist()))
            print(f"  cut {k:>2} ({len(all_bands)} bands of {64 // len(all_bands)}-{-(-64 // len(all_bands))} bits): "
                  f"recall {len(banded & local) / max(1, len(local)):.3f}, extra {len(banded - local)}, "
                  f"pairs compared {compared:,} ({compared / max(1, len(idx)):.1f} per image), {s:.2f} s")


def global_steps(n: int, runs: int, base: Path) -> None:
    sys.path.insert(0, str(REPO))
    import os

    import numpy as np
    import ray

    import inspect_core
    from inspect_core.checks.context import CheckContext
    from inspect_core.checks.property import ROBUST_COLUMNS, property_frame, robust_center_scale, robust_values
    from inspect_core.cluster import steps
    root = make_folder(base, n)
    r = inspect_core.scan(root, workspace=base / "ws_steps")
    ds, img = r.dataset, r.images
    t = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
    print(f"{n} images; Ray start {time.perf_counter() - t:.2f} s (apart); load average {os.getloadavg()}")

    def ctx(**kw):
        return CheckContext(images=img, desc=r.desc, annotations=ds.annotations, classes=ds.classes,
                            has_image_labels=ds.has_image_labels, has_boxes=ds.has_boxes, **kw)
    from inspect_core.checks.context import near_cuts, near_rule
    from inspect_core.cluster import dups
    cuts = near_cuts(img, near_rule())[:2]
    rows = {k: [] for k in ("local_pairs", "ray_pairs", "ray_exact", "ray_near", "banded_here", "local_stats",
                            "ray_stats")}
    counts = {}
    for _ in range(runs):
        t = time.perf_counter()
        counts["local"] = len(ctx()._pair_table)
        rows["local_pairs"].append(time.perf_counter() - t)
        on_ray = steps.ClusterSteps("local:2")
        t = time.perf_counter()
        counts["ray"] = len(ctx(pair_source=on_ray)._pair_table)
        rows["ray_pairs"].append(time.perf_counter() - t)
        rows["ray_exact"].append(on_ray.times_s["exact_duplicates"])
        rows["ray_near"].append(on_ray.times_s["near_duplicates"])
        t = time.perf_counter()                 # the same banded search in this process: Ray's share apart
        dups.near_pairs_banded(r.desc, img["phash"].to_numpy(np.int64), cuts, subset=img["error_kind"].isna())
        rows["banded_here"].append(time.perf_counter() - t)
        t = time.perf_counter()
        pf = property_frame(img)
        for column, log in ROBUST_COLUMNS.values():
            _, v, ok = robust_values(pf, column, log)
            robust_center_scale(v[ok])
        rows["local_stats"].append(time.perf_counter() - t)
        t = time.perf_counter()
        on_ray.column_stats(img)
        rows["ray_stats"].append(time.perf_counter() - t)
    for k, v in rows.items():
        print(f"  {k:>11}: median {statistics.median(v):.2f} s of {[round(x, 2) for x in v]}")
    print(f"  pairs: local {counts['local']}, on Ray {counts['ray']}; load average after {os.getloadavg()}")
    ray.shutdown()


def kmeans_fit(support, ray, n: int, runs: int) -> None:
    """The top-level k-means fit on n crop descriptors' projected sample: assignment step on the driver against
    tasks on Ray (threshold forced to 0), run by run interleaved; medians of ``runs``; centres checked identical."""
    import os

    import numpy as np

    from inspect_core import neardup
    from inspect_core.cluster import dups
    d = support.crop_descriptors(n, seed=5)
    x = neardup.UnitRows(d["desc"])
    idx = np.nonzero(x.valid)[0]
    _, axes, pick = neardup.ivf_fit(x, idx, 0)
    pts = neardup.project(x, idx if pick is None else idx[pick], axes)
    for k in (neardup.n_cells(len(idx)), 4096):
        old = dups.SHARD_DEFAULTS["kmeans_tasks_above_distances"]
        dups.SHARD_DEFAULTS["kmeans_tasks_above_distances"] = 0
        try:
            step = dups.kmeans_assign(dups._OnRay(ray), len(pts), k)
        finally:
            dups.SHARD_DEFAULTS["kmeans_tasks_above_distances"] = old
        wall, cpu = {"driver": [], "tasks": []}, {"driver": [], "tasks": []}
        for _ in range(runs):
            got = {}
            for name, assign in (("driver", None), ("tasks", step)):
                t, c = time.perf_counter(), time.process_time()
                got[name] = neardup._kmeans(pts, k, np.random.default_rng(0), sample=len(pts), assign=assign)
                wall[name].append(time.perf_counter() - t)
                cpu[name].append(time.process_time() - c)
            assert np.array_equal(got["driver"], got["tasks"]), "the task fit's centres differ from the driver's"
        per_task = (max(1, int(dups.SHARD_DEFAULTS["kmeans_rows_per_task"]) // neardup.nearest_chunk(k))
                    * neardup.nearest_chunk(k))
        print(f"  k-means fit, {k:,} centres on {len(pts):,} sample rows x 8 passes ({-(-len(pts) // per_task)} "
              f"tasks a pass); centres identical: yes; load average {os.getloadavg()}")
        for name in wall:
            print(f"    {name:>6}: median {statistics.median(wall[name]):.2f} s of "
                  f"{[round(v, 2) for v in wall[name]]}; driver CPU {statistics.median(cpu[name]):.2f} s")


def index(ns: list[int], runs: int, fit_only: bool = False) -> None:
    """The near-duplicate search at each n of ``ns`` on crop descriptors (tests/cluster_support.crop_descriptors):
    the local inverted-file index (neardup.near_pairs), the same index sharded (cluster/dups.near_pairs_sharded) in
    this process and on a local Ray of 2 worker CPUs, and pHash banding at the rule's cut (up to 50,000 rows: it is
    quadratic). Run by run interleaved; medians of ``runs``; the sharded pairs are checked identical each run."""
    sys.path.insert(0, str(REPO))
    import os

    import numpy as np
    import ray

    from inspect_core import neardup
    from inspect_core.cluster import dups
    support = import_file(REPO / "tests" / "cluster_support.py")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
    warm = support.crop_descriptors(9000, seed=1)       # the workers' first import, apart from the timings
    dups.near_pairs_sharded(warm["desc"], warm["phash"], warm["cuts"], cluster=ray)
    for n in ns:
        kmeans_fit(support, ray, n, runs)
        if fit_only:
            continue
        t = time.perf_counter()
        d = support.crop_descriptors(n, seed=5)
        desc, phash, cuts = d["desc"], d["phash"], d["cuts"]
        print(f"{n:,} crop descriptors made in {time.perf_counter() - t:.1f} s; load average {os.getloadavg()}")
        wall = {k: [] for k in ("local index", "sharded here", "sharded on Ray", "banding here")}
        cpu = {k: [] for k in wall}
        stats: dict = {}
        for _ in range(runs):
            for name in wall:
                if name == "banding here" and n > 50_000:
                    continue
                t, c = time.perf_counter(), time.process_time()
                if name == "local index":
                    got = ref = neardup.near_pairs(desc, phash=phash, cuts=cuts)
                elif name == "sharded here":
                    got = dups.near_pairs_sharded(desc, phash, cuts, stats=stats)
                elif name == "sharded on Ray":
                    got = dups.near_pairs_sharded(desc, phash, cuts, cluster=ray)
                else:
                    got = dups.near_pairs_banded(desc, phash, cuts)
                wall[name].append(time.perf_counter() - t)
                cpu[name].append(time.process_time() - c)
                if name.startswith("sharded"):
                    assert all(np.array_equal(u, v) for u, v in zip(ref, got)), f"{name}: not the local pairs"
                else:
                    pairs = len(got[0])
                    print(f"  {name}: {pairs:,} pairs")
        for name, v in wall.items():
            if v:
                print(f"  {name:>14}: median {statistics.median(v):.2f} s of {[round(x, 2) for x in v]}; driver CPU "
                      f"{statistics.median(cpu[name]):.2f} s")
        m = stats["n_rows"]
        print(f"  sharded: {stats['cells']} cells ({stats['cells_split']} split again), pairs compared "
              f"{stats['pairs_compared']:,} = {stats['pairs_compared'] / m:,.0f} per image (all against all: "
              f"{(m - 1) / 2:,.0f}), pHash block candidates {stats['block_candidates'] / m:.1f} per image; shuffled: "
              f"cells {stats['cell_shuffle_bytes'] / m:.0f} B/image ({stats['cell_shuffle_bytes'] / 2**20:.1f} MiB), "
              f"pHash blocks {stats['block_shuffle_bytes'] / m:.0f} B/image; identical pairs: yes; load average "
              f"{os.getloadavg()}")
    if fit_only:
        ray.shutdown()
        return
    # the top-level assignment at 1e8 images (1e5 cells): each image against every centre, 32 dims; timed here on
    # 20,000 rows against 10,000 centres (what one task does per 20,000 of its rows, at 1e7 images)
    rng = np.random.default_rng(0)
    y, centres = rng.standard_normal((20_000, 32), np.float32), rng.standard_normal((10_000, 32), np.float32)
    times = []
    for _ in range(runs):
        c = time.process_time()
        neardup._nearest(y, centres, neardup.N_PROBE)
        times.append(time.process_time() - c)
    per = statistics.median(times) / (len(y) * len(centres))
    print(f"  assignment: {per * 1e9:.2f} ns CPU per (image, centre) (median of {[round(t, 2) for t in times]} s "
          f"CPU for 20,000 x 10,000): {per * 1e5 * 1e3:.1f} ms CPU per image against 1e5 centres")
    ray.shutdown()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--recall", action="store_true")
    p.add_argument("--steps", action="store_true")
    p.add_argument("--index", default="", help="comma-separated sizes: the sharded index on crop descriptors")
    p.add_argument("--fit-only", action="store_true", help="with --index: only the k-means fit, driver vs tasks")
    p.add_argument("--dir", default=str(Path(tempfile.gettempdir()) / "bench_cluster"))
    p.add_argument("--engines", default="local,ray:1,ray:2", help="the throughput run's engines, comma-separated")
    p.add_argument("--sent", help="a cluster scan's workspace: what the driver sends the exact and statistics steps")
    p.add_argument("--child")
    p.add_argument("--root")
    a = p.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.root, a.runs)))
        return
    base = Path(a.dir)
    base.mkdir(parents=True, exist_ok=True)
    if a.index:
        index([int(v) for v in a.index.split(",")], a.runs, a.fit_only)
    elif a.sent:
        sent(Path(a.sent))
    elif a.recall:
        recall(base)
    elif a.steps:
        global_steps(a.n, a.runs, base)
    else:
        throughput(a.n, a.runs, base, tuple(a.engines.split(",")))


if __name__ == "__main__":
    main()
