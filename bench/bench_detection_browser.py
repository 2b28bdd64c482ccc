"""Model triage's detection view at 100,000 images x 20 boxes as the person sees it: click to paint in chromium.

    .venv/bin/python bench/bench_detection.py page --browser [--repeat 3] [--result-cache /tmp/det_result_100k.pkl]

The app itself (``streamlit run Home.py`` in a subprocess, as ``bench_gallery.py --browser``) on a dataset of the
``speed`` set's 100,000 image ids (each file a hard link to one of 16 real 1200 x 1200 photos scikit-image ships,
so tiles are really decoded and drawn) whose triage is the ``speed`` set's DetectionResult (2,000,000 annotations,
1,999,828 predictions; built once, or read from ``--result-cache``). In that server only two things are not the
app's own: ``inspect_core.load_scan`` answers with this synthetic scan, and ``triage_detections`` (matching +
metrics + errors, 10-40 s, benched by ``speed``; the app runs it once per predictions file version) answers with
the prebuilt result. Everything after it is the app's code: the view prepared, the page drawn, the browser's work.

Each round, in a new tab of Debian's chromium (headless, 1400 x 1000), times from the action to the paint:
  1. open ``/Model_triage?task=detection`` right after the predictions file changed (its mtime touched: the app's
     cache misses, the per-result view is prepared in that run): until the metrics, the "N images match" line and
     the 12 tiles of the worst-images grid are painted (script run finished, every image decoded);
  2. the same in another new tab (the result and view cached, as for a second person or a reload): "warm", the
     browser has Streamlit's frontend files in its cache;
  2b. the same in a new browser (a fresh chromium process and profile: nothing cached): "cold", the frontend's
     files fetched and compiled too;
  2c. the floor: an empty Streamlit page (its title alone, the app's own config) in a new browser and in another
     tab of the first one, from a second server: what any page costs before its own content;
  3. the confidence slider moved one step (ArrowRight on its thumb): until the run it starts has finished (the
     server's log) and the tiles are painted;
  4. a filter by error type (missing_box): until the narrowed grid is painted;
  5. a tile opened: until the detail view (heading, image with its boxes, box table) is painted.
The app's own server time of each run (``detection_triage.render``, or the section body's alone when a widget
reruns that fragment; logged by the server) is given beside it, so
browser-side time = click-to-paint - server time. Median and worst of ``--repeat`` rounds after a warm-up round.
Writes bench/results/detection_browser.md.
"""
from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
# the first render (cold, warm, and the floor under it); every interaction: 1 s ("review at scale")
BUDGET_S = {"open": 2.0, "open_cached": 2.0, "open_new_browser": 2.0, "floor_cached": 2.0, "floor_new_browser": 2.0}
N_PHOTOS = 16
SIDE_PX = 1200


def photo_files(root: Path, image_ids) -> None:
    """One file per image id: hard links to ``N_PHOTOS`` real photos (scikit-image's) at 1200 x 1200 px."""
    from PIL import Image

    from photos import load_photos
    marker = root / ".complete"
    if marker.exists() and marker.read_text() == str(len(image_ids)):
        return
    shutil.rmtree(root, ignore_errors=True)
    src = root.parent / (root.name + "_sources")
    src.mkdir(parents=True, exist_ok=True)
    sources = []
    for k, im in enumerate(load_photos()[:N_PHOTOS]):
        p = src / f"photo_{k:02d}.jpg"
        if not p.exists():
            im.convert("RGB").resize((SIDE_PX, SIDE_PX), Image.Resampling.BILINEAR).save(p, quality=90)
        sources.append(p)
    root.mkdir(parents=True, exist_ok=True)
    for k, iid in enumerate(image_ids):
        os.link(sources[k % len(sources)], root / iid)
    marker.write_text(str(len(image_ids)))


