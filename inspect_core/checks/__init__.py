"""Checks: each family is one function in one file, registered through ``register`` (the same public function an
outside check uses; see registry.py), here, once, in this order.

A check takes a ``CheckContext`` and returns finding rows (image_id, check, score, detail, group_id).
"""
from .registry import (REGISTRY, CheckSpec, all_check_names, family_of, finding, register,  # noqa: F401
                       registry_key, unregister)
from . import integrity, duplicate, leakage, label, annotation, balance, property  # noqa: F401,E401,I001
