"""OpenVINO IR artifacts for x86 edge boxes: bf16 and NNCF INT8 (``docedge convert --formats
openvino``; extras ``[openvino]`` to run them, ``[openvino-export]`` to make them).

- ``model_bf16.xml`` + ``.bin``: the bundle's fp32 ONNX through ``openvino.convert_model`` and
  ``save_model(compress_to_fp16=False)`` (weights stay fp32), recorded with
  ``inference_precision_hint: "bf16"``: OpenVINO computes in bf16 on CPUs that have it. On a
  CPU without bf16 it is refused (not run, not committed; the report says why). Gated with
  fp16's limits (:data:`BF16_GATE`); after the gate, :func:`table_decision` lets it borrow
  fp32's threshold table and galleries only when its cosine min reaches
  :data:`BORROW_TABLE_MIN_COSINE` (fp16's inheritance rule).
- ``model_int8.xml`` + ``.bin``: ``nncf.quantize`` of that fp32 IR on the bundle's calibration
  data, batched (:data:`CALIBRATION_BATCH` images per calibration item: one image per item
  measured much worse, see docs/openvino.md), with the settings of :data:`NNCF_SETTINGS`,
  keeping float the layers the ONNX INT8 keeps float (:func:`onnx_float_nodes`,
  ``IgnoredScope(names=...)`` via :func:`ov_op_names`).

Each artifact is gated against the PyTorch reference by :mod:`.gate` through the runtime's own
:class:`~docedge.runtime.backends.openvino_backend.OpenVINOBackend`, and timed per core
against ONNX Runtime on the ONNX artifact that would run otherwise (``backend="auto"`` reads
that ratio). :func:`plan` stages them for :func:`docedge.export.formats.convert.convert_bundle`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import platform
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from docedge.runtime.bundle import INTERCHANGEABLE_KEY
from docedge.runtime.thresholds import BORROW_TABLE_MIN_COSINE

from ..manifest import FP32_FILE
from . import gate as gating
from ._common import ConversionError, ConverterUnavailableError, require, versions

if TYPE_CHECKING:  # pragma: no cover
    from .convert import Context, PostGate, Staged

logger = logging.getLogger(__name__)

EXTRA = "openvino"
EXPORT_EXTRA = "openvino-export"
FORMAT = "openvino"
BF16_FILE, BF16_WEIGHTS = "model_bf16.xml", "model_bf16.bin"
INT8_FILE, INT8_WEIGHTS = "model_int8.xml", "model_int8.bin"
# BORROW_TABLE_MIN_COSINE (docedge.runtime.thresholds): a bf16 artifact whose gate cosine min
# reaches it borrows fp32's threshold table and may search fp32 galleries, the rule by which
# the ONNX fp16 inherits fp32's table (docedge.calibration.pipeline.FP16_INHERIT_MIN_COSINE).
# Decided after its gate (table_decision); it is not part of the gate.
#: bf16's gate: fp16's limits (a reduced-precision float artifact, gated like the ONNX fp16).
BF16_GATE: Dict[str, float] = dict(gating.GATES["fp16"])
#: NNCF INT8 uses the int8 gate (:data:`.gate.GATES`), on the document captures.
INT8_GATE: Dict[str, float] = dict(gating.GATES["int8"])
#: Images per calibration item handed to NNCF.
CALIBRATION_BATCH = 16
#: What ``nncf.quantize`` is called with, as recorded in the manifest. MIXED: symmetric weights,
#: asymmetric activations (the HardSwish outputs are not centred on zero); no model_type (a
#: CNN, not a transformer); the final L2 normalization (ReduceL2 -> Clamp -> Divide) stays
#: float, as in the ONNX INT8: quantizing its denominator breaks unit norm (measured: norms
#: 0.998-1.012, which the gate refuses). Ignored by name besides: the ONNX INT8's float layers
#: (:func:`onnx_float_nodes`), recorded per artifact as ``ignored_names`` / ``kept_float``.
NNCF_SETTINGS: Dict[str, Any] = {"preset": "MIXED", "target_device": "CPU", "model_type": None,
                                 "fast_bias_correction": True,
                                 "ignored_types": ["ReduceL2", "Clamp", "Divide"]}  # fmt: skip
#: Conversion-time speed check (``benchmark=True``): interleaved rounds, seconds per timing.
SPEED_ROUNDS, SPEED_SECONDS, SPEED_BATCHES = 2, 0.3, (1, 32)


def _ov() -> Any:
    return require("openvino", EXPORT_EXTRA, "OpenVINO conversion")


def bf16_unavailable_reason() -> Optional[str]:
    """None when this CPU runs bf16 in OpenVINO, else why not."""
    from docedge.runtime.backends.openvino_backend import cpu_capabilities

    caps = cpu_capabilities(_ov().Core())
    return None if "BF16" in caps else f"this CPU has no bf16 (OpenVINO capabilities {caps})"


def convert_ir(onnx_path: Path, xml: Path) -> Dict[str, Any]:
    """ONNX -> OpenVINO IR ``xml`` + ``xml.with_suffix('.bin')``, weights kept fp32."""
    ov = _ov()
    try:
        model = ov.convert_model(str(onnx_path))
        ov.save_model(model, str(xml), compress_to_fp16=False)
    except Exception as e:  # OpenVINO's converter raises its own exception types
        raise ConversionError(f"{onnx_path}: OpenVINO cannot convert it ({e})") from None
    return {"source": onnx_path.name, "weights": "fp32 (save_model compress_to_fp16=False)",
            "input": {"name": "img", "layout": "NCHW", "shape": ["N", 3, 128, 128], "batch": "dynamic"},
            "normalized_output": True, "producers": versions("openvino")}  # fmt: skip


def ov_op_names(model: Any, onnx_nodes: Sequence[str]) -> Tuple[List[str], List[str]]:
    """The OpenVINO ops ``ov.convert_model`` made of the ONNX nodes ``onnx_nodes``, and the nodes
    it made none of. The ONNX frontend names an op after its node: a Conv with bias becomes
    ``Convolution`` ``<node>/WithoutBiases`` + ``Add`` ``<node>``, a MatMul keeps ``<node>``; so
    an op belongs to node ``n`` when its friendly name is ``n`` or starts with ``n/``."""
    ops = [str(op.get_friendly_name()) for op in model.get_ordered_ops()]
    names: List[str] = []
    unmatched: List[str] = []
    for n in onnx_nodes:
        mine = [o for o in ops if o == n or o.startswith(n + "/")]
        names += [o for o in mine if o not in names]
        if not mine:
            unmatched.append(n)
    return names, unmatched


def onnx_float_nodes(ctx: Context, items: Sequence[np.ndarray]) -> Tuple[List[str], Dict[str, Any]]:
    """The ONNX nodes the NNCF INT8 keeps float: those the bundle's ONNX INT8 kept float (its
    record's ``quantization.float_nodes``); else those ``ctx.int8_float_nodes`` computes on these
    calibration ``items`` (``docedge convert`` and ``docedge export`` pass
    :func:`docedge.calibration.int8.default_float_nodes`: what ``docedge calibrate int8`` keeps
    float, with the most sensitive layers); else the structural default of
    :func:`docedge.export.onnx_io.float_node_names` (the normalization, the depthwise and stem
    convolutions, no sensitivity ranking)."""
    rec = _main_onnx(ctx, "int8")
    kept = ((rec or {}).get("quantization") or {}).get("float_nodes")
    if rec is not None and kept:
        return [str(n) for n in kept], {"from": f"{rec['file']}'s record (quantization.float_nodes)"}
    if ctx.int8_float_nodes is not None:
        names, fallback = ctx.int8_float_nodes(ctx.root / FP32_FILE, items)
        info = {"from": "computed as docedge calibrate int8 keeps them float (the bundle has no ONNX "
                "int8): ReduceL2, depthwise and stem convolutions, and the most sensitive layers "
                "ranked on the first calibration images",
                "float_fallback": {k: fallback[k] for k in ("count", "nodes") if k in fallback}}  # fmt: skip
        return names, info
    import onnx

    from ..onnx_io import float_node_names

    names = float_node_names(onnx.load(str(ctx.root / FP32_FILE)))
    return names, {"from": "float_node_names of the fp32 ONNX (ReduceL2, depthwise and stem "
                   "convolutions; no sensitivity ranking: no int8_float_nodes was given)"}  # fmt: skip


@contextlib.contextmanager
def _nncf_output_to_stderr() -> Iterator[None]:
    """NNCF logs to a handler bound to ``sys.stdout`` (one line per ignored op) and draws its
    progress bars there: moved to stderr while it runs, so ``docedge convert --json`` prints
    only the JSON on stdout."""
    outs = (sys.stdout, sys.__stdout__)
    moved = [(h, h.stream) for h in logging.getLogger("nncf").handlers
             if isinstance(h, logging.StreamHandler) and h.stream in outs]  # fmt: skip
    for h, _ in moved:
        h.setStream(sys.stderr)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        for h, stream in moved:
            h.setStream(stream)


def quantize_int8(fp32_xml: Path, xml: Path, items: Sequence[np.ndarray], calibration: Dict[str, Any],
                  float_nodes: Sequence[str] = (), float_info: Optional[Dict[str, Any]] = None,
                  ) -> Dict[str, Any]:  # fmt: skip
    """NNCF post-training INT8 of ``fp32_xml`` on ``items`` (float32 ``(<=16, 3, 128, 128)``
    batches) with :data:`NNCF_SETTINGS`, keeping float the ops made of the ONNX nodes
    ``float_nodes`` (:func:`onnx_float_nodes`; ``nncf.IgnoredScope(names=...)``, recorded as
    ``ignored_names``); writes ``xml`` + ``.bin``."""
    ov = _ov()
    nncf = require("nncf", EXPORT_EXTRA, "NNCF INT8 quantization")
    if not items:
        raise ConversionError(f"{xml.name}: no calibration images")
    s = NNCF_SETTINGS
    model = ov.Core().read_model(str(fp32_xml))
    ignored, unmatched = ov_op_names(model, float_nodes)
    if unmatched:
        logger.warning("%s: no OpenVINO op for the float ONNX node(s) %s: they are quantized",
                       xml.name, ", ".join(unmatched))  # fmt: skip
    try:
        scope = nncf.IgnoredScope(names=ignored, types=list(s["ignored_types"]), validate=False)
        preset, device = nncf.QuantizationPreset[s["preset"]], nncf.TargetDevice[s["target_device"]]
        with _nncf_output_to_stderr():
            q = nncf.quantize(model, nncf.Dataset(list(items)), preset=preset, target_device=device,
                              subset_size=len(items), fast_bias_correction=s["fast_bias_correction"],
                              ignored_scope=scope)  # fmt: skip
        ov.save_model(q, str(xml), compress_to_fp16=False)
    except Exception as e:  # NNCF and OpenVINO raise their own types
        raise ConversionError(f"{xml.name}: NNCF quantization failed ({e})") from None
    fq = sum(1 for op in q.get_ordered_ops() if op.get_type_name() == "FakeQuantize")
    kept = {"onnx_nodes": list(float_nodes), **(float_info or {}), "unmatched_onnx_nodes": unmatched}
    return {"source": FP32_FILE, "weights": "int8 (NNCF FakeQuantize, compressed by OpenVINO)",
            "input": {"name": "img", "layout": "NCHW", "shape": ["N", 3, 128, 128], "batch": "dynamic"},
            "normalized_output": True,
            "quantization": {"tool": "nncf.quantize", **s, "ignored_names": ignored, "kept_float": kept,
                             "subset_size_items": len(items), "images_per_item": CALIBRATION_BATCH,
                             "fake_quantize_nodes": fq},
            "calibration": calibration, "producers": versions("openvino", "nncf")}  # fmt: skip


def ir_runner(xml: Path, weights: Path, hint: str, threads: int = 2) -> Tuple[gating.Embed, Dict[str, Any]]:
    """A batch function over an IR with the runtime's OpenVINO backend, and what ran it."""
    from docedge.runtime.backends.openvino_backend import OpenVINOBackend
    from docedge.runtime.errors import BackendUnavailableError

    require("openvino", EXTRA, "running an OpenVINO IR")  # the runtime extra is enough to run it
    try:
        b = OpenVINOBackend(xml, weights_path=weights, inference_precision=hint, threads=threads)
    except BackendUnavailableError as e:  # bf16 on a CPU without it: cannot run here
        raise ConverterUnavailableError(f"{xml}: not run: {e}") from None
    d = b.describe()
    return b.run, {"openvino": d["version"], "device": d["device"], "cpu": cpu_name(),
                   "machine": platform.machine(), "INFERENCE_PRECISION_HINT": hint, "threads": threads}


