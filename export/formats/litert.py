"""LiteRT (TensorFlow Lite) flatbuffers from the PyTorch reference.

Conversion is ``litert-torch`` (PyTorch -> LiteRT directly, no TensorFlow); post-training
quantization is the field's two tools:

- ``fp32``: ``litert_torch.convert``.
- ``fp16``: ai-edge-quantizer's ``float_casting`` (fp16 weights of Conv/FullyConnected with
  explicit Dequantize; compute stays float32 on the CPU, the GPU delegate runs fp16).
- ``int8-dynamic`` (recorded as precision ``int8``, ``quantization: dynamic-range``):
  ai-edge-quantizer's ``dynamic_wi8_afp32`` (int8 channel-wise weights, activations quantized
  on the fly; float I/O).
- ``int8-static``: PT2E (``torchao`` ``prepare_pt2e``/``convert_pt2e`` with litert-torch's
  ``PT2EQuantizer``: per-channel symmetric int8 weights, histogram-calibrated int8
  activations) calibrated on the bundle's calibration images; ``float_head=True`` keeps the
  head (and the final normalization) in float. Measured (docs/android.md): head in int8 costs
  0.0004 of mean cosine and halves the file, so the default quantizes everything; the input
  is then int8 (``q = round(x / scale) + zero_point``, recorded), the output float.

Every file takes NHWC input ``img`` ``[1, 128, 128, 3]`` (LiteRT's native layout; the BGR
pixels in memory order, /255) and returns ``feats`` ``[1, 256]``, signature
``serving_default``. Known trap (measured): ``tflite-runtime`` 2.14 returns wrong results
for dynamic-range int8 files; records name the interpreters each file was verified with.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Optional, Tuple, Union

import numpy as np

from ._common import ConversionError, ConverterUnavailableError, require, versions

logger = logging.getLogger(__name__)

EXTRA = "litert"
SIGNATURE = "serving_default"
VARIANTS = ("fp32", "fp16", "int8-dynamic", "int8-static")
#: Variant -> (precision, quantization) recorded in the manifest.
VARIANT_PRECISION = {
    "fp32": ("fp32", None),
    "fp16": ("fp16", "fp16-weights"),
    "int8-dynamic": ("int8", "dynamic-range"),
    "int8-static": ("int8", "static"),
}
DEFAULT_CALIBRATION_IMAGES = 200


def _torch_module(net: Any) -> Any:
    """``net`` (NCHW in, embedding out) wrapped to take NHWC ``img`` and return ``{"feats"}``."""
    import torch

    class NhwcNamed(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.m = inner

        def forward(self, img: torch.Tensor) -> Dict[str, torch.Tensor]:
            return {"feats": self.m(img.permute(0, 3, 1, 2))}

    return NhwcNamed(net).eval()


@contextlib.contextmanager
def _tool_output() -> Any:
    """The converters print progress bars and banners: send them to the debug log."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        yield
    for line in (out.getvalue() + err.getvalue()).splitlines():
        if line.strip():
            logger.debug("litert tools: %s", line[:300])


def _sample(size: int = 128) -> Any:
    import torch

    return torch.zeros(1, size, size, 3)


def convert_litert_fp32(net: Any, out_path: Union[str, Path]) -> Dict[str, Any]:
    """Convert the reference network to an fp32 LiteRT file; returns record fields."""
    litert_torch = require("litert_torch", EXTRA, "LiteRT conversion")
    module = _torch_module(net)
    try:
        with _tool_output():
            edge = litert_torch.signature(SIGNATURE, module, sample_kwargs={"img": _sample()}).convert()
            edge.export(str(out_path))
    except Exception as e:
        raise ConversionError(f"{out_path}: litert-torch could not convert the reference ({e})") from None
    return _fields("fp32", {"name": "litert-torch"})


