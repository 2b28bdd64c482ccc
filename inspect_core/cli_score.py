"""``python -m inspect_core score ROOT --model FILE [--preprocess FILE] [--predictions FILE] --out DIR``

Scores every image with a trained model (or reads a predictions file), writes DIR/scores.parquet,
DIR/label_issues.csv (+ .parquet) and DIR/sanity.json, and prints a short summary. Exit 2 with a
one-line message on usage errors or a model that cannot be loaded. The work is ``model.triage``'s (score, label
issues, metrics, sanity, save); this module reads the arguments and prints the summary.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "score", help="score every image with a trained model and rank likely label errors",
        description="Score every image with a trained classifier (TorchScript, torch.export .pt2, or state dict + "
                    "--factory) or a predictions file, and rank likely label errors. TorchScript and .pt2 files "
                    "are programs: load only files you trust.")
    p.add_argument("root", help="dataset root folder")
    p.add_argument("--model", help="model file: TorchScript, .pt2, or a state dict (then give --factory)")
    p.add_argument("--factory", help="for a state dict: module:function that builds the model")
    p.add_argument("--model-format", choices=("auto", "torchscript", "export", "state_dict"), default="auto",
                   help="what the model file is; auto: a state dict when --factory is given, a torch.export program "
                        "for a .pt2 name, else TorchScript. A file whose contents disagree is refused unread")
    p.add_argument("--max-model-mb", type=float, default=None,
                   help="refuse model files larger than this (default 8589.9 MB, i.e. 8 GiB)")
    p.add_argument("--preprocess", help="preprocessing JSON (default: <model>.preprocess.json beside the model)")
    p.add_argument("--predictions", help="CSV/Parquet/NPY of per-class probabilities or logits (no model needed)")
    p.add_argument("--predictions-order", help="for .npy predictions: text file with one image_id per row")
    p.add_argument("--trained-on", default=None,
                   help="the split(s) the model was trained on, comma-separated, or all / none (default: train); "
                        "their probabilities are in-sample, so their label issues are ranked apart")
    p.add_argument("--probe", action="store_true",
                   help="label issues of the training split from out-of-fold probabilities of a 5-fold linear "
                        "probe on the model's embeddings (no retraining)")
    p.add_argument("--oof-predictions", action="append", default=None, metavar="FILE",
                   help="your own cross-validated (out-of-fold) predictions for the training split, in the "
                        "predictions-file format: one file with a fold column, or one file per fold (repeat)")
    p.add_argument("--out", required=True, help="output folder (outside the dataset)")
    p.add_argument("--format", default="auto", help="dataset format: auto, folder, csv, coco, yolo")
    p.add_argument("--manifest", help="manifest CSV (csv format)")
    p.add_argument("--device", default="auto", help="auto (CUDA > MPS > CPU), cpu, cuda, mps")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--workers", type=int, default=None, help="image decoding worker processes")
    p.add_argument("--cluster", default=None, metavar="local:N|auto|ray://HOST:PORT",
                   help="score on a Ray cluster (pip install 'dataset-inspector[cluster]'): decoding on its CPU "
                        "workers, the model on its GPUs (else on CPU workers); the same outputs and score cache")
    p.add_argument("--decoder", choices=("auto", "pillow", "gpu"), default="auto",
                   help="JPEG decoding: auto (nvJPEG on the GPU when the model is on CUDA and torchvision is "
                        "installed, else Pillow), pillow, or gpu (ask for nvJPEG; falls back to Pillow with a note)")
    p.add_argument("--workspace", help="workspace base folder for the score cache (default: the user cache)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the score cache")
    p.add_argument("--top", type=int, default=10, help="how many worst-loss images to print")
    from .detection.cli import add_arguments as add_detection_arguments
    add_detection_arguments(p)          # --detections (a detector's boxes instead of a classifier), --split, --fail-on
    p.set_defaults(func=run)
    return p


SPLIT_NAMES = {"train", "training", "val", "valid", "validation", "test", "testing", "dev", "holdout"}


def _fail(message: str) -> int:
    from .cli import EXIT, say
    say(f"error: {' '.join(str(message).split())}", sys.stderr)
    return EXIT["input_error"]


def _read_preprocess_checked(path):
    """``read_preprocess`` of a file checked first: a regular file within ``max_text_bytes``, JSON nested at most
    ``max_json_depth`` deep (LimitError / PreprocessError with one line otherwise)."""
    from .limits import load_json, read_input_bytes
    from .model.preprocess import PreprocessError, read_preprocess

    data = read_input_bytes(path, "preprocess file", "max_text_bytes")
    try:
        load_json(data, f"preprocess file {path}")
    except ValueError as exc:   # LimitError too
        raise PreprocessError(str(exc)) from None
    return read_preprocess(path)


def _inside(child: Path, parent: Path) -> bool:
    child, parent = Path(os.path.realpath(child)), Path(os.path.realpath(parent))
    return child == parent or parent in child.parents


def _load_dataset(args):
    try:
        from . import load_dataset  # type: ignore[attr-defined]
    except ImportError:
        from .loaders import load_dataset
    return load_dataset(args.root, format=args.format, manifest=args.manifest)


def run(args) -> int:
    from .model.models import ModelLoadError, load_model
    from .limits import LimitError, read_input_bytes
    from .model.predictions import PredictionsError
    from .model.preprocess import PreprocessError, find_sidecar, sidecar_name
    from .model.triage import score, triage
    from .workspace import workspace_dir

    from .cluster.score import ClusterError, cluster_scoring     # imports no Ray: that waits for --cluster
    from . import storage
    remote = storage.is_remote(args.root)       # s3://bucket/prefix: checked when the dataset is loaded
    root = args.root if remote else Path(args.root)
    if not remote and not root.is_dir():
        return _fail(f"dataset root {root} is not a folder")
    from .detection.cli import detector_sidecar, run as run_detections
    if getattr(args, "detections", None):
        if args.model or args.predictions:
            return _fail("--detections scores a detector's boxes; give it without --model / --predictions")
        return run_detections(args)
    if detector_sidecar(args) is not None:          # --model is a detector (its sidecar says "task": "detection")
        return run_detections(args)
    if getattr(args, "fail_on", None) or getattr(args, "split", None):
        return _fail("--fail-on and --split go with --detections; for a classifier, gate on a test file "
                     "(`test SUITE ROOT`)")
    if not args.model and not args.predictions:
        return _fail("give --model FILE (with its preprocessing) or --predictions FILE")
    if args.model and args.predictions:
        return _fail("give either --model or --predictions, not both")
    if args.cluster:
        if not args.model:
            return _fail("--cluster runs a model; a --predictions file needs no cluster")
        if args.decoder == "gpu":
            return _fail("--decoder gpu decodes beside a local GPU; with --cluster the workers decode with Pillow "
                         "(leave --decoder out)")
        try:
            cluster_scoring(args.cluster)           # a value of the wrong form fails here, before any work
        except ClusterError as exc:
            return _fail(str(exc))
    out = Path(args.out)
    if not remote and _inside(out, root):
        return _fail(f"--out {out} lies inside the dataset root; choose a folder outside the dataset")
    if out.exists() and not out.is_dir():
        return _fail(f"--out {out} is a file, not a folder; give a folder to write the results into")
    try:
        ds = _load_dataset(args)
    except Exception as exc:  # noqa: BLE001 - loader errors are user errors here
        return _fail(f"could not load dataset {root}: {' '.join(str(exc).split())[:200]}")
    images = ds.images
    if len(images) == 0:
        return _fail(f"no images found in {root} (format {args.format}); check the folder and --format / --manifest")
    workspace, model, source = None, None, {}
    predictions_options = {"dataset_classes": list(ds.classes)}
    try:
        if args.model:
            pre_path = Path(args.preprocess) if args.preprocess else find_sidecar(args.model)
            if pre_path is None:
                return _fail(f"no preprocessing for {args.model}: put {sidecar_name(args.model)} beside it or give "
                             "--preprocess FILE")
            spec = _read_preprocess_checked(pre_path)
            labels = images["label"].dropna().astype(str) if "label" in images else []
            if len(labels) and not set(labels) & set(map(str, spec.class_names)):
                split_like = sorted(set(labels) & SPLIT_NAMES)
                if split_like:
                    return _fail(f"the dataset's labels ({', '.join(sorted(set(labels))[:6])}) are mostly split names "
                                 f"({', '.join(split_like)}): the folders were not read as split/class folders, "
                                 "probably because of a folder that is not a split; move it out or give --format")
                return _fail(f"the model's classes in {pre_path} ({', '.join(list(spec.class_names)[:5])}) match none "
                             f"of the dataset's labels ({', '.join(sorted(set(labels))[:5])}); fix class_names there "
                             "(the dataset's label names, in the model's output order)")
            if not args.no_cache:
                try:
                    workspace = workspace_dir(ds.root, base=args.workspace)
                except ValueError as exc:
                    return _fail(" ".join(str(exc).split()))
            cap = {} if args.max_model_mb is None else {"max_bytes": int(args.max_model_mb * 1e6)}
            model = load_model(args.model, spec, factory=args.factory, kind=args.model_format,
                               device="cpu" if args.cluster else args.device, **cap)   # the cluster runs it
            source = {"preprocess_path": str(pre_path)}
        else:
            if args.preprocess:
                predictions_options["class_names"] = list(_read_preprocess_checked(args.preprocess).class_names)
            if args.predictions_order:
                text = read_input_bytes(args.predictions_order, "predictions order file", "max_text_bytes")
                predictions_options["order"] = [ln.strip() for ln in text.decode("utf-8", errors="replace").splitlines()
                                                if ln.strip()]
        scoring_options = {"batch_size": args.batch_size, "workers": args.workers, "decoder": args.decoder}
        if args.cluster:
            scoring_options.update(decoder="pillow", outputs=cluster_scoring(
                args.cluster, workspace, options={"model_batch_size": args.batch_size}))
        scores = score(images, root=ds.root, model=model, predictions=args.predictions, workspace=workspace,
                       predictions_options=predictions_options, scoring_options=scoring_options)
    except (ModelLoadError, PreprocessError, PredictionsError, LimitError, ClusterError) as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"{exc}")
    try:
        result = triage(images, scores=scores, model=model, workspace=workspace, trained_on=args.trained_on,
                        probe=args.probe, oof_predictions=args.oof_predictions or (),
                        predictions_options={"dataset_classes": list(ds.classes)}, source=source)
    except (PredictionsError, LimitError, OSError) as exc:
        if not args.oof_predictions:        # only the out-of-fold files are read here
            raise
        return _fail(f"--oof-predictions: {exc}")
    result.save(out)
    say_summary(result, images, out, args.top)
    from .cli import EXIT
    return EXIT["ok"]


def say_summary(result, images, out: Path, top: int) -> None:
    """The short summary the command prints: images scored, baselines, alarms, label issues, the worst losses."""
    from .cli import say
    scores, issues = result.scores, result.issues
    table = scores.table
    n_err = int(table["error"].notna().sum())
    lines = [f"scored {len(table)} images ({n_err} with errors) in {scores.elapsed_s:.1f} s"
             f"{' (from cache)' if scores.from_cache else ''}; source: {scores.source.get('kind')}"]
    if scores.source.get("model_form"):
        lines.append(f"model loaded as {scores.source['model_form']}")
    if scores.source.get("preprocess_path"):
        lines.append(f"preprocessing: {scores.source['preprocess_path']}")
    if "label" not in images or images["label"].isna().all():
        lines.append("no image has a label, so there are no losses or label issues; the predictions are in "
                     f"{out / 'scores.parquet'}")
    for b in result.baselines:
        lines.append(f"  {b.split}: loss {b.model_loss:.3f} (uniform {b.uniform_loss:.3f}, prior {b.prior_loss:.3f}), "
                     f"accuracy {b.model_accuracy:.1%} (majority {b.majority_accuracy:.1%})")
    alarms = result.class_alarms
    for level, verdict in zip(alarms["level"], alarms["verdict"]):
        if level != "ok":
            lines.append(f"  per-class alarm ({level}): {verdict}")
    n_in_flags = int((issues["cl_issue"] & issues["in_sample"]).sum())
    lines.append(f"label issues: {int(issues['cl_issue'].sum()) - n_in_flags} flagged by confident learning among "
                 f"out-of-sample images, {n_in_flags} among in-sample ones (ranked apart; column in_sample); "
                 f"{len(result.listed)} listed in {out / 'label_issues.csv'}")
    for note in result.label_notes:
        lines.append(f"  {note}")
    for finding in result.model_problems["finding"]:
        lines.append(f"  model problem: {finding}")
    lines.append(f"worst {min(top, len(issues))} by loss:")
    for row in issues.head(top).itertuples():
        lines.append(f"  {row.loss:7.3f}  {row.image_id}  given {row.given_label} -> suggested {row.suggested_label}")
    for note in scores.notes:
        lines.append(f"note: {note}")
    say("\n".join(lines))


def main(argv=None) -> int:
    """``score`` alone, with the exit codes and error handling of ``python -m inspect_core``."""
    from .cli import main as cli_main
    return cli_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
