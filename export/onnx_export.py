"""ONNX export of the reference model: legacy TorchScript exporter, dynamic batch on input
and output, onnxsim simplification, ONNX checker, and docedge metadata in ``metadata_props``."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any, Dict, Mapping, Union

import onnx
import torch

from docedge.runtime.bundle import INPUT_NAME, ONNX_METADATA_PREFIX, OUTPUT_NAME

from .model import EMBED_DIM, INPUT_SIZE

logger = logging.getLogger(__name__)

#: Opset 16, as the released model: below 21 (ONNX Runtime quantization tools accept it) and
#: with LayerNorm decomposed, which TensorRT 8.5 (JetPack 5) parses (LayerNormalization
#: needs opset 17 and TensorRT 8.6+).
DEFAULT_OPSET = 16
BATCH_AXIS = "N"


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


def fix_batch_axis(model: onnx.ModelProto) -> None:
    """Name the batch axis ``N`` on the input and the output (the released file left the
    output's batch axis with an automatic name) and pin the other dims."""
    for vi, dims in (
        (model.graph.input[0], (3, INPUT_SIZE, INPUT_SIZE)),
        (model.graph.output[0], (EMBED_DIM,)),
    ):
        shape = vi.type.tensor_type.shape
        shape.dim[0].ClearField("dim_value")
        shape.dim[0].dim_param = BATCH_AXIS
        for d, value in zip(shape.dim[1:], dims):
            d.ClearField("dim_param")
            d.dim_value = value


def set_metadata(model: onnx.ModelProto, meta: Mapping[str, Any]) -> None:
    """Store docedge metadata in ``metadata_props`` under ``docedge.*`` keys.

    Every value is written as JSON (a string becomes ``"fp32"`` with its quotes), because
    DocClassifier's runtime (capybara's ONNX engine) runs ``json.loads`` on every value;
    ``metadata_props`` that other tools added (onnxsim's) are re-encoded as JSON too.
    """
    keep = [(p.key, _as_json(p.value)) for p in model.metadata_props
            if not p.key.startswith(ONNX_METADATA_PREFIX)]  # fmt: skip
    del model.metadata_props[:]
    for key, value in keep:
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    for key, value in meta.items():
        prop = model.metadata_props.add()
        prop.key = ONNX_METADATA_PREFIX + key
        prop.value = json.dumps(value, separators=(",", ":"), sort_keys=True)


def _as_json(text: str) -> str:
    """``text`` if it already parses as JSON, else the JSON string of it."""
    try:
        json.loads(text)
        return text
    except ValueError:
        return json.dumps(text)


def get_metadata(model: onnx.ModelProto) -> Dict[str, Any]:
    """docedge metadata of an ONNX model (keys without the ``docedge.`` prefix), values
    decoded from JSON (a value that is not JSON, from older files, is returned as text)."""
    n = len(ONNX_METADATA_PREFIX)
    out: Dict[str, Any] = {}
    for p in model.metadata_props:
        if p.key.startswith(ONNX_METADATA_PREFIX):
            try:
                out[p.key[n:]] = json.loads(p.value)
            except ValueError:
                out[p.key[n:]] = p.value
    return out


def save_onnx(model: onnx.ModelProto, path: Union[str, Path]) -> None:
    from docedge.runtime.atomic import atomic_write_bytes

    atomic_write_bytes(path, model.SerializeToString())
