"""The check registry: one function per family, registered once through ``register``, the one public way in.

The built-in families register with it in checks/__init__.py; an outside check does the same::

    from inspect_core.checks import register, finding

    @register("my_family", {"my_check": "what a finding of it means"})
    def my_checks(ctx):                       # ctx: checks.context.CheckContext
        return [finding(image_id, "my_check", score, "why")]

A saved scan is reused only while the registered checks are the same (``registry_key``): their names and their
code (the source of the module that holds each function), or the ``version`` given to ``register``.
"""
from __future__ import annotations

import hashlib
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class CheckSpec:
    family: str
    fn: Callable
    checks: dict  # check name -> what a finding of it means
    dataset_level: bool = False
    version: str | None = None  # stands for the code in the reuse key when given


REGISTRY: dict[str, CheckSpec] = {}


def register(family: str, checks: dict, dataset_level: bool = False, version: str | None = None):
    """Register ``fn(ctx) -> list[dict]`` as the check family ``family`` producing ``checks``.

    ``version``: a string that changes whenever what the check finds changes; without it the source of the
    function's module is the version. Registering a family or a check name twice is an error."""

    def deco(fn):
        if family in REGISTRY:
            raise ValueError(f"check family '{family}' is already registered by {REGISTRY[family].fn.__module__}")
        taken = {c: f for f, s in REGISTRY.items() for c in s.checks}
        for name in checks:
            if name in taken:
                raise ValueError(f"check '{name}' is already registered by family '{taken[name]}'")
        REGISTRY[family] = CheckSpec(family, fn, dict(checks), dataset_level, version)
        return fn

    return deco


def unregister(family: str) -> None:
    """Remove a registered family (an outside check that is no longer wanted; tests)."""
    if family not in REGISTRY:
        raise KeyError(f"no check family '{family}' is registered; registered: {', '.join(REGISTRY)}")
    del REGISTRY[family]


def _code_of(fn: Callable) -> bytes:
    """The source of the module holding ``fn`` (its helpers change findings too), else of ``fn`` itself, else
    its compiled code."""
    module = sys.modules.get(getattr(fn, "__module__", None) or "")
    for obj in (module, fn):
        try:
            return inspect.getsource(obj).encode()
        except (OSError, TypeError):
            pass
    code = getattr(fn, "__code__", None)
    return code.co_code + repr(code.co_consts).encode() if code is not None else repr(fn).encode()


def registry_key() -> str:
    """A hash of what the registered checks are: family, check names, order, and each one's version or code."""
    h = hashlib.blake2b(digest_size=8)
    for spec in REGISTRY.values():
        h.update(f"{spec.family}|{sorted(spec.checks)}|{spec.dataset_level}|{spec.fn.__module__}."
                 f"{spec.fn.__qualname__}|".encode())
        h.update(spec.version.encode() if spec.version is not None else _code_of(spec.fn))
    return h.hexdigest()


def all_check_names() -> list[str]:
    return [c for s in REGISTRY.values() for c in s.checks]


def family_of(check: str) -> str | None:
    for s in REGISTRY.values():
        if check in s.checks:
            return s.family
    return None


def finding(image_id, check: str, score: float, detail: str, group_id=None) -> dict:
    return {"image_id": image_id, "check": check, "score": float(score), "detail": detail,
            "group_id": pd.NA if group_id is None or group_id < 0 else int(group_id)}
