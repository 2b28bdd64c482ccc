"""Load a trained classifier in the forms users have, safely, on the best local device.

Forms:
- TorchScript (``torch.jit.save``; ``.pt``/``.ts``/``.pth``) and ``torch.export`` programs (``.pt2``).
  Both are PROGRAMS: load only files you trust (from your own training run). See ``TRUST_WARNING``.
- A state dict (``torch.save(model.state_dict(), f)``) plus a factory ``module:function`` from the
  user's own code that builds the architecture. The state dict is read with
  ``torch.load(weights_only=True)``: a pickle that tries to run code is refused.

The form is the user's choice, never the file's: an explicit ``kind``; else a state dict when a factory is
given; else a torch.export program for a ``.pt2`` name and a TorchScript program for any other name. The
file's contents are then checked against that form (reading the zip listing or two bytes, running nothing),
and a file whose contents disagree is refused with what it really is: a program is only ever loaded where
the user chose a program form, and a state-dict path is only ever read with ``weights_only=True``. Only
regular files under the ``max_model_bytes`` cap (``limits.LIMITS``) are opened (no devices, pipes or sockets).

Every failure raises ``ModelLoadError`` with a one-line message naming the file and what to do.
"""
from __future__ import annotations

import hashlib
import importlib
import inspect
import logging
import os
import pickle
import sys
import threading
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable

import torch
from torch import nn

from .preprocess import Preprocess

log = logging.getLogger(__name__)

TRUST_WARNING = ("TorchScript and .pt2 files are programs, not data: load only model files you trust "
                 "(from your own training run). State dicts are read with weights_only=True.")
FORMATS = ("torchscript", "export", "state_dict")
FORM_NAMES = {"torchscript": "TorchScript program", "export": "torch.export program",
              "state_dict": "state dict (weights only)"}


class ModelLoadError(RuntimeError):
    """A model that cannot be loaded or does not fit its preprocessing; one-line message."""


def _one_line(exc: BaseException, limit: int = 240) -> str:
    """The exception as one line of at most ``limit`` characters. A TorchScript interpreter error is a
    traceback of the scripted code whose last line holds the model's own message: that line is kept."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    if len(lines) > 1 and "TorchScript" in lines[0]:
        lines = lines[-1:]
    text = " ".join(" ".join(lines).split())
    return (text[: limit - 3] + "...") if len(text) > limit else (text or type(exc).__name__)


# --------------------------------------------------------------------------------------------
# Device
# --------------------------------------------------------------------------------------------

def pick_device(prefer: str | None = None, *, cuda_available: bool | None = None,
                mps_available: bool | None = None) -> torch.device:
    """CUDA when present, else MPS, else CPU. ``prefer`` ("cpu", "cuda", "mps", "auto") overrides
    when that device exists; the availability flags are for tests."""
    if cuda_available is None:
        cuda_available = torch.cuda.is_available()
    if mps_available is None:
        mps = getattr(torch.backends, "mps", None)
        mps_available = bool(mps is not None and mps.is_available())
    prefer = (prefer or "auto").lower()
    if prefer.startswith("cuda"):
        if not cuda_available:
            raise ModelLoadError("device cuda was asked for but no CUDA GPU is available; use --device auto or cpu")
        return torch.device(prefer)
    if prefer == "mps":
        if not mps_available:
            raise ModelLoadError("device mps was asked for but MPS is not available; use --device auto or cpu")
        return torch.device("mps")
    if prefer == "cpu":
        return torch.device("cpu")
    if prefer != "auto":
        raise ModelLoadError(f"unknown device {prefer!r}; use auto, cpu, cuda or mps")
    if cuda_available:
        return torch.device("cuda")
    if mps_available:
        return torch.device("mps")
    return torch.device("cpu")


# --------------------------------------------------------------------------------------------
# Format detection and file hash
# --------------------------------------------------------------------------------------------

def detect_format(path: Path | str) -> str:
    """'torchscript', 'export' or 'state_dict' from the archive's contents (not the file name)."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except zipfile.BadZipFile:
        # legacy (non-zip) torch.save pickle, or not a torch file at all
        with open(path, "rb") as fh:
            head = fh.read(2)
        if head[:1] == b"\x80":
            return "state_dict"
        raise ModelLoadError(f"{path.name} is not a PyTorch file (TorchScript, .pt2 or state dict); "
                             "save it with torch.jit.save, torch.export.save or torch.save(model.state_dict())") from None
    tails = {n.split("/", 1)[1] if "/" in n else n for n in names}
    if "archive_format" in tails or any(t.startswith("models/") for t in tails):
        return "export"
    if "constants.pkl" in tails or any(t.startswith("code/") for t in tails):
        return "torchscript"
    if "data.pkl" in tails:
        return "state_dict"
    raise ModelLoadError(f"{path.name} is a zip file but not a TorchScript, .pt2 or torch.save archive")


