"""The model test file: YAML parsed into a ``Suite`` of named slices and tests, validated with messages that name
the file, the line and the field (``SuiteError``).

Format (every key is described in the README, section "Model unit tests")::

    defaults: {confidence: 0.95, min_support: 30}      # optional; overrides DEFAULTS
    slices:
      hexagons: {where: {label: hexagon}}
      darkest: {lowest: {column: brightness, share: 0.05}}
      relabelled: {review: relabel}
      hard: {ids_file: hard_ids.txt}
      dark_hexagons: {all_of: [darkest, hexagons]}
    tests:
      - {name: hexagon recall, slice: all, metric: recall, class: hexagon, min: 0.8}
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

# Thresholds as data: a suite's ``defaults:`` mapping overrides any of them.
DEFAULTS = {
    "confidence": 0.95,        # two-sided level of every interval
    "min_support": 30,         # a slice with fewer counted images is WARN, not PASS
    "n_bootstrap": 1000,       # resamples for bootstrap intervals
    "bootstrap_max_n": 5000,   # mean loss over more images: a normal interval (the bootstrap would agree)
    "ece_bins": 15,            # equal-width confidence bins of the expected calibration error
    "seed": 0,                 # of the bootstrap
}

METRICS = {
    # name: (higher is better, parameters it takes, parameters it requires)
    "accuracy": (True, set(), set()),
    "top_k_accuracy": (True, {"k"}, {"k"}),
    "mean_loss": (False, set(), set()),
    "recall": (True, {"class"}, {"class"}),
    "precision": (True, {"class"}, {"class"}),
    "f1": (True, {"class"}, {"class"}),
    "ece": (False, {"bins"}, set()),
    "finding_count": (False, {"check"}, {"check"}),
    "finding_share": (False, {"check"}, {"check"}),
    # detection (a detector's boxes: suite/det_metrics.py); ``class`` narrows to one category
    "map": (True, {"class"}, set()),
    "ap50": (True, {"class"}, set()),
    "ap75": (True, {"class"}, set()),
    "ap_small": (True, {"class"}, set()),
    "ap_medium": (True, {"class"}, set()),
    "ap_large": (True, {"class"}, set()),
}
SEVERITIES = ("fail", "warn")
DECIDE_ON = ("value", "interval", "strict")
SLICE_KEYS = ("where", "lowest", "highest", "finding", "id_contains", "review", "ids_file", "all_of", "any_of",
              "not")
REVIEW_ACTIONS = ("relabel", "remove", "keep", "undecided")
TEST_KEYS = {"name", "slice", "metric", "min", "max", "max_drop", "min_support", "severity", "decide_on",
             "description", "k", "class", "check", "bins"}
ALL_SLICE = "all"   # built in: every image


class SuiteError(ValueError):
    """An invalid test file; the message names the file, the line and the field."""


class _Map(dict):
    line = 0
    key_lines: dict


class _List(list):
    line = 0


class _Loader(yaml.SafeLoader):
    pass


def _mapping(loader, node):
    loader.flatten_mapping(node)
    out = _Map()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in out:                     # YAML would keep the last silently: a typo'd file must not pass
            raise yaml.constructor.ConstructorError(None, None, f"field {key!r} given twice in one mapping (also on "
                                                    f"line {out.key_lines[key]})", key_node.start_mark)
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = key_node.start_mark.line + 1
    return out


def _sequence(loader, node):
    out = _List(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _sequence)


@dataclass
class SliceDef:
    name: str
    spec: dict            # the mapping as written (keys among SLICE_KEYS, ANDed)
    line: int = 0


@dataclass
class TestDef:
    name: str
    slice: str
    metric: str
    params: dict = field(default_factory=dict)     # k, class, check, bins
    min: float | None = None
    max: float | None = None
    max_drop: float | None = None
    min_support: int | None = None
    severity: str = "fail"
    decide_on: str = "value"
    description: str = ""
    line: int = 0

    @property
    def higher_is_better(self) -> bool:
        return METRICS[self.metric][0]


@dataclass
class Suite:
    slices: dict[str, SliceDef]
    tests: list[TestDef]
    defaults: dict
    path: Path | None = None

    @property
    def folder(self) -> Path:
        return self.path.parent if self.path is not None else Path.cwd()


class _Where:
    """Builds messages ``FILE:LINE: field 'tests[2].metric': ...``."""

    def __init__(self, path):
        self.path = str(path) if path is not None else "<test file>"

    def error(self, line: int, field_name: str, message: str) -> SuiteError:
        return SuiteError(f"{self.path}:{line}: field '{field_name}': {message}")


def _line(obj, key=None, default: int = 0) -> int:
    if key is not None and isinstance(obj, _Map):
        return obj.key_lines.get(key, obj.line)
    return getattr(obj, "line", default) or default


def _number(value, where: _Where, line: int, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise where.error(line, name, f"must be a number, got {value!r}")
    return float(value)


def _check_slice(name: str, spec, where: _Where, names: set[str], folder: Path) -> None:
    f = f"slices.{name}"
    if not isinstance(spec, dict) or not spec:
        raise where.error(_line(spec) or 0, f, "a slice is a mapping with one or more of " + ", ".join(SLICE_KEYS))
    for key, value in spec.items():
        line = _line(spec, key)
        fk = f"{f}.{key}"
        if key not in SLICE_KEYS:
            raise where.error(line, fk, f"unknown slice key; known: {', '.join(SLICE_KEYS)}")
        if key == "where":
            if not isinstance(value, dict) or not value:
                raise where.error(line, fk, "give a mapping of column: value, [values] or {min: , max: }")
            for col, cond in value.items():
                if isinstance(cond, dict):
                    bad = set(cond) - {"min", "max"}
                    if bad or not cond:
                        raise where.error(_line(value, col), f"{fk}.{col}", "a range is {min: LOW, max: HIGH} "
                                          "(either may be left out)")
                    for b, v in cond.items():
                        _number(v, where, _line(value, col), f"{fk}.{col}.{b}")
        elif key in ("lowest", "highest"):
            if not isinstance(value, dict) or set(value) != {"column", "share"}:
                raise where.error(line, fk, "give {column: NAME, share: FRACTION}, e.g. the darkest 5%: "
                                  "{column: brightness, share: 0.05}")
            share = _number(value["share"], where, line, f"{fk}.share")
            if not 0 < share <= 1:
                raise where.error(line, f"{fk}.share", f"must lie in (0, 1], got {share:g}")
        elif key == "finding":
            items = value if isinstance(value, list) else [value]
            if not items or not all(isinstance(v, str) and v for v in items):
                raise where.error(line, fk, "give a check or family name, or a list of them")
        elif key == "id_contains":
            if not isinstance(value, str) or not value:
                raise where.error(line, fk, "give the text the image_id contains")
        elif key == "review":
            items = value if isinstance(value, list) else [value]
            bad = [v for v in items if v not in REVIEW_ACTIONS]
            if bad or not items:
                raise where.error(line, fk, f"unknown decision {bad[0] if bad else ''!r}; "
                                  f"known: {', '.join(REVIEW_ACTIONS)}")
        elif key == "ids_file":
            if not isinstance(value, str) or not value:
                raise where.error(line, fk, "give the path of a text file with one image_id per line (or a CSV "
                                  "with an image_id column), relative to the test file")
            p = (folder / value) if not Path(value).is_absolute() else Path(value)
            if not p.is_file():
                raise where.error(line, fk, f"file {p} not found (paths are relative to the test file)")
        elif key in ("all_of", "any_of", "not"):
            items = value if isinstance(value, list) else [value]
            if key != "not" and not isinstance(value, list):
                raise where.error(line, fk, "give a list of slice names")
            for item in items:
                if item not in names:
                    raise where.error(line, fk, f"unknown slice {item!r}; defined: {', '.join(sorted(names))}")


def _cycles(slices: dict[str, SliceDef], where: _Where) -> None:
    state: dict[str, int] = {}

    def visit(n: str, path: list[str]):
        if state.get(n) == 2:
            return
        if state.get(n) == 1:
            s = slices[path[0]]
            raise where.error(s.line, f"slices.{path[0]}", "slices refer to each other in a cycle: "
                              + " -> ".join(path + [n]))
        state[n] = 1
        spec = slices[n].spec if n in slices else {}
        for key in ("all_of", "any_of", "not"):
            items = spec.get(key, [])
            for item in (items if isinstance(items, list) else [items]):
                if item in slices:
                    visit(item, path + [n])
        state[n] = 2

    for n in slices:
        visit(n, [])


def _parse_test(i: int, t, where: _Where, slice_names: set[str], inline: dict, folder: Path) -> TestDef:
    f = f"tests[{i}]"
    if not isinstance(t, dict):
        raise where.error(_line(t), f, "a test is a mapping with name, slice, metric and min / max / max_drop")
    for key in t:
        if key not in TEST_KEYS:
            raise where.error(_line(t, key), f"{f}.{key}", f"unknown field; known: {', '.join(sorted(TEST_KEYS))}")
    name = t.get("name")
    if not isinstance(name, str) or not name.strip():
        raise where.error(_line(t, "name"), f"{f}.name", "every test needs a name (text)")
    f = f"tests[{i}] ({name})"
    metric = t.get("metric")
    if metric not in METRICS:
        raise where.error(_line(t, "metric"), f"{f}.metric", f"unknown metric {metric!r}; known: "
                          f"{', '.join(METRICS)}")
    _, allowed, required = METRICS[metric]
    for p in required:
        if p not in t:
            raise where.error(t.line, f"{f}.{p}", f"metric {metric} needs '{p}'")
    for p in ("k", "class", "check", "bins"):
        if p in t and p not in allowed:
            raise where.error(_line(t, p), f"{f}.{p}", f"metric {metric} takes no '{p}'")
    params = {p: t[p] for p in allowed if p in t}
    if "k" in params and (isinstance(params["k"], bool) or not isinstance(params["k"], int) or params["k"] < 1):
        raise where.error(_line(t, "k"), f"{f}.k", "k is a whole number of 1 or more")
    if "bins" in params and (isinstance(params["bins"], bool) or not isinstance(params["bins"], int)
                             or params["bins"] < 1):
        raise where.error(_line(t, "bins"), f"{f}.bins", "bins is a whole number of 1 or more")
    for p in ("class", "check"):
        if p in params:
            params[p] = str(params[p])
    slice_ = t.get("slice", ALL_SLICE)
    if isinstance(slice_, dict):                  # an inline slice: named after the test
        sname = f"{name} (slice)"
        _check_slice(sname, slice_, where, slice_names, folder)
        inline[sname] = SliceDef(sname, dict(slice_), _line(t, "slice"))
        slice_ = sname
    elif slice_ not in slice_names:
        raise where.error(_line(t, "slice"), f"{f}.slice", f"unknown slice {slice_!r}; defined: "
                          f"{', '.join(sorted(slice_names))}")
    bounds = {}
    for b in ("min", "max", "max_drop"):
        if b in t:
            bounds[b] = _number(t[b], where, _line(t, b), f"{f}.{b}")
    if not bounds:
        raise where.error(t.line, f"{f}.min", "give a threshold: min, max and/or max_drop (against --baseline)")
    if "max_drop" in bounds and bounds["max_drop"] < 0:
        raise where.error(_line(t, "max_drop"), f"{f}.max_drop", "max_drop is 0 or more")
    support = t.get("min_support")
    if support is not None and (isinstance(support, bool) or not isinstance(support, int) or support < 0):
        raise where.error(_line(t, "min_support"), f"{f}.min_support", "min_support is a whole number of 0 or more")
    severity = t.get("severity", "fail")
    if severity not in SEVERITIES:
        raise where.error(_line(t, "severity"), f"{f}.severity", f"severity is one of {', '.join(SEVERITIES)}")
    decide = t.get("decide_on", "value")
    if decide not in DECIDE_ON:
        raise where.error(_line(t, "decide_on"), f"{f}.decide_on", f"decide_on is one of {', '.join(DECIDE_ON)}")
    return TestDef(name=name.strip(), slice=slice_, metric=metric, params=params, min=bounds.get("min"),
                   max=bounds.get("max"), max_drop=bounds.get("max_drop"), min_support=support, severity=severity,
                   decide_on=decide, description=str(t.get("description", "") or ""), line=t.line)


def parse_suite(text: str, path: Path | str | None = None) -> Suite:
    """A ``Suite`` from the test file's text; ``SuiteError`` (file:line: field '...': what to fix) otherwise."""
    where = _Where(path)
    folder = Path(path).parent if path is not None else Path.cwd()
    try:
        doc = yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        started = exc.context_mark.line + 1 if exc.context_mark is not None else line
        extra = f" ({exc.context} on line {started})" if exc.context and started != line else ""
        raise SuiteError(f"{where.path}:{line}: not valid YAML: {exc.problem or exc}{extra}") from None
    except yaml.YAMLError as exc:
        raise SuiteError(f"{where.path}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise where.error(1, "(top level)", "the test file is a mapping with 'slices' (optional) and 'tests'")
    for key in doc:
        if key not in ("slices", "tests", "defaults", "version"):
            raise where.error(_line(doc, key), str(key), "unknown top-level field; known: version, defaults, "
                              "slices, tests")
    defaults = dict(DEFAULTS)
    given = doc.get("defaults") or {}
    if not isinstance(given, dict):
        raise where.error(_line(doc, "defaults"), "defaults", "give a mapping, e.g. {min_support: 50}")
    for k, v in given.items():
        if k not in DEFAULTS:
            raise where.error(_line(given, k), f"defaults.{k}", f"unknown default; known: {', '.join(DEFAULTS)}")
        defaults[k] = _number(v, where, _line(given, k), f"defaults.{k}")
    if not 0 < defaults["confidence"] < 1:
        raise where.error(_line(given, "confidence"), "defaults.confidence", "a level in (0, 1), e.g. 0.95")
    for k in ("min_support", "n_bootstrap", "bootstrap_max_n", "ece_bins", "seed"):
        defaults[k] = int(defaults[k])
    raw_slices = doc.get("slices") or {}
    if not isinstance(raw_slices, dict):
        raise where.error(_line(doc, "slices"), "slices", "give a mapping of slice name: definition")
    if ALL_SLICE in raw_slices:
        raise where.error(_line(raw_slices, ALL_SLICE), f"slices.{ALL_SLICE}", "'all' is built in (every image); "
                          "choose another name")
    names = {str(n) for n in raw_slices} | {ALL_SLICE}
    slices = {}
    for n, spec in raw_slices.items():
        _check_slice(str(n), spec, where, names, folder)
        slices[str(n)] = SliceDef(str(n), dict(spec), _line(raw_slices, n))
    _cycles(slices, where)
    raw_tests = doc.get("tests")
    if not isinstance(raw_tests, list) or not raw_tests:
        raise where.error(_line(doc, "tests") or 1, "tests", "give a list of tests (each: name, slice, metric, "
                          "min / max / max_drop)")
    inline: dict[str, SliceDef] = {}
    tests = [_parse_test(i, t, where, names, inline, folder) for i, t in enumerate(raw_tests)]
    seen: dict[str, int] = {}
    for t in tests:
        if t.name in seen:
            raise where.error(t.line, f"tests ({t.name}).name", f"two tests are named {t.name!r} (the other on "
                              f"line {seen[t.name]}); names must differ")
        seen[t.name] = t.line
    return Suite(slices={**slices, **inline}, tests=tests, defaults=defaults,
                 path=Path(path) if path is not None else None)


def load_suite(path: Path | str) -> Suite:
    """Read and parse a test file; a missing or unreadable file is a ``SuiteError`` naming it."""
    from ..limits import LimitError, read_input_bytes
    p = Path(path)
    if not p.is_file():
        raise SuiteError(f"test file {p} not found (or not a file)")
    try:
        text = read_input_bytes(p, "test file", "max_text_bytes").decode("utf-8")
    except LimitError as exc:
        raise SuiteError(str(exc)) from None
    except UnicodeDecodeError as exc:
        raise SuiteError(f"test file {p} is not UTF-8 text (byte {exc.start}); save it as UTF-8 YAML") from None
    return parse_suite(text, p)
