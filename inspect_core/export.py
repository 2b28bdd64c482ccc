"""Exports of review decisions: the relabel list (CSV / JSON) and a cleaned manifest.

Nothing here writes into the dataset: ``write_exports`` refuses an output folder inside the root,
and the ``*_bytes`` functions return bytes for a download button.
"""
from __future__ import annotations

import json
import os
from datetime import datetime, UTC
from pathlib import Path, PurePosixPath

import pandas as pd

from .paths import is_within

RELABEL_COLUMNS = ["image_id", "path", "old_label", "new_label", "action", "note", "decided_at"]
MANIFEST_BASE_COLUMNS = ["path", "label", "split"]
# A text cell starting with one of these is run as a formula by Excel, LibreOffice or Google Sheets (a tab or
# carriage return first is skipped by some of them, so they count too): such a cell is written with a leading
# single quote, which every spreadsheet shows as text (OWASP's rule for CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value):
    """A CSV cell as a spreadsheet will not run it: text starting with a formula character gets a leading
    quote; numbers, missing values and other text are returned as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


_NEEDS_QUOTES = (",", '"', "\n", "\r", "\t")


def from_spreadsheet_safe(text: str) -> str:
    """The inverse of ``spreadsheet_safe`` for a cell read back (a cleaned manifest given as a manifest again)."""
    if isinstance(text, str) and len(text) > 1 and text[0] == "'" and text[1:].startswith(FORMULA_STARTS):
        return text[1:]
    return text


def _csv_cell(value) -> str:
    """One cell of RFC 4180 CSV: missing is empty; text is neutralised (``spreadsheet_safe``) and quoted when it
    holds a comma, quote, CR, LF or tab (the csv module leaves a lone CR unquoted, and it splits the row)."""
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and value != value):
        return ""
    if not isinstance(value, str):
        return str(value)
    text = spreadsheet_safe(value)
    if any(ch in text for ch in _NEEDS_QUOTES):
        return '"' + text.replace('"', '""') + '"'
    return text


def safe_csv_bytes(df: pd.DataFrame) -> bytes:
    """``df`` as UTF-8 CSV that a spreadsheet opens as data, never as formulas (text cells and column names
    neutralised), one line per row however many newlines a note holds."""
    lines = [",".join(_csv_cell(str(c)) for c in df.columns)]
    lines += [",".join(_csv_cell(v) for v in row) for row in df.itertuples(index=False, name=None)]
    return ("\n".join(lines) + "\n").encode("utf-8")


def joined_path(root: Path | str, image_id: str) -> str:
    """The root-joined path of an image as text (not resolved, nothing opened); a URL root gives the object's URL."""
    from .storage import is_remote, join
    if is_remote(root):
        return join(root, str(image_id))
    return str(Path(root) / PurePosixPath(str(image_id)))


def relabel_table(decisions: pd.DataFrame, root: Path | str,
                  actions: tuple[str, ...] = ("relabel", "remove", "keep")) -> pd.DataFrame:
    """The decisions in force (``ReviewStore.current()``) as the relabel list, ordered by image_id."""
    if decisions is None or decisions.empty:
        return pd.DataFrame({c: pd.Series(dtype="string") for c in RELABEL_COLUMNS})
    df = decisions[decisions["action"].isin(list(actions))].copy()
    df["path"] = [joined_path(root, i) for i in df["image_id"]]
    out = df[RELABEL_COLUMNS].sort_values("image_id", kind="stable").reset_index(drop=True)
    return out.astype("string")


def _records(df: pd.DataFrame) -> list[dict]:
    rows = []
    for rec in df.to_dict(orient="records"):
        rows.append({k: (None if (v is None or v is pd.NA or (isinstance(v, float) and pd.isna(v))) else v)
                     for k, v in rec.items()})
    return rows


def relabel_csv_bytes(table: pd.DataFrame) -> bytes:
    return safe_csv_bytes(table)


