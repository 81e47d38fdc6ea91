"""INT8: explicit QDQ ONNX (ONNX Runtime static quantization) and a TensorRT calibration cache
from the same activation ranges.

QDQ settings are what TensorRT's explicit-precision path requires: symmetric INT8 weights
(per channel) and symmetric INT8 activations with zero point 0. Ranges come from
:mod:`docedge.calibration.ranges`; ONNX Runtime inserts the Q/DQ pairs. Nodes listed in
``exclude_ops`` stay float (by default the final L2 normalization, measured; see
docs/precision.md). The result is gated against the PyTorch reference (or the fp32 artifact).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import onnx
from onnx import numpy_helper

from docedge.export.bundle_writer import (
    FP32_FILE,
    GateError,
    compare_with_reference,
    onnx_metadata,
    producer_versions,
    utc_now,
)
from docedge.export.check_images import check_batch, document_check_batch
from docedge.export.onnx_export import save_onnx, set_metadata
from docedge.export.reference import ReferenceModel
from docedge.runtime.bundle import (
    artifact_record,
    read_manifest,
    upsert_artifact,
    write_manifest,
)

from .calib_data import ImageSet
from .ranges import compute_ranges
from .trt_cache import CACHE_FILE, CACHE_FORMAT, DEFAULT_TRT_VERSION, write_cache

logger = logging.getLogger(__name__)

INT8_FILE = "model_int8.onnx"
DEFAULT_METHOD = "percentile"
DEFAULT_PERCENTILE = 99.99
#: Node types never quantized by default: the final L2 normalization.
DEFAULT_EXCLUDE_OPS = ("ReduceL2",)
#: Node types whose inputs get Q/DQ (the compute-heavy ones TensorRT runs in INT8).
DEFAULT_QUANTIZE_OPS = ("Conv", "MatMul", "Gemm")
#: Gate images: synthetic document captures (export.check_images.document_check_batch).
GATE_IMAGES = 64
INT8_MEAN_COSINE = 0.99
INT8_MIN_COSINE = 0.97


def quantize_qdq(
    fp32_path: Path, out_path: Path, amax: Dict[str, float],
    exclude_ops: Sequence[str] = DEFAULT_EXCLUDE_OPS, per_channel: bool = True,
    quantize_ops: Sequence[str] = DEFAULT_QUANTIZE_OPS, exclude_nodes: Sequence[str] = (),
) -> onnx.ModelProto:  # fmt: skip
    """QDQ-quantize ``fp32_path`` with fixed symmetric activation ranges ``amax``."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    model = onnx.load(str(fp32_path))
    exclude = [n.name for n in model.graph.node
               if n.op_type in set(exclude_ops) or n.name in set(exclude_nodes)]  # fmt: skip
    input_name = model.graph.input[0].name

    class _OneBatch(CalibrationDataReader):  # type: ignore[misc]
        """quantize_static wants a reader; ranges are fixed by the overrides below."""

        def __init__(self) -> None:
            self.done = False

        def get_next(self) -> Optional[Dict[str, np.ndarray]]:
            if self.done:
                return None
            self.done = True
            return {input_name: check_batch(2, seed=5)}

    overrides = {t: [{"rmin": np.float32(-a), "rmax": np.float32(a)}] for t, a in amax.items()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_out = Path(tmp) / "q.onnx"
        quantize_static(
            str(fp32_path), str(tmp_out), _OneBatch(),
            quant_format=QuantFormat.QDQ, per_channel=per_channel,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            nodes_to_exclude=exclude, op_types_to_quantize=list(quantize_ops),
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                           "TensorQuantOverrides": overrides},
        )  # fmt: skip
        q = onnx.load(str(tmp_out))
    save_onnx(q, out_path)
    return q


def qdq_activation_scales(model: onnx.ModelProto) -> Dict[str, float]:
    """Scale of every QuantizeLinear on an activation, keyed by the fp32 tensor it quantizes."""
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    scales: Dict[str, float] = {}
    for n in model.graph.node:
        if n.op_type == "QuantizeLinear" and n.input[0] not in inits:
            s = inits.get(n.input[1])
            if s is not None and s.size == 1:
                scales[n.input[0]] = float(s.reshape(()))
    return scales


