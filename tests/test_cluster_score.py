"""cluster/score.py: ``score --cluster``: the model's outputs made on a local Ray cluster equal the local path's."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cluster_support import ray_local, ray_worker_pids  # noqa: F401 - a fixture, by usefixtures
from inspect_core.cluster import engine
from inspect_core.cluster.score import (ClusterError, ModelWorker, assemble, check_cluster, decode_batch, decode_block,
                                        forward_pixels, parse_cluster, part_name, plan_blocks)
from inspect_core.model import pipeline
from inspect_core.model.runtime import runtime_settings
from model_support import MODEL_DIR, REPO, SAMPLE, ColourNet, _colour_dataset, _loaded, _spec


def test_scoring_uses_the_scans_connection_code_and_a_wrong_value_names_itself():
    """One connection code: score.py's parse_cluster / connected / ClusterError are engine's."""
    from inspect_core.cluster import score
    assert (score.parse_cluster, score.connected, score.ClusterError) == (engine.parse_cluster, engine.connected,
                                                                         engine.ClusterError)
    assert parse_cluster("local:2") == ("local", 2)
    assert parse_cluster("ray://head.example:10001") == ("client", ("head.example", 10001))
    for good in ("local:2", "auto", "ray://head.example:10001", "10.0.0.5:6379"):
        assert check_cluster(good) == good
    for bad in ("local:0", "local:", "ray://head", "ray://h:99999", "http://h:1", "", "cluster"):
        with pytest.raises(ClusterError, match="local:N") as err:
            check_cluster(bad)
        assert f"'{bad}'" in str(err.value)


class FailsOnRed(ColourNet):
    """ColourNet that raises on any batch holding a red image (a model with an input check)."""

    def forward(self, x):
        if bool((x[:, 0].mean(dim=(1, 2)) > 0.5).any()):
            raise RuntimeError("boom: red")
        return super().forward(x)


@pytest.mark.parametrize("net", [ColourNet, FailsOnRed])
def test_worker_side_decode_and_forward_give_the_local_pipelines_outputs(tmp_path, net):
    """decode_batch + forward_pixels (what the Ray stages run) against pipeline.model_outputs, without Ray: the same
    logits and embeddings, a broken file's error, and a model failing on some images costs those images only."""
    frame = _colour_dataset(tmp_path)
    ids = frame["image_id"].tolist()
    model = _loaded(net(), _spec())
    settings = runtime_settings("cpu", workers=0, batch_size=4)
    ref_logits, ref_emb, ref_errors, _ = pipeline.model_outputs(model, tmp_path, ids, settings=settings)
    decoded = decode_batch({"pos": np.arange(len(ids)), "image_id": np.array(ids, dtype=object)}, str(tmp_path),
                           model.spec)
    tap = pipeline._EmbeddingTap(model.module)
    logits, emb, errors = forward_pixels(model, decoded["pixels"], list(decoded["error"]), settings, tap)
    np.testing.assert_allclose(logits, ref_logits, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(emb, ref_emb, rtol=1e-6, atol=1e-6)
    assert [e or None for e in errors] == ref_errors
    broken = ids.index("red/broken.png")
    assert errors[broken] and np.isnan(logits[broken]).all()
    red = [i for i, v in enumerate(frame["true"]) if v == "red" and i != broken]
    if net is FailsOnRed:
        assert all(errors[i].startswith("the model failed") for i in red)
        assert sum(not e for e in errors) == len(ids) - len(red) - 1
    else:
        assert sum(not e for e in errors) == len(ids) - 1
        assert (logits[red].argmax(1) == 0).all()


def test_parts_are_assembled_in_row_order_memory_mapped_above_the_limit(tmp_path):
    """assemble reads the parts one at a time into the arrays the score cache takes; a block with no embeddings
    (every image broken) is NaN there; above the limit the embeddings are a memory-mapped .npy with the same values."""
    from inspect_core.cluster.score import part_table, write_part
    blocks = plan_blocks(5, 2)
    assert blocks == [(0, 2), (2, 4), (4, 5)]
    ids = ["a", "b", "c", "d", "e"]
    names = [part_name("run", "tag", s, ids[s:e]) for s, e in blocks]
    write_part(tmp_path / names[0], part_table(ids[0:2], [None, "bad"], np.array([[1, 2], [np.nan, np.nan]]),
                                               np.array([[5, 6, 7], [np.nan] * 3])))
    write_part(tmp_path / names[1], part_table(ids[2:4], [None, None], np.array([[3, 4], [8, 9]]),
                                               np.array([[8, 9, 10], [1, 1, 1]])))
    write_part(tmp_path / names[2], part_table(ids[4:5], ["broken"], np.array([[np.nan, np.nan]]), None))
    logits, emb, errors = assemble(tmp_path, names, blocks, 2)
    np.testing.assert_array_equal(logits[[0, 2, 3]], [[1, 2], [3, 4], [8, 9]])
    assert np.isnan(logits[[1, 4]]).all() and errors == [None, "bad", None, None, "broken"]
    np.testing.assert_array_equal(emb[[0, 2, 3]], [[5, 6, 7], [8, 9, 10], [1, 1, 1]])
    assert np.isnan(emb[[1, 4]]).all() and not isinstance(emb, np.memmap)
    logits2, mapped, errors2 = assemble(tmp_path, names, blocks, 2, emb_limit_bytes=0, emb_path=tmp_path / "e.npy")
    assert isinstance(mapped, np.memmap) and errors2 == errors
    np.testing.assert_array_equal(mapped, emb)
    np.testing.assert_array_equal(np.load(tmp_path / "e.npy"), emb)
    np.testing.assert_array_equal(logits2, logits)
    # the part's key changes with the run, the settings, the first row and the ids
    assert len({names[0], part_name("run2", "tag", 0, ids[0:2]), part_name("run", "tag2", 0, ids[0:2]),
                part_name("run", "tag", 0, ["a", "x"])}) == 4


def test_a_model_worker_writes_its_blocks_part_or_sends_it_when_the_folder_is_not_shared(tmp_path):
    """decode_block + ModelWorker without Ray, the sample model on sample_data images and a broken file: the worker
    writes the part (the local pipeline's outputs) and returns a record without outputs; a worker that cannot see
    the driver's marker file (a node without the workspace) sends the part's bytes instead."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from inspect_core.model.models import load_model
    from model_support import sample_spec
    ids = [str(p.relative_to(SAMPLE)) for p in sorted((SAMPLE / "train").rglob("*.jpg"))[:9]]
    (tmp_path / "ds").mkdir()
    for i in ids:
        (tmp_path / "ds" / i).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "ds" / i).write_bytes((SAMPLE / i).read_bytes())
    (tmp_path / "ds" / "broken.jpg").write_bytes(b"not a jpeg")
    ids.append("broken.jpg")
    model = load_model(MODEL_DIR / "model.pt2", sample_spec(), device="cpu")
    ref_logits, ref_emb, ref_errors, _ = pipeline.model_outputs(model, tmp_path / "ds", ids,
                                                                settings=runtime_settings("cpu", workers=0,
                                                                                          batch_size=4))
    decoded = decode_block(pa.table({"block": [3], "part": ["part-x.parquet"], "image_ids": [ids]}),
                           str(tmp_path / "ds"), model.spec)
    parts = tmp_path / "parts"
    parts.mkdir()
    (parts / ".marker").touch()
    kwargs = dict(model_ref=[model.path.read_bytes()], file_name=model.path.name, spec=model.spec, kind=model.kind,
                  factory=None, device="cpu", embeddings=True, batch_size=4, n_threads=1, parts_dir=str(parts))
    rec = ModelWorker(**kwargs, marker=".marker")(decoded).to_pylist()
    assert rec == [{"block": 3, "rows": len(ids), "part": "part-x.parquet", "data": None}]
    written = pq.read_table(parts / "part-x.parquet")
    logits, emb, errors = assemble(parts, ["part-x.parquet"], [(0, len(ids))], len(model.spec.class_names))
    np.testing.assert_allclose(logits, ref_logits, rtol=1e-5, atol=1e-5, equal_nan=True)
    np.testing.assert_allclose(emb, ref_emb, rtol=1e-5, atol=1e-5, equal_nan=True)
    assert errors == ref_errors and errors[-1] and errors.count(None) == 9
    assert written.column("image_id").to_pylist() == ids
    (parts / "part-x.parquet").unlink()
    sent = ModelWorker(**kwargs, marker=".not-here")(decoded).to_pylist()
    assert sent[0]["data"] and not (parts / "part-x.parquet").exists()
    (tmp_path / "sent").mkdir()
    (tmp_path / "sent" / "part-x.parquet").write_bytes(sent[0]["data"])
    again = assemble(tmp_path / "sent", ["part-x.parquet"], [(0, len(ids))], len(model.spec.class_names))
    np.testing.assert_array_equal(again[0], logits)
    np.testing.assert_array_equal(again[1], emb)
    assert again[2] == errors


def test_score_on_a_local_ray_cluster_equals_the_local_path_and_shares_its_cache(tmp_path, capsys):
    """score --cluster local:2 on sample_data: the losses, errors and label-issue ranking of the local path, saved in
    the score cache (the parts removed); then the local path with the same workspace is a cache hit (the same key)."""
    pytest.importorskip("ray")
    from inspect_core.cli_score import main
    model = str(MODEL_DIR / "model.pt2")
    local, clustered, ws = tmp_path / "local", tmp_path / "cluster", tmp_path / "ws"
    assert main(["score", str(SAMPLE), "--model", model, "--out", str(local), "--no-cache", "--workers", "0"]) == 0
    capsys.readouterr()
    assert main(["score", str(SAMPLE), "--model", model, "--out", str(clustered), "--workspace", str(ws),
                 "--cluster", "local:2", "--batch-size", "16"]) == 0
    text = capsys.readouterr().out
    assert "scored on the Ray cluster local:2: 1 model worker(s) on CPU" in text
    a, b = pd.read_parquet(local / "scores.parquet"), pd.read_parquet(clustered / "scores.parquet")
    assert a["image_id"].tolist() == b["image_id"].tolist() and len(a) > 300
    assert a["error"].fillna("").tolist() == b["error"].fillna("").tolist() and a["error"].notna().sum() == 3
    np.testing.assert_allclose(b["loss"].to_numpy(float), a["loss"].to_numpy(float), rtol=1e-5, atol=1e-5,
                               equal_nan=True)
    np.testing.assert_allclose(np.load(clustered / "embeddings.npy"), np.load(local / "embeddings.npy"),
                               rtol=1e-4, atol=1e-5, equal_nan=True)
    ia, ib = pd.read_csv(local / "label_issues.csv"), pd.read_csv(clustered / "label_issues.csv")
    assert ia["image_id"].tolist() == ib["image_id"].tolist() and len(ia) > 10
    # the cache the cluster run wrote is the one the local path reads; its Parquet parts went once it was saved
    key = json.loads((clustered / "sanity.json").read_text())["source"]["cache_key"]
    assert len(list(ws.glob(f"*/scores/{key}/outputs.npz"))) == 1
    assert not list(ws.glob(f"*/scores/{key}/parts"))
    assert main(["score", str(SAMPLE), "--model", model, "--out", str(tmp_path / "again"), "--workspace", str(ws),
                 "--workers", "0"]) == 0
    assert "(from cache)" in capsys.readouterr().out


def test_a_cluster_that_cannot_be_used_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("a Ray session of another test is running in this process")
    from inspect_core.cli_score import main
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    base = ["score", str(SAMPLE), "--model", str(MODEL_DIR / "model.pt2"), "--no-cache"]
    # ("auto" is left out: it joins any Ray running on this machine, another test's or a bench's)
    for value, words in (("local:zero", "--cluster 'local:zero': give local:N"),
                         ("ray://127.0.0.1:1", "cannot reach the Ray cluster at ray://127.0.0.1:1")):
        assert main([*base, "--out", str(tmp_path / "o"), "--cluster", value]) == 2, value
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1, err
    assert main(["score", str(SAMPLE), "--predictions", str(tmp_path / "p.csv"), "--out", str(tmp_path / "o"),
                 "--cluster", "local:2"]) == 2
    assert "needs no cluster" in capsys.readouterr().err


def test_score_without_cluster_imports_no_ray(tmp_path):
    for cls in ("circle", "square"):
        (tmp_path / "ds" / cls).mkdir(parents=True)
        for p in sorted((SAMPLE / "train" / cls).glob("*.jpg"))[:3]:
            (tmp_path / "ds" / cls / p.name).write_bytes(p.read_bytes())
    code = ("import sys; from inspect_core.cli import main; "
            "rc = main(['score', sys.argv[1], '--model', sys.argv[2], '--out', sys.argv[3], '--no-cache', "
            "'--workers', '0']); print(rc, 'ray' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "ds"), str(MODEL_DIR / "model.pt2"),
                           str(tmp_path / "o")],
                          cwd=REPO, capture_output=True, text=True, timeout=180)
    assert proc.stdout.strip().splitlines()[-1] == "0 False", proc.stderr[-2000:]
    assert (tmp_path / "o" / "scores.parquet").is_file()


def test_without_ray_installed_the_cluster_is_a_clear_error(monkeypatch):
    from inspect_core.cluster.score import connected
    monkeypatch.setitem(sys.modules, "ray", None)          # import ray raises ImportError
    with pytest.raises(ClusterError, match=r"needs Ray: pip install 'dataset-inspector\[cluster\]'"):
        with connected("local:1"):
            pass


def test_the_model_goes_on_gpu_actors_when_the_cluster_has_gpus():
    from inspect_core.cluster.score import CLUSTER_OPTIONS, _placement

    class Cluster:
        def __init__(self, **resources):
            self.resources = resources

        def cluster_resources(self):
            return self.resources

    gpu = _placement(Cluster(CPU=64.0, GPU=4.0), CLUSTER_OPTIONS)
    assert (gpu["device"], gpu["num_gpus"], gpu["concurrency"], gpu["decode_cpus"]) == ("cuda", 1, 4, 1)
    cpu = _placement(Cluster(CPU=8.0), CLUSTER_OPTIONS)
    assert (cpu["device"], cpu["num_gpus"], cpu["num_cpus"], cpu["concurrency"]) == ("cpu", 0, 1, 4)
    one = _placement(Cluster(CPU=1.0), CLUSTER_OPTIONS)
    assert one["num_cpus"] + one["decode_cpus"] <= 1 and one["concurrency"] == 1
    assert _placement(Cluster(CPU=8.0), {**CLUSTER_OPTIONS, "model_workers": 2})["concurrency"] == 2


def test_a_model_the_workers_cannot_load_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    """A --factory module only this process can import (the workers cannot): the run stops with one line naming it,
    not a hang or a Ray traceback."""
    pytest.importorskip("ray")
    from inspect_core.cli_score import main
    (tmp_path / "fac").mkdir()
    (tmp_path / "fac" / "only_here_factory.py").write_text(
        "from inspect_core.sample_model import make_model\n\ndef build(n_classes):\n    return make_model()\n")
    monkeypatch.syspath_prepend(str(tmp_path / "fac"))
    rc = main(["score", str(SAMPLE), "--model", str(MODEL_DIR / "model_state.pt"), "--factory",
               "only_here_factory:build", "--out", str(tmp_path / "o"), "--no-cache", "--cluster", "local:2"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "Traceback" not in err and [ln for ln in err.splitlines() if ln.startswith("error:")], err
    assert "failed: ModelLoadError: factory module 'only_here_factory' could not be imported" in err


def _sample_ids():
    """sample_data's image ids (3 broken files among them) and one id of no file (an error row)."""
    from inspect_core.loaders import load_dataset
    return [str(i) for i in load_dataset(SAMPLE).images["image_id"]] + ["train/circle/missing.jpg"]


def _run(model, ids, parts, **kw):
    from inspect_core.cluster.score import cluster_outputs
    stats = {}
    out = cluster_outputs(model, SAMPLE, ids, settings=runtime_settings("cpu", workers=0), cluster="local:2",
                          parquet_dir=parts, stats=stats, **{"options": RESUME_OPTIONS, **kw})
    return out, stats


RESUME_OPTIONS = {"rows_per_block": 32, "model_batch_size": 16, "max_input_tables": 5}   # 12 blocks: 3 per table


def _same_outputs(a, b):
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[2] == b[2]


@pytest.mark.usefixtures("ray_local")
def test_an_interrupted_run_resumes_and_scores_only_the_missing_blocks(tmp_path):
    """Cancel after 3 blocks; the re-run reuses every part the first run finished (untouched files) and scores only
    the rest; its outputs equal an uninterrupted run's. A changed batch size or file list reuses no part."""
    from inspect_core.model.models import load_model
    from inspect_core.model.pipeline import ScoringCancelled
    from model_support import sample_spec
    model = load_model(MODEL_DIR / "model.pt2", sample_spec(), device="cpu")
    ids = _sample_ids()
    n_blocks = len(plan_blocks(len(ids), RESUME_OPTIONS["rows_per_block"]))
    whole, whole_stats = _run(model, ids, tmp_path / "whole")
    assert (whole_stats["blocks"], whole_stats["blocks_scored"], whole_stats["blocks_reused"]) == (n_blocks,
                                                                                                  n_blocks, 0)
    assert whole[2][-1] and sum(e is None for e in whole[2]) == len(ids) - 4     # 3 broken sample files + missing
    # the local path's outputs, bit for bit (the same batches of 16, in the same order)
    local = pipeline.model_outputs(model, SAMPLE, ids, settings=runtime_settings("cpu", workers=0, batch_size=16))
    _same_outputs(whole, local[:3])

    seen = []
    parts = tmp_path / "parts"
    with pytest.raises(ScoringCancelled):
        _run(model, ids, parts, progress=lambda done, n: seen.append(done), cancel=lambda: len(seen) >= 3)
    time.sleep(1.0)         # a block a worker was finishing when the run was cancelled may still land
    before = {p.name: p.stat().st_mtime_ns for p in parts.glob("part-*.parquet")}
    assert 3 <= len(before) < n_blocks
    t_rerun = time.time_ns()
    again, stats = _run(model, ids, parts)
    after = {p.name: p.stat().st_mtime_ns for p in parts.glob("part-*.parquet")}
    assert stats["blocks_reused"] == len(before) and stats["blocks_scored"] == n_blocks - len(before)
    assert {k: after[k] for k in before} == before                  # reused parts were not written again
    assert sum(m >= t_rerun for m in after.values()) == stats["blocks_scored"] and len(after) == n_blocks
    _same_outputs(again, whole)
    # a third run has nothing to score
    _, stats = _run(model, ids, parts)
    assert (stats["blocks_reused"], stats["blocks_scored"]) == (n_blocks, 0)
    # other settings, or another file list in the same folder: no stale part is reused
    _, stats = _run(model, ids, parts, options={**RESUME_OPTIONS, "model_batch_size": 8})
    assert (stats["blocks_reused"], stats["blocks_scored"]) == (0, n_blocks)
    shifted, stats = _run(model, ids[1:], parts, options={**RESUME_OPTIONS, "model_batch_size": 8})
    assert stats["blocks_reused"] == 0
    np.testing.assert_allclose(shifted[0], whole[0][1:], rtol=1e-5, atol=1e-5, equal_nan=True)


@pytest.mark.usefixtures("ray_local")
def test_embeddings_above_the_limit_are_memory_mapped_with_the_same_values(tmp_path):
    from inspect_core.model.models import load_model
    from model_support import sample_spec
    model = load_model(MODEL_DIR / "model.pt2", sample_spec(), device="cpu")
    ids = _sample_ids()[:100]
    ram, _ = _run(model, ids, tmp_path / "a" / "parts")
    mapped, stats = _run(model, ids, tmp_path / "b" / "parts",
                         options={**RESUME_OPTIONS, "embeddings_in_memory_bytes": 0})
    assert isinstance(mapped[1], np.memmap) and not isinstance(ram[1], np.memmap)
    assert stats["embeddings_file"] == str(tmp_path / "b" / "embeddings.npy")
    _same_outputs(mapped, ram)


@pytest.mark.usefixtures("ray_local")
@pytest.mark.parametrize("victim", ["MapWorker(MapBatches(ModelWorker))", "MapBatches(decode_block)"])
def test_a_worker_killed_mid_score_costs_only_its_block(victim, tmp_path, monkeypatch):
    """A model actor or a decode worker killed (SIGKILL) while it works on a block: Ray restarts the actor / re-runs
    the task, the run completes, and the outputs equal the local path's."""
    from inspect_core.cluster import score as cluster_score
    from inspect_core.model.models import load_model
    from model_support import sample_spec
    monkeypatch.setattr(cluster_score, "BLOCK_DELAY_S", 0.5)    # blocks slow enough to be caught in flight
    model = load_model(MODEL_DIR / "model.pt2", sample_spec(), device="cpu")
    ids = _sample_ids()
    killed = []

    def kill_one():
        deadline = time.monotonic() + 120
        while not killed and time.monotonic() < deadline:
            for pid in ray_worker_pids(victim):
                if (Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].endswith(b".submit")
                        or "decode" in victim):
                    time.sleep(0.2)             # inside its block (the delay), not between blocks
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    break
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one)
    killer.start()
    try:
        out, stats = _run(model, ids, tmp_path / "parts")
    finally:
        killer.join()
    assert killed, f"no {victim} was seen working"
    with pytest.raises(ProcessLookupError):
        os.kill(killed[0], 0)
    n_blocks = len(plan_blocks(len(ids), RESUME_OPTIONS["rows_per_block"]))
    assert stats["blocks_scored"] == n_blocks and len(list((tmp_path / "parts").glob("part-*.parquet"))) == n_blocks
    local = pipeline.model_outputs(model, SAMPLE, ids, settings=runtime_settings("cpu", workers=0, batch_size=16))
    _same_outputs(out, local[:3])