def serve(port: int, n_images: int, n_boxes: int, result_cache: str | None, data: Path) -> int:
    """The app in this process, on the synthetic dataset (see the module doc: two answers patched in)."""
    import logging

    import inspect_core
    import inspect_core.detection
    from bench_detection import load_result
    from inspect_core.ui import detection_triage
    from synthetic import make_files, synthetic_scan  # noqa: F401 - the gallery bench's scan columns
    result = load_result(n_images, n_boxes, result_cache)
    sys.stderr.write(f"BENCH counts {len(result.annotations)} {len(result.predictions)}\n")
    ids = result.images["image_id"].astype(str).tolist()
    root = data / f"det_root_{n_images}"
    photo_files(root, ids)
    (root / "detections.json").write_text("[]")      # the predictions path the page offers (triage answered below)
    scan = synthetic_scan(n_images, root.resolve(), Path(os.environ["XDG_CACHE_HOME"]) / "ws")
    rename = dict(zip(scan.images["image_id"].astype(str), ids))
    scan.images["image_id"] = ids
    scan.images["width_px"], scan.images["height_px"] = SIDE_PX, SIDE_PX
    scan.findings["image_id"] = scan.findings["image_id"].astype(str).map(rename)
    scan.dataset.images = scan.images[["image_id", "label", "split"]]
    scan.dataset.has_boxes, scan.dataset.format = True, "coco"
    scan.dataset.root = root.resolve()
    scan.fingerprint = f"bench-detection-{n_images}"
    inspect_core.load_scan = lambda ws, **kw: scan
    inspect_core.detection.triage_detections = lambda _scan, _path, **kw: result
    log = logging.getLogger("bench_detection_browser")
    render = detection_triage.render

    def timed_render(*a, **kw):
        t, c = time.perf_counter(), time.process_time()
        try:
            return render(*a, **kw)
        finally:           # st.stop / st.rerun end a run by an exception: still timed
            sys.stderr.write(f"BENCH render_s={time.perf_counter() - t:.3f} cpu_s={time.process_time() - c:.3f}\n")
            sys.stderr.flush()
    detection_triage.render = timed_render

    class GridTimes(logging.Handler):        # the section's body (a fragment: a widget reruns it alone) and grid
        def emit(self, record):
            what = "body" if "body" in str(record.msg) else "grid"
            sys.stderr.write(f"BENCH {what}_s={record.args[0]:.3f}\n")
            sys.stderr.flush()
    grid_log = logging.getLogger("inspect_core.ui.detection_triage")
    grid_log.setLevel(logging.DEBUG)
    grid_log.addHandler(GridTimes(logging.DEBUG))
    log.info("serving %s", root)
    from streamlit.web import cli as stcli
    sys.argv = ["streamlit", "run", str(REPO / "Home.py"), "--server.port", str(port), "--server.headless", "true",
                "--server.fileWatcherType", "none", "--", "--root", str(root.resolve())]
    return stcli.main()


# "painted": no script run going and at least n images of the main area decoded (st.image's or the tile grid's:
# screenshots.PAINTED, the one selector the screenshots wait on too).
_TILES = """([n, sel]) => { const imgs = [...document.querySelectorAll(sel)];
    return !document.querySelector('[data-testid="stStatusWidget"]') && imgs.length >= n
        && imgs.every(i => i.complete && i.naturalWidth > 0); }"""


