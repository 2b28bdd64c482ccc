"""The check registry: an outside check registers through the same public function as the built-in ones, runs on
a fresh and on a reused scan, and the saved-scan reuse key follows what is registered."""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest

import inspect_core
from inspect_core import checks
from inspect_core.checks import registry
from inspect_core.schema import issue_column

FAMILY = "test_outside"


def make_folder(root: Path, textured, n: int = 6) -> list[str]:
    ids = []
    for k in range(n):
        p = root / "cat" / f"img_{k:02d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        textured(300 + k, (64, 48)).save(p)
        ids.append(f"cat/img_{k:02d}.png")
    return ids


def first_image_is_odd(ctx):
    """An outside check: flags the first image (by id), with its width in the detail."""
    first = ctx.images.sort_values("image_id").iloc[0]
    return [registry.finding(first["image_id"], "test_odd", 0.5, f"width {first['width_px']} px")]


def last_image_is_odd(ctx):
    """The same check name, other code: flags the last image instead."""
    last = ctx.images.sort_values("image_id").iloc[-1]
    return [registry.finding(last["image_id"], "test_odd", 0.5, f"width {last['width_px']} px")]


@pytest.fixture()
def outside():
    """Registers a family from this test module (and removes it afterwards, so other tests see the built-ins)."""
    def add(fn, **kw):
        checks.register(FAMILY, {"test_odd": "a test check"}, **kw)(fn)
    yield add
    if FAMILY in checks.REGISTRY:
        registry.unregister(FAMILY)


def test_builtin_families_come_through_the_public_register():
    # every built-in family is registered by the public register(), from its own module, in this order
    assert list(checks.REGISTRY) == ["integrity", "duplicate", "leakage", "label", "annotation", "balance",
                                     "property"]
    assert checks.register is registry.register
    for spec in checks.REGISTRY.values():
        assert spec.fn.__module__ == f"inspect_core.checks.{spec.family}"


def test_a_builtin_family_registers_by_calling_the_public_register(monkeypatch):
    from inspect_core.checks import balance
    calls = []
    real = registry.register

    def spy(family, names, **kw):
        calls.append(family)
        return real(family, names, **kw)
    saved = dict(checks.REGISTRY)
    monkeypatch.setattr(registry, "register", spy)
    try:
        registry.unregister("balance")
        importlib.reload(balance)                         # runs the module's @register(...) again
        assert calls == ["balance"] and checks.REGISTRY["balance"].checks == saved["balance"].checks
    finally:
        checks.REGISTRY.clear()
        checks.REGISTRY.update(saved)


def test_outside_check_runs_on_a_fresh_and_on_a_reused_scan(tmp_path, textured, outside):
    root = tmp_path / "ds"
    ids = make_folder(root, textured)
    before = inspect_core.scan(root, workers=1)
    assert "test_odd" not in set(before.findings["check"])

    outside(first_image_is_odd)
    added = inspect_core.scan(root, workers=1)
    assert added.summary["files_read"] == 0            # no file changed: the cache is used, the saved scan is not
    assert not added.summary["reused_saved_scan"]
    assert added.issues("test_odd")["image_id"].tolist() == [ids[0]]
    assert added.issues(FAMILY)["detail"].tolist() == ["width 64 px"]
    assert added.images.set_index("image_id")[issue_column("test_odd")].to_dict() == {i: i == ids[0] for i in ids}

    reused = inspect_core.scan(root, workers=1)
    assert reused.summary["reused_saved_scan"]
    assert reused.issues("test_odd")["image_id"].tolist() == [ids[0]]

    registry.unregister(FAMILY)
    removed = inspect_core.scan(root, workers=1)
    assert not removed.summary["reused_saved_scan"]
    assert "test_odd" not in set(removed.findings["check"])
    assert issue_column("test_odd") not in removed.images.columns


def test_reuse_key_follows_the_check_code_and_its_version(tmp_path, textured, outside):
    root = tmp_path / "ds"
    ids = make_folder(root, textured)
    outside(first_image_is_odd)
    assert inspect_core.scan(root, workers=1).issues("test_odd")["image_id"].tolist() == [ids[0]]

    registry.unregister(FAMILY)
    outside(last_image_is_odd)                           # same family and check names, other code
    changed = inspect_core.scan(root, workers=1)
    assert not changed.summary["reused_saved_scan"]
    assert changed.issues("test_odd")["image_id"].tolist() == [ids[-1]]

    # an explicit version stands for the code: the same version is reused, a new one is not
    registry.unregister(FAMILY)
    outside(last_image_is_odd, version="1")
    assert not inspect_core.scan(root, workers=1).summary["reused_saved_scan"]
    assert inspect_core.scan(root, workers=1).summary["reused_saved_scan"]
    registry.unregister(FAMILY)
    outside(last_image_is_odd, version="2")
    assert not inspect_core.scan(root, workers=1).summary["reused_saved_scan"]


def test_registering_a_name_twice_is_an_error_naming_the_first(outside):
    outside(first_image_is_odd)
    with pytest.raises(ValueError, match="test_outside"):
        checks.register("another", {"test_odd": "again"})(last_image_is_odd)
    with pytest.raises(ValueError, match="already registered"):
        checks.register(FAMILY, {"other": "x"})(last_image_is_odd)
    assert "another" not in checks.REGISTRY


def test_unregister_an_unknown_family_names_it():
    with pytest.raises(KeyError, match="no_such_family"):
        registry.unregister("no_such_family")
