"""storage.py: datasets on object storage. A real S3-compatible server (moto's, on 127.0.0.1) holds copies of local
datasets (sample_data's class folders with COCO boxes, a manifest of real photos, COCO, YOLO); scanning, thumbnails,
the app's gallery and scoring on the s3:// copy must give what the local copy gives, and never write into the bucket.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_data"
BUCKET = "data"          # the datasets; never written after the upload
SCRATCH = "scratch"      # a bucket the tests themselves change (a re-uploaded object)
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- local datasets (real photos from scikit-image; small images made with PIL) ----------------------------------

def _photo(name: str):
    import skimage.data
    from PIL import Image
    return Image.fromarray(getattr(skimage.data, name)())


def _make_photos(root: Path) -> None:
    """A manifest dataset of real photos: class folders, a re-encoded copy (a near duplicate across splits), a row
    for an object that is not there and a row that climbs out of the root."""
    rows = []
    for label, names in {"animal": ["chelsea", "cat"], "person": ["astronaut"], "object": ["coffee", "rocket"],
                         "texture": ["camera", "moon", "coins"]}.items():
        for name in names:
            img = _photo(name)
            (root / label).mkdir(parents=True, exist_ok=True)
            img.convert("RGB").save(root / label / f"{name}.jpg", quality=90)
            rows.append((f"{label}/{name}.jpg", label, "train"))
    small = _photo("astronaut").convert("RGB").resize((256, 256))
    small.save(root / "person" / "astronaut_small.png")
    rows += [("person/astronaut_small.png", "person", "val"), ("person/absent.jpg", "person", "val"),
             ("../outside.jpg", "person", "val")]
    pd.DataFrame(rows, columns=["path", "label", "split"]).to_csv(root / "manifest.csv", index=False)


def _make_coco(root: Path) -> None:
    (root / "images").mkdir(parents=True)
    images, anns = [], []
    for k, name in enumerate(["coffee", "rocket", "chelsea"]):
        img = _photo(name).convert("RGB")
        img.thumbnail((200, 200))
        img.save(root / "images" / f"{name}.jpg", quality=90)
        images.append({"id": k + 1, "file_name": f"{name}.jpg", "width": img.width, "height": img.height})
        anns.append({"id": 10 + k, "image_id": k + 1, "category_id": 1, "bbox": [10, 10, 50, 40]})
    anns.append({"id": 99, "image_id": 2, "category_id": 1, "bbox": [150, 150, 400, 400]})     # outside the image
    anns.append({"id": 98, "image_id": 7, "category_id": 1, "bbox": [1, 1, 5, 5]})             # no such image
    (root / "annotations.json").write_text(json.dumps(
        {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "thing"}]}))


def _make_yolo(root: Path) -> None:
    for split in ("train", "val"):
        (root / split / "images").mkdir(parents=True)
        (root / split / "labels").mkdir(parents=True)
    for k, name in enumerate(["coffee", "rocket", "chelsea", "astronaut"]):
        split = "train" if k < 3 else "val"
        img = _photo(name).convert("RGB")
        img.thumbnail((160, 160))
        img.save(root / split / "images" / f"{name}.jpg", quality=90)
        if name != "astronaut":          # an image without a label file
            (root / split / "labels" / f"{name}.txt").write_text("0 0.5 0.5 0.2 0.3\n1 0.4 0.4 0.1 0.1\n"
                                                                 + ("7 oops\n" if name == "rocket" else ""))
    (root / "data.yaml").write_text("names: [cup, cat]\n")


@pytest.fixture(scope="session")
def local(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("storage_local")
    out = {"sample": SAMPLE, "shapes": base / "shapes"}
    shutil.copytree(SAMPLE / "val", base / "shapes")      # the sample model's classes, for scoring
    for name, make in (("photos", _make_photos), ("coco", _make_coco), ("yolo", _make_yolo)):
        (base / name).mkdir()
        make(base / name)
        out[name] = base / name
    return out


# -- the S3 server ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def s3(local):
    """moto's S3 server on a free port of 127.0.0.1 with every local dataset uploaded under s3://data/<name>.
    Yields {"endpoint", "client", "before"} (before: the bucket's objects and ETags after the upload)."""
    pytest.importorskip("s3fs")
    moto_server = pytest.importorskip("moto.server")
    import boto3

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in [*CREDENTIALS, "AWS_ENDPOINT_URL"]}
    os.environ.update(CREDENTIALS, AWS_ENDPOINT_URL=endpoint)
    try:
        client = boto3.client("s3", endpoint_url=endpoint)
        client.create_bucket(Bucket=BUCKET)
        client.create_bucket(Bucket=SCRATCH)
        uploads = [(str(p), f"{name}/{p.relative_to(root).as_posix()}")
                   for name, root in local.items() for p in sorted(root.rglob("*")) if p.is_file()]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda a: client.upload_file(a[0], BUCKET, a[1]), uploads))
        yield {"endpoint": endpoint, "client": client, "port": port, "before": _objects(client, BUCKET)}
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()


