"""Command line: ``dataset-inspector scan ROOT ...``, ``dataset-inspector score ROOT ...`` and
``dataset-inspector app [ROOT]`` (``python -m inspect_core ...`` is the same command).

Each subcommand is one ``add_<name>(subparsers)`` function listed in ``SUBCOMMANDS``; each imports what it needs
(torch, Streamlit) only when it runs.

Exit codes (``EXIT``), the same for both commands, so that a CI job can tell a gate from a crash:
0 done; 1 a --fail-on rule tripped; 2 usage or input error (a one-line message: bad option, unusable dataset,
input over a cap, unreadable file); 3 internal error (a one-line message naming a log file that holds the
traceback; ``--debug`` prints it instead); 130 interrupted.
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import traceback
from pathlib import Path

from .textsafe import safe_text

EXIT = {"ok": 0, "fail_on": 1, "input_error": 2, "internal_error": 3, "interrupted": 130}
def say(text: str = "", stream=None) -> None:
    """Print one message, escaped (``safe_text``)."""
    (stream or sys.stdout).write(safe_text(text) + "\n")


def error_line(command: str, message) -> int:
    """The one-line message of an input error on stderr; returns exit code 2."""
    say(f"inspect_core {command}: error: {' '.join(str(message).split())}", sys.stderr)
    return EXIT["input_error"]


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2
        self.exit(EXIT["input_error"], safe_text(f"{self.prog}: error: {' '.join(message.split())}") + "\n")


def parse_fail_on(spec: str) -> tuple[str, int]:
    """'CHECK' -> (CHECK, 0); 'CHECK:N' -> (CHECK, N): trips when more than N findings of CHECK (or family)."""
    name, _, count = spec.partition(":")
    if not name:
        raise ValueError(f"--fail-on '{spec}': give CHECK or CHECK:MAX_COUNT")
    try:
        limit = int(count) if count else 0
    except ValueError:
        raise ValueError(f"--fail-on '{spec}': MAX_COUNT must be a whole number") from None
    if limit < 0:
        raise ValueError(f"--fail-on '{spec}': MAX_COUNT must be 0 or more")
    return name, limit


class _Bar:
    """A progress bar on stderr (only when it is a terminal)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr     # looked up now: sys.stderr may have been replaced since import
        self.live = self.stream.isatty()

    def __call__(self, done: int, total: int) -> None:
        if not self.live or total == 0:
            return
        width = 30
        filled = int(width * done / total)
        self.stream.write(f"\rscanning [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()


def summary_table(result) -> str:
    s = result.summary
    lines = [f"{s['n_images']} images, {s['n_classes']} classes, splits {s['splits']}, {s['n_boxes']} boxes "
             f"({s['files_read']} files read, {s['files_from_cache']} from cache, {s['elapsed_s']} s)", ""]
    f = result.findings
    if f.empty:
        lines.append("no findings")
        return "\n".join(lines)
    counts = f.groupby(["family", "check"]).size().reset_index(name="n")
    w = max(len(c) for c in counts["check"]) + 2
    lines.append(f"{'family':<12}{'check':<{w}}{'findings':>8}")
    for r in counts.itertuples(index=False):
        lines.append(f"{r.family:<12}{r.check:<{w}}{r.n:>8}")
    lines.append(f"{'total':<12}{'':<{w}}{len(f):>8}")
    return "\n".join(lines)


def cmd_scan(args) -> int:
    from .checks import REGISTRY, all_check_names
    from .scanner import scan

    rules = []
    try:
        for spec in args.fail_on or []:
            name, limit = parse_fail_on(spec)
            if name not in all_check_names() and name not in REGISTRY:
                raise ValueError(f"--fail-on '{name}': unknown check or family; known: "
                                 f"{', '.join(list(REGISTRY) + all_check_names())}")
            rules.append((name, limit))
        if args.near_threshold is not None:
            from .checks.context import near_rule
            near_rule(args.near_threshold)          # a cut that is no cosine is a usage error (exit 2)
        if args.cluster is not None:
            from .cluster.engine import parse_cluster  # imports no Ray
            parse_cluster(args.cluster)
    except ValueError as exc:
        return error_line("scan", exc)
    try:
        result = scan(args.root, format=args.format, manifest=args.manifest, boxes=args.boxes,
                      workspace=args.workspace, workers=args.workers, progress=_Bar(),
                      near_threshold=args.near_threshold, cluster=args.cluster)
        out = Path(args.out) if args.out else result.workspace / "scan"
        result.save(out)
    except input_errors() as exc:
        return error_line("scan", exc)
    say(summary_table(result))
    for note in result.summary.get("notes", []):
        say(f"note: {note}")
    say(f"\nwrote {out}/images.parquet, findings.parquet, findings.csv, pairs.parquet, summary.json")
    tripped = []
    for name, limit in rules:
        n = len(result.issues(name))
        if n > limit:
            tripped.append(f"{name}: {n} findings > {limit} allowed")
    if tripped:
        say("FAIL: " + "; ".join(tripped), sys.stderr)
        return EXIT["fail_on"]
    return EXIT["ok"]


def input_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean bad input, not a bug: exit 2 with their message. Each names what to fix."""
    from .limits import LimitError
    from .loaders import DatasetError
    from .review import ReviewStoreError
    from .storage import StorageError
    from .workspace import WorkspaceError
    errors: list = [DatasetError, LimitError, WorkspaceError, ReviewStoreError, StorageError, OSError]
    return tuple(errors + [e for e in _model_input_errors() if e not in errors])


MODEL_INPUT_ERRORS = ("ModelLoadError", "PreprocessError", "PredictionsError")


def _model_input_errors() -> list[type]:
    """The model wing's bad-input errors (MODEL_INPUT_ERRORS), found by name in whichever module of
    inspect_core.model defines them. Looked up only once an exception is being handled, so that a scan never
    imports torch."""
    import importlib
    import pkgutil

    from . import model
    found: list[type] = []
    for info in pkgutil.iter_modules(model.__path__):
        try:
            module = importlib.import_module(f"{model.__name__}.{info.name}")
        except Exception:  # noqa: BLE001 - a module that cannot be imported raised none of its errors
            continue
        for name in MODEL_INPUT_ERRORS:
            error = getattr(module, name, None)
            if isinstance(error, type) and issubclass(error, BaseException) and error not in found:
                found.append(error)
    return found


def _log_internal_error(command: str, argv) -> Path | None:
    """Write the traceback being handled to a log file in the temp folder; its path, or None when it cannot be
    written."""
    try:
        fd, name = tempfile.mkstemp(prefix=f"dataset-inspector-{command}-error-", suffix=".log")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(f"{datetime.datetime.now(datetime.UTC).isoformat()} python -m inspect_core "
                     f"{' '.join(map(str, argv))}\n\n")
            fh.write(traceback.format_exc())
        return Path(name)
    except OSError:
        return None


def run_guarded(command: str, func, args, argv) -> int:
    """Run one command: input errors are one line and exit 2; anything else is an internal error: one line
    naming a log file with the traceback (or the traceback itself with --debug), exit 3. Never a traceback on
    the terminal for bad input."""
    try:
        return func(args)
    except KeyboardInterrupt:
        say(f"inspect_core {command}: interrupted", sys.stderr)
        return EXIT["interrupted"]
    except input_errors() as exc:
        if getattr(args, "debug", False):
            traceback.print_exc()
        return error_line(command, exc)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: a bug, reported as one
        if getattr(args, "debug", False):
            traceback.print_exc()
            say(f"inspect_core {command}: internal error ({type(exc).__name__})", sys.stderr)
            return EXIT["internal_error"]
        log = _log_internal_error(command, argv)
        what = ("out of memory" if isinstance(exc, MemoryError)
                else f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}")
        where = f"the traceback is in {log}" if log else "rerun with --debug for the traceback"
        say(f"inspect_core {command}: internal error ({what}); this is a bug, not a problem with your data: "
            f"{where}", sys.stderr)
        return EXIT["internal_error"]


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--limit", action="append", metavar="NAME=N", default=[],
                   help="raise or lower a cap on the input (repeatable); names and defaults in "
                        "inspect_core/limits.py and the README, e.g. --limit max_file_bytes=2147483648")
    p.add_argument("--storage-option", action="append", metavar="KEY=VALUE", default=[],
                   help="an fsspec option for a dataset on object storage (s3://, gs://, az://), repeatable; e.g. "
                        "endpoint_url=http://127.0.0.1:9000 (VALUE read as JSON when it parses)")
    p.add_argument("--debug", action="store_true", help="print the traceback of an internal error")


def add_scan(sub) -> argparse.ArgumentParser:
    s = sub.add_parser("scan", help="scan a dataset and write its report")
    s.add_argument("root", help="dataset folder, or a URL on object storage: s3://BUCKET/PREFIX (gs://, az://)")
    s.add_argument("--format", default="auto", choices=["auto", "folder", "csv", "coco", "yolo"])
    s.add_argument("--manifest", help="CSV or Parquet manifest (path,label[,split]) for --format csv")
    s.add_argument("--boxes", help="COCO JSON of boxes for a folder or csv dataset (default: ROOT/annotations.json)")
    s.add_argument("--out", help="output folder (default: the scan folder in the workspace)")
    s.add_argument("--workspace", help="base folder for workspaces (default: $XDG_CACHE_HOME/dataset-inspector)")
    s.add_argument("--workers", type=int, help="worker processes (default: one per core)")
    s.add_argument("--cluster", metavar="ADDRESS", help="read the files on Ray: local:N (a Ray on this machine, N "
                   "CPUs), auto (the cluster this machine is in), ray://HOST:PORT or HOST:PORT (needs [cluster])")
    s.add_argument("--near-threshold", type=float, metavar="COSINE", help="near-duplicate cosine cut for images over "
                   "48 px; the other size bands' cuts move with it (default 0.94, set for precision; lower finds more)")
    s.add_argument("--fail-on", action="append", metavar="CHECK[:MAX_COUNT]",
                   help="exit 1 when CHECK (or a whole family) has more than MAX_COUNT findings (default 0); "
                        "repeatable")
    s.set_defaults(func=cmd_scan)
    return s


def add_score(sub) -> argparse.ArgumentParser | None:
    try:
        from . import cli_score
    except ImportError:
        return None
    return cli_score.add_parser(sub)


def add_app(sub) -> argparse.ArgumentParser:
    a = sub.add_parser("app", help="open the web app on a dataset folder (the app `make app` opens)",
                       description="Open the Dataset Inspector web app (Streamlit) on ROOT; stop it with Ctrl+C.")
    a.add_argument("root", nargs="?", help="dataset folder or s3://BUCKET/PREFIX to open (default: choose in the app)")
    a.add_argument("--format", choices=["auto", "folder", "csv", "coco", "yolo"], help="dataset format (default auto)")
    a.add_argument("--port", type=int, help="port to serve on (default 8501, or the next free one)")
    a.add_argument("--address", help="address to listen on (default 127.0.0.1: this machine only)")
    a.set_defaults(func=cmd_app)
    return a


def cmd_app(args) -> int:
    import subprocess

    from .webapp import streamlit_command

    from .storage import is_remote
    if args.root is not None and not is_remote(args.root) and not Path(args.root).is_dir():
        return error_line("app", f"no dataset folder {args.root}; give the folder that holds the images")
    try:
        argv = streamlit_command(args.root, args.format, args.port, args.address)
    except FileNotFoundError as exc:
        return error_line("app", exc)
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "posix":
        os.execv(argv[0], argv)        # the command becomes the app: Ctrl+C and kill reach Streamlit itself
    try:
        return subprocess.call(argv)
    except KeyboardInterrupt:
        return EXIT["ok"]


def add_test(sub) -> argparse.ArgumentParser:
    from . import cli_test
    return cli_test.add_parser(sub)


# The subcommands, in the order `--help` lists them: one add_<name>(subparsers) each.
SUBCOMMANDS = (add_scan, add_score, add_test, add_app)


def _prog() -> str:
    return "dataset-inspector" if Path(sys.argv[0]).name.startswith("dataset-inspector") else "python -m inspect_core"


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=_prog(), description="Dataset Inspector: scan an image dataset for problems.")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    for add in SUBCOMMANDS:
        parser = add(sub)
        if parser is not None:
            _add_common(parser)
    return p


def main(argv=None) -> int:
    from .limits import export_to_environment, set_limits

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_usage(sys.stderr)
        return EXIT["input_error"]
    try:
        set_limits(args.limit)
        export_to_environment()
        from .storage import set_storage_options
        set_storage_options(getattr(args, "storage_option", []))
    except ValueError as exc:
        return error_line(args.command, exc)
    return run_guarded(args.command, args.func, args, argv)


if __name__ == "__main__":
    sys.exit(main())
