"""Scoring on Ray with a GPU (issue 15 item 4 and the 100M plan's "decode workers per GPU"), on a lent CUDA machine:
a ResNet-50- or ResNet-18-layout TorchScript model at 224 x 224 from 640 x 480 JPEGs (random crops of real photos,
bench_scoring.make_dataset), timed four ways on the same files:

1. the bare forward pass (preprocessed batches already on the GPU, float16 autocast, the runtime's batch);
2. the loader alone (read, Pillow decode, resize 256, crop 224) with 1, 2, 4, 8 and all-but-one DataLoader workers:
   images/s per worker, hence the decode workers one GPU needs (bare rate / per-worker rate);
3. the local pipeline (``score_dataset``, its defaults on CUDA: all cores but one decode);
4. ``score --cluster local:N``'s path (``cluster_scoring``): Ray Data decode tasks on the CPUs, one ``num_gpus=1``
   model actor, for N = all cores and N = half of them (Ray started once per N, its start timed apart).

The GPU's utilisation is sampled every 0.2 s (NVML) during each pipeline run. Medians of --runs runs.

    python3 bench/bench_cluster_gpu.py --arch resnet50 --n 8192 --runs 2 --out $OUT/cluster_gpu_resnet50.json
    .venv/bin/python bench/bench_cluster_gpu.py --n 256 --runs 1 --device cpu      # the script's own check, on a CPU
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO), str(HERE)]

import numpy as np  # noqa: E402
import torch  # noqa: E402


class GpuUse:
    """Mean GPU utilisation (%) over a block, sampled by NVML every ``interval_s``; None without NVML or a GPU."""

    def __init__(self, interval_s: float = 0.2):
        self.samples: list[int] = []
        self.interval_s = interval_s
        self.stop = threading.Event()
        try:
            import pynvml
            pynvml.nvmlInit()
            self.handle, self.nvml = pynvml.nvmlDeviceGetHandleByIndex(0), pynvml
        except Exception:  # noqa: BLE001 - no NVML here: no figure
            self.handle = None

    def _run(self):
        while not self.stop.wait(self.interval_s):
            self.samples.append(int(self.nvml.nvmlDeviceGetUtilizationRates(self.handle).gpu))

    def __enter__(self):
        if self.handle is not None:
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        if self.handle is not None:
            self.thread.join()

    @property
    def mean(self):
        return round(float(np.mean(self.samples)), 1) if self.samples else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="resnet50", choices=("resnet18", "resnet50"))
    ap.add_argument("--n", type=int, default=8192)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--loader-n", type=int, default=2048, help="images for each loader-only timing")
    ap.add_argument("--skip-loader", action="store_true", help="leave out the loader-alone timings")
    ap.add_argument("--marginal", action="store_true", help="also time each pipeline on the first quarter of the "
                    "images: the rate between the two sizes is the steady rate, without the fixed start-up cost")
    ap.add_argument("--clusters", nargs="*", type=int, default=None, help="local Ray CPU counts (default: all "
                    "cores and half of them)")
    ap.add_argument("--data", default="/tmp/scoring_data")
    ap.add_argument("--out", default=str(HERE / "results" / "cluster_gpu.json"))
    args = ap.parse_args(argv)

    from bench_scoring import ARCHS, make_dataset
    from torch.utils.data import DataLoader

    from inspect_core.cluster.score import cluster_scoring
    from inspect_core.model.models import load_model, pick_device
    from inspect_core.model.pipeline import ImageFiles, _collate, score_dataset
    from inspect_core.model.preprocess import Preprocess, image_to_array, load_image_file
    from inspect_core.model.runtime import autocast_context, runtime_settings

    def save() -> None:      # after each stage: a run cut short by its time limit still leaves what it measured
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=1, default=str) + "\n")

    t = time.perf_counter()
    root = Path(args.data)
    images = make_dataset(root, args.n, 10)
    out: dict = {"n_images": len(images), "arch": args.arch, "cpus": os.cpu_count(),
                 "dataset_made_s": round(time.perf_counter() - t, 1)}
    device = pick_device(args.device)
    out["device"] = torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)
    out["torch"] = torch.__version__
    spec = Preprocess(input_size=(224, 224), class_names=tuple(f"class_{c}" for c in range(10)),
                      resize="shorter_then_center_crop", resize_shorter_px=256)
    folder = Path(tempfile.mkdtemp(prefix="di-gpu-model-"))
    torch.manual_seed(0)
    net = ARCHS[args.arch](10).eval()
    path = folder / f"{args.arch}.ts.pt"
    torch.jit.save(torch.jit.trace(net, torch.zeros(1, 3, 224, 224)), str(path))
    spec.save(path.with_name(f"{args.arch}.preprocess.json"))
    model = load_model(path, spec, device=str(device))
    base = runtime_settings(device.type)
    out["batch_size"], out["default_workers"] = base.batch_size, base.num_workers

    # 1. the bare forward pass on preprocessed batches already on the device
    ids = images["image_id"].tolist()[: min(len(images), 2048)]
    arrays = np.stack([image_to_array(load_image_file(root / i), spec) for i in ids])
    batches = [torch.from_numpy(arrays[s:s + base.batch_size]).to(device)
               for s in range(0, len(arrays), base.batch_size)]

    def bare() -> float:
        t = time.perf_counter()
        with torch.inference_mode(), autocast_context(base):
            for _ in range(3):
                for b in batches:
                    model.forward(b).float().cpu()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return 3 * len(arrays) / (time.perf_counter() - t)

    bare()
    out["bare_forward_img_per_s"] = statistics.median(bare() for _ in range(max(3, args.runs)))
    print("bare", round(out["bare_forward_img_per_s"]), flush=True)
    save()

    # 2. the loader alone, by worker count
    n_cpu = os.cpu_count() or 1
    loader_ids = images["image_id"].tolist()[: args.loader_n]
    out["loader_img_per_s"] = {}
    for w in sorted({1, 2, 4, 8, max(1, n_cpu - 1)}):
        if w >= n_cpu or args.skip_loader:
            continue
        settings = runtime_settings(device.type, batch_size=base.batch_size, workers=w)
        rates = []
        for _ in range(args.runs):
            t = time.perf_counter()
            for _ in DataLoader(ImageFiles(root, loader_ids, spec), batch_size=settings.batch_size, shuffle=False,
                                collate_fn=_collate, **settings.loader_kwargs()):
                pass
            rates.append(len(loader_ids) / (time.perf_counter() - t))
        out["loader_img_per_s"][w] = {"median": statistics.median(rates), "per_worker": statistics.median(rates) / w}
        print("loader", w, round(statistics.median(rates)), flush=True)
    if out["loader_img_per_s"]:
        per_worker = statistics.median(v["per_worker"] for v in out["loader_img_per_s"].values())
        out["decode_img_per_s_per_worker"] = per_worker
        out["decode_workers_per_gpu"] = out["bare_forward_img_per_s"] / per_worker
        save()

    # 3. the local pipeline with its defaults; 4. the cluster path
    quarter = images.iloc[: max(1, len(images) // 4)]

    def timed(outputs=None, subset=images) -> dict:
        with GpuUse() as use:
            t = time.perf_counter()
            res = score_dataset(model, root, subset, use_cache=False, decoder="pillow", outputs=outputs)
            seconds = time.perf_counter() - t
        assert res.table["error"].isna().all()
        return {"img_per_s": len(subset) / seconds, "seconds": seconds, "gpu_util_mean_pct": use.mean,
                "notes": res.notes}

    def runs(outputs=None) -> dict:
        timed(outputs, quarter if args.marginal else images)      # warm-up: workers, cudnn, Ray's actors
        got = [timed(outputs) for _ in range(args.runs)]
        rate = statistics.median(g["img_per_s"] for g in got)
        print("pipeline", round(rate), [g["gpu_util_mean_pct"] for g in got], flush=True)
        res = {"img_per_s": rate, "runs": got, "ratio_to_bare": rate / out["bare_forward_img_per_s"]}
        if args.marginal:
            small = [timed(outputs, quarter) for _ in range(args.runs)]
            dt = statistics.median(g["seconds"] for g in got) - statistics.median(g["seconds"] for g in small)
            res["quarter_runs"] = small
            res["steady_img_per_s"] = (len(images) - len(quarter)) / dt
            res["fixed_s"] = statistics.median(g["seconds"] for g in small) - len(quarter) / res["steady_img_per_s"]
            res["steady_ratio_to_bare"] = res["steady_img_per_s"] / out["bare_forward_img_per_s"]
            print("steady", round(res["steady_img_per_s"]), "fixed s", round(res["fixed_s"], 1), flush=True)
        return res

    out["local_pipeline"] = runs()
    save()
    import ray
    for n in args.clusters or sorted({n_cpu, max(2, n_cpu // 2)}, reverse=True):
        t = time.perf_counter()
        ray.init(num_cpus=n, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
        out[f"ray_start_s_local_{n}"] = time.perf_counter() - t
        out[f"ray_resources_local_{n}"] = ray.cluster_resources()
        out[f"cluster_local_{n}"] = runs(cluster_scoring(f"local:{n}"))
        ray.shutdown()
        save()
    print(json.dumps({k: v for k, v in out.items() if not isinstance(v, dict)}, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