def relabel_json_bytes(table: pd.DataFrame) -> bytes:
    return json.dumps(_records(table), ensure_ascii=False, indent=2).encode("utf-8")


def cleaned_manifest(images: pd.DataFrame, decisions: pd.DataFrame | None) -> pd.DataFrame:
    """The dataset's image table with removals dropped and relabels applied.

    Columns: ``path`` (the image_id, relative to the dataset root), ``label``, ``split``, then the
    manifest's metadata columns as given. Pass the loader's table (``Dataset.images``), not the scan
    table, so that scan statistics do not end up in the manifest.
    """
    df = images.copy()
    if decisions is not None and not decisions.empty:
        removed = set(decisions.loc[decisions["action"] == "remove", "image_id"])
        relabels = decisions[decisions["action"] == "relabel"].set_index("image_id")["new_label"]
        df = df[~df["image_id"].isin(removed)]
        new = df["image_id"].map(relabels)
        if "label" not in df.columns:
            df["label"] = pd.Series(pd.NA, index=df.index, dtype="string")
        df["label"] = df["label"].astype("string").where(new.isna(), new.astype("string"))
    if "split" not in df.columns:
        df["split"] = pd.Series(pd.NA, index=df.index, dtype="string")
    if "label" not in df.columns:
        df["label"] = pd.Series(pd.NA, index=df.index, dtype="string")
    # the scan renames metadata columns named like its own columns (format -> meta_format): the manifest gets
    # the names the user gave
    back = {new: old for new, old in (images.attrs.get("metadata_renames") or {}).items() if old not in df.columns}
    df = df.rename(columns={"image_id": "path", **back})
    extra = [c for c in df.columns if c not in MANIFEST_BASE_COLUMNS]
    return df[MANIFEST_BASE_COLUMNS + extra].sort_values("path", kind="stable").reset_index(drop=True)


def manifest_metadata(images: pd.DataFrame, decisions: pd.DataFrame | None, root: Path | str,
                      manifest: pd.DataFrame) -> dict:
    """What the cleaned manifest was made from: counts and when."""
    dec = decisions if decisions is not None else pd.DataFrame(columns=["action"])
    return {
        "source_root": str(root),
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "n_images_source": int(len(images)),
        "n_images_cleaned": int(len(manifest)),
        "n_removed": int((dec["action"] == "remove").sum()) if len(dec) else 0,
        "n_relabelled": int((dec["action"] == "relabel").sum()) if len(dec) else 0,
        "n_kept": int((dec["action"] == "keep").sum()) if len(dec) else 0,
        "path_is_relative_to": "source_root",
    }


def manifest_csv_bytes(manifest: pd.DataFrame) -> bytes:
    return safe_csv_bytes(manifest)


def write_exports(out_dir: Path | str, root: Path | str, images: pd.DataFrame,
                  decisions: pd.DataFrame | None) -> dict[str, Path]:
    """Write relabels.csv, relabels.json, cleaned_manifest.csv and cleaned_manifest.json to ``out_dir``.

    Raises ValueError when ``out_dir`` lies inside the dataset root (exports never touch the dataset).
    """
    out = Path(out_dir).expanduser()
    if is_within(out, root):
        raise ValueError(f"export folder {out} lies inside the dataset root {root}; choose a folder outside it")
    out.mkdir(parents=True, exist_ok=True)
    table = relabel_table(decisions, root)
    manifest = cleaned_manifest(images, decisions)
    meta = manifest_metadata(images, decisions, root, manifest)
    files = {
        "relabels_csv": (out / "relabels.csv", relabel_csv_bytes(table)),
        "relabels_json": (out / "relabels.json", relabel_json_bytes(table)),
        "manifest_csv": (out / "cleaned_manifest.csv", manifest_csv_bytes(manifest)),
        "manifest_json": (out / "cleaned_manifest.json",
                          json.dumps(meta, indent=2).encode("utf-8")),
    }
    written = {}
    for name, (path, data) in files.items():
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        written[name] = path
    return written
