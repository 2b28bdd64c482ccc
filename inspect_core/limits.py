"""Bounds on every input: one dict of caps, the checks that apply them, and a JSON reader that cannot be
made to recurse or allocate without bound.

A cap that trips is a finding or a one-line error that names the cap and how to raise it, never a crash.
Change a cap in Python (``inspect_core.limits.LIMITS["max_file_bytes"] = 2 << 30``), on the command line
(``--limit max_file_bytes=2147483648``, repeatable) or in the environment
(``DATASET_INSPECTOR_LIMITS="max_file_bytes=2147483648,max_boxes_per_image=200000"``, read at import).
"""
from __future__ import annotations

import json
import logging
import os
import re
import stat
from pathlib import Path

import numpy as np

ENV_VAR = "DATASET_INSPECTOR_LIMITS"

DEFAULT_LIMITS: dict[str, int] = {
    # an image file read into memory by the scan; a larger file is an integrity/file_too_large finding
    "max_file_bytes": 512 << 20,
    # a COCO JSON (read whole and parsed)
    "max_json_bytes": 1 << 30,
    # a manifest (CSV or Parquet) or a predictions file
    "max_table_bytes": 2 << 30,
    # a model file (the largest public image classifiers are a few GB); refused before it is opened
    "max_model_bytes": 8 << 30,
    # small text files: classes.txt, data.yaml, a YOLO label file, a preprocessing JSON, a predictions order
    "max_text_bytes": 64 << 20,
    # nesting of a JSON file (COCO, preprocessing)
    "max_json_depth": 64,
    # a class index in data.yaml or a YOLO label line (0-based)
    "max_class_index": 100_000,
    # boxes on one image; the rest of that image's boxes are dropped with a box_malformed finding
    "max_boxes_per_image": 100_000,
    # comparisons the duplicate-box check may make on one image (boxes packed so densely that more would be
    # needed leave that image unchecked, with a finding)
    "max_box_pairs_per_image": 50_000_000,
    # an entry's path (a manifest row, a COCO file_name), in characters, and one of its parts, in UTF-8 bytes
    "max_path_chars": 4096,
    "max_name_bytes": 255,
}

LIMITS: dict[str, int] = dict(DEFAULT_LIMITS)


class LimitError(ValueError):
    """An input over one of the caps, or not something that may be read (a pipe, a device). The message names
    the input, the cap and how to raise it."""


def how_to_raise(name: str) -> str:
    return (f"raise it with --limit {name}=N, {ENV_VAR}='{name}=N' or "
            f"inspect_core.limits.LIMITS['{name}'] = N")


def parse_limit(spec: str) -> tuple[str, int]:
    """'name=value' -> (name, int value); ValueError with a one-line reason otherwise."""
    name, sep, value = spec.partition("=")
    name = name.strip()
    if not sep or name not in DEFAULT_LIMITS:
        raise ValueError(f"--limit '{spec}': give NAME=N with NAME one of {', '.join(DEFAULT_LIMITS)}")
    try:
        number = float(value)                       # 2e9 is allowed
        if number != number or number in (float("inf"), float("-inf")) or not number.is_integer():
            raise ValueError
        number = int(number)
    except (ValueError, OverflowError):
        raise ValueError(f"--limit '{spec}': N must be a whole number") from None
    if number < 0:
        raise ValueError(f"--limit '{spec}': N must be 0 or more")
    return name, number


def set_limits(specs) -> None:
    """Apply 'name=value' strings to LIMITS (the CLI's --limit and the environment variable)."""
    for spec in specs:
        name, number = parse_limit(spec)
        LIMITS[name] = number


def _from_environment() -> None:
    text = os.environ.get(ENV_VAR, "")
    try:
        set_limits([s for s in text.split(",") if s.strip()])
    except ValueError as exc:  # a bad environment value keeps the defaults, said once in the log
        logging.getLogger(__name__).warning("ignoring %s: %s", ENV_VAR, exc)


def export_to_environment() -> None:
    """Write the caps that differ from the defaults to the environment variable, so that worker processes
    started by spawn (not fork: macOS, Windows) apply the same caps as this process."""
    changed = [f"{k}={v}" for k, v in LIMITS.items() if DEFAULT_LIMITS.get(k) != v]
    if changed:
        os.environ[ENV_VAR] = ",".join(changed)


_from_environment()


def human_bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:g} {unit}"
    return f"{n} bytes"


