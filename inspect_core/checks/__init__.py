"""Checks: each family is one function in one file, registered here, once, in this order.

A check takes a ``CheckContext`` and returns finding rows (image_id, check, score, detail, group_id).
"""
from .registry import REGISTRY, CheckSpec, all_check_names, family_of, register  # noqa: F401
from . import integrity, duplicate, leakage, label, annotation, balance, property  # noqa: F401,E401
