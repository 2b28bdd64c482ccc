"""Datasets on object storage: the one module that knows about remote roots (``s3://``, ``gs://``, ``az://``).

A dataset root is either a local folder (a ``Path``; nothing here is used for it on the scan's hot path) or a URL
``SCHEME://bucket/prefix`` read through fsspec (s3fs for ``s3://``; gcsfs for ``gs://``, adlfs for ``az://``, both
optional and installed by the user). This module lists the files under a remote root, gives each file's size and
version stamp, reads bytes, and joins paths. It never writes, deletes or copies anything in a bucket: every call
here is a read (LIST, HEAD, GET).

Version stamp: the cache key of a file is ``(file_size_bytes, stamp)``. Locally ``stamp`` is the mtime in ns; for an
object it is a 63-bit hash of its ETag (``etag_stamp``), or its last-modified time in ns when the store gives no
ETag. The scan keeps it in the ``mtime_ns`` column, so local and remote rows share one cache table.

Credentials come from the standard environment of each library (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/
``AWS_PROFILE`` ..., ``GOOGLE_APPLICATION_CREDENTIALS``, ``AZURE_STORAGE_*``). The S3 endpoint comes from
``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``; any other fsspec option from ``--storage-option KEY=VALUE`` or the
environment variable ``DATASET_INSPECTOR_STORAGE_OPTIONS`` (a JSON object), which worker processes and the app
inherit.
"""
from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

OPTIONS_ENV = "DATASET_INSPECTOR_STORAGE_OPTIONS"

# URL scheme -> (the Python package that reads it, the fsspec protocol)
SCHEMES: dict[str, tuple[str, str]] = {
    "s3": ("s3fs", "s3"), "s3a": ("s3fs", "s3"),
    "gs": ("gcsfs", "gcs"), "gcs": ("gcsfs", "gcs"),
    "az": ("adlfs", "abfs"), "abfs": ("adlfs", "abfs"), "abfss": ("adlfs", "abfs"),
}
LISTINGS_KEPT = 4             # listings of this many roots are kept in memory (the latest scans' roots)
HEAD_BYTES = 4096             # what ``read_head`` reads: enough to tell a COCO JSON from another JSON


class StorageError(ValueError):
    """A remote root or file cannot be reached or read as a whole (no such bucket, access denied, endpoint down,
    a missing package): the message names the URL and what to do."""


@dataclass(frozen=True)
class FileVersion:
    """A file's size and version stamp (mtime in ns locally, ``etag_stamp`` remotely): the cache key of its rows."""
    size_bytes: int
    stamp: int


# ----------------------------------------------------------------------------- URLs

def scheme_of(path) -> str | None:
    """The URL scheme of ``path`` ('s3'), or None for a local path (a ``Path``, or text without ``://``)."""
    if not isinstance(path, str):
        return None
    head, sep, _ = path.partition("://")
    if not sep or not head or not head.replace("+", "").replace("-", "").isalnum():
        return None
    return head.lower()


def is_remote(path) -> bool:
    """Whether ``path`` is a URL on object storage (``s3://...``) rather than a local path."""
    return scheme_of(path) is not None


def normalise_root(url: str) -> str:
    """``s3://bucket/prefix/`` -> ``s3://bucket/prefix``; a scheme we cannot read is a StorageError."""
    scheme = scheme_of(url)
    if scheme not in SCHEMES:
        raise StorageError(f"{url}: the scheme {scheme}:// is not supported; give a local folder or an "
                           f"s3://, gs:// or az:// URL")
    rest = url.split("://", 1)[1].strip("/")
    if not rest:
        raise StorageError(f"{url}: no bucket named; give {scheme}://BUCKET[/PREFIX]")
    return f"{scheme}://{rest}"


def join(root, rel: str):
    """``root / rel`` for a local root (a Path), ``root + '/' + rel`` for a URL."""
    if is_remote(root):
        return f"{str(root).rstrip('/')}/{rel}" if rel else str(root).rstrip("/")
    return Path(root) / rel


def name_of(path) -> str:
    """The last part of a path or URL (``annotations.json``)."""
    return PurePosixPath(str(path).split("://", 1)[-1]).name


