"""Validate that an ONNX model has docedge's interface: ``img`` float32 [N,3,128,128] ->
``feats`` float32 [N,256]. Used by ``import-onnx`` and when loading foreign files."""

from __future__ import annotations

from typing import List, Union

import onnx

from docedge.runtime.bundle import INPUT_NAME, OUTPUT_NAME
from docedge.runtime.errors import BundleError

from .manifest import EMBED_DIM, INPUT_SIZE

_FLOAT = onnx.TensorProto.FLOAT


def _dims(vi: onnx.ValueInfoProto) -> List[Union[int, str]]:
    return [d.dim_param or d.dim_value or "?" for d in vi.type.tensor_type.shape.dim]


def _tensor_problems(kind: str, vi: onnx.ValueInfoProto, name: str,
                     shape: List[Union[int, str]]) -> List[str]:  # fmt: skip
    """Differences of one graph input/output from the expected name, FLOAT dtype and shape
    (the batch axis, written ``N``, may be any name or size)."""
    problems = []
    if vi.name != name:
        problems.append(f"{kind} is named {vi.name!r}, expected {name!r}")
    elem = vi.type.tensor_type.elem_type
    if elem != _FLOAT:
        problems.append(f"{kind} dtype is {onnx.TensorProto.DataType.Name(elem)}, expected FLOAT")
    dims = _dims(vi)
    if len(dims) != len(shape) or list(dims[1:]) != shape[1:]:
        expected = ", ".join(str(d) for d in shape)
        problems.append(f"{kind} shape is {dims}, expected [{expected}]")
    return problems


def interface_problems(model: onnx.ModelProto) -> List[str]:
    """Everything that differs from the expected interface (empty list: it matches)."""
    g = model.graph
    init_names = {i.name for i in g.initializer}
    inputs = [i for i in g.input if i.name not in init_names]
    problems: List[str] = []
    if len(inputs) != 1:
        problems.append(f"expected 1 input, found {len(inputs)}: {[i.name for i in inputs]}")
    if len(g.output) != 1:
        problems.append(f"expected 1 output, found {len(g.output)}: {[o.name for o in g.output]}")
    if inputs:
        problems += _tensor_problems("input", inputs[0], INPUT_NAME, ["N", 3, INPUT_SIZE, INPUT_SIZE])
    if g.output:
        problems += _tensor_problems("output", g.output[0], OUTPUT_NAME, ["N", EMBED_DIM])
    return problems


def check_interface(model: onnx.ModelProto, source: str) -> None:
    """Raise :class:`BundleError` listing every difference from the expected interface."""
    problems = interface_problems(model)
    if problems:
        raise BundleError(f"{source}: not a docedge-compatible model: " + "; ".join(problems))
