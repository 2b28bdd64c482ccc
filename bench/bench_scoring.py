"""Scoring throughput: the full pipeline (JPEG decode + preprocess + DataLoader + forward + metrics) against
the bare forward pass on the same batches, for a ResNet-18- or ResNet-50-sized model at 224x224 from 640x480 JPEGs.

    .venv/bin/python bench/bench_scoring.py --n 128 --runs 3
    python bench/bench_scoring.py --arch resnet50 --n 8192 --runs 3      # on a CUDA machine

The bare forward pass gets the same preprocessed batches already on the device (float32, normalised), so
it times the model alone; the pipeline starts from the JPEG files. Also timed: the loader alone (decode +
resize, no model), the ceiling the CPU puts on the pipeline.

The pipeline must reach >= 80% of the bare forward throughput (image loading must not be the bottleneck).
Runs on the best local device (CUDA > MPS > CPU; --device to force). Each pipeline run is paired with a bare
run just before and after it; the ratio reported is the median of those paired ratios over --runs runs.
Writes bench/results/scoring.json. The ResNet-18-like model is defined here (torchvision is not used for it).
--decoder gpu|pillow|auto picks the pipeline's JPEG decoder (auto: nvJPEG when torchvision is there on a CUDA
machine); the JSON records the one asked for and the one used. The loader-only ceiling is the Pillow loader's.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.down = None
        if stride != 1 or c_in != c_out:
            self.down = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + (x if self.down is None else self.down(x)))


class Bottleneck(nn.Module):
    def __init__(self, c_in: int, width: int, stride: int):
        super().__init__()
        c_out = width * 4
        self.body = nn.Sequential(
            nn.Conv2d(c_in, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, c_out, 1, bias=False), nn.BatchNorm2d(c_out))
        self.down = None
        if stride != 1 or c_in != c_out:
            self.down = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        return torch.relu(self.body(x) + (x if self.down is None else self.down(x)))


class ResNet50Like(nn.Module):
    """ResNet-50 layout: 7x7 stem, bottleneck stages 3-4-6-3 (widths 64-128-256-512, x4 out), linear (23.5 M + head)."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                                  nn.MaxPool2d(3, 2, 1))
        layers, c = [], 64
        for i, (width, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3))):
            for b in range(blocks):
                layers.append(Bottleneck(c, width, 2 if (b == 0 and i > 0) else 1))
                c = width * 4
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.layers(self.stem(x))), 1))


