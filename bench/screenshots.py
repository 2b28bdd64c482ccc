"""Real-browser screenshots of every page on sample_data/, for the README.

    .venv/bin/python bench/screenshots.py [--out bench/screenshots] [--only detection]

Starts ``streamlit run Home.py -- --root sample_data`` on a free port (workspace in a temporary
XDG_CACHE_HOME), scans from the home page, and saves one PNG per page, made with Playwright driving
Debian's chromium (/usr/bin/chromium). PNGs are kept small (palette-quantised, < 400 KB).
"""
from __future__ import annotations

import argparse
import io
import sys
import tempfile
from pathlib import Path

from PIL import Image
from repo_files import REPO, import_file

import_file(REPO / "tests" / "browser_support.py")
from browser_support import CHROMIUM, CHROMIUM_ARGS, App, close_viewer, main_area, open_image, pick_option, \
    tile_boxes, tiles_shown, viewer, wait_idle  # noqa: E402 - the browser test's own helpers

MAX_BYTES = 400_000
# "Painted": the images of the main area, st.image's and the tile grid's (one element); the screenshots and the
# detection bench (bench_detection_browser.py) wait on this one selector.
PAINTED = '[data-testid="stMain"] [data-testid="stImage"] img, [data-testid="stMain"] .di-grid img'


