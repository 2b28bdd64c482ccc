"""Runtime settings of scoring on a device: loader workers, pinned memory, mixed precision, batch size.

A pure function (``runtime_settings``) so every device branch can be tested without that device.
"""
from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass

@dataclass(frozen=True)
class RuntimeSettings:
    device_type: str
    num_workers: int
    pin_memory: bool
    non_blocking: bool
    use_amp: bool
    amp_dtype: str | None        # "float16" / "bfloat16" / None
    batch_size: int
    decoder: str = "auto"        # JPEG decoding: "auto" | "pillow" | "gpu" (gpu_decode.plan_decoder)

    def loader_kwargs(self) -> dict:
        kw = {"num_workers": self.num_workers, "pin_memory": self.pin_memory}
        if self.num_workers > 0:
            kw["prefetch_factor"] = 4
            kw["persistent_workers"] = False
        return kw


def _usable_cpus() -> int:
    """Cores this process may run on (a container's CPU set, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def runtime_settings(device_type: str, *, n_cpus: int | None = None, workers: int | None = None,
                     amp: bool | None = None, batch_size: int | None = None,
                     max_batch: int | None = None, decoder: str = "auto") -> RuntimeSettings:
    """Loader/precision settings for a device type ("cuda", "mps", "cpu").

    CUDA: pinned memory + non-blocking copies, float16 autocast, batch 128, and a decode worker on every
    core but one (JPEG decoding on the CPU is what limits a GPU: bench/bench_scoring.py).
    MPS: workers, no pinning, no autocast, batch 64. CPU: float32, batch 32, decode workers only when
    there are cores to spare beyond torch's own threads (more than 4 cores). ``decoder``: "auto" decodes JPEGs on
    the GPU (nvJPEG) when it can, "pillow" never, "gpu" asks for it (gpu_decode.plan_decoder).
    """
    n_cpus = n_cpus if n_cpus is not None else _usable_cpus()
    if device_type == "cuda":
        default_workers, pin, non_blocking, default_amp, dtype, default_bs = min(32, max(1, n_cpus - 1)), True, True, True, "float16", 128
    elif device_type == "mps":
        default_workers, pin, non_blocking, default_amp, dtype, default_bs = min(4, max(0, n_cpus - 1)), False, False, False, None, 64
    else:
        # torch already uses every core for the forward pass; a decode worker only pays off with cores to
        # spare (measured on 2 cores: 0 workers 92% of the bare forward, 1 worker 84%; bench/bench_scoring.py)
        default_workers = min(4, n_cpus // 4) if n_cpus > 4 else 0
        pin, non_blocking, default_amp, dtype, default_bs = False, False, False, None, 32
    use_amp = default_amp if amp is None else (bool(amp) and device_type == "cuda")
    bs = int(batch_size or default_bs)
    if max_batch:
        bs = min(bs, int(max_batch))
    return RuntimeSettings(device_type=device_type, num_workers=default_workers if workers is None else max(0, int(workers)),
                           pin_memory=pin, non_blocking=non_blocking, use_amp=use_amp,
                           amp_dtype=dtype if use_amp else None, batch_size=max(1, bs),
                           decoder=str(decoder or "auto").lower())


def autocast_context(settings: RuntimeSettings):
    if not settings.use_amp:
        return nullcontext()
    import torch
    return torch.autocast(device_type=settings.device_type, dtype=getattr(torch, settings.amp_dtype))

