"""``python -m inspect_core test``: exit 0 when nothing fails, 1 when a test fails, 2 for a usage error or an
invalid test file (naming the line and the field); JUnit and Markdown written; sample_data's test file passes on
the shipped model and fails on the regressed predictions."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest

from inspect_core.cli import main

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_data"


@pytest.fixture()
def tiny(tmp_path: Path, textured):
    """12 images (val/cat, val/dog, 6 each) and a predictions file: every cat right, 3 of 6 dogs right."""
    root = tmp_path / "data"
    ids = []
    for k in range(12):
        label = "cat" if k < 6 else "dog"
        p = root / "val" / label / f"{label}_{k}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        textured(k).save(p, quality=90)
        ids.append(f"val/{label}/{label}_{k}.jpg")
    right = [True] * 6 + [True, True, True, False, False, False]
    cat = [0.9 if (k < 6) == r else 0.1 for k, r in enumerate(right)]
    pd.DataFrame({"image_id": ids, "cat": cat, "dog": [1 - c for c in cat]}).to_csv(tmp_path / "pred.csv",
                                                                                    index=False)
    return root, tmp_path / "pred.csv"


SUITE = """\
slices:
  dogs: {where: {label: dog}}
tests:
  - {name: overall, metric: accuracy, min: 0.7, min_support: 5}
  - {name: dog recall, slice: dogs, metric: recall, class: dog, min: MIN, min_support: 5}
"""


def run(tmp_path, capsys, suite_text, root, *extra):
    suite = tmp_path / "suite.yaml"
    suite.write_text(suite_text)
    code = main(["test", str(suite), str(root), "--workspace", str(tmp_path / "ws"), *map(str, extra)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_exit_0_when_nothing_fails_and_1_when_a_test_fails(tiny, tmp_path, capsys):
    root, pred = tiny
    code, out, _ = run(tmp_path, capsys, SUITE.replace("MIN", "0.4"), root, "--predictions", pred)
    assert code == 0, out
    assert "dog recall" in out and "2 tests: 2 passed, 0 warned, 0 failed" in out
    junit, md = tmp_path / "out" / "junit.xml", tmp_path / "out" / "report.md"
    code, out, _ = run(tmp_path, capsys, SUITE.replace("MIN", "0.6"), root, "--predictions", pred,
                       "--junit", junit, "--markdown", md)
    assert code == 1
    assert "FAIL dog recall: value 0.5 outside >= 0.6" in out
    cases = ET.parse(junit).getroot().findall("./testsuite/testcase")
    assert [(c.get("name"), c.find("failure") is not None) for c in cases] == [("overall", False),
                                                                               ("dog recall", True)]
    assert "| dog recall | dogs | recall(class=dog) | 6 | 0.5 |" in md.read_text()


@pytest.mark.parametrize("text, words", [
    (SUITE.replace("metric: recall", "metric: recal").replace("MIN", "0.5"),
     "suite.yaml:5: field 'tests[1] (dog recall).metric': unknown metric 'recal'"),
    (SUITE.replace("MIN", "'half'"), "suite.yaml:5: field 'tests[1] (dog recall).min': must be a number"),
    ("tests: [\n", "suite.yaml:2: not valid YAML"),
])
def test_exit_2_for_an_invalid_test_file(tiny, tmp_path, capsys, text, words):
    root, pred = tiny
    code, out, err = run(tmp_path, capsys, text, root, "--predictions", pred)
    assert code == 2
    assert words in err and "Traceback" not in err + out


def test_exit_2_for_usage_errors(tiny, tmp_path, capsys):
    root, pred = tiny
    ok = SUITE.replace("MIN", "0.4")
    assert run(tmp_path, capsys, ok, root, "--predictions", tmp_path / "nope.csv")[0] == 2
    code, _, err = run(tmp_path, capsys, ok, tmp_path / "no_such_root", "--predictions", pred)
    assert code == 2 and "is not a folder" in err
    code, _, err = run(tmp_path, capsys, ok, root, "--predictions", pred, "--model", pred)
    assert code == 2 and "not both" in err


def test_data_tests_need_no_model(tiny, tmp_path, capsys):
    root, _ = tiny
    code, out, _ = run(tmp_path, capsys, "tests:\n  - {name: unreadable, metric: finding_count, check: unreadable, "
                       "max: 0}\n", root)
    assert code == 0 and "1 tests: 1 passed" in out


def test_sample_suite_fails_on_the_regressed_predictions(tmp_path, capsys):
    code = main(["test", str(SAMPLE / "model_tests.yaml"), str(SAMPLE), "--workspace", str(tmp_path / "ws"),
                 "--predictions", str(SAMPLE / "model" / "regressed_predictions.csv")])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL star recall:" in out and "FAIL held-out star recall:" in out
    assert "PASS" in out and "WARN rare class recall: only 6 images counted" in out


def test_sample_suite_passes_on_the_shipped_model(tmp_path, capsys):
    code = main(["test", str(SAMPLE / "model_tests.yaml"), str(SAMPLE), "--workspace", str(tmp_path / "ws"),
                 "--model", str(SAMPLE / "model" / "model.ts.pt"), "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert " failed" in out and ", 0 failed" in out


def test_baseline_compare_and_discover(tiny, tmp_path, capsys):
    root, pred = tiny
    base = pd.read_csv(pred)
    base["cat"] = [0.9] * 6 + [0.1] * 6                          # the baseline got every dog right
    base["dog"] = 1 - base["cat"]
    base.to_csv(tmp_path / "base.csv", index=False)
    suite = ("tests:\n  - {name: no drop, metric: accuracy, max_drop: 0.1, min_support: 5}\n")
    code, out, _ = run(tmp_path, capsys, suite, root, "--predictions", pred, "--baseline", tmp_path / "base.csv",
                       "--compare", "--discover")
    assert code == 1
    assert "FAIL no drop: dropped 0.25 from the baseline's 1" in out
    assert "3 images went right -> wrong, 0 wrong -> right" in out
    assert "right -> wrong  val/dog/dog_9.jpg  given dog: dog -> cat" in out
    assert "slice discovery: no slice significantly worse" in out          # 12 images: no slice of 30
    code, _, err = run(tmp_path, capsys, suite, root, "--predictions", pred, "--compare")
    assert code == 2 and "--compare needs --baseline" in err


def test_a_review_slice_reads_the_decisions_of_the_store(tiny, tmp_path, capsys):
    from inspect_core.review import ReviewStore
    from inspect_core.workspace import workspace_dir
    root, pred = tiny
    store = ReviewStore(workspace_dir(root, base=tmp_path / "ws"))
    store.decide("val/dog/dog_9.jpg", "relabel", old_label="dog", new_label="cat")
    store.decide("val/dog/dog_6.jpg", "relabel", old_label="dog", new_label="cat")
    store.decide("val/cat/cat_0.jpg", "keep")
    suite = ("slices:\n  relabelled: {review: relabel}\ntests:\n"
             "  - {name: relabelled right, slice: relabelled, metric: accuracy, min: 0.4, min_support: 2}\n")
    code, out, _ = run(tmp_path, capsys, suite, root, "--predictions", pred)
    # dog_6 is right, dog_9 wrong (the fixture's predictions): 1 of 2
    assert code == 0 and re.search(r"relabelled right\s+relabelled\s+accuracy\s+2\s+0\.5\s", out), out