def test_binary_rows_are_the_values_without_a_copy():
    """The model actor reads each block's pixels straight from the Arrow buffer (no 38.5 MB bytes copy per block):
    the same bytes as to_pylist, over chunked, sliced, binary and large_binary columns, empty values included."""
    import pyarrow as pa

    from inspect_core.cluster.score import binary_rows
    values = [b"abc", b"", bytes(range(256)) * 3, b"xyz"]
    for kind in (pa.binary(), pa.large_binary()):
        col = pa.chunked_array([pa.array(values[:2], kind), pa.array(values[2:], kind)])
        for column in (col, col.slice(1, 2), pa.array(values, kind).slice(2)):
            got = [bytes(a) for a in binary_rows(column)]
            assert got == [v for v in column.to_pylist()], (kind, column)
    arr = pa.array([bytes(1000)], pa.large_binary())
    view = next(binary_rows(arr))
    assert view.__array_interface__["data"][0] == arr.buffers()[2].address    # Arrow's own buffer, not a copy


def test_parts_are_written_plain_and_read_back_the_same(tmp_path):
    from inspect_core.cluster.score import part_table, write_part
    import pyarrow.parquet as pq
    rng = np.random.default_rng(0)
    logits, emb = rng.standard_normal((5, 3)).astype(np.float32), rng.standard_normal((5, 8)).astype(np.float32)
    write_part(tmp_path / "p.parquet", part_table([f"i{k}" for k in range(5)], ["", "bad", "", "", ""], logits, emb))
    meta = pq.read_metadata(tmp_path / "p.parquet")
    assert meta.row_group(0).column(0).compression == "UNCOMPRESSED" and not meta.row_group(0).column(0).is_stats_set
    back = pq.read_table(tmp_path / "p.parquet")
    assert back.column("error").to_pylist() == [None, "bad", None, None, None]
    np.testing.assert_array_equal(np.asarray(back.column("embedding").combine_chunks().flatten()).reshape(5, 8), emb)