def _objects(client, bucket: str) -> dict[str, tuple]:
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for o in page.get("Contents", []):
            out[o["Key"]] = (o["ETag"], o["Size"], o["LastModified"])
    return out


def _finding_keys(findings: pd.DataFrame) -> list[tuple]:
    return sorted(zip(findings["image_id"], findings["check"], findings["family"]))


COMPARED = ["image_id", "label", "split", "file_size_bytes", "width_px", "height_px", "content_hash", "pixel_hash",
            "phash", "dhash", "error_kind", "n_boxes"]


# -- scanning ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, fmt", [("sample", "folder"), ("photos", "csv"), ("coco", "coco"), ("yolo", "yolo")])
def test_a_scan_of_the_s3_copy_finds_what_the_local_scan_finds(s3, local, tmp_path, name, fmt):
    from inspect_core.scanner import scan
    there = scan(f"s3://{BUCKET}/{name}/", workspace=tmp_path / "ws")
    here = scan(local[name], workspace=tmp_path / "ws")
    assert there.dataset.format == here.dataset.format == fmt
    assert there.dataset.root == f"s3://{BUCKET}/{name}"
    assert _finding_keys(there.findings) == _finding_keys(here.findings)
    assert len(there.findings) >= 2                               # each copy has planted problems to find
    a, b = there.images[COMPARED].astype(str), here.images[COMPARED].astype(str)
    pd.testing.assert_frame_equal(a, b)
    assert np.array_equal(there.desc, here.desc)
    if here.dataset.has_boxes:
        cols = ["image_id", "category", "box_x_px", "box_y_px", "box_w_px", "box_h_px"]
        pd.testing.assert_frame_equal(there.annotations[cols], here.annotations[cols])
    assert there.workspace != here.workspace and there.workspace.is_dir()
    assert (there.workspace / "scan" / "findings.parquet").is_file()


def test_real_photos_on_s3_give_the_planted_findings_and_only_those(s3, tmp_path):
    from inspect_core.scanner import scan
    res = scan(f"s3://{BUCKET}/photos", workspace=tmp_path / "ws")
    by_check = res.findings.groupby("check")["image_id"].apply(set).to_dict()
    assert by_check["missing_file"] == {"person/absent.jpg"}
    assert by_check["path_outside_root"] == {"../outside.jpg"}
    missing = res.findings[res.findings["check"] == "missing_file"]["detail"].iloc[0]
    assert "bucket" in missing
    # scikit-image's cat() is its chelsea(): the same bytes once saved, found as such
    assert by_check["exact_duplicate"] == {"animal/cat.jpg", "animal/chelsea.jpg"}
    # the reduced copy of the astronaut is its near duplicate, across splits; no other pair among the real photos
    near = res.findings[res.findings["check"].isin(["near_duplicate", "split_leakage"])]
    assert set(near["image_id"]) == {"person/astronaut.jpg", "person/astronaut_small.png"}
    assert res.summary["files_read"] == 9


def test_a_rescan_reads_nothing_and_a_changed_object_is_read_again(s3, local, tmp_path):
    from inspect_core.scanner import scan
    client = s3["client"]
    for p in sorted((local["coco"]).rglob("*")):
        if p.is_file():
            client.upload_file(str(p), SCRATCH, f"coco/{p.relative_to(local['coco']).as_posix()}")
    url = f"s3://{SCRATCH}/coco"
    first = scan(url, workspace=tmp_path / "ws")
    assert first.summary["files_read"] == 3
    again = scan(url, workspace=tmp_path / "ws")
    assert again.summary["files_read"] == 0 and again.summary["files_from_cache"] == 3
    from PIL import Image
    Image.new("RGB", (120, 90), (0, 0, 0)).save(tmp_path / "dark.jpg")
    client.upload_file(str(tmp_path / "dark.jpg"), SCRATCH, "coco/images/rocket.jpg")   # same key, new ETag
    third = scan(url, workspace=tmp_path / "ws")
    assert third.summary["files_read"] == 1 and third.summary["files_from_cache"] == 2
    row = third.images.set_index("image_id").loc["images/rocket.jpg"]
    assert (row["width_px"], row["height_px"], row["brightness"]) == (120, 90, 0.0)     # the new object's pixels


