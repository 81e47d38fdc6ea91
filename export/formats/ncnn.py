"""ncnn ``.param``/``.bin`` for ARM Linux boards, via pnnx (TorchScript or ONNX -> ncnn).

pnnx writes a set of files next to its input (``*.pnnx.param``, ``*_pnnx.py``, ``*_ncnn.py``,
...), so it runs on a copy of its input inside a private temporary directory and only the
two ncnn files are kept. ``fp16`` stores the weights as fp16 (``fp16=1``, pnnx's default);
``fp32`` keeps float32 weights (``fp16=0``). ncnn graphs here are batch 1: blob ``in0``
``[3, 128, 128]`` (C, H, W; BGR, /255) -> ``out0`` ``[256]``, L2-normalized.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, Tuple, Union

import numpy as np

from ._common import ConversionError, ConverterUnavailableError, require, versions

logger = logging.getLogger(__name__)

EXTRA = "ncnn"
INPUT_BLOB = "in0"
OUTPUT_BLOB = "out0"
TIMEOUT_S = 600


def _pnnx(model_file: Path, out_dir: Path, stem: str, precision: str) -> None:
    pnnx = require("pnnx", EXTRA, "ncnn conversion")
    exe = Path(pnnx.EXEC_PATH)
    if not exe.is_file():
        raise ConverterUnavailableError(
            f"{exe}: the pnnx executable is missing; reinstall: pip install 'docedge[ncnn]'"
        )
    param, binf = out_dir / f"{stem}.param", out_dir / f"{stem}.bin"
    cmd = [str(exe), model_file.name, "inputshape=[1,3,128,128]f32", "device=cpu", "optlevel=2",
           f"ncnnparam={param}", f"ncnnbin={binf}", f"fp16={1 if precision == 'fp16' else 0}"]  # fmt: skip
    try:
        proc = subprocess.run(cmd, cwd=model_file.parent, capture_output=True, text=True, timeout=TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ConversionError(f"{param}: pnnx did not run ({e})") from None
    for line in (proc.stdout + proc.stderr).splitlines():
        logger.debug("pnnx: %s", line)
    if proc.returncode != 0 or not param.is_file() or not binf.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise ConversionError(f"{param}: pnnx failed (exit {proc.returncode}): {' | '.join(tail)}")


def _fields(precision: str, source: str) -> Dict[str, Any]:
    return {
        "input": {"name": INPUT_BLOB, "layout": "CHW", "shape": [3, 128, 128], "batch": "fixed (1)"},
        "output": {"name": OUTPUT_BLOB, "shape": [256]},
        "normalized_output": True,
        "converter": {"name": "pnnx", "source": source, "fp16_weights": precision == "fp16"},
        "producers": versions("pnnx", "ncnn", "torch"),
    }


def convert_ncnn_torch(
    net: Any, out_dir: Union[str, Path], stem: str, precision: str = "fp16"
) -> Dict[str, Any]:
    """TorchScript-trace the reference and convert it with pnnx to ``out_dir/stem.param|.bin``."""
    import torch

    if precision not in ("fp16", "fp32"):
        raise ValueError(f"ncnn precision must be fp16 or fp32, got {precision!r}")
    out = Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="docedge-pnnx-") as tmp:
        pt = Path(tmp) / "model.pt"
        with torch.no_grad():
            traced = torch.jit.trace(net.eval(), torch.zeros(1, 3, 128, 128))  # type: ignore[no-untyped-call]
            traced.save(str(pt))
        _pnnx(pt, out, stem, precision)
    return _fields(precision, "TorchScript trace of the PyTorch reference")


def convert_ncnn_onnx(
    src: Union[str, Path], out_dir: Union[str, Path], stem: str, precision: str = "fp16"
) -> Dict[str, Any]:
    """Convert an ONNX file with pnnx (bundles imported from ONNX have no PyTorch model)."""
    src = Path(src)
    with tempfile.TemporaryDirectory(prefix="docedge-pnnx-") as tmp:
        local = Path(tmp) / "model.onnx"
        shutil.copy2(src, local)
        _pnnx(local, Path(out_dir), stem, precision)
    return _fields(precision, f"ONNX ({src.name})")


def ncnn_runner(param: Union[str, Path], binf: Union[str, Path], threads: int = 2
                ) -> Tuple[Callable[[np.ndarray], np.ndarray], Dict[str, Any]]:  # fmt: skip
    """A batch function NCHW float32 -> ``(N, 256)`` over an ncnn model (one image at a time)."""
    try:
        import ncnn
    except ImportError:
        raise ConverterUnavailableError(
            f"{param}: running ncnn models needs the ncnn package; "
            "install it with: pip install 'docedge[ncnn]'"
        ) from None
    net = ncnn.Net()
    net.opt.num_threads = threads
    if net.load_param(str(param)) != 0 or net.load_model(str(binf)) != 0:
        raise ConversionError(f"{param}: ncnn cannot load the model ({Path(binf).name})")

    def one(chw: np.ndarray) -> np.ndarray:
        ex = net.create_extractor()
        ex.input(INPUT_BLOB, ncnn.Mat(np.ascontiguousarray(chw, np.float32)))
        ret, out = ex.extract(OUTPUT_BLOB)
        if ret != 0:
            raise ConversionError(f"{param}: ncnn extract({OUTPUT_BLOB!r}) failed ({ret})")
        return np.array(out, np.float32).reshape(1, -1)

    def embed(x: np.ndarray) -> np.ndarray:
        return np.concatenate([one(row) for row in np.asarray(x, np.float32)])

    opts = {
        "use_fp16_storage": bool(net.opt.use_fp16_storage),
        "use_fp16_arithmetic": bool(net.opt.use_fp16_arithmetic),
    }
    return embed, {"ncnn": versions("ncnn")["ncnn"], "threads": threads, "options": opts}
