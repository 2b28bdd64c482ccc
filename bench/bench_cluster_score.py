"""Scoring on Ray (issue 15): images/s locally vs ``--cluster local:1`` / ``local:2``, the per-image decode +
preprocess CPU cost behind the 100M-image plan, and the mergeable sketches' accuracy and speed.

    PYTHONPATH=. .venv/bin/python bench/bench_cluster_score.py --n 2000 --runs 3

Scoring: ``pipeline.score_dataset`` (no cache) with the sample model (``sample_data/model/model.pt2``, 96x72 input)
on n 640x480 JPEGs (random crops of real photos, as bench_scoring.py makes them), locally (0 loader workers, the CPU
default) and with ``outputs=cluster_scoring("local:N")``. Ray is started once per N (its start-up is timed apart);
each run then includes Ray Data's planning, the model actor's start and model load, decoding, the forward passes
and the gathering. Medians of --runs runs, as images/s (wall clock) and as CPU ms per image summed over this process
and every process under it (Ray's raylet, workers, actors; ``TreeCPU``), which other users' load does not inflate.

Driver memory: the driver's peak resident memory per run (VmHWM, reset before each run through
/proc/self/clear_refs), and, with ``--assembly N`` (default 50,000; ``--assembly-only`` for just this), the driver's
side at N images with 10 classes and 2,048-wide embeddings: parts written as the model actors write them, then put
in row order as the driver did before (every block's table held, then gathered) and as it does now
(``score.assemble``: one part at a time; and with the embeddings memory-mapped), each in a fresh process.

Decode cost: process CPU seconds per image of the local pipeline's own per-file code (``pipeline.ImageFiles``: read,
Pillow decode, resize shorter side to 256, centre crop 224), one process, no threads (the 100M plan's unit).

Sketches: ``QuantileSketch`` on 1,000,000-value columns in 8 parts: update + merge time, bins, and the median / MAD
errors against numpy with the stated bounds.

Writes bench/results/cluster_score.json (or --out).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

import numpy as np  # noqa: E402


class TreeCPU:
    """CPU seconds of this process and every process under it (Ray's raylet, workers and actors), sampled from /proc
    every ``interval_s`` while running, so that processes that exit (the model actors) are counted up to their last
    sample. Load from other users does not add to it, as it does to wall-clock rates."""

    def __init__(self, interval_s: float = 0.2):
        import threading
        self.interval_s = interval_s
        self.tick = os.sysconf("SC_CLK_TCK")
        self.start: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.peak_rss_mb: dict[str, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _tree(self) -> dict[int, float]:
        parent, cpu = {}, {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parent[int(entry)] = int(fields[1])
            cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / self.tick
        me, out = os.getpid(), {}
        for pid in cpu:
            p, seen = pid, 0
            while p > 1 and seen < 64:
                if p == me:
                    out[pid] = cpu[pid]
                    self._peak_rss(pid)
                    break
                p, seen = parent.get(p, 0), seen + 1
        return out

    def _peak_rss(self, pid: int) -> None:
        """Peak resident memory (VmHWM) per process title (Ray names its workers by what they run)."""
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")[:60]
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                mb = int(line.split()[1]) / 1024
                key = title if title.startswith("ray::") else Path(title.split()[0] if title else "?").name
                self.peak_rss_mb[key] = max(self.peak_rss_mb.get(key, 0.0), mb)

    def _run(self) -> None:
        while not self.stop.wait(self.interval_s):
            self.last.update(self._tree())

    def __enter__(self):
        self.start = self._tree()
        self.last = dict(self.start)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.last.update(self._tree())
        self.cpu_s = sum(v - self.start.get(pid, 0.0) for pid, v in self.last.items())


def reset_peak_rss() -> None:
    """Start this process's peak resident memory (VmHWM) afresh, so that each run's peak is its own (Linux)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM) since the last ``reset_peak_rss``, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _anon_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _assembly_child(mode: str, parts: str, names: list, blocks: list, c: int, queue) -> None:
    """One way of putting the parts' outputs in row order, in a fresh process: its peak anonymous memory (sampled
    every 5 ms; memory-mapped file pages are not anonymous) and its peak resident memory (VmHWM, file pages too)."""
    import threading

    import pyarrow.parquet as pq

    from inspect_core.cluster.score import assemble
    reset_peak_rss()
    start, peak, stop = _anon_mb(), [0.0], threading.Event()

    def sample():
        while not stop.wait(0.005):
            peak[0] = max(peak[0], _anon_mb())
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t = time.perf_counter()
    folder = Path(parts)
    if mode == "before: every block's table held, then gathered":
        tables = [pq.read_table(folder / name) for name in names]       # what the driver received through Ray
        n = blocks[-1][1]
        logits = np.empty((n, c), np.float32)
        emb = np.empty((n, tables[0].schema.field("embedding").type.list_size), np.float32)
        for (s, e), tb in zip(blocks, tables):
            logits[s:e] = np.asarray(tb.column("logits").combine_chunks().flatten()).reshape(e - s, c)
            emb[s:e] = np.asarray(tb.column("embedding").combine_chunks().flatten()).reshape(e - s, -1)
    elif mode == "after: parts read one at a time, in memory":
        logits, emb, _ = assemble(folder, names, blocks, c)
    else:
        logits, emb, _ = assemble(folder, names, blocks, c, emb_limit_bytes=0, emb_path=folder / "emb.npy")
    seconds = time.perf_counter() - t
    stop.set()
    thread.join()
    peak[0] = max(peak[0], _anon_mb())
    queue.put({"anon_added_mb": round(peak[0] - start, 1), "peak_rss_mb": round(peak_rss_mb(), 1),
               "seconds": round(seconds, 2), "memmap": isinstance(emb, np.memmap)})


