"""Peak memory of one cold scan, in a fresh process: `.venv/bin/python bench/bench_memory.py N`.

Scans bench/.data/rescan_N (made by `bench/bench_rescan.py --n N`) with a fresh workspace and prints the
process's peak RSS in MB. Run it for several N and project linearly (BENCHMARKS.md).
"""
import resource
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

import inspect_core  # noqa: E402

if __name__ == "__main__":
    n = sys.argv[1]
    inspect_core.scan(HERE / ".data" / f"rescan_{n}", workspace=tempfile.mkdtemp(prefix="bench-ws-"), workers=2)
    print(n, "peak_rss_mb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