def choose_form(path: Path | str, factory: str | None = None, kind: str | None = None) -> tuple[str, str]:
    """The form the user asked for, and why: an explicit ``kind`` ("auto"/None = not given), else a state dict
    when a factory is given, else by the file name (``.pt2`` a torch.export program, anything else TorchScript).
    Never from the file's contents."""
    name = Path(path).name
    if kind and kind != "auto":
        if kind not in FORMATS:
            raise ModelLoadError(f"unknown model form {kind!r}; use auto, {', '.join(FORMATS)}")
        if kind != "state_dict" and factory:
            raise ModelLoadError(f"a factory ({factory}) builds the model for a state dict only, but {name} was given "
                                 f"as a {FORM_NAMES[kind]}; drop the factory or choose the state-dict form")
        return kind, f"chosen as a {FORM_NAMES[kind]}"
    if factory:
        return "state_dict", "a factory was given, so it is read as a state dict"
    if name.lower().endswith(".pt2"):
        return "export", "its name ends in .pt2"
    return "torchscript", "no factory was given and its name does not end in .pt2"


def _advice(asked: str, found: str) -> str:
    if asked == "state_dict":
        return (f"a program can run code when it is loaded, so it was not; if you trust this file, load it as a "
                f"{FORM_NAMES[found]} (CLI: --model-format {found} without --factory; app: Model form)")
    if found == "state_dict":
        return "give the factory that builds the model as module:function (e.g. --factory mypkg.models:make_model)"
    return f"if you trust it, choose that form (CLI: --model-format {found}; app: Model form)"


def check_model_file(path: Path, max_bytes: int | None = None) -> None:
    """ModelLoadError unless ``path`` is a regular file of at most ``max_bytes`` (default the
    ``max_model_bytes`` cap of ``limits.LIMITS``): a device, a pipe, a socket or a huge file is never opened."""
    from ..limits import LimitError, check_input_file
    try:
        check_input_file(path, "model file", "max_model_bytes", max_bytes)
    except LimitError as exc:
        raise ModelLoadError(f"{exc} (or --max-model-mb; max_bytes= in Python)") from None


_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path | str) -> str:
    """sha256 of a file, remembered per (path, size, mtime) so reopening does not re-read it."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASH_CACHE:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        _HASH_CACHE[key] = digest.hexdigest()
    return _HASH_CACHE[key]


# --------------------------------------------------------------------------------------------
# Loaded model
# --------------------------------------------------------------------------------------------

@dataclass
class LoadedModel:
    module: Callable
    kind: str
    path: Path
    file_sha256: str
    device: torch.device
    spec: Preprocess
    factory: str | None = None
    max_batch: int | None = None      # 1 for programs exported with a fixed batch of 1
    notes: list[str] = field(default_factory=list)
    factory_sha256: str = ""          # of the factory module's source file (state dicts)
    form_reason: str = ""             # why it was loaded in this form (choose_form)

    @property
    def n_classes(self) -> int:
        return len(self.spec.class_names)

    def cache_key(self) -> str:
        return f"{self.file_sha256}:{self.kind}:{self.factory or ''}:{self.factory_sha256}"

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return logits_of(self.module(batch))


def logits_of(output) -> torch.Tensor:
    """The logits tensor from a model output (tensor, tuple/list whose first item is it, or dict)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    if isinstance(output, dict):
        for key in ("logits", "out", "output"):
            if isinstance(output.get(key), torch.Tensor):
                return output[key]
    keys = f" with keys {', '.join(map(str, list(output)[:6]))}" if isinstance(output, dict) else ""
    raise ModelLoadError(f"the model returned a {type(output).__name__}{keys}, not a logits tensor: it must return "
                         "a (batch, classes) tensor, a tuple whose first item is one, or a dict with it under "
                         "'logits', 'out' or 'output'")