def test_paths_under_a_url_stay_urls_and_cannot_climb_out():
    from inspect_core import storage
    from inspect_core.export import joined_path
    from inspect_core.paths import is_within, resolve_inside
    root = "s3://b/p"
    assert resolve_inside(root, "a/x.jpg") == joined_path(root, "a/x.jpg") == "s3://b/p/a/x.jpg"
    assert [resolve_inside(root, i) for i in ("../x.jpg", "a/../../x.jpg", "/etc/passwd", "")] == [None] * 4
    assert is_within("s3://b/p/a", root) and not is_within("s3://b/pq", root) and not is_within("/tmp", root)
    assert storage.normalise_root("S3://b/p/") == "s3://b/p" and not storage.is_remote("/data/s3:/x")
    assert storage.etag_stamp('"abc"') == storage.etag_stamp("abc") >= 0


def test_the_workspace_of_a_url_is_local_and_keyed_by_url_and_endpoint(s3, tmp_path, monkeypatch):
    from inspect_core.workspace import workspace_dir
    a = workspace_dir(f"s3://{BUCKET}/photos", tmp_path)
    assert a == workspace_dir(f"s3://{BUCKET}/photos/", tmp_path) and a.is_dir() and a.parent == tmp_path
    assert a.name.startswith("photos-")
    assert a != workspace_dir(f"s3://{BUCKET}/coco", tmp_path)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    assert workspace_dir(f"s3://{BUCKET}/photos", tmp_path) != a        # one bucket name on two servers
    from inspect_core.workspace import WorkspaceError
    with pytest.raises(WorkspaceError, match="local folder"):
        workspace_dir(f"s3://{BUCKET}/photos", f"s3://{BUCKET}/ws")


# -- thumbnails, the viewer and the app ---------------------------------------------------------------------------

def test_thumbnails_and_the_large_view_come_from_the_bucket(s3, local, tmp_path):
    from inspect_core import thumbs
    ids = ["animal/chelsea.jpg", "person/astronaut_small.png", "person/absent.jpg", "../outside.jpg"]
    there = thumbs.thumbnails(f"s3://{BUCKET}/photos", ids, tmp_path / "ws_s3")
    here = thumbs.thumbnails(local["photos"], ids, tmp_path / "ws_local")
    assert [t.ok for t in there] == [True, True, False, False]
    assert [t.reason for t in there] == [None, None, "file missing", "outside dataset root"]
    assert [t.data for t in there[:2]] == [t.data for t in here[:2]]          # the same pixels, the same JPEG
    assert len(list((tmp_path / "ws_s3" / "thumbs").rglob("*.jpg"))) == 2       # cached locally
    img, scale, reason = thumbs.display_image(f"s3://{BUCKET}/photos", "animal/chelsea.jpg", max_side_px=200)
    ref, ref_scale, _ = thumbs.display_image(local["photos"], "animal/chelsea.jpg", max_side_px=200)
    assert reason is None and scale == ref_scale and np.array_equal(np.asarray(img), np.asarray(ref))


def test_the_app_on_a_bucket_shows_the_gallery_from_the_bucket(s3, local, tmp_path, monkeypatch):
    import base64
    import io

    import streamlit as st
    from PIL import Image
    from streamlit.testing.v1 import AppTest

    import grid_support
    import inspect_core
    from inspect_core import thumbs
    st.cache_resource.clear()
    url = f"s3://{BUCKET}/photos"
    inspect_core.scan(url)                      # saved in this test's workspace, which the app then opens
    at = AppTest.from_file(str(REPO / "Home.py"), default_timeout=120)
    at.session_state["di_root"] = url
    at.run()
    assert not at.exception
    at.switch_page("pages/1_Gallery.py").run()
    assert not at.exception
    tiles = grid_support.tiles(at)
    assert {t["id"] for t in tiles} >= {"animal/chelsea.jpg", "object/coffee.jpg"}
    shown = {t["id"]: base64.b64decode(t["src"].split(",", 1)[1]) for t in tiles}
    for image_id, data in shown.items():       # each tile: the local copy's thumbnail, pixel for pixel
        with Image.open(io.BytesIO(data)) as im:
            size_px = im.size[0]
        ref = thumbs.thumbnail(local["photos"], image_id, tmp_path / "ws_local", size_px=size_px)
        assert data == ref.data and ref.ok == (image_id not in ("person/absent.jpg", "../outside.jpg"))
    # the viewer: the large image, read from the bucket, and the object's URL as its path
    from inspect_core.ui import viewer
    shown_large = []
    real = viewer.display_image

    def recording(root_, image_id, max_side_px=1024):
        out = real(root_, image_id, max_side_px=max_side_px)
        shown_large.append((root_, image_id, out[0].size if out[0] is not None else out[2]))
        return out
    monkeypatch.setattr(viewer, "display_image", recording)
    st.cache_data.clear()
    grid_support.open_tile(at, "animal/chelsea.jpg")
    assert not at.exception
    assert any(t.value == f"Path: {url}/animal/chelsea.jpg" for t in at.text)
    assert (url, "animal/chelsea.jpg", (451, 300)) in shown_large          # chelsea is 451x300, shown whole


