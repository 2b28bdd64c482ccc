"""On a CUDA machine: save the sample model in every form FROM THE GPU (weights on cuda:0), so a CPU-only
machine can check that it loads them (issue: "a model saved on a GPU loads on a CPU-only machine").

    python bench/gpu_model_files.py OUT_DIR        # on the GPU machine
    .venv/bin/python -m pytest -q tests/test_model_gpu_files.py   # here, with OUT_DIR copied to tests/data/gpu_saved

Also scores the sample on the GPU through inspect_core (fp16 autocast) and writes those logits, so the CPU
can compare its own scores of the GPU-saved files with the GPU's.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

import numpy as np  # noqa: E402
import torch  # noqa: E402


def main(argv=None) -> int:
    from inspect_core.model.models import load_model
    from inspect_core.model.preprocess import read_preprocess
    from inspect_core.sample_model import make_model
    from inspect_core.model.pipeline import score_dataset

    args = list(argv if argv is not None else sys.argv[1:])
    out = Path(args[0])
    dev = args[1] if len(args) > 1 else "cuda"          # "cpu" only to try the script out without a GPU
    out.mkdir(parents=True, exist_ok=True)
    assert dev == "cpu" or torch.cuda.is_available(), "needs a CUDA GPU"
    src = HERE.parent / "sample_data" / "model"
    spec = read_preprocess(src / "model.preprocess.json")
    model = make_model(len(spec.class_names))
    model.load_state_dict(torch.load(src / "model_state.pt", map_location="cpu", weights_only=True))
    model = model.eval().to(dev)
    spec.save(out / "model.preprocess.json")
    torch.save(model.state_dict(), out / "model_state.pt")                     # cuda tensors inside
    torch.jit.save(torch.jit.script(model), str(out / "model.ts.pt"))
    example = torch.zeros((2, *spec.input_shape), device=dev)
    program = torch.export.export(model, (example,), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},))
    torch.export.save(program, str(out / "model.pt2"))
    # the GPU's own scores of the sample through the pipeline (autocast fp16), for the CPU to compare with
    root = HERE.parent / "sample_data"
    from inspect_core.loaders import load_dataset
    images = load_dataset(root).images
    info = {"torch": torch.__version__, "device": torch.cuda.get_device_name(0) if dev != "cpu" else "cpu"}
    for name, kw in (("model.ts.pt", {}), ("model.pt2", {}),
                     ("model_state.pt", {"factory": "inspect_core.sample_model:make_model"})):
        loaded = load_model(out / name, spec, device=dev, **kw)
        res = score_dataset(loaded, root, images, use_cache=False)
        np.save(out / f"gpu_probs_{name.replace('.', '_')}.npy", res.probs.astype(np.float32))
        info[name] = {"device": str(loaded.device), "notes": loaded.notes,
                      "n_scored": int(res.table["error"].isna().sum())}
    (out / "gpu_info.json").write_text(json.dumps(info, indent=1) + "\n")
    sys.stdout.write(json.dumps(info, indent=1) + "\n")
    shutil.copy(HERE.parent / "sample_data" / "model" / "training.json", out / "cpu_training.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
