"""``python -m inspect_core test SUITE ROOT (--model FILE | --predictions FILE) [--baseline SCORES] [--junit FILE]
[--markdown FILE] [--discover] [--add-proposal N]``

Runs a model test file against a scan of ROOT and a model's scores: prints a table (test, slice, n, value,
interval, threshold, PASS/WARN/FAIL), writes JUnit XML and Markdown when asked. Exit 0 when no test fails, 1 when
one does, 2 on a usage error or an invalid test file (the message names the line and the field).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "test", help="run a model test file (slices + metrics + thresholds): PASS / WARN / FAIL, exit 1 on FAIL",
        description="Run the tests of a test file (YAML: named slices; tests of a metric on a slice against "
                    "min / max / max_drop) on a scan of ROOT and a model's scores. Exit 0 when no test fails, 1 "
                    "when one does, 2 on a usage error or an invalid test file.")
    p.add_argument("suite", help="the test file (YAML), e.g. sample_data/model_tests.yaml")
    p.add_argument("root", help="dataset root folder")
    p.add_argument("--model", help="model file (TorchScript, .pt2, or a state dict with --factory); scored through "
                                   "the workspace's score cache, the one the Model triage page uses")
    p.add_argument("--preprocess", help="preprocessing JSON (default: <model>.preprocess.json beside the model)")
    p.add_argument("--factory", help="for a state dict: module:function that builds the model")
    p.add_argument("--device", default="auto", help="auto (CUDA > MPS > CPU), cpu, cuda, mps")
    p.add_argument("--predictions", help="predictions file (CSV/Parquet/NPY; score's scores.parquet too) "
                                         "instead of --model")
    p.add_argument("--detections", help="a detector's boxes (COCO results JSON, YOLO prediction folder, CSV/Parquet "
                                        "table) for the detection metrics (map, ap50, ...); a --model whose sidecar "
                                        "says \"task\": \"detection\" is run for them")
    p.add_argument("--baseline", help="a previous model's predictions or scores file: max_drop tests compare with "
                                      "it, and --compare shows both")
    p.add_argument("--baseline-model", help="a previous model file instead of --baseline (same --preprocess rule)")
    p.add_argument("--junit", help="write JUnit XML here (one test case per test)")
    p.add_argument("--markdown", help="write a Markdown table here (for a pull-request comment)")
    p.add_argument("--compare", action="store_true", help="with a baseline: accuracy per slice for both models "
                                                          "and the images whose prediction flipped")
    p.add_argument("--discover", action="store_true",
                   help="propose slices where the model is significantly worse than overall (Benjamini-Hochberg)")
    p.add_argument("--fdr", type=float, default=None, help="false-discovery rate of --discover (default 0.05)")
    p.add_argument("--add-proposal", type=int, action="append", metavar="N",
                   help="write proposal N of --discover into the test file as a slice and a test (repeatable)")
    p.add_argument("--format", default="auto", help="dataset format: auto, folder, csv, coco, yolo")
    p.add_argument("--manifest", help="manifest CSV (csv format)")
    p.add_argument("--workspace", help="workspace base folder (scan and score caches; default: the user cache)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the score cache")
    p.set_defaults(func=run)
    return p


def _fail(message) -> int:
    from .cli import error_line
    return error_line("test", message)


def run(args) -> int:
    from .cli import EXIT, say
    from .review import ReviewStore
    from .scanner import scan
    from .suite import report
    from .suite.runner import evaluation
    from .suite.scores import ScoresError, score_file, score_model
    from .suite.spec import SuiteError, load_suite

    try:
        suite = load_suite(args.suite)
    except SuiteError as exc:
        return _fail(exc)
    if args.model and args.predictions:
        return _fail("give either --model or --predictions, not both")
    if args.baseline and args.baseline_model:
        return _fail("give either --baseline or --baseline-model, not both")
    if args.add_proposal and not args.discover:
        return _fail("--add-proposal N needs --discover (the proposals it numbers)")
    if args.add_proposal:
        from .suite.edit import inside
        if inside(args.suite, args.root):
            return _fail(f"the test file {args.suite} lies inside the dataset root {args.root}, which is never "
                         "written into: copy the test file out of the dataset, then add proposals to the copy")
    if (args.discover or args.compare) and not (args.model or args.predictions):
        return _fail("--discover and --compare need scores: give --model FILE or --predictions FILE")
    if args.compare and not (args.baseline or args.baseline_model):
        return _fail("--compare needs --baseline FILE or --baseline-model FILE")
    for name in ("junit", "markdown"):
        target = getattr(args, name)
        if target and Path(target).is_dir():
            return _fail(f"--{name} {target} is a folder; give a file name")
    root = Path(args.root)
    if not root.is_dir():
        return _fail(f"dataset root {root} is not a folder")
    from .detection.cli import detector_sidecar
    detector = detector_sidecar(args)
    if args.detections and (args.model or args.predictions):
        return _fail("--detections gives a detector's boxes; give it without --model / --predictions")
    from .suite.det_metrics import kind_mismatch
    kind = "detection" if (args.detections or detector) else "classification" if (args.model or args.predictions) \
        else None
    if kind and (mismatch := kind_mismatch(suite, kind)):
        return _fail(mismatch)
    if kind == "detection" and (args.discover or args.compare or args.baseline or args.baseline_model):
        return _fail("--discover, --compare and baselines are for classifiers; a detection run takes none of them")
    result = scan(root, format=args.format, manifest=args.manifest, workspace=args.workspace)
    detection_result = None
    if kind == "detection":
        from .cli import input_errors
        from .detection import PredictionsError
        from .detection.cli import run_model
        from .detection.triage import triage_detections
        from .model.tasks.detection import DetectorOutputError
        try:
            detection_result = (run_model(args, detector) if detector is not None
                                else triage_detections(result, args.detections))
        except (PredictionsError, DetectorOutputError, ValueError, *input_errors()) as exc:
            return _fail(exc)

    def scores_of(model, predictions, what):
        if model:
            return score_model(result, model, preprocess=args.preprocess, factory=args.factory, device=args.device,
                               use_cache=not args.no_cache)
        if predictions:
            return score_file(result, predictions)
        return None

    try:
        current = None if kind == "detection" else scores_of(args.model, args.predictions, "model")
        base = scores_of(args.baseline_model, args.baseline, "baseline")
    except ScoresError as exc:
        return _fail(exc)
    try:
        decisions = ReviewStore(result.workspace).current()
    except Exception as exc:  # noqa: BLE001 - a damaged review store: review slices see no decisions
        decisions = None
        say(f"note: review store unreadable ({' '.join(str(exc).split())[:160]}); review slices are empty",
            sys.stderr)
    ev = evaluation(result.images, result.findings, decisions, current, base, detection_result)
    run_ = ev.run(suite)
    notes = [n for r in (current, base) if r is not None for n in r.notes]
    for note in dict.fromkeys(notes):
        say(f"note: {note}", sys.stderr)
    say(report.text_table(run_.results))
    if args.junit:
        Path(args.junit).parent.mkdir(parents=True, exist_ok=True)
        Path(args.junit).write_bytes(report.junit_xml(run_.results, suite_name=Path(args.suite).stem))
        say(f"wrote JUnit XML to {args.junit}")
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(report.markdown(run_.results), encoding="utf-8")
        say(f"wrote Markdown to {args.markdown}")
    if args.compare:
        from .suite.compare import compare, flips_text, slices_text
        cmp_ = compare(suite, ev)
        say("")
        say(slices_text(cmp_))
        say(flips_text(cmp_))
    if args.discover:
        from .suite.discover import DISCOVER_DEFAULTS, discover, proposals_text
        from .suite.edit import add_to_suite
        opts = {} if args.fdr is None else {"fdr": args.fdr}
        found = discover(result.images, ev.scores, findings=result.findings, options=opts)
        say("")
        say(proposals_text(found, {**DISCOVER_DEFAULTS, **opts}))
        for k in args.add_proposal or []:
            if not 1 <= k <= len(found.proposals):
                return _fail(f"--add-proposal {k}: there are {len(found.proposals)} proposals (1..)")
            try:
                name = add_to_suite(args.suite, found.proposals.iloc[k - 1])
            except (SuiteError, OSError) as exc:
                return _fail(exc)
            say(f"added proposal {k} to {args.suite} as the test {name!r} (its slice inline)")
    return EXIT["fail_on"] if run_.n_fail else EXIT["ok"]