def check_input_file(path: Path | str, what: str, limit: str, cap: int | None = None) -> Path:
    """The path of a file the program is asked to read, checked: it exists, is a regular file (not a folder,
    pipe, device or socket, which could block or never end) and is at most ``LIMITS[limit]`` bytes (``cap``
    instead, when a caller passes its own). Raises LimitError (a ValueError) with a one-line message otherwise."""
    path = Path(path).expanduser()
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise LimitError(f"{what} {path} not found; check the path") from None
    except (OSError, ValueError) as exc:
        raise LimitError(f"{what} {path} cannot be read: {getattr(exc, 'strerror', None) or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise LimitError(f"{what} {path} is a folder; give a file")
    if not stat.S_ISREG(st.st_mode):
        raise LimitError(f"{what} {path} is not a regular file (a pipe, device or socket); give a file")
    cap = LIMITS[limit] if cap is None else cap
    if st.st_size > cap:
        raise LimitError(f"{what} {path} is {human_bytes(st.st_size)}, over the {human_bytes(cap)} cap "
                         f"({limit}); {how_to_raise(limit)}")
    return path


_READ_BLOCK = 1 << 20


def read_capped(fh, size_bytes: int, cap: int) -> bytes:
    """At most ``cap`` + 1 bytes of an open file whose size was ``size_bytes``: one read of the size (Python
    allocates the whole buffer a read asks for, so never ``read(cap + 1)`` for a small file), then, for a file
    that grew meanwhile, blocks of 1 MiB up to the cap. More than ``cap`` bytes back means over the cap."""
    data = fh.read(min(size_bytes, cap) + 1)
    if len(data) <= size_bytes or len(data) > cap:
        return data
    parts = [data]
    total = len(data)
    while total <= cap:
        block = fh.read(min(_READ_BLOCK, cap + 1 - total))
        if not block:
            break
        parts.append(block)
        total += len(block)
    return b"".join(parts)


def read_input_bytes(path: Path | str, what: str, limit: str) -> bytes:
    """The bytes of a checked input file (``check_input_file``); never more than the cap, even for a file that
    grows while it is read."""
    path = check_input_file(path, what, limit)
    cap = LIMITS[limit]
    try:
        with open(path, "rb") as fh:
            data = read_capped(fh, os.fstat(fh.fileno()).st_size, cap)
    except OSError as exc:
        raise LimitError(f"{what} {path} cannot be read: {exc.strerror or exc}") from None
    if len(data) > cap:
        raise LimitError(f"{what} {path} is over the {human_bytes(cap)} cap ({limit}); {how_to_raise(limit)}")
    return data


def _bounded_int(text: str):
    """JSON integers: beyond 64 bits they become floats (inf when huge), which every reader refuses as an id and
    reports as a box that is not finite; Python would otherwise build an integer of any size."""
    return int(text) if len(text.lstrip("-")) <= 18 else float(text)


_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_DEPTH_BLOCK = 1 << 24


def json_depth(data: bytes | str) -> int:
    """The deepest nesting of [ and { in a JSON text, outside strings: strings cut out, every other byte but the
    brackets dropped, then a running sum in blocks (all in C: about 0.1 s for 20 MB)."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    brackets = np.frombuffer(_STRING.sub(b"", data).translate(None, _NOT_BRACKETS), np.uint8)
    depth = deepest = 0
    for s0 in range(0, len(brackets), _DEPTH_BLOCK):
        block = brackets[s0:s0 + _DEPTH_BLOCK]
        run = np.cumsum(np.where((block == ord("[")) | (block == ord("{")), 1, -1).astype(np.int32)) + depth
        deepest = max(deepest, int(run.max()))
        depth = int(run[-1])
    return deepest


def load_json(data: bytes | str, what: str) -> object:
    """Parse JSON with its nesting bounded (``max_json_depth``) and integers kept to 64 bits. Raises
    LimitError (too deep) or ValueError (not JSON) with a one-line message naming ``what``."""
    cap = LIMITS["max_json_depth"]
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ValueError(f"{what} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if data.count("[") + data.count("{") > cap and json_depth(data) > cap:
        raise LimitError(f"{what} is nested more than {cap} levels deep (max_json_depth); "
                         f"{how_to_raise('max_json_depth')}")
    try:
        return json.loads(data, parse_int=_bounded_int)
    except RecursionError:
        raise LimitError(f"{what} is nested too deeply to read") from None
    except ValueError as exc:
        raise ValueError(f"{what} is not valid JSON ({exc})") from None
