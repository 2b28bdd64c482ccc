"""Edits of a test file that keep every other line and comment as it was: a slice added to ``slices``, a test
appended to ``tests``. Each edit is parsed before it is written, so an error leaves the file unchanged. A test file
that lies inside the dataset root is never written (the dataset is read-only): ``writable_copy`` gives a copy in
the workspace to edit instead."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import yaml

from .spec import ALL_SLICE, SuiteError, parse_suite


def _flow(value) -> str:
    text = yaml.safe_dump([value], default_flow_style=True, sort_keys=False, width=10_000).strip()
    return text[1:-1]                      # a one-item flow list, less its brackets: no document end marker


def _end_line(node) -> int:
    """The 0-based line after a block node's last line."""
    return node.end_mark.line + (1 if node.end_mark.column > 0 else 0)


def _splice(lines: list[str], at: int, block: str) -> str:
    head = "".join(lines[:at])
    if head and not head.endswith("\n"):
        head += "\n"
    return head + block + "".join(lines[at:])


def add_test_text(text: str, test: dict) -> str:
    """The test file's text with ``test`` appended to its ``tests`` list. A flow-style list (``tests: [...]``)
    is refused: add it by hand."""
    node = yaml.compose(text)
    tests_node = None
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if k.value == "tests":
                tests_node = v
    if tests_node is None or not isinstance(tests_node, yaml.SequenceNode) or tests_node.flow_style or \
            not tests_node.value:
        raise SuiteError("the test file's 'tests' is not a block list ('- name: ...' lines): add the test by hand")
    col = tests_node.value[0].start_mark.column
    dash = " " * max(col - 2, 0) + "- "
    pad = " " * col
    body = [f"{k}: {_flow(v)}" for k, v in test.items()]
    block = "\n".join([dash + body[0]] + [pad + b for b in body[1:]]) + "\n"
    return _splice(text.splitlines(keepends=True), _end_line(tests_node), block)


def add_test(path: Path | str, test: dict) -> str:
    """Append ``test`` (a mapping as in the file) to the test file; a name already taken gets " (2)", " (3)"...
    Returns the name given."""
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    test = dict(test)
    existing = {t.name for t in parse_suite(text, p).tests}
    base, k = test["name"], 2
    while test["name"] in existing:
        test["name"] = f"{base} ({k})"
        k += 1
    new = add_test_text(text, test)
    parse_suite(new, p)
    p.write_text(new, encoding="utf-8")
    return test["name"]


def add_to_suite(path: Path | str, proposal, name: str | None = None) -> str:
    """Append a discovery proposal as a test (slice inline) to the test file; returns the test's name."""
    from .discover import proposal_test
    return add_test(path, proposal_test(proposal, name))


def add_slice_text(text: str, name: str, spec: dict) -> str:
    """The test file's text with slice ``name: spec`` added to its ``slices`` mapping (made above ``tests`` when
    there is none)."""
    node = yaml.compose(text)
    if not isinstance(node, yaml.MappingNode):
        raise SuiteError("the test file is not a mapping with 'tests': fix it first")
    slices_node = tests_key = None
    for k, v in node.value:
        if k.value == "slices":
            slices_node = v
        if k.value == "tests":
            tests_key = k
    entry = f"{_flow(str(name))}: {_flow(spec)}\n"
    lines = text.splitlines(keepends=True)
    if slices_node is None:
        at = tests_key.start_mark.line if tests_key is not None else len(lines)
        return _splice(lines, at, "slices:\n  " + entry)
    if isinstance(slices_node, yaml.ScalarNode) and not slices_node.value:      # "slices:" with nothing under it
        key_line = next(k.start_mark.line for k, _ in node.value if k.value == "slices")
        return "".join(lines[:key_line]) + "slices:\n  " + entry + "".join(lines[key_line + 1:])
    if not isinstance(slices_node, yaml.MappingNode) or slices_node.flow_style or not slices_node.value:
        raise SuiteError("the test file's 'slices' is not a block mapping ('name: ...' lines): add the slice by "
                         "hand")
    pad = " " * slices_node.value[0][0].start_mark.column
    return _splice(lines, _end_line(slices_node), pad + entry)


def add_slice(path: Path | str, name: str, spec: dict) -> None:
    """Add slice ``name`` to the test file (a name already defined is an error: choose another)."""
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    suite = parse_suite(text, p)
    if name in suite.slices or name == ALL_SLICE:
        raise SuiteError(f"the test file already has a slice named {name!r}: choose another name")
    new = add_slice_text(text, name, spec)
    parse_suite(new, p)
    p.write_text(new, encoding="utf-8")


def inside(child: Path | str, parent: Path | str) -> bool:
    c, r = Path(os.path.realpath(child)), Path(os.path.realpath(parent))
    return c == r or r in c.parents


def writable_copy(path: Path | str, dataset_root: Path | str, workspace: Path | str) -> Path:
    """``path`` itself when it lies outside the dataset root; else a copy in ``workspace/tests/`` (made once, then
    edited), since the dataset is never written into. ids files the test file names beside it are copied too."""
    p = Path(path)
    if not inside(p, dataset_root):
        return p
    folder = Path(workspace) / "tests"
    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / p.name
    if not copy.exists():
        shutil.copyfile(p, copy)
        for s in parse_suite(p.read_text(encoding="utf-8"), p).slices.values():
            f = s.spec.get("ids_file")
            if isinstance(f, str) and not Path(f).is_absolute() and (p.parent / f).is_file():
                (folder / f).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(p.parent / f, folder / f)
    return copy
