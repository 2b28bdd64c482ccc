"""Hostile input (issue 14): every case ends in a finding or a one-line error with the documented exit code
(0 clean, 1 --fail-on tripped, 2 usage or input error, 3 internal error), within a memory cap
(``hostile_support.MEMORY_CAP_BYTES``, RLIMIT_AS on a child process), and nothing outside the dataset root,
the workspace and the output folder is opened.

Each case stands for a class: a tiny file that asks for a huge allocation, a path that is not a regular file,
a number beyond 64 bits, nesting without end, a value of the wrong type, a name that collides, a cell a
spreadsheet would run, a file over the cap, one bad entry among good ones, a damaged or read-only store.
"""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pandas as pd
import pytest

from hostile_support import run_case, run_cli_case


def _images(folder: Path, textured, n: int = 3, prefix: str = "i") -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for k in range(n):
        textured(k + 100 * len(prefix), (48, 40)).save(folder / f"{prefix}{k}.jpg", quality=90)
        names.append(f"{prefix}{k}.jpg")
    return names


@pytest.fixture()
def place(tmp_path):
    """root (the dataset), out (the report), ws (the workspace base) and a secret folder beside the root that
    hostile entries point at and that must never be opened."""
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "s.jpg").write_bytes(b"secret")
    return {"root": tmp_path / "ds", "out": tmp_path / "out", "ws": tmp_path / "ws", "secret": secret,
            "tmp": tmp_path}


def scan_case(place, *extra, **kw):
    case = run_cli_case(["scan", place["root"], "--out", place["out"], "--workspace", place["ws"], "--workers", "1",
                         *extra], place["tmp"], **kw)
    assert not case.opened_outside(place["tmp"], [place["root"], place["out"], place["ws"]]), case.opened
    return case


def findings(place) -> pd.DataFrame:
    return pd.read_parquet(place["out"] / "findings.parquet")


def finding_of(place, check: str, needle: str = "") -> pd.DataFrame:
    f = findings(place)
    hit = f[(f["check"] == check) & f["detail"].str.contains(needle, regex=False)]
    assert len(hit), f[["image_id", "check", "detail"]].to_string()
    return hit