def assembly_memory(n: int, d: int = 2048, c: int = 10, rows_per_block: int = 256) -> dict:
    """The driver's side of a cluster run at ``n`` images with ``d``-wide embeddings: parts of random outputs written
    as the model actors write them, then put in row order the old way (every block held) and the new (``assemble``,
    in memory and memory-mapped), each in a fresh process."""
    import multiprocessing as mp
    import shutil
    import tempfile

    from inspect_core.cluster.score import part_name, part_table, plan_blocks, write_part
    folder = Path(tempfile.mkdtemp(prefix="di-assembly-"))
    try:
        rng = np.random.default_rng(0)
        blocks = plan_blocks(n, rows_per_block)
        ids = [f"c/{k:08d}.jpg" for k in range(n)]
        names = [part_name("bench", "tag", s, ids[s:e]) for s, e in blocks]
        for name, (s, e) in zip(names, blocks):
            write_part(folder / name, part_table(ids[s:e], [None] * (e - s),
                                                 rng.standard_normal((e - s, c), dtype=np.float32),
                                                 rng.standard_normal((e - s, d), dtype=np.float32)))
        out = {"n_images": n, "embedding_width": d, "classes": c, "outputs_mb": round(n * (c + d) * 4 / 2**20, 1)}
        ctx = mp.get_context("spawn")
        for mode in ("before: every block's table held, then gathered", "after: parts read one at a time, in memory",
                     "after: embeddings memory-mapped"):
            queue = ctx.Queue()
            proc = ctx.Process(target=_assembly_child, args=(mode, str(folder), names, blocks, c, queue))
            proc.start()
            out[mode] = queue.get()
            proc.join()
            (folder / "emb.npy").unlink(missing_ok=True)
        return out
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def decode_cost(root: Path, image_ids: list[str], runs: int) -> dict:
    """CPU seconds per image of ImageFiles (read + decode + resize 256 + crop 224), median over runs."""
    from inspect_core.model.pipeline import ImageFiles
    from inspect_core.model.preprocess import Preprocess
    spec = Preprocess(input_size=(224, 224), class_names=("a", "b"), resize="shorter_then_center_crop",
                      resize_shorter_px=256)
    files = ImageFiles(root, image_ids, spec)
    per_image = []
    for _ in range(runs):
        c = time.process_time()
        for i in range(len(files)):
            files[i]
        per_image.append((time.process_time() - c) / len(files))
    return {"cpu_s_per_image": statistics.median(per_image), "runs": per_image, "n_images": len(image_ids)}


