"""Add mobile and edge artifacts to an existing bundle: ``docedge convert`` and the
``--formats`` of ``docedge export`` call :func:`convert_bundle`.

This is the one place that touches the bundle: each converter in
:mod:`docedge.export.formats` writes into a private work directory and returns record fields;
here every artifact is gated against the PyTorch reference (:mod:`docedge.export.formats.gate`)
and then all of them are staged and committed in one :class:`BundleTransaction` (the bundle's
writer lock is held throughout; a failure leaves the previous bundle untouched). A failed gate commits nothing
and raises :class:`GateError` naming every failure. A format whose converter is not installed
is skipped with the extra to install; an artifact that no interpreter here can run (Core ML
needs macOS) is recorded as ``"not run"`` with the reason, never as passed.
"""

from __future__ import annotations

import functools
import logging
import platform
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from docedge.runtime.bundle import load_bundle
from docedge.runtime.bundle_commit import BundleTransaction
from docedge.runtime.errors import BundleError

from ..gates import GateError, torch_embed
from ..manifest import FP32_FILE
from ..provenance import utc_now
from ..reference import ReferenceModel, reference_for_bundle
from . import gate as gating
from ._common import EXTRAS, ConversionError, ConverterUnavailableError, require

logger = logging.getLogger(__name__)

#: Formats in conversion order. ``vectors`` (pre-processing test vectors) is always added.
FORMATS = ("ort", "tflite", "coreml", "ncnn")
#: Edge (not mobile) formats: converted when named, not part of ``all``.
EDGE_FORMATS = ("openvino",)
ALL_FORMATS = ("onnx", "fixed", *FORMATS, *EDGE_FORMATS, "vectors")

Embed = Callable[[np.ndarray], np.ndarray]
#: A decision taken on an artifact's measured gate result (its ``verification`` record): the
#: record fields it adds (OpenVINO bf16: whether it borrows fp32's threshold table).
PostGate = Callable[[Dict[str, Any]], Dict[str, Any]]
#: ``(fp32 ONNX path, calibration batches) -> (ONNX node names an INT8 keeps float, record)``:
#: :func:`docedge.calibration.int8.default_float_nodes` (the calibration stage passes it in).
FloatNodes = Callable[[Path, Sequence[np.ndarray]], Tuple[List[str], Dict[str, Any]]]


@dataclass
class Staged:
    """One artifact written into the work directory, waiting for its gate and the commit."""

    name: str
    format: str
    precision: str
    fields: Dict[str, Any]
    runner: Optional[Callable[[], Tuple[Embed, Dict[str, Any]]]] = None
    not_run_reason: Optional[str] = None
    extra_files: Sequence[str] = ()
    batch: int = 1
    gate_limits: Optional[Dict[str, float]] = None
    verification: Optional[Dict[str, Any]] = None
    benchmark: Optional[Dict[str, Any]] = None
    #: False: refused before its gate (``not_run_reason`` says why); reported, never committed.
    commit: bool = True
    #: With ``benchmark``: the artifact's own timing record instead of the batch-1 default.
    measure: Optional[Callable[[], Dict[str, Any]]] = None
    #: Called with the ``verification`` of a passed gate; the fields it returns join the record.
    post_gate: Optional[PostGate] = None


