"""The check registry: one function per family, registered once, in one place (checks/__init__.py)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pandas as pd


@dataclass(frozen=True)
class CheckSpec:
    family: str
    fn: Callable
    checks: dict  # check name -> what a finding of it means
    dataset_level: bool = False


REGISTRY: dict[str, CheckSpec] = {}


def register(family: str, checks: dict, dataset_level: bool = False):
    """Register ``fn(ctx) -> list[dict]`` as the check family ``family`` producing ``checks``.
    Registering a family or a check name twice is an error."""

    def deco(fn):
        if family in REGISTRY:
            raise ValueError(f"check family '{family}' is already registered by {REGISTRY[family].fn.__module__}")
        taken = {c: f for f, s in REGISTRY.items() for c in s.checks}
        for name in checks:
            if name in taken:
                raise ValueError(f"check '{name}' is already registered by family '{taken[name]}'")
        REGISTRY[family] = CheckSpec(family, fn, dict(checks), dataset_level)
        return fn

    return deco


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
