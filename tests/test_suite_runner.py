"""inspect_core.suite.runner and report: statuses decided by hand-worked values; a slice below min_support is
WARN; decide_on, severity and max_drop; the JUnit XML parses and holds one case per test."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd

from inspect_core.suite import report
from inspect_core.suite.metrics import ScoreArrays
from inspect_core.suite.runner import run_suite
from inspect_core.suite.slices import SliceData
from inspect_core.suite.spec import parse_suite


def scores(labels, preds, names=("a", "b")):
    labels, preds = np.asarray(labels), np.asarray(preds)
    probs = np.full((len(labels), len(names)), 0.2)
    probs[np.arange(len(labels)), preds] = 0.8
    loss = -np.log(probs[np.arange(len(labels)), labels])
    return ScoreArrays(list(names), labels, preds, probs, loss)


# 40 images: the first 30 ("big") 27 right (0.9); the last 10 ("small") 6 right (0.6)
N = 40
IMAGES = pd.DataFrame({"image_id": [f"i{k:02d}" for k in range(N)], "group": ["big"] * 30 + ["small"] * 10})
LABELS = np.zeros(N, dtype=int)
PREDS = np.zeros(N, dtype=int)
PREDS[[0, 1, 2, 30, 31, 32, 33]] = 1
CURRENT = scores(LABELS, PREDS)


def run(tests: str, baseline=None, current=CURRENT):
    suite = parse_suite("slices:\n  big: {where: {group: big}}\n  small: {where: {group: small}}\n"
                        "  typo: {where: {grup: big}}\ntests:\n" + tests)
    return run_suite(suite, SliceData(IMAGES), current, baseline).results.set_index("test")


def test_values_thresholds_and_statuses():
    r = run("  - {name: ok, slice: big, metric: accuracy, min: 0.85}\n"
            "  - {name: low, slice: big, metric: accuracy, min: 0.95}\n"
            "  - {name: small, slice: small, metric: accuracy, min: 0.5}\n"
            "  - {name: small enough, slice: small, metric: accuracy, min: 0.5, min_support: 10}\n"
            "  - {name: soft, slice: big, metric: accuracy, min: 0.95, severity: warn}\n"
            "  - {name: loss, metric: mean_loss, max: 0.1}\n")
    assert r.loc["ok", "value"] == 0.9 and r.loc["ok", "n"] == 30 and r.loc["ok", "status"] == "PASS"
    assert r.loc["low", "status"] == "FAIL" and "outside >= 0.95" in r.loc["low", "reason"]
    # 10 images < the default min_support 30: WARN, whatever the value
    assert r.loc["small", "status"] == "WARN" and "below min_support 30" in r.loc["small", "reason"]
    assert r.loc["small enough", "status"] == "PASS"
    assert r.loc["soft", "status"] == "WARN" and "severity warn" in r.loc["soft", "reason"]
    expected_loss = (33 * -np.log(0.8) + 7 * -np.log(0.2)) / 40
    assert r.loc["loss", "value"] == expected_loss and r.loc["loss", "status"] == "FAIL"


def test_decide_on_the_interval():
    # 27/30 = 0.9; Wilson 95% interval about [0.74, 0.97]
    r = run("  - {name: value, slice: big, metric: accuracy, min: 0.92}\n"
            "  - {name: lenient, slice: big, metric: accuracy, min: 0.92, decide_on: interval}\n"
            "  - {name: lenient far, slice: big, metric: accuracy, min: 0.99, decide_on: interval}\n"
            "  - {name: strict, slice: big, metric: accuracy, min: 0.85, decide_on: strict}\n"
            "  - {name: strict low, slice: big, metric: accuracy, min: 0.7, decide_on: strict}\n")
    assert 0.73 < r.loc["value", "low"] < 0.75 and 0.96 < r.loc["value", "high"] < 0.98
    assert r.loc["value", "status"] == "FAIL"
    assert r.loc["lenient", "status"] == "WARN" and "inconclusive" in r.loc["lenient", "reason"]
    assert r.loc["lenient far", "status"] == "FAIL"
    assert r.loc["strict", "status"] == "FAIL"
    assert r.loc["strict low", "status"] == "PASS"


def test_max_drop_against_a_baseline():
    base_preds = np.zeros(N, dtype=int)                  # the baseline was right everywhere: 1.0
    tests = ("  - {name: drop, slice: big, metric: accuracy, max_drop: 0.05}\n"
             "  - {name: drop ok, slice: big, metric: accuracy, max_drop: 0.15}\n"
             "  - {name: loss rise, slice: big, metric: mean_loss, max_drop: 0.01}\n")
    r = run(tests, baseline=scores(LABELS, base_preds))
    assert r.loc["drop", "baseline"] == 1.0 and r.loc["drop", "status"] == "FAIL"
    assert "dropped 0.1 from the baseline's 1" in r.loc["drop", "reason"]
    assert r.loc["drop ok", "status"] == "PASS"
    assert r.loc["loss rise", "status"] == "FAIL"            # loss went up: a drop for a lower-is-better metric
    r = run(tests)
    assert (r["status"] == "WARN").all() and "needs a baseline" in r.loc["drop", "reason"]


def test_problems_are_failures_that_name_what_to_fix():
    r = run("  - {name: typo, slice: typo, metric: accuracy, min: 0.5}\n"
            "  - {name: class, metric: recall, class: zebra, min: 0.5}\n")
    assert r.loc["typo", "status"] == "FAIL" and "column 'grup'" in r.loc["typo", "reason"]
    assert r.loc["class", "status"] == "FAIL" and "'zebra'" in r.loc["class", "reason"]
    r = run("  - {name: acc, metric: accuracy, min: 0.5}\n", current=None)
    assert r.loc["acc", "status"] == "FAIL" and "--model" in r.loc["acc", "reason"]


def test_junit_markdown_and_text():
    results = run("  - {name: ok, slice: big, metric: accuracy, min: 0.85}\n"
                  "  - {name: low, slice: big, metric: accuracy, min: 0.95}\n"
                  "  - {name: small, slice: small, metric: accuracy, min: 0.5}\n").reset_index()
    root = ET.fromstring(report.junit_xml(results, "suite"))
    cases = root.findall("./testsuite/testcase")
    assert [c.get("name") for c in cases] == ["ok", "low", "small"]
    assert [c.find("failure") is not None for c in cases] == [False, True, False]
    assert cases[2].find("skipped").get("message").startswith("WARN: only 10 images")
    ts = root.find("testsuite")
    assert (ts.get("tests"), ts.get("failures"), ts.get("skipped")) == ("3", "1", "1")
    md = report.markdown(results)
    assert md.splitlines()[0] == "### Model tests: 3 tests: 1 passed, 1 warned, 1 failed"
    assert "| low | big | accuracy | 30 | 0.9 | [0.744, 0.965] | >= 0.95 | **FAIL** |" in md
    text = report.text_table(results)
    assert "FAIL low: value 0.9 outside >= 0.95" in text and text.endswith("1 passed, 1 warned, 1 failed")
