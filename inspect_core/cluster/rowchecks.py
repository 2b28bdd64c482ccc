"""The per-row checks of a cluster scan, run on the workers: each task reads its partition files (the read's rows,
``engine.read_files``) and runs the checks whose findings on a row depend only on that row and on global figures
the driver already has, then returns its findings (small); the driver never runs them over every row.

- integrity (corrupt, truncated, empty, missing, format mismatch ...): the row alone.
- property (dark, blurry, odd size ... grayscale): the row and the dataset's robust statistics and grey counts,
  ``CheckContext.column_stats``, which the statistics step made from the partitions' sketches and brackets
  (cluster/steps.py): the same cuts as the local scan, so the same findings.
- label, its per-row half (missing_label, unknown_label: ``label.label_row_findings``): the row's label (the loader's,
  sent by the driver with the task) and the class list. Its other half, conflicting labels, needs the duplicate pairs
  and runs on the driver (``label.label_pair_findings``) with the other pair- and dataset-level checks (duplicate,
  leakage, annotation, balance).

A family runs here only while the registry holds the built-in function (an outside check registered under the
same family name runs on the driver, as before). Rows in no partition file (the file cache's hits, a partition that
could not be written) are checked on the driver, by the same functions, on those rows only. A cluster whose workers
cannot open the workspace's files: every row is checked on the driver (``steps.ClusterSteps.row_findings``).
"""
from __future__ import annotations

from types import SimpleNamespace

import pandas as pd

# the partition columns the per-row checks read (integrity, property_frame, label)
ROW_COLUMNS = ("image_id", "error_kind", "error_detail", "format", "ext_format", "mode", "brightness", "contrast",
               "blur_laplacian_var", "entropy_bits", "width_px", "height_px", "gray_mode", "colourfulness")


def _label_rows(ctx) -> list:
    from ..checks.label import label_row_findings
    return label_row_findings(ctx.images, ctx.classes, ctx.has_image_labels)


def _label_pairs(ctx) -> list:
    from ..checks.label import label_pair_findings
    return label_pair_findings(ctx)


def row_families() -> dict:
    """{family: (its per-row part, fn(ctx) -> finding rows; the rest of it for the driver or None)} for every
    built-in family with a per-row part that the registry still holds as built."""
    from ..checks import REGISTRY
    from ..checks.integrity import check_integrity
    from ..checks.label import check_label
    from ..checks.property import check_property
    built = {"integrity": (check_integrity, check_integrity, None),
             "property": (check_property, check_property, None),
             "label": (check_label, _label_rows, _label_pairs)}
    return {f: (rows, rest) for f, (fn, rows, rest) in built.items() if f in REGISTRY and REGISTRY[f].fn is fn}


def frame_findings(img: pd.DataFrame, families, classes, has_image_labels: bool, column_stats: dict) -> dict:
    """{family: findings frame or None} of the per-row parts of ``families`` on the rows ``img`` (signal columns,
    ``label`` when labelled; ``aspect_ratio`` when absent is derived by ``property.property_frame``, as locally)."""
    ctx = SimpleNamespace(images=img, column_stats=column_stats, classes=list(classes),
                          has_image_labels=has_image_labels)
    parts = row_families()
    return {f: _frame(parts[f][0](ctx)) for f in families}


def _frame(rows: list) -> pd.DataFrame | None:
    """Finding rows as a findings frame (``schema.finding_frame``: Arrow-backed strings, a tenth of the dicts' memory
    on the driver, which holds every task's until the checks are done), None when there are none."""
    from ..schema import finding_frame
    return finding_frame(rows) if rows else None


def parts_findings(paths: list[str], labels: list, families, classes, has_image_labels: bool,
                   column_stats: dict) -> dict:
    """Task: ``frame_findings`` of the rows of the partition files ``paths`` (read here, on the worker), each file's
    rows given their labels (``labels``: one Series per file, or None)."""
    from .steps import read_part
    frames = []
    for path, lab in zip(paths, labels):
        frame = read_part(path, ROW_COLUMNS)
        if lab is not None:
            frame["label"] = lab.reset_index(drop=True)
        frames.append(frame)
    img = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return frame_findings(img, families, classes, has_image_labels, column_stats)


def row_findings_placed(images: pd.DataFrame, placed, ctx, cluster=None, stats: dict | None = None) -> dict:
    """``scanner.run_checks``'s ``done_elsewhere`` for the table ``images`` of a cluster scan: the per-row parts of the
    families of ``row_families`` run by tasks on the partition files (``placed``: ``steps.place``), on Ray when
    ``cluster`` is a connected ``ray`` module (else in this process), the rows in no file here; ``ctx`` gives the
    class list and the global statistics. ``stats`` receives tasks, rows_on_workers and rows_in_driver."""
    from .steps import _groups, _n_rows, _positions
    families = row_families()
    stats = {} if stats is None else stats
    if not families or not placed.parts:
        stats.update(tasks=0, rows_on_workers=0, rows_in_driver=len(images))
        return {}
    names = list(families)
    labelled = bool(ctx.has_image_labels) and "label" in images
    label = images["label"] if labelled else None
    args = (names, list(ctx.classes), bool(ctx.has_image_labels), ctx.column_stats)
    groups = _groups(placed.parts, [_n_rows(p[1]) for p in placed.parts])
    jobs = [([p for p, _ in g], [label.iloc[_positions(r)] if labelled else None for _, r in g]) for g in groups]
    if cluster is not None:
        task = cluster.remote(parts_findings)
        results = cluster.get([task.remote(paths, labels, *args) for paths, labels in jobs])
    else:
        results = [parts_findings(paths, labels, *args) for paths, labels in jobs]
    rest = placed.rest
    if len(rest):
        cols = [c for c in (*ROW_COLUMNS, "aspect_ratio") if c in images] + (["label"] if labelled else [])
        results.append(frame_findings(images.iloc[rest][cols], *args))
    stats.update(tasks=len(jobs), rows_on_workers=placed.n_from_parts, rows_in_driver=int(len(rest)))
    out = {}
    for f in names:
        found = [res[f] for res in results if res[f] is not None]
        out[f] = (pd.concat(found, ignore_index=True) if len(found) > 1 else found[0] if found else None,
                  families[f][1])
    return out


__all__ = ["ROW_COLUMNS", "row_families", "frame_findings", "parts_findings", "row_findings_placed"]
