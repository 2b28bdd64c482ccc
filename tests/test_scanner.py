"""The scan: every kind of bad file gives its finding and the scan completes; odd modes decode; the workspace
cache re-reads only what changed; nothing is written into the dataset; worker processes give the same rows."""
from __future__ import annotations

import io
import json
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import inspect_core
from inspect_core import filescan


def png_header_only(width_px: int, height_px: int) -> bytes:
    """A PNG whose header claims width x height pixels, with no pixel data at all."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width_px, height_px, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def make_good(root: Path, textured, n: int = 10, size=(96, 72), folder="good") -> list[str]:
    ids = []
    for k in range(n):
        p = root / folder / f"img_{k:03d}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        textured(100 + k, size).save(p, quality=90)
        ids.append(f"{folder}/img_{k:03d}.jpg")
    return ids


def pairs_of(findings: pd.DataFrame, family: str | None = None) -> set[tuple[str, str]]:
    f = findings if family is None else findings[findings["family"] == family]
    return set(zip(f["image_id"], f["check"]))


# ----------------------------------------------------------------------------- bad files

def test_every_kind_of_bad_file_is_reported_and_the_scan_completes(tmp_path, textured):
    root = tmp_path / "ds"
    good = make_good(root, textured)
    big = textured(7, (320, 240))
    jpg, png = encode(big, "JPEG", quality=90), encode(big, "PNG")
    bad = root / "bad"
    bad.mkdir()
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "text.jpg").write_text("hello, I am a text file with an image name\n")
    (bad / "cut.jpg").write_bytes(jpg[: len(jpg) // 2])
    (bad / "cut_end.jpg").write_bytes(jpg[:-40])
    (bad / "cut.png").write_bytes(png[: len(png) // 2])
    (bad / "really_png.jpg").write_bytes(png)
    (bad / "bomb.png").write_bytes(png_header_only(30_000, 30_000))
    (bad / "random.webp").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())

    result = inspect_core.scan(root, workers=1)

    assert sorted(result.images["image_id"]) == sorted(good + [
        "bad/bomb.png", "bad/cut.jpg", "bad/cut.png", "bad/cut_end.jpg", "bad/empty.jpg", "bad/random.webp",
        "bad/really_png.jpg", "bad/text.jpg"])
    assert pairs_of(result.findings, "integrity") == {
        ("bad/empty.jpg", "empty_file"), ("bad/text.jpg", "unreadable"), ("bad/random.webp", "unreadable"),
        ("bad/cut.jpg", "truncated"), ("bad/cut_end.jpg", "truncated"), ("bad/cut.png", "truncated"),
        ("bad/really_png.jpg", "format_mismatch"), ("bad/bomb.png", "decompression_bomb")}
    assert not pairs_of(result.findings) & {(g, c) for g in good for c in ("unreadable", "truncated")}
    rows = result.images.set_index("image_id")
    assert rows.loc["bad/really_png.jpg", ["format", "ext_format", "width_px", "height_px"]].tolist() == [
        "PNG", "JPEG", 320, 240]
    assert rows.loc["bad/empty.jpg", "file_size_bytes"] == 0
    assert rows.loc["bad/cut.jpg", "file_size_bytes"] == len(jpg) // 2
    f = result.findings.set_index(["image_id", "check"])
    assert "0 bytes" in f.loc[("bad/empty.jpg", "empty_file"), "detail"]
    assert "truncated" in f.loc[("bad/cut.jpg", "truncated"), "detail"]
    assert "PNG" in f.loc[("bad/really_png.jpg", "format_mismatch"), "detail"]
    assert "900000000" in f.loc[("bad/bomb.png", "decompression_bomb"), "detail"].replace(",", "")
    # a bad file gets no pixel statistics, and its issue column is set
    assert rows.loc[["bad/cut.jpg", "bad/text.jpg", "bad/bomb.png"], "brightness"].isna().all()
    assert rows.loc["bad/cut.png", "is_truncated"] and not rows.loc[good[0], "is_truncated"]


def test_decompression_bomb_by_pixel_limit_is_not_decoded(tmp_path, textured, monkeypatch):
    root = tmp_path / "ds"
    good = make_good(root, textured, n=3, size=(40, 30))
    textured(9, (200, 100)).save(root / "good" / "large.png")
    monkeypatch.setattr(filescan, "MAX_PIXELS", 10_000)
    result = inspect_core.scan(root, workers=1)
    assert pairs_of(result.findings, "integrity") == {("good/large.png", "decompression_bomb")}
    f = result.issues("decompression_bomb")
    assert "200x100 = 20,000 px exceeds the 10,000 px limit" in f["detail"].iloc[0]
    rows = result.images.set_index("image_id")
    assert rows.loc["good/large.png", ["width_px", "height_px"]].tolist() == [200, 100]
    assert np.isnan(rows.loc["good/large.png", "brightness"])
    assert rows.loc[good, "brightness"].notna().all()


def test_header_claiming_a_huge_size_is_a_bomb_without_any_decode(tmp_path):
    root = tmp_path / "ds"
    root.mkdir()
    (root / "huge.png").write_bytes(png_header_only(10_000, 10_000))  # 100 Mpx: above MAX_PIXELS
    result = inspect_core.scan(root, workers=1)
    assert pairs_of(result.findings, "integrity") == {("huge.png", "decompression_bomb")}
    assert "exceeds" in result.issues("decompression_bomb")["detail"].iloc[0]


def test_odd_modes_decode_with_correct_statistics(tmp_path):
    root = tmp_path / "ds"
    root.mkdir()
    Image.new("CMYK", (40, 30), (0, 0, 0, 128)).save(root / "cmyk.jpg", quality=95)
    Image.fromarray(np.full((30, 40), 32768, np.uint16)).save(root / "deep16.png")
    pal = Image.new("P", (40, 30), 1)
    pal.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    pal.save(root / "palette_transparent.png", transparency=0)
    frames = [Image.new("RGB", (40, 30), c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    frames[0].save(root / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    Image.new("LA", (40, 30), (100, 255)).save(root / "grey_alpha.png")
    Image.new("1", (40, 30), 1).save(root / "bilevel.png")
    Image.new("1", (40, 30), 0).save(root / "bilevel.bmp")
    Image.new("RGBA", (40, 30), (0, 0, 255, 128)).save(root / "rgba.webp", lossless=True)
    Image.new("RGB", (40, 30), (0, 255, 0)).save(root / "plain.tif")

    result = inspect_core.scan(root, workers=1)

    assert result.issues("integrity").empty
    rows = result.images.set_index("image_id").sort_index()
    got = {i: (r["format"], r["mode"], int(r.width_px), int(r.height_px), int(r.n_frames),
               round(float(r.brightness), 2)) for i, r in rows.iterrows()}
    assert got == {
        "anim.gif": ("GIF", "P", 40, 30, 3, 0.30),               # first frame: pure red, 0.299
        "bilevel.bmp": ("BMP", "1", 40, 30, 1, 0.0),
        "bilevel.png": ("PNG", "1", 40, 30, 1, 1.0),
        "cmyk.jpg": ("JPEG", "CMYK", 40, 30, 1, 0.50),
        "deep16.png": ("PNG", "I;16", 40, 30, 1, 0.50),          # 32768 / 65535
        "grey_alpha.png": ("PNG", "LA", 40, 30, 1, 0.39),         # 100 / 255
        "palette_transparent.png": ("PNG", "P", 40, 30, 1, 0.49),  # (200, 100, 50) as grey
        "plain.tif": ("TIFF", "RGB", 40, 30, 1, 0.59),             # pure green, 0.587
        "rgba.webp": ("WEBP", "RGBA", 40, 30, 1, 0.11),            # pure blue, 0.114
    }
    assert sorted(rows.index[rows["gray_mode"]]) == ["bilevel.bmp", "bilevel.png", "deep16.png",
                                                        "grey_alpha.png"]


def test_exif_orientation_is_recorded(tmp_path, textured):
    root = tmp_path / "ds"
    root.mkdir()
    for k, orientation in enumerate([1, 3, 6, 8]):
        exif = Image.Exif()
        exif[0x0112] = orientation
        textured(k, (60, 40)).save(root / f"o{orientation}.jpg", exif=exif.tobytes())
    textured(9, (60, 40)).save(root / "none.jpg")
    result = inspect_core.scan(root, workers=1)
    assert dict(zip(result.images["image_id"], result.images["exif_orientation"].astype(int))) == {
        "none.jpg": 0, "o1.jpg": 1, "o3.jpg": 3, "o6.jpg": 6, "o8.jpg": 8}


# ----------------------------------------------------------------------------- cache and workspace

def tree_state(root: Path) -> dict[str, tuple]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_size if p.is_file() else -1, st.st_mtime_ns)
    st = root.stat()
    out["."] = (-1, st.st_mtime_ns)
    return out


def test_rescan_reads_only_changed_files(tmp_path, textured):
    root = tmp_path / "ds"
    ids = make_good(root, textured, n=12)
    first = inspect_core.scan(root, workers=1)
    assert (first.summary["files_read"], first.summary["files_from_cache"]) == (12, 0)

    again = inspect_core.scan(root, workers=1)
    assert (again.summary["files_read"], again.summary["files_from_cache"]) == (0, 12)
    pd.testing.assert_frame_equal(again.images, first.images)
    pd.testing.assert_frame_equal(again.findings, first.findings)
    assert again.fingerprint == first.fingerprint
    np.testing.assert_array_equal(again.desc, first.desc)

    touched = root / ids[3]
    st = touched.stat()
    os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    after_touch = inspect_core.scan(root, workers=1)
    assert (after_touch.summary["files_read"], after_touch.summary["files_from_cache"]) == (1, 11)

    textured(999, (96, 72)).save(root / ids[5], quality=90)  # new content
    after_edit = inspect_core.scan(root, workers=1)
    assert (after_edit.summary["files_read"], after_edit.summary["files_from_cache"]) == (1, 11)
    assert after_edit.fingerprint != first.fingerprint
    changed = after_edit.images.set_index("image_id")
    before = first.images.set_index("image_id")
    assert changed.loc[ids[5], "content_hash"] != before.loc[ids[5], "content_hash"]
    assert (changed.drop(index=ids[5])["content_hash"] == before.drop(index=ids[5])["content_hash"]).all()

    (root / ids[0]).unlink()
    textured(1234, (96, 72)).save(root / "good" / "new.jpg")
    after_add = inspect_core.scan(root, workers=1)
    assert (after_add.summary["files_read"], after_add.summary["files_from_cache"]) == (1, 11)
    assert ids[0] not in set(after_add.images["image_id"])


def test_scan_writes_nothing_into_the_dataset(tmp_path, textured):
    root = tmp_path / "ds"
    make_good(root, textured, n=9, folder="train/cat")
    (root / "train" / "cat" / "empty.jpg").write_bytes(b"")
    before = tree_state(root)
    result = inspect_core.scan(root, workers=1)
    inspect_core.scan(root, workers=1)
    result.save(tmp_path / "report")
    assert tree_state(root) == before
    ws = Path(result.workspace)
    assert Path(os.environ["XDG_CACHE_HOME"]) in ws.parents
    assert (ws / "scan" / "images.parquet").is_file()


def test_rescan_sees_changed_labels_class_list_and_boxes_without_rereading_files(tmp_path, textured):
    """Nothing but the label files change: no image is read again, yet the findings follow the new labels."""
    import json

    root = tmp_path / "ds"
    make_good(root, textured, n=4, folder="cat")
    (root / "classes.txt").write_text("cat\n")
    first = inspect_core.scan(root, workers=1)
    assert first.findings.empty

    (root / "classes.txt").write_text("dog\n")
    renamed = inspect_core.scan(root, workers=1)
    assert renamed.summary["files_read"] == 0
    assert sorted(renamed.issues("unknown_label")["image_id"]) == [f"cat/img_{k:03d}.jpg" for k in range(4)]

    (root / "classes.txt").write_text("cat\n")
    (root / "annotations.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "cat/img_000.jpg"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [90, 0, 20, 20]}],
        "categories": [{"id": 1, "name": "cat"}]}))
    boxed = inspect_core.scan(root, workers=1)
    assert boxed.summary["files_read"] == 0
    assert pairs_of(boxed.findings) == {("cat/img_000.jpg", "box_outside_image"), ("cat/img_001.jpg", "no_boxes"),
                                        ("cat/img_002.jpg", "no_boxes"), ("cat/img_003.jpg", "no_boxes")}
    assert boxed.images.set_index("image_id").loc["cat/img_000.jpg", "n_boxes"] == 1
    assert boxed.fingerprint != first.fingerprint

    (root / "annotations.json").unlink()
    again = inspect_core.scan(root, workers=1)
    assert again.findings.empty and again.fingerprint == first.fingerprint


def test_rescan_with_missing_and_outside_paths_reads_nothing(tmp_path, textured):
    root = tmp_path / "ds"
    make_good(root, textured, n=2, folder="img")
    (root / "manifest.csv").write_text("path,label\nimg/img_000.jpg,a\nimg/img_001.jpg,a\nimg/gone.jpg,a\n"
                                       "../x.jpg,a\n")
    first = inspect_core.scan(root, workers=1)
    assert pairs_of(first.findings, "integrity") == {("img/gone.jpg", "missing_file"),
                                                     ("../x.jpg", "path_outside_root")}
    assert first.summary["files_read"] == 2            # the missing and the outside path were not read
    again = inspect_core.scan(root, workers=1)
    assert pairs_of(again.findings) == pairs_of(first.findings)
    assert (again.summary["files_read"], again.summary["files_from_cache"]) == (0, 2)


def test_two_scans_of_one_dataset_at_once_both_complete(tmp_path, textured, monkeypatch):
    """Deterministic form of the race: scan B runs whole between scan A writing its temporary cache file and
    moving it into place."""
    root = tmp_path / "ds"
    make_good(root, textured, n=3)
    real_replace = os.replace
    state = {"inner": None}

    def racing_replace(src, dst, *args, **kwargs):
        if state["inner"] is None and str(src).endswith(".tmp"):
            state["inner"] = "running"
            state["inner"] = inspect_core.scan(root, workers=1)  # B
        return real_replace(src, dst, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:  # not monkeypatch.undo(): that would also undo XDG_CACHE_HOME
        patch.setattr(os, "replace", racing_replace)
        outer = inspect_core.scan(root, workers=1)  # A
    assert pairs_of(outer.findings) == pairs_of(state["inner"].findings)
    assert inspect_core.scan(root, workers=1).summary["files_read"] == 0


def test_damaged_cache_is_rebuilt_not_fatal(tmp_path, textured):
    root = tmp_path / "ds"
    make_good(root, textured, n=4)
    first = inspect_core.scan(root, workers=1)
    cache = Path(first.workspace) / "filecache.parquet"
    assert cache.is_file()
    cache.write_bytes(b"PAR1 this is not a parquet file")
    again = inspect_core.scan(root, workers=1)
    assert (again.summary["files_read"], again.summary["files_from_cache"]) == (4, 0)
    pd.testing.assert_frame_equal(again.images, first.images)
    third = inspect_core.scan(root, workers=1)
    assert third.summary["files_from_cache"] == 4


def test_cache_that_cannot_be_written_costs_only_a_full_reread(tmp_path, textured, monkeypatch, caplog):
    # the file cache is written by a background thread while the checks run: a failure there (disk full,
    # read-only workspace) must not fail the scan nor leave a temporary file behind
    from inspect_core import scanner
    root = tmp_path / "ds"
    make_good(root, textured, n=4)
    real = scanner._write_cache

    def full_disk(ws, rows, desc):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(scanner, "_write_cache", full_disk)
    first = inspect_core.scan(root, workers=1)
    assert first.summary["files_read"] == 4 and len(first.images) == 4
    assert "could not write the scan cache" in caplog.text
    assert not (Path(first.workspace) / "filecache.parquet").exists()
    monkeypatch.setattr(scanner, "_write_cache", real)
    again = inspect_core.scan(root, workers=1)
    assert (again.summary["files_read"], again.summary["files_from_cache"]) == (4, 0)
    pd.testing.assert_frame_equal(again.images, first.images)
    assert inspect_core.scan(root, workers=1).summary["files_from_cache"] == 4


def test_failed_cache_write_leaves_no_temporary_file(tmp_path, textured, monkeypatch):
    from inspect_core import scanner
    root = tmp_path / "ds"
    make_good(root, textured, n=3)
    ws = tmp_path / "ws"
    ws.mkdir()
    rows, desc, _ = scanner.read_all_files(root, [f"good/img_{k:03d}.jpg" for k in range(3)], ws, workers=1)

    class Broken:
        def __init__(self, where, schema):
            Path(where).write_bytes(b"PAR1")           # the writer has begun the file when the disk fills up

        def write_table(self, table):
            raise OSError(28, "No space left on device")

        def close(self):
            pass

    monkeypatch.setattr(scanner.pq, "ParquetWriter", Broken)
    (ws / "filecache.parquet").unlink()
    with pytest.raises(OSError):
        scanner._write_cache(ws, rows, desc)
    assert sorted(p.name for p in ws.iterdir()) == []


def test_workspace_dir_is_per_root_and_outside_it(tmp_path):
    from inspect_core.workspace import workspace_dir

    a, b = tmp_path / "one" / "data", tmp_path / "two" / "data"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    wa, wb = workspace_dir(a), workspace_dir(b)
    base = Path(os.environ["XDG_CACHE_HOME"]) / "dataset-inspector"
    assert wa != wb and wa.parent == base and wb.parent == base
    assert wa.name.startswith("data-") and wa.is_dir()
    assert workspace_dir(a) == wa                      # stable
    link = tmp_path / "link"
    os.symlink(a, link)
    assert workspace_dir(link) == wa                   # the real path decides
    assert workspace_dir(a, base=tmp_path / "elsewhere").parent == tmp_path / "elsewhere"
    with pytest.raises(ValueError):
        workspace_dir(a, base=a / "ws")


def test_save_inside_the_dataset_is_refused(tmp_path, textured):
    root = tmp_path / "ds"
    make_good(root, textured, n=2)
    result = inspect_core.scan(root, workers=1)
    before = tree_state(root)
    for target in (root, root / "report", root / "good" / "deeper"):
        with pytest.raises(ValueError, match="dataset folder"):
            result.save(target)
    assert tree_state(root) == before


def test_workspace_inside_the_dataset_is_refused(tmp_path, textured):
    root = tmp_path / "ds"
    make_good(root, textured, n=2)
    with pytest.raises(ValueError, match="inside the dataset root"):
        inspect_core.scan(root, workers=1, workspace=root / ".cache")
    assert not (root / ".cache").exists()


def test_load_scan_reopens_the_saved_scan(tmp_path, textured):
    root = tmp_path / "ds"
    make_good(root, textured, n=9)
    (root / "good" / "empty.jpg").write_bytes(b"")
    result = inspect_core.scan(root, workers=1)
    back = inspect_core.load_scan(result.workspace)
    assert back is not None
    assert back.fingerprint == result.fingerprint
    pd.testing.assert_frame_equal(back.findings, result.findings)
    assert back.images["image_id"].tolist() == result.images["image_id"].tolist()
    assert inspect_core.load_scan(tmp_path / "nowhere") is None


def test_load_scan_keeps_manifest_metadata(tmp_path, textured):
    root = tmp_path / "ds"
    make_good(root, textured, n=2, folder="img")
    (root / "manifest.csv").write_text("path,label,split,source\nimg/img_000.jpg,a,train,web\n"
                                       "img/img_001.jpg,b,val,phone\n")
    result = inspect_core.scan(root, workers=1)
    back = inspect_core.load_scan(result.workspace)
    for r in (result, back):
        rows = r.dataset.images.set_index("image_id")
        assert rows[["label", "split", "source"]].to_dict("index") == {
            "img/img_000.jpg": {"label": "a", "split": "train", "source": "web"},
            "img/img_001.jpg": {"label": "b", "split": "val", "source": "phone"}}
        assert r.images.set_index("image_id").loc["img/img_001.jpg", "source"] == "phone"


def test_worker_processes_give_the_same_rows_as_in_process(tmp_path):
    root = tmp_path / "many"
    rng = np.random.default_rng(5)
    n = 330
    for k in range(n):
        cls = f"c{k % 3}"
        (root / cls).mkdir(parents=True, exist_ok=True)
        a = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
        im = Image.fromarray(a).resize((20, 16), Image.Resampling.BILINEAR)
        im.save(root / cls / f"{k:04d}.png")
    (root / "c0" / "broken.jpg").write_bytes(b"not a jpeg")
    calls: list[tuple[int, int]] = []
    parallel = inspect_core.scan(root, workers=2, workspace=tmp_path / "ws_parallel",
                                 progress=lambda done, total: calls.append((done, total)))
    serial = inspect_core.scan(root, workers=1, workspace=tmp_path / "ws_serial")
    assert parallel.summary["files_read"] == n + 1
    assert calls[-1] == (n + 1, n + 1)
    assert all(t == n + 1 for _, t in calls)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    pd.testing.assert_frame_equal(parallel.images, serial.images)
    pd.testing.assert_frame_equal(parallel.findings, serial.findings)
    np.testing.assert_array_equal(parallel.desc, serial.desc)
    assert ("c0/broken.jpg", "unreadable") in pairs_of(parallel.findings)


def test_progress_reaches_the_total_in_process_and_from_cache(tmp_path, textured):
    root = tmp_path / "ds"
    make_good(root, textured, n=5)
    calls: list[tuple[int, int]] = []
    inspect_core.scan(root, workers=1, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (5, 5) and calls[0][1] == 5
    calls.clear()
    inspect_core.scan(root, workers=1, progress=lambda d, t: calls.append((d, t)))
    assert calls and calls[-1] == (5, 5)


def _swap_folder_for_escaping_symlink(tmp_path, textured) -> tuple[Path, Path]:
    """Scan a manifest dataset whose images sit in root/sub, then move sub outside the root, put a symlink
    to it in its place, and give img_000 new content (img_001 keeps its size and mtime)."""
    root = tmp_path / "ds"
    make_good(root, textured, n=2, folder="sub")
    (root / "manifest.csv").write_text("path,label\nsub/img_000.jpg,a\nsub/img_001.jpg,b\n")
    first = inspect_core.scan(root, workers=1)
    assert first.issues("path_outside_root").empty and first.summary["files_read"] == 2
    outside = tmp_path / "outside"
    shutil.move(str(root / "sub"), str(outside))
    textured(77, (50, 50)).save(outside / "img_000.jpg")
    os.symlink(outside, root / "sub")
    return root, outside


def test_folder_swapped_for_an_escaping_symlink_is_not_followed_by_a_long_lived_process(tmp_path, textured):
    """The app is a long-lived process: it scans, the dataset changes, it scans again."""
    root, _ = _swap_folder_for_escaping_symlink(tmp_path, textured)
    second = inspect_core.scan(root, workers=1)
    row = second.images.set_index("image_id").loc["sub/img_000.jpg"]
    assert row["width_px"] == 0, "the file outside the root was decoded"
    assert ("sub/img_000.jpg", "path_outside_root") in pairs_of(second.findings)


def test_cached_file_now_behind_an_escaping_symlink_is_reported(tmp_path, textured, monkeypatch):
    root, _ = _swap_folder_for_escaping_symlink(tmp_path, textured)
    if hasattr(filescan, "_DIR_CACHE"):
        monkeypatch.setattr(filescan, "_DIR_CACHE", {})  # as in a fresh process
    second = inspect_core.scan(root, workers=1)
    assert pairs_of(second.findings, "integrity") == {
        ("sub/img_000.jpg", "path_outside_root"), ("sub/img_001.jpg", "path_outside_root")}


def test_a_fifo_named_jpg_does_not_hang_the_scan(tmp_path):
    import threading

    root = tmp_path / "ds"
    root.mkdir()
    fifo = root / "pipe.jpg"
    os.mkfifo(fifo)
    box: dict = {}
    worker = threading.Thread(target=lambda: box.update(row=filescan.scan_file(str(root), "pipe.jpg")), daemon=True)
    worker.start()
    worker.join(timeout=3)
    hung = worker.is_alive()
    if hung:  # unblock the reader: open the write end and close it (the reader then sees end of file)
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        worker.join(timeout=5)
    assert not hung, "scan_file blocked on a FIFO"
    assert box["row"]["error_kind"] == "unreadable"


def test_overlapping_scans_restore_the_processes_blas_threads():
    # scans in threads overlap: A starts, B starts, A ends, B ends. The one-BLAS-thread limit is shared and the
    # last one out restores the process's own setting (a save/restore per scan would leave A's limit behind).
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def blas_threads():
        return [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]

    before = blas_threads()
    if not before or max(before) < 2:
        with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
            return test_overlapping_scans_restore_the_processes_blas_threads()
    a, b = filescan.one_blas_thread(), filescan.one_blas_thread()
    a.__enter__()
    b.__enter__()
    assert max(blas_threads()) == 1
    a.__exit__(None, None, None)
    assert max(blas_threads()) == 1          # B is still scanning
    b.__exit__(None, None, None)
    assert blas_threads() == before


def test_a_new_per_file_signal_missing_from_cached_rows_reads_those_files_again(tmp_path, textured, monkeypatch):
    """A signal added to filescan after a scan was cached: the cached rows lack it, so the files are read again
    (no manual version bump), and the new column holds real values, not NaN."""
    root = tmp_path / "ds"
    ids = make_good(root, textured, n=5)
    first = inspect_core.scan(root, workers=1)
    assert first.summary["files_read"] == 5

    monkeypatch.setattr(filescan, "NUMERIC_COLUMNS", {**filescan.NUMERIC_COLUMNS, "probe_kib": np.float32})
    read_file = filescan.read_file

    def read_with_probe(root_s, image_id, dir_cache):
        row, rgb = read_file(root_s, image_id, dir_cache)
        row["probe_kib"] = row["file_size_bytes"] / 1024
        return row, rgb
    monkeypatch.setattr(filescan, "read_file", read_with_probe)

    again = inspect_core.scan(root, workers=1)
    assert (again.summary["files_read"], again.summary["files_from_cache"]) == (5, 0)
    rows = again.images.set_index("image_id").loc[ids]
    np.testing.assert_allclose(rows["probe_kib"], rows["file_size_bytes"] / 1024, rtol=1e-6)
    third = inspect_core.scan(root, workers=1)           # the cache now holds the signal: nothing is read
    assert (third.summary["files_read"], third.summary["files_from_cache"]) == (0, 5)


def save_rgb(path: Path, size=(16, 12), colour=(120, 60, 30), **kw) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, **kw)


def test_exif_orientation_out_of_range_does_not_stop_the_scan(tmp_path):
    root = tmp_path / "ds"
    exif = Image.Exif()
    exif[0x0112] = 300
    save_rgb(root / "cat" / "odd.jpg", exif=exif.tobytes())
    save_rgb(root / "cat" / "ok.jpg")
    result = inspect_core.scan(root, workers=1)
    row = result.images.set_index("image_id").loc["cat/odd.jpg"]
    assert row["exif_orientation"] == 0 and row["width_px"] == 16


def test_damaged_saved_scan_is_rescanned(tmp_path):
    root = tmp_path / "ds"
    save_rgb(root / "cat" / "a.jpg")
    first = inspect_core.scan(root, workers=1)
    (Path(first.workspace) / "scan" / "dataset.json").write_text(json.dumps({"root": str(root)}))
    again = inspect_core.scan(root, workers=1)
    assert list(again.images["image_id"]) == ["cat/a.jpg"]
    assert inspect_core.load_scan(first.workspace) is not None  # the rescan saved a whole scan again


def test_a_files_signals_do_not_depend_on_the_files_read_beside_it(tmp_path):
    """Found by the cluster engine's 20,000-file comparison: a file alone of its shape in a chunk got hashes that
    differed in the last bit from the same file read among others of its shape (OpenBLAS's one-image kernel).
    Real photo crops at sizes where the kernels differ; each file read alone must equal it read in a stack."""
    from skimage import data

    from inspect_core import filescan
    photo = np.asarray(data.astronaut())
    rng = np.random.default_rng(7)
    names = []
    for k in range(12):
        r0, c0 = (int(v) for v in rng.integers(0, 20, 2))
        Image.fromarray(photo[r0:r0 + 480, c0:c0 + 460]).save(tmp_path / f"{k}.png")
        names.append(f"{k}.png")
    stack = np.stack([np.asarray(Image.open(tmp_path / n).convert("L"), np.float32) for n in names])
    rows_m, cols_m = filescan.resize_matrix(32, stack.shape[1]), filescan.resize_matrix(32, stack.shape[2])
    in_stack = filescan.sandwich(stack, rows_m, cols_m)
    for k in range(len(stack)):      # the 32x32 grey every hash and descriptor is made from: bit for bit
        assert np.array_equal(filescan.sandwich(stack[k:k + 1], rows_m, cols_m)[0], in_stack[k]), names[k]
    together = filescan.scan_chunk(str(tmp_path), names)
    for k, name in enumerate(names):
        alone = filescan.scan_chunk(str(tmp_path), [name])
        for column in ("phash", "dhash", "brightness", "blur_laplacian_var"):
            assert alone[column][0] == together[column][k], (name, column)
        assert np.array_equal(alone["desc"][0], together["desc"][k]), name


def test_a_saved_scan_is_not_reused_after_the_cluster_or_storage_code_changed(monkeypatch):
    """The cluster's duplicate steps and the storage reader decide findings too: a change there is new code."""
    from inspect_core import scanner
    before = scanner._code_version()
    real_read = Path.read_bytes
    for name in ("cluster/dups.py", "storage.py"):
        def edited(self, name=name):
            data = real_read(self)
            return data + b"\n# edited\n" if self.as_posix().endswith("inspect_core/" + name) else data
        monkeypatch.setattr(Path, "read_bytes", edited)
        assert scanner._code_version() != before, name
        monkeypatch.setattr(Path, "read_bytes", real_read)


def test_a_workspace_never_scanned_has_no_scan_and_logs_no_warning(tmp_path, caplog):
    """No saved scan yet is the normal first state, not a damaged scan: load_scan says None without a warning
    (it used to log "ignoring unreadable saved scan ... dataset.json"); a half-written one still warns."""
    import logging
    with caplog.at_level(logging.WARNING, logger="inspect_core"):
        assert inspect_core.load_scan(tmp_path / "ws_empty") is None
        (tmp_path / "ws_empty").mkdir()
        assert inspect_core.load_scan(tmp_path / "ws_empty") is None
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    from inspect_core.scanner import SCAN_DIR
    (tmp_path / "ws_half" / SCAN_DIR).mkdir(parents=True)
    (tmp_path / "ws_half" / SCAN_DIR / "summary.json").write_text("{}")
    with caplog.at_level(logging.WARNING, logger="inspect_core"):
        assert inspect_core.load_scan(tmp_path / "ws_half") is None
    assert "ignoring unreadable saved scan" in caplog.text