def _quantize_file(src: Path, out_path: Path, recipe: Any) -> None:
    require("ai_edge_quantizer", EXTRA, "LiteRT quantization")
    from ai_edge_quantizer import quantizer

    try:
        with _tool_output():
            qt = quantizer.Quantizer(str(src))
            qt.load_quantization_recipe(recipe)
            result = qt.quantize(enable_progress_report=False)
            result.export_model(str(out_path), overwrite=True)
    except Exception as e:
        raise ConversionError(f"{out_path}: ai-edge-quantizer failed on {src.name} ({e})") from None


def convert_litert_fp16(fp32_file: Union[str, Path], out_path: Union[str, Path]) -> Dict[str, Any]:
    """fp16 weights (ai-edge-quantizer ``float_casting``) of an fp32 LiteRT file."""
    require("ai_edge_quantizer", EXTRA, "LiteRT quantization")
    from ai_edge_quantizer import qtyping, recipe_manager
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    rm = recipe_manager.RecipeManager()
    rm.add_quantization_config(
        regex=".*",
        operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
        op_config=qtyping.OpQuantizationConfig(
            weight_tensor_config=qtyping.TensorQuantizationConfig(
                num_bits=16, dtype=qtyping.TensorDataType.FLOAT
            ),
            compute_precision=qtyping.ComputePrecision.FLOAT,
            explicit_dequantize=True,
        ),
        algorithm_key=AlgorithmName.FLOAT_CASTING,
    )
    _quantize_file(Path(fp32_file), Path(out_path), rm.get_quantization_recipe())
    return _fields("fp16", {"name": "ai-edge-quantizer", "recipe": "float_casting (fp16 weights)"})


def convert_litert_dynamic_int8(fp32_file: Union[str, Path], out_path: Union[str, Path]) -> Dict[str, Any]:
    """Dynamic-range int8 (ai-edge-quantizer ``dynamic_wi8_afp32``) of an fp32 LiteRT file."""
    require("ai_edge_quantizer", EXTRA, "LiteRT quantization")
    from ai_edge_quantizer import recipe

    _quantize_file(Path(fp32_file), Path(out_path), recipe.dynamic_wi8_afp32())
    fields = _fields("int8-dynamic", {"name": "ai-edge-quantizer", "recipe": "dynamic_wi8_afp32"})
    fields["interpreter_notes"] = (
        "tflite-runtime 2.14.0 returns wrong embeddings for this file (measured on the test vectors: "
        "cosine mean -0.06 to the reference; the fp32, fp16 and static int8 files give >= 0.99 with it): "
        "use ai-edge-litert / LiteRT"
    )
    return fields


def convert_litert_static_int8(
    net: Any,
    out_path: Union[str, Path],
    calibration: Callable[[], Iterable[np.ndarray]],
    float_head: bool = False,
    calibration_info: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """Static int8 via PT2E calibrated on ``calibration()`` (pre-processed NCHW float32
    batches, the runtime's pre-processing); ``float_head`` keeps the head in float."""
    litert_torch = require("litert_torch", EXTRA, "LiteRT static int8 conversion")
    import torch
    from litert_torch.quantize import pt2e_quantizer as pq
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e import move_exported_model_to_eval, quantize_pt2e

    from docedge.export.model import FeatureLearningSqueezeLBNHead

    module = _torch_module(net)
    cfg = pq.get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False)
    quantizer = pq.PT2EQuantizer().set_global(cfg)
    if float_head:  # the exported graph names module types by their qualified name
        head = FeatureLearningSqueezeLBNHead
        quantizer.set_module_type(f"{head.__module__}.{head.__qualname__}", None)
    seen = 0
    try:
        with _tool_output():
            graph = torch.export.export(module, (), {"img": _sample()}).module()
            graph = quantize_pt2e.prepare_pt2e(graph, quantizer)
            with torch.no_grad():
                for batch in calibration():
                    nhwc = np.ascontiguousarray(np.asarray(batch, np.float32).transpose(0, 2, 3, 1))
                    for row in nhwc:  # the exported graph is batch 1
                        graph(img=torch.from_numpy(row[None]))
                        seen += 1
            if seen == 0:
                raise ConversionError(f"{out_path}: no calibration images")
            graph = quantize_pt2e.convert_pt2e(graph, fold_quantize=False)
            graph = move_exported_model_to_eval(graph)
            edge = litert_torch.signature(SIGNATURE, graph, sample_kwargs={"img": _sample()}).convert(
                quant_config=QuantConfig(pt2e_quantizer=quantizer)
            )
            edge.export(str(out_path))
    except ConversionError:
        raise
    except Exception as e:
        raise ConversionError(f"{out_path}: PT2E static int8 conversion failed ({e})") from None
    fields = _fields("int8-static", {
        "name": "litert-torch PT2EQuantizer + torchao prepare_pt2e/convert_pt2e",
        "weights": "int8 per-channel symmetric", "activations": "int8 per-tensor, histogram observer",
        "float_modules": ["head"] if float_head else []})  # fmt: skip
    fields["calibration"] = dict(calibration_info or {}, images=seen)
    return fields