def _set_eval(module) -> None:
    try:
        module.eval()
    except (NotImplementedError, RuntimeError, AttributeError):
        # torch.export modules refuse .eval(); they were exported in the mode they were traced in
        pass


def load_torchscript(path: Path) -> nn.Module:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - torch raises many types here
        raise ModelLoadError(f"could not load TorchScript {path.name}: {_one_line(exc)}") from None


_PROGRAM_LOAD_LOCK = threading.Lock()


def _load_program_on_cpu(path: Path):
    """torch.export.load with every tensor put on the CPU (torch.export.load has no map_location).

    Used for a CPU model (always where CUDA is missing), so a program saved on a GPU loads on a CPU-only machine: torch's own reader
    runs with its device lookups answered "cpu" (the archive's weights, and the pickled example inputs read
    with torch.load), then torch.export.passes.move_to_device_pass moves the device arguments inside the
    graph (e.g. a tensor made on cuda in forward) to the CPU too. The patches are undone before returning,
    under a lock; for those milliseconds a torch.load in another thread also reads onto the CPU (this package's
    own always do)."""
    import functools

    from torch._export.serde import serialize
    from torch.export.passes import move_to_device_pass
    from torch.export.pt2_archive import _package

    def on_cpu(_device):
        return torch.device("cpu")

    with _PROGRAM_LOAD_LOCK:
        saved = (_package.deserialize_device, serialize.deserialize_device, torch.load)
        # weights, the graph's tensor metadata and device arguments, and the pickled example inputs
        _package.deserialize_device = serialize.deserialize_device = on_cpu
        torch.load = functools.partial(saved[2], map_location="cpu")
        try:
            program = torch.export.load(str(path))
        finally:
            _package.deserialize_device, serialize.deserialize_device, torch.load = saved
    return move_to_device_pass(program, "cpu")


def load_exported(path: Path, device: torch.device | None = None):
    """The module of a torch.export program. Read onto the CPU (also a program saved on a GPU) unless it is
    going to a CUDA device that this machine has."""
    try:
        if device is not None and device.type == "cuda" and torch.cuda.is_available():
            program = torch.export.load(str(path))
        else:
            program = _load_program_on_cpu(path)
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"could not load torch.export program {path.name}: {_one_line(exc)}") from None
    try:
        return program.module()
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"torch.export program {path.name} has no callable module: {_one_line(exc)}") from None


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """torch.load(weights_only=True) with a clear refusal for pickles that try to run code."""
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ModelLoadError(
            f"refused {path.name}: its pickle asks to run code or build objects, which weights_only loading "
            f"forbids ({_one_line(exc, 120)}); save plain weights with torch.save(model.state_dict(), path)"
        ) from None
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"could not read state dict {path.name}: {_one_line(exc)}") from None
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model", "net", "weights"):
            inner = obj.get(key)
            if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelLoadError(f"{path.name} does not hold a state dict (a dict of tensors); "
                             "save it with torch.save(model.state_dict(), path)")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}   # saved from DataParallel/DDP
    return obj


_FACTORY_STAMPS: dict[str, tuple[int, int]] = {}     # module name -> (mtime_ns, size) of its file when imported