@functools.lru_cache(maxsize=1)
def cpu_name() -> str:
    try:
        return str(_ov().Core().get_property("CPU", "FULL_DEVICE_NAME"))
    except Exception:  # the name is provenance only
        return platform.processor() or "unknown"


def measure_against_onnxruntime(xml: Path, weights: Path, hint: str, onnx_path: Path, x: np.ndarray,
                                ) -> Dict[str, Any]:  # fmt: skip
    """Per-core (one thread each) images/s of the IR and of ONNX Runtime on ``onnx_path``,
    :data:`SPEED_ROUNDS` interleaved rounds (best of each), and their ratio per batch. A
    conversion-time indication for ``backend="auto"``; ``docedge bench`` measures properly."""
    from docedge.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
    from docedge.runtime.backends.openvino_backend import OpenVINOBackend

    engines: Dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "openvino": OpenVINOBackend(xml, weights_path=weights, inference_precision=hint, threads=1).run,
        "onnxruntime": OnnxRuntimeBackend(onnx_path, intra_op_threads=1).run,
    }
    best: Dict[Tuple[str, int], Dict[str, float]] = {}
    for _ in range(SPEED_ROUNDS):
        for name, fn in engines.items():
            for b in SPEED_BATCHES:
                r = gating.speed(fn, x, b, SPEED_SECONDS)
                key = (name, b)
                if key not in best or r["images_per_s"] > best[key]["images_per_s"]:
                    best[key] = dict(r, threads=1)
    out: Dict[str, Any] = {f"batch_{b}": best[("openvino", b)] for b in SPEED_BATCHES}
    out["onnxruntime"] = {"file": onnx_path.name, **{f"batch_{b}": best[("onnxruntime", b)]
                                                     for b in SPEED_BATCHES}}  # fmt: skip
    ips = {k: v["images_per_s"] for k, v in best.items()}
    out["speedup_vs_onnxruntime"] = {f"batch_{b}": round(ips[("openvino", b)] / ips[("onnxruntime", b)], 3)
                                     for b in SPEED_BATCHES}  # fmt: skip
    out["measured_on"] = f"{cpu_name()} ({platform.machine()}), one thread per engine"
    out["method"] = f"best of {SPEED_ROUNDS} interleaved rounds of {SPEED_SECONDS} s (docedge's time_call)"
    return out


