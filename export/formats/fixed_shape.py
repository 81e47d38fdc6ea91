"""Fixed-shape ONNX variants for mobile accelerators.

NNAPI takes no node of a graph whose batch axis is dynamic, and Core ML runs faster on fixed
shapes; so mobile variants fix the batch to 1 (ONNX Runtime's ``make_input_shape_fixed`` and
``fix_output_shapes``, the library behind ``python -m onnxruntime.tools.make_dynamic_shape_fixed``).
Two optional edits on top, each recorded in the artifact record:

- ``nhwc=True``: the input becomes ``img`` ``[1, 128, 128, 3]`` (interleaved BGR pixels, as a
  phone's pixel buffer is laid out), followed by one Transpose to NCHW inside the graph.
- ``normalize=False``: the final L2 normalization (ReduceL2, Clip, Shape, Expand, Div; NNAPI and
  Core ML take none of them) is cut off, so the accelerated graph is the backbone and head only;
  the caller must L2-normalize ``feats`` (docedge's runtime and the Kotlin/Swift samples do).
- ``decompose_hard_activations=True``: HardSwish ``x * clip(x + 3, 0, 6) / 6`` and HardSigmoid
  ``clip(alpha * x + beta, 0, 1)`` written as Add/Mul/Clip. NNAPI has no HardSigmoid, and ONNX
  Runtime's optimizer turns each HardSwish into HardSigmoid + Mul, which split the graph into 31
  NNAPI partitions; decomposed and without the normalization, ONNX Runtime's usability checker
  puts all 173 nodes of the demo model in one NNAPI partition (measured, docs/android.md).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Set, Union

import numpy as np
import onnx

from ._common import ConversionError, versions

logger = logging.getLogger(__name__)

INPUT = "img"
OUTPUT = "feats"
NORMALIZATION_OPS = ("ReduceL2", "LpNormalization")


def _producer(graph: onnx.GraphProto, tensor: str) -> Optional[onnx.NodeProto]:
    for n in graph.node:
        if tensor in n.output:
            node: onnx.NodeProto = n
            return node
    return None


def _ancestors_ops(graph: onnx.GraphProto, tensor: str, depth: int = 8) -> Set[str]:
    """Op types among the producers of ``tensor`` up to ``depth`` nodes back."""
    ops: Set[str] = set()
    frontier = [tensor]
    for _ in range(depth):
        nxt: List[str] = []
        for t in frontier:
            n = _producer(graph, t)
            if n is not None:
                ops.add(n.op_type)
                nxt.extend(i for i in n.input if i)
        frontier = nxt
    return ops


def prenormalization_tensor(model: onnx.ModelProto, where: str = "<model>") -> str:
    """The tensor that the final L2 normalization divides (the un-normalized embedding).

    Recognizes ``x / expand(clip(reduce_l2(x)))`` (``torch.nn.functional.normalize``) and
    ``LpNormalization``; anything else raises :class:`ConversionError`.
    """
    g = model.graph
    out = g.output[0].name
    last = _producer(g, out)
    if last is None:
        raise ConversionError(f"{where}: no node produces the output {out!r}")
    if last.op_type == "LpNormalization":
        return str(last.input[0])
    if last.op_type == "Div" and set(NORMALIZATION_OPS) & _ancestors_ops(g, last.input[1]):
        return str(last.input[0])
    raise ConversionError(
        f"{where}: the output {out!r} is produced by {last.op_type} {last.name!r}, not by an L2 "
        "normalization (x / ||x||); cannot make an un-normalized variant"
    )


def strip_normalization(model: onnx.ModelProto, where: str = "<model>") -> onnx.ModelProto:
    """Copy of ``model`` whose output ``feats`` is the embedding before L2 normalization."""
    pre = prenormalization_tensor(model, where)
    inputs = [i.name for i in model.graph.input]
    extracted = onnx.utils.Extractor(model).extract_model(inputs, [pre])
    for n in extracted.graph.node:
        n.output[:] = [OUTPUT if o == pre else o for o in n.output]
        n.input[:] = [OUTPUT if i == pre else i for i in n.input]
    extracted.graph.output[0].name = OUTPUT
    del extracted.opset_import[:]
    extracted.opset_import.extend(model.opset_import)
    extracted.ir_version = model.ir_version
    del extracted.metadata_props[:]
    extracted.metadata_props.extend(model.metadata_props)
    return extracted


def decompose_hard_ops(model: onnx.ModelProto) -> onnx.ModelProto:
    """Copy of ``model`` with HardSwish and HardSigmoid written as Add/Mul/Clip (same values up
    to float rounding)."""
    from onnx import helper, numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    consts: Dict[str, float] = {}

    def const(value: float) -> str:
        name = f"docedge_const_{len(consts)}"
        for k, v in consts.items():
            if v == value:
                return k
        consts[name] = value
        return name

    nodes: List[onnx.NodeProto] = []
    for n in g.node:
        p = n.name or n.output[0]
        if n.op_type == "HardSwish":
            x, y = n.input[0], n.output[0]
            nodes += [
                helper.make_node("Add", [x, const(3.0)], [p + "_add"], name=p + "/add3"),
                helper.make_node(
                    "Clip", [p + "_add", const(0.0), const(6.0)], [p + "_clip"], name=p + "/clip"
                ),
                helper.make_node("Mul", [x, p + "_clip"], [p + "_mul"], name=p + "/mul"),
                helper.make_node("Mul", [p + "_mul", const(1.0 / 6.0)], [y], name=p + "/div6"),
            ]
        elif n.op_type == "HardSigmoid":
            attrs = {a.name: a.f for a in n.attribute}
            x, y = n.input[0], n.output[0]
            nodes += [
                helper.make_node("Mul", [x, const(attrs.get("alpha", 0.2))], [p + "_mul"], name=p + "/alpha"),
                helper.make_node(
                    "Add", [p + "_mul", const(attrs.get("beta", 0.5))], [p + "_add"], name=p + "/beta"
                ),
                helper.make_node("Clip", [p + "_add", const(0.0), const(1.0)], [y], name=p + "/clip"),
            ]
        else:
            nodes.append(n)
    del g.node[:]
    g.node.extend(nodes)
    g.initializer.extend(numpy_helper.from_array(np.array(v, np.float32), k) for k, v in consts.items())
    return m


def to_nhwc_input(model: onnx.ModelProto) -> onnx.ModelProto:
    """Copy of ``model`` taking ``img`` as NHWC (one Transpose to NCHW inserted first)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    inp = g.input[0]
    nchw = INPUT + "_nchw"
    for n in g.node:
        n.input[:] = [nchw if i == inp.name else i for i in n.input]
    dims = inp.type.tensor_type.shape.dim
    shape: List[Any] = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims]
    if len(shape) != 4:
        raise ConversionError(f"input {inp.name!r} has rank {len(shape)}, expected 4 (NCHW)")
    new_shape = [shape[0], shape[2], shape[3], shape[1]]
    new_inp = onnx.helper.make_tensor_value_info(inp.name, inp.type.tensor_type.elem_type, new_shape)
    g.input.remove(inp)
    g.input.insert(0, new_inp)
    g.node.insert(0, onnx.helper.make_node("Transpose", [inp.name], [nchw], perm=[0, 3, 1, 2],
                                           name="docedge_nhwc_to_nchw"))  # fmt: skip
    return m


