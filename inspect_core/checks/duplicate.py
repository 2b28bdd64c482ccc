"""duplicate: the same image more than once, exactly or after edits."""
from __future__ import annotations

from .context import NEAR_RULE, describe_near_rule
from .registry import finding, register

CHECKS = {
    "exact_duplicate": "Same bytes, or same decoded pixels, as another image (score 1).",
    "near_duplicate": ("Visually the same image after re-encoding, resizing, a small crop or a colour shift. The "
                       "cut depends on the size of the smaller image and on its content, stricter where the tiny-image "
                       f"descriptor carries little: {describe_near_rule(NEAR_RULE)}. Score = the cosine. Groups hold a "
                       "representative and its own duplicates only (no chains), at most "
                       f"{NEAR_RULE['group_max_images']} images a group."),
}


def group_text(groups, row: int) -> str:
    """Where an image sits in the duplicate groups, in words ('' when in none)."""
    if row not in groups.index:
        return ""
    g = groups.loc[row]
    gid, part, n_parts = int(g["group_id"]), int(g["part"]), int(g["n_parts"])
    split = f", part {part} of {n_parts} (the representative's duplicates are split)" if n_parts > 1 else ""
    if int(g["representative"]) == row:
        return f"; representative of group {gid}{split}"
    return f"; group {gid}{split}, score {g['score_to_representative']:.3f} to its representative"


@register("duplicate", CHECKS)
def check_duplicate(ctx):
    pairs = ctx.pairs
    groups = ctx.groups.drop_duplicates("node").set_index("node")  # a representative: its first part
    gid_of = groups["group_id"].to_dict()
    best: dict[tuple[int, str], tuple[float, list[str]]] = {}
    for p in pairs.itertuples(index=False):
        check = "exact_duplicate" if p.kind == "exact" else "near_duplicate"
        for me, other in ((p.a, p.image_id_b), (p.b, p.image_id_a)):
            score, others = best.get((me, check), (0.0, []))
            others.append(f"{other} ({p.why})")
            best[(me, check)] = (max(score, float(p.score)), others)
    ids = ctx.images["image_id"].to_numpy()
    out = []
    for (row, check), (score, others) in best.items():
        shown = "; ".join(others[:5]) + (f"; and {len(others) - 5} more" if len(others) > 5 else "")
        out.append(finding(ids[row], check, score, f"duplicate of {shown}{group_text(groups, row)}",
                           gid_of.get(row, -1)))
    return out
