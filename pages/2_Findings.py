"""Findings: a section per family with counts and evidence."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from inspect_core.ui import state, widgets
from inspect_core.ui.text import label_text, md_escape

st.set_page_config(page_title="Findings - Dataset Inspector", layout="wide")
st.title("Findings")

scan = state.require_scan()
store = state.store_for(scan)
findings = scan.findings
images = scan.images
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


families = state.families_for(str(scan.fingerprint), findings)
order = list(families) if families else []
counts = findings.groupby("family").size() if not findings.empty else pd.Series(dtype=int)
summary = pd.DataFrame({
    "family": order,
    "findings": [int(counts.get(f, 0)) for f in order],
    "images": [int(findings.loc[(findings["family"] == f) & (findings["image_id"] != ""), "image_id"].nunique())
               if not findings.empty else 0 for f in order],
})
st.dataframe(summary, hide_index=True, width="content")

selected = st.session_state.get(widgets.SELECTED_KEY)
if selected:
    widgets.image_detail(scan, selected, store, key_prefix="findings_detail")

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

fam = findings[findings["family"] == family]
st.header(f"{family}: {len(fam):,} findings")
per_check = fam.groupby("check").agg(findings=("image_id", "size"),
                                     images=("image_id", lambda s: s[s != ""].nunique())).reset_index()
per_check["what it means"] = [describe(c) for c in per_check["check"]]
st.dataframe(per_check, hide_index=True, width="stretch")
widgets.findings_bulk(scan, store, family)  # bulk decisions: a separate block, one undo step each

labels = images.set_index("image_id")["label"] if "label" in images.columns else pd.Series(dtype="string")
splits = images.set_index("image_id")["split"] if "split" in images.columns else pd.Series(dtype="string")


def show_groups(sub: pd.DataFrame, key: str) -> None:
    """Duplicate / leakage groups, the members of each side by side."""
    groups = sub.dropna(subset=["group_id"]).groupby("group_id")
    gids = sorted(groups.groups)
    if not gids:
        st.dataframe(sub[["image_id", "check", "score", "detail"]], hide_index=True, width="stretch")
        return
    n_pages = (len(gids) + GROUPS_PER_PAGE - 1) // GROUPS_PER_PAGE
    page = st.session_state.get(f"di_findings_{key}_pager") or 1
    st.text(f"{len(gids):,} groups; page {page} of {n_pages}")
    for gid in gids[(page - 1) * GROUPS_PER_PAGE: page * GROUPS_PER_PAGE]:
        members = groups.get_group(gid).drop_duplicates("image_id")
        with st.container(border=True):
            st.text(f"Group {gid}: {len(members)} images; {members['check'].iloc[0]}: {members['detail'].iloc[0]}")
            shown = members.head(6)
            cols = st.columns(max(len(shown), 2))
            for col, rec in zip(cols, shown.to_dict(orient="records")):
                with col:
                    iid = rec["image_id"]
                    widgets.show_image(scan, iid, max_side_px=320,
                                       caption=f"{iid} | {label_text(labels.get(iid))} | {label_text(splits.get(iid))}")
                    st.button("Open", key=f"di_findings_open_{key}_{gid}_{widgets._short_key(iid)}",
                              on_click=widgets.select_image, args=(iid,))
    if n_pages > 1:
        st.pagination(n_pages, key=f"di_findings_{key}_pager")


def show_table(sub: pd.DataFrame) -> None:
    cols = ["image_id", "check", "score", "detail"] + (["group_id"] if sub["group_id"].notna().any() else [])
    st.dataframe(sub[cols].sort_values(["check", "image_id"]), hide_index=True, width="stretch")


def show_images(sub: pd.DataFrame, key: str) -> None:
    ids = [i for i in sub["image_id"].drop_duplicates() if i]
    rows = images[images["image_id"].isin(ids[:IMAGES_PER_FAMILY])]
    if len(ids) > IMAGES_PER_FAMILY:
        st.caption(f"The first {IMAGES_PER_FAMILY} of {len(ids):,} images; the Gallery shows them all "
                   "(filter by this family).")
    widgets.thumb_grid(scan, rows, key_prefix=f"di_findings_{key}", decisions=store.current())


if family in ("duplicate", "leakage"):
    show_groups(fam, family)
    with st.expander("All findings as a table"):
        show_table(fam)
elif family == "integrity":
    st.caption("Broken files with the reason; they are never decoded again by the app.")
    show_table(fam)
elif family == "annotation":
    show_table(fam)
    ids = [i for i in fam["image_id"].drop_duplicates() if i]
    st.subheader("Boxes drawn on their images (red: flagged)")
    cols = st.columns(3)
    for n, iid in enumerate(ids[:9]):
        with cols[n % 3]:
            checks = ", ".join(sorted(set(fam.loc[fam["image_id"] == iid, "check"])))
            widgets.show_image(scan, iid, max_side_px=480, caption=f"{iid}: {checks}")
            st.button("Open", key=f"di_findings_open_ann_{widgets._short_key(iid)}",
                      on_click=widgets.select_image, args=(iid,))
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