def test_the_app_command_takes_a_url_and_passes_the_storage_options_on(s3, monkeypatch):
    from inspect_core import cli, storage
    seen = {}

    def fake_execv(path, argv):
        seen["argv"] = argv
        seen["options"] = os.environ.get(storage.OPTIONS_ENV)
        raise SystemExit(0)
    monkeypatch.setattr(os, "execv", fake_execv)
    monkeypatch.delenv(storage.OPTIONS_ENV, raising=False)
    with pytest.raises(SystemExit):
        cli.main(["app", f"s3://{BUCKET}/photos", "--storage-option", f"endpoint_url={s3['endpoint']}"])
    assert seen["argv"][-2:] == ["--root", f"s3://{BUCKET}/photos"]
    assert json.loads(seen["options"]) == {"endpoint_url": s3["endpoint"]}      # the app's process inherits it
    storage.set_storage_options([])


def test_a_bad_storage_option_is_a_one_line_error(capsys, tmp_path):
    err = _one_line_error(capsys, ["scan", str(tmp_path), "--storage-option", "no-equals-sign"])
    assert "KEY=VALUE" in err


@pytest.mark.browser
def test_the_app_in_a_real_browser_scans_the_bucket_and_shows_its_images(s3, tmp_path):
    """``streamlit run Home.py -- --root s3://...`` in chromium: Scan on Home, the gallery's thumbnails, the viewer."""
    import re

    import browser_support as bs
    bs.require_chromium()
    from playwright.sync_api import sync_playwright
    url = f"s3://{BUCKET}/photos"
    app = bs.App(tmp_path, root=url)              # inherits AWS_ENDPOINT_URL and the credentials
    app.start()
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=bs.CHROMIUM, headless=True, args=bs.CHROMIUM_ARGS,
                                         timeout=bs.WAIT_MS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(bs.WAIT_MS)
            page.goto(app.url + "/", wait_until="domcontentloaded")
            bs.main_area(page).get_by_role("button", name="Scan", exact=True).click()
            bs.main_area(page).get_by_text("Findings by family").wait_for()
            bs.wait_idle(page)
            page.goto(app.url + "/Gallery", wait_until="domcontentloaded")
            bs.main_area(page).get_by_text(re.compile(r"^11 of 11 images match")).wait_for()
            bs.wait_idle(page)
            bs.tiles_shown(page, 11, exact=True)          # every thumbnail decoded by the browser
            bs.open_image(page, "animal/chelsea.jpg")
            shown = bs.viewer(page).locator("img").evaluate_all("xs => xs.map(x => x.naturalWidth)")
            assert max(shown) >= 300                         # the large view of the 451x300 photo
            assert bs.viewer(page).get_by_text(f"Path: {url}/animal/chelsea.jpg").count() == 1
            browser.close()
    finally:
        app.stop()
    import inspect_core
    from inspect_core.workspace import workspace_dir
    scan = inspect_core.load_scan(workspace_dir(url, base=tmp_path / "dataset-inspector"))
    assert scan is not None and scan.summary["root"] == url and scan.summary["files_read"] == 9


# -- scoring ------------------------------------------------------------------------------------------------------

