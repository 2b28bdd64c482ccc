"""runtime.py: loader and precision settings per device type."""
from __future__ import annotations

import pytest
import torch

from inspect_core.model import runtime


@pytest.mark.parametrize("device_type,amp,pin,workers", [("cuda", True, True, 7), ("mps", False, False, 4), ("cpu", False, False, 0)])
def test_runtime_settings_per_device(device_type, amp, pin, workers):
    s = runtime.runtime_settings(device_type, n_cpus=8 if device_type != "cpu" else 2)
    assert (s.use_amp, s.pin_memory, s.num_workers) == (amp, pin, workers)
    assert s.non_blocking == (device_type == "cuda")
    assert s.amp_dtype == ("float16" if amp else None)
    kw = s.loader_kwargs()
    assert kw["pin_memory"] == pin and ("prefetch_factor" in kw) == (workers > 0)
    assert runtime.runtime_settings(device_type, amp=False).use_amp is False
    assert runtime.runtime_settings("cpu", amp=True).use_amp is False          # autocast only on CUDA
    assert runtime.runtime_settings(device_type, batch_size=500, max_batch=1).batch_size == 1
    assert runtime.runtime_settings("cpu", n_cpus=1).num_workers == 0
    assert runtime.runtime_settings("cpu", n_cpus=16).num_workers == 4
    assert runtime.runtime_settings("cuda", n_cpus=16).num_workers == 15   # decoding limits a GPU: all cores but one


def test_autocast_context_is_built_for_cuda_settings():
    cuda = runtime.runtime_settings("cuda", n_cpus=4)
    ctx = runtime.autocast_context(cuda)
    assert isinstance(ctx, torch.autocast) and ctx.device == "cuda" and ctx.fast_dtype == torch.float16
    assert not isinstance(runtime.autocast_context(runtime.runtime_settings("cpu")), torch.autocast)
