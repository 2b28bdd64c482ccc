"""Command line: ``python -m inspect_core scan ROOT ...`` and ``python -m inspect_core score ROOT ...``.

Exit codes: 0 done; 1 a --fail-on rule tripped; 2 usage error or unusable dataset (one-line message).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


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

    def __init__(self, stream=sys.stderr):
        self.stream = stream
        self.live = stream.isatty()

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
    from .loaders import DatasetError
    from .scanner import scan

    rules = []
    try:
        for spec in args.fail_on or []:
            name, limit = parse_fail_on(spec)
            if name not in all_check_names() and name not in REGISTRY:
                raise ValueError(f"--fail-on '{name}': unknown check or family; known: "
                                 f"{', '.join(list(REGISTRY) + all_check_names())}")
            rules.append((name, limit))
    except ValueError as exc:
        print(f"inspect_core scan: error: {exc}", file=sys.stderr)
        return 2
    try:
        result = scan(args.root, format=args.format, manifest=args.manifest, boxes=args.boxes,
                      workspace=args.workspace, workers=args.workers, progress=_Bar(),
                      near_threshold=args.near_threshold)
        out = Path(args.out) if args.out else result.workspace / "scan"
        result.save(out)
    except (DatasetError, ValueError, OSError) as exc:
        print(f"inspect_core scan: error: {exc}", file=sys.stderr)
        return 2
    print(summary_table(result))
    print(f"\nwrote {out}/images.parquet, findings.parquet, findings.csv, pairs.parquet, summary.json")
    tripped = []
    for name, limit in rules:
        n = len(result.issues(name))
        if n > limit:
            tripped.append(f"{name}: {n} findings > {limit} allowed")
    if tripped:
        print("FAIL: " + "; ".join(tripped), file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m inspect_core", description="Dataset Inspector: scan an image dataset for problems.")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    s = sub.add_parser("scan", help="scan a dataset and write its report")
    s.add_argument("root", help="dataset folder")
    s.add_argument("--format", default="auto", choices=["auto", "folder", "csv", "coco", "yolo"])
    s.add_argument("--manifest", help="CSV or Parquet manifest (path,label[,split]) for --format csv")
    s.add_argument("--boxes", help="COCO JSON of boxes for a folder or csv dataset (default: ROOT/annotations.json)")
    s.add_argument("--out", help="output folder (default: the scan folder in the workspace)")
    s.add_argument("--workspace", help="base folder for workspaces (default: $XDG_CACHE_HOME/dataset-inspector)")
    s.add_argument("--workers", type=int, help="worker processes (default: one per core)")
    s.add_argument("--near-threshold", type=float, metavar="COSINE", help="near-duplicate cosine cut for images over "
                   "48 px; the other size bands' cuts move with it (default 0.94, set for precision; lower finds more)")
    s.add_argument("--fail-on", action="append", metavar="CHECK[:MAX_COUNT]",
                   help="exit 1 when CHECK (or a whole family) has more than MAX_COUNT findings (default 0); repeatable")
    s.set_defaults(func=cmd_scan)
    try:
        from . import cli_score
    except ImportError:
        cli_score = None
    if cli_score is not None:
        cli_score.add_parser(sub)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_usage(sys.stderr)
        return 2
    if args.command == "scan":
        return args.func(args)
    from . import cli_score
    return cli_score.run(args)


if __name__ == "__main__":
    sys.exit(main())
