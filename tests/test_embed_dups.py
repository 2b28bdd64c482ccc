"""Model embeddings as duplicate and leakage evidence (model/embed_dups.py): the per-model calibrated cut, NaN rows,
leakage, the merge with the pixel evidence, no chaining, the workspace copy, and the Findings page showing it."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from inspect_core.model import embed_dups
from inspect_core.schema import finding_frame


def clustered(n_clusters=20, per_cluster=15, dims=64, spread=0.3, seed=0) -> np.ndarray:
    """Embeddings shaped like a classifier's: tight clusters (classes) of distinct images, no duplicates."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, dims))
    emb = np.repeat(centres, per_cluster, axis=0) + spread * rng.standard_normal((n_clusters * per_cluster, dims))
    return emb.astype(np.float32)


def plant(emb: np.ndarray, src: int, dst: int, scale: float, seed: int = 1) -> None:
    """Make row ``dst`` a near copy of row ``src`` (relative noise ``scale``)."""
    rng = np.random.default_rng(seed)
    emb[dst] = emb[src] + scale * np.linalg.norm(emb[src]) / np.sqrt(emb.shape[1]) * rng.standard_normal(emb.shape[1])


def fake_scan(n: int, *, splits=None, labels=None, desc=None, pairs=None, findings=None, workspace=None,
              fingerprint="fp1"):
    """What embed_dups reads of a ScanResult: images (with phash and size), desc, pairs, findings, fingerprint."""
    rng = np.random.default_rng(5)
    images = pd.DataFrame({
        "image_id": [f"img{k:04d}.png" for k in range(n)],
        "split": splits if splits is not None else ["train"] * n,
        "label": labels if labels is not None else [f"c{k % 3}" for k in range(n)],
        "phash": rng.integers(-2**62, 2**62, n, dtype=np.int64),
        "width_px": 64, "height_px": 64, "contrast": 0.2,
        "content_hash": [f"h{k}" for k in range(n)], "pixel_hash": [f"p{k}" for k in range(n)]})
    return SimpleNamespace(images=images, desc=desc, pairs=pairs if pairs is not None else pd.DataFrame(),
                           findings=findings if findings is not None else finding_frame([]),
                           summary={}, fingerprint=fingerprint, workspace=workspace)


def pair_set(pairs: pd.DataFrame) -> set[frozenset]:
    return {frozenset(p) for p in pairs[["image_id_a", "image_id_b"]].to_numpy().tolist()}


def ids_of(n):
    return [f"img{k:04d}.png" for k in range(n)]


@pytest.mark.parametrize("spread", [0.3, 0.003])
def test_the_cut_is_calibrated_per_model_a_planted_pair_is_found_and_nothing_else(spread):
    """Two models, one spreading its embeddings 100x tighter than the other: each gets its own cut, and in each
    only the planted pair is found (a fixed cut that suits one model flags everything, or nothing, in the other)."""
    emb = clustered(spread=spread)
    plant(emb, 0, 1, scale=spread * 1e-3)
    scan = fake_scan(len(emb))
    pairs = embed_dups.model_duplicate_pairs(scan, ids_of(len(emb)), emb)
    assert pair_set(pairs) == {frozenset(("img0000.png", "img0001.png"))}
    why = pairs["why"].iloc[0]
    assert "model embedding cosine distance" in why and "model-calibrated" in why and "nearest other image" in why
    cal = pairs.attrs["calibration"]
    assert cal.typical > 0 and cal.distance_cap == pytest.approx(0.5 * cal.typical)


def test_a_tight_model_is_not_flagged_wholesale_on_either_page():
    """A model whose embeddings all lie within 0.003 of each other: the old fixed cut (distance <= 0.001) flagged
    hundreds of pairs; the calibrated cut, used by the Findings page's evidence and by the Model triage page's kNN
    pairs alike (sanity.embedding_findings), flags none, and still finds a planted pair."""
    from inspect_core.model.sanity import embedding_findings

    emb = clustered(spread=0.003)
    from inspect_core.model.knn import knn
    dist, _ = knn(emb, k=1)
    assert (dist[:, 0] <= 1e-3).sum() > 100                           # what the old fixed cut would have flagged
    assert embedding_findings(ids_of(len(emb)), emb)[0].empty
    assert embed_dups.model_duplicate_pairs(fake_scan(len(emb)), ids_of(len(emb)), emb).empty
    plant(emb, 0, 1, scale=0.003 * 1e-3)
    pairs = embedding_findings(ids_of(len(emb)), emb)[0]
    assert {frozenset(p) for p in pairs[["image_id", "neighbour_id"]].itertuples(index=False)} == \
        {frozenset(("img0000.png", "img0001.png"))}


