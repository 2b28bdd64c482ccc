"""The chosen dataset (kept in ``st.session_state``), recent roots, and cached access to its scan.

Widget values do not survive a page switch, so the choice lives in plain session keys:
``di_root`` (text as typed), ``di_format`` ("auto" or a loader format).

The scan is held with ``st.cache_resource`` keyed by (real root, format, fingerprint): one shared,
read-only object per scan, so a rerun does not copy a 100,000-row table (``st.cache_data`` would
unpickle a copy on every call). Pages must not modify the scan's tables in place.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
import types
import uuid
from contextlib import contextmanager
from pathlib import Path

import streamlit as st

from inspect_core.paths import is_image_name
from inspect_core.ui.text import md_escape
from inspect_core.webapp import app_dir
from inspect_core.workspace import APP_DIR_NAME, cache_home, workspace_dir

log = logging.getLogger(__name__)

ROOT_KEY = "di_root"
FORMAT_KEY = "di_format"
ROOT_PARAM, FORMAT_PARAM = "root", "format"   # the dataset in the URL: ?root=PATH&format=F
URL_WRITTEN_KEY = "di_url_dataset"           # the (root, format) this session last wrote to the URL
LINK_NOTE_KEY = "di_link_note"
SCAN_KEY = "di_scan_key"
FORMATS = ("auto", "folder", "csv", "coco", "yolo")
NEAR_THRESHOLD_KEY = "di_near_threshold"   # the home page's near-duplicate cut, kept across pages
RECENT_MAX = 10
APP_DIR = app_dir()   # Home.py and pages/: beside the package, or inside it once installed
HOME_PAGE = "Home.py"


# -- command line and defaults -----------------------------------------------------------------
def cli_args(argv: list[str] | None = None) -> argparse.Namespace:
    """``streamlit run Home.py -- --root PATH [--format F]``: the script's own arguments."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--root")
    parser.add_argument("--format", choices=FORMATS)
    args, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    return args


def default_root() -> str:
    args = cli_args()
    if args.root:
        return args.root
    sample = APP_DIR / "sample_data"
    return str(sample) if sample.is_dir() else ""


def init_dataset_state() -> None:
    """Fill the session's dataset choice from the command line / defaults the first time."""
    if ROOT_KEY not in st.session_state:
        st.session_state[ROOT_KEY] = default_root()
    if FORMAT_KEY not in st.session_state:
        st.session_state[FORMAT_KEY] = cli_args().format or "auto"


def chosen_root() -> str:
    init_dataset_state()
    return str(st.session_state.get(ROOT_KEY) or "").strip()


def chosen_format() -> str:
    init_dataset_state()
    fmt = st.session_state.get(FORMAT_KEY) or "auto"
    return fmt if fmt in FORMATS else "auto"


def set_dataset(root: str, fmt: str = "auto") -> None:
    """Choose a dataset; filters and the open image of the previous one are dropped."""
    new = (str(root).strip(), fmt if fmt in FORMATS else "auto")
    if (st.session_state.get(ROOT_KEY), st.session_state.get(FORMAT_KEY)) == new:
        return
    st.session_state[ROOT_KEY], st.session_state[FORMAT_KEY] = new
    st.session_state.pop(SCAN_KEY, None)
    from inspect_core.ui.widgets import FILTER_KEYS, RANGE_KEY_PREFIX
    for k in list(st.session_state.keys()):
        if str(k) in FILTER_KEYS or str(k).startswith(
                (RANGE_KEY_PREFIX, "di_f_", "di_selected", "di_gallery_", "di_findings_", "di_dist_", "di_bulk")):
            del st.session_state[k]