def _file_stamp(path: str) -> tuple[int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return (0, 0)
    return (st.st_mtime_ns, st.st_size)


def factory_source_sha256(factory: str) -> str:
    """SHA-256 of the file that defines the factory's module ("" when it has none): part of the score cache's
    key, so scores made by an edited factory are never served for the new code."""
    module = sys.modules.get(factory.partition(":")[0].strip())
    source = getattr(module, "__file__", None)
    if not source:
        return ""
    try:
        return hashlib.sha256(Path(source).read_bytes()).hexdigest()
    except OSError:
        return ""


def import_factory(factory: str) -> Callable:
    """Import ``module:function`` (the user's own code; the repo root and cwd are on the path)."""
    if not factory or ":" not in factory:
        raise ModelLoadError(f"factory {factory!r} must be written module:function, e.g. mypkg.models:make_model")
    module_name, _, attr = factory.partition(":")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.append(cwd)
    # the user's code often lies beside (or inside) the dataset: importing it must not write __pycache__ there
    was = sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    try:
        module = importlib.import_module(module_name.strip())
        source = getattr(module, "__file__", None)
        if source and _FACTORY_STAMPS.get(module.__name__, _file_stamp(source)) != _file_stamp(source):
            module = importlib.reload(module)                            # edited since it was imported
        if source:
            _FACTORY_STAMPS[module.__name__] = _file_stamp(source)
    except Exception as exc:  # noqa: BLE001 - user code can raise anything at import
        raise ModelLoadError(f"factory module {module_name!r} could not be imported ({_one_line(exc, 160)}); "
                             "run from the folder that contains it or install it") from None
    finally:
        sys.dont_write_bytecode = was
    obj = module
    for part in attr.strip().split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ModelLoadError(f"factory {factory!r}: {module_name} has no attribute {attr!r}")
    if not callable(obj):
        raise ModelLoadError(f"factory {factory!r} is not callable")
    return obj


def build_from_factory(factory: str, n_classes: int) -> nn.Module:
    fn = import_factory(factory)
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    kwargs = {}
    for name in ("num_classes", "n_classes"):
        if name in params:
            kwargs[name] = n_classes
            break
    try:
        model = fn(**kwargs)
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"factory {factory} failed: {_one_line(exc, 160)}") from None
    if not isinstance(model, nn.Module):
        raise ModelLoadError(f"factory {factory} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def load_state_into(model: nn.Module, state: dict[str, torch.Tensor], path: Path, factory: str) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
             for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            parts.append(f"{len(wrong)} shape mismatch(es), e.g. {wrong[0]}")
        if missing:
            parts.append(f"{len(missing)} missing key(s), e.g. {missing[0]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[0]}")
        raise ModelLoadError(f"state dict {path.name} does not fit factory {factory}: {'; '.join(parts)} "
                             "(check the factory and the number of classes)")
    model.load_state_dict(state, strict=True)


def check_model(module: Callable, spec: Preprocess, device: torch.device, name: str) -> int | None:
    """Run zero inputs of the spec's shape through the model; raise a clear error on a wrong input shape or
    a class-count mismatch. Returns a max batch size (1 when batches > 1 fail), else None."""
    shape = spec.input_shape
    try:
        with torch.inference_mode():
            out = logits_of(module(torch.zeros((1, *shape), device=device)))
    except ModelLoadError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(
            f"{name} rejected an input of shape (1, {shape[0]}, {shape[1]}, {shape[2]}) = (batch, channels, height, "
            f"width) built from the preprocessing (input_size {list(spec.input_size)}, {spec.channel_order}): "
            f"{_one_line(exc, 140)}; fix input_size / channel_order to what the model was trained with") from None
    if out.ndim != 2 or out.shape[0] != 1:
        raise ModelLoadError(f"{name} returned shape {tuple(out.shape)} for one image; expected (1, n_classes) "
                             "logits from an image classifier")
    n_out = int(out.shape[1])
    if n_out != len(spec.class_names):
        raise ModelLoadError(f"{name} outputs {n_out} classes but the preprocessing lists {len(spec.class_names)} "
                             f"class_names; give class_names in the model's output order ({n_out} of them)")
    try:
        with torch.inference_mode():
            out2 = logits_of(module(torch.zeros((2, *shape), device=device)))
        if tuple(out2.shape) != (2, n_out):
            return 1
    except Exception:  # noqa: BLE001 - e.g. a program exported with a fixed batch of 1
        return 1
    return None


def load_model(path: Path | str, spec: Preprocess, *, factory: str | None = None, device: str | torch.device | None = None,
               kind: str | None = None, max_bytes: int | None = None) -> LoadedModel:
    """Load a model file in the form the user asked for (``choose_form``) and check it against ``spec``.
    A file whose contents are another form is refused before anything in it is loaded."""
    path = Path(path).expanduser()
    if not path.exists() and not path.is_symlink():
        raise ModelLoadError(f"model file {path} not found; check the path")
    if path.is_dir():
        raise ModelLoadError(f"model path {path} is a folder; give the model file inside it")
    form, why = choose_form(path, factory, kind)
    check_model_file(path, max_bytes)
    found = detect_format(path)                  # the zip listing or two bytes: nothing is run
    if found != form:
        raise ModelLoadError(f"refused {path.name}: it was given as a {FORM_NAMES[form]} ({why}) but it is a "
                             f"{FORM_NAMES[found]}; nothing in it was loaded. {_advice(form, found)}")
    dev = device if isinstance(device, torch.device) else pick_device(device)
    if form == "torchscript":
        module = load_torchscript(path)
    elif form == "export":
        module = load_exported(path, dev)
    else:
        if not factory:
            raise ModelLoadError(f"{path.name} is a state dict: give the factory that builds the model as "
                                 "module:function (e.g. --factory mypkg.models:make_model)")
        state = read_state_dict(path)
        module = build_from_factory(factory, len(spec.class_names))
        load_state_into(module, state, path, factory)
    try:
        module = module.to(dev)
    except Exception as exc:  # noqa: BLE001
        if dev.type != "cpu":
            raise ModelLoadError(f"could not move {path.name} to {dev}: {_one_line(exc)}") from None
    _set_eval(module)
    max_batch = check_model(module, spec, dev, path.name)
    model = LoadedModel(module=module, kind=form, path=path, file_sha256=file_sha256(path), device=dev, spec=spec,
                        factory=factory if form == "state_dict" else None, max_batch=max_batch,
                        factory_sha256=factory_source_sha256(factory) if form == "state_dict" else "",
                        form_reason=why)
    if max_batch == 1:
        model.notes.append("model accepts only one image per batch (fixed batch size); scoring one at a time")
    return model


def embedding_layer(module) -> nn.Module | None:
    """The layer whose INPUT is the penultimate embedding: the last nn.Linear of an eager module."""
    if isinstance(module, torch.jit.ScriptModule) or not isinstance(module, nn.Module):
        return None
    last = None
    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            last = sub
    return last


# How to get embeddings when a model form yields none (said on the page and in the CLI summary).
EMBEDDING_HOWTO = ("give the model an `embed(x)` method that returns the penultimate features, or score it as a "
                   ".pt2 program or a state dict + factory")


def script_embedding_function(module) -> tuple[Callable | None, str]:
    """For a TorchScript module without an ``embed`` method: a function ``fn(x) -> (output, embedding)`` that
    runs the module's own forward graph once and also returns the input of its last linear op (``aten::linear``
    or ``aten::addmm``), made from a copy of the graph with the calls inlined; the module is not changed.
    Returns (None, why) when the graph has no such op at its top level (e.g. inside a branch or a loop)."""
    if not isinstance(module, torch.jit.ScriptModule):
        return None, "not a TorchScript module"
    try:
        graph = module.forward.graph.copy()
        torch._C._jit_pass_inline(graph)
        ops = {"aten::linear": 0, "aten::addmm": 1}
        linear = [n for n in graph.findAllNodes("aten::linear") + graph.findAllNodes("aten::addmm")]
        if not linear:
            return None, "its forward graph has no linear layer"
        top = [n for n in graph.nodes() if n.kind() in ops]
        if not top:
            return None, "its last linear layer sits inside a branch or loop of the scripted code"
        last = top[-1]
        feature = list(last.inputs())[ops[last.kind()]]
        ret = graph.return_node()
        output = list(ret.inputs())[0]
        both = graph.create("prim::TupleConstruct", [output, feature])
        both.output().setType(torch._C.TupleType([output.type(), feature.type()]))
        both.insertBefore(ret)
        ret.replaceInput(0, both.output())
        graph.lint()
        function = torch._C._create_function_from_graph("forward_with_embedding", graph)
    except Exception as exc:  # noqa: BLE001 - TorchScript internals: never fail loading for embeddings
        return None, f"its scripted graph could not be tapped ({_one_line(exc, 100)})"
    owner = module._c
    return (lambda x: function(owner, x)), ""