class ResNet18Like(nn.Module):
    """ResNet-18 layout: 7x7 stem, 4 stages of 2 basic blocks (64-128-256-512), avg pool, linear (11.2 M params)."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                                  nn.MaxPool2d(3, 2, 1))
        layers, c = [], 64
        for i, width in enumerate((64, 128, 256, 512)):
            layers += [BasicBlock(c, width, 1 if i == 0 else 2), BasicBlock(width, width, 1)]
            c = width
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.layers(self.stem(x))), 1))


ARCHS = {"resnet18": ResNet18Like, "resnet50": ResNet50Like}
CHUNK = 256


def _make_chunk(args) -> None:
    folder, start, count, n_classes = args
    from photos import load_photos, random_crops
    images = random_crops(load_photos(), count, size=(640, 480), seed=3 + start)
    for k, im in enumerate(images):
        c = (start + k) % n_classes
        (folder / f"class_{c}").mkdir(parents=True, exist_ok=True)
        im.save(folder / f"class_{c}" / f"c{c}_{start + k:06d}.jpg", "JPEG", quality=90)


def make_dataset(folder: Path, n: int, n_classes: int) -> pd.DataFrame:
    """n 640x480 JPEGs (random crops of real photos) in class folders; made once, in parallel."""
    import multiprocessing as mp
    marker = folder / f".made_{n}_{n_classes}_v2"
    if not marker.exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        jobs = [(folder, s, min(CHUNK, n - s), n_classes) for s in range(0, n, CHUNK)]
        with mp.get_context("fork").Pool(min(len(jobs), os.cpu_count() or 1)) as pool:
            pool.map(_make_chunk, jobs)
        marker.touch()
    rows = []
    for c in range(n_classes):
        for p in sorted((folder / f"class_{c}").glob("*.jpg")):
            rows.append({"image_id": p.relative_to(folder).as_posix(), "label": f"class_{c}", "split": "train"})
    return pd.DataFrame(rows)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple MPS"
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()})"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv=None) -> int:
    from inspect_core.model.models import LoadedModel, pick_device
    from inspect_core.model.preprocess import Preprocess, image_to_array, load_image_file
    from inspect_core.model.pipeline import score_dataset
    from inspect_core.model.runtime import autocast_context, runtime_settings

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=128, help="number of 640x480 JPEGs")
    ap.add_argument("--arch", choices=sorted(ARCHS), default="resnet18")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--workers", type=int, nargs="*", default=None, help="worker counts to try (default: the default)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--decoder", choices=("auto", "pillow", "gpu"), default="auto",
                    help="JPEG decoding in the pipeline (score_dataset's decoder): nvJPEG on the GPU or Pillow")
    ap.add_argument("--data", default=str(HERE / ".data" / "scoring"))
    ap.add_argument("--out", default=str(HERE / "results" / "scoring.json"))
    args = ap.parse_args(argv)

    n_classes = 10
    root = Path(args.data)
    images = make_dataset(root, args.n, n_classes)
    device = pick_device(args.device)
    torch.manual_seed(0)
    net = ARCHS[args.arch](n_classes).eval().to(device)
    spec = Preprocess(input_size=(224, 224), class_names=tuple(f"class_{c}" for c in range(n_classes)),
                      resize="shorter_then_center_crop", resize_shorter_px=256)
    model = LoadedModel(module=net, kind="state_dict", path=Path("resnet18like"), file_sha256="bench", device=device,
                        spec=spec, factory="bench")
    base = runtime_settings(device.type, batch_size=args.batch_size)
    worker_counts = args.workers if args.workers else [base.num_workers]

    # the bare forward pass on the same batches: preprocessed beforehand, normalised, already on the device
    arrays = np.stack([image_to_array(load_image_file(root / i), spec) for i in images["image_id"]])
    batches = [torch.from_numpy(arrays[s:s + base.batch_size]).to(device)
               for s in range(0, len(arrays), base.batch_size)]
    sync(device)

    cpu_s: dict[str, list[float]] = {"bare": [], "pipeline_workers_0": []}
    decoders_used: set[str] = set()

    def bare() -> float:
        t, c = time.perf_counter(), time.process_time()
        with torch.inference_mode(), autocast_context(base):
            for b in batches:
                net(b).float().cpu()
        sync(device)
        cpu_s["bare"].append(time.process_time() - c)
        return len(arrays) / (time.perf_counter() - t)

    def loader_only(workers: int) -> float:
        """The loader alone (open, decode, resize, crop, collate; pinned when the device pins): the CPU's ceiling."""
        from torch.utils.data import DataLoader
        from inspect_core.model.pipeline import ImageFiles, _collate
        settings = runtime_settings(device.type, batch_size=base.batch_size, workers=workers)
        t = time.perf_counter()
        for _ in DataLoader(ImageFiles(root, list(images["image_id"]), spec), batch_size=settings.batch_size,
                            shuffle=False, collate_fn=_collate, **settings.loader_kwargs()):
            pass
        return len(images) / (time.perf_counter() - t)

    def pipeline(workers: int) -> float:
        t, c = time.perf_counter(), time.process_time()
        res = score_dataset(model, root, images, batch_size=base.batch_size, workers=workers, use_cache=False,
                            decoder=args.decoder)
        decoders_used.add(str(res.source.get("decoder")))
        dt = time.perf_counter() - t
        if workers == 0:   # with workers the decoding CPU time is spent in child processes
            cpu_s["pipeline_workers_0"].append(time.process_time() - c)
        assert res.table["error"].isna().all()
        return len(images) / dt

    bare()                                 # warm-up (allocator, cudnn autotune, thread pools)
    pipeline(worker_counts[0])
    bare_runs: list[float] = []
    pipe_runs: dict[int, list[float]] = {w: [] for w in worker_counts}
    paired: dict[int, list[float]] = {w: [] for w in worker_counts}
    for _ in range(args.runs):
        # each pipeline run is paired with a bare run just before and after it (the CPU may be shared)
        for w in worker_counts:
            before = bare()
            pipe = pipeline(w)
            after = bare()
            bare_runs += [before, after]
            pipe_runs[w].append(pipe)
            paired[w].append(pipe / ((before + after) / 2))
    loader_runs = {w: [loader_only(w) for _ in range(args.runs)] for w in worker_counts}
    bare_med = statistics.median(bare_runs)
    rows = []
    for w, runs in pipe_runs.items():
        med = statistics.median(runs)
        rows.append({"workers": w, "pipeline_img_per_s": round(med, 2), "ratio_of_medians": round(med / bare_med, 3),
                     "ratio_to_bare": round(statistics.median(paired[w]), 3),
                     "paired_ratios": [round(r, 3) for r in paired[w]],
                     "loader_only_img_per_s": round(statistics.median(loader_runs[w]), 2),
                     "runs_img_per_s": [round(r, 2) for r in runs]})
    cpu = {k: round(statistics.median(v), 3) for k, v in cpu_s.items() if v}
    if "pipeline_workers_0" in cpu:
        cpu["ratio_bare_to_pipeline_cpu_time"] = round(cpu["bare"] / cpu["pipeline_workers_0"], 3)
    out = {"device": device_name(device), "median_process_cpu_s": cpu, "device_type": device.type, "n_images": len(images),
           "image_size_px": [640, 480], "input_size_px": [224, 224], "model": f"{args.arch}-like ({sum(p.numel() for p in net.parameters()) / 1e6:.1f}M params)",
           "cpu_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
           "batch_size": base.batch_size, "amp": base.use_amp, "pin_memory": base.pin_memory,
           "decoder_asked": args.decoder, "decoder": sorted(decoders_used),
           "bare_forward_img_per_s": round(bare_med, 2), "bare_runs_img_per_s": [round(r, 2) for r in bare_runs],
           "pipeline": rows, "runs": args.runs, "torch": torch.__version__,
           "command": "python bench/bench_scoring.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    sys.stdout.write(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