def test_a_set_without_duplicates_yields_almost_none():
    """6,000 distinct images in 30 classes: at most 1 false pair per 1,000 images (the real-data rate is in
    BENCHMARKS.md); none expected here."""
    emb = clustered(n_clusters=30, per_cluster=200, spread=0.5, seed=3)
    pairs = embed_dups.model_duplicate_pairs(fake_scan(len(emb)), ids_of(len(emb)), emb)
    assert len(pairs) <= len(emb) / 1000


def test_nan_rows_and_unknown_ids_are_skipped():
    emb = clustered()
    plant(emb, 0, 1, 1e-4)
    plant(emb, 2, 3, 1e-4, seed=2)
    plant(emb, 4, 5, 1e-4, seed=3)
    emb[0] = np.nan                         # an image the model could not score
    ids = ids_of(len(emb))
    ids[5] = "not/in/the/scan.png"
    pairs = embed_dups.model_duplicate_pairs(fake_scan(len(emb)), ids, emb)
    assert pair_set(pairs) == {frozenset(("img0002.png", "img0003.png"))}


def test_mismatched_ids_and_rows_are_a_clear_error():
    with pytest.raises(ValueError, match="image ids for"):
        embed_dups.model_duplicate_pairs(fake_scan(10), ids_of(9), clustered(n_clusters=2, per_cluster=5))


def test_too_few_embeddings_give_a_note_not_an_error():
    emb = clustered(n_clusters=1, per_cluster=4)
    emb[1:3] = np.nan
    pairs = embed_dups.model_duplicate_pairs(fake_scan(4), ids_of(4), emb)
    assert pairs.empty and "fewer than 3" in pairs.attrs["calibration"].note
    found = embed_dups.model_duplicate_findings(fake_scan(4), ids_of(4), emb)
    assert found.empty


def test_a_collapsed_model_gives_a_note_not_pairs():
    emb = np.ones((50, 16), np.float32)
    pairs = embed_dups.model_duplicate_pairs(fake_scan(50), ids_of(50), emb)
    assert pairs.empty and "barely differ" in pairs.attrs["calibration"].note


def test_leakage_across_splits_names_the_model():
    emb = clustered()
    plant(emb, 10, 11, 1e-4)
    splits = ["train"] * len(emb)
    splits[11] = "test"
    found = embed_dups.model_duplicate_findings(fake_scan(len(emb), splits=splits), ids_of(len(emb)), emb)
    leak = found[found["check"] == "split_leakage"]
    assert set(leak["image_id"]) == {"img0010.png", "img0011.png"}
    assert all("model embedding cosine distance" in d and "in test" in d or "in train" in d for d in leak["detail"])
    assert set(found.loc[found["check"] == "near_duplicate", "image_id"]) == {"img0010.png", "img0011.png"}
    assert set(found["family"]) == {"duplicate", "leakage"}


def _desc_rows(n, same=()):
    """Tiny-image descriptors (int8): random, except that each (a, b) in ``same`` shares one."""
    rng = np.random.default_rng(9)
    desc = rng.integers(-100, 100, (n, 256)).astype(np.int8)
    for a, b in same:
        desc[b] = desc[a]
    return desc


def test_conflicting_labels_only_where_the_pixels_say_same_picture():
    emb = clustered()
    plant(emb, 20, 21, 1e-4)                # same picture for the model and the pixels
    plant(emb, 30, 31, 1e-4, seed=4)        # same for the model only
    labels = [f"c{k % 3}" for k in range(len(emb))]
    labels[21], labels[31] = "other", "other"
    scan = fake_scan(len(emb), labels=labels, desc=_desc_rows(len(emb), same=[(20, 21)]))
    scan.images.loc[21, "phash"] = scan.images.loc[20, "phash"]
    found = embed_dups.model_duplicate_findings(scan, ids_of(len(emb)), emb)
    assert set(found.loc[found["check"] == "conflicting_labels", "image_id"]) == {"img0020.png", "img0021.png"}
    assert {"img0030.png", "img0031.png"} <= set(found.loc[found["check"] == "near_duplicate", "image_id"])


def _pixel_pairs(scan, links):
    """A saved scan's pairs table (as pairs.parquet holds it) for the pixel pairs ``links`` [(a, b, why)]."""
    img = scan.images
    return pd.DataFrame([{"image_id_a": img["image_id"][a], "image_id_b": img["image_id"][b], "kind": "near",
                          "score": 0.97, "why": why, "phash_distance": 4, "split_a": img["split"][a],
                          "split_b": img["split"][b], "label_a": img["label"][a], "label_b": img["label"][b],
                          "same_picture": False} for a, b, why in links])