def actor_steps(runs: int = 7, width: int = 2048) -> dict:
    """The model actor's own CPU work per block of 256 images at 224 x 224 besides the forward pass, old way and new
    (median ms of ``runs``): the block's pixels out of the Arrow table (``to_pylist``: a bytes copy; now
    ``binary_rows``: a view), and its part written (pyarrow's Parquet defaults; now ``PART_WRITE_OPTIONS``)."""
    import tempfile

    import pyarrow as pa
    import pyarrow.parquet as pq

    from inspect_core.cluster.score import PART_WRITE_OPTIONS, binary_rows, part_table
    n, rng = 256, np.random.default_rng(0)
    ids = [f"class_1/c1_{k:06d}.jpg" for k in range(n)]
    block = pa.table({"block": [0], "part": ["p"], "image_ids": [ids], "errors": [[""] * n],
                      "pixels": pa.array([rng.integers(0, 255, n * 3 * 224 * 224, dtype=np.uint8).tobytes()],
                                         pa.large_binary())})
    table = part_table(ids, [""] * n, rng.standard_normal((n, 10)).astype(np.float32),
                       np.maximum(rng.standard_normal((n, width)), 0).astype(np.float32))
    folder = Path(tempfile.mkdtemp(prefix="di-actor-"))

    def ms(fn):
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            fn()
            times.append(1000 * (time.perf_counter() - t))
        return round(statistics.median(times), 2)
    return {"pixels_to_pylist_ms": ms(lambda: block.to_pylist()),
            "pixels_binary_rows_ms": ms(lambda: [np.asarray(a) for a in binary_rows(block.column("pixels"))]),
            "part_write_defaults_ms": ms(lambda: pq.write_table(table, folder / "a.parquet")),
            "part_write_plain_ms": ms(lambda: pq.write_table(table, folder / "b.parquet", **PART_WRITE_OPTIONS)),
            "part_mb_defaults": round((folder / "a.parquet").stat().st_size / 1e6, 2),
            "part_mb_plain": round((folder / "b.parquet").stat().st_size / 1e6, 2)}


