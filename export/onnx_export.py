"""ONNX export of the reference model: legacy TorchScript exporter, dynamic batch on input
and output, onnxsim simplification, ONNX checker, and docedge metadata in ``metadata_props``."""

from __future__ import annotations

import io
import logging

import onnx
import torch

from docedge.runtime.bundle import INPUT_NAME, OUTPUT_NAME

from .manifest import INPUT_SIZE
from .onnx_io import BATCH_AXIS, fix_batch_axis, get_metadata, save_onnx, set_metadata

logger = logging.getLogger(__name__)

#: Opset 16, as the released model: below 21 (ONNX Runtime quantization tools accept it) and
#: with LayerNorm decomposed, which TensorRT 8.5 (JetPack 5) parses (LayerNormalization
#: needs opset 17 and TensorRT 8.6+).
DEFAULT_OPSET = 16
__all__ = ["BATCH_AXIS", "DEFAULT_OPSET", "ExportError", "export_onnx", "fix_batch_axis",
           "get_metadata", "save_onnx", "set_metadata", "simplify_onnx"]


class ExportError(RuntimeError):
    """The ONNX export, simplification or check failed."""


def export_onnx(
    net: torch.nn.Module, opset: int = DEFAULT_OPSET, simplify: bool = True
) -> onnx.ModelProto:
    """Export ``net`` (input ``img`` [N,3,128,128] -> ``feats`` [N,256]) to an ONNX model."""
    if not 13 <= opset <= 20:
        raise ExportError(f"opset {opset} unsupported: use 13..20 (quantization tools need < 21)")
    net = net.eval()
    dummy = torch.rand(2, 3, INPUT_SIZE, INPUT_SIZE)
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(
            net,
            (dummy,),
            buf,  # type: ignore[arg-type]  # file-like objects are accepted at run time
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: BATCH_AXIS}, OUTPUT_NAME: {0: BATCH_AXIS}},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    model = onnx.load_from_string(buf.getvalue())
    if simplify:
        model = simplify_onnx(model)
    fix_batch_axis(model)
    onnx.checker.check_model(model, full_check=True)
    return model


def simplify_onnx(model: onnx.ModelProto) -> onnx.ModelProto:
    """Run onnxsim (constant folding, shape inference, redundant-node removal)."""
    import onnxsim

    simplified, ok = onnxsim.simplify(model)
    if not ok:
        raise ExportError("onnxsim could not validate the simplified model")
    out: onnx.ModelProto = simplified
    return out
