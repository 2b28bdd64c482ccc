"""Model loading: every form of the sample model loads and scores the same; bad files give clear messages."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from inspect_core.model import models as M
from inspect_core.model.models import load_model
from inspect_core.model.preprocess import Preprocess, find_sidecar, read_preprocess

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_data"
MODEL_DIR = SAMPLE / "model"
FACTORY = "inspect_core.sample_model:make_model"


@pytest.fixture(scope="module")
def spec() -> Preprocess:
    return read_preprocess(MODEL_DIR / "model.preprocess.json")


@pytest.fixture(scope="module")
def sample_images():
    from inspect_core.loaders import load_dataset
    ds = load_dataset(SAMPLE)
    return ds


@pytest.fixture(scope="module")
def scored_forms(spec, sample_images):
    from inspect_core.model.pipeline import score_dataset
    out = {}
    for name, path, factory in (("torchscript", "model.ts.pt", None), ("export", "model.pt2", None),
                                ("state_dict", "model_state.pt", FACTORY)):
        model = M.load_model(MODEL_DIR / path, spec, factory=factory, device="cpu")
        out[name] = (model, score_dataset(model, sample_images.root, sample_images.images, workers=0))
    return out


def test_format_detection_reads_the_archive_not_the_name(tmp_path):
    assert M.detect_format(MODEL_DIR / "model.ts.pt") == "torchscript"
    assert M.detect_format(MODEL_DIR / "model.pt2") == "export"
    assert M.detect_format(MODEL_DIR / "model_state.pt") == "state_dict"
    renamed = tmp_path / "weights.bin"
    renamed.write_bytes((MODEL_DIR / "model.pt2").read_bytes())
    assert M.detect_format(renamed) == "export"
    junk = tmp_path / "model.pt"
    junk.write_text("hello")
    with pytest.raises(M.ModelLoadError, match="not a PyTorch file"):
        M.detect_format(junk)


def test_every_form_loads_and_gives_the_same_scores(scored_forms):
    kinds = {name: model.kind for name, (model, _) in scored_forms.items()}
    assert kinds == {"torchscript": "torchscript", "export": "export", "state_dict": "state_dict"}
    ref = scored_forms["state_dict"][1]
    ok = ref.table["error"].isna().to_numpy()
    assert ok.sum() > 300                                   # the sample's readable images
    for name, (_, result) in scored_forms.items():
        assert list(result.table["image_id"]) == list(ref.table["image_id"])
        np.testing.assert_allclose(result.probs[ok], ref.probs[ok], atol=1e-4, err_msg=name)
        assert (result.table["pred_label"][ok] == ref.table["pred_label"][ok]).all()
        # the broken planted files give error rows, not a crash
        errs = set(result.table.loc[~ok, "image_id"])
        assert {"test/triangle/triangle_0078.jpg", "val/square/square_0065.jpg"} <= errs


def test_embeddings_agree_across_forms(scored_forms):
    """Eager: hook on the last nn.Linear; TorchScript: its embed method; .pt2: tap on the last linear op."""
    eager = scored_forms["state_dict"][1].embeddings
    assert eager is not None and eager.shape[1] == 64
    ok = np.isfinite(eager).all(axis=1)
    for name in ("torchscript", "export"):
        other = scored_forms[name][1].embeddings
        assert other is not None, name
        np.testing.assert_allclose(other[ok], eager[ok], atol=1e-4, err_msg=name)
    # tapping twice (a second scoring of the same loaded program) does not stack taps
    from inspect_core.model.pipeline import graph_embedding_slot
    module = scored_forms["export"][0].module
    assert graph_embedding_slot(module) is graph_embedding_slot(module)
    n_taps = sum(1 for n in module.graph.nodes if n.op == "call_function" and "store_embedding" in str(n.target))
    assert n_taps == 1


def test_sample_model_beats_the_baselines_and_surfaces_planted_mislabels(scored_forms):
    from inspect_core.model.label_issues import rank_label_issues, recall_at_k
    from inspect_core.model.sanity import baselines
    planted = pd.read_csv(SAMPLE / "PLANTED.csv")
    mislabeled = planted.loc[planted["check"] == "mislabeled", "image_id"].tolist()
    assert len(mislabeled) >= 5
    for name, (_, result) in scored_forms.items():
        issues = rank_label_issues(result.table, result.probs, result.class_names)
        k = 2 * len(mislabeled)
        recall = recall_at_k(issues["image_id"], mislabeled, k)
        assert recall >= 0.8, f"{name}: recall@{k} of planted mislabels = {recall:.2f}"
        assert recall_at_k(issues["image_id"], mislabeled, 5 * len(mislabeled)) == 1.0
        flagged = set(issues.loc[issues["cl_issue"], "image_id"])
        # confident learning finds them too. Updated with issue 9: it used to flag 8 of the 9 among 19 flags, one of
        # them (test/square/square_0080.jpg, p(circle) 0.78) only because the never-predicted class hexagon's
        # near-zero threshold made it "truly hexagon" (its suggested fix was hexagon, wrongly), and 4 of the 6
        # correct hexagons. Hexagon is now a model problem, not judged: 7 of the 9 among 9 flags.
        assert len(flagged & set(mislabeled)) >= 7
        assert len(flagged & set(mislabeled)) >= 0.75 * len(flagged)
        # the suggested label for the worst-loss planted image is the model's prediction, not the given label
        top = issues[issues["image_id"].isin(mislabeled)].iloc[0]
        assert top["suggested_label"] != top["given_label"]
        by_split = {b.split: b for b in baselines(result.table, result.class_names)}
        assert by_split["val"].model_loss < by_split["val"].prior_loss < by_split["val"].uniform_loss
        assert by_split["val"].model_accuracy > by_split["val"].majority_accuracy


def test_sidecar_is_found_beside_every_model_file():
    for name in ("model.ts.pt", "model.pt2", "model_state.pt"):
        assert find_sidecar(MODEL_DIR / name) == MODEL_DIR / "model.preprocess.json"


def test_missing_file_and_folder_and_missing_factory(tmp_path, spec):
    with pytest.raises(M.ModelLoadError, match="not found"):
        M.load_model(tmp_path / "nope.pt", spec)
    with pytest.raises(M.ModelLoadError, match="folder"):
        M.load_model(tmp_path, spec)
    with pytest.raises(M.ModelLoadError, match="factory"):
        M.load_model(MODEL_DIR / "model_state.pt", spec)
    with pytest.raises(M.ModelLoadError, match="could not be imported"):
        M.load_model(MODEL_DIR / "model_state.pt", spec, factory="no_such_module_xyz:make")
    with pytest.raises(M.ModelLoadError, match="module:function"):
        M.load_model(MODEL_DIR / "model_state.pt", spec, factory="inspect_core.sample_model")
    with pytest.raises(M.ModelLoadError, match="no attribute"):
        M.load_model(MODEL_DIR / "model_state.pt", spec, factory="inspect_core.sample_model:nope")


class _Evil:
    """Unpickling this would write a file (what a malicious checkpoint does)."""

    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (Path.write_text, (Path(self.target), "pwned"))


def test_malicious_pickle_state_dict_is_refused(tmp_path, spec):
    target = tmp_path / "pwned.txt"
    evil = tmp_path / "evil_state.pt"
    state = {"head.weight": torch.zeros(5, 64), "payload": _Evil(str(target))}
    torch.save(state, evil)
    with pytest.raises(M.ModelLoadError, match="refused") as info:
        M.load_model(evil, spec, factory=FACTORY)
    assert "\n" not in str(info.value)
    assert not target.exists()
    # a legacy (non-zip) pickle too
    legacy = tmp_path / "evil_legacy.pt"
    legacy.write_bytes(pickle.dumps(_Evil(str(target))))
    with pytest.raises(M.ModelLoadError):
        M.load_model(legacy, spec, factory=FACTORY)
    assert not target.exists()


def test_checkpoint_dict_and_dataparallel_prefix_are_unwrapped(tmp_path, spec):
    state = torch.load(MODEL_DIR / "model_state.pt", weights_only=True)
    ckpt = tmp_path / "ckpt.pt"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, ckpt)
    model = M.load_model(ckpt, spec, factory=FACTORY, device="cpu")
    ref = M.load_model(MODEL_DIR / "model_state.pt", spec, factory=FACTORY, device="cpu")
    x = torch.randn(3, *spec.input_shape)
    torch.testing.assert_close(model.forward(x), ref.forward(x))


def test_class_count_mismatch_is_clear(spec):
    four = Preprocess.from_dict({**spec.to_dict(), "class_names": ["a", "b", "c", "d"]})
    with pytest.raises(M.ModelLoadError, match="outputs 5 classes but the preprocessing lists 4"):
        M.load_model(MODEL_DIR / "model.ts.pt", four)
    # a state dict whose head does not fit the factory built for 4 classes
    with pytest.raises(M.ModelLoadError, match="shape mismatch"):
        M.load_model(MODEL_DIR / "model_state.pt", four, factory=FACTORY)


def test_wrong_input_shape_is_clear(tmp_path, spec):
    class Flat(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3 * 8 * 8, 5)

        def forward(self, x):
            return self.fc(x.flatten(1))

    path = tmp_path / "flat.ts"
    torch.jit.save(torch.jit.script(Flat().eval()), str(path))
    with pytest.raises(M.ModelLoadError, match=r"rejected an input of shape \(1, 3, 72, 96\)") as info:
        M.load_model(path, spec)
    assert "input_size" in str(info.value) and "\n" not in str(info.value)
    grey = Preprocess.from_dict({**spec.to_dict(), "channel_order": "L", "mean": [0.5], "std": [0.25]})
    with pytest.raises(M.ModelLoadError, match="rejected an input of shape \\(1, 1, 72, 96\\)"):
        M.load_model(MODEL_DIR / "model.pt2", grey)


def test_fixed_batch_export_is_scored_one_at_a_time(tmp_path, spec, sample_images):
    from inspect_core.model.pipeline import score_dataset
    from inspect_core.sample_model import make_model
    net = make_model(5)
    net.load_state_dict(torch.load(MODEL_DIR / "model_state.pt", weights_only=True))
    net.eval()
    program = torch.export.export(net, (torch.zeros(1, *spec.input_shape),))
    path = tmp_path / "fixed.pt2"
    torch.export.save(program, str(path))
    model = M.load_model(path, spec)
    assert model.max_batch == 1
    few = sample_images.images[sample_images.images["split"] == "val"].head(6)
    result = score_dataset(model, sample_images.root, few, workers=0)
    assert result.table["error"].isna().all()
    assert np.isfinite(result.probs).all()


def test_device_choice_prefers_cuda_then_mps_then_cpu():
    assert M.pick_device(cuda_available=True, mps_available=True).type == "cuda"
    assert M.pick_device(cuda_available=False, mps_available=True).type == "mps"
    assert M.pick_device(cuda_available=False, mps_available=False).type == "cpu"
    assert M.pick_device("cpu", cuda_available=True, mps_available=True).type == "cpu"
    assert M.pick_device("cuda:1", cuda_available=True).index == 1
    with pytest.raises(M.ModelLoadError, match="no CUDA"):
        M.pick_device("cuda", cuda_available=False)
    with pytest.raises(M.ModelLoadError, match="MPS"):
        M.pick_device("mps", mps_available=False)
    with pytest.raises(M.ModelLoadError, match="unknown device"):
        M.pick_device("tpu")


def test_device_choice_reads_torch_availability(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert M.pick_device().type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert M.pick_device().type == "mps"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert M.pick_device().type == "cpu"


def test_gpu_saved_state_dict_loads_on_cpu(tmp_path, spec, monkeypatch):
    """A checkpoint saved on a GPU names cuda storages; map_location='cpu' must be used. We check that the
    loader passes map_location (no CUDA here to write a real one)."""
    seen = {}
    real_load = torch.load

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    M.load_model(MODEL_DIR / "model_state.pt", spec, factory=FACTORY, device="cpu")
    assert seen.get("map_location") == "cpu" and seen.get("weights_only") is True


def test_trust_warning_is_stated():
    assert "trust" in M.TRUST_WARNING.lower()
    assert "trust" in (M.__doc__ or "").lower()


def test_embedding_knn_on_sample_finds_planted_duplicate_and_odd_images(scored_forms):
    from inspect_core.model.sanity import embedding_findings
    result = scored_forms["export"][1]
    dups, outliers = embedding_findings(result.table["image_id"], result.embeddings)
    pairs = {frozenset(p) for p in dups[["image_id", "neighbour_id"]].itertuples(index=False)}
    assert frozenset({"train/star/star_0005.jpg", "train/star/star_0045.jpg"}) in pairs   # planted exact copy
    planted = pd.read_csv(SAMPLE / "PLANTED.csv")
    odd = set(planted.loc[planted["check"].isin(["dark", "overexposed", "low_contrast", "grayscale"]), "image_id"])
    assert len(set(outliers["image_id"]) & odd) >= 3
    assert len(outliers) <= 10


def test_torch_export_program_saved_on_a_gpu_loads_and_scores_on_the_cpu(spec, sample_images):
    # tests/data/gpu_saved/model.pt2 is the sample model exported with its weights on an H100
    # (bench/gpu_model_files.py); torch.export.load alone fails without CUDA ("not compiled with CUDA")
    from inspect_core.model.pipeline import score_dataset
    saved = REPO / "tests" / "data" / "gpu_saved"
    model = M.load_model(saved / "model.pt2", spec, device="cpu")
    assert model.device.type == "cpu"
    assert all(p.device.type == "cpu" for p in model.module.parameters())
    res = score_dataset(model, SAMPLE, sample_images.images, use_cache=False, workers=0)
    ok = res.table["error"].isna().to_numpy().copy()
    gpu_probs = np.load(saved / "gpu_probs_model_pt2.npy")       # the same images scored on the GPU (fp16)
    # ... before 16-bit pictures were scaled to 8 bits (preprocess.to_8_bit): Pillow had clipped them to white
    from PIL import Image
    for row, image_id in enumerate(res.table["image_id"]):
        if ok[row]:
            with Image.open(SAMPLE / image_id) as im:
                ok[row] = im.mode not in ("I;16", "I;16B", "I;16L", "I", "F")
    assert ok.sum() > 300
    np.testing.assert_allclose(res.probs[ok], gpu_probs[ok], atol=5e-3)
    ts = M.load_model(saved / "model.ts.pt", spec, device="cpu")   # TorchScript saved on the GPU, too
    assert all(p.device.type == "cpu" for p in ts.module.parameters())


def _malicious_program(src: Path, dst: Path, marker: Path) -> Path:
    """A torch.export archive whose first weight is a pickle that writes ``marker`` when torch.export.load
    reads it (torch reads pickled weights with weights_only=False): a program dressed as a state dict."""
    import json
    import zipfile
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith("data/weights/model_weights_config.json"):
                config = json.loads(data)
                first = next(iter(config["config"].values()))
                first["use_pickle"] = True
                victim = first["path_name"]
                data = json.dumps(config).encode()
            zout.writestr(item, data)
    with zipfile.ZipFile(dst) as z:
        names = z.namelist()
    weight = next(n for n in names if n.endswith(f"data/weights/{victim}"))
    rebuilt = dst.with_suffix(".tmp")
    with zipfile.ZipFile(dst) as zin, zipfile.ZipFile(rebuilt, "w") as zout:
        for item in zin.infolist():
            zout.writestr(item, pickle.dumps(_Evil(str(marker))) if item.filename == weight else zin.read(item.filename))
    rebuilt.replace(dst)
    return dst


def test_a_program_renamed_as_a_state_dict_is_refused_and_runs_nothing(tmp_path, spec):
    marker = tmp_path / "pwned.txt"
    evil = _malicious_program(MODEL_DIR / "model.pt2", tmp_path / "weights_state_dict.pth", marker)
    # given with a factory, the user asked for a state dict: it is refused, and says what it is
    with pytest.raises(M.ModelLoadError, match="torch.export program") as info:
        M.load_model(evil, spec, factory=FACTORY)
    assert "state dict" in str(info.value) and "\n" not in str(info.value)
    assert not marker.exists()
    # asked for explicitly as a state dict (no factory given): refused the same way, before any factory is needed
    with pytest.raises(M.ModelLoadError, match="torch.export program"):
        M.load_model(evil, spec, kind="state_dict")
    assert not marker.exists()
    # without a factory a .pth is taken as TorchScript (stated): its contents disagree, so it is refused too
    with pytest.raises(M.ModelLoadError, match="torch.export program"):
        M.load_model(evil, spec)
    assert not marker.exists()


def test_the_payload_runs_when_the_user_chooses_the_program_form(tmp_path, spec):
    """The marker test above can fail: torch.export.load does run this archive's pickle."""
    marker = tmp_path / "pwned.txt"
    evil = _malicious_program(MODEL_DIR / "model.pt2", tmp_path / "trusted.pt2", marker)
    try:
        M.load_model(evil, spec, kind="export")
    except M.ModelLoadError:
        pass                        # the payload is no tensor; the load may fail after the pickle ran
    assert marker.exists()