def _fields(variant: str, converter: Dict[str, Any]) -> Dict[str, Any]:
    _precision, quant = VARIANT_PRECISION[variant]
    rec: Dict[str, Any] = {
        "variant": variant,
        "input": {"name": "img", "layout": "NHWC", "shape": [1, 128, 128, 3], "batch": "fixed"},
        "output": {"name": "feats", "shape": [1, 256]},
        "signature": SIGNATURE,
        "normalized_output": True,
        "converter": converter,
        "producers": versions("litert-torch", "ai-edge-quantizer", "ai-edge-litert", "torch", "torchao"),
    }
    if quant:
        rec["quantization"] = quant
    return rec


# --- running (gate) -----------------------------------------------------------------------------
def interpreter_versions() -> Dict[str, Any]:
    return {
        "ai-edge-litert": versions("ai-edge-litert")["ai-edge-litert"],
        "delegate": "XNNPACK (default CPU)",
        "threads": 2,
    }


def litert_runner(
    path: Union[str, Path], threads: int = 2
) -> Tuple[Callable[[np.ndarray], np.ndarray], Dict[str, Any]]:
    """A batch function NCHW float32 ``(N, 3, 128, 128)`` -> ``(N, 256)`` over the file
    (one invoke per image; int8 I/O quantized with the file's own parameters), and the
    input description (dtype and quantization) to record."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise ConverterUnavailableError(
            f"{path}: running LiteRT files needs ai-edge-litert; "
            "install it with: pip install 'docedge[litert]'"
        ) from None
    try:
        interp = Interpreter(model_path=str(path), num_threads=threads)
        runner = interp.get_signature_runner(SIGNATURE)
        idt = runner.get_input_details()["img"]
        odt = runner.get_output_details()["feats"]
    except Exception as e:
        raise ConversionError(f"{path}: LiteRT cannot load it ({e})") from None
    in_int8 = idt["dtype"] == np.int8
    out_int8 = odt["dtype"] == np.int8
    in_scale, in_zp = idt["quantization"]
    out_scale, out_zp = odt["quantization"]

    def one(nhwc: np.ndarray) -> np.ndarray:
        a = nhwc
        if in_int8:
            a = np.clip(np.round(a / in_scale) + in_zp, -128, 127).astype(np.int8)
        o = runner(img=a)["feats"]
        if out_int8:
            o = (o.astype(np.float32) - out_zp) * out_scale
        return np.asarray(o, np.float32)

    def embed(x: np.ndarray) -> np.ndarray:
        nhwc = np.ascontiguousarray(np.asarray(x, np.float32).transpose(0, 2, 3, 1))
        return np.concatenate([one(nhwc[i : i + 1]) for i in range(len(nhwc))])

    io_desc: Dict[str, Any] = {"dtype": "int8" if in_int8 else "float32"}
    if in_int8:
        io_desc["quantization"] = {
            "scale": float(in_scale),
            "zero_point": int(in_zp),
            "rule": "q = clamp(round(x / scale) + zero_point, -128, 127), x = pixel / 255",
        }
    return embed, io_desc


def quiet_litert_logs() -> None:
    """LiteRT/absl print INFO banners on stderr; keep them out of command output."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
