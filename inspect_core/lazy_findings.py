"""The findings of a big scan as integer codes (``FindingsIndex``): the Findings page's counts, family rows, first rows
and image ids from numpy over the codes instead of pandas over millions of findings. Used from
``FINDINGS_INDEX_MIN_ROWS`` findings on (``ui.state.findings_index``); below it the page works on the pandas table.
"""
from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from .lazy_table import take_frame

FINDINGS_INDEX_MIN_ROWS = 200_000   # from this many findings on, the Findings page works from a ``FindingsIndex``


def index_path(workspace, key: str) -> Path:
    """Where the ``FindingsIndex`` of the findings table ``key`` (a scan's fingerprint, a model evidence's key) is
    kept in a workspace."""
    import hashlib

    from .lazy_table import LAZY_DIR
    name = str(key) if str(key).replace("-", "").replace("_", "").isalnum() else \
        hashlib.sha1(str(key).encode()).hexdigest()
    return Path(workspace) / LAZY_DIR / f"findings_{name}"


class FindingsIndex:
    """A findings table's family, check and image_id columns as integer codes, made once per table (read-only,
    shared): a family's rows, its counts, its first rows by (check, image_id) and its image_ids come from numpy on
    the codes, not from pandas filters, groupbys and sorts of the whole table (1,899,075 findings at 10,000,000
    images: seconds each, on every rerun). Codes follow the sorted values (Arrow's dictionary, sorted), so the
    orders are the pandas and Arrow sorts' (missing values last); every answer is the pandas path's. What a family
    asks is worked out once and kept (``_memo``).

    ``path`` (``<workspace>/lazy/findings_<key>``): the codes are kept there (``.npz`` and the image_ids' sorted
    dictionary as ``.arrow``), made by the first process of a findings table and read by the later ones (making
    them: 14.5 s at 1,899,075 findings under load)."""

    def __init__(self, findings: pd.DataFrame, path: Path | str | None = None):
        self.findings = findings
        loaded = self._load(Path(path), len(findings)) if path is not None else None
        if loaded is not None and not self._matches(findings, loaded):
            loaded = None   # the same name, another table of as many rows (a scan saved again): made again
        if loaded is None:
            fam, self.family_names = self._codes(findings["family"])
            chk, self.check_names = self._codes(findings["check"])
            ids, self._id_dict = self._codes(findings["image_id"], as_arrow=True)
            group = findings["group_id"].notna().to_numpy() if "group_id" in findings.columns else \
                np.zeros(len(findings), dtype=bool)
            self._fam, self._chk, self._ids, self.has_group = fam, chk, ids, group
            # every row in (family, check, image_id) order, stable: a family's sorted table is a slice of it
            self._by_family = np.lexsort((ids, chk, fam)).astype(np.int32)
            if path is not None:
                self._save(Path(path))
        else:
            (self._fam, self._chk, self._ids, self.has_group, self._by_family, self.family_names, self.check_names,
             self._id_dict) = loaded
        self._missing_id = len(self._id_dict)
        self._not_empty = self._ids != self._id_code("")   # a missing image_id counts, as ``!= ""`` does in pandas
        self._valid = self._not_empty & (self._ids != self._missing_id)   # an image named
        self.memo: dict = {}   # what a caller derives once per family (duplicate groups, their decisions)
        self._memo: dict = {}
        self._lock = threading.RLock()

    def _save(self, path: Path) -> None:
        """The codes into ``path``.npz and the image_id dictionary into ``path``.arrow (written aside, then moved:
        a reader never sees half a file); a workspace that cannot be written is only slower next time."""
        tmp = f".tmp{os.getpid()}_{uuid.uuid4().hex[:8]}"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with pa.OSFile(str(path) + ".arrow" + tmp, "wb") as sink:
                with ipc.new_file(sink, pa.schema([("image_id", pa.large_string())])) as writer:
                    writer.write_table(pa.table({"image_id": self._id_dict}))
            with open(str(path) + ".npz" + tmp, "wb") as f:
                np.savez(f, fam=self._fam, chk=self._chk, ids=self._ids, has_group=self.has_group,
                         by_family=self._by_family,
                         family_names=self.family_names.astype(str), check_names=self.check_names.astype(str),
                         n_rows=np.array([len(self.findings)]))
            os.replace(str(path) + ".arrow" + tmp, str(path) + ".arrow")
            os.replace(str(path) + ".npz" + tmp, str(path) + ".npz")
        except OSError:
            for p in (str(path) + ".arrow" + tmp, str(path) + ".npz" + tmp):
                Path(p).unlink(missing_ok=True)

    @staticmethod
    def _load(path: Path, n_rows: int):
        """The kept codes when they are there and of a table of ``n_rows`` rows, else None."""
        try:
            with np.load(str(path) + ".npz", allow_pickle=False) as z:
                if int(z["n_rows"][0]) != n_rows:
                    return None
                arrays = [z[k] for k in ("fam", "chk", "ids", "has_group", "by_family")]
                names = [np.asarray(z[k].tolist(), dtype=object) for k in ("family_names", "check_names")]
            id_dict = ipc.open_file(pa.memory_map(str(path) + ".arrow")).read_all()["image_id"].combine_chunks()
        except (OSError, KeyError, ValueError, pa.ArrowInvalid):
            return None
        if any(len(a) != n_rows for a in arrays):
            return None
        return (*arrays, *names, id_dict)

    CHECKED_ROWS = 512   # rows of a kept index compared with the table it is read for

    @classmethod
    def _matches(cls, findings: pd.DataFrame, loaded) -> bool:
        """Whether kept codes decode to ``findings``' values on ``CHECKED_ROWS`` rows spread over the table."""
        fam, chk, ids, _, _, family_names, check_names, id_dict = loaded
        if not len(findings):
            return True
        rows = np.unique(np.linspace(0, len(findings) - 1, cls.CHECKED_ROWS).astype(np.int64))
        sample = take_frame(findings[["family", "check", "image_id"]], rows)

        def decode(codes, names) -> list:
            return [None if c >= len(names) else str(names[c]) for c in codes]

        def values(col) -> list:
            return [None if pd.isna(v) else str(v) for v in col]

        id_texts = [None if c >= len(id_dict) else id_dict[int(c)].as_py() for c in ids[rows]]
        return (decode(fam[rows], family_names) == values(sample["family"])
                and decode(chk[rows], check_names) == values(sample["check"])
                and id_texts == values(sample["image_id"]))

    def _id_code(self, image_id: str) -> int:
        """The code of ``image_id`` (a binary search of the sorted dictionary), -1 when absent."""
        lo, hi = 0, len(self._id_dict)
        while lo < hi:
            mid = (lo + hi) // 2
            if self._id_dict[mid].as_py() < image_id:
                lo = mid + 1
            else:
                hi = mid
        return lo if lo < len(self._id_dict) and self._id_dict[lo].as_py() == image_id else -1

    def _id_text(self, codes) -> list[str]:
        return self._id_dict.take(pa.array(np.asarray(codes, dtype=np.int64))).to_pylist()

    @staticmethod
    def _codes(col: pd.Series, as_arrow: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Codes in sorted-value order (Arrow: a dictionary encoding, its dictionary sorted; numpy's argsort of
        1,500,000 Python strings took 14 s); a missing value gets ``len(names)`` (sorts last)."""
        arr = None
        arrow = getattr(col.array, "__arrow_array__", None)
        if arrow is not None and isinstance(col.dtype, (pd.StringDtype, pd.ArrowDtype)):   # strings read from
            try:                                                                             # Parquet: no copy
                data = arrow()
                data = data.combine_chunks() if isinstance(data, pa.ChunkedArray) else data
                arr = data.cast(pa.large_string())
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                arr = None
        if arr is None:
            values = np.asarray(col.astype(object), dtype=object)
            try:
                arr = pa.array(values, type=pa.large_string(), from_pandas=True)
            except (pa.ArrowInvalid, pa.ArrowTypeError):   # not all strings (numbers as ids): as their text
                arr = pa.array([None if pd.isna(v) else str(v) for v in values], type=pa.large_string())
        enc = arr.dictionary_encode()
        names = enc.dictionary
        order = pc.sort_indices(names).to_numpy()
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order))
        idx = enc.indices.fill_null(len(names)).to_numpy(zero_copy_only=False)
        rank = np.append(rank, len(names)).astype(np.int32)
        in_order = names.take(pa.array(order))
        return rank[idx], (in_order if as_arrow else np.asarray(in_order.to_pylist(), dtype=object))

    @staticmethod
    def _code_of(names: np.ndarray, value: str) -> int:
        k = int(np.searchsorted(names, value)) if len(names) else 0
        return k if k < len(names) and names[k] == value else -1

    def _kept(self, key, make):
        with self._lock:
            if key not in self._memo:
                self._memo[key] = make()
            return self._memo[key]

    def __len__(self) -> int:
        return len(self.findings)

    def positions(self, family: str) -> np.ndarray:
        """The rows (positions) of ``family``'s findings, in table order."""
        k = self._code_of(self.family_names, family)
        return self._kept(("rows", family), lambda: np.flatnonzero(self._fam == k) if k >= 0 else
                          np.zeros(0, dtype=np.int64))

    def _id_mask(self, rows: np.ndarray) -> np.ndarray:
        """A mark per image_id code: named by one of ``rows`` (a scatter, no sort or hash of the ids)."""
        mark = np.zeros(self._missing_id + 1, dtype=bool)
        mark[self._ids[rows[self._valid[rows]]]] = True
        return mark[:-1]

    def counts(self) -> pd.Series:
        """Findings per family (``groupby("family").size()``)."""
        def make():
            n = np.bincount(self._fam, minlength=len(self.family_names) + 1)[:len(self.family_names)]
            return pd.Series(n, index=pd.Index(self.family_names, name="family")).loc[lambda s: s > 0]
        return self._kept("counts", make)

    def summary(self, order) -> pd.DataFrame:
        """family, findings, images (distinct named images) for each family of ``order``."""
        def make():
            counts = self.counts()
            return pd.DataFrame({"family": list(order), "findings": [int(counts.get(f, 0)) for f in order],
                                 "images": [self.n_image_ids(f) if counts.get(f, 0) else 0 for f in order]})
        return self._kept(("summary", tuple(order)), make)

    def families_of_checks(self) -> dict[str, list[str]]:
        """family -> checks seen (``query.families_of_checks``)."""
        ok = (self._fam < len(self.family_names)) & (self._chk < len(self.check_names))
        width = len(self.check_names) + 1
        pairs = np.flatnonzero(np.bincount(self._fam[ok] * width + self._chk[ok]))
        out: dict[str, list[str]] = {}
        for p in pairs:
            f, c = divmod(int(p), width)
            out.setdefault(str(self.family_names[f]), []).append(str(self.check_names[c]))
        return out

    def _checks_of(self, rows: np.ndarray) -> list[int]:
        n = np.bincount(self._chk[rows], minlength=len(self.check_names) + 1)[:len(self.check_names)]
        return [int(c) for c in np.flatnonzero(n)]

    def per_check(self, family: str) -> pd.DataFrame:
        """check, findings, images of ``family`` (the page's ``groupby("check")``)."""
        def make():
            rows = self.positions(family)
            checks = self._checks_of(rows)
            chk = self._chk[rows]
            return pd.DataFrame({"check": [str(self.check_names[c]) for c in checks],
                                 "findings": [int((chk == c).sum()) for c in checks],
                                 "images": [int(self._id_mask(rows[chk == c]).sum()) for c in checks]})
        return self._kept(("per_check", family), make)

    def checks_with_images(self, family: str) -> list[str]:
        """The checks of ``family`` with a finding that names an image, sorted."""
        def make():
            rows = self.positions(family)
            return [str(self.check_names[c]) for c in self._checks_of(rows[self._not_empty[rows]])]
        return self._kept(("checks_with_images", family), make)

    def _rows(self, family: str, checks=(), exclude_checks=()) -> np.ndarray:
        rows = self.positions(family)
        if checks:
            rows = rows[np.isin(self._chk[rows], [self._code_of(self.check_names, c) for c in checks])]
        for name in exclude_checks:
            rows = rows[self._chk[rows] != self._code_of(self.check_names, name)]
        return rows

    def n_rows(self, family: str, exclude_checks=()) -> int:
        return len(self._rows(family, exclude_checks=exclude_checks))

    def sorted_head(self, family: str, n: int, exclude_checks=()) -> tuple[pd.DataFrame, int]:
        """The first ``n`` findings of ``family`` by (check, image_id) (stable; missing values last) as rows of
        the findings frame (its index kept), and how many there are."""
        def make():
            k = self._code_of(self.family_names, family)
            if k < 0:
                return self.findings.iloc[:0], 0
            start = int((self._fam < k).sum())
            rows = self._by_family[start:start + len(self.positions(family))]
            for name in exclude_checks:
                rows = rows[self._chk[rows] != self._code_of(self.check_names, name)]
            return take_frame(self.findings, rows[:n]), len(rows)
        return self._kept(("head", family, n, tuple(exclude_checks)), make)

    def first_image_ids(self, family: str, n: int, exclude_checks=()) -> tuple[list[str], int]:
        """The first ``n`` distinct named images of ``family`` in table order, and how many distinct there are."""
        def make():
            rows = self._rows(family, exclude_checks=exclude_checks)
            ids = self._ids[rows][self._valid[rows]]
            first: list[int] = []
            step = max(4 * n, 1_000)
            for start in range(0, len(ids), step):   # a prefix is enough unless images repeat a lot
                first = list(dict.fromkeys(first + ids[start:start + step].tolist()))
                if len(first) >= n:
                    break
            return self._id_text(first[:n]), int(self._id_mask(rows).sum())
        return self._kept(("first_images", family, n, tuple(exclude_checks)), make)

    def image_ids(self, family: str, checks=()) -> list[str]:
        """The distinct named images of ``family`` (of ``checks`` when given), sorted (``bulk.finding_image_ids``)."""
        return self._id_text(np.flatnonzero(self._id_mask(self._rows(family, checks))))

    def n_image_ids(self, family: str, checks=()) -> int:
        return self._kept(("n_images", family, tuple(checks)),
                          lambda: int(self._id_mask(self._rows(family, checks)).sum()))

    def checks_of(self, family: str, image_id: str) -> list[str]:
        """The checks of ``family`` that flag ``image_id``, sorted."""
        rows = self.positions(family)
        k = self._id_code(image_id)
        return [str(self.check_names[c]) for c in self._checks_of(rows[self._ids[rows] == k])] if k >= 0 else []

    def of_image(self, image_id: str) -> pd.DataFrame:
        """``image_id``'s findings (``findings[findings["image_id"] == image_id]``: table order, index kept), by a
        binary search of the rows in image_id order (made once per index) instead of a pass over every finding
        (the viewer asks on every previous / next)."""
        k = self._id_code(str(image_id))
        if k < 0:
            return self.findings.iloc[:0]
        by_id = self._kept("by_image", lambda: np.argsort(self._ids, kind="stable"))
        sorted_ids = self._kept("sorted_image_codes", lambda: self._ids[by_id])
        lo, hi = np.searchsorted(sorted_ids, [k, k + 1])
        return take_frame(self.findings, np.sort(by_id[lo:hi]))

    def frame(self, family: str) -> pd.DataFrame:
        """``family``'s findings as a frame (``findings[findings["family"] == family]``), made once (read-only)."""
        return self._kept(("frame", family), lambda: take_frame(self.findings, self.positions(family)))