def test_the_form_is_the_users_choice_and_is_stated(tmp_path, spec):
    ts = M.load_model(MODEL_DIR / "model.ts.pt", spec, device="cpu")
    assert ts.kind == "torchscript" and "no factory" in ts.form_reason
    ex = M.load_model(MODEL_DIR / "model.pt2", spec, device="cpu")
    assert ex.kind == "export" and ".pt2" in ex.form_reason
    sd = M.load_model(MODEL_DIR / "model_state.pt", spec, factory=FACTORY, device="cpu")
    assert sd.kind == "state_dict" and "factory" in sd.form_reason
    # a program with a .pt2 name but TorchScript inside, and a state dict named .pt2
    for src, name, found in (("model.ts.pt", "m.pt2", "TorchScript"), ("model_state.pt", "w.pt2", "state dict")):
        (tmp_path / name).write_bytes((MODEL_DIR / src).read_bytes())
        with pytest.raises(M.ModelLoadError, match=found):
            M.load_model(tmp_path / name, spec)
    # the explicit form wins over the extension; a factory with a program form is a contradiction
    renamed = tmp_path / "model.bin"
    renamed.write_bytes((MODEL_DIR / "model.pt2").read_bytes())
    assert M.load_model(renamed, spec, kind="export", device="cpu").kind == "export"
    with pytest.raises(M.ModelLoadError, match="factory"):
        M.load_model(MODEL_DIR / "model.ts.pt", spec, kind="torchscript", factory=FACTORY)