def sync_dataset_with_url() -> None:
    """The dataset in the URL (``?root=...&format=...``) and the session's choice kept the same.

    A URL this session did not write (a reload, a bookmark, a shared link) opens its dataset, and the
    page says so (``show_link_note``); otherwise the session's choice is written to the URL (as an absolute
    path, so the link works from anywhere), and the address bar always names the dataset shown."""
    init_dataset_state()
    qp = st.query_params
    url = (qp.get(ROOT_PARAM), qp.get(FORMAT_PARAM) or "auto")

    def mine() -> tuple[str, str]:
        root = chosen_root()
        return (str(real_root(root)) if root else "", chosen_format())

    if url[0] and url != st.session_state.get(URL_WRITTEN_KEY) and url != mine():
        before = chosen_root()
        set_dataset(url[0], url[1])
        st.session_state[LINK_NOTE_KEY] = (before, chosen_root())
    now = mine()
    if now[0] and url != now:
        qp[ROOT_PARAM] = now[0]
        if now[1] != "auto":
            qp[FORMAT_PARAM] = now[1]
        elif FORMAT_PARAM in qp:
            del qp[FORMAT_PARAM]
    st.session_state[URL_WRITTEN_KEY] = now


def show_link_note() -> None:
    """Say once that a link switched the dataset."""
    note = st.session_state.pop(LINK_NOTE_KEY, None)
    if note:
        before, now = note
        st.info(md_escape(f"Opened the dataset of the link: {now}" + (f" (was {before})" if before else "")),
                icon=":material/link:")


def real_root(root: str) -> Path | str:
    """The dataset's real path; a URL on object storage (s3://...) normalised, as text."""
    from inspect_core import storage
    if storage.is_remote(root.strip()):
        try:
            return storage.normalise_root(root.strip())
        except storage.StorageError:
            return root.strip()
    return Path(os.path.realpath(Path(root).expanduser()))


# -- recent roots --------------------------------------------------------------------------------
def recent_file() -> Path:
    return cache_home() / APP_DIR_NAME / "recent.json"


