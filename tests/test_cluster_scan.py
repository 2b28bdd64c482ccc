"""The scan on a Ray cluster (inspect_core/cluster/engine.py): a local Ray of 2 worker CPUs gives the same rows,
findings and pairs as the local pool on sample_data and on 20,000 real-photo crops; a worker killed mid-scan costs
only its chunk; finished chunks are Parquet partitions a re-run reuses; no --cluster means no Ray import; a bad
address is a one-line error naming it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest
from cluster_support import REPO, make_crops_folder, ray_local, ray_worker_pids  # noqa: F401 - a fixture, by usefixtures

import inspect_core
from inspect_core import neardup
from inspect_core.checks.context import CheckContext
from inspect_core.cluster import engine
from inspect_core.scanner import load_scan

SAMPLE = REPO / "sample_data"


def assert_same_scan(local, other) -> None:
    """Equal tables, every text and id equal; floats within pandas' default 1e-5 (below 8,000 images the local
    search's cosines come from a matrix product, the cluster's from row-by-row products: they differ in float32's
    last bits, about 1e-6 here)."""
    pd.testing.assert_frame_equal(local.images, other.images)
    pd.testing.assert_frame_equal(local.findings, other.findings)
    pd.testing.assert_frame_equal(local.pairs, other.pairs)
    np.testing.assert_array_equal(local.desc, other.desc)


def assert_steps_ran_on_ray(local, on_ray, near: str = "on Ray: pHash banding, 23 bands", sent_by_driver: int = 0
                            ) -> None:
    """The cluster scan's pairs and statistics came from its Ray steps (cluster/steps.py), the local scan's not; their
    tasks read the rows from the partition files but ``sent_by_driver`` (by default none: a cold scan). ``near``: how
    its near pairs were found (default: banding at the rule's cut, 22 bits)."""
    steps = on_ray.summary["global_steps"]
    n = len(on_ray.images)
    assert (steps["rows_read_from_partitions"], steps["rows_sent_by_driver"]) == (n - sent_by_driver, sent_by_driver)
    assert steps["exact_duplicates"].startswith("on Ray: hash shuffle")
    assert steps["near_duplicates"].startswith(near)
    assert steps["robust_statistics"].startswith("on Ray: sketches")
    assert set(steps["times_s"]) == {"exact_duplicates", "near_duplicates", "robust_statistics", "row_checks"}
    assert (steps["rows_checked_on_workers"], steps["rows_checked_in_driver"]) == (n - sent_by_driver, sent_by_driver)
    assert "global_steps" not in local.summary


@pytest.fixture(scope="module")
def sample_local(tmp_path_factory):
    return inspect_core.scan(SAMPLE, workspace=tmp_path_factory.mktemp("ws_local"))


@pytest.mark.usefixtures("ray_local")
def test_cluster_scan_of_sample_data_matches_the_local_scan(sample_local, tmp_path):
    calls = []
    result = inspect_core.scan(SAMPLE, workspace=tmp_path / "ws", cluster="local:2",
                               progress=lambda done, total: calls.append((done, total)))
    assert_same_scan(sample_local, result)
    assert_steps_ran_on_ray(sample_local, result)
    n = len(result.images)
    assert result.summary["files_read"] == result.images["content_hash"].notna().sum() > 300
    assert result.summary["partitions_written"] == len(engine.plan_tasks(result.images["image_id"].tolist())) > 1
    assert calls[-1] == (n, n)
    # what the app and the checks read back is the local scan's
    saved = load_scan(result.workspace)
    pd.testing.assert_frame_equal(saved.findings, sample_local.findings)
    assert len(list((result.workspace / engine.PARTS_DIR).glob("*.parquet"))) == result.summary["partitions_written"]


@pytest.mark.usefixtures("ray_local")
def test_the_driver_runs_no_per_row_check_on_a_cold_cluster_scan(sample_local, tmp_path, monkeypatch):
    """The per-row checks (integrity, property, missing and unknown labels) run on the workers over their partition
    files (cluster/rowchecks.py): in the driver no integrity finding is made, no property frame built and no label
    looked at; the findings are still the local scan's, those families included."""
    from inspect_core.checks import integrity, label
    from inspect_core.checks import property as prop
    seen = []
    for module, name in ((integrity, "finding"), (prop, "property_frame"), (label, "label_row_findings")):
        original = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _f=original, _n=name, **k: (seen.append(_n), _f(*a, **k))[1])
    result = inspect_core.scan(SAMPLE, workspace=tmp_path / "ws", cluster="local:2")
    assert seen == []
    pd.testing.assert_frame_equal(sample_local.findings, result.findings)
    assert {"integrity", "property", "label"} <= set(result.findings["family"])
    steps = result.summary["global_steps"]
    assert (steps["rows_checked_on_workers"], steps["rows_checked_in_driver"]) == (len(result.images), 0)
    assert steps["row_checks"].startswith("on Ray: integrity, property")


