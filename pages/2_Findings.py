"""Findings: a section per family with counts and evidence."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from inspect_core import neardup
from inspect_core.ui import model_evidence, state, viewer, widgets
from inspect_core.ui.text import label_text, md_escape

st.set_page_config(page_title="Findings - Dataset Inspector", layout="wide")
st.title("Findings")

scan = state.require_scan(needs_frame=False)
store = state.store_for(scan)
findings = scan.findings
lazy = state.lazy_images(scan)   # a big scan: labels and rows looked up by image_id in its memory-mapped table
pairs, pairs_key = scan.pairs, str(scan.fingerprint)
evidence = model_evidence.model_duplicate_evidence(scan)  # a scored model's embeddings joined to the pixels' evidence
if evidence is not None:
    findings, pairs, pairs_key = evidence.findings, evidence.pairs, evidence.key
GROUPS_PER_PAGE = 8
IMAGES_PER_FAMILY = 12


def describe(check: str) -> str:
    try:
        from inspect_core.checks import REGISTRY
        for spec in REGISTRY.values():
            if check in spec.checks:
                return str(spec.checks[check])
    except Exception:
        pass
    return ""


index = state.findings_index(pairs_key, findings, scan.workspace)   # a big table: counts and rows from its codes
families = state.families_for(str(scan.fingerprint), findings, index)
order = list(families) if families else []


@st.cache_data(show_spinner=False, max_entries=8)
def family_summary(key: str, order: tuple, _findings: pd.DataFrame) -> tuple[pd.Series, pd.DataFrame]:
    """Findings and images per family, counted once per findings table (``key``: the scan's fingerprint or the
    model evidence's key): 1,900,000 findings at 10,000,000 images took seconds per rerun."""
    if _findings.empty:
        return pd.Series(dtype=int), pd.DataFrame({"family": list(order), "findings": 0, "images": 0})
    counts = _findings.groupby("family").size()
    with_image = _findings[_findings["image_id"] != ""]
    n_images = with_image.groupby("family")["image_id"].nunique()
    return counts, pd.DataFrame({"family": list(order), "findings": [int(counts.get(f, 0)) for f in order],
                                 "images": [int(n_images.get(f, 0)) for f in order]})


counts, summary = family_summary(pairs_key, tuple(order), findings) if index is None else \
    (index.counts(), index.summary(order))
st.dataframe(summary, hide_index=True, width="content")

selected = st.session_state.get(widgets.SELECTED_KEY)
if selected:
    viewer.image_detail(scan, selected, store, key_prefix="findings_detail")

with_findings = [f for f in order if counts.get(f, 0) > 0]
if not with_findings:
    st.success("No findings: every check passed.")
    st.stop()
wanted = st.query_params.get("family")
if wanted in with_findings and st.session_state.get("di_findings_link") != wanted:
    st.session_state["di_findings_link"] = wanted  # a link from Home opens its family once
    st.session_state["di_findings_family"] = wanted
if st.session_state.get("di_findings_family") not in with_findings:
    st.session_state["di_findings_family"] = with_findings[0]
family = st.segmented_control("Family", with_findings, key="di_findings_family",
                              format_func=lambda f: f"{f} ({int(counts.get(f, 0))})")
if not family:
    st.stop()



@st.cache_resource(show_spinner=False, max_entries=16)
def family_rows(key: str, family: str, _findings: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One family's findings and its per-check counts, once per findings table and family (read-only: selecting
    and counting the 800,000 property findings of a 10,000,000-image scan took seconds on every rerun)."""
    fam = _findings[_findings["family"] == family]
    per_check = fam.groupby("check").agg(findings=("image_id", "size"),
                                         images=("image_id", lambda s: s[s != ""].nunique())).reset_index()
    return fam, per_check


if index is None:
    fam, per_check = family_rows(pairs_key, family, findings)
    n_fam = len(fam)
else:   # the family's frame only where a section needs it (groups, boxes): 800,000 rows copied per family
    fam, per_check, n_fam = None, index.per_check(family), len(index.positions(family))
per_check = per_check.copy()


def family_frame() -> pd.DataFrame:
    return fam if fam is not None else index.frame(family)


if evidence is not None and family in ("duplicate", "leakage", "label"):
    st.caption(md_escape(evidence.note))
st.header(f"{family}: {n_fam:,} findings")
per_check["what it means"] = [describe(c) for c in per_check["check"]]
st.dataframe(per_check, hide_index=True, width="stretch")
widgets.findings_bulk(scan, store, family, fam=fam, index=index)  # bulk decisions: a separate block, one undo step each

@st.cache_resource(show_spinner=False, max_entries=4)
def label_and_split(fingerprint: str, _images: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """image_id -> label and -> split, indexed once per scan (read-only; 100,000 rows re-indexed each rerun
    cost tens of ms)."""
    empty = pd.Series(dtype="string")
    by_id = _images.set_index("image_id")
    return (by_id["label"] if "label" in by_id.columns else empty,
            by_id["split"] if "split" in by_id.columns else empty)


labels, splits = label_and_split(str(scan.fingerprint), scan.images) if lazy is None else \
    (lazy.lookup("label"), lazy.lookup("split"))   # a big scan: each shown image looked up (no 10M-row index)


@st.cache_data(show_spinner=False, max_entries=4)
def group_members(fingerprint: str, _pairs: pd.DataFrame) -> pd.DataFrame:
    return neardup.group_members(_pairs)


def caption_of(iid: str, extra: str = "") -> str:
    return f"{iid} | {label_text(labels.get(iid))} | {label_text(splits.get(iid))}{extra}"


def open_button(iid: str, key: str) -> None:
    st.button("Open", key=f"di_findings_open_{key}_{widgets._short_key(iid)}", on_click=widgets.select_image,
              args=(iid,))


def show_groups(sub: pd.DataFrame, key: str) -> None:
    """Duplicate / leakage groups, the members of each side by side: the representative first, then its
    duplicates with their score to it (every member is a duplicate of the representative: groups never chain)."""
    groups = sub.dropna(subset=["group_id"]).groupby("group_id")
    gids = sorted(groups.groups)
    if not gids:
        st.dataframe(sub[["image_id", "check", "score", "detail"]], hide_index=True, width="stretch")
        return
    members = group_members(pairs_key, pairs)
    by_group = dict(tuple(members.groupby("group_id"))) if not members.empty else {}
    n_pages = (len(gids) + GROUPS_PER_PAGE - 1) // GROUPS_PER_PAGE
    page = st.session_state.get(f"di_findings_{key}_pager") or 1
    st.text(f"{len(gids):,} groups; page {page} of {n_pages}")
    for gid in gids[(page - 1) * GROUPS_PER_PAGE: page * GROUPS_PER_PAGE]:
        found = groups.get_group(gid).drop_duplicates("image_id")
        with st.container(border=True):
            g = by_group.get(gid)
            if g is None:  # a scan saved before groups had representatives
                st.text(f"Group {gid}: {len(found)} images; {found['check'].iloc[0]}: {found['detail'].iloc[0]}")
                shown = [(iid, caption_of(iid)) for iid in found["image_id"].head(6)]
            else:
                rep, part, n_parts = g["representative"].iloc[0], int(g["part"].iloc[0]), int(g["n_parts"].iloc[0])
                split = (f"; part {part} of {n_parts}: the representative has more duplicates than fit one group"
                         if n_parts > 1 else "")
                st.text(f"Group {gid}: {len(g)} images, each a duplicate of the representative {rep}{split}")
                shown = [(r.image_id, caption_of(r.image_id, " | representative" if r.image_id == rep else
                                                 f" | score to representative {r.score_to_representative:.3f}"
                                                 + (f" | {r.evidence}" if getattr(r, "evidence", "") else "")))
                         for r in g.head(6).itertuples(index=False)]
                if len(g) > 6:
                    st.caption(f"The first 6 of {len(g)}; the table below lists every finding.")
            cols = st.columns(max(len(shown), 2))
            for col, (iid, cap) in zip(cols, shown):
                with col:
                    viewer.show_image(scan, iid, max_side_px=320, caption=cap)
                    open_button(iid, f"{key}_{gid}")
    if n_pages > 1:
        st.pagination(n_pages, key=f"di_findings_{key}_pager")


def show_label_pairs() -> None:
    """Conflicting labels: each pair of the same picture with two labels, side by side, both labels shown."""
    if pairs is None or pairs.empty or "same_picture" not in pairs.columns:
        return
    la, lb = pairs["label_a"], pairs["label_b"]
    conflict = pairs[pairs["same_picture"] & la.notna() & lb.notna() & (la.astype(str) != lb.astype(str))]
    if conflict.empty:
        return
    st.subheader("Conflicting labels: the same picture, two labels")
    n_pages = (len(conflict) + GROUPS_PER_PAGE - 1) // GROUPS_PER_PAGE
    page = st.session_state.get("di_findings_label_pairs_pager") or 1
    st.text(f"{len(conflict):,} pairs; page {page} of {n_pages}")
    for n, p in enumerate(conflict.iloc[(page - 1) * GROUPS_PER_PAGE: page * GROUPS_PER_PAGE]
                          .itertuples(index=False)):
        with st.container(border=True):
            st.caption(md_escape(f"{p.kind} duplicate: {p.why}"))
            cols = st.columns(2)
            for col, iid, label, split in ((cols[0], p.image_id_a, p.label_a, p.split_a),
                                           (cols[1], p.image_id_b, p.label_b, p.split_b)):
                with col:
                    viewer.show_image(scan, iid, max_side_px=320)
                    st.markdown(f"**label: {md_escape(label_text(label))}**")
                    st.caption(md_escape(f"{iid} | {label_text(split)}"))
                    open_button(iid, f"label_pair_{page}_{n}")
    if n_pages > 1:
        st.pagination(n_pages, key="di_findings_label_pairs_pager")


TABLE_MAX_ROWS = 10_000   # a longer table: its first rows (by check, image_id), sorted by Arrow, with a note


def show_table(sub: pd.DataFrame | None) -> None:
    """``sub``: the family's findings; None: the whole family from the index."""
    if sub is None:
        head, n = index.sorted_head(family, TABLE_MAX_ROWS)
        has_group = bool(index.has_group[index.positions(family)].any())
        cols = ["image_id", "check", "score", "detail"] + (["group_id"] if has_group else [])
        if n <= TABLE_MAX_ROWS:
            st.dataframe(head[cols], hide_index=True, width="stretch")
            return
        st.caption(f"The first {TABLE_MAX_ROWS:,} of {n:,} findings (by check, then image); the Gallery "
                   "filters by check over all of them, and findings.csv in the workspace lists every one.")
        st.dataframe(head[cols].reset_index(drop=True), hide_index=True, width="stretch")
        return
    cols = ["image_id", "check", "score", "detail"] + (["group_id"] if sub["group_id"].notna().any() else [])
    if len(sub) <= TABLE_MAX_ROWS:
        st.dataframe(sub[cols].sort_values(["check", "image_id"]), hide_index=True, width="stretch")
        return
    import pyarrow as pa   # 800,000 findings: pandas' sort took 6.6 s, Arrow's a fraction of that (same order)
    table = pa.Table.from_pandas(sub[cols], preserve_index=False).sort_by([("check", "ascending"),
                                                                             ("image_id", "ascending")])
    st.caption(f"The first {TABLE_MAX_ROWS:,} of {len(sub):,} findings (by check, then image); the Gallery "
               "filters by check over all of them, and findings.csv in the workspace lists every one.")
    st.dataframe(table.slice(0, TABLE_MAX_ROWS).to_pandas(), hide_index=True, width="stretch")


def show_images(sub: pd.DataFrame | None, key: str, exclude_checks=()) -> None:
    """``sub``: the findings whose images to show; None: the family's from the index (less ``exclude_checks``)."""
    if sub is None:
        first, n_ids = index.first_image_ids(family, IMAGES_PER_FAMILY, exclude_checks)
    else:
        col = sub["image_id"]
        ids = col[col != ""].drop_duplicates()   # vectorised: a Python pass over 800,000 ids took seconds
        first, n_ids = ids.head(IMAGES_PER_FAMILY).tolist(), len(ids)
    rows = state.rows_of_ids(scan, first)
    if n_ids > IMAGES_PER_FAMILY:
        st.caption(f"The first {IMAGES_PER_FAMILY} of {n_ids:,} images; the Gallery shows them all "
                   "(filter by this family).")
    widgets.thumb_grid(scan, rows, key_prefix=f"di_findings_{key}", decisions=store.current())


if family in ("duplicate", "leakage"):
    show_groups(family_frame(), family)
    with st.expander("All findings as a table"):
        show_table(fam)
elif family == "integrity":
    st.caption("Broken files with the reason; they are never decoded again by the app.")
    show_table(fam)
elif family == "annotation":
    show_table(fam)
    ids = [i for i in fam["image_id"].drop_duplicates() if i] if fam is not None else \
        index.first_image_ids(family, 9)[0]
    st.subheader("Boxes drawn on their images (red: flagged)")
    cols = st.columns(3)
    for n, iid in enumerate(ids[:9]):
        with cols[n % 3]:
            checks = ", ".join(sorted(set(fam.loc[fam["image_id"] == iid, "check"])) if fam is not None else
                               index.checks_of(family, iid))
            viewer.show_image(scan, iid, max_side_px=480, caption=f"{iid}: {checks}")
            st.button("Open", key=f"di_findings_open_ann_{widgets._short_key(iid)}",
                      on_click=widgets.select_image, args=(iid,))
elif family == "label":
    show_table(fam)
    show_label_pairs()
    if fam is None:
        if index.n_rows(family, ("conflicting_labels",)):
            show_images(None, family, ("conflicting_labels",))
    else:
        others = fam[fam["check"] != "conflicting_labels"]
        if not others.empty:
            show_images(others, family)
elif family == "balance":
    st.subheader("Class balance")
    bal = getattr(scan, "balance", None)
    if bal is not None and not bal.empty:
        st.dataframe(bal, hide_index=True, width="stretch")
        st.caption("suggested_class_weight: weights for a weighted loss that make every class count equally "
                   "in the training split.")
    show_table(fam)
else:
    show_table(fam)
    show_images(fam, family)