def convert_fixed_shape(
    src: Union[str, Path],
    out_path: Union[str, Path],
    batch: int = 1,
    nhwc: bool = False,
    normalize: bool = True,
    decompose_hard_activations: bool = False,
) -> Dict[str, Any]:
    """Write a fixed-batch copy of the ONNX model ``src`` to ``out_path``.

    Returns the record fields (``input``, ``normalized_output``, ``derived_from``,
    ``producers``); hashes are taken by the caller once the file is in the bundle.
    """
    from onnxruntime.tools.onnx_model_utils import fix_output_shapes, make_input_shape_fixed

    src = Path(src)
    try:
        model = onnx.load(str(src))
    except Exception as e:
        raise ConversionError(f"{src}: not a readable ONNX model ({e})") from None
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if not normalize:
        model = strip_normalization(model, str(src))
    if decompose_hard_activations:
        model = decompose_hard_ops(model)
    inp = model.graph.input[0]
    dims = inp.type.tensor_type.shape.dim
    chw = [int(d.dim_value) for d in dims[1:]]
    if len(chw) != 3 or min(chw) <= 0:
        raise ConversionError(f"{src}: input {inp.name!r} must be [N, 3, H, W] with fixed C, H, W")
    make_input_shape_fixed(model.graph, inp.name, [batch, *chw])
    fix_output_shapes(model)
    if nhwc:
        model = to_nhwc_input(model)
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        raise ConversionError(f"{out_path}: the fixed-shape model is invalid ({e})") from None
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out_path))
    c, h, w = chw
    shape = [batch, h, w, c] if nhwc else [batch, c, h, w]
    logger.info("fixed-shape ONNX %s: input %s, normalized output %s", out_path, shape, normalize)
    return {
        "input": {"name": inp.name, "layout": "NHWC" if nhwc else "NCHW", "shape": shape,
                  "batch": "fixed"},
        "output": {"name": OUTPUT, "shape": [batch, 256]},
        "normalized_output": bool(normalize),
        "derived_from": src.name,
        "converter": {"name": "onnxruntime.tools.onnx_model_utils make_input_shape_fixed",
                      "nhwc_transpose": bool(nhwc), "normalization_removed": not normalize,
                      "hard_activations_decomposed": bool(decompose_hard_activations)},
        "producers": versions("onnx", "onnxruntime"),
    }  # fmt: skip
