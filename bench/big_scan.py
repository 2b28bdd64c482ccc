"""A saved synthetic scan of N rows (10,000,000 by default) written in row groups with bounded memory, and the
Gallery's server-side query timed on it, eager (today: ``load_scan`` -> one pandas frame -> ``query``) and lazy
(``inspect_core.ui.lazy_query`` on the Parquet file alone), and as the Gallery runs it above the threshold ("app":
``load_scan``'s frame still in memory, the query lazy, the page's rows taken from the frame). Run through
``bench/bench_gallery.py --big``; ``big_scan.py page WORKSPACE 0|1`` times the Gallery page script under AppTest.

Each measurement runs in its own Python process, so its peak RSS (``ru_maxrss``) is its own.
"""
from __future__ import annotations

import cProfile
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from synthetic import CHECKS, PAIR_COLUMNS, synthetic_scan

CHUNK_ROWS = 1_000_000
ROW_GROUP_ROWS = 250_000


def write_big_scan(n: int, workspace: Path, chunk_rows: int = CHUNK_ROWS, seed: int = 0) -> Path:
    """``workspace/scan/`` as ``scanner.load_scan`` reads it: images.parquet and findings.parquet written chunk by
    chunk (``chunk_rows`` rows in memory at once), image_ids unique over the whole table. Reused when complete."""
    d = workspace / "scan"
    marker = d / ".complete"
    if marker.exists() and marker.read_text() == str(n):
        return d
    d.mkdir(parents=True, exist_ok=True)
    writers: dict[str, pq.ParquetWriter] = {}
    try:
        for k, start in enumerate(range(0, n, chunk_rows)):
            m = min(chunk_rows, n - start)
            part = synthetic_scan(m, workspace / "root", workspace, seed=seed + k)
            images, findings = part.images, part.findings
            old_ids = images["image_id"].to_numpy(dtype=object)
            new_ids = pd.array([f"{s}/{c}/img_{start + i:08d}.jpg" for i, (s, c) in
                                enumerate(zip(images["split"], images["label"]))], dtype="string")
            rename = dict(zip(old_ids, new_ids))
            images["image_id"] = new_ids
            findings["image_id"] = pd.array(findings["image_id"].map(rename), dtype="string")
            for name, df in (("images", images), ("findings", findings)):
                table = pa.Table.from_pandas(df, preserve_index=False)
                if name not in writers:
                    writers[name] = pq.ParquetWriter(d / f"{name}.parquet", table.schema)
                writers[name].write_table(table.cast(writers[name].schema), row_group_size=ROW_GROUP_ROWS)
            del part, images, findings
    finally:
        for w in writers.values():
            w.close()
    pd.DataFrame(columns=PAIR_COLUMNS).to_parquet(d / "pairs.parquet", index=False)
    pd.DataFrame(columns=["image_id", "box_x_px", "box_y_px", "box_w_px", "box_h_px"]).to_parquet(
        d / "annotations.parquet", index=False)
    pd.DataFrame({"label": ["class_00"], "n_images": [0]}).to_parquet(d / "balance.parquet", index=False)
    (d / "summary.json").write_text(json.dumps({"n_images": n}))
    (d / "dataset.json").write_text(json.dumps({
        "root": str(workspace / "root"), "format": "folder", "classes": [f"class_{k:02d}" for k in range(20)],
        "has_image_labels": True, "has_boxes": False, "box_categories": [], "fingerprint": f"big-{n}-{seed}",
        "dataset_columns": ["image_id", "label", "split"]}))
    marker.write_text(str(n))
    return d


def queries():
    from inspect_core.ui.query import GalleryQuery
    return [
        ("first page (no filter, sort image_id)", GalleryQuery()),
        ("filter (family property + 2 labels) + sort (brightness desc) + page 3",
         GalleryQuery(families=("property",), labels=("class_03", "class_07"), sort_by="brightness",
                      descending=True, page=3)),
        ("filter (split val + range 0.3 <= contrast <= 0.5) + sort (width_px) + page 10",
         GalleryQuery(splits=("val",), ranges=(("contrast", 0.3, 0.5),), sort_by="width_px", page=10)),
        ("filter (check blurry) + sort (image_id desc) + page 1",
         GalleryQuery(checks=("blurry",), sort_by="image_id", descending=True)),
    ]


