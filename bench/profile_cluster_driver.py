"""The driver of one cold cluster scan (Ray on this machine, 2 worker CPUs): its resident memory (VmRSS, sampled every
5 ms) at the start and end of each step and its peak inside, the steps marked by wrapping the functions that run them.

    PYTHONPATH=. .venv/bin/python bench/profile_cluster_driver.py FOLDER

Works on trees from before the per-row checks moved to the workers too (their check functions are marked instead).
"""
from __future__ import annotations

import functools
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main(root: str) -> None:
    import ray

    import inspect_core
    from inspect_core import neardup, scanner
    from inspect_core.checks import REGISTRY, context
    from inspect_core.checks.registry import CheckSpec
    from inspect_core.cluster import dups, engine, steps
    samples, marks, stop = [], [], threading.Event()

    def sample():
        while not stop.is_set():
            samples.append((time.perf_counter(), rss_mb()))
            time.sleep(0.005)

    def mark(owner, name, label):
        fn = getattr(owner, name)

        @functools.wraps(fn)
        def run(*a, **k):
            t0, r0 = time.perf_counter(), rss_mb()
            try:
                return fn(*a, **k)
            finally:
                marks.append((label, t0, time.perf_counter(), r0, rss_mb()))
        setattr(owner, name, run)

    for owner, name, label in [
            (engine, "read_files", "read_files"), (engine, "gather", "gather"),
            (scanner, "_write_cache", "write_cache"),
            (scanner, "box_stats", "box_stats"), (scanner, "_input_fingerprint", "input_fp"),
            (steps, "exact_column_stats", "column_stats"), (steps, "exact_groups_placed", "exact"),
            (dups, "near_pairs_sharded", "near_sharded"), (dups, "near_pairs_banded", "near_banded"),
            (neardup, "star_groups", "star_groups"), (neardup, "pairs_with_groups", "pairs_with_groups"),
            (context, "near_cuts", "near_cuts"), (scanner, "run_checks", "run_checks"),
            (scanner.ScanResult, "save", "save"), (scanner, "_fingerprint", "fingerprint"),
            (scanner, "balance_table", "balance_table")]:
        if hasattr(owner, name):
            mark(owner, name, label)
    try:
        from inspect_core.cluster import rowchecks
        mark(rowchecks, "row_findings_placed", "row_findings")
        families = ("duplicate", "leakage", "annotation", "balance")
    except ImportError:          # the per-row checks still in the driver: mark them
        families = ("duplicate", "leakage", "annotation", "balance", "integrity", "property", "label")
    for fam in families:
        spec = REGISTRY[fam]
        holder = type("Holder", (), {"f": staticmethod(spec.fn)})
        mark(holder, "f", f"check_{fam}")
        REGISTRY[fam] = CheckSpec(spec.family, holder.f, spec.checks, spec.dataset_level, spec.version)
    table = context.CheckContext.__dict__["_pair_table"]
    holder = type("Holder", (), {"f": staticmethod(table.func)})
    mark(holder, "f", "pair_table")
    context.CheckContext._pair_table = functools.cached_property(holder.f)
    context.CheckContext._pair_table.__set_name__(context.CheckContext, "_pair_table")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(Path(inspect_core.__file__).parents[1])}})
    sampler = threading.Thread(target=sample, daemon=True)
    before = rss_mb()
    sampler.start()
    r = inspect_core.scan(root, workspace=tempfile.mkdtemp(), cluster="local:2")
    stop.set()
    sampler.join()
    print(f"before scan {before:.0f} MB; n_pairs {r.summary['n_duplicate_pairs']}, findings {len(r.findings)}")
    for label, t0, t1, r0, r1 in sorted(marks, key=lambda m: m[1]):
        peak = max([mb for t, mb in samples if t0 <= t <= t1] + [r0, r1])
        print(f"{label:18s} {t1 - t0:7.2f} s  rss {r0:7.0f} -> {r1:7.0f} MB, peak {peak:7.0f}")
    print("ru_maxrss", round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1), "MB")
    ray.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
