"""ONNX file helpers that need the ``onnx`` package but not torch: batch axis names, docedge
metadata in ``metadata_props``, atomic saving. Used by export, import and calibration."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence, Tuple, Union

import onnx

from docedge.runtime.bundle import ONNX_METADATA_PREFIX

from .manifest import EMBED_DIM, INPUT_SIZE

BATCH_AXIS = "N"
#: Node types an INT8 of this network never quantizes by default: the final L2 normalization.
DEFAULT_EXCLUDE_OPS: Tuple[str, ...] = ("ReduceL2",)


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


# --- which nodes an INT8 keeps float (docedge calibrate int8, and the NNCF INT8 after it) ------
def depthwise_convs(model: onnx.ModelProto) -> List[str]:
    """Names of grouped (depthwise) Conv nodes: kept float by default (measured: their
    per-tensor activation scales over channels of very different ranges cost most of the INT8
    error on this network, and they are a small share of its multiply-adds)."""
    return [n.name for n in model.graph.node if n.op_type == "Conv"
            and any(a.name == "group" and a.i > 1 for a in n.attribute)]  # fmt: skip


def input_convs(model: onnx.ModelProto) -> List[str]:
    """Names of Conv nodes that read a graph input (the stem: its input is the image).

    Kept float by default: the image's 256 levels in [0, 1] become 128 under a symmetric int8
    scale, and that input rounding was the largest single INT8 error (measured on the demo model:
    worst-image cosine 0.968 -> 0.973, mean 0.9935 -> 0.9961 with the stem float); the stem is a
    small share of the multiply-adds (3 input channels)."""
    inputs = {i.name for i in model.graph.input}
    return [n.name for n in model.graph.node if n.op_type == "Conv" and n.input and
            n.input[0] in inputs]  # fmt: skip


def float_node_names(model: onnx.ModelProto, exclude_ops: Sequence[str] = DEFAULT_EXCLUDE_OPS,
                     exclude_nodes: Sequence[str] = (), keep_depthwise_float: bool = True,
                     keep_input_conv_float: bool = True) -> List[str]:  # fmt: skip
    """Nodes to leave unquantized: by op type, by name, and (optionally) depthwise convs and the
    convolution that reads the image."""
    names = [n.name for n in model.graph.node if n.op_type in set(exclude_ops)]
    names += [n for n in exclude_nodes if n not in names]
    if keep_depthwise_float:
        names += [n for n in depthwise_convs(model) if n not in names]
    if keep_input_conv_float:
        names += [n for n in input_convs(model) if n not in names]
    return names