def measure(mode: str, workspace: Path, repeats: int) -> dict:
    """In this process: load (eager: ``load_scan``; lazy: open the Parquet dataset) then each query's page,
    median of ``repeats`` runs; peak RSS at the end."""
    families = {f: list(c) for f, c in CHECKS.items()}
    out: dict = {"mode": mode}
    t0 = time.perf_counter()
    if mode == "eager":
        import inspect_core
        from inspect_core.ui.query import gallery_page
        scan = inspect_core.load_scan(workspace, lazy=False)
        images = scan.images

        def run(q):
            return gallery_page(images, q, families)
    else:   # "lazy": the Parquet file alone; "app": as the Gallery does, page rows from load_scan's frame
        from inspect_core.ui.lazy_query import LazyImages, lazy_gallery_page
        frame = None
        if mode == "app":
            import inspect_core
            frame = inspect_core.load_scan(workspace, lazy=False).images
        table = LazyImages(workspace / "scan" / "images.parquet", max_cached_bytes=4_000_000_000)
        t1 = time.perf_counter()
        table.id_rank()
        out["rank_s"] = time.perf_counter() - t1

        def run(q):
            return lazy_gallery_page(table, q, families, rows_from=frame)
    out["load_s"] = time.perf_counter() - t0
    out["rss_after_load_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["queries"] = []
    for name, q in queries():
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            page = run(q)
            times.append(time.perf_counter() - t0)
        out["queries"].append({"name": name, "median_s": statistics.median(times), "times_s": times,
                               "n_match": page.n_match, "first_id": str(page.rows["image_id"].iloc[0])})
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def take_bench(workspace: Path, repeats: int) -> dict:
    """The Arrow copy of images.parquet (made once per scan: its time and this process's peak RSS), opening it
    memory-mapped, and a page of 48 scattered rows taken from it against ``Dataset.take`` from the Parquet file
    (medians of ``repeats``; fresh random rows each run). In a new process, so its RSS is its own."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.dataset as pads

    from inspect_core.lazy_table import LazyImages, arrow_copy, lazy_paths
    fingerprint = json.loads((workspace / "scan" / "dataset.json").read_text())["fingerprint"]
    paths = lazy_paths(workspace, fingerprint)
    out: dict = {"mode": "take", "copy_existed": paths["arrow_path"].is_file()}
    t0 = time.perf_counter()
    arrow_copy(workspace / "scan" / "images.parquet", paths["arrow_path"])
    out["copy_s"] = time.perf_counter() - t0
    out["copy_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["arrow_mib"] = paths["arrow_path"].stat().st_size / 2**20
    t0 = time.perf_counter()
    table = LazyImages(workspace / "scan" / "images.parquet", **paths)
    out["open_s"] = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    mm, pq_times = [], []
    dataset = pads.dataset(workspace / "scan" / "images.parquet", format="parquet")
    for _ in range(repeats):
        rows = rng.choice(table.n_rows, 48, replace=False)
        t0 = time.perf_counter()
        table.take(rows)
        mm.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        dataset.take(pa.array(rows)).to_pandas()
        pq_times.append(time.perf_counter() - t0)
    out["take_arrow_s"], out["take_parquet_s"] = statistics.median(mm), statistics.median(pq_times)
    ids = table.take(rng.choice(table.n_rows, 48, replace=False))["image_id"].tolist()
    t0 = time.perf_counter()
    table.positions_of(ids)
    out["positions_of_48_ids_s"] = time.perf_counter() - t0
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def load_bench(workspace: Path, lazy: str) -> dict:
    """``load_scan`` as the app starts on the saved scan: ``lazy`` "0" the pandas frame (before), "1" the lazy
    result (the Arrow copy made on the first run of a scan: ``copy_existed`` says). Time and RSS after."""
    import inspect_core
    from inspect_core.lazy_table import lazy_paths
    fingerprint = json.loads((workspace / "scan" / "dataset.json").read_text())["fingerprint"]
    existed = lazy_paths(workspace, fingerprint)["arrow_path"].is_file()
    t0 = time.perf_counter()
    scan = inspect_core.load_scan(workspace, lazy=lazy == "1")
    out = {"mode": f"load, lazy={lazy}", "load_s": time.perf_counter() - t0, "copy_existed": existed,
           "type": type(scan).__name__, "rss_after_load_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    with open("/proc/self/status") as f:   # resident now (the memory map's pages touched so far count as file pages)
        out["rss_now_mb"] = next(int(x.split()[1]) for x in f if x.startswith("VmRSS")) / 1024
    return out


def page_script(workspace: Path, lazy: str, page: str = "1_Gallery") -> dict:
    """A page script under AppTest (server side, no browser) on the saved scan: ``lazy`` "0" the pandas path
    (``load_scan(lazy=False)``, ``DI_LAZY_GALLERY=0``), "1" everything lazy (``load_scan``'s lazy result). The
    first run, a rerun, then the page's interactions, each timed once (the load makes repeats costly)."""
    os.environ["DI_LAZY_GALLERY"] = lazy
    import inspect_core
    from streamlit.testing.v1 import AppTest
    repo = Path(__file__).resolve().parents[1]
    t0 = time.perf_counter()
    scan = inspect_core.load_scan(workspace, lazy=lazy == "1")
    out = {"mode": f"{page}, DI_LAZY_GALLERY={lazy}", "load_s": time.perf_counter() - t0}
    inspect_core.load_scan = lambda ws, lazy=None: scan
    at = AppTest.from_file(str(repo / "pages" / f"{page}.py"), default_timeout=900)
    at.session_state["di_root"] = str(scan.dataset.root)
    os.makedirs(scan.dataset.root, exist_ok=True)
    (Path(scan.dataset.root) / "a.jpg").touch()     # a folder with an image: the page's root check passes
    steps = []
    profiles = []
    if os.environ.get("DI_PROFILE"):   # DI_PROFILE=DIR: cProfile of the script thread, a .prof per step
        from streamlit.testing.v1.local_script_runner import LocalScriptRunner
        run_thread = LocalScriptRunner._run_script_thread

        def profiled(self):
            prof = cProfile.Profile()
            prof.enable()
            try:
                run_thread(self)
            finally:
                prof.disable()
                profiles.append(prof)
        LocalScriptRunner._run_script_thread = profiled

    def step(name, change=None):
        if change:
            change()
        t1 = time.perf_counter()
        at.run()
        steps.append({"name": name, "s": time.perf_counter() - t1})
        if profiles:
            profiles.pop().dump_stats(os.path.join(os.environ["DI_PROFILE"], f"step{len(steps)}.prof"))
        assert not at.exception, at.exception
    step("first open (scan in memory; filter widgets; query)")
    step("rerun, same view")
    if page == "1_Gallery":
        step("filter (family property) + sort (brightness desc)", lambda: (
            at.multiselect(key="family").set_value(["property"]), at.selectbox(key="sort").set_value("brightness"),
            at.toggle(key="desc").set_value(True)))
        step("page 2", lambda: at.get("pagination")[0].set_value(2) if at.get("pagination") else None)
        step("open an image (the viewer, its position in every match)",
             lambda: at.session_state.__setitem__("di_selected", str(scan.findings.loc[
                 scan.findings["family"] == "property", "image_id"].iloc[1000])))
        step("viewer: next image", lambda: at.button(key="gallery_detail_next").click())
        step("viewer: previous image", lambda: at.button(key="gallery_detail_prev").click())
        step("deep page (half way through the matches)", lambda: (
            at.session_state.__delitem__("di_selected"), at.query_params.pop("image", None),
            at.get("pagination")[0].set_value(max(int(at.get("pagination")[0].proto.num_pages), 1) // 2)
            if at.get("pagination") else None))
        step("select all matching", lambda: at.button(key="di_bulk_all").click())
        step("rerun with all selected")
    elif page == "2_Findings":
        step("another family (property)", lambda: at.segmented_control(key="di_findings_family").set_value("property"))
        step("rerun, same family")
        step("another family (duplicate: groups)",
             lambda: at.segmented_control(key="di_findings_family").set_value("duplicate"))
        step("rerun, same family")
    elif page == "3_Distributions":
        step("another column (contrast)", lambda: at.selectbox(key="di_dist_col").set_value("contrast"))
        step("scatter x = width_px", lambda: at.selectbox(key="di_dist_x").set_value("width_px"))
    out["steps"] = steps
    out["images_loaded"] = bool(getattr(scan, "images_loaded", True))
    out["text"] = [t.value for t in at.text][:2]
    out["captions"] = [c.value for c in at.caption][:6]
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def browser_bench(workspace: Path, repeats: int, shot: Path | None = None) -> dict:
    """The Gallery in chromium on the saved scan (the app started with ``streamlit run`` on its dataset root, the
    workspace linked where the app looks for it): click (page load, a filter) to the grid painted, ``repeats``
    times each in a new tab; ``shot``: a screenshot of the filtered Gallery. Only the images the timed pages show
    get files (hard links to a few JPEGs)."""
    import tempfile

    import numpy as np
    from PIL import Image

    from inspect_core.lazy_table import open_images
    from inspect_core.ui.lazy_query import lazy_filter_mask, lazy_gallery_page
    from inspect_core.ui.query import GalleryQuery
    from inspect_core.workspace import workspace_dir
    from repo_files import import_file
    bs = import_file(Path(__file__).resolve().parents[1] / "tests" / "browser_support.py")
    from playwright.sync_api import sync_playwright
    meta = json.loads((workspace / "scan" / "dataset.json").read_text())
    root = Path(meta["root"])
    table = open_images(workspace, meta["fingerprint"])
    families = {f: list(c) for f, c in CHECKS.items()}
    q = GalleryQuery(checks=("dark",))
    shown = [lazy_gallery_page(table, GalleryQuery()).ids,
             lazy_gallery_page(table, q, mask=lazy_filter_mask(table, q, families)).ids]
    src = root.parent / "root_sources"
    src.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    sources = []
    for k in range(8):
        p = src / f"src_{k}.jpg"
        if not p.exists():
            Image.fromarray((rng.random((48, 64, 3)) * 255).astype(np.uint8)).resize((640, 480)).save(p)
        sources.append(p)
    for k, iid in enumerate(i for ids in shown for i in ids):
        dst = root / str(iid)
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.link(sources[k % len(sources)], dst)
    cache = Path(tempfile.mkdtemp(prefix="big-browser-"))
    link = workspace_dir(root, base=cache / "dataset-inspector")
    link.rmdir()
    link.symlink_to(workspace.resolve())
    app = bs.App(cache, root=str(root))
    app.start()
    out: dict = {"mode": "browser", "load_start": os.getloadavg()[0], "open_s": [], "filter_s": []}
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=bs.CHROMIUM, headless=True, args=bs.CHROMIUM_ARGS)
            for r in range(repeats + 1):   # the first: the server's first run of the scan, reported apart
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                t0 = time.perf_counter()
                page.goto(app.url + "/Gallery", wait_until="domcontentloaded")
                bs.main_area(page).get_by_text("images match; page").first.wait_for(timeout=600_000)
                bs.tiles_shown(page, 48)
                out["open_s"].append(time.perf_counter() - t0)
                bs.wait_idle(page)
                box = page.get_by_test_id("stSidebar").get_by_test_id("stMultiSelect").filter(has_text="Check")
                box.click()
                page.keyboard.type("dark")
                t0 = time.perf_counter()
                page.keyboard.press("Enter")
                page.keyboard.press("Escape")
                page.wait_for_function(   # the count of the filtered matches drawn (no longer every image)
                    "() => [...document.querySelectorAll('[data-testid=\"stMain\"] [data-testid=\"stText\"]')]"
                    ".some(e => /^[\\d,]+ of [\\d,]+ images match/.test(e.innerText) && "
                    f"!e.innerText.startsWith('{table.n_rows:,} of'))", timeout=600_000)
                first = json.dumps(str(shown[1][0]))   # the filtered page's first tile, painted
                page.wait_for_function(f"() => {{ const b = document.querySelector('[data-testid=\"stMain\"] "
                                       f".di-grid button[title]'); return b && b.title === {first}; }}",
                                       timeout=600_000)
                bs.tiles_shown(page, 48)
                out["filter_s"].append(time.perf_counter() - t0)
                out["text"] = bs.main_area(page).get_by_text("images match; page").first.inner_text()
                if shot is not None and r == repeats:
                    page.screenshot(path=str(shot), full_page=False)
                page.close()
            browser.close()
    finally:
        app.stop()
        link.unlink()
    out["load_end"] = os.getloadavg()[0]
    return out


def big_bench(n: int, data: Path, repeats: int, out_md: Path, modes=("eager", "lazy", "app")) -> int:
    workspace = data / f"big_{n}"
    t0 = time.perf_counter()
    write_big_scan(n, workspace)
    make_s = time.perf_counter() - t0
    results = []
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                       str(Path(__file__).resolve().parent)]))
    for mode in modes:
        proc = subprocess.run([sys.executable, __file__, mode, str(workspace), str(repeats)], env=env,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr)
            return 1
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    size_mb = sum(p.stat().st_size for p in (workspace / "scan").glob("*.parquet")) / 2**20
    lines = [f"# The Gallery's query on a {n:,}-row saved scan",
             "",
             f"Command: `.venv/bin/python bench/bench_gallery.py --big --n-images {n} --repeats {repeats}`",
             f"Parquet files {size_mb:,.0f} MiB (made in {make_s:.0f} s, reused when present). "
             f"Median of {repeats} runs each; each mode in its own process.",
             "",
             "| mode | load (s) | of which the image_id rank (s) | RSS after load (MB) | peak RSS (MB) |",
             "|---|---:|---:|---:|---:|"]
    for r in results:
        rank = f"{r['rank_s']:.2f}" if "rank_s" in r else "-"
        lines.append(f"| {r['mode']} | {r['load_s']:.2f} | {rank} | {r['rss_after_load_mb']:,.0f} "
                     f"| {r['peak_rss_mb']:,.0f} |")
    lines += ["", "Each query: median of the runs (first run, columns read cold, in brackets).", "",
              "| query | " + " | ".join(f"{r['mode']} (s)" for r in results) + " | matches |",
              "|---|" + "---:|" * (len(results) + 1)]
    for k, (name, _) in enumerate(queries()):
        cells = [f"{r['queries'][k]['median_s']:.3f} ({r['queries'][k]['times_s'][0]:.2f})" for r in results]
        lines.append(f"| {name} | " + " | ".join(cells)
                     + f" | {results[0]['queries'][k]['n_match']:,} |")
    same = all(r["queries"][k]["n_match"] == results[0]["queries"][k]["n_match"]
               and r["queries"][k]["first_id"] == results[0]["queries"][k]["first_id"]
               for r in results for k in range(len(queries())))
    lines += ["", f"Both modes give the same matches and the same first row of each page: {'yes' if same else 'NO'}."]
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_md.write_text("\n".join(lines) + "\n")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0 if same else 1


