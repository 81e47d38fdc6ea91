"""Where an ONNX model spends its CPU time in ONNX Runtime, per kind of node: ONNX Runtime's own
profiler (``SessionOptions.enable_profiling``), its per-kernel times summed by operator, with
convolutions split into depthwise (``group > 1``) and pointwise/dense ones.

Used to explain INT8 speed on the CPU provider (docs/int8-cpu.md): :func:`conv_bound` is the
best an INT8 graph could do if every non-convolution node cost nothing.

    prof = profile_nodes("model_int8.onnx", batch=32, threads=1)
    prof.per_image_us            # {"QLinearConv-depthwise": 179.0, "HardSigmoid": 137.4, ...}
"""

from __future__ import annotations

import collections
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Union

import numpy as np

logger = logging.getLogger(__name__)

CONV_OPS = ("Conv", "QLinearConv", "FusedConv", "NchwcConv", "ConvInteger")


@dataclass
class NodeProfile:
    """Kernel time per operator class, in microseconds per image (median-free: the sum over
    ``runs`` runs divided by ``runs * batch``)."""

    model: str
    batch: int
    threads: int
    runs: int
    per_image_us: Dict[str, float] = field(default_factory=dict)
    nodes: Dict[str, int] = field(default_factory=dict)

    @property
    def total_us(self) -> float:
        return float(sum(self.per_image_us.values()))

    def conv_us(self) -> float:
        """Time in convolution kernels (any precision, depthwise and pointwise)."""
        return float(sum(v for k, v in self.per_image_us.items() if k.split("-")[0] in CONV_OPS))

    def to_json(self) -> Dict[str, object]:
        return {"model": self.model, "batch": self.batch, "threads": self.threads,
                "runs": self.runs, "total_us_per_image": round(self.total_us, 1),
                "conv_us_per_image": round(self.conv_us(), 1),
                "per_image_us": {k: round(v, 1) for k, v in self.per_image_us.items()},
                "nodes": self.nodes}  # fmt: skip


def _conv_groups(optimized: Path) -> Dict[str, int]:
    import onnx

    m = onnx.load(str(optimized), load_external_data=False)
    out: Dict[str, int] = {}
    for n in m.graph.node:
        if n.op_type in CONV_OPS:
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
            out[n.name] = int(attrs.get("group", 1))
    return out


def profile_nodes(model: Union[str, Path], batch: int = 32, threads: int = 1, runs: int = 10,
                  input_name: str = "img", size: int = 128,
                  x: Optional[np.ndarray] = None) -> NodeProfile:  # fmt: skip
    """Run ``model`` ``runs`` times on a ``(batch, 3, size, size)`` input (random in [0, 1] unless
    ``x``) with ``threads`` intra-op threads, spinning off, and sum ONNX Runtime's kernel times by
    operator (convolutions as ``<op>-depthwise`` / ``<op>-pointwise``)."""
    import onnxruntime as ort

    if x is None:
        x = np.random.default_rng(0).random((batch, 3, size, size), dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.optimized_model_filepath = os.path.join(tmp, "optimized.onnx")
        so.enable_profiling = True
        so.profile_file_prefix = os.path.join(tmp, "profile")
        sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
        sess.run(None, {input_name: x})  # warm-up (its time is included: one run of `runs` + 1)
        for _ in range(runs):
            sess.run(None, {input_name: x})
        events = json.loads(Path(sess.end_profiling()).read_text())
        groups = _conv_groups(Path(so.optimized_model_filepath))
    total: Dict[str, float] = collections.defaultdict(float)
    nodes: Dict[str, int] = collections.defaultdict(int)
    seen = set()
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        name = e["name"][: -len("_kernel_time")]
        op = e["args"]["op_name"]
        if op in CONV_OPS:
            op += "-depthwise" if groups.get(name, 1) > 1 else "-pointwise"
        total[op] += float(e["dur"])
        if name not in seen:
            seen.add(name)
            nodes[op] += 1
    scale = 1.0 / ((runs + 1) * x.shape[0])
    per = {k: v * scale for k, v in sorted(total.items(), key=lambda kv: -kv[1])}
    return NodeProfile(str(model), int(x.shape[0]), threads, runs, per, dict(nodes))


def conv_bound(fp32: NodeProfile, int8: NodeProfile) -> float:
    """The speed-up over ``fp32`` an INT8 graph could reach at best: ``fp32``'s whole time over
    ``int8``'s convolution time alone (every Q/DQ, activation and transpose free)."""
    return fp32.total_us / max(int8.conv_us(), 1e-9)