def test_only_regular_files_under_the_size_cap_are_read(tmp_path, spec):
    import os
    fifo = tmp_path / "model.pt"
    os.mkfifo(fifo)
    with pytest.raises(M.ModelLoadError, match="not a regular file"):
        M.load_model(fifo, spec)                 # would hang forever if opened
    with pytest.raises(M.ModelLoadError, match="not a regular file"):
        M.load_model("/dev/zero", spec, factory=FACTORY)
    link = tmp_path / "zero.pt"
    link.symlink_to("/dev/zero")
    with pytest.raises(M.ModelLoadError, match="not a regular file"):
        M.load_model(link, spec, factory=FACTORY)
    with pytest.raises(M.ModelLoadError, match=r"over the .* cap") as info:
        M.load_model(MODEL_DIR / "model_state.pt", spec, factory=FACTORY, max_bytes=1000)
    assert "max_bytes" in str(info.value) or "--max-model-mb" in str(info.value)


def test_the_cli_refuses_a_program_given_as_a_state_dict(tmp_path, capsys):
    from inspect_core.cli import main
    marker = tmp_path / "pwned.txt"
    evil = _malicious_program(MODEL_DIR / "model.pt2", tmp_path / "weights_state_dict.pth", marker)
    (tmp_path / "weights_state_dict.preprocess.json").write_text((MODEL_DIR / "model.preprocess.json").read_text())
    rc = main(["score", str(SAMPLE), "--model", str(evil), "--factory", FACTORY, "--out", str(tmp_path / "out"),
               "--no-cache", "--workers", "0"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "refused weights_state_dict.pth" in err and "torch.export program" in err and len(err.splitlines()) == 1
    assert not marker.exists() and not (tmp_path / "out" / "scores.parquet").exists()
    # --model-format state_dict without a factory: refused the same way
    rc = main(["score", str(SAMPLE), "--model", str(evil), "--model-format", "state_dict",
               "--out", str(tmp_path / "out"), "--no-cache"])
    assert rc == 2 and "refused" in capsys.readouterr().err and not marker.exists()


@pytest.mark.usefixtures("module_cache")
def test_the_page_refuses_a_program_given_as_a_state_dict(tmp_path, sample_scan):
    from page_support import open_page
    marker = tmp_path / "pwned.txt"
    evil = _malicious_program(MODEL_DIR / "model.pt2", tmp_path / "weights_state_dict.pth", marker)
    (tmp_path / "weights_state_dict.preprocess.json").write_text((MODEL_DIR / "model.preprocess.json").read_text())
    at = open_page("pages/5_Model_triage.py")
    at.text_input(key="di_mt_model").set_value(str(evil)).run()
    at.text_input(key="di_mt_factory").set_value(FACTORY).run()
    assert not at.exception
    errors = [str(e.value).replace("\\", "") for e in at.error]     # shown Markdown-escaped
    assert any("refused weights_state_dict.pth" in e and "torch.export program" in e for e in errors), errors
    assert not marker.exists()
    assert not [c.value for c in at.caption if str(c.value).startswith("Loaded")]
    # choosing the state-dict form explicitly changes nothing
    at.selectbox(key="di_mt_form_kind").set_value("State dict + factory (weights only)").run()
    assert any("refused" in e.value for e in at.error) and not marker.exists()


class _BranchyHead(nn.Module):
    """Its last linear layer runs inside a branch of the scripted code: no top-level linear op to tap."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(3, 5)

    def forward(self, x):
        if x.shape[0] > 0:
            return self.head(x.mean((2, 3)))
        return x.new_zeros((0, 5))


class _NoEmbed(nn.Module):
    """The sample CNN's layers with no ``embed`` method (as most users' traced models are)."""

    def __init__(self, net):
        super().__init__()
        self.features, self.pool, self.head = net.features, net.pool, net.head

    def forward(self, x):
        return self.head(torch.flatten(self.pool(self.features(x)), 1))


def test_traced_torchscript_without_embed_gives_the_eager_embeddings(tmp_path, spec, sample_images, scored_forms):
    from inspect_core.model.pipeline import score_dataset
    from inspect_core.sample_model import make_model
    eager = make_model(len(spec.class_names))
    eager.load_state_dict(torch.load(MODEL_DIR / "model_state.pt", weights_only=True))
    traced = torch.jit.trace(_NoEmbed(eager).eval(), torch.zeros((2, *spec.input_shape)))
    assert not hasattr(traced, "embed")
    path = tmp_path / "traced.ts.pt"
    torch.jit.save(traced, str(path))
    model = M.load_model(path, spec, device="cpu")
    result = score_dataset(model, sample_images.root, sample_images.images, workers=0, use_cache=False)
    ref = scored_forms["state_dict"][1]
    ok = np.isfinite(ref.embeddings).all(axis=1)
    assert result.embeddings is not None
    np.testing.assert_allclose(result.embeddings[ok], ref.embeddings[ok], atol=1e-4)
    np.testing.assert_allclose(result.probs[ok], ref.probs[ok], atol=1e-4)          # forward ran once, unchanged
    assert not [n for n in result.notes if "no embeddings" in n]


def test_a_model_with_no_tappable_layer_says_why_the_embedding_sections_are_empty(tmp_path, spec, sample_images):
    from inspect_core.model.pipeline import score_dataset
    path = tmp_path / "branchy.ts.pt"
    torch.jit.save(torch.jit.script(_BranchyHead().eval()), str(path))
    model = M.load_model(path, spec, device="cpu")
    images = sample_images.images.head(12)
    result = score_dataset(model, sample_images.root, images, workers=0, use_cache=False)
    assert result.embeddings is None
    note = next(n for n in result.notes if "no embeddings" in n)
    assert "branch or loop" in note and "embed" in note and ".pt2" in note


@pytest.mark.usefixtures("module_cache")
def test_the_page_names_a_pipe_given_as_the_model(tmp_path, sample_scan):
    import os

    from page_support import open_page
    fifo = tmp_path / "model.pt"
    os.mkfifo(fifo)
    (tmp_path / "model.preprocess.json").write_text((MODEL_DIR / "model.preprocess.json").read_text())
    at = open_page("pages/5_Model_triage.py")
    at.text_input(key="di_mt_model").set_value(str(fifo)).run()       # opening it would hang the page
    assert not at.exception
    errors = [str(e.value).replace("\\", "") for e in at.error]
    assert any("not a regular file" in e for e in errors), errors


def test_a_model_returning_an_unknown_dict_names_its_keys_and_the_accepted_ones():
    from inspect_core.model.models import ModelLoadError, logits_of
    with pytest.raises(ModelLoadError, match="keys scores, aux.*'logits', 'out' or 'output'"):
        logits_of({"scores": torch.zeros(1, 5), "aux": torch.zeros(1)})


def test_factory_code_is_part_of_the_cache_key_and_is_not_compiled_into_the_dataset(tmp_path, monkeypatch, spec):
    import sys
    data = tmp_path / "data"
    data.mkdir()
    code = "from inspect_core.sample_model import make_model as _m\ndef make(num_classes=5):\n    return _m()\n"
    (data / "mynet_factory_t.py").write_text(code)
    monkeypatch.chdir(data)
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    first = load_model(MODEL_DIR / "model_state.pt", spec, factory="mynet_factory_t:make")
    assert not (data / "__pycache__").exists()                       # nothing written into the user's folder
    (data / "mynet_factory_t.py").write_text(code + "# edited\n")
    second = load_model(MODEL_DIR / "model_state.pt", spec, factory="mynet_factory_t:make")
    assert first.cache_key() != second.cache_key()
    sys.modules.pop("mynet_factory_t", None)