if __name__ == "__main__":   # one measurement: big_scan.py MODE WORKSPACE REPEATS|LAZY (prints one JSON line)
    if sys.argv[1] == "page":   # big_scan.py page WORKSPACE 0|1 [PAGE, e.g. 2_Findings]
        sys.stdout.write(json.dumps(page_script(Path(sys.argv[2]), sys.argv[3], *sys.argv[4:5])) + "\n")
    elif sys.argv[1] == "prepare":   # big_scan.py prepare WORKSPACE: lazy_kept's files made (time, peak RSS)
        from inspect_core.lazy_kept import prepare_saved_scan
        t0 = time.perf_counter()
        made = prepare_saved_scan(Path(sys.argv[2]), force=True)
        sys.stdout.write(json.dumps({"mode": "prepare", "prepare_s": time.perf_counter() - t0, "dir": str(made),
                                     "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
                         + "\n")
    elif sys.argv[1] == "browser":   # big_scan.py browser WORKSPACE REPEATS [SCREENSHOT.png]
        sys.stdout.write(json.dumps(browser_bench(Path(sys.argv[2]), int(sys.argv[3]),
                                                  Path(sys.argv[4]) if len(sys.argv) > 4 else None)) + "\n")
    elif sys.argv[1] == "load":
        sys.stdout.write(json.dumps(load_bench(Path(sys.argv[2]), sys.argv[3])) + "\n")
    elif sys.argv[1] == "take":
        sys.stdout.write(json.dumps(take_bench(Path(sys.argv[2]), int(sys.argv[3]))) + "\n")
    else:
        sys.stdout.write(json.dumps(measure(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]))) + "\n")