def _main_onnx(ctx: Context, precision: str) -> Optional[Dict[str, Any]]:
    for a in ctx.manifest.get("artifacts", []):
        if a.get("format") == "onnx" and a.get("precision") == precision and not a.get("variant"):
            return dict(a)
    return None


def interchangeable_with_fp32(fp32_sha256: str, cos_min: float) -> Dict[str, str]:
    """The bf16 record's ``embeddings_interchangeable_with`` entry: galleries made with the fp32
    ONNX (SHA-256 ``fp32_sha256``) may be searched with bf16 embeddings, by the rule bf16
    borrows fp32's table by (gate cosine min ``cos_min`` >= :data:`BORROW_TABLE_MIN_COSINE`);
    the runtime honours it only while that file has this SHA-256."""
    return {"file": FP32_FILE, "sha256": fp32_sha256,
            "rule": f"gate cosine min {cos_min:.6f} >= {BORROW_TABLE_MIN_COSINE} to the reference on "
            "every gate image (the rule bf16 borrows fp32's threshold table by)"}  # fmt: skip


def table_decision(verification: Dict[str, Any], fp32_sha256: str) -> Dict[str, Any]:
    """What a bf16 artifact that passed its gate (``verification``) says about thresholds and
    galleries, decided on its measured cosine min, as the ONNX fp16 inherits fp32's table
    (:data:`BORROW_TABLE_MIN_COSINE`): at or above it, ``threshold_table`` borrows fp32's and
    ``embeddings_interchangeable_with`` names the fp32 ONNX; below it, no table of its own (the
    runtime then refuses a threshold it was not given, naming what to run) and no gallery but
    its own."""
    cos_min = float(verification["cos_min"])
    rule = {"cos_min": cos_min, "borrow_min_cosine": BORROW_TABLE_MIN_COSINE,
            "borrows": cos_min >= BORROW_TABLE_MIN_COSINE}  # fmt: skip
    if rule["borrows"]:
        return {"threshold_table": f"borrows fp32's: gate cosine min {cos_min:.6f} >= "
                f"{BORROW_TABLE_MIN_COSINE} to the reference (the rule the ONNX fp16 inherits "
                "fp32's table by), decisions held at the fp32 operating threshold",
                "table_rule": rule,
                # galleries of fp32 embeddings may be searched with bf16 ones (the same rule)
                INTERCHANGEABLE_KEY: [interchangeable_with_fp32(fp32_sha256, cos_min)]}  # fmt: skip
    logger.warning("%s: gate cosine min %.6f < %s: no threshold table of its own (fp32's is not "
                   "borrowed); calibrate one or classify with --threshold", BF16_FILE, cos_min,
                   BORROW_TABLE_MIN_COSINE)  # fmt: skip
    return {"threshold_table": f"none of its own (gate cosine min {cos_min:.6f} < "
            f"{BORROW_TABLE_MIN_COSINE}, too far from fp32 to borrow its table): calibrate one "
            "(docedge calibrate thresholds BUNDLE --images DIR --precision bf16 --backend "
            "openvino) or classify with --threshold; galleries: its own only",
            "table_rule": rule}  # fmt: skip


