"""The detection part of ``python -m inspect_core score ROOT --detections FILE|DIR [--out DIR]``.

``add_arguments(parser)`` adds the options this needs; ``run(args)`` runs ``triage_detections``, writes the
tables (``DetectionResult.save``) and prints a short summary. Exit codes are inspect_core.cli's: 0 done,
1 a ``--fail-on`` rule tripped (a detection check, e.g. ``spurious_box:0``), 2 an input error (one line).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options ``run`` reads; one the parser already has (``score``'s ``--out``, say) is left as it is."""
    options = [
        (("--detections",), {"default": None,
                             "help": "detector output: a COCO results JSON, a YOLO prediction folder (class cx cy w h "
                                     "conf) or a CSV/Parquet table (image_id, category, box_x_px, box_y_px, box_w_px, "
                                     "box_h_px, score)"}),
        (("--out",), {"default": None, "help": "folder for the tables (default: the workspace's detection/)"}),
        (("--split",), {"default": None, "help": "evaluate only the images of this split"}),
        (("--workspace",), {"default": None, "help": "workspace base folder"}),
        (("--fail-on",), {"action": "append", "default": [], "metavar": "CHECK[:MAX]",
                          "help": "exit 1 when a detection check has more than MAX findings (default 0)"}),
    ]
    have = set(parser._option_string_actions)
    for flags, kw in options:
        if not have.intersection(flags):
            parser.add_argument(*flags, **kw)


def detector_sidecar(args):
    """(spec, sidecar path) when ``args.model`` is a detector: its sidecar (``--preprocess`` or the one beside it)
    says ``"task": "detection"``; else None (a classifier, or no usable sidecar: ``score`` reports that)."""
    model = getattr(args, "model", None)
    if not model or getattr(args, "predictions", None):
        return None
    from ..model.preprocess import PreprocessError, find_sidecar, read_preprocess
    path = Path(args.preprocess) if getattr(args, "preprocess", None) else find_sidecar(model)
    try:
        spec = read_preprocess(path) if path is not None else None
    except (PreprocessError, OSError):
        return None
    if spec is None or str(spec.extra.get("task", "")) != "detection":
        return None
    return spec, path


def run_model(args, detector):
    """Run the detector of ``--model`` over the dataset and triage its boxes (``tasks.detection.run_detector``)."""
    from ..loaders import load_dataset
    from ..model.tasks.detection import load_detector, run_detector
    spec, _ = detector
    ds = load_dataset(args.root, format=getattr(args, "format", "auto") or "auto",
                      manifest=getattr(args, "manifest", None))
    cap = {} if getattr(args, "max_model_mb", None) is None else {"max_bytes": int(args.max_model_mb * 1e6)}
    model = load_detector(args.model, spec, device=getattr(args, "device", None) or "auto",
                          kind=getattr(args, "model_format", None), **cap)
    result, _scores = run_detector(ds, model, split=getattr(args, "split", None),
                                   batch_size=getattr(args, "batch_size", None), workers=getattr(args, "workers", None))
    return result


def summary_lines(result) -> list[str]:
    s = result.summary
    m = s["metrics"]
    lines = [(f"detection triage: {s['n_images']:,} images, {s['n_annotations']:,} annotated boxes, "
              f"{s['n_predictions']:,} predicted ({s['predictions_form']})"),
             ("mAP@[.5:.95] {map:.3f}  AP50 {ap50:.3f}  AP75 {ap75:.3f}  AP small/medium/large "
              "{ap_small:.3f}/{ap_medium:.3f}/{ap_large:.3f}").format(**m),
             "errors (TIDE, IoU 0.5): " + ", ".join(f"{k} {v}" for k, v in s["tide_counts"].items()),
             "likely annotation errors: " + (", ".join(f"{k} {v}" for k, v in s["annotation_errors"].items())
                                             or "none")]
    if len(result.problems):
        lines.append(f"{len(result.problems):,} problem(s) with the predictions: see detection_problems.csv")
    return lines


def run(args) -> int:
    from ..cli import EXIT, error_line, input_errors, parse_fail_on, say
    from ..paths import is_within
    from ..workspace import workspace_dir
    from .errors import CHECKS
    from .formats import FORMAT_CHECKS, PredictionsError
    from ..model.tasks.detection import DetectorOutputError
    from .triage import triage_detections

    detector = None if getattr(args, "detections", None) else detector_sidecar(args)
    if not getattr(args, "detections", None) and detector is None:
        return error_line("score", "no detections given: pass --detections FILE|DIR (a COCO results JSON, a YOLO "
                                   "prediction folder or a CSV/Parquet table) or --model DETECTOR (its sidecar "
                                   "with \"task\": \"detection\")")
    try:
        rules = []
        for spec in getattr(args, "fail_on", None) or []:
            name, limit = parse_fail_on(spec)
            if name not in CHECKS and name not in FORMAT_CHECKS:
                raise ValueError(f"--fail-on '{name}': unknown detection check; known: "
                                 f"{', '.join(list(CHECKS) + list(FORMAT_CHECKS))}")
            rules.append((name, limit))
        out = (Path(args.out) if getattr(args, "out", None)
               else workspace_dir(args.root, getattr(args, "workspace", None)) / "detection")
        if is_within(out, args.root):
            raise ValueError(f"--out {out} lies inside the dataset root; choose a folder outside the dataset "
                             "(the dataset is never written into)")
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {out} is a file, not a folder; give a folder to write the tables into")
        if detector is not None:
            result = run_model(args, detector)
        else:
            result = triage_detections(args.root, args.detections, split=getattr(args, "split", None))
        result.save(out)
    except (PredictionsError, DetectorOutputError, ValueError, *input_errors()) as exc:
        return error_line("score", exc)
    for line in summary_lines(result):
        say(line)
    say(f"wrote {out}/detection_images.csv, detection_errors.csv, detection_annotations.csv, "
        "detection_predictions.csv, detection_per_class.csv, detection_pr_curves.csv, detection_summary.json")
    findings = result.findings()
    tripped = [f"{n}: {c} findings > {lim} allowed" for n, lim in rules
               if (c := int((findings["check"] == n).sum())) > lim]
    if tripped:
        say("FAIL: " + "; ".join(tripped), sys.stderr)
        return EXIT["fail_on"]
    return EXIT["ok"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inspect_core.detection.cli", description=__doc__.splitlines()[0])
    parser.add_argument("root", help="dataset root (COCO, YOLO, or folder + annotations.json)")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