def yolo(place, textured, label_lines: str, data_yaml: str | None = None) -> Path:
    root = place["root"]
    _images(root / "images", textured, 2)
    (root / "labels").mkdir(parents=True)
    (root / "labels" / "i0.txt").write_text(label_lines)
    (root / "labels" / "i1.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    if data_yaml is not None:
        (root / "data.yaml").write_text(data_yaml)
    return root


def coco(place, textured, images=None, annotations=None, text: str | None = None) -> Path:
    root = place["root"]
    _images(root / "images", textured, 3)
    if images is None:
        images = [{"id": k, "file_name": f"i{k}.jpg"} for k in range(3)]
    body = text if text is not None else json.dumps(
        {"images": images, "annotations": annotations or [], "categories": [{"id": 1, "name": "t"}]})
    (root / "annotations.json").write_text(body)
    return root


# ------------------------------------------------------------------ 2. memory from tiny files

@pytest.mark.parametrize("yaml", ["names: {999999999: a}\n", "names:\n  0: a\n  999999999: b\n"])
def test_a_huge_class_index_in_data_yaml_is_a_finding_not_a_huge_list(place, textured, yaml):
    yolo(place, textured, "0 0.5 0.5 0.2 0.2\n", yaml)
    case = scan_case(place)
    assert case.rc == 0, case.stderr
    finding_of(place, "unknown_label", "max_class_index")


def test_thousands_of_identical_boxes_on_one_image_are_duplicates_in_bounded_memory(place, textured):
    yolo(place, textured, "0 0.5 0.5 0.2 0.2\n" * 20_000)
    case = scan_case(place)
    assert case.rc == 0, case.stderr
    dup = finding_of(place, "box_duplicate")
    assert dup["image_id"].tolist() == ["images/i0.jpg"]


def test_densely_packed_boxes_leave_the_image_unchecked_with_a_finding(place, textured):
    lines = "".join(f"0 {0.5 + k * 1e-7:.9f} 0.5 0.2 0.2\n" for k in range(3000))
    yolo(place, textured, lines)
    case = scan_case(place, "--limit", "max_box_pairs_per_image=10000")
    assert case.rc == 0, case.stderr
    finding_of(place, "too_many_boxes", "max_box_pairs_per_image")


def test_more_boxes_than_the_cap_are_cut_with_a_finding(place, textured):
    yolo(place, textured, "".join(f"0 0.{k:04d} 0.5 0.01 0.01\n" for k in range(150)))
    case = scan_case(place, "--limit", "max_boxes_per_image=100")
    assert case.rc == 0, case.stderr
    finding_of(place, "too_many_boxes", "max_boxes_per_image")
    assert int(pd.read_parquet(place["out"] / "images.parquet").set_index("image_id").loc["images/i0.jpg",
                                                                                            "n_boxes"]) == 100


# ------------------------------------------------------------------ 3. paths the CLI reads: regular files, capped

@pytest.mark.parametrize("option", ["--manifest", "--boxes"])
def test_an_input_that_is_a_pipe_or_device_is_a_one_line_error(place, textured, option):
    _images(place["root"], textured, 2)
    fifo = place["tmp"] / "pipe.csv"
    os.mkfifo(fifo)
    fmt = ["--format", "csv"] if option == "--manifest" else []
    for path in (fifo, Path("/dev/zero")):
        case = scan_case(place, option, path, *fmt)
        assert "not a regular file" in case.one_line_error(2)


def test_an_input_over_its_cap_is_a_one_line_error_naming_the_cap(place, textured):
    _images(place["root"], textured, 2)
    manifest = place["tmp"] / "m.csv"
    manifest.write_text("path,label\ni0.jpg,a\ni1.jpg,b\n")
    line = scan_case(place, "--manifest", manifest, "--limit", "max_table_bytes=10").one_line_error(2)
    assert "max_table_bytes" in line and "--limit" in line


def test_score_refuses_predictions_preprocess_and_order_files_that_are_not_regular(place, textured):
    _images(place["root"] / "a", textured, 2)
    fifo = place["tmp"] / "pipe.csv"
    os.mkfifo(fifo)
    base = ["score", place["root"], "--out", place["out"]]
    for extra in (["--predictions", fifo], ["--predictions", "/dev/zero"],
                  ["--predictions", place["tmp"] / "p.npy", "--predictions-order", fifo]):
        np_file = place["tmp"] / "p.npy"
        np_file.write_bytes(b"")
        case = run_cli_case(base + extra, place["tmp"])
        assert "not a regular file" in case.one_line_error(2)


# ------------------------------------------------------------------ 4. tracebacks become findings or one line

def test_coco_numbers_beyond_64_bits_and_not_finite_are_box_findings(place, textured):
    big = "123456789012345678901234567890"
    text = ('{"images": [{"id": 0, "file_name": "i0.jpg"}, {"id": 1, "file_name": "i1.jpg"}, '
            f'{{"id": {big}, "file_name": "i2.jpg"}}], "categories": [{{"id": 1, "name": "t"}}], '
            '"annotations": [{"id": 1, "image_id": 0, "category_id": 1, "bbox": [1e400, 2, 3, 4]}, '
            f'{{"id": {big}, "image_id": 1, "category_id": {big}, "bbox": [{big}, 2, 3, 4]}}, '
            '{"id": 3, "image_id": 1, "category_id": 1, "bbox": [NaN, 2, 3, 4]}, '
            '{"id": 4, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]}]}')
    coco(place, textured, text=text)
    case = scan_case(place)
    assert case.rc == 0, case.stderr
    bad = findings(place)
    malformed = bad[bad["check"] == "box_malformed"]
    assert {"images/i0.jpg", "images/i1.jpg"} <= set(malformed["image_id"])
    assert malformed["detail"].str.contains("odd id|finite", regex=True).all()


def test_json_nested_without_end_is_a_one_line_error(place, textured):
    coco(place, textured, text='{"images": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert "max_json_depth" in scan_case(place, "--format", "coco").one_line_error(2)


@pytest.mark.parametrize("cls", ["1e30", "1.7", "-1", "nan", "cat"])
def test_a_yolo_class_that_is_not_a_small_whole_number_is_malformed(place, textured, cls):
    yolo(place, textured, f"{cls} 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.3 0.3\n", "names: [a, b]\n")
    case = scan_case(place)
    assert case.rc == 0, case.stderr
    finding_of(place, "box_malformed", "line 1")
    ann = pd.read_parquet(place["out"] / "annotations.parquet")
    assert ann["category_id"].tolist() == [0, 0]      # the good line of i0 and the line of i1


def test_text_in_a_predictions_class_column_is_a_one_line_error(place, textured):
    _images(place["root"] / "a", textured, 2)
    _images(place["root"] / "b", textured, 1, prefix="j")
    preds = place["tmp"] / "p.csv"
    preds.write_text("image_id,a,b\na/i0.jpg,0.9,0.1\na/i1.jpg,lots,0.2\nb/j0.jpg,0.3,0.7\n")
    line = run_cli_case(["score", place["root"], "--predictions", preds, "--out", place["out"]],
                        place["tmp"]).one_line_error(2)
    assert "row 3" in line and "lots" in line and "not a number" in line


def test_a_saved_summary_that_is_not_an_object_is_ignored(place, textured):
    _images(place["root"] / "a", textured, 2)
    assert scan_case(place).rc == 0
    [summary] = list(place["ws"].glob("*/scan/summary.json"))
    summary.write_text("[1, 2, 3]")
    case = scan_case(place)
    assert case.rc == 0, case.stderr
    assert json.loads((place["out"] / "summary.json").read_text())["n_images"] == 2


def test_an_internal_error_exits_3_with_one_line_and_the_traceback_in_a_log(place, textured):
    _images(place["root"] / "a", textured, 2)
    code = f"""
import inspect_core.scanner as s
def boom(*a, **k):
    raise RuntimeError("planted bug")
s.run_checks = boom
rc = cli_main(["scan", {str(place['root'])!r}, "--workspace", {str(place['ws'])!r}])
"""
    line = run_case(code, place["tmp"]).one_line_error(3)
    assert "internal error" in line and "planted bug" in line
    log = Path(line.split("the traceback is in ")[1].split()[0])
    assert "Traceback" in log.read_text() and "planted bug" in log.read_text()
    log.unlink()
    debug = run_case(code.replace('"--workspace"', '"--debug", "--workspace"'), place["tmp"])
    assert debug.rc == 3 and "Traceback" in debug.stderr


def test_fail_on_is_1_and_bad_input_is_2(place, textured):
    _images(place["root"] / "a", textured, 2)
    (place["root"] / "a" / "bad.jpg").write_bytes(b"not an image")
    assert scan_case(place, "--fail-on", "unreadable").rc == 1
    assert scan_case(place, "--limit", "max_file_bytes=lots").one_line_error(2)
    assert scan_case(place, "--limit", "no_such_cap=3").one_line_error(2)


# ------------------------------------------------------------------ 5. metadata never collides with scan columns

def test_manifest_columns_named_like_scan_columns_go_to_their_own_namespace(place, textured):
    names = _images(place["root"], textured, 3)
    clash = ["format", "mode", "brightness", "width_px", "content_hash", "n_boxes", "is_blurry", "meta_format"]
    rows = [",".join(["path", "label"] + clash)]
    rows += [",".join([n, "a", "fmt", "m", "bright", "wide", "hash", "7", "yes", "taken"]) for n in names]
    (place["root"] / "manifest.csv").write_text("\n".join(rows) + "\n")
    case = scan_case(place)
    assert case.rc == 0, case.stderr
    assert "renamed" in case.stdout and "format -> meta_format_2" in case.stdout
    img = pd.read_parquet(place["out"] / "images.parquet").set_index("image_id")
    row = img.loc["i0.jpg"]
    assert row["format"] == "JPEG" and row["mode"] == "RGB" and row["width_px"] == 48 and row["n_boxes"] == 0
    assert row["meta_format_2"] == "fmt" and row["meta_format"] == "taken" and row["meta_brightness"] == "bright"
    assert row["meta_n_boxes"] == "7" and row["meta_is_blurry"] == "yes" and row["meta_content_hash"] == "hash"
    assert not row["is_blurry"] and 0 <= row["brightness"] <= 1


# ------------------------------------------------------------------ 6a. exports a spreadsheet opens as data

def test_exports_neutralise_formulas_and_keep_newlines_inside_cells(place, tmp_path):
    out = tmp_path / "export"
    notes = ["=HYPERLINK(\"http://x\")", "+1+1", "-2+3", "@SUM(A1)", "\tTAB", "\rCR", "a\rb\nc", "plain, \"quoted\""]
    code = f"""
import pandas as pd
from inspect_core.export import write_exports
from inspect_core.review import ReviewStore
notes = {notes!r}
store = ReviewStore({str(tmp_path / 'wsx')!r})
for k, note in enumerate(notes):
    store.decide(f"=img{{k}}.jpg", "relabel", old_label="-a", new_label="@b", note=note)
images = pd.DataFrame({{"image_id": [f"=img{{k}}.jpg" for k in range(len(notes))], "label": "-a",
                        "split": "+train", "source": notes}})
write_exports({str(out)!r}, {str(tmp_path / 'data')!r}, images, store.current())
rc = 0
"""
    case = run_case(code, tmp_path)
    assert case.rc == 0, case.stderr
    for name in ("relabels.csv", "cleaned_manifest.csv"):
        with open(out / name, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
        assert len(rows) == len(notes) + 1, rows
        for row in rows:
            for cell in row:
                assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), (name, cell)
        body = rows[1:]
        column = rows[0].index("note" if name == "relabels.csv" else "source")
        assert sorted(r[column] for r in body) == sorted("'" + n if n[0] in "=+-@\t\r" else n for n in notes)


def test_a_cleaned_manifest_reads_back_as_the_same_manifest(place, textured):
    names = _images(place["root"], textured, 2, prefix="-x")
    (place["root"] / "manifest.csv").write_text("path,label\n" + "".join(f"{n},=lab\n" for n in names))
    code = f"""
from inspect_core.export import manifest_csv_bytes, cleaned_manifest
from inspect_core.loaders import load_dataset
ds = load_dataset({str(place['root'])!r})
again = {str(place['tmp'] / 'again.csv')!r}
open(again, "wb").write(manifest_csv_bytes(cleaned_manifest(ds.images, None)))
ds2 = load_dataset({str(place['root'])!r}, format="csv", manifest=again)
assert ds2.images[["image_id", "label"]].values.tolist() == ds.images[["image_id", "label"]].values.tolist()
assert ds.images["label"].tolist() == ["=lab", "=lab"]
rc = 0
"""
    case = run_case(code, place["tmp"])
    assert case.rc == 0, case.stderr


# ------------------------------------------------------------------ 8. one huge file never stops the scan

def test_a_file_over_the_size_cap_is_a_finding_and_the_others_are_scanned(place, textured):
    _images(place["root"] / "a", textured, 2)
    with open(place["root"] / "a" / "huge.jpg", "wb") as fh:      # sparse: 3 GiB on paper, nothing on disk
        fh.truncate(3 << 30)
    case = scan_case(place)
    assert case.rc == 0, case.stderr
    hit = finding_of(place, "file_too_large", "max_file_bytes")
    assert hit["image_id"].tolist() == ["a/huge.jpg"] and "--limit" in hit["detail"].iloc[0]
    img = pd.read_parquet(place["out"] / "images.parquet").set_index("image_id")
    assert img.loc["a/i0.jpg", "width_px"] == 48
    # a lower cap, given on the command line, applies to the next scan at once (the cache knows the cap)
    scan_case(place, "--limit", "max_file_bytes=100")
    assert len(finding_of(place, "file_too_large")) == 3


# ------------------------------------------------------------------ 9. one bad entry never stops the load

def test_bad_manifest_rows_are_findings_naming_the_row_and_the_rest_is_scanned(place, textured):
    names = _images(place["root"], textured, 2)
    long_name = "x" * 5000 + ".jpg"
    (place["root"] / "manifest.csv").write_text(
        f"path,label\n{names[0]},a\nbad\0name.jpg,a\n{long_name},b\n../secret/s.jpg,a\n{names[1]},b\n")
    case = scan_case(place)
    assert case.rc == 0, case.stderr
    f = findings(place)
    assert "row 3" in " ".join(f.loc[f["image_id"] == "<row 3>", "detail"])
    assert "5,004 characters" in " ".join(f.loc[f["image_id"] == "<row 4>", "detail"])
    assert f.loc[f["check"] == "path_outside_root", "image_id"].tolist() == ["../secret/s.jpg"]
    img = pd.read_parquet(place["out"] / "images.parquet")
    assert img.loc[img["error_kind"].isna(), "image_id"].tolist() == names


def test_coco_duplicate_image_ids_and_bad_file_names_are_findings(place, textured):
    images = [{"id": 0, "file_name": "i0.jpg"}, {"id": 0, "file_name": "i1.jpg"},
              {"id": 2, "file_name": "y" * 5000 + ".jpg"}, {"id": 3, "file_name": "a\x00b.jpg"},
              {"id": 4, "file_name": "i2.jpg"}]
    coco(place, textured, images=images,
         annotations=[{"id": 1, "image_id": 4, "category_id": 1, "bbox": [1, 1, 5, 5]}])
    case = scan_case(place)
    assert case.rc == 0, case.stderr
    details = " ".join(findings(place)["detail"])
    assert "repeats image id 0" in details and "max_path_chars" in details and "control character" in details


def test_an_unreadable_sub_folder_is_a_finding(place, textured):
    _images(place["root"] / "a", textured, 2)
    _images(place["root"] / "locked", textured, 2)
    code = f"""
import os
real = os.scandir
def scandir(path="."):
    if os.fspath(path).endswith("locked"):
        raise PermissionError(13, "Permission denied", os.fspath(path))
    return real(path)
os.scandir = scandir
rc = cli_main(["scan", {str(place['root'])!r}, "--out", {str(place['out'])!r}, "--workspace", {str(place['ws'])!r}])
"""
    case = run_case(code, place["tmp"])
    assert case.rc == 0, case.stderr
    hit = finding_of(place, "unreadable", "locked")
    assert hit["image_id"].tolist() == ["locked/"] and "Permission denied" in hit["detail"].iloc[0]


def test_a_damaged_review_store_names_the_file_and_what_to_do(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "review.sqlite").write_bytes(b"this is not a database" * 200)
    code = f"""
from inspect_core.review import ReviewStore, ReviewStoreError
try:
    ReviewStore({str(ws)!r})
    rc = 1
except ReviewStoreError as exc:
    print(exc)
    rc = 0
"""
    case = run_case(code, tmp_path)
    assert case.rc == 0, case.stdout + case.stderr
    assert str(ws / "review.sqlite") in case.stdout and "keep a copy" in case.stdout


def test_a_read_only_workspace_can_be_opened_to_read_decisions(tmp_path):
    ws = tmp_path / "ws"
    code = f"""
import os, sqlite3
from inspect_core.review import ReviewStore, ReviewStoreError
ReviewStore({str(ws)!r}).decide("a.jpg", "relabel", new_label="cat")
os.chmod({str(ws)!r}, 0o555)
os.chmod({str(ws / 'review.sqlite')!r}, 0o444)
if os.geteuid() == 0:   # root writes anyway: make the workspace read-only as SQLite sees it
    def read_only(self):
        raise sqlite3.OperationalError("attempt to write a readonly database")
    ReviewStore._create = read_only
store = ReviewStore({str(ws)!r})
assert store.read_only and store.current()["new_label"].tolist() == ["cat"]
try:
    store.decide("b.jpg", "keep")
    rc = 1
except ReviewStoreError as exc:
    assert "read-only" in str(exc), exc
    rc = 0
"""
    try:
        case = run_case(code, tmp_path)
    finally:
        os.chmod(ws, 0o755)
    assert case.rc == 0, case.stdout + case.stderr


def test_names_with_terminal_escapes_are_printed_escaped(place, textured):
    _images(place["root"] / "a", textured, 2)
    evil = "a/\x1b[2J\x1b]0;pwned\x07i0.jpg"
    (place["root"] / "a" / "i0.jpg").rename(place["root"] / evil)
    preds = place["tmp"] / "p.csv"
    with open(preds, "w", newline="") as fh:
        csv.writer(fh).writerows([["image_id", "a", "b"], [evil, 0.1, 0.9], ["a/i1.jpg", 0.8, 0.2]])
    case = run_cli_case(["score", place["root"], "--predictions", preds, "--out", place["out"]], place["tmp"])
    assert case.rc == 0, case.stderr
    assert "\x1b" not in case.stdout and "\x07" not in case.stdout and "\\x1b[2J" in case.stdout
    missing = run_cli_case(["scan", place["tmp"] / "no\x1b[31mroot"], place["tmp"])
    assert "\x1b" not in missing.stderr and "\\x1b[31m" in missing.one_line_error(2)


def test_an_npy_header_claiming_terabytes_is_a_one_line_error(place, textured):
    _images(place["root"] / "a", textured, 2)
    from numpy.lib import format as npy_format
    buf = io.BytesIO()
    npy_format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": (10**11, 2)})
    (place["tmp"] / "p.npy").write_bytes(buf.getvalue() + b"\0" * 64)
    case = run_cli_case(["score", place["root"], "--predictions", place["tmp"] / "p.npy", "--out", place["out"]],
                        place["tmp"])
    assert "not a plain numeric .npy array" in case.one_line_error(2)


def test_a_preprocess_json_nested_without_end_is_a_one_line_error(place, textured):
    _images(place["root"] / "a", textured, 2)
    (place["tmp"] / "pre.json").write_text("[" * 50_000 + "]" * 50_000)
    (place["tmp"] / "p.csv").write_text("image_id,a,b\na/i0.jpg,0.5,0.5\n")
    case = run_cli_case(["score", place["root"], "--predictions", place["tmp"] / "p.csv", "--preprocess",
                         place["tmp"] / "pre.json", "--out", place["out"]], place["tmp"])
    assert "max_json_depth" in case.one_line_error(2)
