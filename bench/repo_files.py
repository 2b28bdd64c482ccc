"""Import a module of this checkout by its file (the tests' helpers, e.g. tests/browser_support.py): the tests
folder is no package and is not on sys.path, and no bench script edits sys.path."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def import_file(path: Path | str):
    """The module in ``path``, imported once under its file name (``browser_support``) and kept in sys.modules,
    so that ``from browser_support import ...`` works after it."""
    path = Path(path)
    name = path.stem
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