def recent_roots() -> list[dict]:
    """Recently opened datasets, newest first: ``[{"root", "format", "opened_at"}]`` (bad file -> [])."""
    try:
        data = json.loads(recent_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(data, list):
        return []
    return [d for d in data if isinstance(d, dict) and isinstance(d.get("root"), str)][:RECENT_MAX]


def remember_root(root: str, fmt: str) -> None:
    entry = {"root": str(real_root(root)), "format": fmt,
             "opened_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    items = [entry] + [d for d in recent_roots() if d.get("root") != entry["root"]]
    path = recent_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # sessions are threads of one process: pid + a random part, so two sessions never share a temp file
        tmp = path.with_name(f"recent.{os.getpid()}.{uuid.uuid4().hex}.tmp")
        tmp.write_text(json.dumps(items[:RECENT_MAX], indent=1), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:  # the list is a convenience; never stop the app for it
        log.warning("cannot save recent datasets to %s: %s", path, exc)


# -- checking a root -----------------------------------------------------------------------------
def root_problem(root: str) -> str | None:
    """A one-line message when ``root`` cannot be inspected, else None."""
    if not root:
        return "No dataset chosen yet: type the path of a dataset folder on the Home page."
    from inspect_core import storage
    if storage.is_remote(root):      # reachability and credentials are checked when it is scanned
        try:
            storage.filesystem(storage.normalise_root(root))
        except storage.StorageError as exc:
            return str(exc)
        return None
    p = Path(root).expanduser()
    if not p.exists():
        return f"The folder {root} does not exist. Check the path and choose the dataset again on the Home page."
    if not p.is_dir():
        return f"{root} is a file, not a folder. Choose the dataset's root folder on the Home page."
    if not os.access(p, os.R_OK | os.X_OK):
        return f"The folder {root} cannot be read (permission denied)."
    if not _has_any_image(p):
        return (f"The folder {root} holds no image files (.jpg, .png, ...). "
                "Choose a folder that contains images or a manifest.")
    return None


def _has_any_image(p: Path, limit: int = 20000) -> bool:
    """Whether ``p`` (or a folder under it) holds an image or a manifest. Entries are read one at a time and the
    walk stops at the first one found (this runs on every page run: ``os.walk`` would list a folder of 100,000
    images in full first); after ``limit`` other entries it gives up and says yes (the scan reports the rest)."""
    seen = 0
    todo = [p]
    while todo:
        try:
            it = os.scandir(todo.pop())
        except OSError:
            continue
        with it:
            for entry in it:
                name = entry.name
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)   # as os.walk: no link cycles
                except OSError:
                    is_dir = False
                if is_dir:
                    todo.append(Path(entry.path))
                elif is_image_name(name) or name.lower().endswith((".csv", ".json", ".parquet", ".yaml", ".yml")):
                    return True
                seen += 1
                if seen > limit:
                    return True
    return False


# -- scans ---------------------------------------------------------------------------------------
@st.cache_resource(show_spinner=False, max_entries=8)
def _scan_registry() -> dict:
    """Process-wide {(real_root, format, fingerprint): ScanResult} plus {(real_root, format): fingerprint}."""
    return {"scans": {}, "latest": {}}


def _remember_scan(root_real: str, fmt: str, scan) -> tuple:
    reg = _scan_registry()
    key = (root_real, fmt, str(scan.fingerprint))
    scans = reg["scans"]
    scans[key] = scan
    while len(scans) > 4:  # keep memory bounded: drop the oldest
        scans.pop(next(iter(scans)))
    reg["latest"][(root_real, fmt)] = key
    st.session_state[SCAN_KEY] = key
    return key


def cached_scan(root: str, fmt: str = "auto"):
    """The scan of ``root`` already in memory or saved in its workspace (``load_scan``), else None.

    Never scans. Raises nothing: an unreadable saved scan is treated as missing.
    """
    root_real = str(real_root(root))
    reg = _scan_registry()
    key = st.session_state.get(SCAN_KEY)
    if key and key[:2] == (root_real, fmt) and key in reg["scans"]:
        return reg["scans"][key]
    latest = reg["latest"].get((root_real, fmt))
    if latest and latest in reg["scans"]:
        st.session_state[SCAN_KEY] = latest
        return reg["scans"][latest]
    try:
        import inspect_core
        from inspect_core.lazy_table import env_switch
        scan = inspect_core.load_scan(workspace_dir(root_real), lazy=env_switch())
    except Exception as exc:
        log.warning("saved scan of %s could not be read: %s", root, exc)
        return None
    if scan is None:
        return None
    if fmt != "auto" and getattr(scan.dataset, "format", fmt) != fmt:
        return None
    if getattr(scan, "lazy_images", None) is not None:   # a big saved scan: the pages' data over every row, made
        try:                                               # once in the background (lazy_kept), here in the app's
            from inspect_core.lazy_kept import prepare_in_background   # long-lived process
            prepare_in_background(scan.workspace, scan.lazy_images, scan.findings)
        except Exception as exc:   # the pages compute on demand instead
            log.warning("preparing the big scan's charts of %s could not start: %s", root, exc)
    _remember_scan(root_real, fmt, scan)
    return scan


_MAIN_LOCK = threading.Lock()


@contextmanager
def plain_main_module():
    """Streamlit runs each page as ``sys.modules["__main__"]``; "spawn" worker processes (scan, scoring) would
    re-run that page script on start (and fail without a Streamlit session). While scanning, ``__main__``
    is a bare module, so workers start clean."""
    with _MAIN_LOCK:
        saved = sys.modules.get("__main__")
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            yield
        finally:
            if saved is not None:
                sys.modules["__main__"] = saved


def run_scan(root: str, fmt: str = "auto", near_threshold: float | None = None):
    """Scan ``root`` now with a progress bar; returns the ScanResult or None after showing the error.
    ``near_threshold``: the near-duplicate cut (inspect_core.scan's), None for the default."""
    import inspect_core
    root_real = str(real_root(root))
    bar = st.progress(0.0, text="Listing files...")

    def progress(done: int, total: int) -> None:
        try:
            frac = min(done / total, 1.0) if total else 1.0
            bar.progress(frac, text=f"Scanned {done:,} of {total:,} files")
        except Exception:  # called from a worker thread without a script context
            pass

    try:
        with plain_main_module():
            scan = inspect_core.scan(root_real, format=fmt, progress=progress, near_threshold=near_threshold)
    except Exception as exc:  # a bad root / manifest is normal input: say what and what to do
        bar.empty()
        st.error(md_escape(f"Could not scan {root}: {exc}"))
        return None
    bar.empty()
    _remember_scan(root_real, fmt, scan)
    remember_root(root_real, fmt)
    return scan


def home_page() -> str:
    """The entry script's file name (``Home.py``; ``app.py`` when started through the compatibility entry)."""
    try:
        from streamlit.runtime.scriptrunner import get_script_run_ctx
        return Path(get_script_run_ctx().pages_manager.main_script_path).name
    except Exception:  # no script context (bare mode): the usual entry
        return HOME_PAGE


def require_scan(needs_frame: bool = True):
    """For a page: the chosen dataset's scan, or a clear message and ``st.stop()``.

    Offers a scan button when the dataset was chosen but never scanned. ``needs_frame``: the page reads
    ``scan.images`` as one pandas frame; a big scan opened lazily then reads it now, saying what it costs
    (``load_full_images``). The Gallery, Findings and Distributions pass False: they read the memory-mapped table.
    """
    sync_dataset_with_url()
    show_link_note()
    root, fmt = chosen_root(), chosen_format()
    problem = root_problem(root)
    if problem:
        (st.info if not root else st.error)(md_escape(problem))
        st.page_link(home_page(), label="Choose a dataset on the Home page")
        st.stop()
    scan = cached_scan(root, fmt)
    if scan is None:
        notice = st.empty()                 # cleared once the scan is there: the page below shows it
        with notice.container():
            st.warning(md_escape(f"{root} has not been scanned yet."))
            clicked = st.button("Scan it now", key="di_scan_now")
        if clicked:
            scan = run_scan(root, fmt, st.session_state.get(NEAR_THRESHOLD_KEY))
        if scan is None:
            st.stop()
        notice.empty()
    if n_images(scan) == 0:
        st.warning(md_escape(f"No images were found in {root}. Check the folder layout or the format on the Home page."))
        st.page_link(home_page(), label="Home")
        st.stop()
    if needs_frame:
        load_full_images(scan)
    return scan


def load_full_images(scan) -> None:
    """A big scan opened lazily (``lazy_table.LazyScanResult``): read its whole images table into pandas for a
    page that needs every row, with a note of the cost (rows, bytes on disk, the time it took); said once per
    process, as the frame is then shared. Nothing for a scan loaded whole."""
    if getattr(scan, "lazy_images", None) is None or getattr(scan, "images_loaded", True):
        return
    table = scan.lazy_images
    size_mb = (Path(table.arrow_path).stat().st_size if table.arrow_path else table.path.stat().st_size) / 2**20
    with st.spinner(f"This page needs all {len(table):,} rows of the scan in memory: reading them "
                    f"({size_mb:,.0f} MB uncompressed on disk; several GB and tens of seconds at 10,000,000 rows)..."):
        scan.images   # noqa: B018  (reads and keeps the frame)
    st.info(f"This page works on the whole images table: reading its {len(table):,} rows took "
            f"{scan.loaded_images_s:,.1f} s. The Gallery, Findings and Distributions read the saved table "
            "lazily and never need this.", icon=":material/hourglass:")


@st.cache_resource(show_spinner=False, max_entries=16)
def review_store(workspace: str):
    """One ReviewStore per workspace (it opens a connection per call, so sharing is safe)."""
    from inspect_core.review import ReviewStore
    return ReviewStore(Path(workspace))


def store_for(scan):
    """The scan's review store. A damaged store stops the page with a message naming the file and what to do; a
    read-only workspace shows its decisions with a warning that new ones cannot be recorded."""
    from inspect_core.review import ReviewStoreError
    from inspect_core.ui.text import md_escape
    try:
        store = review_store(str(scan.workspace))
    except ReviewStoreError as exc:
        st.error(md_escape(str(exc)))
        st.stop()
    if getattr(store, "read_only", False):
        st.warning(md_escape(f"The workspace {scan.workspace} is read-only: decisions are shown, but new ones cannot "
                             "be recorded. Make it writable, or open the dataset with another workspace."))
    return store


@st.cache_data(show_spinner=False, max_entries=8)
def export_payloads(workspace: str, root: str, last_decision_id: int, fingerprint: str,
                    _current, _images) -> dict:
    """The Review page's downloads, built once per (workspace, root, last decision id, scan fingerprint):
    {"relabel_csv", "relabel_json", "manifest_csv": bytes, "n_manifest": int}. ``_current`` and ``_images``
    are not hashed; the key versions them (a new decision or a new scan changes it)."""
    from inspect_core import export
    table = export.relabel_table(_current, root)
    manifest = export.cleaned_manifest(_images, _current)
    return {"relabel_csv": export.relabel_csv_bytes(table), "relabel_json": export.relabel_json_bytes(table),
            "manifest_csv": export.manifest_csv_bytes(manifest), "n_manifest": int(len(manifest))}


@st.cache_data(show_spinner=False, max_entries=8)
def families_for(fingerprint: str, _findings, _index=None) -> dict[str, list[str]]:
    """family -> checks present, from the registry when available, else from the findings (``_index``: their
    ``FindingsIndex`` or a big scan's prepared ``lazy_kept.KeptCharts``, when the caller has one)."""
    from inspect_core.ui.query import families_of_checks, with_registered_checks
    fams = _index.families_of_checks() if _index is not None else None
    return with_registered_checks(fams if fams is not None else families_of_checks(_findings))


@st.cache_resource(show_spinner=False, max_entries=4)
def _findings_index(key: str, _findings, _path):
    from inspect_core.lazy_findings import FindingsIndex
    return FindingsIndex(_findings, _path)


def findings_index(key: str, findings, workspace=None):
    """A big findings table's ``lazy_findings.FindingsIndex`` (from ``FINDINGS_INDEX_MIN_ROWS`` findings on), made once
    per table (``key``: the scan's fingerprint or the model evidence's key; read-only, shared) and kept in the
    workspace's ``lazy/`` folder for later processes, else None: the Findings page then works on the pandas frame
    as before."""
    from inspect_core import lazy_findings
    if findings is None or len(findings) < lazy_findings.FINDINGS_INDEX_MIN_ROWS:
        return None
    path = lazy_findings.index_path(workspace, key) if workspace is not None else None
    return _findings_index(str(key), findings, path)


@st.cache_data(show_spinner=False, max_entries=16)
def _gallery_order(fingerprint: str, query, decisions_version: int, _images, _families, _decisions):
    from inspect_core.ui.query import matching_order
    return matching_order(_images, query, _families, _decisions)


def gallery_order(scan, query, families, decisions, decisions_version: int):
    """``query.matching_order`` cached per (scan, query without its page, decisions version when the query
    filters by review status): turning a page or opening an image does not filter and sort again."""
    from dataclasses import replace
    version = int(decisions_version) if query.decisions else 0
    return _gallery_order(str(scan.fingerprint), replace(query, page=1), version, scan.images, families, decisions)


@st.cache_resource(show_spinner=False, max_entries=2)
def _lazy_images(fingerprint: str, workspace: str):
    from inspect_core.lazy_table import open_images
    return open_images(workspace, fingerprint)


def n_images(scan) -> int:
    """The scan's number of image rows, without reading a lazily loaded scan's table."""
    table = getattr(scan, "lazy_images", None)
    return len(table) if table is not None else len(scan.images)


def lazy_images(scan):
    """The scan's images table for ``lazy_query`` (memory-mapped, one shared object per scan: ``lazy_table``)
    when the app should read it lazily (``lazy_table.use_lazy``: from ``LAZY_MIN_ROWS`` rows on, or
    ``DI_LAZY_GALLERY=1``), else None (also when the saved file is missing or unreadable: the pandas path then
    serves). A scan ``load_scan`` opened lazily carries it already."""
    from inspect_core.lazy_table import env_switch, use_lazy
    table = getattr(scan, "lazy_images", None)
    if table is not None:
        return table
    if not use_lazy(len(scan.images), env_switch()):
        return None
    try:
        table = _lazy_images(str(scan.fingerprint), str(scan.workspace))
    except (OSError, ValueError) as exc:   # pyarrow's errors derive from these
        log.warning("lazy tables off: the saved scan in %s could not be read: %s", scan.workspace, exc)
        return None
    return table if table.n_rows == len(scan.images) else None


def overview_images(scan):
    """What the Home page counts (rows, splits): the scan's frame, or for a big scan opened lazily only its split
    column as categories (the frame is not read to count it)."""
    table = getattr(scan, "lazy_images", None)
    return scan.images if table is None else _overview_frame(str(scan.fingerprint), table)


@st.cache_resource(show_spinner=False, max_entries=2)
def _overview_frame(fingerprint: str, _table):
    import pandas as pd

    from inspect_core.lazy_table import columns_frame
    if "split" in _table.columns:
        return columns_frame(_table, ["split"])
    return pd.DataFrame({"row": pd.RangeIndex(len(_table))})   # no split column: the rows, counted


def rows_of_ids(scan, image_ids):
    """The rows of ``image_ids`` in the scan's table order (as ``images[images.image_id.isin(ids)]``), from the
    memory-mapped table of a scan opened lazily."""
    source = row_source(scan)
    if hasattr(source, "rows_of"):
        return source.rows_of(list(dict.fromkeys(map(str, image_ids)))).sort_index()
    return source[source["image_id"].isin(list(image_ids))]


def row_source(scan):
    """Where single rows are looked up (the viewer's row, a bulk decision's labels): the memory-mapped table of
    a scan opened lazily (its pandas frame is never read for that), else the scan's frame."""
    table = getattr(scan, "lazy_images", None)
    return table if table is not None else scan.images


@st.cache_resource(show_spinner=False, max_entries=2)
def _option_frame(fingerprint: str, workspace: str, _table):
    from inspect_core.ui.lazy_query import kept_option_rows
    return _table.take(kept_option_rows(_table, workspace, fingerprint))


def kept_charts(scan, lazy):
    """The big scan's prepared data (``lazy_kept.KeptCharts``: histograms, counts, sort orders over every row)
    when ``lazy`` (its ``lazy_images``) and it is ready, else None: the page computes on demand meanwhile."""
    if lazy is None or getattr(scan, "workspace", None) is None:
        return None
    from inspect_core.lazy_kept import KeptCharts
    return KeptCharts.open(scan.workspace, n_rows=lazy.n_rows)


def lazy_gallery_order(scan, lazy, query):
    """Every row in ``query``'s sort order (``lazy_kept.KeptOrder``) when it is prepared, else None."""
    kept = kept_charts(scan, lazy)
    return kept.gallery_order(lazy, query.sort_by, query.descending) if kept is not None else None


def filter_frame(scan, lazy) -> object:
    """The table the filter widgets read their choices from: a few rows that give the same choices
    (``lazy_query.lazy_option_rows``, once per scan, kept in the workspace) when the app reads lazily, else the
    scan's table."""
    return scan.images if lazy is None else _option_frame(str(scan.fingerprint), str(scan.workspace), lazy)


@st.cache_data(show_spinner=False, max_entries=16)
def _lazy_mask(fingerprint: str, query, decisions_version: int, _table, _families, _decisions):
    from inspect_core.ui.lazy_query import lazy_filter_mask
    return lazy_filter_mask(_table, query, _families, _decisions)


def lazy_gallery_mask(scan, table, query, families, decisions, decisions_version: int):
    """``lazy_query.lazy_filter_mask`` cached as ``gallery_order`` is (per scan, query without its page and sort,
    decisions version when the query filters by review status)."""
    from dataclasses import replace
    version = int(decisions_version) if query.decisions else 0
    return _lazy_mask(str(scan.fingerprint), replace(query, page=1, sort_by="image_id", descending=False), version,
                      table, families, decisions)


@st.cache_resource(show_spinner=False, max_entries=4)
def _image_positions(fingerprint: str, _images) -> dict[str, int]:
    return {str(iid): k for k, iid in enumerate(_images["image_id"])}


def image_positions(scan) -> dict[str, int]:
    """image_id -> row position in ``scan.images``, built once per scan (read-only: shared by every session),
    so a rerun tests a selection against 100,000 matching rows with integers, not strings."""
    return _image_positions(str(scan.fingerprint), scan.images)