def browser_bench(args) -> int:
    from bench_detection import load_result
    from bench_gallery import wait_healthy
    from repo_files import import_file
    import_file(REPO / "tests" / "browser_support.py")
    from browser_support import CHROMIUM, CHROMIUM_ARGS, free_port
    from playwright.sync_api import sync_playwright
    from screenshots import PAINTED
    n = args.images
    out = Path(args.out or REPO / "bench" / "results" / "detection_browser.md")
    data = REPO / "bench" / ".data"
    t0 = time.perf_counter()
    if not args.result_cache:
        raise SystemExit("--result-cache is needed: the server reads the result from it")
    if not Path(args.result_cache).exists():
        load_result(n, args.boxes, args.result_cache)                # built here once (pickled), read by the server
    sys.stdout.write(f"result ready in {time.perf_counter() - t0:.0f} s\n")
    tmp = Path(tempfile.mkdtemp(prefix="bench-det-browser-"))
    port = free_port()
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp / "cache"), PYTHONPATH=str(REPO))
    log_path = tmp / "app.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port), str(n), str(args.boxes),
                             str(args.result_cache), str(data)], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    # The floor: an empty Streamlit page (its title alone) from a second server, same config (run from the repo)
    (tmp / "floor.py").write_text('import streamlit as st\nst.title("Floor page")\n')
    port0 = free_port()
    log0 = open(tmp / "floor.log", "wb")
    proc0 = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(tmp / "floor.py"), "--server.port",
                              str(port0), "--server.headless", "true"], cwd=REPO, env=env, stdout=log0,
                             stderr=subprocess.STDOUT)
    url0 = f"http://127.0.0.1:{port0}"
    pred_file = data / f"det_root_{n}" / "detections.json"
    results: dict[str, list[float]] = {}
    server: dict[str, list[float]] = {}
    load_start = os.getloadavg()[0]

    def renders(what: str = "render") -> list[float]:
        """The server's logged times: of the section's runs (``render``) or of the grid's (``grid``: also a
        fragment's own run, which a filter starts)."""
        return [float(x) for x in re.findall(rf"BENCH {what}_s=([\d.]+)", log_path.read_text(errors="replace"))]

    def runs() -> list[float]:
        """The section's runs: its body's (a fragment: the slider, a filter or a tile reruns it alone, not
        ``render``) where the server logs them, else ``render``'s (the code before the body was a fragment)."""
        return renders("body") or renders()

    try:
        wait_healthy(url, proc, t0, log_path)
        wait_healthy(url0, proc0, t0, tmp / "floor.log")
        with sync_playwright() as pw:
            b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)

            def timed(name, action, done, page, n_images=12, n_runs=1, what="run"):
                """From ``action`` to: ``done``, the server's ``n_runs`` runs of the section (``what``="grid": of
                the grid fragment) finished (its log), then every image of the main area decoded and no run
                going. Server time: the section's runs in the step, else the grid's."""
                before, before_grid, before_render = len(runs()), len(renders("grid")), len(renders())
                t = time.perf_counter()
                try:
                    action()
                    done()
                    while (len(runs()) - before if what == "run" else len(renders(what)) - before_grid) < n_runs:
                        if time.perf_counter() - t > 300:
                            raise TimeoutError(f"{n_runs} runs of the section not seen in the server's log")
                        time.sleep(0.02)
                    page.wait_for_function(_TILES, arg=[n_images, PAINTED], timeout=300_000, polling=50)
                except Exception as exc:  # a step that fails is reported as such, the others still measured
                    shot = Path(tempfile.gettempdir()) / f"bench_det_failed_{re.sub(r'[^a-z]+', '_', name)}.png"
                    try:
                        page.screenshot(path=str(shot))
                    except Exception:  # noqa: BLE001
                        pass
                    sys.stderr.write(f"{name}: {exc}\n(screenshot: {shot})\n")
                    results.setdefault(name, []).append(float("nan"))
                    return
                results.setdefault(name, []).append(time.perf_counter() - t)
                server.setdefault(name, []).append(sum(renders()[before_render:]) or sum(runs()[before:])
                                                   or sum(renders("grid")[before_grid:]))

            shell: dict[str, list[float]] = {}

            def opened(page, name):
                """Done when the section is drawn; notes when the page's title showed (Streamlit's frontend loaded,
                connected and the page script started: the floor of any page in a new tab)."""
                main = page.get_by_test_id("stMain")
                t = time.perf_counter()
                return lambda: (main.get_by_role("heading", name="Model triage").wait_for(timeout=300_000),
                                shell.setdefault(name, []).append(time.perf_counter() - t),
                                main.get_by_text(re.compile(r"images match; worst detection error score first"))
                                .first.wait_for(timeout=300_000),
                                main.get_by_text(re.compile(r"mAP@\[\.5:\.95\]")).first.wait_for(timeout=300_000))

            for rep in range(args.repeat + 1):            # round 0 warms up (imports, chart library): not counted
                pred_file.touch()                          # a new predictions file version: the view prepared again
                page = b.new_page(viewport={"width": 1400, "height": 1000})
                timed("open", lambda: page.goto(url + "/Model_triage?task=detection"), opened(page, "open"), page)
                page.close()
                page = b.new_page(viewport={"width": 1400, "height": 1000})
                main = page.get_by_test_id("stMain")
                timed("open_cached", lambda: page.goto(url + "/Model_triage?task=detection"),
                      opened(page, "open_cached"), page)
                page.wait_for_timeout(1000)                # a person reads the page first
                for name, new_browser in (("floor_cached", False), ("floor_new_browser", True)):
                    fb = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS) \
                        if new_browser else b
                    fp = fb.new_page(viewport={"width": 1400, "height": 1000})
                    t = time.perf_counter()
                    fp.goto(url0)
                    fp.get_by_role("heading", name="Floor page").wait_for(timeout=300_000)
                    fp.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')",
                                         timeout=300_000, polling=50)
                    results.setdefault(name, []).append(time.perf_counter() - t)
                    fp.close()
                    if new_browser:
                        fb.close()
                b2 = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
                page2 = b2.new_page(viewport={"width": 1400, "height": 1000})
                timed("open_new_browser", lambda: page2.goto(url + "/Model_triage?task=detection"),
                      opened(page2, "open_new_browser"), page2)
                page2.close()
                b2.close()
                timed("slider", lambda: (main.get_by_role("slider").first.focus(),
                                         page.keyboard.press("ArrowRight")),
                      lambda: None, page)          # done: the server's run finished (its log), every tile decoded
                page.wait_for_timeout(500)
                timed("filter", lambda: (
                    main.get_by_test_id("stMultiSelect").filter(has_text="Error type").click(),
                    page.keyboard.type("missing_box"), page.keyboard.press("Enter"), page.keyboard.press("Escape")),
                    lambda: main.get_by_text(re.compile(rf"^(?!{n:,} images)[\d,]+ images match")).first
                    .wait_for(timeout=300_000), page, what="grid")     # the grid's fragment reruns alone
                page.wait_for_timeout(500)
                page.keyboard.press("Escape")               # no list left open over the grid
                main.get_by_role("heading", name="Model triage").click()
                page.wait_for_timeout(300)
                # the second tile's Open button
                opener = main.locator(".di-tile").nth(1).get_by_role("button", name="Open")   # the grid: tile_grid
                opener.scroll_into_view_if_needed()
                image_id = ""
                timed("open_tile", lambda: opener.click(),
                      lambda: (main.get_by_role("heading").filter(has_text=re.compile(r"img_\d+")).first
                               .wait_for(timeout=300_000),
                               main.locator("[data-testid='stTable'], [data-testid='stDataFrame']").first
                               .wait_for(timeout=300_000)), page, 13,
                      n_runs=1)     # the click reruns the grid's fragment, its st.rerun() the page: the detail
                if rep == 0:
                    sys.stdout.write(f"warm-up round done ({image_id or 'tile'} opened); "
                                     f"{dict((k, round(v[0], 2)) for k, v in results.items())}\n")
                    results.clear()
                    server.clear()
                    shell.clear()
                    page.screenshot(path=str(Path(tempfile.gettempdir()) / "bench_det_browser_warmup.png"))
                page.close()
            b.close()
    finally:
        for p in (proc, proc0):
            p.terminate()
            p.wait(timeout=60)
        log.close()
        log0.close()
    n_ann, n_pred = (int(x) for x in re.search(r"BENCH counts (\d+) (\d+)", log_path.read_text()).groups())
    names = {"open": "Model triage's detection view opened in a new tab, the predictions file new (view prepared): "
                     "metrics + grid of 12 tiles painted",
             "open_cached": "**warm first render**: the same in another new tab (result and view cached; the "
                            "browser has the frontend's files)",
             "open_new_browser": "**cold first render**: the same in a new browser (result and view cached; a fresh "
                                 "chromium, nothing in its cache)",
             "floor_cached": "floor: an empty Streamlit page (its title) in another tab",
             "floor_new_browser": "floor: an empty Streamlit page (its title) in a new browser",
             "slider": "confidence slider moved one step (tiles drawn again)",
             "filter": "filter by error type missing_box (narrowed grid painted)",
             "open_tile": "a tile opened (detail: image with its boxes, box table)"}
    lines = ["# Detection triage in the browser at 100,000 images x 20 boxes", "",
             f"Command: `.venv/bin/python bench/bench_detection.py page --browser --images {n} --repeat {args.repeat}"
             f" --result-cache {args.result_cache}`", "",
             f"The app on {n:,} images, {n_ann:,} annotations, {n_pred:,} predictions (see "
             "bench/bench_detection_browser.py), in Debian's chromium (headless, 1400x1000) on the same machine "
             f"({os.cpu_count()} CPU cores). Median and worst of {args.repeat} rounds after a warm-up round; server "
             "s = the app's render time (a fragment's rerun: its body's) of the runs inside that step (median); "
             "title shown = from the click to "
             "the page's title painted (Streamlit's frontend loaded in the new tab, the page script started). "
             "Load average (1 min): "
             f"{load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end.", "",
             "| what | click to paint, median (s) | worst (s) | server (s) | title shown (s) | budget (s) | within |",
             "|---|---:|---:|---:|---:|---:|:---:|"]
    for key, v in results.items():
        med, worst = float(np.nanmedian(v)), float(np.nanmax(v))
        srv = statistics.median(server.get(key) or [float("nan")])
        lim = BUDGET_S.get(key, 1.0)
        title = f"{statistics.median(shell[key]):.2f}" if shell.get(key) else ""
        lines.append(f"| {names[key]} | {med:.2f} | {worst:.2f} | {srv:.2f} | {title} | {lim:g} | "
                     f"{'yes' if med <= lim else 'NO'} |")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    sys.stdout.write("\n".join(lines) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":     # internal: the app for the bench
        port, n_img, n_box, cache, data_dir = sys.argv[2:7]
        raise SystemExit(serve(int(port), int(n_img), int(n_box), cache, Path(data_dir)))
    from bench_detection import main
    raise SystemExit(main(["page", "--browser"] + sys.argv[1:]))