@pytest.mark.usefixtures("ray_local")
@pytest.mark.parametrize("max_retries", [3, 0])
def test_a_worker_killed_mid_scan_costs_only_its_chunk(max_retries, sample_local, tmp_path, monkeypatch):
    """Ray re-runs the lost chunk on another worker; with no retries left the driver reads it."""
    monkeypatch.setitem(engine.RETRIES, "chunks_per_task", 1)
    monkeypatch.setitem(engine.RETRIES, "max_retries", max_retries)
    monkeypatch.setattr(engine, "CHUNK_DELAY_S", 0.4)       # chunks slow enough to be caught in flight
    killed = []

    def kill_one():
        deadline = time.monotonic() + 60
        while not killed and time.monotonic() < deadline:
            for pid in ray_worker_pids(engine.TASK_NAME):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                break
            time.sleep(0.05)
    killer = threading.Thread(target=kill_one)
    killer.start()
    result = inspect_core.scan(SAMPLE, workspace=tmp_path / "ws", cluster="local:2")
    killer.join()
    assert killed, "no Ray worker was seen reading a chunk"
    with pytest.raises(ProcessLookupError):
        os.kill(killed[0], 0)
    assert_same_scan(sample_local, result)
    assert result.summary["chunks_read_in_driver"] == (0 if max_retries else 1)
    assert result.summary["partitions_written"] == len(engine.plan_tasks(result.images["image_id"].tolist()))


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    root = tmp_path_factory.mktemp("crops") / "ds"
    planted = make_crops_folder(root, 20_000, seed=3, n_exact=150, n_near=150)
    return root, planted


@pytest.mark.usefixtures("ray_local")
def test_cluster_scan_of_20000_images_matches_the_local_scan_and_a_rerun_reads_nothing(crops, tmp_path, monkeypatch):
    """Above neardup.BRUTE_FORCE_MAX images both scans search near pairs with the inverted-file index, the local one
    in one process, the cluster's sharded on Ray (cluster/dups.near_pairs_sharded): the same pairs, cosines, groups
    and findings. The index may miss a pair its cells split: checked below against exact search."""
    root, planted = crops
    local = inspect_core.scan(root, workspace=tmp_path / "ws_local")
    on_ray = inspect_core.scan(root, workspace=tmp_path / "ws_ray", cluster="local:2")
    assert on_ray.summary["files_read"] == 20_000
    assert_same_scan(local, on_ray)
    assert_steps_ran_on_ray(local, on_ray, near="on Ray: sharded inverted-file index")
    # exact search (every image against every other): the index's near pairs are a subset, nearly all of them
    ds = local.dataset
    with monkeypatch.context() as m:
        m.setattr(neardup, "BRUTE_FORCE_MAX", 20_000)
        pairs = CheckContext(images=local.images, desc=local.desc, annotations=ds.annotations, classes=ds.classes,
                             has_image_labels=ds.has_image_labels, has_boxes=ds.has_boxes).pairs

    def near_of(p):
        p = p[p["kind"] == "near"]
        return set(zip(p["image_id_a"], p["image_id_b"]))
    exact_near, on_ray_near = near_of(pairs), near_of(on_ray.pairs)
    assert on_ray_near <= exact_near and len(on_ray_near) >= 0.99 * len(exact_near) > 100, exact_near - on_ray_near
    # the planted copies are found (the comparison is not of two empty results)
    pairs = set(zip(on_ray.pairs["image_id_a"], on_ray.pairs["image_id_b"]))
    exact = {tuple(sorted(p)) for p in planted["exact"]}
    near = {tuple(sorted(p)) for p in planted["near"]}
    assert exact <= pairs
    assert len(near & pairs) >= 0.9 * len(near)
    # a run that died before the file cache was written: the partitions are read, no file is
    ws = on_ray.workspace
    (ws / "filecache.parquet").unlink()
    (ws / "scan" / "summary.json").unlink()
    again = inspect_core.scan(root, workspace=tmp_path / "ws_ray", cluster="local:2")
    assert again.summary["files_read"] == 0
    assert again.summary["files_from_partitions"] == 20_000
    assert again.summary["partitions_written"] == 0
    assert_same_scan(local, again)
    assert_steps_ran_on_ray(local, again, near="on Ray: sharded inverted-file index")


