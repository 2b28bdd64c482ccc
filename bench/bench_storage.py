"""Scan throughput from object storage: the same JPEGs scanned from disk and from an S3-compatible server on this
machine (moto's, in its own process, on 127.0.0.1: loopback, so no network latency; a real bucket adds tens of ms per
request, which the scan's fetch threads overlap).

    .venv/bin/pip install -r requirements-cluster.txt -r tests/requirements.txt   # s3fs; moto[server] (boto3)
    .venv/bin/python bench/bench_storage.py --n 1000 --runs 3

Makes N 640x480 JPEGs from real photos (bench/photos.py) once, uploads them to s3://bench/all, then alternates: a cold
scan from disk, a cold scan of the s3:// copy (fresh workspaces: every file read), and a re-scan of the s3:// copy
(same workspace: one LIST, every row from the cache). Checks that the findings agree. Prints medians; writes
bench/results/storage.json.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent

from photos import crops_folder  # noqa: E402



def start_server() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, endpoint
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("moto's server did not start")


def upload(endpoint: str, folder: Path, bucket: str) -> None:
    import boto3
    client = boto3.client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket=bucket)
    files = sorted(p for p in folder.rglob("*.jpg"))
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda p: client.upload_file(str(p), bucket, p.relative_to(folder).as_posix()), files))


def timed_scan(root, ws: Path, workers):
    import inspect_core
    t = time.perf_counter()
    result = inspect_core.scan(root, workspace=ws, workers=workers)
    return time.perf_counter() - t, result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()
    folder = crops_folder(HERE / ".data" / f"storage_{args.n}", args.n, seed=2)
    proc, endpoint = start_server()
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                      AWS_ENDPOINT_URL=endpoint)
    try:
        t = time.perf_counter()
        upload(endpoint, folder, "bench")
        upload_s = time.perf_counter() - t
        disk, remote, rescan = [], [], []
        for _ in range(args.runs):
            ws = Path(tempfile.mkdtemp(prefix="bench-ws-"))
            dt, here = timed_scan(folder, ws / "a", args.workers)
            disk.append(dt)
            dt, there = timed_scan("s3://bench", ws / "b", args.workers)
            remote.append(dt)
            assert there.summary["files_read"] == args.n
            dt, again = timed_scan("s3://bench", ws / "b", args.workers)
            rescan.append(dt)
            assert again.summary["files_read"] == 0
            keys = sorted(zip(here.findings["image_id"], here.findings["check"]))
            assert keys == sorted(zip(there.findings["image_id"], there.findings["check"])), "findings differ"
            shutil.rmtree(ws, ignore_errors=True)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    med = {k: statistics.median(v) for k, v in (("disk", disk), ("s3", remote), ("s3_rescan", rescan))}
    res = {"n_images": args.n, "image_size": "640x480 JPEG q90", "runs": args.runs, "server": "moto, loopback",
           "upload_s": round(upload_s, 2), "disk_s": disk, "s3_s": remote, "s3_rescan_s": rescan,
           **{f"{k}_median_s": round(v, 3) for k, v in med.items()},
           "disk_img_per_s": round(args.n / med["disk"], 1), "s3_img_per_s": round(args.n / med["s3"], 1),
           "s3_over_disk": round(med["s3"] / med["disk"], 2), "findings_identical": True}
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "storage.json").write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
