"""Dataset Inspector's core: load an image dataset as it lies on disk, scan it once, find what is wrong.

    import inspect_core
    result = inspect_core.scan("path/to/dataset")
    result.images      # one row per image, a column per signal
    result.findings    # one row per (image, check)

Importing this package is cheap: the heavy modules load on first use (the scan's worker processes
import only numpy and Pillow).
"""
from __future__ import annotations

__all__ = ["scan", "load_scan", "load_dataset", "Dataset", "DatasetError", "ScanResult"]


def __getattr__(name):
    if name in ("scan", "load_scan", "ScanResult"):
        from . import scanner
        return getattr(scanner, name)
    if name in ("load_dataset", "Dataset", "DatasetError"):
        from . import loaders
        return getattr(loaders, name)
    raise AttributeError(f"module 'inspect_core' has no attribute {name!r}")
