"""inspect_core.suite.spec: the test file parses into slices and tests; an invalid file is a SuiteError that names
the line and the field."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from inspect_core.suite.spec import SuiteError, load_suite, parse_suite

GOOD = """\
defaults: {min_support: 5}
slices:
  dark: {lowest: {column: brightness, share: 0.05}}
  cats: {where: {label: cat}}
  dark_cats: {all_of: [dark, cats]}
tests:
  - name: cat recall
    slice: cats
    metric: recall
    class: cat
    min: 0.9
  - {name: inline, slice: {where: {split: val}}, metric: accuracy, min: 0.5, severity: warn}
"""


def test_a_good_file():
    s = parse_suite(GOOD, "t.yaml")
    assert set(s.slices) == {"dark", "cats", "dark_cats", "inline (slice)"}
    assert s.defaults["min_support"] == 5 and s.defaults["confidence"] == 0.95
    t0, t1 = s.tests
    assert (t0.name, t0.slice, t0.metric, t0.params, t0.min, t0.line) == ("cat recall", "cats", "recall",
                                                                          {"class": "cat"}, 0.9, 7)
    assert (t1.slice, t1.severity) == ("inline (slice)", "warn")
    assert s.slices["inline (slice)"].spec == {"where": {"split": "val"}}


@pytest.mark.parametrize("text, line, field, words", [
    (GOOD.replace("metric: recall", "metric: recal"), 9, "tests[0] (cat recall).metric", "unknown metric 'recal'"),
    (GOOD.replace("    class: cat\n", ""), 7, "tests[0] (cat recall).class", "needs 'class'"),
    (GOOD.replace("slice: cats", "slice: dogs"), 8, "tests[0] (cat recall).slice", "unknown slice 'dogs'"),
    (GOOD.replace("min: 0.9", "min: high"), 11, "tests[0] (cat recall).min", "must be a number"),
    (GOOD.replace("share: 0.05", "share: 5"), 3, "slices.dark.lowest.share", "(0, 1]"),
    (GOOD.replace("all_of: [dark, cats]", "all_of: [dark, dogs]"), 5, "slices.dark_cats.all_of", "unknown slice"),
    (GOOD.replace("severity: warn", "severity: loud"), 12, "tests[1] (inline).severity", "fail, warn"),
    (GOOD.replace("    min: 0.9\n", ""), 7, "tests[0] (cat recall).min", "give a threshold"),
    (GOOD.replace("{min_support: 5}", "{min_suport: 5}"), 1, "defaults.min_suport", "unknown default"),
    (GOOD.replace("  cats: {where", "  cats: {wher"), 4, "slices.cats.wher", "unknown slice key"),
    (GOOD + "  - {name: inline, metric: accuracy, min: 0.1}\n", 13, "tests (inline).name", "two tests"),
])
def test_errors_name_the_line_and_the_field(text, line, field, words):
    with pytest.raises(SuiteError) as err:
        parse_suite(text, "t.yaml")
    msg = str(err.value)
    assert msg.startswith(f"t.yaml:{line}: field '{field}'"), msg
    assert words in msg


def test_not_yaml_and_cycles_and_missing_files(tmp_path: Path):
    with pytest.raises(SuiteError, match=r"t.yaml:3: not valid YAML: .*line 2"):
        parse_suite("tests:\n  - [unclosed\n", "t.yaml")
    cyc = "slices:\n  a: {all_of: [b]}\n  b: {any_of: [a]}\ntests:\n  - {name: x, slice: a, metric: accuracy, min: 1}\n"
    with pytest.raises(SuiteError, match="cycle: a -> b -> a"):
        parse_suite(cyc, "t.yaml")
    with pytest.raises(SuiteError, match="ids.txt not found"):
        parse_suite("slices:\n  h: {ids_file: ids.txt}\ntests:\n  - {name: x, slice: h, metric: accuracy, min: 1}\n",
                    tmp_path / "t.yaml")
    with pytest.raises(SuiteError, match="not found"):
        load_suite(tmp_path / "none.yaml")
    with pytest.raises(SuiteError, match=r"t.yaml:3: not valid YAML: field 'min' given twice .*line 2"):
        parse_suite("tests:\n  - {name: a, metric: accuracy, min: 0.9,\n     min: 0.1}\n", "t.yaml")
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00tests")
    with pytest.raises(SuiteError, match="bin.yaml is not UTF-8 text"):
        load_suite(tmp_path / "bin.yaml")
    for bad in ("[1, 2]\n", "tests: []\n", "tests:\n  - just text\n", "slices: 3\ntests: [{name: a}]\n"):
        with pytest.raises(SuiteError, match=r"t.yaml:\d+: field"):
            parse_suite(bad, "t.yaml")


def test_the_sample_test_file_parses():
    s = load_suite(Path(__file__).resolve().parents[1] / "sample_data" / "model_tests.yaml")
    assert len(s.tests) >= 10
    assert {t.metric for t in s.tests} >= {"accuracy", "top_k_accuracy", "mean_loss", "recall", "precision", "f1",
                                           "ece", "finding_count", "finding_share"}


def test_the_readme_documents_every_metric_slice_key_test_field_and_default():
    from inspect_core.suite.spec import DEFAULTS, METRICS, SLICE_KEYS, TEST_KEYS
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = text.split("## Model unit tests", 1)[1].split("\n## ", 1)[0]
    names = list(METRICS) + list(SLICE_KEYS) + sorted(TEST_KEYS) + list(DEFAULTS)
    missing = [n for n in names if not re.search(rf"\b{re.escape(n)}\b", section)]
    assert not missing, f"not in README.md's 'Model unit tests': {missing}"
    for code in ("0", "1", "2"):
        assert f"{code} " in section.split("**Exit codes**", 1)[1][:300]


def test_the_readme_example_parses(tmp_path: Path):
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = text.split("## Model unit tests", 1)[1].split("\n## ", 1)[0]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "hard_ids.txt").write_text("train/a.jpg\n")
    suite = parse_suite(example, tmp_path / "model_tests.yaml")
    assert len(suite.slices) >= 9 and len(suite.tests) == 5
    assert {t.metric for t in suite.tests} == {"accuracy", "recall", "finding_count"}