def calibrate_int8(
    bundle_dir: Union[str, Path],
    images_dir: Union[str, Path],
    method: str = DEFAULT_METHOD,
    percentile: float = DEFAULT_PERCENTILE,
    reference: Optional[ReferenceModel] = None,
    exclude_ops: Sequence[str] = DEFAULT_EXCLUDE_OPS,
    max_images: Optional[int] = 1000,
    batch_size: int = 16,
    trt_version: str = DEFAULT_TRT_VERSION,
    per_channel: bool = True,
    quantize_ops: Sequence[str] = DEFAULT_QUANTIZE_OPS,
    exclude_nodes: Sequence[str] = (),
    keep_depthwise_float: bool = True,
    enforce_gate: bool = True,
    mean_cosine: float = INT8_MEAN_COSINE,
    min_cosine: float = INT8_MIN_COSINE,
    progress: bool = True,
) -> Dict[str, Any]:
    """Calibrate, write ``model_int8.onnx`` and ``int8_calibration.cache``, gate, record.

    Returns ``{"onnx": record, "cache": record}``. With ``enforce_gate`` a failed gate raises
    :class:`GateError` and leaves the bundle unchanged.
    """
    import onnxruntime

    root = Path(bundle_dir)
    manifest = read_manifest(root)
    fp32_path = root / FP32_FILE
    images = ImageSet.scan(images_dir, max_images)
    fp32_model = onnx.load(str(fp32_path))
    ranges = compute_ranges(fp32_model, lambda: images.batches(batch_size), method,
                            percentile, progress=progress)  # fmt: skip
    excluded = list(exclude_nodes) + (depthwise_convs(fp32_model) if keep_depthwise_float else [])
    q = quantize_qdq(fp32_path, root / INT8_FILE, ranges.amax, exclude_ops, per_channel,
                     quantize_ops, excluded)
    set_metadata(q, onnx_metadata(manifest, "int8"))
    save_onnx(q, root / INT8_FILE)
    scales = qdq_activation_scales(q)
    write_cache(root / CACHE_FILE, scales, trt_version)

    x = document_check_batch(GATE_IMAGES)
    agree, against = compare_with_reference(root, INT8_FILE, x, reference)
    passed = agree.cos_mean >= mean_cosine and agree.cos_min >= min_cosine
    calib = {"method": method, "percentile": percentile if method == "percentile" else None,
             "images": ranges.images, "data_sha256": images.sha256,
             "images_dir": str(images.root), "skipped_images": dict(images.skipped),
             "fallback_tensors": ranges.fallbacks, "excluded_ops": list(exclude_ops),
             "quantized_op_types": list(quantize_ops), "excluded_nodes": excluded,
             "depthwise_kept_float": keep_depthwise_float,
             "per_channel_weights": per_channel, "activation": "int8 symmetric, zero point 0",
             "quantized_activations": len(scales)}  # fmt: skip
    fp32_sha = manifest_sha(manifest, FP32_FILE)
    onnx_rec = artifact_record(
        root, INT8_FILE, "onnx", "int8",
        opset=max(o.version for o in q.opset_import if o.domain in ("", "ai.onnx")),
        calibration=calib,
        producers={**producer_versions(), "onnxruntime.quantization": onnxruntime.__version__},
        verification={"against": against,
                      "images": f"{GATE_IMAGES} synthetic document captures (held-out types)",
                      "gate": {"cos_mean": mean_cosine, "cos_min": min_cosine},
                      "passed": passed, **agree.to_dict()},
        created=utc_now(),
    )  # fmt: skip
    cache_rec = artifact_record(
        root, CACHE_FILE, CACHE_FORMAT, "int8", trt_version_line=f"TRT-{trt_version}",
        model_sha256=fp32_sha, data_sha256=images.sha256, method=method,
        tensors=len(scales), created=utc_now(), producers=producer_versions(),
    )  # fmt: skip
    if enforce_gate and not passed:
        for f in (INT8_FILE, CACHE_FILE):
            (root / f).unlink(missing_ok=True)
        raise GateError(f"{root / INT8_FILE}: int8 gate failed: cosine mean {agree.cos_mean:.4f} "
                        f"(need >= {mean_cosine}), min {agree.cos_min:.4f} "
                        f"(need >= {min_cosine}) against {against}")  # fmt: skip
    upsert_artifact(manifest, onnx_rec)
    upsert_artifact(manifest, cache_rec)
    write_manifest(root, manifest)
    logger.info("int8 (%s): cos mean %.4f min %.4f", method, agree.cos_mean, agree.cos_min)
    return {"onnx": onnx_rec, "cache": cache_rec}


def depthwise_convs(model: onnx.ModelProto) -> List[str]:
    """Names of depthwise (grouped) Conv nodes: kept float by default (measured: quantizing
    their per-tensor activations costs most of the INT8 error on this network)."""
    return [n.name for n in model.graph.node if n.op_type == "Conv"
            and any(a.name == "group" and a.i > 1 for a in n.attribute)]  # fmt: skip


def manifest_sha(manifest: Dict[str, Any], file: str) -> str:
    for a in manifest.get("artifacts", []):
        if a.get("file") == file:
            return str(a["sha256"])
    raise KeyError(file)


