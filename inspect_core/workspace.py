"""The workspace: where scans, scores and review decisions live, never inside the dataset."""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from .paths import is_within
from .storage import endpoint_of, is_remote, normalise_root

APP_DIR_NAME = "dataset-inspector"


class WorkspaceError(ValueError):
    """The workspace folder cannot be made or used; the message names it and what to do."""


def cache_home() -> Path:
    base = os.environ.get("XDG_CACHE_HOME")
    return Path(base) if base else Path.home() / ".cache"


def workspace_dir(root: Path | str, base: Path | str | None = None) -> Path:
    """The workspace folder for a dataset root: ``BASE/<name>-<hash of real root path>``.

    ``base`` defaults to ``$XDG_CACHE_HOME/dataset-inspector`` (or ``~/.cache/...``).
    The folder is created; it is refused when it would lie inside the dataset root.

    A remote root (``s3://bucket/prefix``) is keyed by its URL and endpoint: the workspace is a local folder,
    never in the bucket.
    """
    if is_remote(base):
        raise WorkspaceError(f"the workspace {base} is a URL: workspaces are local folders (a bucket is never "
                             "written into); give a local folder with --workspace")
    base_dir = Path(base) if base is not None else cache_home() / APP_DIR_NAME
    base_real = Path(os.path.realpath(base_dir))
    if is_remote(root):
        url = normalise_root(str(root))
        name = url.rsplit("/", 1)[-1] if url.count("/") > 2 else url.split("://", 1)[1]
        key = f"{url}\x00{endpoint_of(url)}"
    else:
        root_real = Path(os.path.realpath(root))
        if is_within(base_real, root_real):
            raise ValueError(
                f"workspace {base_dir} lies inside the dataset root {root}; "
                "choose a workspace outside the dataset (--workspace)")
        name, key = root_real.name, str(root_real)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name or "root")[:40]
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    ws = base_real / f"{slug}-{digest}"
    try:
        ws.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if not ws.is_dir():
            raise WorkspaceError(f"cannot create the workspace {ws}: {exc.strerror or exc}; give a folder you can "
                                 "write with --workspace (or set XDG_CACHE_HOME)") from None
    return ws