@pytest.mark.usefixtures("ray_local")
def test_a_changed_file_reads_only_its_chunk(tmp_path):
    """Also: --workers N with --cluster reads the chunks of a local scan with N workers (here 1)."""
    root = tmp_path / "ds"
    make_crops_folder(root, 300, seed=1, n_exact=5, n_near=5)
    first = inspect_core.scan(root, workspace=tmp_path / "ws", cluster="local:2", workers=1)
    tasks = engine.plan_tasks(first.images["image_id"].tolist(), local_workers=1)
    assert first.summary["partitions_written"] == len(tasks) > 1
    target = root / first.images["image_id"].iloc[-1]
    target.write_bytes(target.read_bytes()[:200])                   # truncated: a finding now
    (first.workspace / "filecache.parquet").unlink()
    second = inspect_core.scan(root, workspace=tmp_path / "ws", cluster="local:2", workers=1)
    assert second.summary["partitions_written"] == 1
    assert second.summary["files_from_partitions"] == 300 - sum(len(c) for c in tasks[-1])
    # the changed task's old partition is gone: the folder does not grow with every change
    assert len(list((second.workspace / engine.PARTS_DIR).glob("*.parquet"))) == len(tasks)
    local = inspect_core.scan(root, workspace=tmp_path / "ws_local", workers=1)
    assert_same_scan(local, second)
    assert target.relative_to(root).as_posix() in set(second.issues("integrity")["image_id"])