def sketch_figures(n: int = 1_000_000, parts: int = 8) -> dict:
    from inspect_core.cluster.sketch import QuantileSketch
    rng = np.random.default_rng(0)
    columns = {"brightness_like": np.clip(rng.normal(0.45, 0.15, n), 0, 1),
               "log_sharpness_like": np.log(rng.lognormal(-3, 1.5, n)),
               "log_aspect_ratio_like": np.log(rng.uniform(0.3, 3.0, n))}
    out = {}
    for name, v in columns.items():
        t = time.perf_counter()
        sketches = [QuantileSketch().update(p) for p in np.array_split(v, parts)]
        t_update = time.perf_counter() - t
        t = time.perf_counter()
        merged = sketches[0]
        for s in sketches[1:]:
            merged.merge(s)
        med, mad = merged.median(), merged.mad()
        t_merge = time.perf_counter() - t
        t = time.perf_counter()
        np_med = float(np.median(v))
        np_mad = float(np.median(np.abs(v - np_med)))
        t_numpy = time.perf_counter() - t
        out[name] = {"update_s": t_update, "merge_and_query_s": t_merge, "numpy_median_mad_s": t_numpy,
                     "bins": merged.n_bins, "bytes": merged.n_bins * 16,
                     "median_error": abs(med - np_med), "median_bound": merged.error_bound("median"),
                     "mad_error": abs(mad - np_mad), "mad_bound": merged.error_bound("mad")}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="number of 640x480 JPEGs")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--clusters", nargs="*", type=int, default=[1, 2], help="local Ray clusters of these CPU counts")
    ap.add_argument("--skip-local", action="store_true", help="time only the cluster paths")
    ap.add_argument("--assembly", type=int, default=50_000, help="images for the driver-memory figure of putting "
                    "the parts in order (2,048-wide embeddings; 0: skip)")
    ap.add_argument("--assembly-only", action="store_true", help="only the driver-memory figure")
    ap.add_argument("--actor-steps", action="store_true", help="only the model actor's per-block steps (old, new)")
    ap.add_argument("--decode-n", type=int, default=300, help="images timed for the per-image decode cost")
    ap.add_argument("--data", default=str(HERE / ".data" / "scoring"))
    ap.add_argument("--out", default=str(HERE / "results" / "cluster_score.json"))
    args = ap.parse_args(argv)

    result: dict = {}
    if args.actor_steps:
        result["actor_steps"] = actor_steps()
        print("the model actor's steps per block:", json.dumps(result["actor_steps"]), flush=True)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
        return 0
    if args.assembly:
        result["assembly"] = assembly_memory(args.assembly)
        print("putting the parts in order:", json.dumps(result["assembly"], indent=1), flush=True)
    if args.assembly_only:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
        return 0
    sys.path.insert(0, str(HERE))
    from bench_scoring import make_dataset

    import ray

    from inspect_core.cluster.score import cluster_scoring
    from inspect_core.model.models import load_model
    from inspect_core.model.pipeline import score_dataset
    from inspect_core.model.preprocess import read_preprocess

    root = Path(args.data)
    images = make_dataset(root, args.n, 10)
    images["label"] = "circle"
    spec = read_preprocess(REPO / "sample_data" / "model" / "model.preprocess.json")
    model = load_model(REPO / "sample_data" / "model" / "model.pt2", spec, device="cpu")
    result.update({"n_images": len(images), "runs": args.runs, "machine": platform.machine(),
                   "cpus": os.cpu_count(), "load_average_start": os.getloadavg()})

    cpu_ms: dict[str, list[float]] = {}

    driver_mb: dict[str, list[float]] = {}         # the driver's peak resident memory during each run
    driver_added_mb: dict[str, list[float]] = {}   # that peak less what it held when the run began

    def timed(name: str, outputs=None) -> float:
        reset_peak_rss()
        start_mb = peak_rss_mb()
        t = time.perf_counter()
        with TreeCPU() as tree:
            res = score_dataset(model, root, images, workers=0, use_cache=False, outputs=outputs)
        assert res.table["error"].isna().all()
        rate = len(images) / (time.perf_counter() - t)
        driver_mb.setdefault(name, []).append(peak_rss_mb())
        driver_added_mb.setdefault(name, []).append(driver_mb[name][-1] - start_mb)
        cpu_ms.setdefault(name, []).append(1000 * tree.cpu_s / len(images))
        for title, mb in tree.peak_rss_mb.items():
            peak = result.setdefault("peak_rss_mb", {}).setdefault(name, {})
            peak[title] = max(peak.get(title, 0.0), round(mb, 1))
        print(f"run: {name} {rate:.1f} img/s, {cpu_ms[name][-1]:.2f} CPU ms/img, load {os.getloadavg()[0]:.1f}",
              flush=True)
        return rate

    rates = {} if args.skip_local else {"local": [timed("local") for _ in range(args.runs)]}
    for n_cpus in args.clusters:
        t = time.perf_counter()
        ray.init(num_cpus=n_cpus, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
        result[f"ray_start_s_local_{n_cpus}"] = time.perf_counter() - t
        name = f"cluster_local_{n_cpus}"
        rates[name] = [timed(name, cluster_scoring(f"local:{n_cpus}")) for _ in range(args.runs)]
        ray.shutdown()
    result["images_per_s"] = {k: {"median": statistics.median(v), "runs": v} for k, v in rates.items()}
    result["cpu_ms_per_image"] = {k: {"median": statistics.median(v), "runs": v} for k, v in cpu_ms.items()}
    result["driver_peak_rss_mb"] = {k: {"median": statistics.median(v), "runs": v} for k, v in driver_mb.items()}
    result["driver_added_rss_mb"] = {k: {"median": statistics.median(v), "runs": v}
                                     for k, v in driver_added_mb.items()}
    ids = images["image_id"].tolist()[: args.decode_n]
    result["decode"] = decode_cost(root, ids, args.runs)
    result["sketch_1m"] = sketch_figures()
    result["load_average_end"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v["median"] for k, v in result["images_per_s"].items()}, indent=1))
    print("CPU ms/image, every process:", {k: round(v["median"], 2) for k, v in result["cpu_ms_per_image"].items()})
    for name, peaks in result.get("peak_rss_mb", {}).items():
        print("peak RSS MB", name, {k: v for k, v in sorted(peaks.items(), key=lambda kv: -kv[1])[:8]})
    print("driver peak RSS MB (this process, reset before each run):",
          {k: round(v["median"], 1) for k, v in result["driver_peak_rss_mb"].items()},
          "added during the run:", {k: round(v["median"], 1) for k, v in result["driver_added_rss_mb"].items()})
    print("ray start-up s:", {k: round(v, 2) for k, v in result.items() if k.startswith("ray_start")})
    print("decode + preprocess CPU s/image:", round(result["decode"]["cpu_s_per_image"], 5))
    for name, fig in result["sketch_1m"].items():
        print(name, {k: (round(v, 6) if isinstance(v, float) else v) for k, v in fig.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
