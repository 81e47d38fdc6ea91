"""INT8: explicit QDQ ONNX (ONNX Runtime static quantization) and a TensorRT calibration cache
from the same activation ranges, gated against the PyTorch reference.

QDQ settings are what TensorRT's explicit quantization accepts (8.x to 11): symmetric INT8
weights per output channel, symmetric INT8 activations with zero point 0 (one scale per
tensor), Q/DQ on the inputs of Conv/MatMul/Gemm. By default (``weight_storage="qdq-float"``)
weights stay float32 behind a QuantizeLinear/DequantizeLinear pair and biases stay float, as
TensorRT 8.x requires (its parser refuses DequantizeLinear on INT8/INT32 initializers);
``"int8"`` stores INT8 weights (smaller file, for ONNX Runtime/NPU toolchains; not TensorRT 8).

Ranges come from :mod:`docedge.calibration.ranges` and reach ``quantize_static`` as
``TensorQuantOverrides``. Nodes kept float by default (measured on the demo model, see
docs/precision.md): the final L2 normalization and every depthwise convolution. The TensorRT cache
holds a scale for every float activation of the fp32 graph (TensorRT's implicit INT8 needs the
ranges of a layer's inputs and outputs); for the tensors the QDQ model quantizes, the scales are
bit-identical. The cache record lists ``float_nodes`` for builders that pin layer precisions.
"""

from __future__ import annotations

import logging
import struct
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import onnx
from onnx import numpy_helper

from docedge.export.check_images import check_batch, document_check_batch
from docedge.export.gates import GateError, ort_embed, reference_embed
from docedge.export.manifest import CHECK_IMAGES, onnx_metadata
from docedge.export.onnx_io import (  # noqa: F401  (the float-node helpers are part of this API)
    DEFAULT_EXCLUDE_OPS,
    depthwise_convs,
    float_node_names,
    input_convs,
    save_onnx,
    set_metadata,
)
from docedge.export.provenance import producer_versions, utc_now
from docedge.export.verify import agreement
from docedge.runtime.bundle import load_bundle
from docedge.runtime.bundle_commit import BundleTransaction

if TYPE_CHECKING:  # pragma: no cover
    from docedge.export.reference import ReferenceModel

from .calib_data import ImageSet
from .ranges import RangeResult, compute_ranges
from .trt_cache import (
    ALGORITHM,
    CACHE_FILE,
    CACHE_FORMAT,
    DEFAULT_TRT_VERSION,
    scales_digest,
    scales_from_amax,
    trt_version_number,
    write_cache,
)

logger = logging.getLogger(__name__)

INT8_FILE = "model_int8.onnx"
DEFAULT_METHOD = "percentile"
DEFAULT_PERCENTILE = 99.99
DEFAULT_MAX_IMAGES = 1000
#: Node types whose inputs get Q/DQ (the compute-heavy ones TensorRT runs in INT8).
DEFAULT_QUANTIZE_OPS: Tuple[str, ...] = ("Conv", "MatMul", "Gemm")
WEIGHT_STORAGES = ("qdq-float", "int8")
#: Quantized nodes kept float by measured sensitivity (:mod:`docedge.calibration.sensitivity`).
#: 12 (of the 20 quantizable nodes of the reference network), chosen on the CALIB real pages
#: (never the evaluation pages) for decision agreement with fp32 at the shipped thresholds,
#: FPR 1e-2, over five run-4 checkpoints: 4 layers gave 0.94-0.98, 8 gave 0.965-0.98, 12 gave
#: 0.97-0.99, at about the same CPU time as 8 (5% more than 4; docs/precision.md).
DEFAULT_FLOAT_FALLBACK = 12
#: Calibration images the sensitivity of each layer is measured on.
SENSITIVITY_IMAGES = 64
#: Gate image sets that exist: the fp32/fp16 check images (generated shapes, far from the
#: calibration distribution) and synthetic document captures of held-out types.
GATE_SET_NAMES = ("check", "documents")
#: Sets an INT8 artifact is gated on by default: documents, the distribution it serves.
GATE_SETS = ("documents",)
DOCUMENT_GATE_IMAGES = 64
INT8_MEAN_COSINE = 0.99
INT8_MIN_COSINE = 0.97
#: Labelled gate: TPR at this FPR may drop by at most this much against fp32.
TPR_GATE_FPR = 1e-2
MAX_TPR_DROP = 0.01