def calibration_items(ctx: Context) -> Tuple[List[np.ndarray], Dict[str, Any]]:
    """The calibration batches and their record: ``--calib-images``, else the images the
    bundle's ONNX INT8 was calibrated on when that folder still holds them (same SHA-256),
    else the synthetic document captures every converter calibrates on by default."""
    from .convert import _calibration

    used = ctx
    rec = _main_onnx(ctx, "int8")
    cal = (rec or {}).get("calibration") or {}
    folder = Path(str(cal["images_dir"])) if cal.get("images_dir") else None
    same = False
    if ctx.calib_images is None and folder is not None and folder.is_dir():
        used = replace(ctx, calib_images=folder,
                       options={**ctx.options, "calib_max_images": int(cal.get("images", 1000))})
        same = True
    batches, info, tmp = _calibration(used)
    try:
        if same and info["data_sha256"] != cal.get("data_sha256"):
            logger.warning("%s changed since the ONNX int8 was calibrated on it (hash differs); using "
                           "the default calibration set", folder)  # fmt: skip
            if tmp is not None:
                tmp.cleanup()
            same = False
            batches, info, tmp = _calibration(ctx)
        items = list(batches())
    finally:
        if tmp is not None:
            tmp.cleanup()
    if same:
        info["origin"] = f"the images the bundle's {rec['file'] if rec else 'int8'} was calibrated on"
    info["images"] = int(sum(len(b) for b in items))
    info["images_per_item"] = CALIBRATION_BATCH
    return items, info


