"""duplicate: the same image more than once, exactly or after edits."""
from __future__ import annotations

from .context import NEAR_COS, NEAR_COS_STRONG, NEAR_PHASH_MAX
from .registry import finding, register

CHECKS = {
    "exact_duplicate": "Same bytes, or same decoded pixels, as another image (score 1).",
    "near_duplicate": ("Visually the same image after re-encoding, resizing, a small crop or a colour shift: "
                       f"tiny-image cosine >= {NEAR_COS_STRONG}, or >= {NEAR_COS} with pHash distance <= {NEAR_PHASH_MAX}. "
                       "Score = the cosine."),
}


@register("duplicate", CHECKS)
def check_duplicate(ctx):
    pairs = ctx.pairs
    best: dict[tuple[str, str], tuple[float, list[str], int]] = {}
    for p in pairs.itertuples(index=False):
        check = "exact_duplicate" if p.kind == "exact" else "near_duplicate"
        for me, other in ((p.image_id_a, p.image_id_b), (p.image_id_b, p.image_id_a)):
            score, others, gid = best.get((me, check), (0.0, [], p.group_id))
            others.append(f"{other} ({p.why or f'cosine {p.score:.3f}, pHash distance {p.phash_distance}'})")
            best[(me, check)] = (max(score, float(p.score)), others, p.group_id)
    out = []
    for (image_id, check), (score, others, gid) in best.items():
        shown = "; ".join(others[:5]) + (f"; and {len(others) - 5} more" if len(others) > 5 else "")
        out.append(finding(image_id, check, score, f"duplicate of {shown}", gid))
    return out