def quantize_qdq(
    fp32_path: Path,
    out_path: Path,
    amax: Dict[str, float],
    exclude_nodes: Sequence[str] = (),
    per_channel: bool = True,
    quantize_ops: Sequence[str] = DEFAULT_QUANTIZE_OPS,
    weight_storage: str = "qdq-float",
    calibration_batch: Optional[np.ndarray] = None,
) -> onnx.ModelProto:
    """QDQ-quantize ``fp32_path`` into ``out_path`` with the fixed symmetric activation ranges
    ``amax`` (tensor -> max |x|). Raises ``ValueError`` if ONNX Runtime quantized an activation
    whose scale is not ``amax / 127`` (a range docedge did not choose)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    if weight_storage not in WEIGHT_STORAGES:
        raise ValueError(f"weight_storage must be one of {WEIGHT_STORAGES}")
    model = onnx.load(str(fp32_path))
    input_name = model.graph.input[0].name
    batch = calibration_batch if calibration_batch is not None else check_batch(2, seed=5)

    class _OneBatch(CalibrationDataReader):  # type: ignore[misc]
        """quantize_static wants a reader; the overrides below fix every range."""

        def __init__(self) -> None:
            self.done = False

        def get_next(self) -> Optional[Dict[str, np.ndarray]]:
            if self.done:
                return None
            self.done = True
            return {input_name: batch}

    used = {t for n in model.graph.node for t in n.input}
    overrides = {t: [{"rmin": np.float32(-a), "rmax": np.float32(a)}]
                 for t, a in amax.items() if t in used}  # fmt: skip
    extra: Dict[str, Any] = {"ActivationSymmetric": True, "WeightSymmetric": True,
                             "TensorQuantOverrides": overrides}  # fmt: skip
    if weight_storage == "qdq-float":
        extra.update(AddQDQPairToWeight=True, DedicatedQDQPair=True, QuantizeBias=False)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_out = Path(tmp) / "q.onnx"
        quantize_static(
            str(fp32_path), str(tmp_out), _OneBatch(),
            quant_format=QuantFormat.QDQ, per_channel=per_channel,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            nodes_to_exclude=list(exclude_nodes), op_types_to_quantize=list(quantize_ops),
            extra_options=extra,
        )  # fmt: skip
        q = onnx.load(str(tmp_out))
    expected = scales_from_amax(amax)
    for tensor, scale in qdq_activation_scales(q).items():
        if tensor not in expected or struct.pack(">f", scale) != struct.pack(">f", expected[tensor]):
            raise ValueError(f"QDQ scale of {tensor!r} ({scale}) is not docedge's "
                             f"{expected.get(tensor)}: ONNX Runtime chose its own range")  # fmt: skip
    save_onnx(q, out_path)
    return q


def qdq_activation_scales(model: onnx.ModelProto) -> Dict[str, float]:
    """Scale of every QuantizeLinear on an activation (not a weight), keyed by the fp32
    tensor it quantizes."""
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    scales: Dict[str, float] = {}
    for n in model.graph.node:
        if n.op_type == "QuantizeLinear" and n.input[0] not in inits:
            s = inits.get(n.input[1])
            if s is not None and s.size == 1:
                scales[n.input[0]] = float(s.reshape(()))
    return scales


def quantized_node_names(model: onnx.ModelProto) -> List[str]:
    """Nodes of a QDQ model whose inputs come through DequantizeLinear (run in INT8)."""
    dq_out = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return [n.name for n in model.graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")
            and any(i in dq_out for i in n.input)]  # fmt: skip


def gate_batch(name: str) -> Tuple[np.ndarray, str]:
    """Pre-processed gate images by set name, and a description for the manifest."""
    if name == "check":
        return check_batch(CHECK_IMAGES), f"{CHECK_IMAGES} generated check images (fp32/fp16 gate set)"
    if name == "documents":
        return (document_check_batch(DOCUMENT_GATE_IMAGES),
                f"{DOCUMENT_GATE_IMAGES} synthetic document captures (held-out types)")  # fmt: skip
    raise ValueError(f"unknown gate image set {name!r}; choose from {GATE_SET_NAMES}")


def labelled_tpr(fp32_path: Path, int8_path: Path, labelled: Union[str, Path],
                 fpr: float = TPR_GATE_FPR) -> Dict[str, Any]:  # fmt: skip
    """TPR at ``fpr`` of the fp32 and INT8 ONNX on labelled images ``DIR/<class>/*``: all
    same-class pairs genuine, all others impostors; scores (cos+1)/2."""
    from docedge.runtime.preprocess import list_images, load_image, preprocess_bgr

    from .roc import pair_scores, tpr_at_fpr_table

    root = Path(labelled)
    files = list_images(root)
    labels = [f.relative_to(root).parent.as_posix() for f in files]
    if len(set(labels)) < 2:
        raise ValueError(f"{root}: labelled images need at least two class sub-folders")
    x = np.stack([preprocess_bgr(load_image(str(f), i)) for i, f in enumerate(files)])
    out: Dict[str, Any] = {"images": len(files), "classes": len(set(labels)), "fpr": fpr}
    for prec, path in (("fp32", fp32_path), ("int8", int8_path)):
        g, imp, info = pair_scores(ort_embed(path, x), labels, max_impostors=2_000_000)
        row = tpr_at_fpr_table(g, imp, [fpr])[0]
        if not row["supported"]:
            raise ValueError(f"{root}: too few impostor pairs ({imp.size}) for FPR {fpr}")
        out[f"tpr_{prec}"] = row["tpr"]
        out["genuine_pairs"], out["impostor_pairs"] = info["genuine_pairs"], info["impostor_pairs"]
    out["tpr_drop"] = out["tpr_fp32"] - out["tpr_int8"]
    return out


@dataclass(frozen=True)
class RangeOptions:
    """How activation ranges are computed (:func:`docedge.calibration.ranges.compute_ranges`)."""

    method: str = DEFAULT_METHOD
    percentile: float = DEFAULT_PERCENTILE
    max_images: Optional[int] = DEFAULT_MAX_IMAGES
    batch_size: int = 16


@dataclass(frozen=True)
class QuantOptions:
    """What is quantized and how (:func:`quantize_qdq`), and the TensorRT cache header."""

    per_channel: bool = True
    quantize_ops: Tuple[str, ...] = DEFAULT_QUANTIZE_OPS
    exclude_ops: Tuple[str, ...] = DEFAULT_EXCLUDE_OPS
    exclude_nodes: Tuple[str, ...] = ()
    keep_depthwise_float: bool = True
    keep_input_conv_float: bool = True
    float_fallback: int = DEFAULT_FLOAT_FALLBACK
    weight_storage: str = "qdq-float"
    trt_version: str = DEFAULT_TRT_VERSION


@dataclass(frozen=True)
class GateOptions:
    """The INT8 gate (:func:`gate_int8`): cosine limits per image set, an optional labelled
    TPR check, and whether a failure refuses the artifacts (``enforce``)."""

    sets: Tuple[str, ...] = GATE_SETS
    mean_cosine: float = INT8_MEAN_COSINE
    min_cosine: float = INT8_MIN_COSINE
    labelled_images: Optional[Union[str, Path]] = None
    max_tpr_drop: float = MAX_TPR_DROP
    enforce: bool = True


#: Keyword shortcuts of :func:`calibrate_int8` -> (options group, field).
_SHORTCUTS = {
    "method": ("ranges", "method"), "percentile": ("ranges", "percentile"),
    "max_images": ("ranges", "max_images"), "batch_size": ("ranges", "batch_size"),
    "per_channel": ("quant", "per_channel"), "quantize_ops": ("quant", "quantize_ops"),
    "exclude_ops": ("quant", "exclude_ops"), "exclude_nodes": ("quant", "exclude_nodes"),
    "keep_depthwise_float": ("quant", "keep_depthwise_float"),
    "keep_input_conv_float": ("quant", "keep_input_conv_float"),
    "float_fallback": ("quant", "float_fallback"),
    "weight_storage": ("quant", "weight_storage"), "trt_version": ("quant", "trt_version"),
    "gate_sets": ("gate", "sets"), "mean_cosine": ("gate", "mean_cosine"),
    "min_cosine": ("gate", "min_cosine"), "labelled_images": ("gate", "labelled_images"),
    "max_tpr_drop": ("gate", "max_tpr_drop"), "enforce_gate": ("gate", "enforce"),
}  # fmt: skip


def calibrate_int8(
    bundle_dir: Union[str, Path],
    images_dir: Union[str, Path],
    reference: Optional[ReferenceModel] = None,
    ranges_options: Optional[RangeOptions] = None,
    quant: Optional[QuantOptions] = None,
    gate: Optional[GateOptions] = None,
    progress: bool = True,
    **shortcuts: Any,
) -> Dict[str, Any]:
    """Add INT8 to a bundle: ranges on ``images_dir`` (:func:`compute_ranges`), the QDQ model
    (:func:`quantize_qdq`), the TensorRT cache (:func:`write_cache`), the gate
    (:func:`gate_int8`), then one atomic manifest commit of both files.

    Options come in three groups (:class:`RangeOptions`, :class:`QuantOptions`,
    :class:`GateOptions`); their fields may also be given as keywords (``method="entropy"``,
    ``min_cosine=0.98``, ``enforce_gate=False``; an unknown keyword is a ``TypeError``).
    A failed gate raises :class:`GateError` and leaves the bundle unchanged (with
    ``enforce_gate=False`` the artifacts are committed and the failure recorded).
    Returns ``{"onnx": record, "cache": record}``.
    """
    groups: Dict[str, Any] = {"ranges": ranges_options or RangeOptions(),
                              "quant": quant or QuantOptions(), "gate": gate or GateOptions()}
    for key, value in shortcuts.items():
        if key not in _SHORTCUTS:
            raise TypeError(f"calibrate_int8() got an unknown option {key!r}; options: "
                            f"{sorted(_SHORTCUTS)}")  # fmt: skip
        group, fld = _SHORTCUTS[key]
        if isinstance(value, list):
            value = tuple(value)
        groups[group] = replace(groups[group], **{fld: value})
    ro, qo, go = groups["ranges"], groups["quant"], groups["gate"]
    method, percentile, max_images, batch_size = ro.method, ro.percentile, ro.max_images, ro.batch_size
    per_channel, quantize_ops, exclude_ops = qo.per_channel, qo.quantize_ops, qo.exclude_ops
    exclude_nodes, keep_depthwise_float = qo.exclude_nodes, qo.keep_depthwise_float
    weight_storage, trt_version = qo.weight_storage, qo.trt_version
    gate_sets, mean_cosine, min_cosine = go.sets, go.mean_cosine, go.min_cosine
    labelled_images, max_tpr_drop, enforce_gate = go.labelled_images, go.max_tpr_drop, go.enforce
    import onnxruntime

    root = Path(bundle_dir)
    bundle = load_bundle(root)
    fp32_path = bundle.artifact_path("fp32")
    fp32_sha = bundle.artifact("fp32").sha256
    images = ImageSet.scan(images_dir, max_images)
    fp32_model = onnx.load(str(fp32_path))
    ranges = compute_ranges(fp32_model, lambda: images.batches(batch_size), method, percentile,
                            progress=progress, total_batches=images.num_batches(batch_size))  # fmt: skip
    float_nodes = float_node_names(fp32_model, exclude_ops, exclude_nodes, keep_depthwise_float,
                                   qo.keep_input_conv_float)  # fmt: skip
    first = next(images.batches(min(batch_size, 4)))
    fallback: Dict[str, Any] = {"count": 0}
    if qo.float_fallback > 0:
        x = next(images.batches(SENSITIVITY_IMAGES))  # the first images of the set
        float_nodes, fallback = _sensitivity_fallback(fp32_path, fp32_model, ranges.amax, x,
                                                      float_nodes, qo)  # fmt: skip

    # Staged: both files are written under temporary names and gated while the bundle still
    # lists its previous artifacts; one manifest rename commits them (or nothing changes).
    with BundleTransaction(root) as tx:
        staged_q, staged_cache = tx.stage(INT8_FILE), tx.stage(CACHE_FILE)
        q = quantize_qdq(fp32_path, staged_q, ranges.amax, float_nodes, per_channel,
                         quantize_ops, weight_storage, first)  # fmt: skip
        set_metadata(q, onnx_metadata(tx.manifest, "int8"))
        save_onnx(q, staged_q)
        cache_scales = scales_from_amax(ranges.amax)
        write_cache(staged_cache, cache_scales, trt_version)
        verification = gate_int8(fp32_path, staged_q, reference, gate_sets, mean_cosine,
                               min_cosine, labelled_images, max_tpr_drop)  # fmt: skip
        passed = bool(verification["passed"])
        if enforce_gate and not passed:
            raise GateError(f"{root / INT8_FILE}: int8 gate failed: {verification['summary']}; "
                            "the bundle is unchanged")  # fmt: skip
        quantized = quantized_node_names(q)
        qdq_scales = qdq_activation_scales(q)
        calib = {"method": method, "percentile": ranges.percentile, **images.record(),
                 "batches": ranges.batches, "fallback_tensors": dict(ranges.fallbacks)}  # fmt: skip
        quant_rec = {"format": "QDQ", "weights": "int8 symmetric per-channel" if per_channel
                 else "int8 symmetric per-tensor", "weight_storage": weight_storage,
                 "activations": "int8 symmetric per-tensor, zero point 0",
                 "quantized_op_types": list(quantize_ops), "excluded_op_types": list(exclude_ops),
                 "depthwise_kept_float": keep_depthwise_float,
                 "input_conv_kept_float": qo.keep_input_conv_float, "float_nodes": float_nodes,
                 "float_fallback": fallback,
                 "quantized_nodes": len(quantized),
                 "quantized_activations": len(qdq_scales),
                 "activation_scales_sha256": scales_digest(qdq_scales, qdq_scales)}  # fmt: skip
        onnx_rec = tx.add_artifact(
            staged_q, INT8_FILE, "onnx", "int8",
            opset=max(o.version for o in q.opset_import if o.domain in ("", "ai.onnx")),
            calibration=calib, quantization=quant_rec,
            producers={**producer_versions(), "onnxruntime.quantization": onnxruntime.__version__},
            verification=verification, created=utc_now(),
        )  # fmt: skip
        cache_rec = tx.add_artifact(
            staged_cache, CACHE_FILE, CACHE_FORMAT, "int8",
            trt_version_line=f"TRT-{trt_version_number(trt_version)}-{ALGORITHM}",
            model_sha256=fp32_sha, data_sha256=images.sha256, method=method,
            percentile=ranges.percentile, images=ranges.images, tensors=len(ranges.amax),
            float_nodes=float_nodes, fallback_tensors=sorted(ranges.fallbacks),
            qdq_artifact=onnx_rec["file"], qdq_sha256=onnx_rec["sha256"], created=utc_now(),
            qdq_tensors=sorted(qdq_scales),
            qdq_scales_sha256=scales_digest(cache_scales, qdq_scales),
            producers=producer_versions(),
        )  # fmt: skip
    logger.info("int8 (%s): %s", method, verification["summary"])
    return {"onnx": onnx_rec, "cache": cache_rec}


def default_float_nodes(fp32_path: Path, batches: Sequence[np.ndarray],
                        quant: Optional[QuantOptions] = None, ranges_options: Optional[RangeOptions] = None,
                        ) -> Tuple[List[str], Dict[str, Any]]:  # fmt: skip
    """The ONNX nodes :func:`calibrate_int8` keeps float on these calibration ``batches`` (float32
    ``(n, 3, 128, 128)`` arrays): by type and name, the depthwise and input convolutions, and the
    ``float_fallback`` most sensitive layers ranked on the first :data:`SENSITIVITY_IMAGES`
    images, with the ranges computed the same way; and the ``float_fallback`` record. For another
    quantizer of the same network (NNCF's INT8 of a bundle without ``model_int8.onnx``)."""
    qo, ro = quant or QuantOptions(), ranges_options or RangeOptions()
    model = onnx.load(str(fp32_path))
    names = float_node_names(model, qo.exclude_ops, qo.exclude_nodes, qo.keep_depthwise_float,
                             qo.keep_input_conv_float)  # fmt: skip
    if qo.float_fallback <= 0 or not batches:
        return names, {"count": 0}
    ranges = compute_ranges(model, lambda: iter(batches), ro.method, ro.percentile, progress=False,
                            total_batches=len(batches))  # fmt: skip
    x = np.concatenate(list(batches))[:SENSITIVITY_IMAGES]
    return _sensitivity_fallback(fp32_path, model, ranges.amax, x, names, qo)


def _sensitivity_fallback(fp32_path: Path, model: onnx.ModelProto, amax: Dict[str, float],
                          x: np.ndarray, float_nodes: List[str],
                          qo: QuantOptions) -> Tuple[List[str], Dict[str, Any]]:  # fmt: skip
    """``float_nodes`` plus the ``qo.float_fallback`` quantized nodes whose float fallback raises
    the embedding cosine most on the images ``x`` (the first calibration images), and the
    record of the ranking."""
    from .sensitivity import layer_sensitivity, most_sensitive

    types, kept = set(qo.quantize_ops), set(float_nodes)
    candidates = [n.name for n in model.graph.node if n.op_type in types and n.name not in kept]
    ranked = layer_sensitivity(fp32_path, amax, x, float_nodes, candidates,
                               per_channel=qo.per_channel, quantize_ops=qo.quantize_ops,
                               weight_storage=qo.weight_storage)  # fmt: skip
    chosen = most_sensitive(ranked, qo.float_fallback)
    logger.info("int8: kept float by sensitivity: %s", ", ".join(chosen))
    record = {"count": len(chosen), "nodes": chosen, "measured_on_images": len(x),
              "metric": "embedding cosine to fp32 with the one node float (mean over images)",
              "ranking": [r.to_json() for r in ranked]}  # fmt: skip
    return [*float_nodes, *chosen], record


def gate_int8(fp32_path: Path, int8_path: Path, reference: Optional[ReferenceModel],
            gate_sets: Sequence[str], mean_cosine: float, min_cosine: float,
            labelled: Optional[Union[str, Path]], max_tpr_drop: float) -> Dict[str, Any]:  # fmt: skip
    """The INT8 gate: agreement of ``int8_path`` with the reference on every image set in
    ``gate_sets`` (and the labelled TPR drop), the worst figures at top level, a summary."""
    if not gate_sets:
        raise ValueError("at least one gate image set is needed")
    against = "pytorch-reference" if reference is not None else "fp32-onnx (no PyTorch reference)"
    sets: Dict[str, Any] = {}
    for name in gate_sets:
        x, desc = gate_batch(name)
        ref, _ = reference_embed(x, reference, fp32_path)
        a = agreement(ref, ort_embed(int8_path, x))
        sets[name] = {"images": desc, **a.to_dict(),
                      "passed": a.cos_mean >= mean_cosine and a.cos_min >= min_cosine}  # fmt: skip
    worst_mean = min(s["cos_mean"] for s in sets.values())
    worst_min = min(s["cos_min"] for s in sets.values())
    passed = all(s["passed"] for s in sets.values())
    summary = ", ".join(f"{k}: cos mean {s['cos_mean']:.4f} min {s['cos_min']:.4f}"
                        for k, s in sets.items())  # fmt: skip
    v: Dict[str, Any] = {"against": against, "gate": {"cos_mean": mean_cosine, "cos_min": min_cosine},
                         "cos_mean": worst_mean, "cos_min": worst_min, "sets": sets}  # fmt: skip
    if labelled is not None:
        t = labelled_tpr(fp32_path, int8_path, labelled)
        t["passed"] = t["tpr_drop"] <= max_tpr_drop + 1e-12
        v["gate"]["max_tpr_drop"] = max_tpr_drop
        v["tpr"] = t
        passed = passed and t["passed"]
        summary += f"; TPR@{t['fpr']:g} fp32 {t['tpr_fp32']:.4f} int8 {t['tpr_int8']:.4f}"
    else:
        v["tpr"] = None
    summary += f" (need mean >= {mean_cosine}, min >= {min_cosine}) -> {'PASS' if passed else 'FAIL'}"
    v["passed"] = passed
    v["summary"] = summary
    return v


def range_summary(ranges: RangeResult) -> Dict[str, Any]:
    """Compact description of a range computation (for logs and reports)."""
    return {"method": ranges.method, "percentile": ranges.percentile, "tensors": len(ranges.amax),
            "images": ranges.images, "fallbacks": len(ranges.fallbacks)}  # fmt: skip
