"""The batch-independence check turns TF32 off while it runs; checks that overlap in threads restore it."""
from __future__ import annotations

import torch

from inspect_core.model import sanity


def test_overlapping_checks_restore_tf32():
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        a, b = sanity._no_tf32(), sanity._no_tf32()
        a.__enter__()
        b.__enter__()
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        a.__exit__(None, None, None)
        assert not torch.backends.cudnn.allow_tf32          # the other check is still running
        b.__exit__(None, None, None)
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