def relative(root, path) -> str:
    """``path`` relative to ``root`` as a POSIX path."""
    if is_remote(root):
        return str(path)[len(str(root).rstrip("/")) + 1:]
    return Path(path).relative_to(root).as_posix()


def as_root(text: str):
    """A root read back from text (a saved scan): a URL stays text, a local path becomes a Path."""
    return text if is_remote(text) else Path(text)


def etag_stamp(etag: str) -> int:
    """A 63-bit non-negative integer from an object's ETag (quotes ignored), to sit where a local file's mtime_ns
    does in the cache key."""
    digest = hashlib.blake2b(str(etag).strip('"').encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


# ----------------------------------------------------------------------------- options and file systems

_OPTIONS: dict = {}


def set_storage_options(specs) -> None:
    """Apply ``KEY=VALUE`` strings (the CLI's ``--storage-option``; VALUE read as JSON when it parses, else as text)
    and export them to ``DATASET_INSPECTOR_STORAGE_OPTIONS`` so that worker processes and the app see them."""
    opts = dict(_env_options())
    for spec in specs or ():
        key, sep, value = str(spec).partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--storage-option '{spec}': give KEY=VALUE (for example endpoint_url=http://host:9000)")
        try:
            opts[key.strip()] = json.loads(value)
        except ValueError:
            opts[key.strip()] = value
    _OPTIONS.clear()
    _OPTIONS.update(opts)
    if opts:
        os.environ[OPTIONS_ENV] = json.dumps(opts)


def _env_options() -> dict:
    text = os.environ.get(OPTIONS_ENV, "").strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        raise StorageError(f"{OPTIONS_ENV} is not a JSON object: {text[:80]}") from None
    if not isinstance(value, dict):
        raise StorageError(f"{OPTIONS_ENV} is not a JSON object: {text[:80]}")
    return value


def storage_options(scheme: str) -> dict:
    """The fsspec options for ``scheme``: the S3 endpoint from the environment, then the environment variable's and
    ``set_storage_options``'s options (these win)."""
    opts: dict = {}
    if SCHEMES.get(scheme, ("", ""))[1] == "s3":
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            opts["endpoint_url"] = endpoint
    opts.update(_env_options())
    opts.update(_OPTIONS)
    return opts


def endpoint_of(url: str) -> str:
    """The endpoint a URL is read from (part of its workspace's key: one bucket name on two servers is two datasets)."""
    opts = storage_options(scheme_of(url) or "")
    return str(opts.get("endpoint_url") or (opts.get("client_kwargs") or {}).get("endpoint_url") or "")


def filesystem(url: str):
    """The fsspec file system that reads ``url`` (fsspec keeps one instance per set of options, per process)."""
    scheme = scheme_of(url)
    if scheme not in SCHEMES:
        raise StorageError(f"{url}: the scheme {scheme}:// is not supported; use s3://, gs:// or az://")
    package, protocol = SCHEMES[scheme]
    try:
        importlib.import_module(package)
        import fsspec
    except ImportError:
        raise StorageError(f"{url}: reading {scheme}:// needs the package {package}: pip install {package}") from None
    try:
        return fsspec.filesystem(protocol, **storage_options(scheme))
    except Exception as exc:  # noqa: BLE001 - a bad option is the user's to fix
        raise StorageError(f"{url}: cannot set up {package} with the storage options "
                           f"({type(exc).__name__}: {exc}); check --storage-option / {OPTIONS_ENV}") from None


def _fs_path(url: str) -> str:
    return url.split("://", 1)[1]


def explain(url: str, exc: BaseException) -> str:
    """One line saying why ``url`` could not be read and what to do, from any exception of fsspec/s3fs/botocore."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())[:240]
    low = text.lower()
    endpoint = endpoint_of(url)
    where = f" at {endpoint}" if endpoint else ""
    if isinstance(exc, FileNotFoundError) or "nosuchbucket" in low or "no such bucket" in low:
        return f"{url} not found{where} ({text}); check the bucket and prefix"
    if isinstance(exc, PermissionError) or any(w in low for w in (
            "accessdenied", "access denied", "forbidden", "invalidaccesskeyid", "signaturedoesnotmatch",
            "expiredtoken", "unauthorized", "nocredentials", "unable to locate credentials")):
        return (f"access to {url}{where} was refused ({text}); check the credentials: AWS_ACCESS_KEY_ID / "
                "AWS_SECRET_ACCESS_KEY or AWS_PROFILE for s3://, GOOGLE_APPLICATION_CREDENTIALS for gs://, "
                "AZURE_STORAGE_* for az://")
    if any(w in low for w in ("connect", "endpoint", "timeout", "timed out", "name or service", "resolve")):
        return (f"cannot reach the storage server for {url}{where or ' (the default endpoint)'} ({text}); check the "
                "network and the endpoint (AWS_ENDPOINT_URL, or --storage-option endpoint_url=URL)")
    return f"cannot read {url}{where} ({text})"


# ----------------------------------------------------------------------------- listing

_LISTINGS: dict[str, tuple[float, dict[str, FileVersion]]] = {}
_LISTINGS_LOCK = threading.Lock()


def _version_of(info: dict) -> FileVersion:
    size = int(info.get("size") or info.get("Size") or 0)
    etag = info.get("ETag") or info.get("etag") or info.get("md5Hash")     # s3fs, adlfs, gcsfs
    if etag:
        return FileVersion(size, etag_stamp(etag))
    mtime = info.get("LastModified") or info.get("last_modified") or info.get("updated") or info.get("mtime")
    if hasattr(mtime, "timestamp"):
        return FileVersion(size, int(mtime.timestamp() * 1e9))
    try:
        return FileVersion(size, int(float(mtime) * 1e9)) if mtime is not None else FileVersion(size, 0)
    except (TypeError, ValueError):
        return FileVersion(size, etag_stamp(str(mtime)))


def list_files(root: str, refresh: bool = False) -> dict[str, FileVersion]:
    """Every file under the remote ``root``: {POSIX path relative to root: FileVersion}, one LIST pass.

    Kept in memory per root (the last ``LISTINGS_KEPT`` roots) so that the loaders, the scan's cache lookups and
    the thumbnails of one scan share one listing; ``refresh`` lists again (``load_dataset`` does, at each load).
    Raises StorageError naming the URL and what to do (no such bucket, access refused, server unreachable)."""
    root = normalise_root(root)
    if not refresh:
        kept = _LISTINGS.get(root)
        if kept is not None:
            return kept[1]
    fs = filesystem(root)
    base = _fs_path(root)
    try:
        fs.invalidate_cache(base)
        found = fs.find(base, detail=True)
    except Exception as exc:  # noqa: BLE001 - every failure becomes one clear line
        raise StorageError(explain(root, exc)) from None
    files: dict[str, FileVersion] = {}
    for name, info in found.items():
        name = str(name)
        if info.get("type", "file") != "file" or not name.startswith(base + "/"):
            continue
        files[name[len(base) + 1:]] = _version_of(info)
    if not files:
        if base in {str(k) for k in found}:
            raise StorageError(f"{root} is a file, not a folder: give the prefix that holds the images")
        try:
            exists = fs.exists(base)
        except Exception as exc:  # noqa: BLE001
            raise StorageError(explain(root, exc)) from None
        if not exists:
            raise StorageError(f"{root} not found{' at ' + endpoint_of(root) if endpoint_of(root) else ''}: no "
                               "object lies under it; check the bucket and prefix")
    with _LISTINGS_LOCK:
        _LISTINGS.pop(root, None)
        _LISTINGS[root] = (time.time(), files)
        while len(_LISTINGS) > LISTINGS_KEPT:
            _LISTINGS.pop(next(iter(_LISTINGS)))
    return files


def forget_listing(root: str) -> None:
    """Drop the listing kept for ``root`` (the next ``list_files`` lists again)."""
    with _LISTINGS_LOCK:
        _LISTINGS.pop(normalise_root(root), None)


def dirs_of(files) -> set[str]:
    """Every folder that holds a file of a listing (``a``, ``a/b`` for ``a/b/c.jpg``)."""
    out: set[str] = set()
    for rel in files:
        parts = rel.split("/")[:-1]
        for k in range(1, len(parts) + 1):
            out.add("/".join(parts[:k]))
    return out


def is_file(root: str, rel: str) -> bool:
    return rel in list_files(root)


def is_dir(root: str, rel: str) -> bool:
    prefix = rel.strip("/") + "/"
    return any(k.startswith(prefix) for k in list_files(root))


# ----------------------------------------------------------------------------- one file

def file_version(root, image_id: str) -> FileVersion | None:
    """Size and version stamp of ``image_id`` under ``root`` (local or remote), None when it is missing, not a
    regular file, outside the root, or cannot be reached. A remote file is looked up in the root's listing when
    one is kept, else asked of the server (HEAD)."""
    from .paths import resolve_inside
    path = resolve_inside(root, image_id)
    if path is None:
        return None
    if not is_remote(root):
        import stat as stat_mod
        try:
            st = os.stat(path)
        except (OSError, ValueError):
            return None
        return FileVersion(st.st_size, st.st_mtime_ns) if stat_mod.S_ISREG(st.st_mode) else None
    try:
        return remote_version(root, image_id)
    except (FileNotFoundError, StorageError):
        return None


def listed_versions(root: str, image_ids: list[str]):
    """Sizes and version stamps of ``image_ids`` under a remote root from one listing (no request per file), as
    two int64 arrays; -1 size (never a cache hit) for an id that is missing or outside the root."""
    import numpy as np

    from .paths import resolve_inside
    sizes = np.full(len(image_ids), -1, np.int64)
    stamps = np.zeros(len(image_ids), np.int64)
    listing = list_files(root)
    for k, i in enumerate(image_ids):
        version = listing.get(i) if resolve_inside(root, i) is not None else None
        if version is not None:
            sizes[k], stamps[k] = version.size_bytes, version.stamp
    return sizes, stamps


def remote_version(root: str, image_id: str) -> FileVersion:
    """FileVersion of a remote file: from the root's kept listing, else a HEAD. FileNotFoundError when absent,
    StorageError when the server cannot be asked."""
    kept = _LISTINGS.get(normalise_root(root))
    if kept is not None:
        version = kept[1].get(image_id)
        if version is None:
            raise FileNotFoundError(join(root, image_id))
        return version
    url = join(normalise_root(root), image_id)
    try:
        info = filesystem(url).info(_fs_path(url))
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise StorageError(explain(url, exc)) from None
    if info.get("type", "file") != "file":
        raise FileNotFoundError(url)
    return _version_of(info)


def read_bytes(url: str, cap: int | None = None) -> bytes:
    """The bytes of the remote file ``url``: at most ``cap`` + 1 (more than ``cap`` back means over the cap).
    FileNotFoundError when it is absent; StorageError when it cannot be read."""
    fs = filesystem(url)
    try:
        if cap is None:
            return fs.cat_file(_fs_path(url))
        return fs.cat_file(_fs_path(url), start=0, end=cap + 1)
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001
        if "satisfiable" in str(exc) or "InvalidRange" in str(exc):   # a range of an empty object
            return b""
        raise StorageError(explain(url, exc)) from None


def read_head(path, n_bytes: int = HEAD_BYTES) -> bytes:
    """The first ``n_bytes`` of a local or remote file."""
    if is_remote(path):
        return read_bytes(path, n_bytes - 1)
    with open(path, "rb") as fh:
        return fh.read(n_bytes)


def open_binary(path, cap: int | None = None):
    """A binary file object of a local path (opened) or a remote URL (its bytes, at most ``cap``+1, in memory)."""
    if is_remote(path):
        return io.BytesIO(read_bytes(path, cap))
    return open(path, "rb")


def check_root(url: str) -> str:
    """The normalised URL of a remote root that can be listed and holds files (listing it, kept); StorageError
    (the URL and what to do) otherwise."""
    root = normalise_root(url)
    list_files(root, refresh=True)
    return root