@pytest.mark.usefixtures("ray_local")
def test_a_warm_rescan_reads_its_new_partition_and_sends_only_the_cached_rows(tmp_path):
    """With the file cache in place, one changed file: only its chunk is read on Ray (a new partition, its sketch
    made by the read); the steps read that partition's rows from the file and the driver sends the cached rows'
    columns; the findings are the local scan's."""
    root = tmp_path / "ds"
    make_crops_folder(root, 300, seed=2, n_exact=5, n_near=5)
    first = inspect_core.scan(root, workspace=tmp_path / "ws", cluster="local:2", workers=1)
    assert first.summary["global_steps"]["rows_sent_by_driver"] == 0                  # cold: every row in a file
    target = root / first.images["image_id"].iloc[len(first.images) // 2]
    target.write_bytes(target.read_bytes()[:200])                   # truncated: a finding now
    second = inspect_core.scan(root, workspace=tmp_path / "ws", cluster="local:2", workers=1)
    assert second.summary["files_read"] == 1 and second.summary["partitions_written"] == 1
    assert second.summary["files_from_cache"] == 299
    steps = second.summary["global_steps"]
    assert steps["rows_read_from_partitions"] == 1 and steps["rows_sent_by_driver"] == 299
    assert steps["rows_checked_on_workers"] == 1 and steps["rows_checked_in_driver"] == 299   # the cached rows
    local = inspect_core.scan(root, workspace=tmp_path / "ws_local", workers=1)
    assert_same_scan(local, second)
    assert target.relative_to(root).as_posix() in set(second.issues("integrity")["image_id"])


def _run_cli(args: list[str], code_tail: str = "") -> subprocess.CompletedProcess:
    code = ("import sys; from inspect_core.cli import main; rc = main(sys.argv[1:]); "
            f"print(rc, 'ray' in sys.modules){code_tail}")
    return subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_a_scan_without_cluster_never_imports_ray(tmp_path, textured):
    root = tmp_path / "ds"
    (root / "cat").mkdir(parents=True)
    for k in range(3):
        textured(k).save(root / "cat" / f"{k}.png")
    proc = _run_cli(["scan", str(root), "--out", str(tmp_path / "out"), "--workspace", str(tmp_path / "ws")])
    assert proc.stdout.strip().splitlines()[-1] == "0 False", proc.stderr
    assert (tmp_path / "out" / "findings.csv").is_file()


def test_a_bad_cluster_address_is_a_one_line_error_naming_it(tmp_path, textured):
    root = tmp_path / "ds"
    (root / "cat").mkdir(parents=True)
    textured(0).save(root / "cat" / "0.png")
    proc = _run_cli(["scan", str(root), "--workspace", str(tmp_path / "ws"), "--cluster", "ray://127.0.0.1:1"])
    assert proc.stdout.strip().splitlines()[-1].startswith("2 "), proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "ray://127.0.0.1:1" in lines[0] and "ray start --head" in lines[0] and "local:N" in lines[0]
    # a spec that is no address at all is a usage error, before anything is read
    proc = _run_cli(["scan", str(root), "--workspace", str(tmp_path / "ws"), "--cluster", "nowhere"])
    assert proc.stdout.strip().splitlines()[-1] == "2 False", proc.stderr
    assert "--cluster 'nowhere'" in proc.stderr and "local:N" in proc.stderr


def test_parse_cluster_reads_every_form():
    assert engine.parse_cluster("local:3") == ("local", 3)
    assert engine.parse_cluster("auto") == ("auto", None)
    assert engine.parse_cluster("ray://head.example:10001") == ("client", ("head.example", 10001))
    assert engine.parse_cluster("10.0.0.5:6379") == ("gcs", ("10.0.0.5", 6379))
    for bad in ("local:0", "local:x", "ray://host", "host:99999", "", "s3://bucket/x:1"):
        with pytest.raises(ValueError, match="--cluster"):
            engine.parse_cluster(bad)


def test_a_worker_that_cannot_see_the_root_says_so(tmp_path):
    with pytest.raises(engine.RootNotVisible, match="not a folder on Ray node .*mounts at the same path"):
        engine.read_chunk(str(tmp_path / "not-here"), [["a.png"]])
    table = engine.read_chunk(str(tmp_path), [["a.png"]])          # a root it sees: a missing file is a row
    assert table.column("error_kind").to_pylist() == ["missing_file"]


@pytest.mark.usefixtures("ray_local")
def test_a_root_the_workers_cannot_see_stops_the_scan_with_one_clear_error(tmp_path):
    with pytest.raises(engine.ClusterError, match="not a folder on Ray node"):
        engine.read_files(tmp_path / "not-here", ["a.png", "b.png"], tmp_path / "ws", "local:2")


def test_the_reads_descriptors_are_copied_once_from_sliced_and_chunked_tables():
    """engine.gather / take_desc: each table's descriptors land in the one array in row order (chunks with offsets
    included), the tables come back without them, and owned() copies a table out of whatever holds its buffers."""
    import pyarrow as pa

    from inspect_core import filescan
    rng = np.random.default_rng(0)

    def table(n):
        d = rng.integers(-128, 128, (n, filescan.DESC_DIM)).astype(np.int8)
        return pa.table({"image_id": [f"{n}-{k}" for k in range(n)], "desc": pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(filescan.DESC_DIM), n, [None, pa.py_buffer(d.tobytes())])}), d
    (t1, d1), (t2, d2) = table(5), table(7)
    sliced = pa.concat_tables([t2, t1]).slice(3, 6)                # two chunks, the first at offset 3
    rows, desc = engine.gather([t1, sliced])
    np.testing.assert_array_equal(desc, np.concatenate([d1, d2[3:], d1[:2]]))
    assert rows["image_id"].tolist() == [f"5-{k}" for k in range(5)] + [f"7-{k}" for k in range(3, 7)] + ["5-0", "5-1"]
    copy = engine.owned(sliced)
    assert copy.equals(sliced) and copy.column("desc").chunks[0].buffers()[1].address != \
        sliced.column("desc").chunks[0].buffers()[1].address
