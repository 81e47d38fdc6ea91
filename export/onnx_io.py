"""ONNX file helpers that need the ``onnx`` package but not torch: batch axis names, docedge
metadata in ``metadata_props``, atomic saving. Used by export, import and calibration."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Mapping, Union

import onnx

from docedge.runtime.bundle import ONNX_METADATA_PREFIX

from .manifest import EMBED_DIM, INPUT_SIZE

BATCH_AXIS = "N"


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