def test_score_reads_the_images_from_the_bucket(s3, local, tmp_path, capsys):
    from inspect_core.cli import main
    model = str(SAMPLE / "model" / "model.ts.pt")
    url = f"s3://{BUCKET}/shapes"
    rc = main(["score", url, "--model", model, "--out", str(tmp_path / "s3"), "--workers", "2"])   # forked readers
    assert rc == 0, capsys.readouterr().err
    rc = main(["score", str(local["shapes"]), "--model", model, "--out", str(tmp_path / "local"), "--workers", "0"])
    assert rc == 0, capsys.readouterr().err
    there = pd.read_parquet(tmp_path / "s3" / "scores.parquet")
    here = pd.read_parquet(tmp_path / "local" / "scores.parquet")
    assert len(there) == len(here) > 50
    # the same scores; an unreadable file's error names it by its URL there, by its path here
    assert there["error"].notna().sum() == 1 and "square_0065.jpg: empty file" in there["error"].dropna().iloc[0]
    there["error"] = there["error"].str.replace(url, "ROOT", regex=False)
    here["error"] = here["error"].str.replace(str(local["shapes"]), "ROOT", regex=False)
    pd.testing.assert_frame_equal(there, here)
    # a second run on the bucket reads its scores from the cache (keyed by the objects' ETags)
    rc = main(["score", url, "--model", model, "--out", str(tmp_path / "s3b"), "--workers", "0"])
    assert rc == 0 and "(from cache)" in capsys.readouterr().out
    back = pd.read_parquet(tmp_path / "s3b" / "scores.parquet")
    back["error"] = back["error"].str.replace(url, "ROOT", regex=False)
    pd.testing.assert_frame_equal(back, here)


# -- errors -------------------------------------------------------------------------------------------------------

def _one_line_error(capsys, argv) -> str:
    from inspect_core.cli import main
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


def test_an_unknown_bucket_a_closed_port_and_bad_credentials_are_one_line_errors(s3, capsys, tmp_path, monkeypatch):
    import requests
    err = _one_line_error(capsys, ["scan", "s3://no-such-bucket/x", "--workspace", str(tmp_path)])
    assert "s3://no-such-bucket/x" in err and "not found" in err
    err = _one_line_error(capsys, ["scan", f"s3://{BUCKET}/photos/manifest.csv", "--workspace", str(tmp_path)])
    assert "is a file, not a folder" in err
    closed = _free_port()
    err = _one_line_error(capsys, ["scan", f"s3://{BUCKET}/photos", "--workspace", str(tmp_path),
                                   "--storage-option", f"endpoint_url=http://127.0.0.1:{closed}"])
    assert f"s3://{BUCKET}/photos" in err and "cannot reach" in err and str(closed) in err
    monkeypatch.delenv("DATASET_INSPECTOR_STORAGE_OPTIONS")
    from inspect_core import storage
    storage.set_storage_options([])
    # moto checks signatures once its "no auth" allowance is 0 (its server's reset-auth switch)
    requests.post(f"{s3['endpoint']}/moto-api/reset-auth", data=b"0").raise_for_status()
    try:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG1")
        err = _one_line_error(capsys, ["scan", f"s3://{BUCKET}/photos", "--workspace", str(tmp_path)])
        assert f"s3://{BUCKET}/photos" in err and "refused" in err and "AWS_ACCESS_KEY_ID" in err
    finally:
        requests.post(f"{s3['endpoint']}/moto-api/reset-auth", data=b"inf").raise_for_status()


def test_a_scheme_whose_package_is_missing_says_what_to_install():
    from inspect_core.loaders import DatasetError, load_dataset
    pytest.importorskip("s3fs")
    try:
        import gcsfs  # noqa: F401
        pytest.skip("gcsfs is installed here")
    except ImportError:
        pass
    with pytest.raises(DatasetError, match="pip install gcsfs"):
        load_dataset("gs://bucket/prefix")
    with pytest.raises(DatasetError, match="not supported"):
        load_dataset("ftp://host/prefix")


def test_the_local_path_never_imports_fsspec(tmp_path):
    import subprocess
    import sys
    from PIL import Image
    for k in range(3):
        (tmp_path / "data" / f"c{k % 2}").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 30), (60 * k, 90, 120)).save(tmp_path / "data" / f"c{k % 2}" / f"{k}.png")
    code = ("import sys; from inspect_core.scanner import scan; from inspect_core import thumbs; "
            "r = scan(sys.argv[1], workspace=sys.argv[2]); assert r.summary['files_read'] == 3; "
            "assert thumbs.thumbnail(r.root, 'c0/0.png', r.workspace).ok; "
            "print('fsspec' in sys.modules, 's3fs' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "data"), str(tmp_path / "ws")],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.stdout.split() == ["False", "False"], out.stderr[-2000:]


# -- last: nothing above wrote into the bucket -------------------------------------------------------------------

def test_zz_the_bucket_was_never_written(s3):
    """Runs after the scans, thumbnails, app and scoring above: the same objects with the same ETags and times."""
    assert _objects(s3["client"], BUCKET) == s3["before"]