def test_merge_one_pair_found_by_both_names_both_and_model_only_pairs_say_so():
    emb = clustered()
    plant(emb, 0, 1, 1e-4)
    plant(emb, 2, 3, 1e-4, seed=2)
    scan = fake_scan(len(emb), findings=finding_frame([{"image_id": "img0100.png", "check": "dark",
                                                        "family": "property", "score": 1.0, "detail": "dark"}]))
    scan.pairs = _pixel_pairs(scan, [(0, 1, "cosine 0.970, pHash distance 4; cut for A"),
                                     (4, 5, "cosine 0.960, pHash distance 6; cut for B")])
    model_pairs = embed_dups.model_duplicate_pairs(scan, ids_of(len(emb)), emb)
    merged = embed_dups.merged_duplicate_pairs(scan, model_pairs)
    ev = {frozenset((a, b)): e for a, b, e in merged[["image_id_a", "image_id_b", "evidence"]].to_numpy().tolist()}
    assert ev == {frozenset(("img0000.png", "img0001.png")): "pixels+model",
                  frozenset(("img0002.png", "img0003.png")): "model",
                  frozenset(("img0004.png", "img0005.png")): "pixels"}
    both = merged[merged["evidence"] == "pixels+model"]["why"].iloc[0]
    assert "cosine 0.970, pHash distance 4" in both and "model embedding cosine distance" in both
    found = embed_dups.merged_duplicate_findings(scan, model_pairs)
    near = found[found["check"] == "near_duplicate"].set_index("image_id")["detail"]
    assert len(found[(found["check"] == "near_duplicate") & (found["image_id"] == "img0000.png")]) == 1
    assert "cut for A" in near["img0000.png"] and "model embedding" in near["img0000.png"]
    assert "model evidence only" in near["img0002.png"]
    assert "model" not in near["img0004.png"]
    assert found[found["check"] == "dark"]["image_id"].tolist() == ["img0100.png"]   # other findings kept


def test_merged_groups_do_not_chain():
    """A chain across both sources, pixels A~B, model B~C, pixels C~D: every group member is paired with its
    group's representative, so no group holds both ends (A and D)."""
    emb = clustered()
    plant(emb, 7, 8, 1e-4)                  # B = 7, C = 8 for the model
    scan = fake_scan(len(emb))
    scan.pairs = _pixel_pairs(scan, [(6, 7, "cosine 0.970; pixels"), (8, 9, "cosine 0.960; pixels")])  # A, D
    model_pairs = embed_dups.model_duplicate_pairs(scan, ids_of(len(emb)), emb)
    found = embed_dups.merged_duplicate_findings(scan, model_pairs)
    pairs = found.attrs["pairs"]
    linked = pair_set(pairs)
    assert len(linked) == 3
    from inspect_core import neardup
    members = neardup.group_members(pairs)
    assert not members.empty
    for _, g in members.groupby("group_id"):
        rep = g["representative"].iloc[0]
        assert all(m == rep or frozenset((m, rep)) in linked for m in g["image_id"])
        assert not {"img0006.png", "img0009.png"} <= set(g["image_id"])
    assert set(members["evidence"]) <= {"", "pixels", "model", "pixels+model"} and "model" in set(members["evidence"])


def test_thresholds_are_data_and_unknown_keys_are_refused():
    assert embed_dups.embed_rule({"ratio_max": 0.2})["ratio_max"] == 0.2
    assert embed_dups.embed_rule()["ratio_max"] == embed_dups.EMBED_RULE["ratio_max"]
    with pytest.raises(ValueError, match="unknown"):
        embed_dups.embed_rule({"ratio": 0.2})
    emb = clustered()
    plant(emb, 0, 1, 0.2)                   # a loose copy: found only with a looser ratio
    scan = fake_scan(len(emb))
    strict = embed_dups.model_duplicate_pairs(scan, ids_of(len(emb)), emb, {"ratio_max": 0.01})
    loose = embed_dups.model_duplicate_pairs(scan, ids_of(len(emb)), emb, {"ratio_max": 0.9,
                                                                             "confirmed_ratio_max": 0.9})
    assert len(loose) > len(strict)


