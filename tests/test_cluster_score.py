"""cluster/score.py: ``score --cluster``: the model's outputs made on a local Ray cluster equal the local path's."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from inspect_core.cluster.score import ClusterError, _gather, decode_batch, forward_pixels, parse_cluster
from inspect_core.model import pipeline
from inspect_core.model.runtime import runtime_settings
from model_support import MODEL_DIR, REPO, SAMPLE, ColourNet, _colour_dataset, _loaded, _spec


def test_cluster_values_are_parsed_and_a_wrong_one_names_itself():
    assert parse_cluster("local:2") == {"kind": "local", "num_cpus": 2}
    assert parse_cluster("auto") == {"kind": "auto"}
    assert parse_cluster("ray://head.example:10001") == {"kind": "remote", "address": "ray://head.example:10001"}
    for bad in ("local:0", "local:", "ray://head", "ray://h:99999", "http://h:1", "", "cluster"):
        with pytest.raises(ClusterError, match="local:N"):
            parse_cluster(bad)


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


def test_gathered_blocks_go_back_in_row_order():
    import pyarrow as pa
    t1 = pa.table({"pos": [2, 0], "error": [None, "bad"], "logits": [[1.0, 2.0], [np.nan, np.nan]],
                   "embedding": [[5.0, 6.0, 7.0], []]})
    t2 = pa.table({"pos": [1], "error": [None], "logits": [[3.0, 4.0]], "embedding": [[8.0, 9.0, 10.0]]},
                  schema=t1.schema)
    logits, emb, errors = _gather([t1, t2], 3, 2)
    np.testing.assert_array_equal(logits[1:], [[3, 4], [1, 2]])
    assert np.isnan(logits[0]).all() and errors == ["bad", None, None]
    np.testing.assert_array_equal(emb[1:], [[8, 9, 10], [5, 6, 7]])
    assert np.isnan(emb[0]).all()


def test_score_on_a_local_ray_cluster_equals_the_local_path_and_shares_its_cache(tmp_path, capsys):
    """score --cluster local:2 on sample_data: the losses, errors and label-issue ranking of the local path, Parquet
    parts beside the score cache; then the local path with the same workspace is a cache hit (the same key)."""
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
    # the cache the cluster run wrote, with its Parquet parts, is the one the local path reads
    key = json.loads((clustered / "sanity.json").read_text())["source"]["cache_key"]
    parts = sorted(ws.glob(f"*/scores/{key}/parts/part-*.parquet"))
    assert parts and sum(len(pd.read_parquet(p)) for p in parts) == len(a)
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
    for value, words in (("local:zero", "not a cluster address"),
                         ("ray://127.0.0.1:1", "could not connect to the Ray cluster ray://127.0.0.1:1")):
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