@dataclass
class ConvertReport:
    bundle: str
    records: List[Dict[str, Any]] = field(default_factory=list)
    skipped: List[Dict[str, str]] = field(default_factory=list)
    failed: List[Dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> Dict[str, Any]:
        return {"bundle": self.bundle, "ok": not self.failed, "artifacts": self.records,
                "skipped": self.skipped, "failed": self.failed}  # fmt: skip


@dataclass
class Context:
    root: Path
    work: Path
    manifest: Dict[str, Any]
    reference: Optional[ReferenceModel]
    data: gating.GateData
    calib_images: Optional[Path]
    options: Dict[str, Any]
    int8_float_nodes: Optional[FloatNodes] = None


def parse_formats(text: Union[str, Sequence[str]]) -> List[str]:
    """``"ort,tflite"`` -> ``["ort", "tflite"]`` (validated; ``all`` = every mobile format)."""
    aliases = {"litert": "tflite", "ort-mobile": "ort"}
    items = [t.strip().lower() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    items = [aliases.get(t, t) for t in items]
    if "all" in items:
        items = list(FORMATS)
    bad = [t for t in items if t not in ALL_FORMATS]
    if bad:
        raise ValueError(f"unknown format(s) {bad}; choose from {list(ALL_FORMATS)} or 'all'")
    return [t for t in items if t != "onnx"]


def _ort_version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)


def ort_runner(path: Path, session_options: Optional[Dict[str, str]] = None) -> Tuple[Embed, Dict[str, Any]]:
    """A batch function over an ONNX/ORT file with ONNX Runtime's CPU EP (batch-1 and NHWC
    inputs handled), and what it was verified with."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.inter_op_num_threads = 1
    for k, v in (session_options or {}).items():
        so.add_session_config_entry(k, v)
    try:
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise ConversionError(f"{path}: ONNX Runtime cannot load it ({e})") from None
    inp = sess.get_inputs()[0]
    nhwc = inp.shape[-1] == 3
    fixed = isinstance(inp.shape[0], int)

    def embed(x: np.ndarray) -> np.ndarray:
        a = np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if nhwc else np.ascontiguousarray(x)
        if fixed:
            b = int(inp.shape[0])
            return np.concatenate([sess.run(None, {inp.name: a[i : i + b]})[0] for i in range(0, len(a), b)])
        out: np.ndarray = sess.run(None, {inp.name: a})[0]
        return out

    return embed, {"onnxruntime": _ort_version(), "providers": ["CPUExecutionProvider"],
                   "machine": platform.machine(), "threads": 2}  # fmt: skip


# --- per-format plans -------------------------------------------------------------------------
def _plan_fixed(ctx: Context) -> List[Staged]:
    from .fixed_shape import convert_fixed_shape

    src = ctx.root / FP32_FILE
    out: List[Staged] = []
    variants: List[Tuple[str, str, Dict[str, Any]]] = [
        ("model_fp32_b1.onnx", "b1", {}),
        # for NNAPI / Core ML EPs: no final normalization, HardSwish/HardSigmoid decomposed
        (
            "model_fp32_b1_accel.onnx",
            "b1-accelerator",
            {"normalize": False, "decompose_hard_activations": True},
        ),
    ]
    if ctx.options.get("nhwc_onnx", True):
        variants.append(("model_fp32_b1_nhwc.onnx", "b1-nhwc", {"nhwc": True}))
    for name, variant, kw in variants:
        fields = convert_fixed_shape(src, ctx.work / name, batch=1, **kw)
        fields["variant"] = variant
        p = ctx.work / name
        out.append(Staged(name, "onnx", "fp32", fields, runner=functools.partial(ort_runner, p)))
    return out


def _plan_ort(ctx: Context, fixed: List[Staged]) -> List[Staged]:
    import json

    from . import ort_mobile as om

    out: List[Staged] = []
    for art in ctx.manifest.get("artifacts", []):
        if art.get("format") != "onnx" or art.get("variant"):
            continue
        prec = str(art["precision"])
        style, level = ctx.options.get("ort_optimization", {}).get(
            prec, om.DEFAULT_OPTIMIZATION.get(prec, ("fixed", "extended"))
        )
        name = f"model_{prec}.ort"
        fields = om.convert_ort(ctx.root / art["file"], ctx.work / name, style, level)
        fields["input"] = {"name": "img", "layout": "NCHW", "shape": ["N", 3, 128, 128], "batch": "dynamic"}
        fields["normalized_output"] = True
        p, opts = ctx.work / name, fields["session_options"]
        out.append(Staged(name, "ort", prec, fields, runner=functools.partial(ort_runner, p, opts), batch=32))
    # the accelerator variant: batch 1, without the final normalization, runtime optimizations
    unnorm = next((s for s in fixed if s.fields.get("variant") == "b1-accelerator"), None)
    if unnorm is not None:
        name = "model_fp32_b1_accel.ort"
        fields = om.convert_ort(ctx.work / unnorm.name, ctx.work / name, "runtime", "basic")
        fields.update({k: unnorm.fields[k] for k in ("input", "output", "normalized_output")})
        fields["variant"] = "b1-accelerator"
        p, opts = ctx.work / name, fields["session_options"]
        out.append(Staged(name, "ort", "fp32", fields, runner=functools.partial(ort_runner, p, opts)))
    # reduced-operator build config covering every .ort file
    cfg = ctx.work / om.CONFIG_NAME
    om.write_operator_config([ctx.work / s.name for s in out], cfg)
    out.append(Staged(om.CONFIG_NAME, "ort-operator-config", "all",
                      {"for": [s.name for s in out], "type_reduction": True,
                       "use": "build.sh --minimal_build extended --include_ops_by_config "
                              f"{om.CONFIG_NAME} --enable_reduced_operator_type_support",
                       "producers": fields_producers()},
                      not_run_reason="a build configuration, not a model"))  # fmt: skip
    # ONNX Runtime's mobile usability report, for the dynamic and the batch-1 graphs
    reports = {"model_fp32.onnx": om.usability_report(ctx.root / FP32_FILE)}
    for s in fixed:
        if s.fields.get("variant") in ("b1", "b1-accelerator"):
            reports[s.name] = om.usability_report(ctx.work / s.name)
    text = "\n".join(f"===== {k} =====\n{v['text']}" for k, v in reports.items())
    (ctx.work / "mobile_usability.txt").write_text(text, encoding="utf-8")
    summary = {k: v["eps"] for k, v in reports.items()}
    (ctx.work / "mobile_usability.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    out.append(
        Staged(
            "mobile_usability.json",
            "ort-usability-report",
            "fp32",
            {
                "tool": "onnxruntime.tools.check_onnx_model_mobile_usability",
                "text": "mobile_usability.txt",
                "summary": {
                    k: {
                        ep: f"{d['supported_nodes']}/{d['nodes']} nodes in {d['partitions']} partitions"
                        for ep, d in v.items()
                    }
                    for k, v in summary.items()
                },
                "producers": fields_producers(),
            },
            not_run_reason="a report, not a model",
            extra_files=("mobile_usability.txt",),
        )
    )
    return out


def fields_producers() -> Dict[str, str]:
    from ._common import versions

    return versions("onnxruntime", "onnx")


def _calibration(
    ctx: Context,
) -> Tuple[Callable[[], Any], Dict[str, Any], Optional[tempfile.TemporaryDirectory]]:  # type: ignore[type-arg]
    """The calibration images: ``--calib-images`` or, as ``docedge export`` does for the demo
    model, synthetic document captures (held apart from the gate's document types)."""
    import hashlib

    from docedge.runtime.preprocess import list_images, load_image, preprocess_bgr

    limit = int(ctx.options.get("calib_max_images", 200))
    tmp = None
    folder = ctx.calib_images
    origin = "given folder"
    if folder is None:
        from docedge.synth.dataset import write_documents

        tmp = tempfile.TemporaryDirectory(prefix="docedge-calib-")
        folder = Path(tmp.name) / "synthetic_calibration"
        per_type = 2
        write_documents(folder, types=max(1, limit // per_type), per_type=per_type, first_type_id=5000,
                        capture_strength=0.7, progress=False)  # fmt: skip
        origin = "synthetic document captures (types 5000..), as docedge export calibrates the demo model"
    files = list_images(folder)
    if not files:
        raise ConversionError(f"{folder}: no .jpg/.jpeg/.png calibration images")
    if len(files) > limit:  # a seeded uniform subset, as INT8 calibration takes it
        idx = np.random.default_rng(0).choice(len(files), limit, replace=False)
        files = [files[i] for i in sorted(idx)]
    h = hashlib.sha256()
    # the order of docedge.calibration.calib_data.image_set_sha256 (export cannot import it), so
    # a folder hashes the same here as in the INT8 calibration records
    for f in sorted(files, key=lambda p: p.relative_to(folder).as_posix()):
        h.update(f.relative_to(folder).as_posix().encode("utf-8") + b"\0")
        h.update(hashlib.sha256(f.read_bytes()).digest())
    info = {"origin": origin, "data_sha256": h.hexdigest(), "max_images": limit}

    def batches() -> Any:
        for i in range(0, len(files), 16):
            yield np.stack([preprocess_bgr(load_image(f)) for f in files[i : i + 16]])

    return batches, info, tmp


def _plan_tflite(ctx: Context) -> List[Staged]:
    from . import litert as lt

    if ctx.reference is None:
        raise ConverterUnavailableError(
            "LiteRT conversion needs the PyTorch reference (this bundle was "
            "imported from ONNX); export the bundle from a checkpoint"
        )
    lt.quiet_litert_logs()
    require("litert_torch", lt.EXTRA, "LiteRT conversion")
    net = ctx.reference.net.eval()
    variants = ctx.options.get("tflite_variants", lt.VARIANTS)
    out: List[Staged] = []
    fp32 = ctx.work / "model_fp32.tflite"
    fields = lt.convert_litert_fp32(net, fp32)

    def add(name: str, f: Dict[str, Any]) -> None:
        prec = lt.VARIANT_PRECISION[f["variant"]][0]
        f = dict(f)
        if f["variant"] == "fp32" or f["variant"] == "fp16" or f["variant"] == "int8-static":
            f.pop("variant")  # the main tflite artifact of its precision
        p = ctx.work / name
        out.append(Staged(name, "tflite", prec, f, runner=functools.partial(_litert_run, p)))

    if "fp32" in variants:
        add("model_fp32.tflite", fields)
    if "fp16" in variants:
        add("model_fp16.tflite", lt.convert_litert_fp16(fp32, ctx.work / "model_fp16.tflite"))
    if "int8-dynamic" in variants:
        add(
            "model_int8_dynamic.tflite",
            lt.convert_litert_dynamic_int8(fp32, ctx.work / "model_int8_dynamic.tflite"),
        )
    if "int8-static" in variants:
        batches, info, tmp = _calibration(ctx)
        try:
            add(
                "model_int8.tflite",
                lt.convert_litert_static_int8(
                    net,
                    ctx.work / "model_int8.tflite",
                    batches,
                    bool(ctx.options.get("tflite_float_head", False)),
                    info,
                ),
            )
        finally:
            if tmp is not None:
                tmp.cleanup()
    if "fp32" not in variants:
        fp32.unlink()
    return out


def _litert_run(path: Path) -> Tuple[Embed, Dict[str, Any]]:
    from . import litert as lt

    embed, io_desc = lt.litert_runner(path)
    return embed, {**lt.interpreter_versions(), "machine": platform.machine(), "input": io_desc}


def _plan_coreml(ctx: Context) -> List[Staged]:
    from . import coreml as cm

    if ctx.reference is None:
        raise ConverterUnavailableError("Core ML conversion needs the PyTorch reference (this bundle was "
                                        "imported from ONNX)")  # fmt: skip
    out = []
    pre = ctx.manifest.get("preprocess")
    for prec, name in (("fp16", "model_fp16.mlpackage.zip"), ("int8", "model_int8w.mlpackage.zip")):
        fields = cm.convert_coreml_zip(ctx.reference.net.eval(), ctx.work / name, prec, pre)
        out.append(Staged(name, "coreml", prec, fields, not_run_reason=cm.NOT_RUN_REASON))
    return out


def _plan_ncnn(ctx: Context) -> List[Staged]:
    from . import ncnn as nc

    out = []
    for prec in ("fp16", "fp32"):
        stem = f"model_{prec}.ncnn"
        if ctx.reference is not None:
            fields = nc.convert_ncnn_torch(ctx.reference.net.eval(), ctx.work, stem, prec)
        else:
            fields = nc.convert_ncnn_onnx(ctx.root / FP32_FILE, ctx.work, stem, prec)
        param, binf = f"{stem}.param", f"{stem}.bin"
        out.append(
            Staged(
                param,
                "ncnn",
                prec,
                fields,
                extra_files=(binf,),
                runner=functools.partial(nc.ncnn_runner, ctx.work / param, ctx.work / binf),
            )
        )
    return out


def _plan_openvino(ctx: Context) -> List[Staged]:
    from . import openvino as ov

    return ov.plan(ctx)


def _plan_vectors(ctx: Context, embed: Embed, against: str) -> List[Staged]:
    from docedge.runtime.test_vectors import ARCHIVE_NAME, INDEX_NAME, VECTOR_DIR

    from ..test_vectors import write_test_vector_archive

    index = write_test_vector_archive(ctx.work / ARCHIVE_NAME, embed, against)
    fields = {
        "index": f"{VECTOR_DIR}/{INDEX_NAME}",
        "vectors": len(index["vectors"]),
        "contents": index["contents"],
        "tolerance": index["tolerance"],
        "drift": {
            v["name"]: {
                "antialiased_resize_cos": round(v["drift"]["antialiased_resize"]["cos"], 5),
                "rgb_instead_of_bgr_cos": round(v["drift"]["rgb_instead_of_bgr"]["cos"], 5),
            }
            for v in index["vectors"]
        },
    }
    return [
        Staged(
            ARCHIVE_NAME,
            "test-vectors",
            "fp32",
            fields,
            not_run_reason="reference data for integrators (written by the reference itself)",
        )
    ]


# --- orchestration ------------------------------------------------------------------------------
def convert_bundle(
    bundle_dir: Union[str, Path],
    formats: Union[str, Sequence[str]] = FORMATS,
    reference: Optional[ReferenceModel] = None,
    checkpoint: Optional[Union[str, Path]] = None,
    random_init_seed: Optional[int] = None,
    calib_images: Optional[Union[str, Path]] = None,
    options: Optional[Dict[str, Any]] = None,
    benchmark: bool = True,
    int8_float_nodes: Optional[FloatNodes] = None,
) -> ConvertReport:
    """Convert the bundle's model to ``formats`` (``ort``, ``tflite``, ``coreml``, ``ncnn``,
    ``openvino``; fixed-shape ONNX variants come with ``ort``; test vectors are always
    written), gate every artifact against the PyTorch reference, and commit them all to the
    manifest at once. An artifact refused before its gate (OpenVINO bf16 on a CPU without bf16)
    is reported in ``skipped`` as not run and not committed.

    ``options``: ``nhwc_onnx`` (default True), ``ort_optimization`` ({precision: (style,
    level)}), ``tflite_variants`` (subset of fp32, fp16, int8-dynamic, int8-static),
    ``tflite_float_head`` (False), ``calib_max_images`` (200), ``vectors`` (True),
    ``openvino_precisions`` (subset of bf16, int8).
    ``int8_float_nodes``: which layers the NNCF INT8 keeps float when the bundle has no ONNX
    INT8 to read them from (:data:`FloatNodes`; default: the structural ones, no sensitivity).
    Raises :class:`GateError` (nothing committed) when any artifact fails its gate.
    """
    root = Path(bundle_dir)
    fmts = parse_formats(formats)
    opts = dict(options or {})
    load_bundle(root)  # verifies every existing artifact first
    report = ConvertReport(str(root))
    with BundleTransaction(root) as tx, tempfile.TemporaryDirectory(prefix="docedge-convert-") as tmp:
        manifest = tx.manifest
        ref = reference or reference_for_bundle(manifest["model"], checkpoint, random_init_seed, strict=True)
        if ref is not None:
            ref_embed: Embed = lambda x: torch_embed(ref.net, x)  # noqa: E731
            against = "pytorch-reference"
        else:
            ref_embed = ort_runner(root / FP32_FILE)[0]
            against = "fp32-onnx (no PyTorch reference: imported bundle)"
        table = (manifest.get("thresholds") or {}).get("fp32")
        data = gating.gate_data(ref_embed, against, table)
        work = Path(tmp)
        ctx = Context(root, work, manifest, ref, data, Path(calib_images) if calib_images else None, opts,
                      int8_float_nodes)  # fmt: skip
        staged: List[Staged] = []
        fixed: List[Staged] = []
        if "ort" in fmts or "fixed" in fmts:
            fixed = _plan_fixed(ctx)
            staged += fixed
        planners: Dict[str, Callable[[], List[Staged]]] = {
            "ort": lambda: _plan_ort(ctx, fixed), "tflite": lambda: _plan_tflite(ctx),
            "coreml": lambda: _plan_coreml(ctx), "ncnn": lambda: _plan_ncnn(ctx),
            "openvino": lambda: _plan_openvino(ctx),
        }  # fmt: skip
        for fmt in (f for f in (*FORMATS, *EDGE_FORMATS) if f in fmts):
            try:
                staged += planners[fmt]()
            except ConverterUnavailableError as e:
                logger.warning("%s skipped: %s", fmt, e)
                report.skipped.append({"format": fmt, "extra": str(EXTRAS.get(fmt)), "reason": str(e)})
        if opts.get("vectors", True):
            staged += _plan_vectors(ctx, ref_embed, against)
        for s in [s for s in staged if not s.commit]:
            logger.warning("%s %s not run: %s", s.format, s.precision, s.not_run_reason)
            report.skipped.append({"format": s.format, "precision": s.precision, "file": s.name,
                                   "extra": str(EXTRAS.get(s.format)),
                                   "reason": f"not run: {s.not_run_reason}"})  # fmt: skip
        staged = [s for s in staged if s.commit]
        for s in staged:
            _gate(s, data, benchmark)
            if s.verification and s.verification.get("passed") is False:
                report.failed.append({"file": s.name, "format": s.format, "precision": s.precision,
                                      "verification": s.verification})  # fmt: skip
        if report.failed:
            lines = "; ".join(f"{f['file']}: cos min {f['verification'].get('cos_min', float('nan')):.5f} "
                              f"mean {f['verification'].get('cos_mean', float('nan')):.5f} "
                              f"decisions {f['verification'].get('decision_agreement', float('nan')):.3f} "
                              f"(gate {f['verification'].get('gate')})" for f in report.failed)  # fmt: skip
            err = GateError(f"{root}: {len(report.failed)} converted artifact(s) failed the gate, nothing "
                            f"committed: {lines}")  # fmt: skip
            err.report = report  # type: ignore[attr-defined]
            raise err
        report.records = [_stage(tx, work, s) for s in staged]
    try:
        load_bundle(root)
    except BundleError as e:  # pragma: no cover - would be a bug in the records above
        raise ConversionError(f"{root}: the converted bundle does not verify ({e})") from None
    return report


def add_test_vectors(
    bundle_dir: Union[str, Path], reference: Optional[ReferenceModel] = None
) -> ConvertReport:
    """Only the pre-processing test vectors (``test_vectors.zip``), for bundles that ship no
    mobile format: ``convert_bundle(bundle_dir, [], reference)``."""
    return convert_bundle(bundle_dir, [], reference=reference, benchmark=False)


def _gate(s: Staged, data: gating.GateData, benchmark: bool) -> None:
    if s.runner is None:
        if s.format in ("coreml",):
            s.verification = gating.not_run(s.not_run_reason or "no interpreter here", data, s.precision)
        return
    embed, verified_with = s.runner()
    s.verification = gating.gate(data, embed, s.precision, bool(s.fields.get("normalized_output", True)),
                                 verified_with, s.gate_limits)  # fmt: skip
    if s.post_gate is not None and s.verification.get("passed") is True:
        s.fields = {**s.fields, **s.post_gate(s.verification)}
    if benchmark and s.measure is not None:
        s.benchmark = s.measure()
    elif benchmark:
        s.benchmark = {"batch_1": gating.speed(embed, data.x, 1)}
        if s.batch > 1:
            s.benchmark[f"batch_{s.batch}"] = gating.speed(embed, data.x, s.batch)


def _stage(tx: BundleTransaction, work: Path, s: Staged) -> Dict[str, Any]:
    """Move a gated file (and its extra files) into the transaction; returns its record."""
    extras = []
    for name in s.extra_files:
        t = tx.stage(name)
        shutil.move(str(work / name), str(t))
        extras.append(tx.add_file(t, name))
    t = tx.stage(s.name)
    shutil.move(str(work / s.name), str(t))
    fields: Dict[str, Any] = dict(s.fields)
    if extras:
        fields["files"] = extras
    if s.verification is not None:
        fields["verification"] = s.verification
    if s.benchmark is not None:
        fields["benchmark"] = s.benchmark
    fields["created"] = utc_now()
    rec: Dict[str, Any] = tx.add_artifact(t, s.name, s.format, s.precision, **fields)
    return rec