def plan(ctx: Context) -> List[Staged]:
    """Write the bf16 and int8 IR into the work directory; their gate limits, runners and
    conversion-time speed checks ride along in the returned :class:`Staged` items."""
    from .convert import Staged

    _ov()
    fp32 = ctx.root / FP32_FILE
    out: List[Staged] = []
    precisions = ctx.options.get("openvino_precisions", ("bf16", "int8"))
    bf16_fields = convert_ir(fp32, ctx.work / BF16_FILE)
    gate_x = ctx.data.x

    def staged(name: str, weights: str, prec: str, hint: str, fields: Dict[str, Any],
               limits: Dict[str, float], baseline: Path, reason: Optional[str] = None,
               post_gate: Optional[PostGate] = None) -> Staged:  # fmt: skip
        xml, binf = ctx.work / name, ctx.work / weights
        fields = {**fields, "inference_precision_hint": hint, "performance_hints": ["LATENCY", "THROUGHPUT"],
                  "gate_limits": limits}  # fmt: skip
        if reason is not None:
            return Staged(name, FORMAT, prec, fields, not_run_reason=reason, extra_files=(weights,),
                          commit=False)  # fmt: skip
        measure = functools.partial(measure_against_onnxruntime, xml, binf, hint, baseline, gate_x)
        return Staged(name, FORMAT, prec, fields, extra_files=(weights,), batch=32, gate_limits=limits,
                      runner=functools.partial(ir_runner, xml, binf, hint), measure=measure,
                      post_gate=post_gate)  # fmt: skip

    if "bf16" in precisions:
        fields = {**bf16_fields, "precision_note": "fp32 IR, bf16 compute (INFERENCE_PRECISION_HINT)"}
        # its table and galleries: decided on the gate's measured cosine min (table_decision)
        fp32_sha = str((_main_onnx(ctx, "fp32") or {}).get("sha256", ""))
        decide = functools.partial(table_decision, fp32_sha256=fp32_sha)
        out.append(staged(BF16_FILE, BF16_WEIGHTS, "bf16", "bf16", fields, BF16_GATE, fp32,
                          bf16_unavailable_reason(), post_gate=decide))  # fmt: skip
    if "int8" in precisions:
        try:
            require("nncf", EXPORT_EXTRA, "NNCF INT8 quantization")
        except ConverterUnavailableError as e:  # bf16 goes on; int8 is reported as not run
            out.append(Staged(INT8_FILE, FORMAT, "int8", {}, not_run_reason=str(e), commit=False))
            return out
        items, info = calibration_items(ctx)
        float_nodes, float_info = onnx_float_nodes(ctx, items)
        fields = quantize_int8(ctx.work / BF16_FILE, ctx.work / INT8_FILE, items, info, float_nodes,
                               float_info)  # fmt: skip
        fields["threshold_table"] = ("none of its own (INT8 moves scores): calibrate one, or classify "
                                     "with --threshold; its gate holds decisions at the fp32 threshold")
        onnx_int8 = _main_onnx(ctx, "int8")
        baseline = ctx.root / onnx_int8["file"] if onnx_int8 else fp32
        out.append(staged(INT8_FILE, INT8_WEIGHTS, "int8", "f32", fields, INT8_GATE, baseline))
    return out


__all__ = ["BF16_FILE", "BF16_GATE", "BORROW_TABLE_MIN_COSINE", "INT8_FILE", "NNCF_SETTINGS",
           "ConverterUnavailableError", "onnx_float_nodes", "ov_op_names", "plan", "table_decision"]
