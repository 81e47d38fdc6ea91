"""Validate that an ONNX model has docedge's interface: ``img`` float32 [N,3,128,128] ->
``feats`` float32 [N,256]. Used by ``import-onnx`` and when loading foreign files."""

from __future__ import annotations

from typing import List, Union

import onnx

from docedge.runtime.bundle import INPUT_NAME, OUTPUT_NAME
from docedge.runtime.errors import BundleError

from .model import EMBED_DIM, INPUT_SIZE

_FLOAT = onnx.TensorProto.FLOAT


def _dims(vi: onnx.ValueInfoProto) -> List[Union[int, str]]:
    return [d.dim_param or d.dim_value or "?" for d in vi.type.tensor_type.shape.dim]


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
        i = inputs[0]
        if i.name != INPUT_NAME:
            problems.append(f"input is named {i.name!r}, expected {INPUT_NAME!r}")
        if i.type.tensor_type.elem_type != _FLOAT:
            problems.append(
                f"input dtype is {onnx.TensorProto.DataType.Name(i.type.tensor_type.elem_type)}, "
                "expected FLOAT"
            )
        dims = _dims(i)
        if len(dims) != 4 or list(dims[1:]) != [3, INPUT_SIZE, INPUT_SIZE]:
            problems.append(f"input shape is {dims}, expected [N, 3, {INPUT_SIZE}, {INPUT_SIZE}]")
    if g.output:
        o = g.output[0]
        if o.name != OUTPUT_NAME:
            problems.append(f"output is named {o.name!r}, expected {OUTPUT_NAME!r}")
        if o.type.tensor_type.elem_type != _FLOAT:
            problems.append(
                f"output dtype is {onnx.TensorProto.DataType.Name(o.type.tensor_type.elem_type)}, "
                "expected FLOAT"
            )
        dims = _dims(o)
        if len(dims) != 2 or dims[1] != EMBED_DIM:
            problems.append(f"output shape is {dims}, expected [N, {EMBED_DIM}]")
    return problems


def check_interface(model: onnx.ModelProto, source: str) -> None:
    """Raise :class:`BundleError` listing every difference from the expected interface."""
    problems = interface_problems(model)
    if problems:
        raise BundleError(f"{source}: not a docedge-compatible model: " + "; ".join(problems))
