"""A scored model's embedding evidence joined to the scan's duplicate findings, for the Findings page
(``model_duplicate_evidence``): from this session's Model triage result, or the newest saved in the workspace."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import streamlit as st

log = logging.getLogger(__name__)

MODEL_TRIAGE_MODULE = "inspect_core.ui.model_triage"
EVIDENCE_DIR = "model_evidence"   # ``model.embed_dups.EVIDENCE_DIR`` (a test keeps the two equal)
SAVED_EVIDENCE_KEY = "di_saved_model_evidence"   # (scan fingerprint, saved folders and their times), evidence


def model_duplicate_evidence(scan):
    """The scan's duplicate, leakage and conflicting-label findings merged with a scored model's embedding evidence
    (``model.embed_dups.ModelEvidence``: findings, pairs with an ``evidence`` column, a note), or None.

    The model is this session's Model triage result when it was scored on this scan (its scores cache sits in the
    scan's workspace, or its image ids are the scan's), computed once per scan and kept in that result's entry and
    in the workspace; else the newest evidence saved for this scan in its workspace (a model scored in an earlier
    session). The Model triage page's module is only read when a page has loaded it: without it no model was
    scored in this process, and the Findings page does not pay for importing torch."""
    triage = sys.modules.get(MODEL_TRIAGE_MODULE)
    entry = st.session_state.get(triage.RESULT_KEY) if triage is not None else None
    result = entry.get("result") if isinstance(entry, dict) else None
    if result is not None and getattr(result, "embeddings", None) is not None:
        kept = entry.setdefault("duplicate_evidence", {})
        if scan.fingerprint in kept:
            return kept[scan.fingerprint]
        ids = result.table["image_id"].astype(str)
        cache_key = (getattr(result, "source", None) or {}).get("cache_key")
        # torch is loaded already (a model was scored): these imports cost nothing
        from inspect_core.model import embed_dups
        from inspect_core.model.cache import SCORES_DIR

        scored_here = (Path(scan.workspace) / SCORES_DIR / str(cache_key)).is_dir() if cache_key else \
            bool(ids.isin(scan.images["image_id"].astype(str)).mean() >= 0.5)
        if scored_here:
            import hashlib

            model_key = cache_key or hashlib.sha1(result.embeddings.tobytes()).hexdigest()
            with st.spinner(f"Joining the model's embedding evidence for {len(ids):,} images..."):
                try:
                    kept[scan.fingerprint] = embed_dups.model_evidence(scan, ids.tolist(), result.embeddings,
                                                                       model_key)
                except (ValueError, MemoryError) as exc:
                    log.warning("model duplicate evidence failed: %s", exc)
                    kept[scan.fingerprint] = None
            return kept[scan.fingerprint]
    # saved by a model scored earlier: read once per session and change of the saved folders (not on every rerun:
    # at 1,000,000 images the merged findings are tens of MB)
    base = Path(scan.workspace) / EVIDENCE_DIR   # embed_dups imports torch (7.8 s at a first open under load)
    try:
        stamp = tuple(sorted((p.name, p.stat().st_mtime_ns) for p in base.iterdir())) if base.is_dir() else ()
    except OSError:
        stamp = ()
    if not stamp:
        return None
    key = (str(scan.fingerprint), stamp)
    kept = st.session_state.get(SAVED_EVIDENCE_KEY)
    if kept is not None and kept[0] == key:
        return kept[1]
    from inspect_core.model import embed_dups
    try:
        evidence = embed_dups.saved_evidence(scan)
    except OSError as exc:
        log.warning("saved model evidence could not be read: %s", exc)
        evidence = None
    st.session_state[SAVED_EVIDENCE_KEY] = (key, evidence)
    return evidence