def save_small(png: bytes, path: Path) -> int:
    img = Image.open(io.BytesIO(png)).convert("RGB")
    for colours in (256, 128, 64):
        buf = io.BytesIO()
        img.quantize(colors=colours, method=Image.Quantize.MEDIANCUT).save(buf, "PNG", optimize=True)
        if buf.tell() <= MAX_BYTES:
            break
    if buf.tell() > MAX_BYTES:
        img = img.resize((img.width * 3 // 4, img.height * 3 // 4), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        img.quantize(colors=128).save(buf, "PNG", optimize=True)
    path.write_bytes(buf.getvalue())
    return buf.tell()


def pick_images(cache: Path) -> tuple[str, str]:
    """An image with a box finding (for the detail view) and one with an integrity finding (to remove)."""
    import inspect_core
    from inspect_core.workspace import workspace_dir
    scan = inspect_core.load_scan(workspace_dir(REPO / "sample_data", base=cache / "dataset-inspector"))
    f = scan.findings[scan.findings["image_id"].isin(scan.images["image_id"])]
    boxed = f[(f["family"] == "annotation") & f["image_id"].isin(scan.annotations["image_id"])]
    detail = (boxed if len(boxed) else f)["image_id"].iloc[0]
    broken = f[(f["family"] == "integrity") & (f["image_id"] != detail)]
    remove = (broken if len(broken) else f[f["image_id"] != detail])["image_id"].iloc[0]
    return str(detail), str(remove)


def tiny_dataset(root: Path, n_per_class: int = 24) -> Path:
    """32x32 copies of sample_data's images (class folders): a dataset of small images, as CIFAR's."""
    src = REPO / "sample_data" / "train"
    for cls_dir in sorted(p for p in src.iterdir() if p.is_dir()):
        for k, f in enumerate(sorted(cls_dir.glob("*.jpg"))[:n_per_class]):
            dst = root / cls_dir.name / f"{cls_dir.name}_{k:03d}.png"
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                with Image.open(f) as im:
                    im.convert("RGB").resize((32, 32), Image.Resampling.BOX).save(dst)
            except OSError:  # sample_data's planted broken files stay out
                continue
    return root


def goto(page, url: str, marker: str) -> None:
    page.goto(url, wait_until="domcontentloaded")
    page.get_by_text(marker).first.wait_for()
    wait_idle(page)


def shot(page, out: Path, name: str) -> None:
    # every image in view has arrived and is decoded
    page.wait_for_function("""sel => Array.from(document.querySelectorAll(sel))
        .filter(i => i.getBoundingClientRect().top < window.innerHeight)
        .every(i => i.complete && i.naturalWidth > 0)""", arg=PAINTED, timeout=30_000)
    page.wait_for_timeout(300)
    size = save_small(page.screenshot(full_page=False), out / f"{name}.png")
    sys.stdout.write(f"{out / (name + '.png')}: {size:,} bytes\n")


def pick(page, label: str, option: str) -> None:
    pick_option(page, main_area(page).get_by_test_id("stSelectbox").filter(has_text=label), option)


SAMPLE_MODEL = "sample_data/model/model.pt2"


def model_triage_shot(page, base: str, out: Path) -> None:
    """The model triage page after scoring sample_data with its sample model."""
    goto(page, base + "/Model_triage", "Model triage")
    box = page.get_by_test_id("stMain").get_by_label("Model file (TorchScript, .pt2, or state dict)")
    box.fill(SAMPLE_MODEL)
    box.press("Enter")
    wait_idle(page)
    page.get_by_test_id("stMain").get_by_role("button", name="Score every image").click()
    page.get_by_text("Cancel scoring").first.wait_for(timeout=30_000)
    page.get_by_text("Cancel scoring").first.wait_for(state="detached", timeout=180_000)
    wait_idle(page)
    page.set_viewport_size({"width": 1400, "height": 1700})     # the headline and the first rows of the grid
    page.get_by_text("Scored images").first.scroll_into_view_if_needed()
    page.wait_for_timeout(1500)
    shot(page, out, "model_triage")
    page.set_viewport_size({"width": 1400, "height": 1000})


SAMPLE_DETECTOR = "sample_data/model/detector.ts.pt"


def crowd_dataset(dst: Path, n_images: int = 12) -> tuple[Path, str]:
    """A small COCO copy of sample_data (``n_images`` images, so all are in the grid, with their detections.json)
    where the two objects of one class on the first image that allows it (their union box touches no other
    annotation, and is at most 3 x their area) become one crowd region (``iscrowd: 1``): (root, that image)."""
    import json
    import shutil
    from collections import defaultdict
    src = REPO / "sample_data"
    coco = json.loads((src / "annotations.json").read_text())
    by_img = defaultdict(list)
    for a in coco["annotations"]:
        by_img[a["image_id"]].append(a)

    def union(boxes):
        x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
        x1, y1 = max(b[0] + b[2] for b in boxes), max(b[1] + b[3] for b in boxes)
        return [x0, y0, x1 - x0, y1 - y0]

    def overlaps(b, c):
        return min(b[0] + b[2], c[0] + c[2]) > max(b[0], c[0]) and min(b[1] + b[3], c[1] + c[3]) > max(b[1], c[1])

    crowd_id, two, box = None, [], None
    for i in sorted(by_img):
        anns = by_img[i]
        for c in sorted({a["category_id"] for a in anns}):
            two = [a for a in anns if a["category_id"] == c][:2]
            box = union([a["bbox"] for a in two])
            area = sum(a["bbox"][2] * a["bbox"][3] for a in two)
            if len(anns) >= 3 and len(two) == 2 and box[2] * box[3] <= 3 * area \
                    and not any(overlaps(box, a["bbox"]) for a in anns if a not in two):
                crowd_id = i
                break
        if crowd_id is not None:
            break
    keep = [crowd_id] + [i for i in sorted(by_img) if i != crowd_id][:n_images - 1]
    coco["images"] = [im for im in coco["images"] if im["id"] in keep]
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] in keep and a is not two[1]]
    two[0].update(bbox=box, area=box[2] * box[3], iscrowd=1)
    dets = [d for d in json.loads((src / "detections.json").read_text()) if d["image_id"] in keep]
    for im in coco["images"]:
        (dst / im["file_name"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / im["file_name"], dst / im["file_name"])
    (dst / "annotations.json").write_text(json.dumps(coco))
    (dst / "detections.json").write_text(json.dumps(dets))
    return dst, next(im["file_name"] for im in coco["images"] if im["id"] == crowd_id)


def detection_shots(page, base: str, out: Path, tmp: Path) -> None:
    """Detection triage: the shipped detector model file run on sample_data (the model-file choice, metrics, the
    worst images), and the detail of an image with a crowd region, annotations and predictions in their styles."""
    import re
    import urllib.parse

    import inspect_core
    page.set_viewport_size({"width": 1400, "height": 1250})
    goto(page, base + "/Model_triage?task=detection&" + urllib.parse.urlencode({"root": str(REPO / "sample_data")}),
         "Detector output")
    main_area(page).get_by_text("Detector model file", exact=True).click()
    wait_idle(page)
    main_area(page).get_by_role("button", name="Run the detector").click()
    main_area(page).get_by_text(re.compile("images match; worst detection error score first")).first.wait_for(
        timeout=300_000)
    wait_idle(page)
    page.get_by_text("Task", exact=True).first.scroll_into_view_if_needed()
    shot(page, out, "detection_model_file")

    root, image_id = crowd_dataset(tmp / "sample_crowd")
    inspect_core.scan(root, workspace=tmp / "dataset-inspector")
    page.set_viewport_size({"width": 1400, "height": 1000})
    goto(page, base + "/Model_triage?task=detection&" + urllib.parse.urlencode({"root": str(root)}),
         "Detector output")
    main_area(page).get_by_text(re.compile("images match; worst detection error score first")).first.wait_for()
    wait_idle(page)
    caption = main_area(page).get_by_text(re.compile(r"^#\d+ " + re.escape(image_id) + "$")).first.inner_text()
    rank = caption.split(" ", 1)[0].lstrip("#")
    main_area(page).locator(".di-tile").nth(int(rank) - 1).get_by_role("button", name="Open").click()
    main_area(page).get_by_role("heading").filter(has_text=image_id).first.wait_for()
    wait_idle(page)
    main_area(page).get_by_role("heading").filter(has_text=image_id).first.scroll_into_view_if_needed()
    page.mouse.wheel(0, -40)
    shot(page, out, "detection_crowd_detail")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(REPO / "bench" / "screenshots"))
    ap.add_argument("--only", choices=["detection"], default=None,
                    help="only these shots (sample_data scanned in-process first)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="di-shots-") as tmp:
        app = App(Path(tmp))
        app.start()
        try:
            base = app.url
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.set_default_timeout(30_000)
                if args.only == "detection":
                    import inspect_core
                    inspect_core.scan(REPO / "sample_data", workspace=Path(tmp) / "dataset-inspector")
                    detection_shots(page, base, out, Path(tmp))
                    browser.close()
                    return 0
                page.goto(base + "/", wait_until="domcontentloaded")
                page.get_by_role("button", name="Scan", exact=True).click()
                page.get_by_text("Findings by family").wait_for()
                wait_idle(page)
                shot(page, out, "home")

                page.set_viewport_size({"width": 1400, "height": 900})
                goto(page, base + "/Gallery", "images match")
                tiles_shown(page, 48)
                shot(page, out, "gallery")

                # The viewer on an image with boxes and findings; two decisions for the review page.
                detail_image, remove_image = pick_images(Path(tmp))
                open_image(page, detail_image)
                dialog = viewer(page)
                pick_option(page, dialog.get_by_test_id("stSelectbox").filter(has_text="New label"), "circle")
                dialog.get_by_label("Note (optional)").fill("reviewed in the viewer")
                dialog.get_by_label("Note (optional)").press("Enter")
                wait_idle(page)
                dialog.get_by_role("button", name="Relabel").click()
                dialog.get_by_text("Decision: relabel").first.wait_for()
                wait_idle(page)
                shot(page, out, "image_detail")
                open_image(page, remove_image)
                viewer(page).get_by_role("button", name="Remove").click()
                viewer(page).get_by_text("Decision: remove").first.wait_for()
                wait_idle(page)
                close_viewer(page)

                # A bulk action: three tiles ticked, remove with one note (shot before applying), then applied.
                goto(page, base + "/Gallery?family=property", "images match")
                tiles_shown(page, 1)
                tile_boxes(page).nth(0).click()                        # one tick, then a shift-click: three
                main_area(page).get_by_text("1 selected", exact=True).wait_for()
                wait_idle(page)
                tile_boxes(page).nth(2).click(modifiers=["Shift"])
                main_area(page).get_by_text("3 selected", exact=True).wait_for()
                wait_idle(page)
                main_area(page).get_by_label("Note for all").fill("property outliers, not useful")
                main_area(page).get_by_label("Note for all").press("Enter")
                wait_idle(page)
                shot(page, out, "bulk_action")
                main_area(page).get_by_role("button", name="Apply to 3 selected").click()
                main_area(page).get_by_text("0 selected", exact=True).wait_for()
                wait_idle(page)

                # The dense grid on a dataset of 32x32 images, opened by a link that names it.
                import urllib.parse

                import inspect_core
                tiny = tiny_dataset(Path(tmp) / "tiny32")
                inspect_core.scan(tiny, workspace=Path(tmp) / "dataset-inspector")
                goto(page, base + "/Gallery?" + urllib.parse.urlencode({"root": str(tiny)}), "images match")
                tiles_shown(page, 48)
                shot(page, out, "gallery_small_images")
                goto(page, base + "/?" + urllib.parse.urlencode({"root": str(REPO / "sample_data")}), "Findings by")
                page.set_viewport_size({"width": 1400, "height": 1000})

                goto(page, base + "/Findings?family=duplicate", "groups; page")
                main_area(page).get_by_text("Bulk decisions for duplicate").click()
                wait_idle(page)
                shot(page, out, "findings")
                goto(page, base + "/Distributions", "Any two columns")
                page.get_by_text("Any two columns").scroll_into_view_if_needed()
                page.mouse.wheel(0, 300)
                page.wait_for_timeout(800)
                shot(page, out, "distributions")
                goto(page, base + "/Review", "Export")
                shot(page, out, "review")
                if (REPO / "pages" / "5_Model_triage.py").is_file() and (REPO / SAMPLE_MODEL).is_file():
                    model_triage_shot(page, base, out)
                if (REPO / SAMPLE_DETECTOR).is_file():
                    detection_shots(page, base, out, Path(tmp))
                browser.close()
        finally:
            app.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