def test_evidence_is_saved_in_the_workspace_keyed_by_scan_model_and_thresholds(tmp_path):
    emb = clustered()
    plant(emb, 0, 1, 1e-4)
    scan = fake_scan(len(emb), workspace=tmp_path / "ws")
    first = embed_dups.model_evidence(scan, ids_of(len(emb)), emb, "model-a")
    assert first.folder.parent == tmp_path / "ws" / embed_dups.EVIDENCE_DIR
    assert "1 pair found by the model only" in first.note
    again = embed_dups.model_evidence(scan, ids_of(len(emb)), emb * 0 + 1, "model-a")   # read back, not recomputed
    assert again.note == first.note and len(again.pairs) == 1
    other_model = embed_dups.model_evidence(scan, ids_of(len(emb)), emb, "model-b")
    other_cut = embed_dups.model_evidence(scan, ids_of(len(emb)), emb, "model-a", {"ratio_max": 0.05})
    scan2 = fake_scan(len(emb), workspace=tmp_path / "ws", fingerprint="fp2")
    other_scan = embed_dups.model_evidence(scan2, ids_of(len(emb)), emb, "model-a")
    assert len({first.folder, other_model.folder, other_cut.folder, other_scan.folder}) == 4
    assert embed_dups.saved_evidence(scan2).folder == other_scan.folder
    assert embed_dups.saved_evidence(fake_scan(3, workspace=tmp_path / "ws", fingerprint="fp3")) is None
    (first.folder / "pairs.parquet").write_bytes(b"damaged")
    assert len(embed_dups.model_evidence(scan, ids_of(len(emb)), emb, "model-a").pairs) == 1   # computed again
    assert embed_dups.model_evidence(scan, ids_of(len(emb)), None, "model-a") is None


# ----------------------------------------------------------------------------- the Findings page

def _planted_model(scan):
    """Embeddings for every image of ``scan``, one planted pair (a train and a test image the pixels do not pair,
    both decoded), and the pair's ids."""
    img = scan.images.reset_index(drop=True)
    paired = set(scan.pairs["image_id_a"]) | set(scan.pairs["image_id_b"])
    ok = img["error_kind"].isna() & ~img["image_id"].isin(paired)
    a = int(img.index[ok & (img["split"] == "train")][0])
    b = int(img.index[ok & (img["split"] == "test")][0])
    emb = clustered(n_clusters=10, per_cluster=-(-len(img) // 10), spread=0.3)[:len(img)].copy()
    plant(emb, a, b, 1e-4)
    return img["image_id"].tolist(), emb, (img["image_id"][a], img["image_id"][b])


def _page_table(at, needle: str) -> pd.DataFrame:
    for df in at.dataframe:
        v = df.value
        if "detail" in v.columns and v["detail"].astype(str).str.contains(needle, regex=False).any():
            return v
    return pd.DataFrame(columns=["image_id", "check", "detail"])


@pytest.mark.usefixtures("module_cache")
def test_findings_page_shows_model_evidence_saved_for_the_scan(sample_scan):
    """A model scored in an earlier session left its evidence in the workspace: the Duplicates and Leakage sections
    show the merged evidence, the model-only pair marked as such."""
    from page_support import open_page, texts

    ids, emb, (a, b) = _planted_model(sample_scan)
    ev = embed_dups.model_evidence(sample_scan, ids, emb, "test-model")
    assert ev.folder.is_relative_to(sample_scan.workspace)
    at = open_page("pages/2_Findings.py")
    at.segmented_control(key="di_findings_family").set_value("duplicate").run()
    assert not at.exception
    assert "Model evidence joined: 1 pair found by the model only" in texts(at).replace("\\", "")
    table = _page_table(at, "model evidence only")
    assert set(table.loc[table["detail"].str.contains("model evidence only", regex=False), "image_id"]) == {a, b}
    assert (table["detail"].str.contains("model", regex=False) == table["image_id"].isin([a, b])).all()
    at.segmented_control(key="di_findings_family").set_value("leakage").run()
    assert not at.exception
    leak = _page_table(at, "model evidence only")
    assert {a, b} <= set(leak["image_id"])


@pytest.mark.usefixtures("module_cache")
def test_findings_page_joins_this_sessions_scored_model(sample_scan, monkeypatch):
    """A model scored on this scan in this session (the Model triage page's result): its evidence is computed on
    first view and shown."""
    from page_support import open_page, texts

    import inspect_core.ui.model_triage as mt

    ids, emb, (a, b) = _planted_model(sample_scan)
    emb = emb[::-1].copy()                  # another model than the saved one: rows reversed, ids with them
    ids = ids[::-1]
    result = SimpleNamespace(table=pd.DataFrame({"image_id": ids}), embeddings=emb, source={})
    at = open_page("pages/2_Findings.py")
    at.session_state[mt.RESULT_KEY] = {"result": result}
    at.segmented_control(key="di_findings_family").set_value("duplicate").run()
    assert not at.exception
    assert "Model evidence joined: 1 pair found by the model only" in texts(at).replace("\\", "")
    table = _page_table(at, "model evidence only")
    assert {a, b} <= set(table["image_id"])
    kept = at.session_state[mt.RESULT_KEY]["duplicate_evidence"]
    assert list(kept) == [sample_scan.fingerprint]
